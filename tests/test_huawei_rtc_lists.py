"""Failed joins and running rooms from SparkRTC's user and room lists, against the simulator over
HTTP on 127.0.0.1: paging, the breakdown, the budget order, the contract the simulator enforces."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from helpers import value
from test_huawei_rtc import APP, APP2, _signed, post, series, state_of, target

from monitord.simulators import huawei_rtc as sim

LISTS_ONLY = {"sdk_types": ["native"], "abnormal_events": False}


def breakdown(s: Any, app: str, dimension: str) -> dict[str, float]:
    return {dict(labels)["dimension_value"]: v for (name, labels), v in s.items()
            if name == "rtc_huawei_failed_join_users_by_dimension" and dict(labels)["app"] == app
            and dict(labels)["dimension"] == dimension}


async def test_failed_joins_by_dimension_and_running_rooms_match_the_vendor(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, failed_joins_per_minute=4)
    rt = state_of(app)
    daemon = make_daemon([target(url, apps=[{"id": APP}, {"id": APP2, "room_id": "room-1"}],
                                 users_page_size=5, **LISTS_ONLY)], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    now = clock()
    s = series(daemon)
    failed = [u for u in rt.rtc_users(APP, now - 300, now, now) if u["state"] == "FAIL"]
    assert len(failed) > 5, "more than one page"
    assert value(s, "rtc_huawei_failed_join_users", app=APP) == len(failed)
    for dimension in ("isp", "region", "platform", "sdk"):
        assert breakdown(s, APP, dimension) == dict(Counter(u[dimension] for u in failed)), dimension
    pages = -(-len(failed) // 5)
    assert value(s, "monitord_huawei_rtc_requests_total", api="failed_joins", outcome="ok") >= pages
    room_failed = [u for u in rt.rtc_users(APP2, now - 300, now, now) if u["state"] == "FAIL" and u["room_id"] == "room-1"]
    assert value(s, "rtc_huawei_failed_join_users", app=APP2, room="room-1") == len(room_failed)
    running = [r for r in rt.rooms(APP, now - 86400, now, now) if r["state"] == "RUNNING"]
    assert running and value(s, "rtc_huawei_running_rooms", app=APP) == len(running)
    # Counts only: no user id, session, nickname or address is a label value.
    labels = {v for (_, ls) in s for _, v in ls}
    for user in failed:
        assert not {user["uid"], user["session"], user["nick_name"], user["ip"]} & labels


async def test_a_window_beyond_the_page_cap_keeps_its_total_and_drops_its_breakdown(
    start_sim, make_daemon, clock
) -> None:
    url, app = await start_sim(sim, clock=clock, failed_joins_per_minute=10)
    daemon = make_daemon([target(url, users_page_size=3, users_max_pages=2, **LISTS_ONLY)], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    now = clock()
    failed = [u for u in state_of(app).rtc_users(APP, now - 300, now, now) if u["state"] == "FAIL"]
    assert len(failed) > 6
    s = series(daemon)
    assert value(s, "rtc_huawei_failed_join_users", app=APP) == len(failed), "the total is the vendor's"
    assert breakdown(s, APP, "isp") == {}, "a breakdown of the first rows only would be a wrong number"
    assert value(s, "monitord_huawei_rtc_failed_join_breakdowns_incomplete_total") == 1
    assert state_of(app).requests_by_path["users"] == 2


async def test_the_lists_come_after_every_realtime_series_in_the_budget(start_sim, make_daemon, clock) -> None:
    """A tight budget: the lists wait while the realtime series are fresh, and still get their turn."""
    url, app = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url, budget_per_minute=12, interval="10s", assume_budget_spent_at_start=True,
                                 **LISTS_ONLY)], clock=clock)
    order: list[str] = []
    seen: Counter[str] = Counter()
    for _ in range(60):
        assert (await daemon.poll_all_once())["rtc"].ok
        for path, n in state_of(app).requests_by_path.items():
            if n > seen[path]:
                order.append(path.split("/")[0] if "realtime" not in path else "realtime")
                seen[path] = n
        clock.advance(10)
    s = series(daemon)
    assert order.index("users") > order.index("realtime") and order.index("rooms") > order.index("realtime")
    assert value(s, "monitord_huawei_rtc_budget_throttled_waits_total", api="failed_joins") > 0
    assert value(s, "rtc_huawei_failed_join_users", app=APP) is not None, "waited, not starved"
    assert value(s, "rtc_huawei_running_rooms", app=APP) is not None
    assert state_of(app).throttled == 0


async def test_a_failed_join_window_cut_by_the_budget_continues_where_it_stopped(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, failed_joins_per_minute=3)
    t = target(url, budget_per_minute=6, users_page_size=1, users_max_pages=50, running_rooms=False, **LISTS_ONLY,
               apps=[{"id": APP}])
    daemon = make_daemon([t], clock=clock)
    source = daemon.runtime("rtc").source
    cut = 0
    for _ in range(60):
        assert (await daemon.poll_all_once())["rtc"].ok
        cut += bool(source.lists.pending)
        clock.advance(20)
    s = series(daemon)
    total = value(s, "rtc_huawei_failed_join_users", app=APP)
    assert cut, "some window was left half read by the budget"
    assert total is not None and total > 2
    assert sum(breakdown(s, APP, "isp").values()) == total, "every page of one window, none twice"


async def test_the_simulator_enforces_the_list_contract(start_sim, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    now = datetime.fromtimestamp(clock(), UTC).replace(tzinfo=None)
    users = f"/v1/{sim.PROJECT_ID}/rtc/users"
    rooms = f"/v1/{sim.PROJECT_ID}/rtc/rooms"
    cases = [
        (users, [("app", APP), ("state", "FAIL,ONLINE")], 200),
        (users, [("app", APP), ("state", "BROKEN")], 400),
        (users, [("app", APP), ("limit", "1001")], 400),
        (users, [("state", "FAIL")], 400),
        (users, [("app", APP), ("start_time", "2026-01-01T00:00:00Z"), ("end_time", "2026-12-01T00:00:00Z")], 400),
        (rooms, [("app", APP), ("state", "RUNNING"), ("limit", "1")], 200),
        (rooms, [("app", APP), ("state", "FAIL")], 400),
    ]
    async with aiohttp.ClientSession() as s:
        for path, query, status in cases:
            full, headers = _signed(url, path, query, now)
            async with s.get(aiohttp.client.URL(full, encoded=True), headers=headers) as r:
                assert r.status == status, (path, query, await r.text())
                if status == 400:
                    assert (await r.json())["error_code"] == "DATA.100011001"
                elif path == rooms:
                    body = await r.json()
                    assert len(body["room_info_list"]) <= 1 and body["total"] >= len(body["room_info_list"])


@pytest.mark.parametrize("off", ["failed_joins", "running_rooms"])
async def test_each_list_can_be_turned_off(start_sim, make_daemon, clock, off) -> None:
    url, app = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url, **{off: False}, **LISTS_ONLY)], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    path = "users" if off == "failed_joins" else "rooms"
    assert state_of(app).requests_by_path[path] == 0
    await post(url, "/_sim/huawei_rtc", {})


async def test_one_network_failing_joins_shows_in_the_user_list_and_the_join_rate(start_sim, make_daemon, clock) -> None:
    # The knob the fault matrix uses (benchmarks/alert_matrix.py, huawei-join-failures-one-isp):
    # the failed users of one carrier and the app's join success rate move together, so
    # HuaweiRtcJoinFailuresOnOneNetwork has both of its conditions from one fault.
    url, app = await start_sim(sim, clock=clock)
    rt = state_of(app)
    healthy_minute = int(clock() // 60)
    assert rt.point(APP, "JoinSuccessRate", "native", healthy_minute * 60.0, clock() + 3600) >= 0.993
    await post(url, "/_sim/huawei_rtc", {"network_join_failures": {"app": APP, "isp": "CUCC", "per_minute": 4}})
    clock.advance(300)
    now = clock()
    failed = [u for u in rt.rtc_users(APP, now - 300, now, now) if u["state"] == "FAIL"]
    assert sum(u["isp"] == "CUCC" for u in failed) >= 16
    joins = [u["join_time"] for u in rt.rtc_users(APP, now - 300, now, now)]
    assert joins == sorted(joins), "oldest first"
    assert not [u for u in rt.rtc_users(APP2, now - 300, now, now) if u["uid"].count("n")], "one app only"
    failing_minute = int(now // 60) - 1
    assert rt.point(APP, "JoinSuccessRate", "native", failing_minute * 60.0, now + 3600) < 0.99
    assert rt.point(APP2, "JoinSuccessRate", "native", failing_minute * 60.0, now + 3600) >= 0.993
    daemon = make_daemon([target(url, apps=[{"id": APP}], **LISTS_ONLY)], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    assert breakdown(series(daemon), APP, "isp")["CUCC"] >= 16
    # Ending it leaves the affected minutes as published; later minutes are healthy again.
    await post(url, "/_sim/huawei_rtc", {"network_join_failures": None})
    clock.advance(600)
    assert rt.point(APP, "JoinSuccessRate", "native", failing_minute * 60.0, clock() + 3600) < 0.99
    assert rt.point(APP, "JoinSuccessRate", "native", (int(clock() // 60) - 1) * 60.0, clock() + 3600) >= 0.993
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/_sim/huawei_rtc", json={"network_join_failures": {"app": APP, "per_minute": 4}}) as r:
            assert r.status == 400
