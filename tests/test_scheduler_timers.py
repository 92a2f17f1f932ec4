"""The scheduler's own promises, on the event loop's timers: a target never overlaps itself (a
fire time that finds the previous poll running is skipped and counted), later polls keep to
their grid with a symmetric jitter, a fire time missed by more than the grace is dropped, and a
reload's replacement or a removal stops the old timer at once. Runtimes here are stand-ins that
poll when told, so no assertion depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, cast

from helpers import log_events, parse_exposition, value
from test_endpoint import target

from monitord.scheduler import FIRE_TICK, Outcome, RunEvent, Scheduler, TargetRuntime, fire_tick
from monitord.simulators import endpoint as sim

INTERVAL = 0.05


class FakeRuntime:
    """What the scheduler uses of a TargetRuntime; each poll waits until `release` is set."""

    def __init__(self, name: str, interval: float = INTERVAL, hold: bool = False) -> None:
        self.name = name
        self.interval = interval
        self.started = 0
        self.finished = 0
        self.skipped = 0
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def run_once(self) -> Outcome:
        self.started += 1
        await self.release.wait()
        self.finished += 1
        return Outcome(True)

    def mark_skipped(self) -> None:
        self.skipped += 1


def rt(fake: FakeRuntime) -> TargetRuntime:
    return cast(TargetRuntime, fake)


async def until(condition: Any, limit: float = 60.0) -> None:
    """Wait for `condition()`; the limit only keeps a broken scheduler from hanging the test."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition never came true"
        await asyncio.sleep(0.005)


async def test_a_poll_still_running_is_never_overlapped_and_each_skip_is_counted() -> None:
    scheduler = Scheduler(jitter=0.0)
    scheduler.start()
    slow = FakeRuntime("slow", hold=True)
    events: list[RunEvent] = []
    scheduler.add_listener(events.append)
    try:
        scheduler.add(rt(slow), first_run_within=0)
        await until(lambda: slow.skipped >= 3)
        assert slow.started == 1, "a fire time while the poll runs starts no second poll"
        assert [e.kind for e in events if e.name == "slow"].count("skipped") == slow.skipped
        slow.release.set()
        await until(lambda: slow.started >= 2)
        assert slow.finished >= 1
        assert any(e.kind == "finished" and e.outcome is not None and e.outcome.ok for e in events)
    finally:
        scheduler.shutdown()


async def test_skipped_polls_show_in_the_exposition(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, interval="1s", timeout="1s")], jitter=0.0)
    runtime = daemon.runtime("room")
    scheduler = Scheduler(jitter=0.0)
    scheduler.add(runtime, first_run_within=0)
    # While something else polls the target (the lock is held, as by `once` or a poll the
    # vendor does not answer), the scheduled poll waits and every later fire time is skipped.
    async with runtime._lock:
        scheduler.start()
        try:
            await until(lambda: runtime.skipped >= 2)
        finally:
            scheduler.shutdown()
    assert value(parse_exposition(daemon.store.render().decode()), "monitord_polls_skipped_total",
                 source="endpoint", target="room") == runtime.skipped


async def test_later_polls_keep_to_their_grid_within_a_symmetric_jitter() -> None:
    random.seed(3)
    scheduler = Scheduler(jitter=0.2)
    scheduler.start()
    fakes = [FakeRuntime(f"t{i}", interval=0.1) for i in range(20)]
    try:
        for fake in fakes:
            scheduler.add(rt(fake), first_run_within=0.05)
        offsets: list[float] = []
        seen: dict[str, float] = {}
        while len(offsets) < 200:
            for name, when in scheduler.next_runs().items():
                t = when.timestamp()
                # Read on the wall clock each time: the same fire time may differ by a microsecond.
                if abs(seen.get(name, 0.0) - t) > 1e-3:
                    seen[name] = t
                    trigger = scheduler.trigger(name)
                    assert trigger is not None
                    k = round((t - trigger.anchor) / trigger.interval)
                    offsets.append(t - (trigger.anchor + k * trigger.interval))
            await asyncio.sleep(0.01)
        spread = 0.2 * 0.1
        # First fire times (drawn over the first 50 ms) are off the grid; every later one is
        # within ±jitter/2 of its grid point (plus the rounding up to a tick), early about as
        # often as late.
        later = offsets[20:]
        assert all(-spread / 2 - 1e-6 <= o <= spread / 2 + fire_tick(0.1) + 1e-6 for o in later), \
            max(map(abs, later))
        assert sum(o < 0 for o in later) > 40 and sum(o > 0 for o in later) > 40
        assert all(f.started >= 2 for f in fakes)
    finally:
        scheduler.shutdown()


