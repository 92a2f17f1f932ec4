"""The vendor layer inside the daemon: the scope of shared objects the runtime owns (one object
per vendor domain, settings that must agree, reloads that change them for all, release on
close), shared state files named for what they are (and handed over with the domain), the
target's effective interval and timeout in its SourceContext, and the README's minimal source
(examples/rooms_source.py) polling a small vendor over real HTTP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from helpers import parse_exposition, value

from examples.rooms_source import RoomsSource
from monitord import handover
from monitord.app import Daemon, shared_conflicts
from monitord.config import parse
from monitord.errors import PollError
from monitord.sharding import ShardSpec
from monitord.state import StateStore
from monitord.vendor.pacing import BanState, BudgetState, RateLimiter
from monitord.vendor.scope import Scope, SharedConflict

REGISTRY: dict[str, Any] = {"example_rooms": RoomsSource}
README = Path(__file__).resolve().parent.parent / "README.md"


class RoomsVendor:
    def __init__(self) -> None:
        self.rooms = {"lobby": 3, "stage": 12}
        self.shed = False
        self.auth: list[str] = []

    async def room(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer k3y":
            return web.json_response({"error": "unauthorized"}, status=401)
        if self.shed:
            return web.Response(status=503)
        room = request.match_info["room"]
        if room not in self.rooms:
            return web.json_response({"error": "no such room"}, status=404)
        return web.json_response({"participants": self.rooms[room]})


@pytest.fixture
async def vendor(aiohttp_server: Any) -> tuple[RoomsVendor, str]:
    v = RoomsVendor()
    app = web.Application()
    app.router.add_get("/rooms/{room}", v.room)
    server = await aiohttp_server(app, host="127.0.0.1")
    return v, f"http://127.0.0.1:{server.port}"


def target(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": "example_rooms", "url": url, "api_key": "k3y", "rooms": ["lobby", "stage"],
            **extra}


def config(tmp_path: Path, targets: list[dict[str, Any]], **global_: Any) -> Any:
    return parse({"global": {"state_dir": str(tmp_path / "state"), **global_}, "targets": targets}, REGISTRY)


async def daemon_of(tmp_path: Path, targets: list[dict[str, Any]], **global_: Any) -> Daemon:
    daemon = Daemon(config(tmp_path, targets, **global_), registry=REGISTRY)
    daemon.start(schedule=False)
    return daemon


async def test_the_minimal_source_polls_through_the_layer(vendor: tuple[RoomsVendor, str], tmp_path: Path) -> None:
    v, url = vendor
    daemon = await daemon_of(tmp_path, [target("a", url, rooms=["lobby", "stage", "gone"])])
    try:
        outcomes = await daemon.poll_all_once()
        assert outcomes["a"].ok and outcomes["a"].requests == 3
        series = parse_exposition(daemon.store.render().decode())
        assert value(series, "rtc_example_room_participants", room="stage") == 12
        assert value(series, "rtc_example_room_participants", room="gone") is None
        assert value(series, "monitord_example_rooms_room_errors_total", room="gone", reason="not_found") == 1
        assert value(series, "monitord_example_rooms_room_errors_total", room="lobby", reason="not_found") == 0
        v.shed = True  # 503: the vendor says not to retry it; every room failed: the poll fails
        outcomes = await daemon.poll_all_once()
        assert not outcomes["a"].ok and outcomes["a"].reason == "http_5xx" and outcomes["a"].requests == 3
    finally:
        await daemon.close()
    assert set(v.auth) == {"Bearer k3y"}


async def test_source_context_carries_the_effective_interval_and_timeout(tmp_path: Path) -> None:
    daemon = await daemon_of(tmp_path, [target("a", "http://127.0.0.1:9"),
                                        target("b", "http://127.0.0.1:9", interval="20s", timeout="4s")],
                             interval="60s", timeout="8s", time_scale=2.0)
    try:
        a, b = daemon.runtime("a"), daemon.runtime("b")
        assert (a.source.ctx.interval, a.source.ctx.timeout) == (30.0, 4.0) == (a.interval, a.timeout)
        assert (b.source.ctx.interval, b.source.ctx.timeout) == (10.0, 2.0) == (b.interval, b.timeout)
        assert b.source.ctx.scope is a.source.ctx.scope is daemon.resources.scope
    finally:
        await daemon.close()


async def test_targets_of_one_domain_share_one_object_and_must_agree_on_its_settings(tmp_path: Path) -> None:
    daemon = await daemon_of(tmp_path, [target("a", "http://127.0.0.1:9"), target("b", "http://127.0.0.1:9/v2"),
                                        target("c", "http://localhost:9")])
    try:
        limiters = {n: daemon.runtime(n).source.api.pacing[0] for n in "abc"}
        assert limiters["a"] is limiters["b"] and limiters["c"] is not limiters["a"]
        assert daemon.runtime("a").source.shared.holders("requests") == ["a", "b"]
        raw = [target("a", "http://127.0.0.1:9"), target("b", "http://127.0.0.1:9", requests_per_second=9)]
        # b alone asks for another rate than a, which stays: refused, the running config kept.
        with pytest.raises(SharedConflict, match=r"a and b share requests .*\(5\.0, 1\.0\) in force, \(9\.0, 1\.0\) asked"):
            await daemon.apply(config(tmp_path, raw))
        assert [t.name for t in daemon.config.targets] == ["a", "b", "c"]
        assert daemon.runtime("a").source.shared.holders("requests") == ["a", "b"]
        assert daemon.resources.scope.retiring == frozenset()
        # Both change together: the running limiter takes the new rate.
        raw[0]["requests_per_second"] = 9
        await daemon.apply(config(tmp_path, raw))
        limiter = daemon.runtime("a").source.api.pacing[0]
        assert isinstance(limiter, RateLimiter) and limiter is limiters["a"] and limiter.rate == 9
        assert daemon.runtime("a").source.shared.holders("requests") == ["a", "b"]  # c and the old a, b left
    finally:
        await daemon.close()


def test_a_daemon_refuses_to_start_targets_that_disagree(tmp_path: Path) -> None:
    raw = {"targets": [target("a", "http://127.0.0.1:9"), target("b", "http://127.0.0.1:9", requests_per_second=1)]}
    with pytest.raises(SharedConflict):
        Daemon(parse(raw, REGISTRY), registry=REGISTRY).start(schedule=False)


def test_shared_objects_are_typed_and_released(tmp_path: Path) -> None:
    scope = Scope()
    store = StateStore(None)
    a = scope.bind("k", "d", target="a", state=store, clock=lambda: 0.0)
    b = scope.bind("k", "d", target="b", state=store, clock=lambda: 0.0)
    other = scope.bind("k", "elsewhere", target="c", state=store, clock=lambda: 0.0)
    assert a.get("cache", dict) is b.get("cache", dict) and other.get("cache", dict) is not a.get("cache", dict)
    with pytest.raises(TypeError):
        b.get("cache", list)
    assert a.holders("cache") == ["a", "b"]
    b.release()
    assert a.holders("cache") == ["a"]
    # With b gone nothing holds other settings: a may change them.
    assert a.get("n", int, settings=1, factory=lambda: 1) == b.get("n", int, settings=1, factory=lambda: 1)
    with pytest.raises(SharedConflict):
        b.get("n", int, settings=2, factory=lambda: 2)
    b.release()
    a.get("n", int, settings=2, factory=lambda: 2)


async def test_shared_state_files_are_named_for_what_they_are_and_bad_ones_set_aside(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "example_rooms@127.0.0.1.ban.json").write_text('{"until": "soon"}')
    daemon = await daemon_of(tmp_path, [target("a", "http://127.0.0.1:9")], time_scale=2.0)
    try:
        shared = daemon.runtime("a").source.shared
        ban = shared.ban("ban", 600.0, what="example polling")
        assert ban.hold_seconds == 300.0 and not ban.active()  # scaled; the bad file was not trusted
        assert (state_dir / "example_rooms@127.0.0.1.ban.corrupt").exists()
        assert daemon.state.errors[("a", "wrong_shape")] == 1
        ban.hold()
        saved = BanState.model_validate_json((state_dir / "example_rooms@127.0.0.1.ban.json").read_text())
        assert saved.until == ban.until
        budget = shared.budget("data-requests", 30, 60.0, assume_spent=False)
        assert budget.window == 30.0 and budget.take()
        assert (state_dir / "example_rooms@127.0.0.1.data-requests.json").exists()
        # The domain's files go with the domain's targets to the shard that owns them.
        exported = handover.shard_state(daemon, ShardSpec())
        assert set(exported["example_rooms@127.0.0.1"]) == {"ban", "data-requests"}
        # No file anywhere is named after a fake target.
        assert all(re.match(r"^(a|example_rooms@127\.0\.0\.1)\.", p.name) for p in state_dir.iterdir())
    finally:
        await daemon.close()
    again = await daemon_of(tmp_path, [target("a", "http://127.0.0.1:9")], time_scale=2.0)
    try:
        restored = again.runtime("a").source.shared.ban("ban", 600.0)
        assert restored.until == ban.until and restored is not ban
    finally:
        await again.close()


async def test_a_closed_runtime_no_longer_holds_shared_objects(tmp_path: Path) -> None:
    daemon = await daemon_of(tmp_path, [target("a", "http://127.0.0.1:9"), target("b", "http://127.0.0.1:9")])
    shared = daemon.runtime("a").source.shared
    await daemon.apply(config(tmp_path, [target("a", "http://127.0.0.1:9")]))
    assert shared.holders("requests") == ["a"]
    await daemon.close()
    assert shared.holders("requests") == []


async def test_shared_pacing_is_scaled_persisted_and_held_to_one_setting(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    targets = [target("a", "http://127.0.0.1:9"), target("b", "http://127.0.0.1:9")]
    daemon = await daemon_of(tmp_path, targets, time_scale=4.0)
    try:
        a, b = (daemon.runtime(n).source.shared for n in "ab")
        assert a.holders("nothing yet") == []
        limiter = a.rate_limiter("uploads", 5, 10.0)
        assert limiter.settings == (5, 2.5)
        budget = a.budget("data-requests", 30, 60.0, assume_spent=True)
        assert (budget.window, budget.backoff, budget.max_backoff) == (15.0, 3.75, 75.0)
        assert budget.used() == 30  # no file yet: a spent window, as asked
        assert b.budget("data-requests", 30, 60.0) is budget
        with pytest.raises(SharedConflict, match="data-requests"):
            b.budget("data-requests", 20, 60.0)
        with pytest.raises(SharedConflict, match="ban"):
            a.ban("ban", 600.0)
            b.ban("ban", 60.0)
        budget.throttled()
        saved = BudgetState.model_validate_json((state_dir / "example_rooms@127.0.0.1.data-requests.json").read_text())
        assert saved.blocked_until == budget.blocked_until > 0 and len(saved.sent) == 30
    finally:
        await daemon.close()
    again = await daemon_of(tmp_path, targets, time_scale=4.0)
    try:
        restored = again.runtime("b").source.shared.budget("data-requests", 30, 60.0, assume_spent=False)
        assert restored is not budget and list(restored.sent) == list(budget.sent)
    finally:
        await again.close()


async def test_a_ban_from_the_scope_names_what_it_pauses(tmp_path: Path) -> None:
    daemon = await daemon_of(tmp_path, [target("a", "http://127.0.0.1:9")])
    try:
        ban = daemon.runtime("a").source.shared.ban("ban", 60.0, what="example polling of 127.0.0.1")
        ban.hold()
        with pytest.raises(PollError, match=r"^throttled: example polling of 127\.0\.0\.1 paused until"):
            ban.check()
    finally:
        await daemon.close()


def test_state_file_problems_are_counted_under_the_target_that_wrote_them(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    shared = Scope().bind("k", "d", target="t1", state=store, clock=lambda: 0.0)
    file = shared.state_file("ban", BanState)
    file.save({"until": "never"})
    assert store.errors[("t1", "write_error")] == 1 and file.load() is None
    file.save(BanState(until=5.0))
    assert file.load() == BanState(until=5.0) and (tmp_path / "k@d.ban.json").exists()


def test_conflicting_settings_are_found_before_anything_starts(tmp_path: Path) -> None:
    good = config(tmp_path, [target("a", "http://127.0.0.1:9"), target("b", "http://127.0.0.1:9")])
    assert shared_conflicts(good, REGISTRY) == []
    bad = config(tmp_path, [target("a", "http://127.0.0.1:9"), target("b", "http://127.0.0.1:9", requests_per_second=2),
                            target("c", "http://localhost:9", requests_per_second=2)])
    problems = shared_conflicts(bad, REGISTRY)
    assert len(problems) == 1 and problems[0].startswith("target b: example_rooms targets a and b share requests")


def test_refusals_name_the_source_domain_object_targets_and_settings() -> None:
    scope = Scope()
    store = StateStore(None)
    a, b, c = (scope.bind("polyv", "api.polyv.net", target=t, state=store, clock=lambda: 0.0) for t in "abc")
    a.get("limit", list, settings=10, factory=lambda: [10])
    b.get("limit", list, settings=10, factory=lambda: [10])
    with pytest.raises(SharedConflict) as err:
        c.get("limit", list, settings=20, factory=lambda: [20])
    assert str(err.value) == ("polyv targets a, b and c share limit of api.polyv.net but configure it differently "
                              "(10 in force, 20 asked): give them one value")
    with pytest.raises(TypeError) as wrong:
        c.get("limit", dict)
    assert str(wrong.value) == "shared 'limit' of polyv@api.polyv.net is a list, not a dict"
