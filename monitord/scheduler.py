"""Polling: one runtime per target, one event-loop timer per runtime.

A TargetRuntime runs a poll under its deadline, turns whatever happened into a snapshot (or the
absence of one) plus self-metrics, and logs only transitions: OK -> failing (with the reason),
a change of reason while failing, and failing -> recovered. Each job is its own asyncio task,
so a hung vendor holds only its own target; a target never overlaps itself, and a fire time that
finds its previous poll still running is skipped and counted.

"Up" means the vendor answered the requests we made. A poll that succeeded without sending
any vendor request (Source.vendor_requests did not move: a spent request budget, nothing to
watch) is idle: it keeps the target's state. While up, it republishes the source's cached
series; while failing, it publishes nothing and stays failing; either way it neither refreshes
the success time nor changes monitord_target_up. Otherwise a budget-paced source whose vendor
answers 503 to everything would flap 0/1 and look fresh.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitord import logs, redact, selfmetrics
from monitord.errors import REASONS, PollError
from monitord.snapshot import FixedSeries, Snapshot, SnapshotBuilder, Store
from monitord.sources.base import Source
from monitord.state import REASONS as STATE_REASONS
from monitord.vendor import deadline

# A parse-error log line per target at most this often; the counter carries every occurrence.
PARSE_LOG_INTERVAL = 600.0
_DROP_REASONS = ("series_limit", "duplicate")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    reason: str = ""
    detail: str = ""
    duration: float = 0.0
    requests: int = 0  # vendor requests the poll sent

    @property
    def idle(self) -> bool:
        """Succeeded without asking the vendor anything: says nothing about the vendor."""
        return self.ok and self.requests == 0


class TargetRuntime:
    def __init__(
        self,
        source: Source[Any],
        store: Store,
        *,
        interval: float,
        timeout: float,
        max_series: int,
        clock: Callable[[], float] = time.time,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.source = source
        self._observe = observe
        self.name = source.config.name
        self.kind = source.kind
        self.store = store
        self.interval = interval
        self.timeout = timeout
        self.max_series = max_series
        self._clock = clock
        self._log = logs.get("monitord.poll", target=self.name, source=self.kind)
        self.polls = 0
        self.skipped = 0
        self.errors: Counter[str] = Counter()
        self.parse_errors: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.last_success: float | None = None
        self.last_data: float | None = None
        self.up: bool | None = None  # None until a poll that asked the vendor something
        self.last: Outcome | None = None  # newest poll, idle or not
        self._last_real: Outcome | None = None  # newest poll that was not idle
        self.last_poll_at: float | None = None  # when the newest poll ended
        self.state_since: float | None = None  # when the target last went up or started failing
        self._parse_logged_at = -PARSE_LOG_INTERVAL
        self._lock = asyncio.Lock()
        # Set once the runtime is retired (reload, shutdown). A poll still in flight then must not
        # publish: it would bring back the series of a removed target, or overwrite those of its
        # successor with the same name.
        self._closed = False
        self._base_labels = {"source": self.kind, "target": self.name}
        # Self-metrics are rebuilt after every poll and their labels never change.
        self._fixed = FixedSeries(self._base_labels)
        self._source_self_metrics = type(source).self_metrics is not Source.self_metrics
        # Whether this runtime has put series in the store: one built for a reload that was then
        # abandoned must not take out the series of the running runtime with its name.
        self._published = False

    @property
    def data_key(self) -> str:
        return f"target/{self.name}/data"

    @property
    def self_key(self) -> str:
        return f"target/{self.name}/self"

    async def run_once(self) -> Outcome:
        # The scheduler already forbids overlap; the lock covers `once`, reloads and tests that
        # call run_once directly.
        async with self._lock:
            return await self._run()

    async def _run(self) -> Outcome:
        builder = SnapshotBuilder(self._base_labels, self.max_series)
        started = time.monotonic()
        requests_before = self.source.vendor_requests
        try:
            with deadline.poll_deadline(self.timeout):
                async with asyncio.timeout(self.timeout):
                    await self.source.poll(builder)
            outcome = Outcome(True)
        except PollError as exc:
            # Scrubbed here, once: the detail goes to logs, `once`'s stderr and the status page.
            outcome = Outcome(False, exc.reason, redact.scrub(str(exc)))
        except TimeoutError:
            outcome = Outcome(False, "timeout", f"poll did not finish within its {self.timeout}s deadline")
        except Exception as exc:  # a bug in a source must cost one poll, not the daemon
            outcome = Outcome(False, "internal", redact.scrub(f"{type(exc).__name__}: {exc}"))
            if self.last is None or self.last.reason != "internal":
                self._log.exception("poll_crashed")
        duration = time.monotonic() - started
        outcome = Outcome(outcome.ok, outcome.reason, outcome.detail, duration,
                          self.source.vendor_requests - requests_before)
        if self._closed:
            return outcome

        if self._observe is not None:
            self._observe(self.kind, duration)
        self.polls += 1
        self.parse_errors.update(builder.report.parse_errors)
        self.dropped.update(builder.report.dropped)
        data = None
        if outcome.idle:
            if self.up is not False:
                data = builder.build()
        elif outcome.ok:
            self.up = True
            self.last_success = self.last_data = self._clock()
            data = builder.build()
        else:
            self.up = False
            self.errors[outcome.reason] += 1
        self.last_poll_at = self._clock()
        if not outcome.idle:
            # An idle poll (no vendor request) changes no state, so it starts no "since".
            if self._last_real is None or self._last_real.ok != outcome.ok:
                self.state_since = self.last_poll_at
            self._log_transition(outcome)
            self._last_real = outcome
        self._log_parse_errors(builder.report.parse_errors)
        self.last = outcome
        # Data and self-metrics change together: one store change per poll, so a body rendered
        # for a scrape stays valid until the next poll ends.
        self.store.update({self.data_key: data, self.self_key: self.self_snapshot(data)})
        self._published = True
        return outcome

    @property
    def last_real(self) -> Outcome | None:
        """The newest poll that asked the vendor something: the one the target's state comes from."""
        return self._last_real

    def data_time(self) -> float | None:
        """When the newest vendor data the target exposes arrived (monitord_last_data_timestamp_seconds)."""
        try:
            data_time = self.source.data_timestamp()
        except Exception:
            data_time = None
            self._log.exception("data_timestamp_crashed")
        return self.last_data if data_time is None else data_time

    def _log_transition(self, outcome: Outcome) -> None:
        previous = self._last_real
        if outcome.ok:
            if previous is not None and not previous.ok:
                self._log.info("target_recovered", failed_reason=previous.reason)
            elif previous is None:
                self._log.info("target_up")
        elif previous is None or previous.ok:
            self._log.error("target_failing", reason=outcome.reason, detail=outcome.detail)
        elif previous.reason != outcome.reason:
            self._log.error("target_failing", reason=outcome.reason, detail=outcome.detail,
                            previous_reason=previous.reason)

    def _log_parse_errors(self, fresh: Counter[str]) -> None:
        if not fresh:
            return
        now = time.monotonic()
        if now - self._parse_logged_at >= PARSE_LOG_INTERVAL:
            self._parse_logged_at = now
            self._log.warning("unparseable_values", fields=sorted(fresh),
                              hint="left out of /metrics; see monitord_parse_errors_total")

    def mark_skipped(self) -> None:
        self.skipped += 1
        self.publish_self()

    def publish_self(self, prebuilt: Snapshot | None = None) -> None:
        """Put the self-metrics in the store; `prebuilt` is a self_snapshot() taken earlier (a
        reload builds thousands before its swap, so the swap itself stays short)."""
        if self._closed:
            return
        self.store.put(self.self_key, prebuilt or self.self_snapshot(self.store.get(self.data_key)))
        self._published = True

    def self_snapshot(self, data: Snapshot | None = None) -> Snapshot:
        """The target's self-metrics, next to `data`, its newest data snapshot (None: none)."""
        m = selfmetrics
        fixed = self._fixed
        last = self.last
        try:
            declared = set(self.source.parse_fields())
        except Exception:
            declared = set()
            self._log.exception("parse_fields_crashed")
        fields = sorted(declared | set(self.parse_errors))
        state_errors = self.source.ctx.state.errors
        families = (
            fixed.family(m.TARGET_UP, (None if self.up is None else 1.0 if self.up else 0.0,)),
            fixed.family(m.POLL_DURATION, (None if last is None else last.duration,)),
            fixed.family(m.LAST_SUCCESS, (self.last_success,)),
            fixed.family(m.LAST_DATA, (self.data_time(),)),
            fixed.family(m.POLLS, (float(self.polls),)),
            fixed.family(m.POLLS_SKIPPED, (float(self.skipped),)),
            fixed.family(m.POLL_ERRORS, [float(self.errors[reason]) for reason in REASONS], REASONS),
            fixed.family(m.PARSE_ERRORS, [float(self.parse_errors[f]) for f in fields], fields),
            fixed.family(m.SERIES_DROPPED, (float(self.dropped["series_limit"]), float(self.dropped["duplicate"])),
                         _DROP_REASONS),
            fixed.family(m.TARGET_SERIES, (None if data is None else float(data.series),)),
            fixed.family(m.STATE_ERRORS, [float(state_errors[(self.name, reason)]) for reason in STATE_REASONS],
                         STATE_REASONS),
        )
        out = [family for family in families if family is not None]
        series = sum(family[4] for family in out)
        if self._source_self_metrics:
            extra = SnapshotBuilder(self._base_labels)
            try:
                self.source.self_metrics(extra)
            except Exception:
                self._log.exception("self_metrics_crashed")
            built = extra.build()
            out.extend(built.families)
            series += built.series
        return Snapshot(tuple(out), series)

    def retire(self) -> None:
        """Stop publishing and take this runtime's series out now; a successor with the same name
        may publish right after. close() then ends the source."""
        if not self._closed:
            self._closed = True
            if self._published:
                self.store.remove(self.data_key)
                self.store.remove(self.self_key)

    async def close(self) -> None:
        self.retire()
        # Let a poll in flight end (its own deadline bounds the wait) before logging out under it.
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout=self.timeout)
            self._lock.release()
        except TimeoutError:
            pass
        try:
            await asyncio.wait_for(self.source.close(), timeout=min(self.timeout, 5.0))
        except Exception as exc:
            self._log.warning("close_failed", error=type(exc).__name__)
        finally:
            # A removed target no longer counts as a holder of a shared budget, token or ban.
            self.source.shared.release()


