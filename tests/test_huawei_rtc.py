"""The huawei_rtc source against its simulator over HTTP on 127.0.0.1, on a controllable clock."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import assert_golden, assert_promtool_clean, log_events, parse_exposition, value

from monitord.config import ConfigError, parse
from monitord.simulators import huawei_rtc as sim
from monitord.sources.huawei_rtc import signer as huawei_signer

GOLDEN = Path(__file__).parent / "golden" / "huawei_rtc_fixed.prom"
APP, APP2 = sim.APPS


def target(url: str, name: str = "rtc", **extra: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "source": "huawei_rtc",
        "endpoint": url,
        "iam_endpoint": url,
        "project_id": sim.PROJECT_ID,
        "ak": sim.ACCESS_KEY,
        "sk": sim.SECRET_KEY,
        "apps": [{"id": APP}],
        "interval": "60s",
        "timeout": "10s",
        "budget_per_minute": 30,
        "assume_budget_spent_at_start": False,
        "retry_base_delay": "1ms",
    }
    return {**base, **extra}


def token_target(url: str, **extra: Any) -> dict[str, Any]:
    t = target(
        url,
        **{
            "auth": "token",
            "iam_domain": sim.IAM_DOMAIN,
            "iam_user": sim.IAM_USER,
            "iam_password": sim.IAM_PASSWORD,
            **extra,
        },
    )
    del t["ak"], t["sk"]
    return t


async def post(url: str, path: str, body: Any) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}{path}", json=body) as r:
            assert r.status == 200, await r.text()


def series(daemon: Any) -> Any:
    return parse_exposition(daemon.store.render().decode())


def state_of(app: Any) -> sim.RtcSim:
    return app[sim.SIM_KEY]


# ------------------------------------------------------------------------------- realtime


async def test_realtime_series_are_the_newest_settled_minute_as_ratios(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    s = series(daemon)
    now = clock()
    newest_settled = (now - 60 - 120) // 60 * 60
    rt = state_of(app)
    assert value(s, "rtc_online_users", app=APP) == rt.point(APP, "OnlineUsers", "", newest_settled, now)
    assert value(s, "rtc_rooms", app=APP) == rt.point(APP, "RoomCount", "", newest_settled, now)
    freeze = rt.point(APP, "VideoFreezeRate", "webrtc", newest_settled, now)
    assert value(s, "rtc_video_freeze_ratio", app=APP, sdk_type="webrtc") == pytest.approx(freeze)
    join = value(s, "rtc_join_success_ratio", app=APP, sdk_type="native")
    assert 0.9 <= join <= 1.0, "ratio upstream (the documented form), ratio exposed"
    excellent = value(
        s,
        "rtc_huawei_excellent_transmission_ratio",
        app=APP,
        sdk_type="native",
        media="video",
        path="upstream",
    )
    assert excellent == pytest.approx(
        rt.point(APP, "VideoUpstreamExcellentTransRate", "native", newest_settled, now)
    )
    assert (
        value(s, "rtc_huawei_point_timestamp_seconds", app=APP, api="scale", vendor_metric="OnlineUsers")
        == newest_settled
    )
    # The simulator already has newer, provisional minutes: none of them is shown.
    provisional = rt.point(APP, "OnlineUsers", "", newest_settled + 60, now)
    assert provisional is not None and provisional != rt.point(APP, "OnlineUsers", "", newest_settled + 60, now + 600)


async def test_percent_scale_upstream_gives_the_same_exposition(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url)], clock=clock)
    await daemon.poll_all_once()
    ratio = series(daemon)
    url2, _ = await start_sim(sim, clock=clock, rate_scale="percent")
    daemon2 = make_daemon([target(url2, name="rtc2", rate_scale="percent")], clock=clock)
    await daemon2.poll_all_once()
    percent = series(daemon2)
    for name in ("rtc_join_success_ratio", "rtc_audio_freeze_ratio"):
        assert value(ratio, name, sdk_type="native") == pytest.approx(value(percent, name, sdk_type="native"))


async def test_percent_upstream_under_the_default_ratio_is_a_parse_error_naming_the_key(
    start_sim, make_daemon, clock, captured_logs
) -> None:
    """The documented form is a fraction; an account whose API writes 99.5 must not show 99.5
    (nor a guessed 0.995): no sample, parse errors, one log line naming rate_scale."""
    url, _ = await start_sim(sim, clock=clock, rate_scale="percent")
    daemon = make_daemon([target(url, sdk_types=["native"])], clock=clock)
    for _ in range(2):
        assert (await daemon.poll_all_once())["rtc"].ok
        clock.advance(60)
    s = series(daemon)
    assert value(s, "rtc_join_success_ratio", app=APP, sdk_type="native") is None
    # A freeze rate of 0.8 (%) reads as a valid ratio on its own: it must not be shown as 80 %.
    for name in ("rtc_audio_freeze_ratio", "rtc_video_freeze_ratio", "rtc_huawei_excellent_transmission_ratio"):
        assert not [k for k in s if k[0] == name], name
    assert value(s, "rtc_online_users", app=APP) is not None, "counts have no scale"
    assert value(s, "monitord_parse_errors_total", field="quality.JoinSuccessRate") >= 2
    lines = [e for e in log_events(captured_logs) if e.get("event") == "rate_scale_mismatch"]
    assert len(lines) == 1, lines
    assert lines[0]["config_key"] == "rate_scale" and lines[0]["target"] == "rtc"


def _data_series(s: Any) -> dict[Any, float]:
    return {(k[0], tuple(kv for kv in k[1] if kv[0] != "target")): v for k, v in s.items() if k[0].startswith("rtc_")}


@pytest.mark.parametrize("form", [f for f in sim.TIME_FORMATS if f != "plain"])
async def test_every_iso8601_time_form_gives_the_same_exposition(start_sim, make_daemon, clock, form) -> None:
    """Points and events with fractions, offsets or no zone at all (UTC) are the same instants."""
    clock.advance(3600)  # events of the last overlap exist
    url, _ = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url, sdk_types=["native"])], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    plain = _data_series(series(daemon))
    url2, _ = await start_sim(sim, clock=clock, time_format=form)
    daemon2 = make_daemon([target(url2, name="rtc2", sdk_types=["native"])], clock=clock)
    assert (await daemon2.poll_all_once())["rtc2"].ok
    other = series(daemon2)
    assert _data_series(other) == plain
    assert sum(v for k, v in plain.items() if k[0] == "rtc_huawei_abnormal_events_total") > 0
    assert not [k for k, v in other.items() if k[0] == "monitord_parse_errors_total" and v], form


async def test_an_unreadable_time_is_a_parse_error_not_a_skipped_point(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    newest = (clock() - 600) // 60 * 60
    body = {"scale": [{"time": "23/04/2020 06:00", "value": 7}, {"value": 8},
                      {"time": sim.stamp(newest), "value": 9}]}
    async with aiohttp.ClientSession() as session:
        rule = {"match": "realtime/scale", "body": json.dumps(body), "status": 200}
        async with session.post(f"{url}/_sim/answers", json={"rules": [rule]}) as r:
            assert r.status == 200
    daemon = make_daemon([target(url, sdk_types=["native"])], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    s = series(daemon)
    assert value(s, "monitord_parse_errors_total", field="scale.time") == 2 * 2  # 2 bad points x 2 metrics
    assert value(s, "rtc_online_users", app=APP) == 9, "the readable point is still read"


async def test_golden_exposition_for_fixed_state(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, budget_per_minute=100)
    daemon = make_daemon(
        [
            target(
                url,
                budget_per_minute=100,
                dimensions=["region", "platform"],
                apps=[{"id": APP}, {"id": APP2, "room_id": "room-1"}],
            )
        ],
        clock=clock,
    )
    assert (await daemon.poll_all_once())["rtc"].ok
    assert_golden(GOLDEN, daemon.store.render().decode())


async def test_exposition_passes_promtool(start_sim, make_daemon, clock, tmp_path) -> None:
    url, _ = await start_sim(sim, clock=clock, budget_per_minute=100)
    daemon = make_daemon(
        [target(url, budget_per_minute=100, dimensions=["region"], callback_secret="s3cret-value")],
        clock=clock,
    )
    await daemon.poll_all_once()
    await assert_promtool_clean(daemon.store.render())


# ----------------------------------------------------------------------------------- auth


async def test_wrong_secret_key_is_an_auth_failure_and_never_logged(
    start_sim, make_daemon, clock, captured_logs
) -> None:
    url, app = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url, sk="Wrong-Secret-Key-77")], clock=clock)
    outcome = (await daemon.poll_all_once())["rtc"]
    assert not outcome.ok and outcome.reason == "auth"
    assert state_of(app).rejected_auth == 1 and state_of(app).accepted == 0
    s = series(daemon)
    assert value(s, "monitord_poll_errors_total", reason="auth") == 1
    assert value(s, "rtc_online_users") is None
    assert "Wrong-Secret-Key-77" not in captured_logs.getvalue() + daemon.store.render().decode()


def _signed(url: str, path: str, query: list[tuple[str, str]], when: datetime, sk: str = sim.SECRET_KEY) -> Any:
    host = url.split("//", 1)[1]
    headers, uri = huawei_signer.sign(
        method="GET",
        host=host,
        resource_path=path,
        query=query,
        headers={"X-Project-Id": sim.PROJECT_ID},
        body=b"",
        access_key=sim.ACCESS_KEY,
        secret_key=sk,
        when=when,
    )
    return f"{url}{uri}", headers


async def test_simulator_verifies_signature_date_and_parameters(start_sim, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    now = datetime.fromtimestamp(clock(), UTC).replace(tzinfo=None)
    path = f"/v1/{sim.PROJECT_ID}/rtc/realtime/scale"
    async with aiohttp.ClientSession() as s:
        full, headers = _signed(url, path, [("app", APP), ("metric", "OnlineUsers")], now)
        async with s.get(aiohttp.client.URL(full, encoded=True), headers=headers) as r:
            assert r.status == 200 and "scale" in await r.json()
        tampered = {**headers, "Authorization": headers["Authorization"][:-4] + "0000"}
        async with s.get(aiohttp.client.URL(full, encoded=True), headers=tampered) as r:
            assert r.status == 401 and (await r.json())["error_code"] == "APIGW.0301"
        # A signature over other query values does not authorize this query.
        other, _ = _signed(url, path, [("app", APP), ("metric", "RoomCount")], now)
        async with s.get(aiohttp.client.URL(other, encoded=True), headers=headers) as r:
            assert r.status == 401
        stale = datetime.fromtimestamp(clock() - 20 * 60, UTC).replace(tzinfo=None)
        full, headers = _signed(url, path, [("app", APP), ("metric", "OnlineUsers")], stale)
        async with s.get(aiohttp.client.URL(full, encoded=True), headers=headers) as r:
            assert r.status == 401, "X-Sdk-Date outside the 15-minute window"
        full, headers = _signed(url, path, [("metric", "OnlineUsers")], now)
        async with s.get(aiohttp.client.URL(full, encoded=True), headers=headers) as r:
            body = await r.json()
            assert r.status == 400 and body["error_code"] == "DATA.100011001"
            assert body["error_msg"] == "Required String parameter 'app' is not present"
        full, headers = _signed(
            url,
            "/v1/rtc/data/abnormal-events",
            [("app", APP), ("start_time", "2026-01-01T00:00:00Z"), ("end_time", "2026-01-03T00:00:00Z")],
            now,
        )
        async with s.get(aiohttp.client.URL(full, encoded=True), headers=headers) as r:
            assert r.status == 400 and "1 day" in (await r.json())["error_msg"]


async def test_token_is_cached_renewed_before_expiry_and_after_revocation(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    rt = state_of(app)
    daemon = make_daemon([token_target(url)], clock=clock)
    for _ in range(3):
        assert (await daemon.poll_all_once())["rtc"].ok
        clock.advance(60)
    assert rt.tokens_issued == 1, "one token serves many polls"
    clock.advance(86400 - 3600 - 180 + 1)  # inside the refresh margin before its 24 h expiry
    assert (await daemon.poll_all_once())["rtc"].ok
    assert rt.tokens_issued == 2
    await post(url, "/_sim/huawei_rtc", {"revoke_tokens": True})
    clock.advance(60)
    assert (await daemon.poll_all_once())["rtc"].ok, "a revoked token is renewed inside the poll"
    assert rt.tokens_issued == 3
    assert value(series(daemon), "monitord_huawei_rtc_token_refreshes_total") == 3
    assert value(series(daemon), "rtc_online_users", app=APP) is not None


async def test_wrong_iam_password_is_an_auth_failure(start_sim, make_daemon, clock, captured_logs) -> None:
    url, _ = await start_sim(sim, clock=clock)
    daemon = make_daemon([token_target(url, iam_password="Not-The-Password-9")], clock=clock)
    outcome = (await daemon.poll_all_once())["rtc"]
    assert not outcome.ok and outcome.reason == "auth"
    assert "Not-The-Password-9" not in captured_logs.getvalue()


def test_config_requires_the_credentials_of_the_chosen_auth() -> None:
    raw = target("http://127.0.0.1:1")
    del raw["sk"]
    with pytest.raises(ConfigError, match="auth aksk needs ak and sk"):
        parse({"targets": [raw]})
    with pytest.raises(ConfigError, match="auth token needs"):
        parse({"targets": [{**target("http://127.0.0.1:1"), "auth": "token"}]})


# --------------------------------------------------------------------------------- budget


async def test_budget_holds_over_ten_simulated_minutes(start_sim, make_daemon, clock) -> None:
    """Two targets of one account, more series than the budget allows, 10 s polls for ten
    minutes from a cold start: the simulator (strict sliding 60 s window) never throttles, the
    most valuable series stay fresh and the least valuable ones are stretched, not starved."""
    url, app = await start_sim(sim, clock=clock)
    rt = state_of(app)
    common = {"interval": "10s", "assume_budget_spent_at_start": True}
    targets = [
        target(url, name="rtc-a", apps=[{"id": APP}], dimensions=["region", "platform"], **common),
        target(url, name="rtc-b", apps=[{"id": APP2, "room_id": "room-2"}], **common),
    ]
    daemon = make_daemon(targets, clock=clock)
    scale_ages: list[float] = []
    for step in range(60):
        outcomes = await daemon.poll_all_once()
        assert all(o.ok for o in outcomes.values()), outcomes
        s = series(daemon)
        assert value(s, "monitord_huawei_rtc_budget_used_requests", target="rtc-a") <= 30
        if step >= 12:
            for name, app_id in (("rtc-a", APP), ("rtc-b", APP2)):
                scale_ages.append(
                    value(
                        s,
                        "monitord_huawei_rtc_refresh_age_seconds",
                        target=name,
                        app=app_id,
                        api="scale",
                        vendor_metric="OnlineUsers",
                    )
                )
        clock.advance(10)
    assert rt.throttled == 0, "the exporter must never make the vendor throttle it"
    assert rt.max_in_window <= 30
    assert rt.accepted >= 265, f"the budget should be used, not wasted ({rt.accepted} requests)"
    assert max(scale_ages) <= 70, "the most valuable series are refreshed every minute"
    s = series(daemon)
    periods = {
        api: value(s, "monitord_huawei_rtc_planned_refresh_period_seconds", target="rtc-a", api=api)
        for api in ("scale", "quality", "network", "scale_dimension")
    }
    assert periods["scale"] == periods["quality"] == 60, periods
    assert 60 < periods["network"] < 600, periods
    assert value(s, "monitord_huawei_rtc_budget_throttled_waits_total", target="rtc-a", api="network") > 0
    for name in ("rtc-a", "rtc-b"):
        calls = daemon.runtime(name).source.planner.calls
        ages = [
            v
            for (n, labels), v in s.items()
            if n == "monitord_huawei_rtc_refresh_age_seconds" and ("target", name) in labels
        ]
        assert len(ages) == len(calls), f"{name}: every series refreshed at least once (stretched, not starved)"
        assert max(ages) <= 600, f"{name}: nothing older than max_age"


async def test_first_poll_paces_by_the_effective_interval(start_sim, make_daemon, clock) -> None:
    """A target without its own interval polls at global.interval: its first poll spends the
    share of that interval (10 s of a 30/min budget: 5 requests), not that of a fixed default."""
    url, app = await start_sim(sim, clock=clock)
    t = target(url)
    del t["interval"]
    daemon = make_daemon([t], clock=clock, interval="10s", timeout="5s")
    assert (await daemon.poll_all_once())["rtc"].ok
    assert state_of(app).accepted == 5


async def test_no_burst_right_after_a_restart(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    rt = state_of(app)
    t = target(url, interval="60s", apps=[{"id": APP}, {"id": APP2}])
    daemon = make_daemon([t], clock=clock)
    await daemon.poll_all_once()
    first = rt.accepted
    assert first == 30, "a 60 s poll may use the whole minute"
    await daemon.close()
    clock.advance(5)
    daemon = make_daemon([t], clock=clock)
    await daemon.poll_all_once()
    assert rt.accepted == first, "the persisted request log says the minute is spent"
    assert rt.throttled == 0
    clock.advance(56)
    await daemon.poll_all_once()
    assert rt.accepted > first


async def test_vendor_throttling_backs_off_and_is_counted(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, budget_per_minute=3)
    rt = state_of(app)
    daemon = make_daemon([target(url)], clock=clock)
    outcome = (await daemon.poll_all_once())["rtc"]
    assert outcome.ok, "three calls succeeded before the gateway said stop"
    assert rt.throttled == 1, "one throttling answer stops the poll's remaining calls"
    s = series(daemon)
    assert value(s, "monitord_huawei_rtc_vendor_throttled_total") == 1
    assert value(s, "monitord_huawei_rtc_requests_total", api="quality", outcome="throttled") == 1
    clock.advance(10)
    await daemon.poll_all_once()
    assert rt.throttled == 1 and rt.accepted == 3, "backing off: no request during the block"


# --------------------------------------------------------------------------------- errors


async def test_bad_parameter_error_is_not_retried_and_other_series_survive(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    await post(
        url,
        "/_sim/huawei_rtc",
        {
            "error": {
                "path": "realtime/quality",
                "status": 400,
                "count": -1,
                "error_code": "DATA.100011001",
                "error_msg": "Invalid parameter 'sdk_type'",
            }
        },
    )
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    s = series(daemon)
    assert value(s, "monitord_huawei_rtc_requests_total", api="quality", outcome="vendor_error") == 8
    assert state_of(app).requests_by_path["realtime/quality"] == 8, "4xx: one attempt each, no retry"
    assert value(s, "rtc_video_freeze_ratio", sdk_type="native") is None
    assert value(s, "rtc_online_users", app=APP) is not None


@pytest.mark.parametrize(("status", "attempts"), [(500, 3), (503, 1)])
async def test_server_errors_are_retried_then_fail_the_poll(start_sim, make_daemon, clock, status, attempts) -> None:
    """500 is tried retry_attempts times; 503 once: SparkRTC API Reference, 附录 > 状态码, says not
    to retry it."""
    url, app = await start_sim(sim, clock=clock)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/_sim/faults", json={"status": status}) as r:
            assert r.status == 200
    daemon = make_daemon([target(url, apps=[{"id": APP}], abnormal_events=False, sdk_types=["native"])], clock=clock)
    outcome = (await daemon.poll_all_once())["rtc"]
    assert not outcome.ok and outcome.reason == "http_5xx", "every call failed: the poll failed"
    s = series(daemon)
    assert value(s, "monitord_huawei_rtc_requests_total", api="scale", outcome="http_5xx") == 2 * attempts
    assert value(s, "monitord_huawei_rtc_budget_used_requests") <= 30


async def test_unreachable_vendor_is_a_connect_failure(make_daemon, clock) -> None:
    daemon = make_daemon([target("http://127.0.0.1:1", abnormal_events=False, sdk_types=["native"])], clock=clock)
    outcome = (await daemon.poll_all_once())["rtc"]
    assert not outcome.ok and outcome.reason == "connect"
    s = series(daemon)
    assert value(s, "monitord_huawei_rtc_requests_total", api="scale", outcome="connect") == 2 * 3
    assert value(s, "monitord_huawei_rtc_budget_used_requests") <= 30, "retries are paid from the budget"


async def test_garbage_answers_are_bad_responses(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/_sim/faults", json={"html": True}) as r:
            assert r.status == 200
    daemon = make_daemon([target(url)], clock=clock)
    outcome = (await daemon.poll_all_once())["rtc"]
    assert not outcome.ok and outcome.reason == "bad_response"
    assert value(series(daemon), "monitord_huawei_rtc_requests_total", api="scale", outcome="bad_response") == 2


@pytest.mark.parametrize(("status", "reason"), [(500, "http_5xx"), (502, "http_5xx"), (408, "timeout")])
async def test_retry_recovers_a_single_transient_error(start_sim, make_daemon, clock, status, reason) -> None:
    url, app = await start_sim(sim, clock=clock)
    error = {
        "path": "realtime/scale",
        "status": status,
        "count": 1,
        "error_code": "RTC.00002002",
        "error_msg": "InternalServerError. DbErr",
    }
    await post(url, "/_sim/huawei_rtc", {"error": error})
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    s = series(daemon)
    assert value(s, "monitord_huawei_rtc_requests_total", api="scale", outcome=reason) == 1
    assert value(s, "monitord_huawei_rtc_requests_total", api="scale", outcome="ok") == 2
    assert state_of(app).requests_by_path["realtime/scale"] == 3, "the failed attempt was repeated once"
    assert value(s, "rtc_online_users", app=APP) is not None


async def test_a_single_503_is_not_retried(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    await post(url, "/_sim/huawei_rtc", {"error": {"path": "realtime/scale", "status": 503, "count": 1}})
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok, "the other calls answered"
    s = series(daemon)
    assert value(s, "monitord_huawei_rtc_requests_total", api="scale", outcome="http_5xx") == 1
    assert state_of(app).requests_by_path["realtime/scale"] == 2, "one attempt per call"


async def test_cached_series_age_out_after_max_age(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url, max_age="5m")], clock=clock)
    await daemon.poll_all_once()
    await post(url, "/_sim/huawei_rtc", {"error": {"path": "realtime/network", "status": 400, "count": -1}})
    for _ in range(6):
        clock.advance(60)
        assert (await daemon.poll_all_once())["rtc"].ok
    s = series(daemon)
    assert (
        value(s, "rtc_huawei_excellent_transmission_ratio", sdk_type="native", media="video", path="upstream") is None
    )
    assert (
        value(
            s,
            "monitord_huawei_rtc_refresh_age_seconds",
            api="network",
            vendor_metric="VideoExcellentTransRate",
            sdk_type="native",
        )
        == 360
    )
    assert value(s, "rtc_online_users", app=APP) is not None


# ------------------------------------------------------------------------ abnormal events


def _event_counts(s: Any, target_name: str = "rtc") -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for (name, labels), v in s.items():
        d = dict(labels)
        if name == "rtc_huawei_abnormal_events_total" and d["target"] == target_name:
            out[(d["abnormal_type"], d["abnormal_factor"], d["stage"], d["location"])] += int(v)
    return out


async def test_events_are_paged_and_counted_once_across_a_restart(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, events_per_minute=3, budget_per_minute=200)
    rt = state_of(app)
    t = target(url, budget_per_minute=200, events_page_size=4, events_interval="60s", events_overlap="15m")
    start = clock() - 900
    daemon = make_daemon([t], clock=clock)
    for step in range(12):
        if step == 6:
            await daemon.close()
            daemon = make_daemon([t], clock=clock)
        assert (await daemon.poll_all_once())["rtc"].ok
        clock.advance(60)
    end = clock() - 60
    s = series(daemon)
    want = rt.expected_counts(APP, start, end)
    assert sum(want.values()) > 20
    assert _event_counts(s) == want, "every event once: none lost, none counted twice"
    pages = value(s, "monitord_huawei_rtc_requests_total", api="abnormal_events", outcome="ok")
    assert pages > 6, "windows span several pages of 4"
    assert (
        value(
            s,
            "rtc_huawei_abnormal_cause_info",
            abnormal_type="3",
            abnormal_factor="13",
            abnormal_factor_desc="下行音频丢包",
        )
        == 1
    )
    for (_name, labels), _ in s.items():
        assert "uid" not in dict(labels) and "room_id" not in dict(labels)


async def test_corrupt_state_file_is_reported_and_rebuilt(start_sim, make_daemon, clock, tmp_path) -> None:
    url, _ = await start_sim(sim, clock=clock)
    t = target(url)
    daemon = make_daemon([t], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    await daemon.close()
    files = sorted((tmp_path / "state").glob("rtc.events-*.json"))
    assert files
    files[0].write_text("{not json")
    clock.advance(60)
    daemon = make_daemon([t], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    s = series(daemon)
    assert value(s, "monitord_state_errors_total", reason="bad_json") == 1
    assert json.loads(files[0].read_text())["hwm"] == clock(), "rebuilt and saved again"


async def test_structurally_wrong_state_is_rebuilt_too(start_sim, make_daemon, clock, tmp_path, captured_logs) -> None:
    url, _ = await start_sim(sim, clock=clock)
    t = target(url)
    daemon = make_daemon([t], clock=clock)
    await daemon.poll_all_once()
    await daemon.close()
    path = sorted((tmp_path / "state").glob("rtc.events-*.json"))[0]
    path.write_text(json.dumps({"hwm": "yesterday", "seen": [], "counts": {}}))
    daemon = make_daemon([t], clock=clock)
    assert (await daemon.poll_all_once())["rtc"].ok
    assert value(series(daemon), "monitord_state_errors_total", reason="wrong_shape") == 1
    assert any(e.get("event") == "state_file_problem" for e in log_events(captured_logs))


async def test_abnormal_user_distribution(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, events_per_minute=3)
    daemon = make_daemon([target(url, event_distribution_window="10m")], clock=clock)
    await daemon.poll_all_once()
    s = series(daemon)
    events = state_of(app).events(APP, clock() - 600, clock(), clock())
    users: dict[tuple[str, str], set[str]] = {}
    for e in events:
        users.setdefault((str(e["abnormal_type"]), str(e["abnormal_factor"])), set()).add(e["uid"])
    assert users
    for (a_type, factor), uids in users.items():
        assert value(s, "rtc_huawei_abnormal_users", abnormal_type=a_type, abnormal_factor=factor) == len(uids)


# ------------------------------------------------------------------------------ callbacks


async def test_record_callbacks_are_counted_and_guarded(start_sim, make_daemon, clock) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from monitord.web import build_app

    url, _ = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url, callback_secret="cb-Secret-123")], clock=clock)
    client = TestClient(TestServer(build_app(daemon), host="127.0.0.1"))
    await client.start_server()
    path = "/api/v1/targets/rtc/record-events"
    good = {"X-Monitord-Secret": "cb-Secret-123"}
    try:
        complete = {
            "event_type": "RECORD_FILE_COMPLETE",
            "app_id": APP,
            "room_id": "r1",
            "job_id": "j1",
            "record_format": "MP4",
            "record_duration": 125,
            "width": 1280,
            "height": 720,
        }
        r = await client.post(path, json=complete, headers={"X-Monitord-Secret": "cb-Secret-123"})
        assert r.status == 200
        r = await client.post(path + "?secret=cb-Secret-123", json={**complete, "record_duration": 5})
        assert r.status == 200, "the secret may also come as a query parameter"
        r = await client.post(
            path,
            json={"event_type": "RECORD_NEW_FILE_START", "app_id": APP},
            headers=good,
        )
        assert r.status == 200
        assert (await client.post(path, json=complete)).status == 401
        assert (await client.post(path, json=complete, headers={"X-Monitord-Secret": "nope"})).status == 403
        r = await client.post(path, data=b"{broken", headers=good)
        assert r.status == 400
        r = await client.post(
            path,
            json={"event_type": "SOMETHING", "app_id": APP},
            headers=good,
        )
        assert r.status == 200, "every field is optional; a type the vendor's table lacks counts as other"
        r = await client.post(path, json=[1, 2], headers=good)
        assert r.status == 400
        r = await client.post(
            path, json={"event_type": "CLOUD_RECORD_SERVER_OVER", "app_id": "not-configured-9"}, headers=good
        )
        assert r.status == 200
        await daemon.poll_all_once()
        s = series(daemon)
        assert value(s, "rtc_huawei_record_events_total", app=APP, event_type="RECORD_FILE_COMPLETE") == 2
        assert value(s, "rtc_huawei_record_events_total", app=APP, event_type="RECORD_NEW_FILE_START") == 1
        assert value(s, "rtc_huawei_recorded_duration_seconds_total", app=APP) == 130
        assert value(s, "monitord_huawei_rtc_callbacks_rejected_total", reason="bad_secret") == 2
        assert value(s, "monitord_huawei_rtc_callbacks_rejected_total", reason="bad_body") == 2
        assert value(s, "rtc_huawei_record_events_total", app="other", event_type="CLOUD_RECORD_SERVER_OVER") == 1
        assert value(s, "rtc_huawei_record_events_total", app=APP, event_type="other") == 1
    finally:
        await client.close()
    await daemon.close()
    restarted = make_daemon([target(url, callback_secret="cb-Secret-123")], clock=clock)
    await restarted.poll_all_once()
    s = series(restarted)
    assert value(s, "rtc_huawei_record_events_total", app=APP, event_type="RECORD_FILE_COMPLETE") == 2, (
        "callback counts are persisted"
    )


# ----------------------------------------------------------------------------------- demo


def test_demo_targets_are_valid_config() -> None:
    from monitord import simulators

    assert simulators.SIMULATORS["huawei_rtc"] is sim
    cfg = parse(simulators.demo_config({"huawei_rtc": "http://127.0.0.1:10531"}))
    assert [(t.source, t.auth) for t in cfg.targets] == [("huawei_rtc", "aksk"), ("huawei_rtc", "token")]


def test_optional_secrets_take_file_and_env_spellings(tmp_path, monkeypatch) -> None:
    """ak/sk/callback_secret are optional (token auth needs none of them), and still accept the
    *_file / *_env spellings every secret has."""
    (tmp_path / "sk").write_text(sim.SECRET_KEY + "\n")
    monkeypatch.setenv("TEST_RTC_CALLBACK", "from-env-123")
    raw = target("http://127.0.0.1:1", sk_file=str(tmp_path / "sk"), callback_secret_env="TEST_RTC_CALLBACK")
    del raw["sk"]
    cfg = parse({"targets": [raw]}).targets[0]
    assert cfg.sk.get_secret_value() == sim.SECRET_KEY
    assert cfg.callback_secret.get_secret_value() == "from-env-123"


async def test_room_filter_and_dimension_breakdown(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    daemon = make_daemon(
        [
            target(
                url,
                apps=[{"id": APP2, "room_id": "room-3"}],
                dimensions=["region"],
                dimension_top=4,
                sdk_types=["native"],
            )
        ],
        clock=clock,
    )
    assert (await daemon.poll_all_once())["rtc"].ok
    s = series(daemon)
    now = clock()
    minute = (now - 60 - 120) // 60 * 60
    rt = state_of(app)
    want = rt.point(APP2 + "room-3", "OnlineUsers", "", minute, now)
    assert value(s, "rtc_online_users", app=APP2, room="room-3") == want, "room_id reaches the API"
    regions = {
        dict(labels)["dimension_value"]: v
        for (n, labels), v in s.items()
        if n == "rtc_huawei_online_users_by_dimension"
    }
    everything = {
        v: int(1 + 300 * sim._unit(APP2, "region", v, int(minute // 60))) for v in sim.DIMENSION_VALUES["region"]
    }
    top = dict(sorted(everything.items(), key=lambda kv: -kv[1])[:4])
    assert regions == top, "the top 4 regions of the newest settled minute"
    assert value(s, "monitord_huawei_rtc_dimension_values_dropped_total") == len(everything) - 4


async def test_event_windows_cut_by_the_budget_are_continued_without_loss_or_double_count(
    start_sim, make_daemon, clock, tmp_path
) -> None:
    url, app = await start_sim(sim, clock=clock, events_per_minute=4)
    rt = state_of(app)
    t0 = clock()
    daemon = make_daemon(
        [target(url, interval="10s", events_page_size=2, sdk_types=["native"], event_distribution_window=None)],
        clock=clock,
    )
    for _ in range(40):
        assert (await daemon.poll_all_once())["rtc"].ok
        clock.advance(10)
    s = series(daemon)
    assert value(s, "monitord_huawei_rtc_budget_throttled_waits_total", api="abnormal_events") > 0, (
        "the budget did interrupt event windows"
    )
    hwm = json.loads(next((tmp_path / "state").glob("rtc.events-*.json")).read_text())["hwm"]
    assert hwm > t0 + 120
    counted = sum(_event_counts(s).values())
    complete = sum(rt.expected_counts(APP, t0 - 900, hwm).values())
    published = sum(rt.expected_counts(APP, t0 - 900, clock()).values())
    assert complete <= counted <= published
    assert rt.throttled == 0


async def test_one_budget_for_one_access_key_across_projects(start_sim, make_daemon, clock) -> None:
    """Huawei limits the account, so two targets with one AK (here: two projects) share one
    budget; the simulator counts per AK, like the gateway."""
    url, app = await start_sim(sim, clock=clock)
    other_project = "1c3e5a7b9d0f2e4a6c8b0d2f4a6c8e0b"
    daemon = make_daemon(
        [target(url, name="rtc-p1"), target(url, name="rtc-p2", project_id=other_project)], clock=clock
    )
    for _ in range(3):
        outcomes = await daemon.poll_all_once()
        assert all(o.ok for o in outcomes.values()), outcomes
        clock.advance(60)
    s = series(daemon)
    accounts = {
        dict(labels)["account"] for (n, labels), _ in s.items() if n == "monitord_huawei_rtc_budget_used_requests"
    }
    assert len(accounts) == 1
    assert state_of(app).throttled == 0 and state_of(app).max_in_window <= 30
    assert value(s, "rtc_online_users", target="rtc-p2") is not None, "both targets get their turn"


async def test_targets_of_one_account_must_agree_on_its_budget(start_sim, make_daemon, clock) -> None:
    """One account, one budget: a second target that configures another size is refused at start
    (a reload is refused the same way and keeps the running config), never silently given the first."""
    from monitord.vendor import SharedConflict

    url, _ = await start_sim(sim, clock=clock)
    with pytest.raises(SharedConflict, match="data-requests"):
        make_daemon([target(url, name="a"), target(url, name="b", budget_per_minute=20)], clock=clock)
