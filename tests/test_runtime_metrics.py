"""The exporter's own process/runtime metrics and the per-source poll-duration histogram."""

from __future__ import annotations

import asyncio
import time

from helpers import assert_promtool_clean, parse_exposition, value
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from test_endpoint import faults, target

from monitord import process, selfmetrics
from monitord.simulators import endpoint as sim
from monitord.snapshot import OPENMETRICS
from monitord.web import build_app


def test_declared_runtime_families_are_what_prometheus_client_collects() -> None:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    collected = {(f.name, f.type, f.documentation) for f in registry.collect()}
    declared = {(m.name, m.type, m.help) for m in process.RUNTIME}
    assert collected == declared


async def test_process_metrics_are_served_from_the_cache(start_sim, make_daemon, aiohttp_client) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url)])
    await daemon.poll_all_once()
    s = parse_exposition(daemon.store.render().decode())
    for name in ("process_resident_memory_bytes", "process_virtual_memory_bytes", "process_start_time_seconds",
                 "process_cpu_seconds_total", "process_open_fds", "process_max_fds"):
        assert (value(s, name) or 0) > 0, name
    assert value(s, "python_gc_collections_total", generation="0") is not None
    assert value(s, "python_info", implementation="CPython") == 1
    # A scrape reads nothing: with no poll and no refresh in between, two scrapes get the very
    # same cached body, process figures included.
    client = await aiohttp_client(build_app(daemon))
    first = await (await client.get("/metrics")).read()
    version = daemon.store.version
    second = await (await client.get("/metrics")).read()
    assert first == second and daemon.store.version == version
    assert daemon.store.render() is daemon.store.render()
    daemon.process.refresh()
    assert daemon.store.version > version


async def test_process_metrics_refresh_on_a_timer(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, interval="1h", timeout="3s")], schedule=True)
    before = daemon.store.get(process.STORE_KEY)
    assert before is not None
    for _ in range(int(process.REFRESH_SECONDS * 3 / 0.2)):
        if daemon.store.get(process.STORE_KEY) is not before:
            break
        await asyncio.sleep(0.2)
    assert daemon.store.get(process.STORE_KEY) is not before, "no refresh within three timer periods"


async def test_poll_duration_histogram_per_source(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, name="a"), target(url, name="b")])
    name = selfmetrics.SOURCE_POLL_DURATION.name
    s = parse_exposition(daemon.store.render().decode())
    # The series exist at zero before the first poll.
    assert value(s, f"{name}_count", source="endpoint") == 0
    assert value(s, f"{name}_bucket", source="endpoint", le="+Inf") == 0
    await daemon.poll_all_once()
    await faults(url, status=503)
    await daemon.runtime("a").run_once()
    body = daemon.store.render()
    s = parse_exposition(body.decode())
    assert value(s, f"{name}_count", source="endpoint") == 3, "failed polls count too"
    buckets = sorted(((float(dict(ls)["le"]), v) for (n, ls), v in s.items() if n == f"{name}_bucket"))
    assert len(buckets) == len(selfmetrics.POLL_BUCKETS) + 1
    assert [v for _, v in buckets] == sorted(v for _, v in buckets) and buckets[-1][1] == 3
    total = value(s, f"{name}_sum", source="endpoint")
    assert total is not None and 0 < total < 3 * 3.0
    await assert_promtool_clean(body)
    families = {f.name: f for f in om_families(daemon.store.render(OPENMETRICS).decode())}
    assert families[name].type == "histogram"
    assert families["process_cpu_seconds"].type == "counter"


async def test_poll_start_delay_histogram_shows_a_busy_event_loop(start_sim, make_daemon) -> None:
    """Polls that start late because the event loop was held up are counted by how late; the
    series exist at zero before any poll, and a delay of a quarter of a second lands above the
    0.1 s bucket (the alert MonitordOverloaded reads this histogram)."""
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, name=f"t{i}", interval="15s") for i in range(5)], schedule=False)
    name = selfmetrics.POLL_START_DELAY.name
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, f"{name}_count", source="endpoint") == 0
    assert value(s, f"{name}_bucket", source="endpoint", le="+Inf") == 0
    # Every first poll due within 50 ms; the loop is then held for 300 ms, so each starts late.
    daemon.scheduler.start()
    for runtime in daemon.scheduler.runtimes():
        daemon.scheduler.schedule(runtime, daemon.scheduler.job(runtime, first_run_within=0.05))
    time.sleep(0.3)  # noqa: ASYNC251 - holding the event loop is the point
    deadline = time.monotonic() + 30
    while any(rt.polls == 0 for rt in daemon.scheduler.runtimes()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, f"{name}_count", source="endpoint") == 5
    assert value(s, f"{name}_bucket", source="endpoint", le="0.1") == 0
    assert value(s, f"{name}_bucket", source="endpoint", le="+Inf") == 5
    total = value(s, f"{name}_sum", source="endpoint")
    assert total is not None and 5 * 0.2 < total < 5 * 30