@dataclass(frozen=True)
class Job:
    """A runtime's grid and first run, drawn before the runtime is scheduled: a reload draws
    thousands of them before its swap, and whatever can raise does so while the reload can
    still be abandoned."""

    trigger: GridTrigger
    first: float  # time.monotonic() of the first poll


# First polls (each with a login, often) the process takes per second at start-up; more targets
# than that per 5 s spread their first polls wider, up to a whole interval.
STARTUP_POLLS_PER_SECOND = 500.0


# Fire times lie on multiples of this (on the monotonic clock), at most 1/300 of the interval.
FIRE_TICK = 0.05


def fire_tick(interval: float) -> float:
    """The grain of a target's fire times: a random time rounded up to the next tick.

    Polls spread evenly at 10,000 targets every 15 s start one every 1.5 ms, each in a pass of the
    event loop of its own: its own wake-up, epoll call and timer-heap work, and its request and
    answer each crossing the loopback or the network alone. Started together, the ~30 polls of a
    50 ms tick share all of that; measured with benchmarks/scale.py at 10,000 endpoints, the
    daemon's CPU went from 66-69 % to 52-58 % of a core and the schedule lag did not grow (it is
    counted from the tick). The spread stays uniform at that grain; 1/300 of the interval keeps
    it so under --time-scale and for short intervals."""
    return min(FIRE_TICK, interval / 300)


