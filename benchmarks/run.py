"""Benchmarks: print figures, pass or fail nothing. Talks only to 127.0.0.1.

    python3 benchmarks/run.py [--devices 500] [--series 100000] [--stall-series 500000] [--config-targets 10000]

1. scrape: cost of /metrics with many series, unchanged (cache hit) and after one target's
   snapshot changed (join of cached text), next to prometheus_client's generate_latest for the
   same series, plus the store's memory.
2. scrape stall: scrapes of a 500k-series store in a worker thread while a probe measures how
   long the event loop is held up.
3. poll: polling many simulated endpoints over HTTP once (wall time, polls per second, CPU).
4. normalize: vendor strings per second.
5. process metrics: one timer refresh of process_*/python_* against collecting them on every
   scrape, as prometheus_client's default registry would.
6. config: loading a file of many targets (YAML alone, old pure-Python YAML for comparison, and
   YAML plus validation), and the scrapes answered while the daemon reloads that file.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitord import normalize
from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder, Store

GAUGE = MetricDef("rtc_bench_value_seconds", "gauge", "Benchmark series.", labels=("stream", "site"), unit="seconds")


def timed(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cpu_timed(fn: Any) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def bench_scrape(total_series: int) -> None:
    targets = 1000
    per_target = max(1, total_series // targets)
    store = Store()
    gc.collect()
    tracemalloc.start()
    for t in range(targets):
        out = SnapshotBuilder({"source": "endpoint", "target": f"room-{t}"}, max_series=per_target + 1)
        for i in range(per_target):
            out.add(GAUGE, i * 0.001, stream=str(i), site=f"site-{i % 7}")
        store.put(f"target/room-{t}/data", out.build())
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    series = store.series()
    store.render()
    hit = timed(store.render, 50)

    def changed() -> None:
        out = SnapshotBuilder({"source": "endpoint", "target": "room-0"}, max_series=per_target + 1)
        for i in range(per_target):
            out.add(GAUGE, i * 0.002, stream=str(i), site=f"site-{i % 7}")
        store.put("target/room-0/data", out.build())
        store.render()

    miss = timed(changed, 10)
    gz = timed(lambda: store.render(compress=True), 1)

    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    g = Gauge("rtc_bench_value_seconds", "Benchmark series.", ["source", "target", "stream", "site"],
              registry=registry)
    for t in range(targets):
        for i in range(per_target):
            g.labels("endpoint", f"room-{t}", str(i), f"site-{i % 7}").set(i * 0.001)
    client = timed(lambda: generate_latest(registry), 3)

    print(f"scrape: {series} series in {targets} targets, store holds {current / 2**20:.1f} MiB")
    print(f"  unchanged (cached)          {hit * 1e3:9.3f} ms per scrape")
    print(f"  one target changed          {miss * 1e3:9.3f} ms (re-render one target + join)")
    print(f"  first gzip of the body      {gz * 1e3:9.3f} ms (then cached)")
    print(f"  prometheus_client generate  {client * 1e3:9.3f} ms per scrape, for comparison")


async def bench_scrape_stall(total_series: int) -> None:
    """Scrapes of a big store while a probe measures how late the event loop wakes: rendering and
    gzip run in a worker thread, so polls (here: the probe) keep their pace."""
    targets = 10_000
    per_target = max(1, total_series // targets)
    store = Store()
    for t in range(targets):
        out = SnapshotBuilder({"source": "endpoint", "target": f"room-{t}"}, max_series=per_target + 1)
        for i in range(per_target):
            out.add(GAUGE, i * 0.001, stream=str(i), site=f"site-{i % 7}")
        store.put(f"target/room-{t}/data", out.build())
    stalls: list[float] = []
    running = True

    async def probe() -> None:
        while running:
            before = time.perf_counter()
            await asyncio.sleep(0.002)
            stalls.append(time.perf_counter() - before - 0.002)

    task = asyncio.create_task(probe())
    timings: dict[bool, list[float]] = {False: [], True: []}
    size = {}
    for n in range(6):
        compress = n % 2 == 1
        # A poll ended since the last scrape: nothing is cached.
        store.put("target/room-0/self", SnapshotBuilder({"source": "endpoint", "target": "room-0"}).build())
        start = time.perf_counter()
        body = await store.render_async(compress=compress)
        timings[compress].append(time.perf_counter() - start)
        size[compress] = sum(len(piece) for piece in body)
        await asyncio.sleep(0.05)
    running = False
    await task
    store.put("target/room-0/self", SnapshotBuilder({"source": "endpoint", "target": "room-0"}).build())
    start = time.perf_counter()
    store.render(compress=True)
    blocking = time.perf_counter() - start
    stalls.sort()
    print(f"scrape of {store.series()} series ({size[False] / 2**20:.0f} MiB, gzip {size[True] / 2**20:.0f} MiB), "
          f"rendered in a worker thread:")
    print(f"  scrape time plain / gzip     {min(timings[False]) * 1e3:7.0f} / {min(timings[True]) * 1e3:.0f} ms (best)")
    print(f"  event-loop stall p99 / max   {stalls[int(0.99 * len(stalls))] * 1e3:7.1f} / {stalls[-1] * 1e3:.1f} ms "
          f"({len(stalls)} probes of 2 ms)")
    print(f"  the same render + gzip on the loop would block it {blocking * 1e3:.0f} ms")


async def bench_poll(devices: int) -> None:
    from aiohttp import web

    from monitord.app import Daemon
    from monitord.config import parse
    from monitord.simulators import endpoint as sim

    app = sim.create_app(scenario="live")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    await sim_control(url, {"in_call": True})
    targets = [
        {"name": f"dev-{i}", "source": "endpoint", "url": f"{url}/d/dev-{i}", "username": sim.DEFAULT_USER,
         "password": sim.DEFAULT_PASSWORD, "interval": "60s", "timeout": "30s"}
        for i in range(devices)
    ]
    daemon = Daemon(parse({"http": {"max_connections_per_host": 64}, "targets": targets}))
    daemon.start(schedule=False)
    try:
        for label in ("first poll (with login)", "steady poll (session reused)"):
            cpu0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime
            start = time.perf_counter()
            outcomes = await daemon.poll_all_once()
            wall = time.perf_counter() - start
            cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu0
            ok = sum(o.ok for o in outcomes.values())
            print(f"poll: {devices} endpoints, {label}: {wall:.2f} s wall, {devices / wall:.0f} polls/s, "
                  f"{cpu:.2f} s CPU (daemon and simulator share this process), {ok} ok, "
                  f"{daemon.store.series()} series")
    finally:
        await daemon.close()
        await runner.cleanup()


async def sim_control(url: str, body: dict[str, Any]) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.post(f"{url}/_sim/endpoint", json=body) as r:
        r.raise_for_status()


def bench_normalize(quiet: bool = False) -> float:
    inputs = ["5ms", "0.00%", "35.62k", "962.76k", "720p", "--", "1920*1080", "12.5%", "1.2M", "Unknown"]
    fns = [normalize.duration_seconds, normalize.ratio, normalize.bitrate_bits_per_second,
           normalize.bitrate_bits_per_second, normalize.resolution, normalize.ratio, normalize.resolution,
           normalize.ratio, normalize.bitrate_bits_per_second, normalize.resolution]
    pairs = list(zip(fns, inputs, strict=True))

    def run() -> None:
        for _ in range(2_000):
            for fn, raw in pairs:
                fn(raw)

    # Best of many short runs, as timeit does: on a shared machine the slower runs measure the
    # neighbours, not the code.
    best = timed(run, 15)
    rate = 2_000 * len(pairs) / best
    if not quiet:
        print(f"normalize: {rate / 1e6:.2f} M values/s")
    return rate


def bench_process() -> None:
    from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest

    from monitord.process import REFRESH_SECONDS, ProcessMetrics

    store = Store()
    metrics = ProcessMetrics(store)
    refresh = timed(metrics.refresh, 50)
    store.render()
    hit = timed(store.render, 200)
    registry = CollectorRegistry(auto_describe=False)
    for collector in (ProcessCollector, GCCollector, PlatformCollector):
        collector(registry=registry)
    per_scrape = timed(lambda: generate_latest(registry), 50)
    print(f"process metrics: refresh {refresh * 1e3:.3f} ms every {REFRESH_SECONDS:g} s; "
          f"cached scrape {hit * 1e6:.1f} us; collecting per scrape would cost {per_scrape * 1e3:.3f} ms")


def write_big_config(path: Path, targets: int) -> None:
    lines = ["global: {interval: 60s, timeout: 10s}", "targets:"]
    for i in range(targets):
        url = f"https://10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        lines += [f"  - name: room-{i}", "    source: endpoint", f"    url: {url}",
                  "    username: admin", "    password: bench-password"]
    path.write_text("\n".join(lines) + "\n")


def bench_config(targets: int) -> None:
    import tempfile

    import yaml

    from monitord import config, strictyaml

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yml"
        write_big_config(path, targets)
        text = path.read_text()
        old = timed(lambda: yaml.load(text, Loader=yaml.SafeLoader), 1)
        def yaml_only() -> None:
            strictyaml.read(text)

        new = timed(yaml_only, 2)
        full = timed(lambda: config.load(path), 2)
        # CPU seconds too: on a shared machine the wall figures mostly measure the neighbours.
        cpu = {name: cpu_timed(fn) for name, fn in (("old", lambda: yaml.load(text, Loader=yaml.SafeLoader)),
                                                     ("new", yaml_only), ("full", lambda: config.load(path)))}
        print(f"config: {targets} targets ({len(text) / 1e6:.1f} MB): YAML {new:.2f} s wall / {cpu['new']:.2f} s CPU "
              f"(pure-Python SafeLoader {old:.2f} s / {cpu['old']:.2f} s CPU), YAML + validation {full:.2f} s wall "
              f"/ {cpu['full']:.2f} s CPU")


async def bench_reload(targets: int) -> None:
    import tempfile

    import aiohttp
    from aiohttp import web

    from monitord.app import Daemon
    from monitord.config import load
    from monitord.web import build_app

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yml"
        write_big_config(path, 1)
        daemon = Daemon(load(path), config_path=path)
        daemon.start(schedule=False)
        runner = web.AppRunner(build_app(daemon), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
        write_big_config(path, targets)
        latencies: list[float] = []
        try:
            async with aiohttp.ClientSession() as session:
                start = time.perf_counter()
                reload = asyncio.ensure_future(daemon.reload())
                while not reload.done():
                    t0 = time.perf_counter()
                    async with session.get(url) as resp:
                        await resp.read()
                    latencies.append(time.perf_counter() - t0)
                    await asyncio.sleep(0.05)
                problems = await reload
                took = time.perf_counter() - start
        finally:
            await daemon.close()
            await runner.cleanup()
    latencies.sort()
    print(f"reload: {targets} targets in {took:.2f} s ({'ok' if not problems else problems[0]}); "
          f"{len(latencies)} scrapes meanwhile, p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")


def main() -> None:
    from monitord import logs

    logs.configure("warning")  # per-target "up" lines would drown the figures
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--stall-series", type=int, default=500_000)
    parser.add_argument("--config-targets", type=int, default=10_000)
    args = parser.parse_args()
    bench_normalize()
    bench_process()
    bench_scrape(args.series)
    asyncio.run(bench_scrape_stall(args.stall_series))
    asyncio.run(bench_poll(args.devices))
    bench_config(args.config_targets)
    asyncio.run(bench_reload(args.config_targets))


if __name__ == "__main__":
    main()
