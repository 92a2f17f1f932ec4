"""Signals that survive real scrape timing (issue 9): what `monitord_target_up` means, the age of
the newest vendor data, and counters that exist at 0 before their first event. Every source runs
against its simulator over HTTP on 127.0.0.1, on a controllable clock."""

from __future__ import annotations

from typing import Any

from helpers import parse_exposition, sim_faults, value

from monitord.simulators import avd, endpoint, huawei_rtc, polyv, zego
from monitord.state import REASONS as STATE_REASONS


def series(daemon: Any) -> Any:
    return parse_exposition(daemon.store.render().decode())


def rtc_target(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "rtc", "source": "huawei_rtc", "endpoint": url, "iam_endpoint": url,
        "project_id": huawei_rtc.PROJECT_ID, "ak": huawei_rtc.ACCESS_KEY, "sk": huawei_rtc.SECRET_KEY,
        "apps": [{"id": huawei_rtc.APPS[0]}], "sdk_types": ["native"], "interval": "60s", "timeout": "10s",
        "assume_budget_spent_at_start": False, "retry_base_delay": "1ms", "callback_secret": "cb-secret",
        **extra,
    }


# ------------------------------------------------------------------- up means "the vendor answered"


async def test_a_poll_without_vendor_requests_keeps_a_failing_target_down(start_sim, make_daemon, clock) -> None:
    """SparkRTC answering 503 to everything: the budget lets one poll in a few send requests; the
    polls in between ask nothing. They must not flip up to 1 nor make the target look fresh."""
    url, _ = await start_sim(huawei_rtc, clock=clock)
    daemon = make_daemon([rtc_target(url)], clock=clock)
    rt = daemon.runtime("rtc")
    first = await rt.run_once()
    assert first.ok and first.requests > 0
    healthy_at = clock()
    s = series(daemon)
    assert value(s, "monitord_target_up") == 1
    assert value(s, "monitord_last_success_timestamp_seconds") == healthy_at
    assert value(s, "monitord_last_data_timestamp_seconds") == healthy_at
    assert value(s, "rtc_online_users") is not None

    await sim_faults(url, status=503)
    clock.advance(60)
    failed = await rt.run_once()
    assert not failed.ok and failed.reason == "http_5xx" and failed.requests > 0
    errors = value(series(daemon), "monitord_poll_errors_total", reason="http_5xx")
    for _ in range(3):  # the budget share spent above has not accrued again yet
        clock.advance(1)
        idle = await rt.run_once()
        assert idle.ok and idle.requests == 0, idle
        s = series(daemon)
        assert value(s, "monitord_target_up") == 0, "an idle poll says nothing about the vendor"
        assert value(s, "monitord_last_success_timestamp_seconds") == healthy_at
        assert value(s, "monitord_last_data_timestamp_seconds") == healthy_at
        assert value(s, "rtc_online_users") is None, "a failing target's data stays dropped"
        assert value(s, "monitord_poll_errors_total", reason="http_5xx") == errors

    await sim_faults(url)
    clock.advance(60)
    recovered = await rt.run_once()
    assert recovered.ok and recovered.requests > 0
    s = series(daemon)
    assert value(s, "monitord_target_up") == 1
    assert value(s, "monitord_last_success_timestamp_seconds") == clock()
    assert value(s, "monitord_last_data_timestamp_seconds") == clock()


async def test_an_idle_poll_of_a_healthy_target_republishes_its_cache_without_refreshing(
    start_sim, make_daemon, clock
) -> None:
    url, _ = await start_sim(huawei_rtc, clock=clock)
    daemon = make_daemon([rtc_target(url)], clock=clock)
    rt = daemon.runtime("rtc")
    assert (await rt.run_once()).requests > 0
    fetched_at = clock()
    users = value(series(daemon), "rtc_online_users")
    clock.advance(1)
    idle = await rt.run_once()
    assert idle.ok and idle.requests == 0
    s = series(daemon)
    assert value(s, "monitord_target_up") == 1
    assert value(s, "rtc_online_users") == users, "cached values stay while the target is up"
    assert value(s, "monitord_last_success_timestamp_seconds") == fetched_at
    assert value(s, "monitord_last_data_timestamp_seconds") == fetched_at