def first_poll_window(interval: float, targets: int) -> float:
    """Seconds over which first polls are spread: 5 s (data soon after a restart) unless that
    would ask more than STARTUP_POLLS_PER_SECOND of the process, at most one interval."""
    return min(interval, max(5.0, targets / STARTUP_POLLS_PER_SECOND))


class GridTrigger:
    """Fires at anchor + k * interval, each time moved at random by up to ±jitter/2.

    A jitter that only adds, to the previous (already jittered) fire time, grows the mean
    interval by jitter/2 and lets a target's phase wander. Here the jitter is symmetric and never
    accumulates: a target keeps its place in the interval. The anchor is drawn uniformly over an
    interval, so targets are spread evenly whenever their first polls were; the first poll (any
    time) is followed by the first grid point at least half an interval later.

    Times are seconds on any one clock (the scheduler uses time.monotonic(), so that a step of
    the wall clock moves no poll)."""

    __slots__ = ("anchor", "interval", "spread")

    def __init__(self, interval: float, jitter: float, anchor: float) -> None:
        self.interval = interval
        self.anchor = anchor
        # At most half the interval (config caps jitter at 0.5), so a fire time always lies
        # within a quarter interval of its own grid point.
        self.spread = min(jitter, interval / 2)

    def next_after(self, previous: float | None, now: float) -> float:
        """The fire time after `previous` (a fire time), or the first at or after `now`."""
        step = self.interval
        if previous is None:
            k = max(0, math.ceil((now - self.anchor) / step))
        else:
            # The grid point at least half an interval after the previous fire: the next one
            # for a fire on the grid (±a quarter interval of jitter), and for a first poll.
            k = max(0, math.ceil((previous - self.anchor) / step + 0.5))
        offset = random.uniform(-self.spread / 2, self.spread / 2) if self.spread else 0.0
        return self.anchor + k * step + offset

    def shifted(self, seconds: float) -> GridTrigger:
        """The same grid on a clock `seconds` ahead of this one's."""
        out = GridTrigger(self.interval, 0.0, self.anchor + seconds)
        out.spread = self.spread
        return out


