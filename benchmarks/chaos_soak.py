"""Chaos soak: the daemon against all five simulators while their fault knobs misbehave.

    python3 benchmarks/chaos_soak.py [--minutes 10] [--fault-share 0.35] [--seed 1]

Starts `monitord simulate` and `monitord run` as child processes on 127.0.0.1 (free ports), then
for the given time: every few seconds each simulator either behaves or takes one fault at
random (HTML error page, garbage bytes, a hang, 5xx, a body bigger than the cap, a truncated
body, a connection reset, slowness), /metrics is scraped at 2 Hz, and the daemon's RSS is sampled
every second. Prints figures, passes or fails nothing: crashes (the daemon is restarted if it
dies, and each death is reported), /metrics latency p50/p99/max, RSS at start/end/max, the share
of polls that failed and the failure reasons the daemon counted, and the log lines it wrote.
Ends only the processes it started, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitord import simulators  # noqa: E402

FAULTS: list[dict[str, Any]] = [
    {"html": True},
    {"garbage": True},
    {"hang": True},
    {"status": 503},
    {"status": 500, "html": True},
    {"huge": True},
    {"truncated": True},
    {"reset": True},
    {"latency": 4.0},
]
SCRAPE_PERIOD = 0.5  # 2 Hz
RSS_PERIOD = 1.0
SAMPLE = re.compile(r'^(\w+)(?:\{([^}]*)\})? (\S+)$')


@dataclass
class Figures:
    scrape_ms: list[float] = field(default_factory=list)
    scrape_failures: int = 0
    rss_kib: list[int] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    fault_windows: int = 0
    clean_windows: int = 0
    faults_used: dict[str, int] = field(default_factory=dict)
    log_events: dict[str, int] = field(default_factory=dict)
    tracebacks: int = 0


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


class Daemon:
    """`monitord run` as a child process; its JSON log lines are read as they come."""

    def __init__(self, config: Path, figures: Figures) -> None:
        self.config = config
        self.figures = figures
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self._reader: asyncio.Task[None] | None = None
        self._tail: list[str] = []

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitord", "run", "--config.file", str(self.config),
            "--web.listen-address", "127.0.0.1:0", "--log.format", "json",
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(listening))
        self.url = await asyncio.wait_for(listening, 120)

    async def _read(self, listening: asyncio.Future[str]) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self._tail = [*self._tail[-30:], line]
            if "Traceback" in line:
                self.figures.tracebacks += 1
            try:
                event = json.loads(line)
            except ValueError:
                continue
            name = str(event.get("event", "?"))
            self.figures.log_events[name] = self.figures.log_events.get(name, 0) + 1
            if name == "listening" and not listening.done():
                listening.set_result(str(event["url"]))

    def died(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def tail(self) -> str:
        return "\n".join(self._tail[-10:])

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()  # this child only, by its PID
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 30)


async def start_simulators() -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitord", "simulate", "--simulate.base-port", "0", "--log.level", "error",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    while len(urls) < len(simulators.SIMULATORS):
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        if not line:
            raise SystemExit("the simulators exited at start")
        m = re.match(r"simulator (\w+): (\S+)", line)
        if m:
            urls[m.group(1)] = m.group(2)
    return proc, urls


async def chaos(session: aiohttp.ClientSession, urls: dict[str, str], share: float, rng: random.Random,
                figures: Figures, until: float) -> None:
    """Each simulator, every 4-12 s, takes one fault with probability `share`, else behaves."""
    next_change = {kind: 0.0 for kind in urls}
    while time.monotonic() < until:
        now = time.monotonic()
        for kind, url in urls.items():
            if now < next_change[kind]:
                continue
            next_change[kind] = now + rng.uniform(4, 12)
            if rng.random() < share:
                fault = rng.choice(FAULTS)
                figures.fault_windows += 1
                key = ",".join(f"{k}={v}" for k, v in fault.items())
                figures.faults_used[key] = figures.faults_used.get(key, 0) + 1
                async with session.post(f"{url}/_sim/faults", json=fault) as r:
                    r.raise_for_status()
            else:
                figures.clean_windows += 1
                async with session.delete(f"{url}/_sim/faults") as r:
                    r.raise_for_status()
        await asyncio.sleep(0.5)
    for url in urls.values():
        async with session.delete(f"{url}/_sim/faults") as r:
            r.raise_for_status()


async def scrape(session: aiohttp.ClientSession, daemon: Daemon, figures: Figures, until: float) -> str:
    last = ""
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            async with session.get(daemon.url + "/metrics", timeout=aiohttp.ClientTimeout(total=10)) as r:
                body = await r.text()
                if r.status == 200:
                    figures.scrape_ms.append((time.monotonic() - started) * 1000)
                    last = body
                else:
                    figures.scrape_failures += 1
        except (aiohttp.ClientError, TimeoutError):
            figures.scrape_failures += 1
        await asyncio.sleep(max(0.0, SCRAPE_PERIOD - (time.monotonic() - started)))
    return last


async def watch(daemon: Daemon, figures: Figures, until: float) -> None:
    """Sample RSS; if the daemon died, record it and start it again so the soak goes on."""
    while time.monotonic() < until:
        code = daemon.died()
        if code is not None:
            figures.crashes.append(f"exit {code} after {len(figures.scrape_ms)} scrapes:\n{daemon.tail()}")
            await daemon.stop()
            await daemon.start()
        elif daemon.proc is not None and (kib := rss_kib(daemon.proc.pid)) is not None:
            figures.rss_kib.append(kib)
        await asyncio.sleep(RSS_PERIOD)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fault-share", type=float, default=0.35,
                        help="chance that a simulator is faulted in each 4-12 s window (default 0.35)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    figures = Figures()
    sims, urls = await start_simulators()
    daemon: Daemon | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="monitord-soak-") as tmp:
            raw = simulators.demo_config(urls)
            raw["global"]["state_dir"] = str(Path(tmp) / "state")
            config = Path(tmp) / "monitord.yml"
            config.write_text(yaml.safe_dump(raw))
            daemon = Daemon(config, figures)
            await daemon.start()
            print(f"soak: {len(raw['targets'])} targets on {len(urls)} simulators, {args.minutes:g} min, "
                  f"fault share {args.fault_share:.0%}, daemon pid {daemon.proc.pid if daemon.proc else '?'}",
                  flush=True)
            started = time.monotonic()
            until = started + args.minutes * 60
            async with aiohttp.ClientSession() as session:
                _, last, _ = await asyncio.gather(
                    chaos(session, urls, args.fault_share, rng, figures, until),
                    scrape(session, daemon, figures, until),
                    watch(daemon, figures, until),
                )
            elapsed = time.monotonic() - started
            await daemon.stop()
    finally:
        if daemon is not None:
            await daemon.stop()
        sims.terminate()  # the simulator child, by its PID
        try:
            await asyncio.wait_for(sims.wait(), 30)
        except TimeoutError:
            sims.kill()
            await sims.wait()
    report(figures, last, elapsed)


def report(figures: Figures, last: str, elapsed: float) -> None:
    samples = parse_metrics(last)
    polls = sum(v for n, _, v in samples if n == "monitord_polls_total")
    errors: dict[str, float] = {}
    for name, labels, value in samples:
        if name == "monitord_poll_errors_total" and value:
            errors[labels.get("reason", "?")] = errors.get(labels.get("reason", "?"), 0) + value
    failed = sum(errors.values())
    non_finite = [n for n, _, v in samples if v != v or v in (float("inf"), float("-inf"))]
    ms = figures.scrape_ms
    print(f"\nduration: {elapsed / 60:.1f} min")
    print(f"crashes: {len(figures.crashes)}")
    for crash in figures.crashes:
        print(f"  {crash}")
    print(f"unhandled tracebacks in the daemon's log: {figures.tracebacks}")
    print(f"fault windows: {figures.fault_windows} faulted / {figures.clean_windows} clean; "
          + ", ".join(f"{k} x{v}" for k, v in sorted(figures.faults_used.items())))
    print(f"polls (since the last start): {polls:.0f}, failed {failed:.0f} ({failed / polls:.0%})" if polls
          else "polls: none counted")
    print("failure reasons counted: " + (", ".join(f"{k} {v:.0f}" for k, v in sorted(errors.items())) or "none"))
    print(f"/metrics: {len(ms)} scrapes at 2 Hz, {figures.scrape_failures} failed; "
          f"p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
          if ms else "/metrics: no successful scrape")
    print(f"non-finite samples in the last scrape: {len(non_finite)}")
    if figures.rss_kib:
        rss = figures.rss_kib
        print(f"RSS: start {rss[0] / 1024:.1f} MiB, end {rss[-1] / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB "
              f"({len(rss)} samples)")
    print("log lines by event: " + ", ".join(f"{k} {v}" for k, v in sorted(figures.log_events.items())))


if __name__ == "__main__":
    if os.name != "posix":
        raise SystemExit("reads /proc for RSS: Linux only")
    asyncio.run(main())
