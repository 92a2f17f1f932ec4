"""The endpoint source against the endpoint simulator over HTTP on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import TRANSPORT_FAULTS, assert_golden, log_events, parse_exposition, sim_faults, sim_knob, value

from monitord.simulators import endpoint as sim

GOLDEN = Path(__file__).parent / "golden" / "endpoint_fixed.prom"


def target(url: str, name: str = "room", **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": "endpoint", "url": url, "username": sim.DEFAULT_USER,
            "password": sim.DEFAULT_PASSWORD, "interval": "10s", "timeout": "3s", **extra}


async def knob(url: str, **body: Any) -> dict[str, Any]:
    return await sim_knob(url, "endpoint", **body)


async def faults(url: str, **body: Any) -> None:
    await sim_faults(url, **body)


async def test_golden_exposition_for_fixed_state(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url)])
    outcome = (await daemon.poll_all_once())["room"]
    assert outcome.ok, outcome
    assert_golden(GOLDEN, daemon.store.render().decode())


async def test_vendor_example_values_are_normalized_to_base_units(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url)])
    await daemon.poll_all_once()
    s = parse_exposition(daemon.store.render().decode())
    audio_send = {"media": "audio", "direction": "send"}
    assert value(s, "rtc_stream_jitter_seconds", **audio_send) == 0.005
    assert value(s, "rtc_stream_loss_ratio", **audio_send) == 0.0
    assert value(s, "rtc_stream_bitrate_bytes_per_second", **audio_send) == 35620 / 8
    site1 = {"media": "video", "direction": "recv", "site": "site1"}
    assert value(s, "rtc_stream_width_pixels", **site1) == 1280
    assert value(s, "rtc_stream_height_pixels", **site1) == 720
    assert value(s, "rtc_stream_frames_per_second", **site1) == 41
    assert value(s, "rtc_stream_bitrate_bytes_per_second", **site1) == 962760 / 8
    board = {"media": "video", "direction": "recv", "stream": "1"}
    assert value(s, "rtc_stream_width_pixels", **board) == 1920
    assert value(s, "rtc_stream_loss_ratio", **board) == 0.125
    assert value(s, "rtc_stream_delay_seconds", **board) == 0.12
    assert value(s, "rtc_stream_bitrate_bytes_per_second", **board) == 1_200_000 / 8
    assert value(s, "rtc_stream_packets_lost", **board) == 37
    assert value(s, "rtc_stream_codec_info", codec="H.265") == 1
    assert value(s, "rtc_endpoint_call_duration_seconds") == 86400 + 2 * 3600 + 3 * 60
    assert value(s, "rtc_endpoint_in_call") == 1
    # The aux streams are "Unknown"/"--"/0 fps: not flowing, so no series at all (never zeros).
    assert value(s, "rtc_stream_frames_per_second", media="aux") is None
    assert value(s, "rtc_stream_jitter_seconds", media="aux") is None
    assert value(s, "monitord_target_up", target="room") == 1


async def test_session_is_reused_and_renewed_once_when_expired(start_sim, make_daemon) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    state = app[sim.SIM_KEY]
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    for _ in range(3):
        assert (await rt.run_once()).ok
    assert state.logins == 1, "the session must be reused across polls"
    await knob(url, expire_sessions=True)
    assert (await rt.run_once()).ok, "an expired session costs a re-login, not a failed poll"
    assert state.logins == 2
    await daemon.close()
    assert state.logouts == 1, "the daemon logs out on shutdown"


async def test_requests_without_cookie_or_token_are_rejected_by_the_simulator(start_sim) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    call = f"{url}/action.cgi?ActionID=WEB_GetMultiCallStatusInfoAPI"
    async with aiohttp.ClientSession() as s:
        async with s.post(call, json={}) as r:
            assert (await r.json())["success"] == 0
        async with s.post(f"{url}/action.cgi?ActionID=WEB_RequestSessionIDAPI") as r:
            cookie = r.cookies["SessionID"].value
        async with s.post(call, json={"acCSRFToken": "guess"}, headers={"Cookie": f"SessionID={cookie}"}) as r:
            assert (await r.json())["success"] == 0


async def test_wrong_password_is_an_auth_failure_and_never_logged(start_sim, make_daemon, captured_logs) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, password="Wrong-Password-42")])
    outcome = (await daemon.poll_all_once())["room"]
    assert not outcome.ok and outcome.reason == "auth"
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_target_up", target="room") == 0
    assert value(s, "monitord_poll_errors_total", reason="auth") == 1
    assert value(s, "rtc_endpoint_in_call") is None
    text = captured_logs.getvalue()
    assert "Wrong-Password-42" not in text and "Wrong-Password-42" not in daemon.store.render().decode()
    assert "33558530" in text, "the vendor's code is in the log"


@pytest.mark.parametrize("idle_answer", ["error", "empty"])
async def test_not_in_call_is_a_state_not_an_error(start_sim, make_daemon, idle_answer) -> None:
    url, app = await start_sim(sim, scenario="live")
    await knob(url, in_call=False, idle_answer=idle_answer)
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    for _ in range(3):
        assert (await rt.run_once()).ok
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "rtc_endpoint_in_call") == 0
    assert value(s, "monitord_target_up") == 1
    assert value(s, "monitord_poll_errors_total", reason="vendor_error") == 0
    assert not any(n.startswith("rtc_stream_") for n, _ in s)
    assert app[sim.SIM_KEY].logins == 1, "an idle device is not an expired session: no re-login"


async def test_idle_answer_is_a_failure_when_its_code_is_not_configured(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="live")
    await knob(url, in_call=False)
    daemon = make_daemon([target(url, not_in_call_error_codes=[])])
    outcome = (await daemon.poll_all_once())["room"]
    assert outcome.reason == "vendor_error" and str(sim.ERROR_NOT_IN_CALL["code"]) in outcome.detail
    assert value(parse_exposition(daemon.store.render().decode()), "rtc_endpoint_in_call") is None


async def test_configured_not_in_call_code_reads_as_not_in_call(start_sim, make_daemon) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    await knob(url, vendor_error=True)
    daemon = make_daemon([target(url, not_in_call_error_codes=[sim.ERROR_GENERIC["code"]])])
    assert (await daemon.poll_all_once())["room"].ok
    assert app[sim.SIM_KEY].logins == 1, "a known not-in-call answer needs no re-login"
    assert value(parse_exposition(daemon.store.render().decode()), "rtc_endpoint_in_call") == 0


async def test_vendor_error_is_visible_with_its_code(start_sim, make_daemon, captured_logs) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    await knob(url, vendor_error=True)
    daemon = make_daemon([target(url)])
    outcome = (await daemon.poll_all_once())["room"]
    assert outcome.reason == "vendor_error"
    code = str(sim.ERROR_GENERIC["code"])
    assert code in outcome.detail
    failing = [e for e in log_events(captured_logs) if e["event"] == "target_failing"]
    assert len(failing) == 1 and code in failing[0]["detail"]


async def test_streams_that_vanish_upstream_vanish_from_metrics(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    await knob(url, in_call=True)
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    counts = set()
    for minute in range(12):
        clock.set(1_790_000_000.0 + minute * 60)
        assert (await rt.run_once()).ok
        s = parse_exposition(daemon.store.render().decode())
        recv = {dict(ls)["stream"] for n, ls in s if n == "rtc_stream_frames_per_second"
                and dict(ls)["direction"] == "recv" and dict(ls)["media"] == "video"}
        expected = len(app[sim.SIM_KEY].payload("default")["stVideoParamRecv"])
        assert recv == {str(i) for i in range(expected)}
        counts.add(expected)
    assert len(counts) > 1, "the timeline should make receive streams come and go"


@pytest.mark.parametrize(
    ("fault", "reason"),
    TRANSPORT_FAULTS,
)
async def test_transport_faults_cost_one_poll_then_recover(start_sim, make_daemon, fault, reason) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, timeout="1s")])
    rt = daemon.runtime("room")
    assert (await rt.run_once()).ok
    await faults(url, **fault)
    outcome = await rt.run_once()
    assert (outcome.ok, outcome.reason) == (False, reason)
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_target_up") == 0
    assert value(s, "monitord_poll_errors_total", reason=reason) == 1
    assert value(s, "rtc_endpoint_in_call") is None, "a failed target's data is dropped, not frozen"
    await faults(url)
    assert (await rt.run_once()).ok
    assert value(parse_exposition(daemon.store.render().decode()), "rtc_endpoint_in_call") == 1


async def test_one_hung_device_does_not_hold_the_others(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    await faults(url, hang=True, match="/d/stuck/")
    daemon = make_daemon([target(f"{url}/d/stuck", name="stuck", timeout="2s"),
                          target(f"{url}/d/fine", name="fine", timeout="2s")])
    outcomes = await daemon.poll_all_once()
    assert outcomes["fine"].ok and outcomes["fine"].duration < 1.5
    assert outcomes["stuck"].reason == "timeout"


async def test_connection_refused_is_connect(make_daemon) -> None:
    daemon = make_daemon([target("http://127.0.0.1:9", timeout="2s")])
    assert (await daemon.poll_all_once())["room"].reason == "connect"


async def test_unreadable_value_is_absent_counted_by_field_and_logged_once(start_sim, make_daemon,
                                                                           captured_logs) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    await knob(url, override={"valueVideoJitter": "fast", "videoLossPer": "130%"})
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    for _ in range(3):
        assert (await rt.run_once()).ok, "an odd value costs a sample, not the poll"
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "rtc_stream_jitter_seconds", media="video", stream="0", direction="recv") is None
    assert value(s, "rtc_stream_jitter_seconds", media="audio", direction="recv") == 0.005
    # 3 flowing video streams x 3 polls; the field name is the label, never the value.
    assert value(s, "monitord_parse_errors_total", field="valueVideoJitter") == 9
    assert value(s, "monitord_parse_errors_total", field="videoLossPer") == 9
    assert "fast" not in daemon.store.render().decode()
    warned = [e for e in log_events(captured_logs) if e["event"] == "unparseable_values"]
    assert len(warned) == 1 and warned[0]["fields"] == ["valueVideoJitter", "videoLossPer"]


async def test_simulator_refuses_bad_knobs(start_sim) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/_sim/endpoint", json={"scenario": "chaos"}) as r:
            assert r.status == 400 and "scenario is one of live, fixed" in (await r.json())["error"]
        async with s.post(f"{url}/_sim/endpoint", data=b"not json") as r:
            assert r.status == 400
    assert app[sim.SIM_KEY].scenario == "fixed"