@dataclass(frozen=True, slots=True)
class RunEvent:
    """What the scheduler did with one fire time, for listeners (benchmarks/scale.py measures
    schedule lag and poll outcomes with them). `late`: seconds between the fire time and the
    moment the scheduler acted on it."""

    kind: str  # "started", "skipped" (the previous poll still ran), "missed" (too late), "finished"
    name: str
    late: float = 0.0
    outcome: Outcome | None = None


class _Timer:
    """One target's place on the event loop's timer heap: its grid, the next fire time, and the
    poll in flight. Called by the loop when it fires: the timer handle then needs no bound
    method and no arguments of its own (objects every full garbage collection would scan)."""

    __slots__ = ("fire", "grace", "handle", "runtime", "task", "tick", "trigger", "when")

    def __init__(self, runtime: TargetRuntime, trigger: GridTrigger, when: float,
                 fire: Callable[[_Timer], None]) -> None:
        self.fire = fire
        self.runtime = runtime
        self.trigger = trigger
        self.when = when
        # A fire time this late (the loop was blocked, the machine suspended) is dropped, not
        # run: after a long stall thousands of targets would otherwise all poll at once.
        self.grace = max(1.0, float(int(runtime.interval)))
        self.tick = fire_tick(runtime.interval)
        self.handle: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[Outcome] | None = None

    def __call__(self) -> None:
        self.fire(self)