async def test_fire_times_missed_by_more_than_the_grace_are_dropped_not_run_in_a_burst(captured_logs: Any) -> None:
    scheduler = Scheduler(jitter=0.0)
    scheduler.start()
    fake = FakeRuntime("late")
    events: list[tuple[str, int]] = []  # kind, polls started when it happened
    scheduler.add_listener(lambda e: events.append((e.kind, fake.started)))
    try:
        scheduler.add(rt(fake), first_run_within=0)
        # Between polls: nothing in flight, only the next fire time pending.
        await until(lambda: events and events[-1][0] == "finished" and fake.finished == fake.started)
        before = len(events)
        started = fake.started
        # The loop is blocked for longer than the grace (one interval, at least a second).
        time.sleep(1.2)  # noqa: ASYNC251
        await until(lambda: len(events) > before + 1)
        assert events[before] == ("missed", started), "the missed fire time did not run"
        assert events[before + 1][0] == "started"  # polling goes on, on the grid
        # One log line for the stall (a stall misses every target at once: one a minute at most).
        missed = [e for e in log_events(captured_logs) if e["event"] == "polls_missed"]
        assert len(missed) == 1 and missed[0]["target"] == "late" and missed[0]["late_seconds"] > 1.0
        await until(lambda: events[-1][0] == "finished" and fake.finished == fake.started)
        again = len(events)
        time.sleep(1.2)  # noqa: ASYNC251
        await until(lambda: len(events) > again + 1)
        assert events[again][0] == "missed"
        assert len([e for e in log_events(captured_logs) if e["event"] == "polls_missed"]) == 1
    finally:
        scheduler.shutdown()


async def test_a_poll_task_that_raises_is_logged_and_a_finished_one_is_let_go(captured_logs: Any) -> None:
    """run_once turns every failure into an Outcome, so a task that raises is a bug of ours: it
    is logged (scrubbed) and polling goes on. A finished task is not kept until the next poll
    (its coroutine, context and result would stay for every full collection to scan)."""

    class Broken(FakeRuntime):
        async def run_once(self) -> Outcome:
            self.started += 1
            raise RuntimeError("boom")

    scheduler = Scheduler(jitter=0.0)
    scheduler.start()
    broken, fine = Broken("broken"), FakeRuntime("fine")
    finished: list[RunEvent] = []
    scheduler.add_listener(lambda e: finished.append(e) if e.kind == "finished" else None)
    try:
        scheduler.add(rt(broken), first_run_within=0)
        scheduler.add(rt(fine), first_run_within=0)
        def failures() -> list[dict[str, Any]]:
            return [e for e in log_events(captured_logs) if e["event"] == "poll_task_failed"]

        await until(lambda: len(failures()) >= 2 and fine.finished >= 2)
        assert failures()[0]["error"] == "RuntimeError: boom"
        assert {e.name for e in finished} == {"fine"}, "a task that raised reports no outcome"
        assert all(e.outcome == Outcome(True) for e in finished)
        await until(lambda: scheduler._timers["fine"].task is None, limit=5.0)
    finally:
        scheduler.shutdown()


async def test_a_target_removed_before_polling_starts_is_never_polled() -> None:
    scheduler = Scheduler(jitter=0.0)
    kept, removed = FakeRuntime("kept"), FakeRuntime("removed")
    scheduler.add(rt(kept), first_run_within=0)
    scheduler.add(rt(removed), first_run_within=0)
    assert scheduler.remove("removed") is rt(removed)
    assert scheduler.remove("never-added") is None
    scheduler.start()
    try:
        await until(lambda: kept.started >= 2)
        assert removed.started == 0
        assert set(scheduler.next_runs()) == {"kept"}
    finally:
        scheduler.shutdown()


