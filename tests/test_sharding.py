"""Sharding: every target in exactly one shard, budget domains kept whole, the shard's self-metrics,
the command line, and state that follows a target through a 2 -> 3 reshard (against the huawei_rtc
simulator's truth, over real HTTP between replicas)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import parse_exposition, value

from monitord import simulators
from monitord.app import Daemon
from monitord.config import Config, parse
from monitord.handover import Handover, add_routes
from monitord.sharding import ShardError, ShardSpec, budget_domain, peer_urls, shard_of, spec_from_args
from monitord.simulators import huawei_rtc as rtc_sim
from monitord.web import build_app

ROOT = Path(__file__).resolve().parent.parent


def _demo_config() -> Config:
    urls = {kind: f"http://127.0.0.1:{10530 + i}" for i, kind in enumerate(sorted(simulators.SIMULATORS))}
    raw = simulators.demo_config(urls)
    extra = []
    # Many independent endpoints, and several targets sharing each kind of budget.
    for i in range(40):
        extra.append({**next(t for t in raw["targets"] if t["source"] == "endpoint"), "name": f"room-{i}"})
    rtc = next(t for t in raw["targets"] if t["source"] == "huawei_rtc" and t.get("ak"))
    extra += [{**rtc, "name": f"rtc-same-ak-{i}", "apps": [{"id": f"app{i}"}]} for i in range(4)]
    polyv = next(t for t in raw["targets"] if t["source"] == "polyv")
    extra += [{**polyv, "name": f"polyv-{i}", "app_id": f"appid{i}"} for i in range(4)]
    zego = next(t for t in raw["targets"] if t["source"] == "zego")
    extra += [{**zego, "name": f"zego-same-app-{i}"} for i in range(3)]
    raw["targets"] += extra
    return parse(raw)


@pytest.mark.parametrize("total", [1, 2, 3, 5, 8])
def test_every_target_belongs_to_exactly_one_shard(total: int) -> None:
    config = _demo_config()
    owners = {t.name: [n for n in range(total) if ShardSpec(n, total).owns(t)] for t in config.targets}
    assert all(len(o) == 1 for o in owners.values()), owners
    parts = [ShardSpec(n, total).restrict(config).targets for n in range(total)]
    assert sorted(t.name for part in parts for t in part) == sorted(t.name for t in config.targets)
    if total > 1:
        assert all(parts), "with 40+ independent targets every shard gets some"


def test_targets_that_share_a_budget_or_a_ban_share_a_shard() -> None:
    config = _demo_config()
    by_domain: dict[str, set[str]] = {}
    for t in config.targets:
        by_domain.setdefault(budget_domain(t), set()).add(t.name)
    groups = {
        "huawei_rtc": {t.name for t in config.targets if t.name.startswith("rtc-same-ak") or t.name == "sparkrtc"},
        "polyv": {t.name for t in config.targets if t.source == "polyv"},
        "zego": {t.name for t in config.targets if t.source == "zego"},
    }
    for kind, names in groups.items():
        assert any(names <= members for members in by_domain.values()), f"{kind} targets split: {by_domain}"
        for total in (2, 3, 7):
            assert len({shard_of(budget_domain(config.target(n)), total) for n in names}) == 1
    # An IAM-token account is another account than the AK's, and endpoints are on their own.
    assert budget_domain(config.target("sparkrtc-iam")) != budget_domain(config.target("sparkrtc"))
    assert budget_domain(config.target("room-1")) == "target/room-1"
    # The AK is a secret: the domain key is its hash, never the AK itself.
    assert rtc_sim.ACCESS_KEY not in budget_domain(config.target("sparkrtc"))


def test_budget_account_overrides_the_domain() -> None:
    config = _demo_config()
    rtc = config.target("sparkrtc")
    other = rtc.model_copy(update={"budget_account": "team-b", "name": "b"})
    assert budget_domain(other) == "huawei_rtc/team-b" != budget_domain(rtc)


def _args(**kw: Any) -> argparse.Namespace:
    base = {"shard": None, "total_shards": 1, "shard_from_pod_name": None, "replicas_per_shard": 1}
    return argparse.Namespace(**{**base, **kw})


def test_shard_from_flags_or_pod_ordinal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert spec_from_args(_args()) == ShardSpec(0, 1)
    assert spec_from_args(_args(shard=2, total_shards=3)) == ShardSpec(2, 3)
    assert spec_from_args(_args(shard_from_pod_name="monitord-2", total_shards=3)) == ShardSpec(2, 3)
    # Two pods per shard (hot standby): ordinals 2N and 2N+1 serve shard N.
    assert spec_from_args(_args(shard_from_pod_name="monitord-5", total_shards=3, replicas_per_shard=2)) == \
        ShardSpec(2, 3)
    monkeypatch.setenv("POD_NAME", "monitord-1")
    assert spec_from_args(_args(shard_from_pod_name="", total_shards=2)) == ShardSpec(1, 2)
    for bad, message in [
        (_args(shard=3, total_shards=3), "--shard must be in 0..2"),
        (_args(total_shards=0), "at least 1"),
        (_args(shard_from_pod_name="monitord", total_shards=2), "does not end in -<ordinal>"),
        (_args(shard_from_pod_name="monitord-6", total_shards=3, replicas_per_shard=2), "more replicas than shards"),
        (_args(shard=1, shard_from_pod_name="monitord-1", total_shards=2), "not both"),
    ]:
        with pytest.raises(ShardError, match=message):
            spec_from_args(bad)


def test_peer_urls_expand_the_ordinal() -> None:
    assert peer_urls("http://m-{ordinal}.peers:10520/", 2, 2) == [f"http://m-{i}.peers:10520" for i in range(4)]
    assert peer_urls("http://a:1, http://b:2", 3, 1) == ["http://a:1", "http://b:2"]


def test_run_refuses_a_bad_shard_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("targets: []\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "monitord", "run", "--config.file", str(config),
                             "--shard", "4", "--total-shards", "3"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert "--shard must be in 0..2 for --total-shards 3, got 4" in result.stderr


def test_each_shard_says_which_it_is_and_what_it_owns() -> None:
    config = _demo_config()
    totals = 0
    for n in range(3):
        daemon = Daemon(config, shard=ShardSpec(n, 3))
        daemon.start(schedule=False)
        s = parse_exposition(daemon.store.render().decode())
        assert value(s, "monitord_shard", shard=str(n)) == n
        assert value(s, "monitord_total_shards") == 3
        assert value(s, "monitord_configured_targets") == len(config.targets)
        owned = value(s, "monitord_shard_targets", shard=str(n))
        assert owned == len(daemon.config.targets) == len(daemon.scheduler.runtimes())
        assert value(s, "monitord_leader", shard=str(n)) == 1, "no election: the only replica polls"
        polled = {dict(labels)["target"] for (name, labels), _ in s.items() if name == "monitord_polls_total"}
        assert polled == {t.name for t in daemon.config.targets}
        totals += int(owned or 0)
    assert totals == len(config.targets)


# ------------------------------------------------------------------- state across a reshard

def _state_target(i: int, url: str) -> dict[str, Any]:
    return {
        "name": f"rtc-{i}", "source": "huawei_rtc", "endpoint": url, "iam_endpoint": url,
        "project_id": rtc_sim.PROJECT_ID, "ak": rtc_sim.ACCESS_KEY, "sk": rtc_sim.SECRET_KEY,
        # Each its own budget account (so they spread over shards) and its own app (own events).
        "budget_account": f"team-{i}", "budget_per_minute": 600, "apps": [{"id": f"app-{i}"}],
        "sdk_types": ["native"], "interval": "60s", "timeout": "10s", "events_interval": "60s",
        "events_overlap": "15m", "events_page_size": 5, "assume_budget_spent_at_start": False,
        "event_distribution_window": None,
    }


def _event_totals(daemon: Daemon) -> dict[str, Counter[tuple[str, ...]]]:
    out: dict[str, Counter[tuple[str, ...]]] = {}
    for (name, labels), v in parse_exposition(daemon.store.render().decode()).items():
        d = dict(labels)
        if name == "rtc_huawei_abnormal_events_total":
            out.setdefault(d["target"], Counter())[
                (d["abnormal_type"], d["abnormal_factor"], d["stage"], d["location"])] += int(v)
    return out


async def test_event_counts_follow_targets_through_a_2_to_3_reshard(
        start_sim: Any, aiohttp_server: Any, clock: Any, tmp_path: Path) -> None:
    url, app = await start_sim(rtc_sim, clock=clock, events_per_minute=3, budget_per_minute=6000)
    truth = app[rtc_sim.SIM_KEY]
    config = parse({"global": {"state_dir": str(tmp_path / "unused")},
                    "targets": [_state_target(i, url) for i in range(8)]})
    moved = [t.name for t in config.targets if ShardSpec(shard_of(budget_domain(t), 2), 3).owns(t) is False]
    assert moved, "some targets must change shard for this test to mean anything"
    assert any(shard_of(budget_domain(t), 3) == 2 for t in config.targets)

    class Pod:
        """One StatefulSet pod: its ordinal's own state volume, its own web server."""

        def __init__(self, ordinal: int, total: int) -> None:
            state_dir = tmp_path / f"pvc-{ordinal}"
            self.daemon = Daemon(config.model_copy(update={
                "global_": config.global_.model_copy(update={"state_dir": state_dir})}),
                clock=clock, shard=ShardSpec(ordinal, total))

        async def serve(self) -> str:
            web_app = build_app(self.daemon)
            add_routes(web_app, self.daemon)
            server = await aiohttp_server(web_app, host="127.0.0.1")
            return f"http://127.0.0.1:{server.port}"

    start = clock() - 900  # the first window of a fresh start reaches back events_overlap

    def check(pods: list[Pod]) -> None:
        """Every replica that exposes a target shows exactly the simulator's truth for it."""
        for pod in pods:
            for name, counts in _event_totals(pod.daemon).items():
                i = int(name.split("-")[1])
                want = truth.expected_counts(f"app-{i}", start, clock())
                assert counts == want, f"{name} on shard {pod.daemon.shard}: counted {counts}, truth {want}"

    async def step(pods: list[Pod]) -> None:
        for pod in pods:
            outcomes = await pod.daemon.poll_all_once()
            assert all(o.ok for o in outcomes.values()), outcomes
        check(pods)
        clock.advance(60)

    async def boot(ordinal: int, total: int, peers: list[str]) -> tuple[Pod, str]:
        pod = Pod(ordinal, total)
        url_ = await pod.serve()
        await Handover(pod.daemon, [*peers, url_]).pull()
        pod.daemon.start(schedule=False)
        return pod, url_

    # Two shards run for a while.
    p0, u0 = await boot(0, 2, [])
    p1, u1 = await boot(1, 2, [])
    for _ in range(5):
        await step([p0, p1])
    # Rolling update to three shards, as a StatefulSet does it: the new pod 2 first, while the
    # old pods still poll with M=2 (they overlap with it), then pod 1, then pod 0.
    n2, v2 = await boot(2, 3, [u0, u1])
    assert {t.name for t in n2.daemon.config.targets}, "the new shard owns targets"
    for _ in range(2):
        await step([p0, p1, n2])
    await p1.daemon.close()
    n1, v1 = await boot(1, 3, [u0, v2])
    for _ in range(2):
        await step([p0, n1, n2])
    await p0.daemon.close()
    n0, _v0 = await boot(0, 3, [v1, v2])
    for _ in range(3):
        await step([n0, n1, n2])

    # Now every target has exactly one owner and its count is the truth since the first start.
    final = [n0, n1, n2]
    owners = Counter(t.name for pod in final for t in pod.daemon.config.targets)
    assert owners == Counter(t.name for t in config.targets)
    totals = {name: c for pod in final for name, c in _event_totals(pod.daemon).items()}
    assert set(totals) == {t.name for t in config.targets}
    assert all(sum(counts.values()) > 10 for counts in totals.values())
    assert sum(n.daemon.state.errors.total() for n in final) == 0
    for pod in [p0, p1, *final]:
        await pod.daemon.close()


