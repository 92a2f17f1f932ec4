"""How many logins the endpoint source spends, and what it reports, when the status call fails:
a login is a real cost on the devices (they cap sessions), and a failure right after a fresh
login must be reported for what it is."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from helpers import parse_exposition, sim_faults, sim_knob, value
from test_endpoint import target

from monitord.simulators import endpoint as sim

STATUS_CALL = "ActionID=WEB_GetMultiCallStatusInfoAPI"


async def test_auth_refusal_right_after_login_is_auth_with_one_login(start_sim: Any, make_daemon: Any) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    await sim_faults(url, status=401, match=STATUS_CALL)
    state = app[sim.SIM_KEY]
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    outcome = await rt.run_once()
    assert outcome.reason == "auth", outcome
    # A session refused the moment it was made is not an expired one: no second login in the
    # same poll (that would loop against a device that refuses the account).
    assert state.logins == 1
    # Next poll the session may have expired meanwhile: one renewal, still refused.
    assert (await rt.run_once()).reason == "auth"
    assert state.logins == 2


async def test_transport_failures_do_not_cost_a_login(start_sim: Any, make_daemon: Any) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    state = app[sim.SIM_KEY]
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    assert (await rt.run_once()).ok
    assert state.logins == 1
    await sim_faults(url, status=503, match=STATUS_CALL)
    for _ in range(3):
        assert (await rt.run_once()).reason == "http_5xx"
    assert state.logins == 1, "a 5xx says nothing about the session: keep it"
    await sim_faults(url)
    assert (await rt.run_once()).ok
    assert state.logins == 1, "the session survived the outage"


async def test_a_vendor_error_costs_exactly_one_login_per_poll(start_sim: Any, make_daemon: Any) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    state = app[sim.SIM_KEY]
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    assert (await rt.run_once()).ok
    await sim_knob(url, "endpoint", vendor_error=True)
    for polls in range(1, 4):
        outcome = await rt.run_once()
        assert outcome.detail == (f"vendor_error: WEB_GetMultiCallStatusInfoAPI failed "
                                  f"(vendor code {sim.ERROR_GENERIC['code']})"), outcome
        # The devices answer an expired session with the same generic error, so one re-login
        # per failing poll is the price of telling them apart; never more.
        assert state.logins == 1 + polls
    await sim_knob(url, "endpoint", vendor_error=False)
    assert (await rt.run_once()).ok
    assert state.logins == 4, "the last session is reused"


async def test_an_expired_session_answered_with_401_is_renewed(start_sim: Any, make_daemon: Any) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    state = app[sim.SIM_KEY]
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    assert (await rt.run_once()).ok
    await sim_knob(url, "endpoint", expire_sessions=True)
    assert (await rt.run_once()).ok
    assert state.logins == 2


@pytest.mark.parametrize(("raw", "reason", "detail"), [
    (5, "bad_response", "data is a int, not a JSON string"),
    ("{not json", "bad_response", "data is not a JSON document"),
    ("[1, 2]", "bad_response", "call status data is a list, not an object"),
    (True, "bad_response", "data is a bool, not a JSON string"),
])
async def test_status_data_that_is_not_a_json_document_is_a_bad_response(start_sim: Any, make_daemon: Any,
                                                                          raw: Any, reason: str,
                                                                          detail: str) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    await sim_knob(url, "endpoint", raw_data=raw)
    daemon = make_daemon([target(url)])
    outcome = (await daemon.poll_all_once())["room"]
    # The decoder's own explanation may follow the sentence (bounded vendor JSON says why).
    assert outcome.reason == reason and outcome.detail.startswith(f"{reason}: {detail}"), outcome


@pytest.mark.parametrize(("raw", "in_call"), [
    ("   ", 0.0),  # blank: no call
    ([], 0.0),
    ({}, 0.0),
    ("{}", 0.0),
    ({"joinDay": "0", "joinHour": "1", "joinMin": "2"}, 1.0),  # firmware that skips the double encoding
    ('{"joinDay": "0", "joinHour": "1", "joinMin": "2"}', 1.0),
])
async def test_status_data_forms_the_devices_send(start_sim: Any, make_daemon: Any, raw: Any, in_call: float) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    await sim_knob(url, "endpoint", raw_data=raw)
    daemon = make_daemon([target(url)])
    outcome = (await daemon.poll_all_once())["room"]
    assert outcome.ok, outcome
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "rtc_endpoint_in_call") == in_call
    if in_call:
        assert value(s, "rtc_endpoint_call_duration_seconds") == 3600 + 120


async def test_an_answer_without_a_success_flag_is_a_bad_response(start_sim: Any, make_daemon: Any) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    await sim_faults(url, status=200, match=STATUS_CALL)  # {"error": ...}: JSON, but not the envelope
    daemon = make_daemon([target(url)])
    outcome = (await daemon.poll_all_once())["room"]
    assert outcome.reason == "bad_response"
    assert outcome.detail == f"bad_response: {url}/action.cgi: no success flag in the answer"


async def test_a_session_answer_without_its_cookie_is_a_bad_response(start_sim: Any, make_daemon: Any) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    await sim_faults(url, status=200, match="ActionID=WEB_RequestSessionIDAPI")  # 200, JSON, no cookie
    daemon = make_daemon([target(url)])
    outcome = (await daemon.poll_all_once())["room"]
    assert outcome.detail == "bad_response: WEB_RequestSessionIDAPI set no SessionID cookie"


@pytest.mark.parametrize("login_data", ['{"other": 1}', '{"acCSRFToken": ""}', '{"acCSRFToken": 7}', "[1]", '"x"'])
async def test_a_login_without_a_token_is_a_bad_response(start_sim: Any, make_daemon: Any, login_data: str) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    await sim_knob(url, "endpoint", login_data=login_data)
    daemon = make_daemon([target(url)])
    outcome = (await daemon.poll_all_once())["room"]
    assert outcome.detail == "bad_response: WEB_RequestCertificateAPI returned no acCSRFToken"


async def test_a_refused_login_costs_two_requests_per_poll_and_no_status_call(start_sim: Any,
                                                                             make_daemon: Any) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, password="Wrong-Password-42")])
    rt = daemon.runtime("room")
    for polls in (1, 2, 3):
        outcome = await rt.run_once()
        assert outcome.detail == f"auth: login rejected (WEB_RequestCertificateAPI) (vendor code {sim.ERROR_BAD_LOGIN['code']})"
        assert outcome.reason == "auth"
        # Session id once, then a certificate request per poll on that same session: a refused
        # login holds a slot on the device, so it is reused rather than a new one opened, and no
        # status call is tried with it.
        assert daemon.http.requests["room"] == 1 + polls
    assert app[sim.SIM_KEY].calls == 0
    assert len(app[sim.SIM_KEY].sessions) == 1


async def test_failed_polls_and_relogins_leak_no_session(start_sim: Any, make_daemon: Any) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    state = app[sim.SIM_KEY]
    await sim_knob(url, "endpoint", max_sessions=2)
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    assert (await rt.run_once()).ok
    await sim_knob(url, "endpoint", vendor_error=True)
    for _ in range(5):
        assert (await rt.run_once()).reason == "vendor_error"
        # Each failing poll logs in again (an expired session looks the same), after logging the
        # old session out: one session open, however many polls fail.
        assert len(state.sessions) == 1
    assert state.logouts == state.logins - 1 == 5
    await sim_knob(url, "endpoint", vendor_error=False, expire_sessions=True)
    assert (await rt.run_once()).ok, "an expired session's failed logout does not fail the poll"
    assert len(state.sessions) == 1
    await daemon.close()
    assert state.sessions == {}


async def test_a_device_with_every_slot_taken_is_reported_with_its_code(start_sim: Any, make_daemon: Any) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    await sim_knob(url, "endpoint", max_sessions=0)
    daemon = make_daemon([target(url)])
    outcome = (await daemon.poll_all_once())["room"]
    assert outcome.reason == "vendor_error"
    assert outcome.detail.startswith("vendor_error: WEB_RequestSessionIDAPI refused a session")
    assert str(sim.ERROR_SESSIONS_FULL["code"]) in outcome.detail
    await sim_knob(url, "endpoint", max_sessions=1)
    assert (await daemon.poll_all_once())["room"].ok


async def test_a_5xx_is_tried_once_more_within_the_poll(start_sim: Any, make_daemon: Any) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    assert (await rt.run_once()).ok
    before = daemon.http.requests["room"]
    await sim_faults(url, status=503, match=STATUS_CALL)
    assert (await rt.run_once()).reason == "http_5xx"
    assert daemon.http.requests["room"] - before == 2, "one status call and one retry, no login"


async def test_a_refused_logout_is_counted_and_the_login_goes_on(start_sim: Any, make_daemon: Any) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url)])
    rt = daemon.runtime("room")
    assert (await rt.run_once()).ok
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_endpoint_logins_total") == 1
    assert value(s, "monitord_endpoint_logout_failures_total") == 0
    await sim_faults(url, status=503, match="ActionID=WEB_LogoutAPI")
    await sim_knob(url, "endpoint", expire_sessions=True)
    assert (await rt.run_once()).ok, "a logout that fails does not fail the poll"
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_endpoint_logins_total") == 2
    assert value(s, "monitord_endpoint_logout_failures_total") == 1


async def test_session_slots_and_sessions_belong_to_one_device(start_sim: Any, make_daemon: Any) -> None:
    url, app = await start_sim(sim, scenario="fixed")
    await sim_knob(url, "endpoint", max_sessions=1)
    daemon = make_daemon([target(url, name="a"), target(f"{url}/d/other", name="b")])
    outcomes = await daemon.poll_all_once()
    assert all(o.ok for o in outcomes.values()), outcomes
    assert len(app[sim.SIM_KEY].sessions) == 2, "one slot on each device"
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/action.cgi?ActionID=WEB_RequestSessionIDAPI") as r:
            assert (await r.json())["error"]["code"] == sim.ERROR_SESSIONS_FULL["code"]
        sid, session = next((k, v) for k, v in app[sim.SIM_KEY].sessions.items() if v.device == "default")
        async with s.post(f"{url}/d/other/action.cgi?ActionID=WEB_GetMultiCallStatusInfoAPI",
                          json={"acCSRFToken": session.token}, headers={"Cookie": f"SessionID={sid}"}) as r:
            assert (await r.json())["error"]["code"] == sim.ERROR_SESSION_INVALID["code"], \
                "a session of one device is unknown to another"
