"""Scaling benchmark: one daemon process polling N fake endpoints at a 15 s interval.

    python3 benchmarks/scale.py [--devices 1000,2500,5000,7500,10000] [--window 60] [--interval 15]

Prints one row per device count; nothing passes or fails. Three kinds of process, all on
127.0.0.1, all started here and ended here by PID:

- the fake vendor (benchmarks/fakevendor.py), cheap, so the daemon's own cost shows; its CPU is
  reported apart from the daemon's;
- the daemon, in its own process (this file with --daemon): the real Daemon and web server, plus
  probes that record schedule lag (when the scheduler acted on a fire time minus that
  scheduled, jittered time), event-loop stalls (a 20 ms sleep loop: how late it wakes), poll durations and
  failures, and gen-2 GC pauses;
- this process: it waits until every target has been polled once (start-up, timeouts counted),
  lets one more interval pass, then measures a window: the daemon's and the vendor's CPU from
  /proc/<pid>/stat, RSS from /proc/<pid>/status, and scrapes of /metrics every 7.5 s alternating
  plain and gzip (like two Prometheus servers scraping every 15 s, one without gzip; the
  daemon's CPU includes what the scrapes cost).

Columns: cpu = daemon CPU in % of one core over the window (vendor's in brackets); lag99 =
schedule lag p99; stall99 = loop stall p99; poll99 = poll duration p99; tmo = poll timeouts since
start (start-up included); ready = seconds from process start until every target had one poll;
ms/poll = daemon CPU in the window (scrapes included) per poll that ended in it;
B/series = RSS / series; scrape = p50/p99 in ms (plain, then gzip) as the scraper sees them.

--scrape-every 0 measures the same window without scrapes (a control). MONITORD_SCALE_STALLS=1
(or =N ms) prints where the event loop's thread was during stalls longer than 100 ms (N ms).
MONITORD_SCALE_PROFILE=/tmp/x.prof profiles the daemon's window with cProfile (slows it down).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------------------ daemon process


def daemon_main(config_path: str, stats_path: str) -> None:
    asyncio.run(_daemon(json.loads(Path(config_path).read_text()), stats_path))


async def _daemon(config: dict[str, Any], stats_path: str) -> None:
    from monitord import logs
    from monitord.app import Daemon, serve
    from monitord.config import parse
    from monitord.scheduler import RunEvent

    logs.configure("warning")
    if os.environ.get("MONITORD_SCALE_SWITCH"):  # experiments: sys.setswitchinterval
        sys.setswitchinterval(float(os.environ["MONITORD_SCALE_SWITCH"]))
    if os.environ.get("MONITORD_SCALE_GC_THRESHOLD"):  # experiments: gc.set_threshold(a, b, c)
        gc.set_threshold(*(int(x) for x in os.environ["MONITORD_SCALE_GC_THRESHOLD"].split(",")))
    started = time.monotonic()
    daemon = Daemon(parse(config))
    window: dict[str, list[float]] = {"lag": [], "stall": [], "poll": [], "gc2": []}
    totals: dict[str, Any] = {"timeouts": 0, "errors": {}, "missed": 0, "skipped": 0, "polls": 0}
    ready_after: list[float] = []

    def on_event(event: RunEvent) -> None:
        if event.kind == "finished":
            outcome = event.outcome
            assert outcome is not None
            totals["polls"] += 1
            window["poll"].append(outcome.duration)
            if not outcome.ok:
                totals["errors"][outcome.reason] = totals["errors"].get(outcome.reason, 0) + 1
                totals["timeouts"] += outcome.reason == "timeout"
        else:
            window["lag"].append(event.late)
            if event.kind != "started":
                totals[event.kind] += 1

    daemon.scheduler.add_listener(on_event)
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            window["gc2"].append(time.perf_counter() - gc_started[0])

    gc.callbacks.append(on_gc)

    # MONITORD_SCALE_STALLS=1: a watchdog thread records where the event loop's thread is while
    # the loop has not ticked for 100 ms (what a long stall is made of); =N: for N ms. Only
    # stalls inside the measured window count.
    beat = [time.perf_counter()]
    stall_stacks: dict[str, int] = {}
    stall_after = float(os.environ.get("MONITORD_SCALE_STALLS") or 0)
    stall_after = 0.1 if stall_after == 1 else stall_after / 1e3
    if stall_after:
        import threading
        import traceback

        main = threading.get_ident()

        def watchdog() -> None:
            while True:
                time.sleep(0.01)
                if time.perf_counter() - beat[0] > stall_after:
                    frame = sys._current_frames().get(main)
                    if frame is not None:
                        stack = "".join(traceback.format_stack(frame)[-6:])
                        stall_stacks[stack] = stall_stacks.get(stack, 0) + 1

        threading.Thread(target=watchdog, daemon=True).start()

    async def probe() -> None:
        period = 0.02
        while True:
            before = time.perf_counter()
            beat[0] = before
            await asyncio.sleep(period)
            beat[0] = time.perf_counter()
            window["stall"].append(time.perf_counter() - before - period)
            if not ready_after and daemon.ready():
                ready_after.append(time.monotonic() - started)
                print("READY", flush=True)

    profile_path = os.environ.get("MONITORD_SCALE_PROFILE")
    profiler = cProfile.Profile() if profile_path else None

    def reset() -> None:
        for values in window.values():
            values.clear()
        stall_stacks.clear()
        if profiler is not None:
            profiler.enable()

    def dump() -> None:
        if profiler is not None and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
        stats = {
            "ready_after": ready_after[0] if ready_after else None,
            "series": daemon.store.series(),
            "lag_p99": pct(window["lag"], 0.99),
            "stall_p99": pct(window["stall"], 0.99),
            "stall_max": max(window["stall"], default=float("nan")),
            "poll_p99": pct(window["poll"], 0.99),
            "polls_window": len(window["poll"]),
            "gc2_count": len(window["gc2"]),
            "gc2_max": max(window["gc2"], default=0.0),
            **totals,
        }
        if stall_stacks:
            stats["stall_stacks"] = sorted(stall_stacks.items(), key=lambda kv: -kv[1])[:6]
        if os.environ.get("MONITORD_SCALE_GC"):
            # What full collections scan: the objects outside the frozen heap, by type.
            from collections import Counter

            stats["gc_counts"] = gc.get_count()
            stats["gc_frozen"] = gc.get_freeze_count()
            stats["gc_gen"] = [len(gc.get_objects(g)) for g in range(3)]
            stats["gc_types"] = Counter(type(o).__qualname__ for o in gc.get_objects(2)).most_common(25)
            t = time.perf_counter()
            found = gc.collect()
            t2 = time.perf_counter()
            gc.collect()
            stats["gc_forced"] = (t2 - t, found, time.perf_counter() - t2)
        Path(stats_path).write_text(json.dumps(stats))

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, reset)
    loop.add_signal_handler(signal.SIGUSR2, dump)
    task = asyncio.create_task(probe())
    daemon.start()
    await serve(daemon, "127.0.0.1:0", started=lambda url: print("URL", url, flush=True))
    task.cancel()


# ------------------------------------------------------------------------------ the harness


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def read_line(proc: subprocess.Popen[str], prefix: str, deadline: float) -> str:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process {proc.pid} ended before printing {prefix}")
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise TimeoutError(prefix)


def end(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def scrape(port: int, gzip: bool) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Accept": "text/plain;version=0.0.4"}
    if gzip:
        headers["Accept-Encoding"] = "gzip"
    start = time.perf_counter()
    conn.request("GET", "/metrics", headers=headers)
    body = conn.getresponse().read()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, len(body)


def config_for(devices: int, vendor_port: int, interval: float) -> dict[str, Any]:
    from monitord.simulators import endpoint as sim

    base = f"http://127.0.0.1:{vendor_port}"
    return {
        "global": {"interval": f"{interval}s", "timeout": f"{min(10.0, interval)}s"},
        # One fake vendor address stands in for N devices; in production each device is its own
        # host, so the per-host cap must not throttle the benchmark.
        "http": {"max_connections": 100, "max_connections_per_host": 100},
        "targets": [
            {"name": f"dev-{i}", "source": "endpoint", "url": f"{base}/d/dev-{i}",
             "username": sim.DEFAULT_USER, "password": sim.DEFAULT_PASSWORD}
            for i in range(devices)
        ],
    }


def run_point(devices: int, vendor: subprocess.Popen[str], vendor_port: int, args: argparse.Namespace,
              workdir: Path) -> dict[str, Any]:
    config = workdir / f"config-{devices}.json"
    stats_path = workdir / f"stats-{devices}.json"
    config.write_text(json.dumps(config_for(devices, vendor_port, args.interval)))
    log = (workdir / f"daemon-{devices}.log").open("w")
    proc = subprocess.Popen([sys.executable, __file__, "--daemon", str(config), str(stats_path)],
                            stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60 + args.interval * 4
        port = int(read_line(proc, "URL", deadline).rsplit(":", 1)[1])
        read_line(proc, "READY", deadline)
        time.sleep(args.interval)  # one full interval after start-up before measuring
        os.kill(proc.pid, signal.SIGUSR1)
        cpu0, vcpu0, t0 = cpu_seconds(proc.pid), cpu_seconds(vendor.pid), time.monotonic()
        scrapes: dict[bool, list[float]] = {False: [], True: []}
        sizes: dict[bool, int] = {}
        n = 0
        while time.monotonic() - t0 < args.window:
            if args.scrape_every <= 0:  # the control: the same window without any scrape
                time.sleep(max(0.0, t0 + args.window - time.monotonic()))
                break
            time.sleep(max(0.0, t0 + n * args.scrape_every - time.monotonic()))
            gz = n % 2 == 1
            elapsed, size = scrape(port, gz)
            scrapes[gz].append(elapsed)
            sizes[gz] = size
            n += 1
        wall = time.monotonic() - t0
        cpu_used = cpu_seconds(proc.pid) - cpu0
        cpu = cpu_used / wall
        vcpu = (cpu_seconds(vendor.pid) - vcpu0) / wall
        rss = rss_bytes(proc.pid)
        os.kill(proc.pid, signal.SIGUSR2)
        # A daemon that is far behind may take a while to get to the signal.
        for _ in range(1200):
            if stats_path.exists():
                break
            time.sleep(0.05)
        time.sleep(0.2)
        stats = json.loads(stats_path.read_text())
    finally:
        end(proc)
        log.close()
    return {"devices": devices, "cpu": cpu, "cpu_used": cpu_used, "vendor_cpu": vcpu, "rss": rss, "scrapes": scrapes,
            "sizes": sizes, **stats}


def bench_normalize() -> float:
    from benchmarks.run import bench_normalize as run

    return run(quiet=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="1000,2500,5000,7500,10000")
    parser.add_argument("--window", type=float, default=60.0, help="measured seconds per point")
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--scrape-every", type=float, default=7.5,
                        help="seconds between scrapes, alternating plain and gzip; 0: no scrapes (a control)")
    parser.add_argument("--daemon", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.daemon:
        daemon_main(*args.daemon)
        return

    print(f"normalizer: {bench_normalize() / 1e6:.2f} M values/s")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    vendor = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fakevendor.py")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        vendor_port = int(read_line(vendor, "PORT", time.monotonic() + 60))
        header = (f"{'devices':>7} {'cpu %':>12} {'lag99':>7} {'stall99':>7} {'poll99':>7} {'tmo':>4} "
                  f"{'ready':>6} {'ms/poll':>7} {'series':>8} {'RSS MB':>7} {'B/series':>8} {'gc2 max':>7} "
                  f"{'scrape ms p50/p99 plain':>24} {'gzip':>12} {'load1':>5}")
        print(header, flush=True)
        with tempfile.TemporaryDirectory(prefix="monitord-scale-") as tmp:
            for devices in (int(d) for d in args.devices.split(",")):
                r = run_point(devices, vendor, vendor_port, args, Path(tmp))
                plain, gz = r["scrapes"][False], r["scrapes"][True]
                series = max(1, r["series"])
                ms_per_poll = r["cpu_used"] * 1e3 / max(1, r["polls_window"])
                print(
                    f"{devices:>7} {r['cpu'] * 100:>5.0f} ({r['vendor_cpu'] * 100:>3.0f}) "
                    f"{r['lag_p99'] * 1e3:>5.0f}ms {r['stall_p99'] * 1e3:>5.0f}ms {r['poll_p99'] * 1e3:>5.0f}ms "
                    f"{r['timeouts']:>4} {r['ready_after']:>5.1f}s {ms_per_poll:>7.2f} "
                    f"{r['series']:>8} {r['rss'] / 2**20:>7.0f} "
                    f"{r['rss'] / series:>8.0f} {r['gc2_max'] * 1e3:>5.0f}ms "
                    f"{pct(plain, 0.5) * 1e3:>11.0f}/{pct(plain, 0.99) * 1e3:<5.0f} "
                    f"{pct(gz, 0.5) * 1e3:>7.0f}/{pct(gz, 0.99) * 1e3:<5.0f} {os.getloadavg()[0]:>5.2f}",
                    flush=True,
                )
                if "gc_types" in r:
                    print(f"        gc: forced full (s, unreachable, again s) {r['gc_forced']}, "
                          f"frozen {r['gc_frozen']}, generations {r['gc_gen']}, counts {r['gc_counts']}\n"
                          f"        gen2 types {r['gc_types']}", flush=True)
                print(f"        loop stall max {r['stall_max'] * 1e3:.0f} ms", flush=True)
                for stack, count in r.get("stall_stacks", []):
                    print(f"        {count} x 10 ms in a stall at:\n{stack}", flush=True)
                if r["errors"] or r["missed"] or r["skipped"]:
                    print(f"        poll errors {r['errors']}, missed runs {r['missed']}, skipped {r['skipped']}",
                          flush=True)
    finally:
        assert vendor.stdin is not None
        vendor.stdin.close()
        end(vendor, grace=10)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
