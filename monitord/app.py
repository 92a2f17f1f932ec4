"""Wiring: config -> HTTP client -> runtimes on the scheduler -> web server; reload and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import platform
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from monitord import __version__, handover, logs, selfmetrics
from monitord.config import Config, ConfigError, TargetConfig, load
from monitord.heap import HeapFreezer, return_large_blocks_to_the_os
from monitord.http import HttpClient, Limiters
from monitord.process import ProcessMetrics
from monitord.scheduler import Outcome, Scheduler, TargetRuntime
from monitord.sharding import ShardSpec
from monitord.snapshot import SnapshotBuilder, Store
from monitord.sources import REGISTRY
from monitord.sources.base import Source, SourceContext
from monitord.state import StateStore
from monitord.web import Surface, build_app
from monitord.webguard import GuardedSite

if TYPE_CHECKING:
    from monitord.replica import Replica


def parse_listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address must be HOST:PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


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
        self.poll_durations = selfmetrics.PollDurations(self.store)
        self.store.add_refresher(self.poll_durations.refresh)
        self.process = ProcessMetrics(self.store)
        self._process_task: asyncio.Task[None] | None = None
        self._new_resources(config)
        self.scheduler = Scheduler(config.global_.jitter)
        self._reload_ok = True
        self._reload_time = clock()
        self._reload_lock = asyncio.Lock()
        # Set by serve(): the long-running daemon freezes its start-up heap (see heap.py).
        self.heap: HeapFreezer | None = None
        # False while a standby (monitord.leader): no runtime exists and no vendor is polled.
        self.polling = False
        # Extra self-metrics of the replica (leader election, state handover), added to "global".
        self.cluster_metrics: list[Callable[[SnapshotBuilder], None]] = []
        # Set by monitord.replica when a Lease decides whether this replica polls; the elector
        # then publishes monitord_leader itself.
        self.elected = False

    def _new_resources(self, config: Config) -> None:
        self.http = HttpClient(config.http, config.global_.max_body_bytes)
        self.limiters = Limiters()
        self.state = StateStore(config.global_.state_dir)

    def _runtime(self, target: TargetConfig) -> TargetRuntime:
        ctx = SourceContext(http=self.http, limiters=self.limiters, state=self.state, clock=self.clock,
                            once=self.once, time_scale=self.config.global_.time_scale)
        source = self.registry[target.source](target, ctx)
        return TargetRuntime(
            source,
            self.store,
            interval=self.config.interval_of(target),
            timeout=self.config.timeout_of(target),
            max_series=self.config.global_.max_series_per_target,
            clock=self.clock,
            observe=self.poll_durations.observe,
        )

    def start(self, schedule: bool = True, first_run_within: float | None = None) -> None:
        if self.config.global_.state_dir is None and self.config.targets:
            self.log.info("state_in_memory", hint="set global.state_dir to keep event counts across restarts")
        self.polling = True
        for target in self.config.targets:
            self.scheduler.add(self._runtime(target), schedule=schedule, first_run_within=first_run_within)
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
        self._new_resources(self.config)
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
        """Swap to a new config. Targets whose config (and the shared settings) did not change
        keep their runtime, state and sessions; the rest are closed and started afresh."""
        self.full_config = new
        new = self.shard.restrict(new, self.registry)
        old = self.config
        shared_changed = (old.http, old.global_) != (new.http, new.global_)
        old_by_name = {t.name: t for t in old.targets}
        self.config = new
        to_close: list[TargetRuntime] = []
        for name, target in old_by_name.items():
            if shared_changed or name not in {t.name for t in new.targets} or target != new.target(name):
                rt = self.scheduler.remove(name)
                if rt is not None:
                    to_close.append(rt)
        old_http = self.http
        if shared_changed:
            self._new_resources(new)
            self.scheduler.jitter = new.global_.jitter
        for target in new.targets if self.polling else ():
            if not any(rt.name == target.name for rt in self.scheduler.runtimes()):
                self.scheduler.add(self._runtime(target))
        await asyncio.gather(*(rt.close() for rt in to_close))
        if shared_changed:
            await old_http.close()
        if self.heap is not None and to_close:
            self.heap.thaw()
        self.publish_global()

    async def reload(self) -> list[str]:
        async with self._reload_lock:
            if self.config_path is None:
                return ["no configuration file to reload (demo mode)"]
            try:
                new = load(self.config_path, self.registry)
            except ConfigError as exc:
                self._reload_ok = False
                self.publish_global()
                self.log.error("reload_failed", problems=exc.problems, action="previous configuration kept")
                return exc.problems
            await self.apply(new)
            self._reload_ok = True
            self._reload_time = self.clock()
            self.publish_global()
            self.log.info("reloaded", targets=len(new.targets))
            return []

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