async def test_huawei_cached_values_go_visibly_stale_before_they_are_dropped(start_sim, make_daemon, clock) -> None:
    """One API fails for 21 minutes while the others answer: its cached values stay exposed with
    their growing age past the 900 s stale threshold, and are dropped only after max_age (20m)."""
    url, _ = await start_sim(huawei_rtc, clock=clock, budget_per_minute=100)
    daemon = make_daemon([rtc_target(url, budget_per_minute=100)], clock=clock)
    rt = daemon.runtime("rtc")
    assert (await rt.run_once()).ok
    freeze = {"sdk_type": "native"}
    assert value(series(daemon), "rtc_video_freeze_ratio", **freeze) is not None
    await sim_faults(url, status=503, match="/realtime/quality")
    for minute in range(1, 22):
        clock.advance(60)
        assert (await rt.run_once()).ok, "the other APIs answer"
        s = series(daemon)
        age = value(s, "monitord_huawei_rtc_refresh_age_seconds", api="quality", vendor_metric="VideoFreezeRate")
        if minute * 60 <= 1200:
            assert value(s, "rtc_video_freeze_ratio", **freeze) is not None, minute
            assert age == minute * 60
        else:
            assert value(s, "rtc_video_freeze_ratio", **freeze) is None, "dropped after max_age"
        if minute == 16:
            assert age is not None and age > 900, "stale and visible before it disappears"
        assert value(s, "monitord_last_data_timestamp_seconds") == clock(), "other data is fresh"


async def test_a_target_that_never_asked_the_vendor_has_no_up_series(start_sim, make_daemon, clock) -> None:
    """A Zego target with nothing to watch sends nothing: neither up nor down, until it asks."""
    url, _ = await start_sim(zego, clock=clock)
    daemon = make_daemon([{"name": "z", "source": "zego", "url": url, "app_id": zego.DEFAULT_APP_ID,
                           "server_secret": zego.DEFAULT_SECRET}], clock=clock)
    outcome = await daemon.runtime("z").run_once()
    assert outcome.ok and outcome.requests == 0
    s = series(daemon)
    assert value(s, "monitord_target_up") is None
    assert value(s, "monitord_last_success_timestamp_seconds") is None
    assert value(s, "monitord_polls_total") == 1


# ------------------------------------------------------------------------ counters born at 0


def _all_targets(urls: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"name": "room", "source": "endpoint", "url": f"{urls['endpoint']}/d/room-101",
         "username": endpoint.DEFAULT_USER, "password": endpoint.DEFAULT_PASSWORD},
        {"name": "avd", "source": "avd", "url": urls["avd"], "access_key": avd.DEFAULT_ACCESS_KEY,
         "secret_key": avd.DEFAULT_SECRET_KEY},
        rtc_target(urls["huawei_rtc"]),
        {"name": "live", "source": "polyv", "url": urls["polyv"], "app_id": polyv.DEFAULT_APP_ID,
         "app_secret": polyv.DEFAULT_APP_SECRET, "channels": ["3880533"]},
        {"name": "rec", "source": "zego", "url": urls["zego"], "app_id": zego.DEFAULT_APP_ID,
         "server_secret": zego.DEFAULT_SECRET, "task_ids": [zego.DEMO_TASK_IDS[0]]},
    ]


