"""Where polls fall in time: first polls soon (spread wider when there are thousands), later
polls on a grid spread over the whole interval, and a jitter that is symmetric and does not
accumulate, so thousands of targets never poll in waves."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from statistics import mean

from test_endpoint import target

from monitord.scheduler import FIRE_TICK, GridTrigger, Scheduler, first_poll_window

INTERVAL = 15.0


async def test_first_polls_come_soon_and_later_polls_spread_over_the_whole_interval(make_daemon) -> None:
    random.seed(12)
    # Port 9 (discard) on 127.0.0.1: nothing is listening, and nothing here waits for a poll.
    daemon = make_daemon([target("http://127.0.0.1:9", name=f"t{i}", interval="60s", timeout="2s")
                          for i in range(400)], schedule=True)
    now = datetime.now(UTC)
    firsts = daemon.scheduler.next_runs()
    assert len(firsts) == 400
    # A few hundred targets: all first polls within 5 s (rounded up to a tick), so data comes
    # soon after a restart...
    assert all(-1 <= (t - now).total_seconds() <= 5 + FIRE_TICK for t in firsts.values())
    # ...and every later poll on a grid whose phase is spread evenly over the 60 s interval: each
    # quarter of the interval gets about a quarter of the targets (400 draws: 100 ± 9).
    seconds = []
    for name, first in firsts.items():
        trigger = daemon.scheduler.trigger(name)
        assert trigger is not None
        second = trigger.next_after(first.timestamp(), first.timestamp())
        assert second - first.timestamp() >= 30 - 3  # half an interval, less the jitter
        seconds.append(second % 60)
    quarters = [sum(1 for x in seconds if q * 15 <= x < (q + 1) * 15) for q in range(4)]
    assert all(60 <= n <= 140 for n in quarters), quarters


def test_thousands_of_targets_spread_their_first_polls_wider() -> None:
    assert first_poll_window(60, 400) == 5
    assert first_poll_window(15, 5_000) == 10
    assert first_poll_window(15, 10_000) == 15  # at most one interval
    assert first_poll_window(2, 10) == 2


async def test_first_poll_times_are_drawn_when_polling_starts(make_daemon) -> None:
    random.seed(5)
    daemon = make_daemon([target("http://127.0.0.1:9", name=f"t{i}", interval="4s", timeout="2s")
                          for i in range(200)])
    scheduler = Scheduler(jitter=0.1)
    for runtime in daemon.scheduler.runtimes():
        scheduler.add(runtime)
    # Creating thousands of runtimes takes seconds; times drawn when each was added would now be
    # overdue for a quarter of these targets and come as one burst.
    await asyncio.sleep(1.0)
    started = datetime.now(UTC)
    scheduler.start()
    try:
        firsts = list(scheduler.next_runs().values())
        assert len(firsts) == 200
        assert all(t >= started for t in firsts)
        assert max(firsts) - started > timedelta(seconds=3)
    finally:
        scheduler.shutdown()


def fire_times(trigger: GridTrigger, start: float, count: int) -> list[float]:
    times = [start]
    for _ in range(count):
        times.append(trigger.next_after(times[-1], times[-1] + 0.01))
    return times


def test_jitter_is_symmetric_and_does_not_accumulate() -> None:
    random.seed(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    jitter = 0.1 * INTERVAL
    times = fire_times(GridTrigger(INTERVAL, jitter, start.timestamp()), start.timestamp(), 2000)
    offsets = [t - (start.timestamp() + k * INTERVAL) for k, t in enumerate(times)]
    # Every poll lies within ±jitter/2 of its own grid point, early as often as late...
    assert all(abs(o) <= jitter / 2 + 1e-6 for o in offsets)
    assert sum(o < 0 for o in offsets) > 800 and sum(o > 0 for o in offsets) > 800
    assert abs(mean(offsets)) < jitter / 20
    # ...so the mean interval is the configured one and the 2000th poll is still on its grid.
    assert abs((times[-1] - times[0]) / 2000 - INTERVAL) < 0.001
    assert abs(offsets[-1]) <= jitter / 2 + 1e-6


def test_without_jitter_polls_fall_on_the_grid() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = fire_times(GridTrigger(INTERVAL, 0.0, start.timestamp()), start.timestamp(), 10)
    assert times == [start.timestamp() + k * INTERVAL for k in range(11)]


def test_after_a_stall_the_next_poll_is_the_next_grid_point() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = GridTrigger(INTERVAL, 0.0, start.timestamp())
    late = start + timedelta(seconds=100)
    assert trigger.next_after(None, late.timestamp()) == (start + timedelta(seconds=105)).timestamp()
