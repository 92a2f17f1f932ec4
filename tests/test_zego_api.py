"""The Zego task registration API on the daemon's own web server, and the persisted watch list."""

from __future__ import annotations

import json
from typing import Any

from helpers import parse_exposition, sim_knob, value

from monitord.simulators import zego as sim
from monitord.sources.zego import VENDOR_WINDOW_SECONDS
from monitord.web import build_app

TOKEN = "Registration-Token-7f3a"
T0 = 1_790_000_000.0


def target(url: str, name: str = "rec", **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": "zego", "url": url, "app_id": sim.DEFAULT_APP_ID,
            "server_secret": sim.DEFAULT_SECRET, "api_token": TOKEN, "interval": "10s", "timeout": "5s", **extra}


async def knob(url: str, **body: Any) -> dict[str, Any]:
    return await sim_knob(url, "zego", **body)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def tasks_with_series(daemon: Any) -> set[str]:
    s = parse_exposition(daemon.store.render().decode())
    return {dict(ls)["task"] for n, ls in s if n.startswith("rtc_recording_task") and "task" in dict(ls)}


async def test_token_is_required_and_checked(start_sim, make_daemon, aiohttp_client, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    daemon = make_daemon([target(url)], clock=clock)
    client = await aiohttp_client(build_app(daemon))
    r = await client.post("/api/v1/targets/rec/tasks", json={"task_id": "AnyTask000000001"})
    assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    r = await client.post("/api/v1/targets/rec/tasks", json={"task_id": "AnyTask000000001"},
                          headers={"Authorization": "Bearer not-the-token"})
    assert r.status == 403
    r = await client.get("/api/v1/targets/rec/tasks", headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status == 401
    r = await client.get("/api/v1/targets/rec/tasks", headers=AUTH)
    assert r.status == 200 and (await r.json()) == {"tasks": []}


async def test_api_is_off_without_a_token(start_sim, make_daemon, aiohttp_client, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    config = target(url)
    del config["api_token"]
    daemon = make_daemon([config], clock=clock)
    client = await aiohttp_client(build_app(daemon))
    r = await client.post("/api/v1/targets/rec/tasks", json={"task_id": "AnyTask000000001"}, headers=AUTH)
    assert r.status == 404


async def test_registered_task_is_polled_survives_a_restart_and_can_be_unregistered(
        start_sim, make_daemon, aiohttp_client, clock) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="empty")
    task = (await knob(url, create={"task_id": "RegisteredTask01", "started_ago": 120}))["created"]
    daemon = make_daemon([target(url)], clock=clock)
    client = await aiohttp_client(build_app(daemon))
    r = await client.post("/api/v1/targets/rec/tasks", json={"task_id": task, "started_at": T0 - 120},
                          headers=AUTH)
    assert r.status == 201, await r.text()
    assert (await r.json())["origin"] == "api"
    r = await client.post("/api/v1/targets/rec/tasks", json={"task_id": task}, headers=AUTH)
    assert r.status == 200, "registering twice is harmless"
    assert (await daemon.poll_all_once())["rec"].ok
    assert tasks_with_series(daemon) == {task}
    await daemon.close()

    again = make_daemon([target(url)], clock=clock)
    again_client = await aiohttp_client(build_app(again))
    r = await again_client.get("/api/v1/targets/rec/tasks", headers=AUTH)
    listed = (await r.json())["tasks"]
    assert [(t["task_id"], t["origin"], t["started_at"]) for t in listed] == [(task, "api", T0 - 120)]
    assert (await again.poll_all_once())["rec"].ok
    assert tasks_with_series(again) == {task}

    r = await again_client.delete(f"/api/v1/targets/rec/tasks/{task}", headers=AUTH)
    assert r.status == 200
    r = await again_client.delete(f"/api/v1/targets/rec/tasks/{task}", headers=AUTH)
    assert r.status == 404
    before = app[sim.SIM_KEY].requests
    assert (await again.poll_all_once())["rec"].ok
    assert app[sim.SIM_KEY].requests == before, "an unregistered task is not queried"
    s = parse_exposition(again.store.render().decode())
    assert value(s, "monitord_zego_tasks_removed_total", reason="unregistered") == 1
    assert value(s, "monitord_zego_tasks_watched", origin="api") == 0


async def test_registered_task_leaves_after_its_last_report(start_sim, make_daemon, aiohttp_client,
                                                            clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    task = (await knob(url, create={"task_id": "EndingTask000001"}))["created"]
    daemon = make_daemon([target(url)], clock=clock)
    client = await aiohttp_client(build_app(daemon))
    assert (await client.post("/api/v1/targets/rec/tasks", json={"task_id": task}, headers=AUTH)).status == 201
    rt = daemon.runtime("rec")
    assert (await rt.run_once()).ok
    await knob(url, task=task, status="ended_abnormally")
    await knob(url, task=task, file_status="uploaded_backup")
    assert (await rt.run_once()).ok
    assert tasks_with_series(daemon) == {task}
    clock.advance(900)
    assert (await rt.run_once()).ok
    assert tasks_with_series(daemon) == set()
    r = await client.get("/api/v1/targets/rec/tasks", headers=AUTH)
    assert (await r.json())["tasks"] == []
    await daemon.close()
    again = make_daemon([target(url)], clock=clock)
    assert (await again.poll_all_once())["rec"].ok
    assert tasks_with_series(again) == set(), "the removal was persisted"


async def test_registration_is_validated(start_sim, make_daemon, aiohttp_client, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    daemon = make_daemon([target(url)], clock=clock)
    client = await aiohttp_client(build_app(daemon))
    path = "/api/v1/targets/rec/tasks"
    cases = [
        ({"task_id": "has space"}, 400),
        ({"task_id": "x" * 65}, 400),
        ({"task_id": 12345}, 400),
        ({"task_id": "OkTask0000000001", "extra": 1}, 400),
        ({"task_id": "OkTask0000000001", "started_at": "yesterday"}, 400),
        ({"task_id": "OkTask0000000001", "started_at": T0 + 3600}, 400),
        ({"task_id": "OkTask0000000001", "started_at": T0 - VENDOR_WINDOW_SECONDS - 1}, 422),
        (["OkTask0000000001"], 400),
    ]
    for body, status in cases:
        r = await client.post(path, data=json.dumps(body), headers=AUTH)
        assert r.status == status, (body, await r.text())
    r = await client.post(path, data=b"{not json", headers=AUTH)
    assert r.status == 400
    r = await client.put(path, json={"task_id": "OkTask0000000001"}, headers=AUTH)
    assert r.status == 405
    r = await client.get("/api/v1/targets/rec/elsewhere", headers=AUTH)
    assert r.status == 404
    r = await client.get(path, headers=AUTH)
    assert (await r.json())["tasks"] == []


async def test_full_watch_list_refuses_and_counts(start_sim, make_daemon, aiohttp_client, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, task_ids=["Rec2SingleStream"], max_tasks=2)], clock=clock)
    client = await aiohttp_client(build_app(daemon))
    path = "/api/v1/targets/rec/tasks"
    assert (await client.post(path, json={"task_id": "Rec5PausedTask00"}, headers=AUTH)).status == 201
    r = await client.post(path, json={"task_id": "Rec3AbnormalEnd0"}, headers=AUTH)
    assert r.status == 409
    assert (await daemon.poll_all_once())["rec"].ok
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_zego_tasks_over_limit_total") == 1
    assert tasks_with_series(daemon) == {"Rec2SingleStream", "Rec5PausedTask00"}


async def test_registration_without_start_time_expires_three_days_after_registration(
        start_sim, make_daemon, aiohttp_client, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    daemon = make_daemon([target(url)], clock=clock)
    client = await aiohttp_client(build_app(daemon))
    # Not (yet) known to the vendor: the start time never arrives, the registration time counts.
    assert (await client.post("/api/v1/targets/rec/tasks", json={"task_id": "NeverStarted0001"},
                              headers=AUTH)).status == 201
    rt = daemon.runtime("rec")
    assert (await rt.run_once()).ok
    clock.advance(VENDOR_WINDOW_SECONDS + 1)
    assert (await rt.run_once()).ok
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_zego_tasks_removed_total", reason="expired") == 1
    assert value(s, "monitord_zego_tasks_watched", origin="api") == 0


async def test_corrupt_state_file_is_reported_and_rebuilt(start_sim, make_daemon, clock, tmp_path) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    state_dir = tmp_path / "state"
    state_dir.mkdir(exist_ok=True)
    (state_dir / "rec.tasks.json").write_text("{broken")
    daemon = make_daemon([target(url, task_ids=["Rec2SingleStream"])], clock=clock)
    assert (await daemon.poll_all_once())["rec"].ok
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_state_errors_total", reason="bad_json") == 1
    assert tasks_with_series(daemon) == {"Rec2SingleStream"}
    assert json.loads((state_dir / "rec.tasks.json").read_text())["tasks"]["Rec2SingleStream"]["origin"] == "config"


async def test_watch_list_gauge_follows_a_registration_without_waiting_for_a_poll(
        start_sim, make_daemon, aiohttp_client, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    daemon = make_daemon([target(url)], clock=clock)
    client = await aiohttp_client(build_app(daemon))

    def watched() -> float | None:
        return value(parse_exposition(daemon.store.render().decode()), "monitord_zego_tasks_watched", origin="api")

    before = watched()
    r = await client.post("/api/v1/targets/rec/tasks", json={"task_id": "JustRegistered01"}, headers=AUTH)
    assert r.status == 201
    assert watched() == (before or 0) + 1, "no poll ran: the API call itself republished the target"
