"""Leader election on a Lease, through the official kubernetes client, against a fake API server
that enforces resourceVersion concurrency (409 on conflict). The timings are scaled down from
the defaults (15 s / 10 s / 2 s) to 3 s / 2 s / 0.4 s, all by the same factor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes")

from fake_kube import FakeLeaseServer, kubeconfig

from monitord.leader import ElectionConfig, Elector, LeaseClient

LEASE = "monitord-shard-0"
DURATION, RENEW, RETRY = 3.0, 2.0, 0.4


class Candidate:
    """An elector plus a record of when it polled, as the daemon would."""

    def __init__(self, name: str, port: int, tmp: Path) -> None:
        self.name = name
        self.port = port
        self.polling = False
        self.started_at: list[float] = []
        self.stopped_at: list[float] = []
        config = ElectionConfig("monitoring", LEASE, name, DURATION, RENEW, RETRY)
        client = LeaseClient(str(kubeconfig(tmp / f"{name}.kubeconfig", port)), request_timeout=RETRY)
        self.elector = Elector(config, client, on_started=self._start, on_stopped=self._stop)
        self.task: asyncio.Task[None] | None = None

    def _start(self) -> None:
        self.polling = True
        self.started_at.append(time.monotonic())

    async def _stop(self) -> None:
        self.polling = False
        self.stopped_at.append(time.monotonic())

    def run(self) -> None:
        self.task = asyncio.create_task(self.elector.run())

    def crash(self) -> None:
        """Like SIGKILL: no release, no step-down, no further attempt."""
        assert self.task is not None
        self.elector.request_stop()
        self.task.cancel()


@pytest.fixture
async def fake() -> AsyncIterator[FakeLeaseServer]:
    server = FakeLeaseServer()
    await server.start(listeners=3)
    yield server
    await server.close()


async def _until(cond: Callable[[], bool], within: float, both: list[Candidate] | None = None) -> float:
    """Wait for cond, checking on the way that no two candidates ever poll together."""
    start = time.monotonic()
    while not cond():
        if both is not None:
            assert sum(c.polling for c in both) <= 1, "two replicas polled at once"
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _stop_all(*candidates: Candidate) -> None:
    for c in candidates:
        c.elector.request_stop()
        if c.task is not None and not c.task.done():
            c.task.cancel()
    await asyncio.gather(*(c.task for c in candidates if c.task is not None), return_exceptions=True)


async def test_one_leads_the_other_stands_by_and_a_release_hands_over_at_once(
        fake: FakeLeaseServer, tmp_path: Path) -> None:
    a, b = Candidate("a", fake.ports[0], tmp_path), Candidate("b", fake.ports[1], tmp_path)
    a.run()
    await _until(lambda: a.polling, within=10)
    b.run()
    # b sees a renewing and never takes over, for several lease durations.
    watch_until = time.monotonic() + 2.5 * DURATION
    while time.monotonic() < watch_until:
        assert a.polling and not b.polling
        await asyncio.sleep(0.05)
    assert fake.holder(LEASE) == "a"
    assert b.elector.leading is False and b.elector.acquired == 0

    # Shutdown of the leader: it stops polling first, then gives the lease back...
    assert a.task is not None
    a.task.cancel()
    await asyncio.gather(a.task, return_exceptions=True)
    released = time.monotonic()
    await a.elector.stop()
    assert not a.polling and a.elector.lost["released"] == 1
    assert fake.holder(LEASE) is None
    # ...so the standby takes over at its next attempt, long before the lease would expire.
    waited = await _until(lambda: b.polling, within=DURATION)
    assert time.monotonic() - released < DURATION
    assert waited < DURATION
    assert fake.holder(LEASE) == "b"
    await _stop_all(a, b)


async def test_a_crashed_leader_is_replaced_within_one_lease_duration(fake: FakeLeaseServer, tmp_path: Path) -> None:
    a, b = Candidate("a", fake.ports[0], tmp_path), Candidate("b", fake.ports[1], tmp_path)
    a.run()
    await _until(lambda: a.polling, within=10)
    b.run()
    await asyncio.sleep(2 * RETRY)
    a.crash()
    killed = time.monotonic()
    await _until(lambda: b.polling, within=3 * DURATION)
    # The standby waits out the lease from the last renewal it saw: at most one lease duration
    # after the crash, plus the jittered retry periods of noticing it.
    assert time.monotonic() - killed <= DURATION + 2 * RETRY * 1.2 + 1.0  # + slack for a loaded machine
    assert b.elector.acquired == 1
    await _stop_all(a, b)


async def test_a_partitioned_leader_stops_polling_before_anyone_else_can_start(
        fake: FakeLeaseServer, tmp_path: Path) -> None:
    a, b = Candidate("a", fake.ports[0], tmp_path), Candidate("b", fake.ports[1], tmp_path)
    a.run()
    await _until(lambda: a.polling, within=10)
    b.run()
    await asyncio.sleep(2 * RETRY)
    fake.partition(a.port)  # a's renewals hang; a itself is alive and would go on polling
    cut = time.monotonic()
    await _until(lambda: b.polling, within=3 * DURATION, both=[a, b])
    # Fencing: a stopped by itself (renew deadline) before b started, never both at once.
    assert a.stopped_at and a.stopped_at[-1] < b.started_at[-1]
    assert a.stopped_at[-1] - cut <= RENEW + 1.0
    assert a.elector.lost["renew_deadline"] == 1
    assert a.elector.errors["timeout"] >= 1
    # The partition heals: a finds b holding the lease and stays a standby.
    fake.heal(a.port)
    watch_until = time.monotonic() + 2 * DURATION
    while time.monotonic() < watch_until:
        assert b.polling and not a.polling
        await asyncio.sleep(0.05)
    await _stop_all(a, b)


async def test_simultaneous_candidates_elect_exactly_one(fake: FakeLeaseServer, tmp_path: Path) -> None:
    cands = [Candidate(n, fake.ports[i], tmp_path) for i, n in enumerate("abc")]
    for c in cands:
        c.run()
    await _until(lambda: any(c.polling for c in cands), within=10, both=cands)
    watch_until = time.monotonic() + 2 * DURATION
    while time.monotonic() < watch_until:
        assert sum(c.polling for c in cands) == 1
        await asyncio.sleep(0.05)
    leader = next(c for c in cands if c.polling)
    assert fake.holder(LEASE) == leader.name
    await _stop_all(*cands)


async def test_the_fake_server_enforces_optimistic_concurrency(fake: FakeLeaseServer, tmp_path: Path) -> None:
    """The contract the fencing relies on, through the official client: a stale write is a 409."""
    client = LeaseClient(str(kubeconfig(tmp_path / "k", fake.ports[0])), request_timeout=5)
    from kubernetes.client.exceptions import ApiException

    spec = {"holder_identity": "x", "lease_duration_seconds": 3}
    created = await asyncio.to_thread(client.create, "monitoring", "l", spec)
    version = created.metadata.resource_version
    await asyncio.to_thread(client.replace, "monitoring", "l", version, {**spec, "holder_identity": "y"})
    with pytest.raises(ApiException) as stale:
        await asyncio.to_thread(client.replace, "monitoring", "l", version, {**spec, "holder_identity": "z"})
    assert stale.value.status == 409
    with pytest.raises(ApiException) as exists:
        await asyncio.to_thread(client.create, "monitoring", "l", spec)
    assert exists.value.status == 409
    assert (await asyncio.to_thread(client.read, "monitoring", "l")).spec.holder_identity == "y"


def test_timings_must_leave_room_for_fencing() -> None:
    with pytest.raises(ValueError, match="lease-duration > renew-deadline"):
        ElectionConfig("ns", "l", "me", lease_duration=10, renew_deadline=10, retry_period=2)
    # The Lease holds whole seconds: rounded up, never below the renew deadline.
    assert ElectionConfig("ns", "l", "me", lease_duration=2.2, renew_deadline=2.1, retry_period=1).lease_seconds == 3


# ------------------------------------------------------------------ a daemon as candidate

async def test_a_standby_daemon_polls_no_vendor_and_a_fenced_leader_stops_at_its_deadline(
        fake: FakeLeaseServer, start_sim: Any, tmp_path: Path) -> None:
    """The daemon wired as `monitord run --leader-election` wires it (Replica.from_args), against
    the endpoint simulator: vendor requests counted by the simulator itself."""
    import argparse

    import aiohttp
    from helpers import parse_exposition, value

    from monitord.app import Daemon
    from monitord.config import parse
    from monitord.replica import Replica
    from monitord.simulators import endpoint as endpoint_sim

    url, _app = await start_sim(endpoint_sim)
    targets = [{**t, "interval": "1s", "timeout": "0.8s"} for t in endpoint_sim.demo_targets(url)]
    daemon = Daemon(parse({"targets": targets}))
    args = argparse.Namespace(
        leader_election=True, le_namespace="monitoring", le_lease_name=None,
        le_identity="daemon", le_lease_duration=DURATION, le_renew_deadline=RENEW, le_retry_period=RETRY,
        le_kubeconfig=str(kubeconfig(tmp_path / "d.kubeconfig", fake.ports[0])), shard_peers=None,
        replicas_per_shard=1, state_sync_interval=1.0)
    replica = Replica.from_args(daemon, args)

    async def requests() -> int:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/_sim/state") as r:
            return int((await r.json())["http_requests"])

    def exposed() -> Any:
        return parse_exposition(daemon.store.render().decode())

    other = Candidate("other", fake.ports[1], tmp_path)
    other.run()
    await _until(lambda: other.polling, within=10)
    await replica.run()
    try:
        await asyncio.sleep(2.5 * DURATION)
        assert await requests() == 0, "a standby sends no vendor request"
        s = exposed()
        assert value(s, "monitord_leader", shard="0") == 0
        assert value(s, "monitord_shard_targets", shard="0") == 3
        assert not any(n.startswith(("rtc_", "monitord_target_up", "monitord_polls")) for n, _ in s)

        # The holder goes away cleanly; the daemon takes over and polls.
        assert other.task is not None
        other.task.cancel()
        await asyncio.gather(other.task, return_exceptions=True)
        await other.elector.stop()
        await _until(lambda: daemon.polling, within=DURATION)
        start = time.monotonic()
        while await requests() == 0:
            assert time.monotonic() - start < 10
            await asyncio.sleep(0.1)
        await _until(lambda: value(exposed(), "monitord_target_up", target="room-101") == 1, within=10)
        assert value(exposed(), "monitord_leader", shard="0") == 1

        # Partitioned from the API server, it stops polling by its renew deadline, by itself...
        fake.partition(fake.ports[0])
        cut = time.monotonic()
        await _until(lambda: not daemon.polling, within=2 * DURATION)
        assert time.monotonic() - cut <= RENEW + 1.0
        fenced_at = await requests()
        # ...and sends nothing more, although nobody else has taken the lease.
        await asyncio.sleep(3 * 1.0)
        assert await requests() == fenced_at
        s = exposed()
        assert value(s, "monitord_leader", shard="0") == 0
        assert value(s, "monitord_leader_lost_total", shard="0", reason="renew_deadline") == 1
        assert value(s, "monitord_target_up", target="room-101") is None, "no stale copies of the data"

        # Healed, it finds its own name on the lease and leads again; a shutdown then lets the
        # sources log out of the devices (the lease is still held) and gives the lease back.
        fake.heal(fake.ports[0])
        await _until(lambda: all(value(exposed(), "monitord_target_up", target=f"room-{n}") == 1
                                 for n in (101, 102, 103)), within=4 * DURATION)
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_sim/state") as r:
            logouts = (await r.json())["logouts"]
        await replica.stop()
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_sim/state") as r:
            assert (await r.json())["logouts"] == logouts + 3
        assert fake.holder(LEASE) is None
        assert not daemon.polling
    finally:
        fake.heal(fake.ports[0])
        await replica.stop()
        await daemon.close()
        await _stop_all(other)