async def test_without_the_handover_a_moved_target_counts_its_look_back_again(
        start_sim: Any, clock: Any, tmp_path: Path) -> None:
    """The counter-example that shows what the handover is for (and that the check above can fail)."""
    url, app = await start_sim(rtc_sim, clock=clock, events_per_minute=3, budget_per_minute=6000)
    truth = app[rtc_sim.SIM_KEY]
    target = _state_target(0, url)
    start = clock() - 900
    old = Daemon(parse({"global": {"state_dir": str(tmp_path / "a")}, "targets": [target]}), clock=clock)
    old.start(schedule=False)
    for _ in range(6):
        await old.poll_all_once()
        clock.advance(60)
    await old.close()
    fresh = Daemon(parse({"global": {"state_dir": str(tmp_path / "b")}, "targets": [target]}), clock=clock)
    fresh.start(schedule=False)
    await fresh.poll_all_once()
    counted = sum(_event_totals(fresh)["rtc-0"].values())
    since_start = sum(truth.expected_counts("app-0", start, clock()).values())
    since_own_look_back = sum(truth.expected_counts("app-0", clock() - 900, clock()).values())
    assert counted == since_own_look_back < since_start, "a fresh owner restarts the count from its look-back"
    await fresh.close()


async def test_state_export_keeps_each_target_to_its_own_files(tmp_path: Path) -> None:
    """Names that prefix each other ("a" and "a.b") must not mix up their files; the newest copy
    wins an adoption, an older one is refused."""
    from monitord.state import StateModel, StateStore

    class Count(StateModel):
        n: int

    class Ids(StateModel):
        ids: list[int]

    for directory in (tmp_path / "d", None):
        store = StateStore(directory)
        store.save("a", "events-1", Count, {"n": 1})
        store.save("a.b", "events-1", Count, {"n": 2})
        store.save("a.b", "tasks", Ids, {"ids": [1]})
        assert {k: v["value"] for k, v in store.export("a", ["a", "a.b"]).items()} == {"events-1": {"n": 1}}
        assert {k: v["value"] for k, v in store.export("a.b", ["a", "a.b"]).items()} == \
            {"events-1": {"n": 2}, "tasks": {"ids": [1]}}
        saved = store.saved_at("a", "events-1")
        assert saved is not None
        store.adopt("a", "events-1", {"n": 9}, saved + 10)
        assert store.load("a", "events-1", Count) == Count(n=9)
        assert store.saved_at("a", "events-1") == pytest.approx(saved + 10)