async def test_counters_with_known_label_sets_exist_at_zero_in_the_first_exposition(
    start_sim, make_daemon, clock
) -> None:
    urls = {}
    for module in (avd, endpoint, huawei_rtc, polyv, zego):
        urls[module.__name__.rsplit(".", 1)[1]], _ = await start_sim(module, clock=clock)
    daemon = make_daemon(_all_targets(urls), clock=clock)
    # Before any poll: the first scrape already shows them.
    s = series(daemon)
    for rt in daemon.scheduler.runtimes():
        for reason in STATE_REASONS:
            assert value(s, "monitord_state_errors_total", target=rt.name, reason=reason) == 0, (rt.name, reason)
        declared = list(rt.source.parse_fields())
        assert declared, rt.kind
        for field in declared:
            assert value(s, "monitord_parse_errors_total", target=rt.name, field=field) == 0, (rt.name, field)
    app = huawei_rtc.APPS[0]
    for t, f, stage in (("1", "1", "join_room"), ("2", "14", "communication"), ("3", "13", "communication")):
        for location in ("local", "remote"):
            assert value(s, "rtc_huawei_abnormal_events_total", app=app, abnormal_type=t, abnormal_factor=f,
                         stage=stage, location=location) == 0
    for event_type in ("RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE", "CLOUD_RECORD_SERVER_OVER"):
        for who in (app, "other"):
            assert value(s, "rtc_huawei_record_events_total", app=who, event_type=event_type) == 0
    for outcome in ("ok", "http_5xx", "throttled", "auth"):
        assert value(s, "monitord_huawei_rtc_requests_total", api="scale", outcome=outcome) == 0
    for reason in ("not_found", "vendor_error", "bad_response", "http_5xx"):
        assert value(s, "monitord_polyv_channel_errors_total", channel="3880533", reason=reason) == 0
    for outcome in ("normal", "abnormal"):
        assert value(s, "rtc_recording_tasks_ended_total", outcome=outcome) == 0
    for result in ("uploaded", "uploaded_backup", "upload_failed"):
        assert value(s, "rtc_recording_file_uploads_total", result=result) == 0
    for reason in ("ended", "expired", "not_found", "unregistered"):
        assert value(s, "monitord_zego_tasks_removed_total", reason=reason) == 0
    for t in ("room", "avd", "rtc", "live", "rec"):
        assert value(s, "monitord_poll_errors_total", target=t, reason="http_5xx") == 0


# ------------------------------------------------------------------------------ time scale


