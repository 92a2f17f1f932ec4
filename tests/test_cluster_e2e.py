"""Three shards and a hot standby on one machine: `monitord` processes on 127.0.0.1 against the
simulators, the two replicas of one shard electing a leader on the fake Lease API server.

It checks that the shards' targets are the configuration with no overlap, that the shards send
the vendors exactly what one process sends, that the standby polls nothing and exposes no
target, and that killing the active replica (SIGKILL, by PID: no lease release) hands the shard
over with no target's data missing for longer than the takeover bound.

Timings are production's divided by 5, all of them, by one knob: global.time_scale 5 in the
config (poll intervals, timeouts, holds, budget windows, and the lease 15 s / renew deadline 10 s /
retry 2 s / state sync 15 s given on the command line become 3 s / 2 s / 0.4 s / 3 s) and the
simulators' own time scale 5.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

pytest.importorskip("kubernetes")

from fake_kube import FakeLeaseServer, kubeconfig
from helpers import parse_exposition

from monitord import simulators
from monitord.config import parse
from monitord.sharding import ShardSpec, budget_domain, shard_of

ROOT = Path(__file__).resolve().parent.parent
SCALE = 5.0
FLAGS_LEASE, FLAGS_RENEW, FLAGS_RETRY, FLAGS_SYNC = 15, 10.0, 2.0, 15.0  # the production defaults
LEASE, RENEW, RETRY = FLAGS_LEASE / SCALE, FLAGS_RENEW / SCALE, FLAGS_RETRY / SCALE
TOTAL = 3

pytestmark = pytest.mark.timeout(240)


def _config(urls: dict[str, str]) -> dict[str, Any]:
    raw = simulators.demo_config(urls, time_scale=SCALE)
    endpoint = next(t for t in raw["targets"] if t["source"] == "endpoint")
    # More independent targets, so every shard owns some; each its own device (a device has a
    # few session slots, which ten monitors of one device would exceed).
    device_base = endpoint["url"].rsplit("/d/", 1)[0]
    raw["targets"] += [{**endpoint, "name": f"room-{i}", "url": f"{device_base}/d/extra-{i}"} for i in range(9)]
    return raw


class Proc:
    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.log: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitord", *self.args, "--log.format", "json",
            "--web.listen-address", "127.0.0.1:0", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        listening = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(listening))
        self.url = await asyncio.wait_for(listening, timeout=60)

    async def _read(self, listening: asyncio.Future[str]) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "non-json", "text": line.decode(errors="replace")}
            self.log.append(event)
            if event.get("event") == "listening" and not listening.done():
                listening.set_result(event["url"])
        if not listening.done():
            listening.set_exception(RuntimeError(f"{self.name} exited: {self.log[-5:]}"))

    async def metrics(self, session: aiohttp.ClientSession) -> dict[Any, float] | None:
        try:
            async with session.get(f"{self.url}/metrics", timeout=aiohttp.ClientTimeout(total=2)) as r:
                return parse_exposition(await r.text())
        except (aiohttp.ClientError, TimeoutError):
            return None

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def _value(series: dict[Any, float] | None, name: str, **labels: str) -> float | None:
    for (n, ls), v in (series or {}).items():
        if n == name and set(labels.items()) <= set(ls):
            return v
    return None


def _targets(series: dict[Any, float] | None) -> set[str]:
    return {dict(ls)["target"] for (n, ls), _ in (series or {}).items() if n == "monitord_polls_total"}


def _up_targets(series: dict[Any, float] | None) -> set[str]:
    return {dict(ls)["target"] for (n, ls), v in (series or {}).items() if n == "monitord_target_up" and v == 1}


async def _sim_requests(session: aiohttp.ClientSession, urls: dict[str, str]) -> int:
    total = 0
    for url in urls.values():
        async with session.get(f"{url}/_sim/state") as r:
            total += int((await r.json())["http_requests"])
    return total


def _with_state_dir(config: Path, state: Path) -> Path:
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["global"]["state_dir"] = str(state)
    path = state.with_suffix(".yml")
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


async def _once(config: Path, state: Path, *shard: str) -> None:
    """`monitord once` (each target polled once), with its own fresh state directory."""
    path = _with_state_dir(config, state)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitord", "once", "--config.file", str(path), *shard, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode in (0, 1), err.decode()


async def _wait(cond: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[dict[str, str], FakeLeaseServer, Path]]:
    running = await simulators.start("127.0.0.1", 0, time_scale=SCALE)
    fake = FakeLeaseServer()
    await fake.start(listeners=2)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(_config(running.urls)), encoding="utf-8")
    yield running.urls, fake, config
    await fake.close()
    await running.close()


async def test_three_shards_and_a_standby(stack: Any, tmp_path: Path) -> None:
    urls, fake, config_path = stack
    config = parse(yaml.safe_load(config_path.read_text(encoding="utf-8")))
    names = {t.name for t in config.targets}
    # The standby pair serves the shard with state to hand over (Zego's watch list, SparkRTC's
    # request log and events), so the takeover shows the state copy too.
    ha = shard_of(budget_domain(config.target("zego-recording")), TOTAL)
    ha_targets = {t.name for t in ShardSpec(ha, TOTAL).restrict(config).targets}
    assert ha_targets and ha_targets != names

    async with aiohttp.ClientSession() as session:
        # 1. Vendor requests: the shards together send what one process sends.
        before = await _sim_requests(session, urls)
        await _once(config_path, tmp_path / "single")
        single = await _sim_requests(session, urls) - before
        for n in range(TOTAL):
            await _once(config_path, tmp_path / f"once-{n}", "--shard", str(n), "--total-shards", str(TOTAL))
        sharded = await _sim_requests(session, urls) - before - single
        assert single > len(names)
        assert sharded == single, f"one process sent {single} vendor requests, the {TOTAL} shards {sharded}"

        # 2. The cluster: one shard with a leader and a standby, the others alone.
        def run_args(n: int, state: str, *extra: str) -> list[str]:
            path = _with_state_dir(config_path, tmp_path / state)
            return ["run", "--config.file", str(path), "--shard", str(n), "--total-shards", str(TOTAL), *extra]

        def election(name: str, port: int) -> list[str]:
            return ["--leader-election", "--leader-election.namespace", "monitoring", "--leader-election.kubeconfig",
                    str(kubeconfig(tmp_path / f"{name}.kubeconfig", port)),
                    "--leader-election.identity", name,
                    "--leader-election.lease-duration", str(FLAGS_LEASE),
                    "--leader-election.renew-deadline", str(FLAGS_RENEW),
                    "--leader-election.retry-period", str(FLAGS_RETRY)]

        active = Proc("active", run_args(ha, "pvc-0", *election("active", fake.ports[0])))
        procs = [active]
        try:
            await active.start()
            await _wait(lambda: _is(active, session, "monitord_leader", 1.0), 30, "the first leader")
            standby = Proc("standby", run_args(ha, "pvc-1", *election("standby", fake.ports[1]),
                                                "--shard.peers", active.url,
                                                "--shard.state-sync-interval", str(FLAGS_SYNC)))
            others = [Proc(f"shard{n}", run_args(n, f"pvc-{n + 2}")) for n in range(TOTAL) if n != ha]
            procs += [standby, *others]
            for p in (standby, *others):
                await p.start()
            leaders = [active, *others]

            async def all_up() -> bool:
                got = [await p.metrics(session) for p in leaders]
                return set().union(*(_up_targets(s) for s in got)) == names

            await _wait(all_up, 60, "every target polled successfully")

            # Union is the config, no overlap; the standby owns the shard but polls nothing.
            scraped = {p.name: await p.metrics(session) for p in procs}
            owned = [_targets(scraped[p.name]) for p in leaders]
            assert set().union(*owned) == names
            assert sum(len(o) for o in owned) == len(names), "a target is polled by two shards"
            assert owned[0] == ha_targets
            s_b = scraped["standby"]
            assert _value(s_b, "monitord_leader", shard=str(ha)) == 0
            assert _value(s_b, "monitord_shard_targets", shard=str(ha)) == len(ha_targets)
            assert _value(s_b, "monitord_configured_targets") == len(names)
            assert not _targets(s_b), "the standby exposes no target's series"
            assert _value(s_b, "process_resident_memory_bytes"), "the standby exposes its own health"
            assert not any(n.startswith("rtc_") for n, _ in s_b or {}), "the standby exposes no vendor data"
            assert sum(_value(scraped[p.name], "monitord_shard_targets") or 0 for p in leaders) == len(names)

            async def synced() -> bool:
                return (await _metric(standby, session, "monitord_state_handover_files_total") or 0) > 0

            await _wait(synced, 30, "the standby copying the leader's state")

            # 3. Kill the active replica; watch every shard-0 target's data until it is back.
            last_seen = {t: time.monotonic() for t in ha_targets}
            longest = dict.fromkeys(ha_targets, 0.0)
            active.kill()
            killed = time.monotonic()
            took_over = None
            while time.monotonic() - killed < 6 * LEASE:
                now = time.monotonic()
                up = _up_targets(await standby.metrics(session))
                for t in ha_targets:
                    if t in up:
                        longest[t] = max(longest[t], now - last_seen[t])
                        last_seen[t] = now
                if took_over is None and await _is(standby, session, "monitord_leader", 1.0):
                    took_over = time.monotonic() - killed
                if took_over is not None and up >= ha_targets:
                    break
                await asyncio.sleep(0.1)
            assert took_over is not None, "the standby never took over"
            print(f"takeover after {took_over:.2f}s; longest absence of a target: {max(longest.values()):.2f}s")
            # The standby waits out the lease from the last renewal it saw (at most one retry
            # period, jittered by 1.2, after it was written), then notices at its next attempt.
            assert took_over <= LEASE + 2 * 1.2 * RETRY + 1.0, took_over  # + slack for a loaded machine
            # The new leader polls every target within one retry period; a poll takes < timeout.
            bound = LEASE + 3 * 1.2 * RETRY + max(config.timeout_of(t) for t in config.targets) + 1.0
            assert max(longest.values()) <= bound, (longest, bound)
            assert _up_targets(await standby.metrics(session)) >= ha_targets
            assert fake.holder(f"monitord-shard-{ha}") == "standby"
            assert any(e.get("event") == "leader_acquired" for e in standby.log)
            assert any(e.get("event") == "state_taken_from_peers" for e in standby.log)
        finally:
            for p in procs:
                await p.stop()
        # A graceful stop gives the lease back.
        assert fake.holder(f"monitord-shard-{ha}") is None
        assert any(e.get("event") == "lease_released" for e in standby.log)


async def _metric(p: Proc, session: aiohttp.ClientSession, name: str) -> float | None:
    return _value(await p.metrics(session), name)


async def _is(p: Proc, session: aiohttp.ClientSession, name: str, want: float) -> bool:
    return await _metric(p, session, name) == want