async def test_a_shard_without_election_but_with_peers_still_says_it_polls(tmp_path: Path) -> None:
    config = _demo_config()
    daemon = Daemon(config, shard=ShardSpec(1, 3))
    handover = Handover(daemon, ["http://127.0.0.1:1"], timeout=5)
    assert await handover.pull() == 0
    daemon.start(schedule=False)
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_leader", shard="1") == 1
    assert value(s, "monitord_state_handover_errors_total", reason="connect") == 1
    assert value(s, "monitord_state_handover_files_total") == 0
    await daemon.close()


async def test_the_state_endpoint_answers_per_shard_and_refuses_nonsense(aiohttp_client: Any, tmp_path: Path) -> None:
    config = _demo_config()
    daemon = Daemon(config.model_copy(update={
        "global_": config.global_.model_copy(update={"state_dir": tmp_path / "s"})}), shard=ShardSpec(0, 3))
    from monitord.state import StateModel

    class Of(StateModel):
        of: str

    for t in config.targets:
        daemon.state.save(t.name, "k", Of, {"of": t.name})
    app = build_app(daemon)
    add_routes(app, daemon)
    client = await aiohttp_client(app)
    for n in range(3):
        r = await client.get("/api/v1/state", params={"shard": str(n), "total": "3"})
        assert r.status == 200
        got = (await r.json())["targets"]
        assert set(got) == {t.name for t in ShardSpec(n, 3).restrict(config).targets}
        assert all(files["k"]["value"] == {"of": name} for name, files in got.items())
    for query in ({"shard": "3", "total": "3"}, {"shard": "x", "total": "3"}, {}):
        r = await client.get("/api/v1/state", params=query)
        assert r.status == 400


async def test_a_reload_keeps_a_shard_to_its_own_targets() -> None:
    config = _demo_config()
    spec = ShardSpec(2, 3)
    daemon = Daemon(parse({"targets": []}), shard=spec)
    daemon.start(schedule=False)
    await daemon.apply(config)
    want = {t.name for t in spec.restrict(config).targets}
    assert {rt.name for rt in daemon.scheduler.runtimes()} == want
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_configured_targets") == len(config.targets)
    assert value(s, "monitord_shard_targets", shard="2") == len(want)
    # A standby that reloads creates no runtime: it polls nothing until it leads.
    await daemon.stop_polling()
    await daemon.apply(parse({"targets": []}))
    await daemon.apply(config)
    assert not list(daemon.scheduler.runtimes())
    await daemon.close()
