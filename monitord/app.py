"""Wiring: config -> HTTP client -> runtimes on the scheduler -> web server; reload and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import platform
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from monitord import __version__, handover, logs, selfmetrics
from monitord.config import Config, ConfigError, TargetConfig, load, parse_listen_address
from monitord.heap import HeapFreezer, return_large_blocks_to_the_os
from monitord.http import HttpClient
from monitord.process import ProcessMetrics
from monitord.scheduler import Job, Outcome, Scheduler, TargetRuntime
from monitord.sharding import ShardSpec
from monitord.snapshot import Snapshot, SnapshotBuilder, Store
from monitord.sources import REGISTRY
from monitord.sources.base import Source, SourceContext
from monitord.state import StateStore
from monitord.vendor.scope import Scope, SharedConflict
from monitord.web import Surface, build_app
from monitord.webguard import GuardedSite

if TYPE_CHECKING:
    from monitord.replica import Replica


@dataclass(frozen=True)
class Resources:
    """What the targets of one config share: the HTTP client, the state store and the scope of
    shared vendor objects (budgets, tokens, bans)."""

    http: HttpClient
    state: StateStore
    scope: Scope

    @classmethod
    def build(cls, config: Config) -> Resources:
        state = StateStore(config.global_.state_dir)  # creates the directory: may raise OSError
        return cls(HttpClient(config.http, config.global_.max_body_bytes), state, Scope())


def shared_conflicts(config: Config, registry: Mapping[str, type[Source[Any]]] = REGISTRY) -> list[str]:
    """Targets of `config` that would share a vendor object (a rate limiter, a budget, a ban)
    with different settings: what SharedConflict would refuse at start, found before anything
    starts (the sources are built once against a scope of their own, then dropped; building a
    source sends nothing)."""
    ctx = SourceContext(http=HttpClient(config.http, config.global_.max_body_bytes), scope=Scope(),
                        time_scale=config.global_.time_scale)
    problems = []
    for target in config.targets:
        try:
            registry[target.source](target, ctx)
        except SharedConflict as exc:
            problems.append(f"target {target.name}: {exc}")
    return problems


@dataclass
class _Plan:
    """A reload, built in full before anything running is touched."""

    full_config: Config  # the whole file; `config` is this shard's part of it
    config: Config
    resources: Resources | None  # new shared resources, or None when the old ones stay
    keep: set[str]  # targets whose runtime carries on unchanged
    start: list[tuple[TargetRuntime, Job, Snapshot]] = field(default_factory=list)

    async def abandon(self) -> None:
        await asyncio.gather(*(rt.close() for rt, _, _ in self.start), return_exceptions=True)
        if self.resources is not None:
            await self.resources.http.close()


class _Pauses:
    """Awaited in a long loop on the event loop (thousands of targets): gives way to scrapes and
    polls every 20 ms of work."""

    def __init__(self) -> None:
        self._since = time.monotonic()

    async def __call__(self) -> None:
        if time.monotonic() - self._since >= 0.02:
            await asyncio.sleep(0)
            self._since = time.monotonic()


class Daemon:
    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        registry: Mapping[str, type[Source[Any]]] = REGISTRY,
        clock: Callable[[], float] = time.time,
        once: bool = False,
        shard: ShardSpec | None = None,
    ) -> None:
        # The whole file (every shard's targets: peers ask for state of targets this shard no
        # longer owns) and this shard's part of it, which is what the daemon polls.
        self.shard = shard or ShardSpec()
        self.full_config = config
        config = self.shard.restrict(config, registry)
        self.config = config
        self.once = once
        self.config_path = config_path
        self.registry = registry
        self.clock = clock
        self.store = Store()
        self.log = logs.get("monitord")
        self.poll_durations = selfmetrics.SourceHistogram(self.store, selfmetrics.SOURCE_POLL_DURATION,
                                                          selfmetrics.POLL_BUCKETS)
        self.start_delays = selfmetrics.SourceHistogram(self.store, selfmetrics.POLL_START_DELAY,
                                                        selfmetrics.START_DELAY_BUCKETS)
        for histogram in (self.poll_durations, self.start_delays):
            self.store.add_refresher(histogram.refresh)
        self.process = ProcessMetrics(self.store)
        self._process_task: asyncio.Task[None] | None = None
        self._use(Resources.build(config))
        self.scheduler = Scheduler(config.global_.jitter, observe_delay=self.start_delays.observe)
        self._reload_ok = True
        self._reload_time = clock()
        self._reload_lock = asyncio.Lock()
        # Set by serve(): the long-running daemon freezes its start-up heap (see heap.py).
        self.heap: HeapFreezer | None = None
        # "reading" while the file is read and validated (in a thread), "starting" while the new
        # runtimes are built, "" otherwise.
        self.reload_phase = ""
        # False while a standby (monitord.leader): no runtime exists and no vendor is polled.
        self.polling = False
        # Extra self-metrics of the replica (leader election, state handover), added to "global".
        self.cluster_metrics: list[Callable[[SnapshotBuilder], None]] = []
        # Set by monitord.replica when a Lease decides whether this replica polls; the elector
        # then publishes monitord_leader itself.
        self.elected = False

    def _use(self, resources: Resources) -> None:
        self.resources = resources
        self.http, self.state = resources.http, resources.state

    def _runtime(self, target: TargetConfig, config: Config | None = None,
                 resources: Resources | None = None) -> TargetRuntime:
        config = self.config if config is None else config
        res = self.resources if resources is None else resources
        interval, timeout = config.interval_of(target), config.timeout_of(target)
        ctx = SourceContext(http=res.http, state=res.state, clock=self.clock,
                            once=self.once, time_scale=config.global_.time_scale, interval=interval,
                            timeout=timeout, scope=res.scope)
        source = self.registry[target.source](target, ctx)
        return TargetRuntime(
            source,
            self.store,
            interval=interval,
            timeout=timeout,
            max_series=config.global_.max_series_per_target,
            clock=self.clock,
            observe=self.poll_durations.observe,
        )

    def start(self, schedule: bool = True, first_run_within: float | None = None) -> None:
        if self.config.global_.state_dir is None and self.config.targets:
            self.log.info("state_in_memory", hint="set global.state_dir to keep event counts across restarts")
        self.polling = True
        for target in self.config.targets:
            runtime = self._runtime(target)
            self.scheduler.add(runtime, schedule=schedule, first_run_within=first_run_within)
            runtime.publish_self()
        if schedule:
            self.scheduler.start()
            self.start_process_metrics()
        self.process.refresh()
        self.publish_global()

    def start_process_metrics(self) -> None:
        """The process's own health; also on a standby, which never calls start()."""
        if self._process_task is None:
            self.process.refresh()
            self._process_task = asyncio.get_running_loop().create_task(self.process.run())

    async def stop_polling(self, grace: float = 0.0) -> None:
        """Become a standby. With no grace (the lease is lost) no vendor request leaves from the
        moment this is called and requests in flight are aborted. With a grace (the lease is
        still held and about to be given back) polls in flight may finish and sources log out
        for that long; then the client is fenced all the same. Either way the runtimes close
        and take their series with them."""
        self.polling = False
        client = self.http
        if grace <= 0:
            await client.fence()
        runtimes = [rt for rt in (self.scheduler.remove(rt.name) for rt in self.scheduler.runtimes()) if rt]
        # Fresh resources for a later term: budgets and tokens are re-read from the state store.
        self._use(Resources.build(self.config))
        closing = asyncio.gather(*(rt.close() for rt in runtimes))
        if grace > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.shield(closing)
            await client.fence()
        await closing
        if self.heap is not None and runtimes:
            self.heap.thaw()  # the retired runtimes' cycles must stay collectable
        self.publish_global()

    @property
    def reload_ok(self) -> bool:
        """Whether the newest configuration (re)load succeeded."""
        return self._reload_ok

    @property
    def reload_time(self) -> float:
        """When the configuration in force was loaded."""
        return self._reload_time

    def runtime(self, name: str) -> TargetRuntime:
        for rt in self.scheduler.runtimes():
            if rt.name == name:
                return rt
        raise KeyError(name)

    async def poll_all_once(self) -> dict[str, Outcome]:
        runtimes = list(self.scheduler.runtimes())
        outcomes = await asyncio.gather(*(rt.run_once() for rt in runtimes))
        return {rt.name: outcome for rt, outcome in zip(runtimes, outcomes, strict=True)}

    def ready(self) -> bool:
        return all(rt.last is not None for rt in self.scheduler.runtimes())

    async def apply(self, new: Config) -> None:
        """Swap to a new config, all or nothing: every new runtime is built first, and a failure
        there leaves the running config untouched. Targets whose config (and the shared settings)
        did not change keep their runtime, state and sessions; the rest are closed and started
        afresh."""
        plan = await self._prepare(new)
        await self._commit(plan)

    async def _prepare(self, full: Config) -> _Plan:
        new = self.shard.restrict(full, self.registry)
        old = self.config
        parse_listen_address(new.web.listen_address)  # validated by the config; a bind needs a restart
        shared_changed = (old.http, old.global_) != (new.http, new.global_)
        resources = Resources.build(new) if shared_changed else None
        old_by_name = {t.name: t for t in old.targets}
        keep = set() if shared_changed else {t.name for t in new.targets if old_by_name.get(t.name) == t}
        plan = _Plan(full, new, resources, keep)
        # Targets whose runtimes this reload replaces or removes do not hold shared settings
        # against their successors (a rate changed for every target at once is no conflict).
        (resources or self.resources).scope.retiring = frozenset(t.name for t in old.targets if t.name not in keep)
        pause = _Pauses()
        try:
            # A standby (not polling) has no runtimes: it only takes the new config.
            for target in (t for t in new.targets if t.name not in keep and self.polling):
                runtime = self._runtime(target, new, resources)
                job = self.scheduler.job(runtime, jitter=new.global_.jitter)
                plan.start.append((runtime, job, runtime.self_snapshot()))
                await pause()
        except BaseException:
            self.resources.scope.retiring = frozenset()
            await plan.abandon()
            raise
        return plan

    async def _commit(self, plan: _Plan) -> None:
        # No await until the swap is complete: nothing observes half of it.
        if plan.config.web.listen_address != self.config.web.listen_address:
            self.log.warning("listen_address_not_reloaded", configured=plan.config.web.listen_address,
                             hint="the server keeps its address until the next start")
        self.full_config = plan.full_config
        self.config = plan.config
        retired = [rt for rt in self.scheduler.runtimes() if rt.name not in plan.keep]
        for runtime in retired:
            self.scheduler.remove(runtime.name)
            runtime.retire()
        old_resources = self.resources
        if plan.resources is not None:
            self._use(plan.resources)
            self.scheduler.jitter = plan.config.global_.jitter
        for runtime, _, self_metrics in plan.start:
            self.scheduler.add(runtime, schedule=False)
            runtime.publish_self(self_metrics)
        self.publish_global()
        # The swap is done; the timers follow, with pauses for scrapes and polls between batches.
        # A poll starting a moment later is within the random spread of first polls anyway.
        pause = _Pauses()
        for runtime, job, _ in plan.start:
            self.scheduler.schedule(runtime, job)
            await pause()
        await asyncio.gather(*(rt.close() for rt in retired))
        self.resources.scope.retiring = frozenset()
        if plan.resources is not None:
            await old_resources.http.close()
        if self.heap is not None and retired:
            # The retired runtimes were frozen with the heap: let the collector see them again.
            self.heap.thaw()

    async def reload(self) -> list[str]:
        """Reload the config file; the problems, or [] when the new config is in force."""
        async with self._reload_lock:
            if self.config_path is None:
                return ["no configuration file to reload (demo mode)"]
            # Reading a big file and building its runtimes allocate millions of objects, which
            # triggers full cyclic collections again and again (~0.5 s each at 10,000 targets,
            # holding the GIL, so the event loop too). What is built lives on: those collections
            # would find next to nothing. Collections resume when the reload is over.
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                # Reading and validating 10,000 targets takes seconds: off the event loop, so
                # scrapes and polls go on meanwhile.
                self.reload_phase = "reading"
                new = await asyncio.to_thread(load, self.config_path, self.registry)
                self.reload_phase = "starting"
                await self.apply(new)
            except ConfigError as exc:
                problems = exc.problems
            except Exception as exc:  # building the new runtimes failed: the old ones run on
                problems = [f"cannot start the new configuration: {type(exc).__name__}: {logs.scrub(str(exc))}"]
            else:
                self._reload_ok = True
                self._reload_time = self.clock()
                self.publish_global()
                self.log.info("reloaded", targets=len(new.targets))
                return []
            finally:
                self.reload_phase = ""
                if gc_was_enabled:
                    gc.enable()
            self._reload_ok = False
            self.publish_global()
            self.log.error("reload_failed", problems=problems, action="previous configuration kept")
            return problems

    def publish_global(self) -> None:
        out = SnapshotBuilder({})
        out.info(selfmetrics.BUILD_INFO, version=__version__, python_version=platform.python_version())
        out.add(selfmetrics.RELOAD_OK, 1.0 if self._reload_ok else 0.0)
        out.add(selfmetrics.RELOAD_TIME, self._reload_time)
        counts: dict[str, int] = {}
        for target in self.config.targets:
            counts[target.source] = counts.get(target.source, 0) + 1
        for kind, count in sorted(counts.items()):
            out.add(selfmetrics.TARGETS, float(count), source=kind)
        self.shard.publish(out, owned=len(self.config.targets), configured=len(self.full_config.targets))
        if not self.elected:
            out.add(selfmetrics.LEADER, 1.0 if self.polling else 0.0, shard=str(self.shard.shard))
        for publish in self.cluster_metrics:
            publish(out)
        self.store.put("global", out.build())
        self.poll_durations.ensure(counts)
        self.start_delays.ensure(counts)

    async def close(self) -> None:
        if self.heap is not None:
            self.heap.close()
        if self._process_task is not None:
            self._process_task.cancel()
        self.scheduler.shutdown()
        await asyncio.gather(*(rt.close() for rt in self.scheduler.runtimes()))
        await self.http.close()


