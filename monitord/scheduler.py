"""Polling: one runtime per target, one APScheduler job per runtime.

A TargetRuntime runs a poll under its deadline, turns whatever happened into a snapshot (or the
absence of one) plus self-metrics, and logs only transitions: OK -> failing (with the reason),
a change of reason while failing, and failing -> recovered. Each job is its own asyncio task,
so a hung vendor holds only its own target; max_instances=1 keeps a target from overlapping
itself and the skip is counted.

"Up" means the vendor answered the requests we made. A poll that succeeded without sending
any vendor request (Source.vendor_requests did not move: a spent request budget, nothing to
watch) is idle: it keeps the target's state. While up, it republishes the source's cached
series; while failing, it publishes nothing and stays failing; either way it neither refreshes
the success time nor changes monitord_target_up. Otherwise a budget-paced source whose vendor
answers 503 to everything would flap 0/1 and look fresh.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitord import logs, redact, selfmetrics
from monitord.errors import REASONS, PollError
from monitord.snapshot import Snapshot, SnapshotBuilder, Store
from monitord.sources.base import Source
from monitord.state import REASONS as STATE_REASONS

# A parse-error log line per target at most this often; the counter carries every occurrence.
PARSE_LOG_INTERVAL = 600.0


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
        builder = SnapshotBuilder({"source": self.kind, "target": self.name}, self.max_series)
        started = time.monotonic()
        requests_before = self.source.vendor_requests
        try:
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
        if outcome.idle:
            if self.up is not False:
                self.store.put(self.data_key, builder.build())
        elif outcome.ok:
            self.up = True
            self.last_success = self.last_data = self._clock()
            self.store.put(self.data_key, builder.build())
        else:
            self.up = False
            self.errors[outcome.reason] += 1
            self.store.remove(self.data_key)
        self.last_poll_at = self._clock()
        if not outcome.idle:
            # An idle poll (no vendor request) changes no state, so it starts no "since".
            if self._last_real is None or self._last_real.ok != outcome.ok:
                self.state_since = self.last_poll_at
            self._log_transition(outcome)
            self._last_real = outcome
        self._log_parse_errors(builder.report.parse_errors)
        self.last = outcome
        self.publish_self()
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
        self.store.put(self.self_key, prebuilt or self.self_snapshot())
        self._published = True

    def self_snapshot(self) -> Snapshot:
        out = SnapshotBuilder({"source": self.kind, "target": self.name})
        m = selfmetrics
        if self.up is not None:
            out.add(m.TARGET_UP, 1.0 if self.up else 0.0)
        if self.last is not None:
            out.add(m.POLL_DURATION, self.last.duration)
        if self.last_success is not None:
            out.add(m.LAST_SUCCESS, self.last_success)
        data_time = self.data_time()
        if data_time is not None:
            out.add(m.LAST_DATA, data_time)
        out.add(m.POLLS, float(self.polls))
        out.add(m.POLLS_SKIPPED, float(self.skipped))
        for reason in REASONS:
            out.add(m.POLL_ERRORS, float(self.errors[reason]), reason=reason)
        try:
            declared = set(self.source.parse_fields())
        except Exception:
            declared = set()
            self._log.exception("parse_fields_crashed")
        for field in sorted(declared | set(self.parse_errors)):
            out.add(m.PARSE_ERRORS, float(self.parse_errors[field]), field=field)
        for reason in ("series_limit", "duplicate"):
            out.add(m.SERIES_DROPPED, float(self.dropped[reason]), reason=reason)
        data = self.store.get(self.data_key)
        if data is not None:
            out.add(m.TARGET_SERIES, float(data.series))
        state_errors = self.source.ctx.state.errors
        for reason in STATE_REASONS:
            out.add(m.STATE_ERRORS, float(state_errors[(self.name, reason)]), reason=reason)
        try:
            self.source.self_metrics(out)
        except Exception:
            self._log.exception("self_metrics_crashed")
        return out.build()

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


@dataclass(frozen=True)
class Job:
    """A runtime's trigger and first run, built before the runtime is scheduled: whatever can
    raise does so while a reload can still be abandoned."""

    trigger: IntervalTrigger
    first: datetime


class Scheduler:
    """APScheduler's AsyncIOScheduler with one interval job per target."""

    def __init__(self, jitter: float) -> None:
        self.jitter = jitter
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._runtimes: dict[str, TargetRuntime] = {}
        self._scheduler.add_listener(self._on_max_instances, EVENT_JOB_MAX_INSTANCES)

    def start(self) -> None:
        if not self._scheduler.running:
            self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def job(self, runtime: TargetRuntime, jitter: float | None = None, first_run_within: float | None = None) -> Job:
        interval = runtime.interval
        jitter = self.jitter if jitter is None else jitter
        # Spread the first polls so a restart does not hit every vendor in the same second.
        spread = min(interval, 5.0) if first_run_within is None else first_run_within
        first = datetime.now(UTC) + timedelta(seconds=random.uniform(0, spread))
        return Job(IntervalTrigger(seconds=interval, jitter=jitter * interval or None), first)

    def add(self, runtime: TargetRuntime, schedule: bool = True, first_run_within: float | None = None,
            job: Job | None = None) -> None:
        """Take a runtime; with schedule=False it is only known (the `once` command polls it)."""
        if schedule and job is None:
            job = self.job(runtime, first_run_within=first_run_within)
        self._runtimes[runtime.name] = runtime
        if schedule and job is not None:
            self.schedule(runtime, job)

    def schedule(self, runtime: TargetRuntime, job: Job) -> None:
        """Start polling a runtime already added."""
        if self._runtimes.get(runtime.name) is not runtime:
            return  # retired since (a later reload or shutdown)
        self._scheduler.add_job(
            runtime.run_once,
            job.trigger,
            id=runtime.name,
            name=runtime.name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(runtime.interval)),
            next_run_time=job.first,
            replace_existing=True,
        )

    def remove(self, name: str) -> TargetRuntime | None:
        runtime = self._runtimes.pop(name, None)
        if runtime is not None and self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)
        return runtime

    def runtimes(self) -> Iterable[TargetRuntime]:
        return list(self._runtimes.values())

    def _on_max_instances(self, event: JobSubmissionEvent) -> None:
        runtime = self._runtimes.get(event.job_id)
        if runtime is not None:
            runtime.mark_skipped()
