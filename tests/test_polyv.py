"""The Polyv source against the Polyv simulator over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import (
    TRANSPORT_FAULTS,
    assert_golden,
    assert_promtool_clean,
    log_events,
    parse_exposition,
    sim_faults,
    sim_knob,
    value,
)

from monitord import handover, simulators
from monitord.config import ConfigError, parse
from monitord.sharding import ShardSpec
from monitord.simulators import polyv as sim
from monitord.simulators.base import Clock
from monitord.sources.polyv import sign, stream_label
from monitord.vendor import SharedConflict

GOLDEN = Path(__file__).parent / "golden" / "polyv_fixed.prom"
T0 = 1_790_000_000.0
SEED_POINT_TIME = 1680831924.443  # "2023-04-07 09:45:24.443" China Standard Time


def target(url: str, name: str = "acct", channels: tuple[str, ...] = ("3880533", "2477096"),
           **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": "polyv", "url": url, "app_id": sim.DEFAULT_APP_ID,
            "app_secret": sim.DEFAULT_APP_SECRET, "channels": list(channels), "interval": "10s",
            "timeout": "3s", **extra}


async def knob(url: str, **body: Any) -> dict[str, Any]:
    return await sim_knob(url, "polyv", **body)


async def faults(url: str, **body: Any) -> None:
    await sim_faults(url, **body)


def series(daemon: Any) -> Any:
    return parse_exposition(daemon.store.render().decode())


async def signed_get(url: str, clock: Clock, secret: str = sim.DEFAULT_APP_SECRET,
                     **params: str) -> tuple[int, dict[str, Any]]:
    query = {"appId": sim.DEFAULT_APP_ID, "timestamp": str(int(clock() * 1000)), "channelId": "3880533",
             **params}
    query["sign"] = sign(query, secret, query.get("signatureMethod", "MD5"))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}{sim.API_PATH}", params=query) as r:
            return r.status, await r.json()


# ------------------------------------------------------------------------------------ data


async def test_golden_exposition_for_fixed_state(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, channel="2477096", live=False)
    daemon = make_daemon([target(url)], clock=clock)
    outcome = (await daemon.poll_all_once())["acct"]
    assert outcome.ok, outcome
    assert_golden(GOLDEN, daemon.store.render().decode())


async def test_seed_point_is_normalized_to_base_units(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, channels=("3880533",))], clock=clock)
    assert (await daemon.poll_all_once())["acct"].ok
    s = series(daemon)
    seed = {"channel": "3880533", "stream": "recordf"}
    # In the shared stream families the channel is the room and a push stream is sent.
    shared = {"room": "3880533", "direction": "send", "stream": "recordf", "site": ""}
    # The newest of the stream's two points wins, not the first in the list.
    assert value(s, "rtc_live_stream_point_timestamp_seconds", **seed) == SEED_POINT_TIME
    assert value(s, "rtc_stream_bitrate_bytes_per_second", media="video", **shared) == 1157120 / 8
    assert value(s, "rtc_stream_frames_per_second", media="video", **shared) == 13
    assert value(s, "rtc_stream_frames_per_second", media="audio", **shared) == 46
    assert value(s, "rtc_live_channel_live", channel="3880533") == 1
    backup = {"channel": "3880533", "stream": "backup"}
    assert value(s, "rtc_stream_bitrate_bytes_per_second", media="video", room="3880533", stream="backup") == 2048000 / 8
    assert value(s, "rtc_live_stream_point_timestamp_seconds", **backup) == 1680831920.0
    assert {v for (n, _), v in s.items() if n == "monitord_parse_errors_total"} == {0}, "declared fields at 0"


def test_china_standard_time_is_converted_to_unix_seconds() -> None:
    # 09:45:24.443 at UTC+8 is 01:45:24.443 UTC.
    assert sim.cst_text(SEED_POINT_TIME) == "2023-04-07 09:45:24.443"


async def test_auth_key_in_a_stream_url_never_reaches_metrics(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url)], clock=clock)
    await daemon.poll_all_once()
    text = daemon.store.render().decode()
    assert "txSecret" not in text and "5f0c0ffee" not in text and "push.sim.invalid" not in text


@pytest.mark.parametrize(("url", "label"), [
    ("recordf", "recordf"),
    ("rtmp://push.example.com/live/abc123?txSecret=s&txTime=1", "abc123"),
    ("/live/abc123/", "abc123"),
    ("abc?k=v#frag", "abc"),
    (None, ""),
    (12345, ""),
])
def test_stream_label(url: Any, label: str) -> None:
    assert stream_label(url) == label


async def test_live_points_follow_the_clock(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    await knob(url, live=True)
    daemon = make_daemon([target(url, channels=("3880533",))], clock=clock)
    rt = daemon.runtime("acct")
    for step in range(3):
        clock.set(T0 + step * 60)
        assert (await rt.run_once()).ok
        newest = value(series(daemon), "rtc_live_stream_point_timestamp_seconds", channel="3880533")
        assert newest is not None and T0 + step * 60 - 10 <= newest <= T0 + step * 60


async def test_a_stalled_push_keeps_its_newest_point_time_after_it_leaves_the_window(
        start_sim, make_daemon, clock) -> None:
    # PolyvStreamStalled fires two minutes after `for:` on a point older than two minutes; the
    # request window is five minutes, so without a memory the stream would vanish and resolve
    # the alert while the push is still stalled.
    url, _ = await start_sim(sim, clock=clock)
    await knob(url, channel="3880533", live=True)
    daemon = make_daemon([target(url, channels=("3880533",), window="5m")], clock=clock)
    rt = daemon.runtime("acct")
    clock.set(T0)
    assert (await rt.run_once()).ok
    await knob(url, channel="3880533", stalled=True)
    stalled_at = value(series(daemon), "rtc_live_stream_point_timestamp_seconds", channel="3880533")
    assert stalled_at is not None
    for minutes in (3, 6, 20):
        clock.set(T0 + minutes * 60)
        assert (await rt.run_once()).ok
        s = series(daemon)
        assert value(s, "rtc_live_stream_point_timestamp_seconds", channel="3880533") == stalled_at, minutes
        assert value(s, "rtc_live_channel_live", channel="3880533") == 1
        if minutes > 5:
            # Only the time is remembered; rates of a push that sends nothing are unknown, not 0.
            assert value(s, "rtc_stream_bitrate_bytes_per_second", room="3880533") is None
    await knob(url, channel="3880533", live=False)
    clock.set(T0 + 21 * 60)
    assert (await rt.run_once()).ok
    assert value(series(daemon), "rtc_live_stream_point_timestamp_seconds", channel="3880533") is None, \
        "an off-air channel forgets its streams"
    await knob(url, channel="3880533", live=True, stalled=False)
    clock.set(T0 + 22 * 60)
    assert (await rt.run_once()).ok
    resumed = value(series(daemon), "rtc_live_stream_point_timestamp_seconds", channel="3880533")
    assert resumed is not None and resumed > stalled_at


async def test_not_live_is_a_state_not_an_error(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    await knob(url, live=True)
    await knob(url, channel="2477096", live=False)
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["acct"].ok
    s = series(daemon)
    assert value(s, "rtc_live_channel_live", channel="2477096") == 0
    assert value(s, "rtc_live_channel_live", channel="3880533") == 1
    assert value(s, "rtc_stream_bitrate_bytes_per_second", room="2477096") is None
    assert value(s, "rtc_stream_bitrate_bytes_per_second", room="3880533") is not None
    assert {v for (n, ls), v in s.items() if n == "monitord_polyv_channel_errors_total"} == {0}, "not an error"
    assert value(s, "monitord_target_up") == 1


async def test_every_channel_not_live_is_still_a_successful_poll(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    await knob(url, live=False, error_http_status="200")
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["acct"].ok
    assert value(series(daemon), "rtc_live_channel_live", channel="3880533") == 0


async def test_time_wins_over_a_disagreeing_timestamp(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    await knob(url, live=True, with_timestamp=True)
    daemon = make_daemon([target(url, channels=("3880533",))], clock=clock)
    assert (await daemon.poll_all_once())["acct"].ok
    assert value(series(daemon), "monitord_parse_errors_total", field="timestamp") == 0, "agreeing fields"
    await knob(url, timestamp_skew=30)
    assert (await daemon.poll_all_once())["acct"].ok
    s = series(daemon)
    assert value(s, "monitord_parse_errors_total", field="timestamp") == 1
    newest = value(s, "rtc_live_stream_point_timestamp_seconds", channel="3880533")
    assert newest is not None and T0 - 10 <= newest <= T0, "the CST `time` is exported, not the skewed epoch"


async def test_malformed_points_are_counted_never_drawn_as_zero(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    await knob(url, live=True, bad_points=True)
    daemon = make_daemon([target(url, channels=("3880533",))], clock=clock)
    assert (await daemon.poll_all_once())["acct"].ok
    s = series(daemon)
    for field in ("data", "time", "bitRate", "audioFrameRate"):
        assert value(s, "monitord_parse_errors_total", field=field) == 1, field
    # "--" means no value: absent, not a parse error.
    assert value(s, "monitord_parse_errors_total", field="videoFrameRate") == 0
    assert value(s, "rtc_live_stream_point_timestamp_seconds", stream="broken") is None
    assert value(s, "rtc_live_stream_point_timestamp_seconds", stream="oddvalues") == T0 - 1
    assert value(s, "rtc_stream_bitrate_bytes_per_second", stream="oddvalues") is None
    assert value(s, "rtc_stream_frames_per_second", stream="oddvalues", media="video") is None
    assert value(s, "rtc_stream_bitrate_bytes_per_second", stream="lv3880533") is not None


async def test_streams_over_the_cap_are_counted_not_exposed(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    await knob(url, live=True, streams=3)
    daemon = make_daemon([target(url, channels=("3880533",), max_streams_per_channel=2)], clock=clock)
    assert (await daemon.poll_all_once())["acct"].ok
    s = series(daemon)
    streams = {dict(ls)["stream"] for n, ls in s if n == "rtc_live_stream_point_timestamp_seconds"}
    assert len(streams) == 2
    assert value(s, "monitord_polyv_streams_dropped_total") == 1


async def test_sha256_signature_method_end_to_end(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, signature_method="SHA256")], clock=clock)
    assert (await daemon.poll_all_once())["acct"].ok
    state = app[sim.SIM_KEY]
    assert state.sign_failures == 0 and state.answered == 2


# ---------------------------------------------------------------------------- per channel


async def test_one_unknown_channel_does_not_fail_the_target(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, channel="2477096", exists=False)
    daemon = make_daemon([target(url)], clock=clock)
    rt = daemon.runtime("acct")
    assert (await rt.run_once()).ok
    assert (await rt.run_once()).ok
    s = series(daemon)
    assert value(s, "monitord_target_up") == 1
    assert value(s, "monitord_polyv_channel_errors_total", channel="2477096", reason="not_found") == 2
    assert value(s, "rtc_live_channel_live", channel="2477096") is None
    assert value(s, "rtc_live_channel_live", channel="3880533") == 1


async def test_one_channel_vendor_error_is_counted_with_its_reason(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, channel="3880533", error="internal error, please retry later")
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["acct"].ok
    s = series(daemon)
    assert value(s, "monitord_polyv_channel_errors_total", channel="3880533", reason="vendor_error") == 1
    assert value(s, "rtc_stream_bitrate_bytes_per_second", room="3880533") is None


async def test_every_channel_failing_fails_the_poll(start_sim, make_daemon, clock, captured_logs) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, exists=False)
    daemon = make_daemon([target(url)], clock=clock)
    outcome = (await daemon.poll_all_once())["acct"]
    assert (outcome.ok, outcome.reason) == (False, "not_found")
    assert "channel not found." in outcome.detail
    s = series(daemon)
    assert value(s, "monitord_target_up") == 0
    assert value(s, "monitord_polyv_channel_errors_total", channel="3880533", reason="not_found") == 1
    assert [e["event"] for e in log_events(captured_logs)].count("target_failing") == 1


@pytest.mark.parametrize("form", sim.ERROR_FORMS)
async def test_errors_are_read_from_the_error_object_and_from_message(start_sim, make_daemon, clock,
                                                                      form) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, error_form=form)
    await knob(url, channel="2477096", live=False)
    await knob(url, channel="3880533", error="param is not digit: channelId")
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["acct"].ok
    s = series(daemon)
    assert value(s, "rtc_live_channel_live", channel="2477096") == 0, "documented not-live text"
    # A documented message of a request field that failed validation: the request is wrong.
    assert value(s, "monitord_polyv_channel_errors_total", channel="3880533", reason="http_4xx") == 1
    assert value(s, "monitord_polyv_channel_errors_total", channel="3880533", reason="vendor_error") == 0


@pytest.mark.parametrize("form", sim.ERROR_FORMS)
async def test_documented_rejections_by_form(start_sim, make_daemon, clock, form) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, error_form=form)
    daemon = make_daemon([target(url, app_secret="Wrong-Polyv-Secret-42")], clock=clock)
    outcome = (await daemon.poll_all_once())["acct"]
    code = sim.SIM_ERROR_CODES[sim.MSG_BAD_SIGN]
    assert (outcome.ok, outcome.reason, sim.MSG_BAD_SIGN in outcome.detail) == (False, "auth", True)
    # error.code is the vendor code when Polyv sends one; else the envelope code.
    assert (f"error.code {code}" in outcome.detail) == (form != "message_only")


async def test_documented_text_wins_over_substrings(start_sim, make_daemon, clock) -> None:
    # "access forbidden" names no credential: substring rules would call it a vendor error; the
    # documented vocabulary says the account lacks the permission.
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, error_form="error_only", error="access forbidden")
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["acct"].reason == "auth"


async def test_undocumented_text_falls_back_to_substrings(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, error_form="error_only", channel="3880533", error="channel does not exist")
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["acct"].ok
    s = series(daemon)
    assert value(s, "monitord_polyv_channel_errors_total", channel="3880533", reason="not_found") == 1


def test_vendor_failure_prefers_error_desc_and_code() -> None:
    from monitord.sources.polyv import VendorFailure

    failure = VendorFailure.read({"code": 500, "status": "fail", "message": "something else",
                                  "error": {"code": 12345, "desc": "qps exceeds number of calls"}})
    assert (failure.text, failure.vendor_code, failure.classify(200)) == \
        ("qps exceeds number of calls", 12345, "ban")
    bare = VendorFailure.read({"code": 400, "message": "invalid signature.", "error": {"code": True}})
    assert (bare.vendor_code, bare.classify(400)) == (400, "auth")
    unknown = VendorFailure.read({"code": 500, "status": "fail", "message": ""})
    assert unknown.classify(500) == "vendor_error"


# ----------------------------------------------------------------------------------- auth


async def test_wrong_secret_is_auth_and_secrets_stay_out_of_logs(start_sim, make_daemon, clock,
                                                                captured_logs) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="fixed")
    wrong = "Wrong-Polyv-Secret-42"
    daemon = make_daemon([target(url, app_secret=wrong)], clock=clock)
    outcome = (await daemon.poll_all_once())["acct"]
    assert (outcome.ok, outcome.reason) == (False, "auth")
    assert "invalid signature." in outcome.detail
    assert app[sim.SIM_KEY].sign_failures >= 1
    text = captured_logs.getvalue() + daemon.store.render().decode()
    assert wrong not in text and "sign=" not in text
    errors = {v for (n, _), v in series(daemon).items() if n == "monitord_polyv_channel_errors_total"}
    assert errors == {0}, "auth is not a channel error"


async def test_unknown_app_id_is_auth(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, app_id="nosuchapp")], clock=clock)
    assert (await daemon.poll_all_once())["acct"].reason == "auth"


async def test_clock_skew_beyond_three_minutes_is_auth_with_a_hint(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon_clock = Clock(fixed=T0 + 181)
    daemon = make_daemon([target(url)], clock=daemon_clock)
    outcome = (await daemon.poll_all_once())["acct"]
    assert outcome.reason == "auth" and "clock" in outcome.detail
    daemon_clock.set(T0 + 179)
    assert (await daemon.poll_all_once())["acct"].ok


# ----------------------------------------------------------------------- limits and bans


async def test_ban_pauses_every_polyv_target_then_polling_resumes(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="fixed", rate_limit=3)
    state = app[sim.SIM_KEY]
    daemon = make_daemon([target(url, name="a"), target(url, name="b")], clock=clock)
    assert (await daemon.runtime("a").run_once()).ok
    outcome = await daemon.runtime("b").run_once()
    assert (outcome.ok, outcome.reason) == (False, "throttled")
    assert sim.MSG_QPS in outcome.detail
    sent = state.requests
    # Target a has seen no ban answer itself, but Polyv bans the IP: it must not send anything.
    outcome = await daemon.runtime("a").run_once()
    assert outcome.reason == "throttled" and state.requests == sent
    s = series(daemon)
    for name in ("a", "b"):
        assert value(s, "monitord_polyv_banned", target=name) == 1
        assert value(s, "monitord_polyv_banned_until_timestamp_seconds", target=name) == T0 + 300
        assert value(s, "monitord_poll_errors_total", target=name, reason="throttled") == 1
    assert value(s, "monitord_polyv_ban_answers_total", target="b") == 1
    assert value(s, "monitord_polyv_ban_answers_total", target="a") == 0

    clock.advance(299)
    assert (await daemon.runtime("b").run_once()).reason == "throttled"
    assert state.requests == sent
    clock.advance(2)
    outcomes = [await daemon.runtime(n).run_once() for n in ("a",)]
    assert all(o.ok for o in outcomes), outcomes
    assert value(series(daemon), "monitord_polyv_banned", target="a") == 0


async def test_rate_limit_body_with_http_200_is_a_ban_too(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed", rate_limit=1)
    await knob(url, error_http_status="200")
    daemon = make_daemon([target(url)], clock=clock)
    outcome = (await daemon.poll_all_once())["acct"]
    assert outcome.reason == "throttled"
    assert value(series(daemon), "monitord_polyv_banned") == 1


async def test_ban_survives_a_restart(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="fixed", rate_limit=1)
    first = make_daemon([target(url)], clock=clock)
    assert (await first.poll_all_once())["acct"].reason == "throttled"
    await first.close()
    sent = app[sim.SIM_KEY].requests
    # The ban is the daemon's, not the target's: a target that never saw it is paused too.
    second = make_daemon([target(url, name="other")], clock=clock)
    assert (await second.poll_all_once())["other"].reason == "throttled"
    assert app[sim.SIM_KEY].requests == sent, "a restarted daemon must not walk into the ban again"


async def test_one_limiter_is_shared_by_every_polyv_target(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([
        target(url, name="a", channels=("1", "2"), domain_requests_per_10s=2),
        target(url, name="b", channels=("3",), domain_requests_per_10s=2, timeout="1s"),
    ], clock=clock)
    assert (await daemon.runtime("a").run_once()).ok
    # The shared bucket is full: b's one request has to wait ~5 s for room, past its deadline.
    outcome = await daemon.runtime("b").run_once()
    assert outcome.reason == "timeout"
    assert app[sim.SIM_KEY].requests == 2


# ------------------------------------------------------------------------------ transport


@pytest.mark.parametrize(
    ("fault", "reason"),
    [*TRANSPORT_FAULTS, ({"status": 429}, "throttled")],
)
async def test_transport_faults_cost_one_poll_then_recover(start_sim, make_daemon, clock, fault,
                                                           reason) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, timeout="1s")], clock=clock)
    rt = daemon.runtime("acct")
    assert (await rt.run_once()).ok
    await faults(url, **fault)
    outcome = await rt.run_once()
    assert (outcome.ok, outcome.reason) == (False, reason)
    s = series(daemon)
    assert value(s, "monitord_target_up") == 0
    assert value(s, "rtc_live_channel_live", channel="3880533") is None, "a failed target's data is dropped"
    await faults(url)
    if reason == "throttled":
        clock.advance(301)  # an HTTP 429 is ban-like: polling pauses for the ban period first
    assert (await rt.run_once()).ok


async def test_a_gateway_5xx_is_tried_once_more_then_counted(start_sim, make_daemon, clock) -> None:
    from monitord.simulators.base import REQUESTS_KEY

    url, app = await start_sim(sim, clock=clock, scenario="fixed")
    await faults(url, status=503, match="channelId=2477096")
    daemon = make_daemon([target(url)], clock=clock)
    before = app[REQUESTS_KEY][0]
    assert (await daemon.poll_all_once())["acct"].ok
    assert app[REQUESTS_KEY][0] - before == 3, "one request for 3880533, two for 2477096"
    assert value(series(daemon), "monitord_polyv_channel_errors_total", channel="2477096", reason="http_5xx") == 1


async def test_connection_refused_is_connect(make_daemon, clock) -> None:
    daemon = make_daemon([target("http://127.0.0.1:9", timeout="2s")], clock=clock)
    assert (await daemon.poll_all_once())["acct"].reason == "connect"


# ------------------------------------------------------------------------------ simulator


async def test_simulator_enforces_rate_limit_and_ban_with_the_vendor_body(start_sim, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed", rate_limit=5)
    for _ in range(5):
        assert (await signed_get(url, clock))[1]["code"] == 200
    clock.advance(1)
    status, body = await signed_get(url, clock)
    assert (status, body) == (500, {"code": 500, "status": "fail", "message": sim.MSG_QPS,
                                    "error": {"code": sim.SIM_ERROR_CODES[sim.MSG_QPS], "desc": sim.MSG_QPS},
                                    "data": ""})
    clock.advance(299)  # ban from the 6th request (T0+1) lasts until T0+301
    assert (await signed_get(url, clock))[1]["message"] == sim.MSG_QPS
    clock.advance(1.5)
    assert (await signed_get(url, clock))[1]["code"] == 200


async def test_simulator_window_slides(start_sim, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed", rate_limit=2)
    assert (await signed_get(url, clock))[1]["code"] == 200
    assert (await signed_get(url, clock))[1]["code"] == 200
    clock.advance(10.5)
    assert (await signed_get(url, clock))[1]["code"] == 200


async def test_simulator_default_limit_is_the_vendor_limit() -> None:
    state = sim.create_app()[sim.SIM_KEY]
    assert (state.rate_limit, state.rate_window, state.ban_seconds) == (1500, 10.0, 300.0)


@pytest.mark.parametrize(("params", "message"), [
    ({"timestamp": str(int(T0 * 1000) - 181_000)}, "timestamp expired."),
    ({"timestamp": str(int(T0 * 1000) + 181_000)}, "timestamp expired."),
    ({"timestamp": "1790000000"}, "timestamp is illegal."),
    ({"startTime": str(int(T0 * 1000) - 8 * 86400 * 1000)}, "only the last 7 days can be queried."),
    ({"appId": "nosuchapp"}, "appId is illegal."),
])
async def test_simulator_rejects_bad_requests(start_sim, clock, params, message) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    status, body = await signed_get(url, clock, **params)
    assert (status, body) == (400, {"code": 400, "status": "error", "message": message,
                                    "error": {"code": sim.SIM_ERROR_CODES[message], "desc": message}, "data": ""})


async def test_simulator_rejects_a_wrong_or_missing_sign(start_sim, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    status, body = await signed_get(url, clock, secret="not-the-secret")
    assert (status, body["message"]) == (400, sim.MSG_BAD_SIGN)
    async with aiohttp.ClientSession() as s:
        query = {"appId": sim.DEFAULT_APP_ID, "timestamp": str(int(T0 * 1000)), "channelId": "1"}
        async with s.get(f"{url}{sim.API_PATH}", params=query) as r:
            assert (await r.json())["error"]["desc"] == "param should not be empty: sign"


@pytest.mark.parametrize("nonce", ["584F3849-E5A0-4B59-98A5-2F373EFD0559", "a b&c=d+é/中?#%"])
async def test_signed_values_survive_the_query_string_and_nonces_are_single_use(start_sim, clock,
                                                                                 nonce) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    assert (await signed_get(url, clock, signatureNonce=nonce))[1]["code"] == 200
    assert (await signed_get(url, clock, signatureNonce=nonce, signatureMethod="SHA256"))[1]["message"] == \
        "signatureNonce has been used."


async def test_simulator_not_live_body_is_the_documented_body(start_sim, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    await knob(url, live=False)
    documented = {"code": 400, "status": "error", "message": sim.MSG_NOT_LIVE,
                  "error": {"code": sim.SIM_ERROR_CODES[sim.MSG_NOT_LIVE], "desc": sim.MSG_NOT_LIVE}, "data": ""}
    assert await signed_get(url, clock) == (400, documented)
    # The API page's own example ("异常示例") has no error object.
    await knob(url, error_form="message_only")
    assert await signed_get(url, clock) == (400, {"code": 400, "status": "error", "message": sim.MSG_NOT_LIVE,
                                                  "data": ""})
    await knob(url, error_form="error_only")
    assert await signed_get(url, clock) == (400, {**documented, "message": ""})


# --------------------------------------------------------------------------- config, demo


def test_config_keeps_the_shared_rate_below_the_ban() -> None:
    with pytest.raises(ConfigError) as exc:
        parse({"targets": [target("http://127.0.0.1:1", domain_requests_per_10s=701)]})
    assert any(p.startswith("targets[0].domain_requests_per_10s:") for p in exc.value.problems)


@pytest.mark.parametrize(("channels", "problem"), [
    ([], "targets[0].channels:"),
    (["1", "1"], "channel ids listed twice: 1"),
    (["a b"], "channel id 'a b'"),
])
def test_config_rejects_bad_channel_lists(channels: list[str], problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse({"targets": [target("http://127.0.0.1:1", channels=channels)]})
    assert any(problem in p for p in exc.value.problems), exc.value.problems


def test_config_reads_the_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYV_TEST_SECRET", "from-the-env-123")
    entry = target("http://127.0.0.1:1")
    del entry["app_secret"]
    config = parse({"targets": [{**entry, "app_secret_env": "POLYV_TEST_SECRET"}]})
    assert config.targets[0].app_secret.get_secret_value() == "from-the-env-123"


async def test_demo_targets_poll_the_simulator(make_daemon) -> None:
    running = await simulators.start(base_port=0)
    try:
        config = simulators.demo_config(running.urls)
        polyv_targets = [t for t in config["targets"] if t["source"] == "polyv"]
        assert len(polyv_targets) >= 2
        daemon = make_daemon(polyv_targets)
        outcomes = await daemon.poll_all_once()
        assert all(o.ok for o in outcomes.values()), outcomes
        assert value(series(daemon), "monitord_target_up", target="polyv-events") == 1
    finally:
        await running.close()


async def test_exposition_passes_promtool(start_sim, make_daemon, clock, tmp_path) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, channel="2477096", exists=False)
    daemon = make_daemon([target(url, channels=("3880533", "2477096", "2272655"))], clock=clock)
    await daemon.poll_all_once()
    await assert_promtool_clean(daemon.store.render())


async def test_a_differing_shared_rate_refuses_to_start(make_daemon) -> None:
    # The host's limiter is one object: two rates for it cannot both hold.
    with pytest.raises(SharedConflict, match=r"a and b share requests of 127\.0\.0\.1"):
        make_daemon([target("http://127.0.0.1:9", name="a", domain_requests_per_10s=100),
                     target("http://127.0.0.1:9", name="b", domain_requests_per_10s=200)])


async def test_the_ban_is_kept_in_a_file_named_for_the_host(start_sim, make_daemon, clock, tmp_path) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed", rate_limit=1)
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["acct"].reason == "throttled"
    files = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert "polyv@127.0.0.1.ban.json" in files and "_polyv.ban.json" not in files, files
    assert json.loads((tmp_path / "state" / "polyv@127.0.0.1.ban.json").read_text()) == {"until": T0 + 300}
    # A replica that takes the host's targets over gets the ban with them.
    exported = handover.shard_state(daemon, ShardSpec())
    assert set(exported["polyv@127.0.0.1"]) == {"ban"}


async def test_a_ban_written_by_an_older_version_is_honoured(start_sim, make_daemon, clock, tmp_path) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="fixed")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "_polyv.ban.json").write_text(json.dumps({"until": T0 + 100}))
    daemon = make_daemon([target(url)], clock=clock)
    outcome = (await daemon.poll_all_once())["acct"]
    assert (outcome.reason, app[sim.SIM_KEY].requests) == ("throttled", 0)
    clock.advance(101)
    assert (await daemon.poll_all_once())["acct"].ok