async def test_a_replaced_or_removed_timer_stops_at_once() -> None:
    scheduler = Scheduler(jitter=0.0)
    scheduler.start()
    old, new, other = FakeRuntime("a"), FakeRuntime("a"), FakeRuntime("b")
    try:
        scheduler.add(rt(old), first_run_within=0)
        scheduler.add(rt(other), first_run_within=0)
        await until(lambda: old.started >= 2)
        # A reload: the new runtime takes the name, then its timer replaces the old one.
        scheduler.remove("a")
        scheduler.add(rt(new), schedule=False)
        scheduler.schedule(rt(new), scheduler.job(rt(new), first_run_within=0))
        stopped_at = old.started
        await until(lambda: new.started >= 3 and other.started >= stopped_at + 5)
        assert old.started == stopped_at
        assert [r.name for r in scheduler.runtimes()] == ["b", "a"]
        scheduler.remove("b")
        count = other.started
        await until(lambda: new.started >= 8)
        assert other.started == count
        assert set(scheduler.next_runs()) == {"a"}
    finally:
        scheduler.shutdown()


async def test_a_job_for_a_runtime_retired_meanwhile_schedules_nothing() -> None:
    scheduler = Scheduler(jitter=0.0)
    scheduler.start()
    fake = FakeRuntime("gone")
    try:
        scheduler.add(rt(fake), schedule=False)
        job = scheduler.job(rt(fake), first_run_within=0)
        scheduler.remove("gone")  # a later reload retired it before its timer was set
        scheduler.schedule(rt(fake), job)
        assert scheduler.next_runs() == {}
    finally:
        scheduler.shutdown()


async def test_shutdown_cancels_polls_in_flight_and_every_timer() -> None:
    scheduler = Scheduler(jitter=0.0)
    scheduler.start()
    fake = FakeRuntime("hung", hold=True)
    scheduler.add(rt(fake), first_run_within=0)
    await until(lambda: fake.started == 1)
    scheduler.shutdown()
    assert scheduler.next_runs() == {}
    await asyncio.sleep(0.2)
    assert fake.finished == 0 and fake.started == 1


async def test_targets_due_in_the_same_tick_start_in_one_pass_of_the_loop() -> None:
    """Fire times are rounded up to a tick, so the polls of a tick share one wake-up of the loop
    (see fire_tick); the tick is a small part of the interval, so the spread survives."""
    assert fire_tick(15.0) == FIRE_TICK == 0.05
    assert fire_tick(1.5) == 0.005  # --time-scale 10: the tick shrinks with the interval
    loop = asyncio.get_running_loop()
    passes: list[int] = []
    stamp = [0]

    def count_passes() -> None:  # a callback per pass of the loop while the test runs
        stamp[0] += 1
        loop.call_soon(count_passes)

    class Stamped(FakeRuntime):
        async def run_once(self) -> Outcome:
            passes.append(stamp[0])
            return await super().run_once()

    scheduler = Scheduler(jitter=0.0)
    scheduler.start()
    loop.call_soon(count_passes)
    fakes = [Stamped(f"t{i}", interval=15.0) for i in range(60)]
    try:
        for fake in fakes:
            scheduler.add(rt(fake), first_run_within=0.2)
        for fake in fakes:
            timer = scheduler._timers[fake.name]
            assert abs(timer.when / FIRE_TICK - round(timer.when / FIRE_TICK)) < 1e-6, timer.when
        await until(lambda: all(f.started for f in fakes))
        # 60 first polls drawn over 200 ms fall on at most 5 ticks (4 whole ticks and the one
        # the window's start rounds up into): at most 5 passes started polls.
        assert len(set(passes)) <= 5, sorted(set(passes))
    finally:
        scheduler.shutdown()