async def test_at_time_scale_10_the_huawei_budget_refills_in_6_seconds(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(huawei_rtc, clock=clock, time_scale=10, budget_per_minute=6)
    daemon = make_daemon([rtc_target(url, budget_per_minute=6)], clock=clock, time_scale=10)
    rt = daemon.runtime("rtc")
    assert rt.interval == 6.0, "the 60 s interval, divided by 10"
    assert (await rt.run_once()).requests == 6, "a whole budget at the first poll"
    clock.advance(3)
    assert (await rt.run_once()).requests == 0, "3 s into the 6 s window the budget is spent"
    assert value(series(daemon), "monitord_huawei_rtc_budget_used_requests") == 6
    clock.advance(3)
    refilled = await rt.run_once()
    assert refilled.ok and refilled.requests == 6, "6 s later the window has passed"
    assert app[huawei_rtc.SIM_KEY].throttled == 0, "the simulator's window is 6 s too"

    # The same at production timings: 6 s later the budget has not refilled.
    url1, _ = await start_sim(huawei_rtc, clock=clock, budget_per_minute=6)
    slow = make_daemon([rtc_target(url1, name="rtc1", budget_per_minute=6, budget_account="other")], clock=clock)
    slow_rt = slow.runtime("rtc1")
    assert (await slow_rt.run_once()).requests == 6
    clock.advance(6)
    assert (await slow_rt.run_once()).requests == 0


async def test_at_time_scale_10_zego_holds_an_ended_task_for_90_seconds(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(zego, clock=clock, scenario="empty", time_scale=10)
    await sim_knob_zego(url, create={"task_id": "EndsScaled000001", "files": 1})
    await sim_knob_zego(url, task="EndsScaled000001", status="ended", file_status="uploaded")
    daemon = make_daemon([{"name": "z", "source": "zego", "url": url, "app_id": zego.DEFAULT_APP_ID,
                           "server_secret": zego.DEFAULT_SECRET, "task_ids": ["EndsScaled000001"]}],
                         clock=clock, time_scale=10)
    rt = daemon.runtime("z")
    assert (await rt.run_once()).ok
    clock.advance(89)
    assert (await rt.run_once()).ok
    s = series(daemon)
    assert value(s, "rtc_recording_task_status", rtc_recording_task_status="ended") == 1, "held at 89 s"
    clock.advance(1)
    assert (await rt.run_once()).ok
    s = series(daemon)
    assert value(s, "rtc_recording_task_status", rtc_recording_task_status="ended") is None, "gone at 90 s"
    assert value(s, "monitord_zego_tasks_removed_total", reason="ended") == 1


async def sim_knob_zego(url: str, **body: Any) -> Any:
    from helpers import sim_knob

    return await sim_knob(url, "zego", **body)


async def test_demo_config_and_simulators_carry_one_time_scale() -> None:
    from monitord import simulators
    from monitord.config import parse

    running = await simulators.start("127.0.0.1", 0, time_scale=10)
    try:
        config = parse(simulators.demo_config(running.urls, time_scale=10))
        assert config.global_.time_scale == 10
        for t in config.targets:
            assert config.interval_of(t) == (t.interval or config.global_.interval) / 10
            assert config.timeout_of(t) == (t.timeout or config.global_.timeout) / 10
        assert running.apps["huawei_rtc"][huawei_rtc.SIM_KEY].budget_window == 6.0
        assert running.apps["polyv"][polyv.SIM_KEY].ban_seconds == 30.0
        assert running.apps["polyv"][polyv.SIM_KEY].rate_window == 1.0
        assert running.apps["avd"][avd.SIM_KEY].time_scale == 10
    finally:
        await running.close()


def test_demo_help_documents_the_time_scale_as_a_testing_aid() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "monitord", "demo", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--time-scale F" in out and "testing aid" in out
    bad = subprocess.run([sys.executable, "-m", "monitord", "demo", "--time-scale", "0"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "greater than 0" in bad.stderr


async def test_at_time_scale_10_polyv_bans_and_avd_forgetting_are_ten_times_shorter(start_sim, make_daemon,
                                                                                      clock) -> None:
    from helpers import sim_knob

    now = clock()
    url, _ = await start_sim(polyv, clock=clock, scenario="fixed", rate_limit=1, time_scale=10)
    live = {"name": "live", "source": "polyv", "url": url, "app_id": polyv.DEFAULT_APP_ID,
            "app_secret": polyv.DEFAULT_APP_SECRET, "channels": ["3880533", "2477096"]}
    daemon = make_daemon([live], clock=clock, time_scale=10)
    outcome = await daemon.runtime("live").run_once()
    assert outcome.reason == "throttled"
    assert value(series(daemon), "monitord_polyv_banned_until_timestamp_seconds") == now + 30, "300 s / 10"

    avd_url, _ = await start_sim(avd, clock=clock, outages=False, time_scale=10)
    server = {"name": "avd", "source": "avd", "url": avd_url, "access_key": avd.DEFAULT_ACCESS_KEY,
              "secret_key": avd.DEFAULT_SECRET_KEY, "media_server_forget_after": "1h"}
    daemon = make_daemon([server], clock=clock, time_scale=10)
    rt = daemon.runtime("avd")
    assert (await rt.run_once()).ok
    await sim_knob(avd_url, "avd", offline_servers=["box3"])
    clock.advance(359)
    assert (await rt.run_once()).ok
    assert value(series(daemon), "rtc_avd_media_server_online", server="box3") == 0
    clock.advance(2)
    assert (await rt.run_once()).ok
    assert value(series(daemon), "rtc_avd_media_server_online", server="box3") is None, "forgotten after 360 s"