class Scheduler:
    """One asyncio timer per target (loop.call_at), each poll its own task.

    A scheduler library costs about a quarter of a millisecond per run (its job store, events,
    a wake-up of its own on top of the loop's); at 10,000 targets every 15 s that alone was 15 %
    of a core and most of the schedule lag. The loop's timer heap does the same for the price of
    one TimerHandle. What the scheduler promises: a target never overlaps itself (a fire time
    that finds the previous poll still running is skipped and counted in
    monitord_polls_skipped_total); fire times missed by more than an interval are dropped, and
    several missed by less run once; a removed target's timer is gone at once while a poll in
    flight ends on its own (its runtime, retired, publishes nothing)."""

    def __init__(self, jitter: float, observe_delay: Callable[[str, float], None] | None = None) -> None:
        self.jitter = jitter
        # Called with (source kind, seconds late) for every fire time the scheduler acts on.
        self._observe_delay = observe_delay
        self._runtimes: dict[str, TargetRuntime] = {}
        self._timers: dict[str, _Timer] = {}
        # Added before start(): scheduled by start() (value: first_run_within).
        self._deferred: dict[str, float | None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_offset = 0.0  # loop.time() - time.monotonic()
        self._context = contextvars.Context()
        self._listeners: list[Callable[[RunEvent], None]] = []
        self._log = logs.get("monitord.scheduler")
        self._missed_logged_at = -math.inf

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        """Start polling. First poll times are drawn now, not when each target was added:
        creating 10,000 runtimes takes seconds, and times drawn before that would be overdue
        at once and come as one burst."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_offset = self._loop.time() - time.monotonic()
        self._context = contextvars.copy_context()
        deferred, self._deferred = self._deferred, {}
        for name, first_run_within in deferred.items():
            runtime = self._runtimes.get(name)
            if runtime is not None:
                self.schedule(runtime, self.job(runtime, first_run_within=first_run_within))

    def shutdown(self) -> None:
        """Stop every timer and cancel the polls in flight."""
        if self._loop is None:
            return
        self._loop = None
        timers, self._timers = self._timers, {}
        for timer in timers.values():
            if timer.handle is not None:
                timer.handle.cancel()
            if timer.task is not None and not timer.task.done():
                timer.task.cancel()

    def job(self, runtime: TargetRuntime, jitter: float | None = None, first_run_within: float | None = None) -> Job:
        """The runtime's grid and first run, drawn now (a reload builds them before its swap)."""
        interval = runtime.interval
        jitter = self.jitter if jitter is None else jitter
        now = time.monotonic()
        if first_run_within is None:
            first_run_within = first_poll_window(interval, len(self._runtimes))
        first = now + random.uniform(0, first_run_within)
        # Later polls on a grid whose phase is uniform over the interval: thousands of targets
        # then never poll in waves (all in the first seconds of each interval) that queue on the
        # connection pool and time out.
        anchor = now + random.uniform(0, interval)
        return Job(GridTrigger(interval, jitter * interval, anchor), first)

    def add(self, runtime: TargetRuntime, schedule: bool = True, first_run_within: float | None = None,
            job: Job | None = None) -> None:
        """Take a runtime; with schedule=False it is only known (the `once` command polls it)."""
        self._runtimes[runtime.name] = runtime
        if not schedule:
            return
        if self._loop is None:
            self._deferred[runtime.name] = first_run_within
            return
        self.schedule(runtime, job or self.job(runtime, first_run_within=first_run_within))

    def schedule(self, runtime: TargetRuntime, job: Job) -> None:
        """Start polling a runtime already added (in place of an earlier timer of its name)."""
        if self._runtimes.get(runtime.name) is not runtime:
            return  # retired since (a later reload or shutdown)
        if self._loop is None:
            self._deferred[runtime.name] = None
            return
        old = self._timers.get(runtime.name)
        if old is not None and old.handle is not None:
            old.handle.cancel()
        timer = self._timers[runtime.name] = _Timer(runtime, job.trigger, job.first, self._fire)
        self._arm(timer, self._loop)

    def _arm(self, timer: _Timer, loop: asyncio.AbstractEventLoop) -> None:
        # On the tick (see fire_tick), and on the loop's clock by one offset taken at start: the
        # targets of a tick get the very same loop time, so the loop runs them in one pass.
        timer.when = math.ceil(timer.when / timer.tick) * timer.tick
        # One context for every timer: by default each handle copies the current one.
        timer.handle = loop.call_at(timer.when + self._loop_offset, timer, context=self._context)

    def _fire(self, timer: _Timer) -> None:
        loop = self._loop
        runtime = timer.runtime
        if loop is None or self._timers.get(runtime.name) is not timer:
            return  # removed or replaced; its handle was cancelled, this is a leftover
        now = time.monotonic()
        scheduled = timer.when
        late = now - scheduled
        trigger = timer.trigger
        if late > timer.grace:
            kind = "missed"
            timer.when = trigger.next_after(None, now)
            self._log_missed(runtime.name, late)
        else:
            timer.when = trigger.next_after(scheduled, now)
            task = timer.task
            if task is not None and not task.done():
                kind = "skipped"
                runtime.mark_skipped()
            else:
                kind = "started"
                timer.task = task = loop.create_task(runtime.run_once(), name=runtime.name)
                task.add_done_callback(self._finished)
        if self._observe_delay is not None:
            self._observe_delay(runtime.kind, max(0.0, late))
        # Fire times that fell behind `now` (a stall shorter than the grace) run once, now.
        while timer.when <= now:
            timer.when = trigger.next_after(timer.when, now)
        self._arm(timer, loop)
        if self._listeners:
            self._emit(RunEvent(kind, runtime.name, late))

    def _finished(self, task: asyncio.Task[Outcome]) -> None:
        # A finished task holds its coroutine, context and result: five objects per target for
        # every full garbage collection to scan, if the timer kept it until the next poll.
        timer = self._timers.get(task.get_name())
        if timer is not None and timer.task is task:
            timer.task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # run_once turns every failure of a poll into an Outcome: this is a bug of ours.
            self._log.error("poll_task_failed", error=redact.scrub(f"{type(exc).__name__}: {exc}"))
            return
        if self._listeners:
            outcome = task.result()
            self._emit(RunEvent("finished", task.get_name(), 0.0, outcome))

    def _emit(self, event: RunEvent) -> None:
        for listener in self._listeners:
            listener(event)

    def _log_missed(self, name: str, late: float) -> None:
        # One line per minute at most: a stall misses every target's fire time at once.
        now = time.monotonic()
        if now - self._missed_logged_at >= 60.0:
            self._missed_logged_at = now
            self._log.warning("polls_missed", target=name, late_seconds=round(late, 3),
                              hint="the event loop was blocked for longer than an interval; those polls are dropped")

    def trigger(self, name: str) -> GridTrigger | None:
        """The target's grid, on the wall clock (Unix seconds)."""
        timer = self._timers.get(name)
        return None if timer is None else timer.trigger.shifted(time.time() - time.monotonic())

    def next_runs(self) -> dict[str, datetime]:
        """When each scheduled target polls next."""
        offset = time.time() - time.monotonic()
        return {name: datetime.fromtimestamp(timer.when + offset, tz=UTC) for name, timer in self._timers.items()}

    def add_listener(self, callback: Callable[[RunEvent], None]) -> None:
        """Called with every RunEvent (benchmarks/scale.py measures schedule lag with it)."""
        self._listeners.append(callback)

    def remove(self, name: str) -> TargetRuntime | None:
        """Forget a target: its timer stops now; a poll in flight ends on its own."""
        runtime = self._runtimes.pop(name, None)
        self._deferred.pop(name, None)
        timer = self._timers.pop(name, None)
        if timer is not None and timer.handle is not None:
            timer.handle.cancel()
        return runtime

    def runtimes(self) -> Iterable[TargetRuntime]:
        return list(self._runtimes.values())