async def serve(daemon: Daemon, listen_address: str, started: Callable[[str], None] | None = None,
                stop: asyncio.Event | None = None, replica: Replica | None = None,
                surface: Surface | None = None) -> None:
    """Run the daemon's web server until SIGTERM/SIGINT (or `stop`); SIGHUP reloads.
    With a `replica` (sharding, hot standby), it decides when the daemon polls."""
    host, port = parse_listen_address(listen_address)
    surface = surface or Surface()
    security = surface.security()
    app = build_app(daemon, surface)
    handover.add_routes(app, daemon)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = GuardedSite(runner, host, port, security=surface.security,
                       header_timeout=surface.timeouts.header, registry=surface.guards,
                       rejections=surface.rejections)
    await site.start()
    bound = runner.addresses[0] if runner.addresses else (host, port)
    scheme = "https" if security.tls else "http"
    url = f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{bound[1]}"
    return_large_blocks_to_the_os()
    daemon.heap = HeapFreezer(daemon.ready)
    daemon.heap.arm()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(daemon.reload()))
    # Announced only once the signals are ours: whoever acts on the announcement (a supervisor,
    # a test) may stop us at once, and that must be a clean shutdown.
    daemon.log.info("listening", url=url, targets=len(daemon.config.targets), tls=security.tls,
                    basic_auth=bool(security.users), lifecycle_api=surface.enable_lifecycle)
    if started is not None:
        started(url)
    replica_task = asyncio.create_task(replica.run()) if replica is not None else None
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        daemon.log.info("shutting_down")
        if replica is not None and replica_task is not None:
            replica_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replica_task
            await replica.stop()
        await daemon.close()
        await runner.cleanup()
