"""AVD licence capacity, SIP gateways and watched recordings, against the AVD simulator over HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from helpers import parse_exposition, sim_knob, value

from monitord.simulators import avd as sim


def target(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "avd", "source": "avd", "url": url, "access_key": sim.DEFAULT_ACCESS_KEY,
            "secret_key": sim.DEFAULT_SECRET_KEY, "interval": "10s", "timeout": "3s",
            "participant_rooms_per_poll": 0, **extra}


async def knob(url: str, **body: Any) -> dict[str, Any]:
    return await sim_knob(url, "avd", **body)


async def poll(daemon: Any) -> tuple[Any, Any]:
    outcome = (await daemon.poll_all_once())["avd"]
    return outcome, parse_exposition(daemon.store.render().decode())


def parse_errors(s: Any) -> dict[str, float]:
    return {dict(ls)["field"]: v for (n, ls), v in s.items() if n == "monitord_parse_errors_total" and v}


async def test_licence_capacity_is_licensed_vs_active_users(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    daemon = make_daemon([target(url)], clock=clock)
    outcome, s = await poll(daemon)
    assert outcome.ok, outcome
    # The vendor's example answer: 3 active users of 500.
    assert value(s, "rtc_avd_licence_users_max") == 500
    assert value(s, "rtc_avd_licence_users_active") == 3
    await knob(url, max_users=4, patch={"/app/get_licence_info": {"active_usernum": "--"}})
    outcome, s = await poll(daemon)
    assert value(s, "rtc_avd_licence_users_max") == 4
    assert value(s, "rtc_avd_licence_users_active") is None, '"--" is no value, not 0'


@pytest.mark.parametrize("code", [40070, 40071, 40072])
async def test_a_server_without_licence_data_has_no_licence_series(start_sim, make_daemon, clock, code) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    await knob(url, licence_error=code)
    daemon = make_daemon([target(url)], clock=clock)
    outcome, s = await poll(daemon)
    assert outcome.ok, outcome
    assert value(s, "rtc_avd_licence_users_max") is None
    assert value(s, "rtc_avd_licence_users_active") is None
    assert value(s, "rtc_avd_sip_gateways") == 2, "the rest of the poll stands"


async def test_licence_service_not_available_is_a_vendor_error(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    await knob(url, licence_error=40073)
    daemon = make_daemon([target(url)], clock=clock)
    outcome, _ = await poll(daemon)
    assert outcome.reason == "vendor_error"
    assert "40073" in outcome.detail and "app/get_licence_info" in outcome.detail


async def test_sip_gateways_up_and_down(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    daemon = make_daemon([target(url)], clock=clock)
    outcome, s = await poll(daemon)
    assert outcome.ok, outcome
    # The vendor's example list: gateway 2 with status "1", gateway 3 with "0".
    assert value(s, "rtc_avd_sip_gateways") == 2
    assert value(s, "rtc_avd_sip_gateway_up", gateway="2", gateway_name="11123") == 1
    assert value(s, "rtc_avd_sip_gateway_up", gateway="3", gateway_name="1234") == 0
    await knob(url, sip_gates=[{"id": 2, "name": "11123", "status": "1", "url": "x"},
                               {"id": 3, "name": "1234", "status": "1", "url": "y"}])
    _, s = await poll(daemon)
    assert value(s, "rtc_avd_sip_gateway_up", gateway="3") == 1


async def test_no_sip_gate_set_is_zero_gateways(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    await knob(url, sip_gates=[])
    daemon = make_daemon([target(url)], clock=clock)
    outcome, s = await poll(daemon)
    assert outcome.ok, outcome
    assert value(s, "rtc_avd_sip_gateways") == 0
    assert not [n for n, _ in s if n == "rtc_avd_sip_gateway_up"]


async def test_gateway_status_outside_the_configured_values_is_a_parse_error(start_sim, make_daemon,
                                                                            clock) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    await knob(url, sip_gates=[{"id": 1, "name": "a", "status": "2", "url": "x"},
                               {"id": 2, "name": "b", "url": "y"},  # a server from before the field
                               {"name": "c", "status": "1"}, "junk"])
    daemon = make_daemon([target(url)], clock=clock)
    outcome, s = await poll(daemon)
    assert outcome.ok, outcome
    assert not [n for n, _ in s if n == "rtc_avd_sip_gateway_up"], "no guess: no series"
    assert parse_errors(s) == {"sip_gates[].status": 1, "sip_gates[].id": 1, "sip_gates[]": 1}
    daemon2 = make_daemon([target(url, sip_gateway_up_values=["1", "2"])], clock=clock)
    _, s = await poll(daemon2)
    assert value(s, "rtc_avd_sip_gateway_up", gateway="1") == 1


async def test_watched_recordings_report_their_state(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="live", clock=clock)
    daemon = make_daemon([target(url, watched_records=[sim.LIVE_RECORD_ID, sim.EXAMPLE_RECORD_ID, "nope"])],
                         clock=clock)
    outcome, s = await poll(daemon)
    assert outcome.ok, outcome
    assert value(s, "rtc_avd_record_status", record=sim.LIVE_RECORD_ID, rtc_avd_record_status="recording") == 1
    assert value(s, "rtc_avd_record_status", record=sim.LIVE_RECORD_ID, rtc_avd_record_status="stopped") == 0
    assert value(s, "rtc_avd_record_status", record=sim.EXAMPLE_RECORD_ID, rtc_avd_record_status="stopped") == 1
    assert value(s, "rtc_avd_record_known", record="nope") == 0, "40090: the id is unknown, the poll is fine"
    assert value(s, "rtc_avd_record_status", record="nope", rtc_avd_record_status="stopped") is None
    await knob(url, record_status={sim.LIVE_RECORD_ID: 4})
    _, s = await poll(daemon)
    assert value(s, "rtc_avd_record_status", record=sim.LIVE_RECORD_ID, rtc_avd_record_status="stopped") == 1
    await knob(url, record_status={sim.LIVE_RECORD_ID: 9})
    _, s = await poll(daemon)
    assert value(s, "rtc_avd_record_status", record=sim.LIVE_RECORD_ID, rtc_avd_record_status="stopped") is None
    assert value(s, "rtc_avd_record_known", record=sim.LIVE_RECORD_ID) == 1
    assert parse_errors(s) == {"record_status": 1}


async def test_a_code_read_another_way_is_configurable(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="live", clock=clock)
    await knob(url, record_status={sim.LIVE_RECORD_ID: 3})
    states = {0: "not_started", 1: "preparing", 2: "recording", 3: "failed", 4: "stopped"}
    daemon = make_daemon([target(url, watched_records=[sim.LIVE_RECORD_ID], record_states=states)], clock=clock)
    outcome, s = await poll(daemon)
    assert outcome.ok, outcome
    assert value(s, "rtc_avd_record_status", record=sim.LIVE_RECORD_ID, rtc_avd_record_status="failed") == 1
    assert value(s, "rtc_avd_record_status", record=sim.LIVE_RECORD_ID, rtc_avd_record_status="paused") is None


async def test_the_new_calls_renew_a_rejected_token_once(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, scenario="fixed", clock=clock)
    state = app[sim.SIM_KEY]
    daemon = make_daemon([target(url, watched_records=[sim.EXAMPLE_RECORD_ID])], clock=clock)
    assert (await poll(daemon))[0].ok
    await knob(url, expire_tokens=True)
    outcome, s = await poll(daemon)
    assert outcome.ok, outcome
    assert state.tokens_issued == 2
    assert value(s, "rtc_avd_record_known", record=sim.EXAMPLE_RECORD_ID) == 1


async def test_licence_and_sip_calls_can_be_switched_off(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, scenario="fixed", clock=clock)
    daemon = make_daemon([target(url, licence_info=False, sip_gateways=False)], clock=clock)
    outcome, s = await poll(daemon)
    assert outcome.ok, outcome
    calls = app[sim.SIM_KEY].calls
    assert calls["/app/get_licence_info"] == calls["/sip/gate/list"] == calls["/room/record/status"] == 0
    assert value(s, "rtc_avd_sip_gateways") is None


async def test_simulator_answers_record_status_errors_like_the_vendor(start_sim) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    base = f"{url}{sim.PREFIX}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/app/get_token", params={"access_key": sim.DEFAULT_ACCESS_KEY,
                                                          "secret_key": sim.DEFAULT_SECRET_KEY}) as r:
            token = (await r.json())["token"]
        async with s.get(f"{base}/room/record/status", params={"token": token}) as r:
            assert await r.json() == sim.ERR_ARGS
        async with s.get(f"{base}/room/record/status", params={"token": token, "record_id": "x"}) as r:
            assert await r.json() == {"ret": 40090, "msg": "no such record_id"}
        async with s.get(f"{base}/room/record/status", params={"token": "stale", "record_id": "x"}) as r:
            assert (await r.json())["ret"] == 40003


async def test_one_rooms_failure_is_counted_and_the_poll_goes_on(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    await knob(url, room_errors={"10000000000": {"code": 41002, "msg": "mysql error"}})
    daemon = make_daemon([target(url, participant_rooms_per_poll=20)], clock=clock)
    outcome, s = await poll(daemon)
    assert outcome.ok, outcome
    assert value(s, "monitord_avd_participant_room_errors_total", reason="vendor_error") == 1
    assert value(s, "monitord_avd_participant_room_errors_total", reason="bad_response") == 0
    # Only the other room's participant (the vendor example's web user) is counted.
    assert value(s, "rtc_avd_participants", client_type="web") == 1
    assert value(s, "rtc_avd_participants", client_type="ios") == 0


async def test_every_room_failing_fails_the_poll(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    error = {"code": 41002, "msg": "mysql error"}
    await knob(url, room_errors={"10000000000": error, "12345678980": error})
    daemon = make_daemon([target(url, participant_rooms_per_poll=20)], clock=clock)
    outcome, _ = await poll(daemon)
    assert outcome.reason == "vendor_error"
    assert "every room failed" in outcome.detail and "41002" in outcome.detail


async def test_targets_of_one_server_and_key_share_one_token(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, scenario="fixed", clock=clock)
    daemon = make_daemon([{**target(url), "name": "avd-a"}, {**target(url), "name": "avd-b"}], clock=clock)
    outcomes = await daemon.poll_all_once()
    assert all(o.ok for o in outcomes.values()), outcomes
    assert app[sim.SIM_KEY].tokens_issued == 1, "the daemon-scoped cache serves both targets"
    await knob(url, expire_tokens=True)
    outcomes = await daemon.poll_all_once()
    assert all(o.ok for o in outcomes.values()), outcomes
    assert app[sim.SIM_KEY].tokens_issued == 2, "one renewal serves both"
