"""The AVD source against the AVD simulator over HTTP on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
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

from monitord import simulators
from monitord.config import parse
from monitord.simulators import avd as sim

GOLDEN = Path(__file__).parent / "golden" / "avd_fixed.prom"
ROOT = Path(__file__).parent.parent
# Self-metrics that change from run to run (durations, wall-clock times) are not golden.
MIB = 1024 * 1024


def target(url: str, name: str = "avd", **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": "avd", "url": url, "access_key": sim.DEFAULT_ACCESS_KEY,
            "secret_key": sim.DEFAULT_SECRET_KEY, "interval": "10s", "timeout": "3s", **extra}


async def knob(url: str, **body: Any) -> dict[str, Any]:
    return await sim_knob(url, "avd", **body)


async def faults(url: str, **body: Any) -> None:
    await sim_faults(url, **body)


def exposition(daemon: Any) -> str:
    return daemon.store.render().decode()


def series(daemon: Any) -> Any:
    return parse_exposition(exposition(daemon))


def labelled(s: Any, name: str, label: str) -> dict[str, float]:
    return {dict(ls)[label]: v for (n, ls), v in s.items() if n == name}


# ------------------------------------------------------------------------------ golden + vendor examples


async def test_golden_exposition_for_fixed_state(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    daemon = make_daemon([target(url, recording_rooms=["12345678980"],
                                 watched_records=[sim.EXAMPLE_RECORD_ID, "no-such-record"])], clock=clock)
    outcome = (await daemon.poll_all_once())["avd"]
    assert outcome.ok, outcome
    assert_golden(GOLDEN, exposition(daemon))


async def test_exposition_passes_promtool(start_sim, make_daemon, clock, tmp_path) -> None:
    url, _ = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url, recording_rooms=["12345678980", "10000000001"])], clock=clock)
    assert (await daemon.poll_all_once())["avd"].ok
    await assert_promtool_clean(daemon.store.render())


async def test_vendor_example_values_are_normalized_to_base_units(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    daemon = make_daemon([target(url, recording_rooms=["12345678980"])], clock=clock)
    assert (await daemon.poll_all_once())["avd"].ok
    s = series(daemon)
    room = {"room": "12345678980"}
    # "file_size": "20.547M" (the tms) + transcodes 0.234M, 16.367M, 9.947M, 8.407M, 0.234M;
    # a lone M is 2^20 bytes (normalize.size_bytes).
    assert value(s, "rtc_avd_recording_last_size_bytes", **room) == pytest.approx(20.547 * MIB)
    assert value(s, "rtc_avd_recording_storage_bytes", **room) == pytest.approx(
        (20.547 + 0.234 + 16.367 + 9.947 + 8.407 + 0.234) * MIB)
    assert value(s, "rtc_avd_recording_last_duration_seconds", **room) == 80.967
    assert value(s, "rtc_avd_recording_files", **room) == 5
    assert value(s, "rtc_avd_recordings", **room) == 1
    assert value(s, "rtc_avd_recording_last_end_timestamp_seconds", **room) == 1638324512
    assert labelled(s, "rtc_avd_window_platform_users", "platform") == {
        "ios": 3, "android": 5, "pc": 20, "web": 10, "box": 2, "other": 1}
    assert value(s, "rtc_avd_window_users") == 41
    assert value(s, "rtc_avd_window_meetings") == 12
    assert value(s, "rtc_avd_window_meeting_time_seconds") == 5400
    # The vendor example's first room predates server_id; the second sits on box1.
    assert labelled(s, "rtc_rooms", "server") == {"": 1, "box1": 1}
    assert value(s, "rtc_online_users", server="box1") == 2
    assert labelled(s, "rtc_avd_room_users", "room") == {"12345678980": 1, "10000000000": 2}
    assert value(s, "rtc_avd_room_created_timestamp_seconds", room="12345678980") == 1688697174
    # The vendor example's participant: web, camera published, microphone init; plus an iOS user with nothing on.
    assert labelled(s, "rtc_avd_participants", "client_type") == {
        "web": 2, "ios": 1, "pc": 0, "android": 0, "miniprogram": 0, "other": 0}
    assert value(s, "rtc_avd_participant_tracks", media="video", state="published") == 2
    assert value(s, "rtc_avd_participant_tracks", media="video", state="unpublished") == 1
    assert value(s, "rtc_avd_participant_tracks", media="audio", state="unpublished") == 3
    assert value(s, "rtc_avd_participant_tracks", media="audio", state="published") == 0
    assert value(s, "monitord_target_up", target="avd") == 1


async def test_statistic_window_slides_with_the_clock(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    state = app[sim.SIM_KEY]
    daemon = make_daemon([target(url, statistic_window="2h")], clock=clock)
    rt = daemon.runtime("avd")
    for _step in range(2):
        assert (await rt.run_once()).ok
        query = state.last_query["/room/get_statistic"]
        assert int(query["end_time"]) == int(clock())
        assert int(query["end_time"]) - int(query["start_time"]) == 7200
        assert value(series(daemon), "rtc_avd_statistic_window_seconds") == 7200
        clock.advance(600)


# ------------------------------------------------------------------------------------- token


async def test_token_is_reused_and_refreshed_once_when_expired(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, scenario="fixed", clock=clock)
    state = app[sim.SIM_KEY]
    await knob(url, token_ttl=600)
    daemon = make_daemon([target(url)], clock=clock)
    rt = daemon.runtime("avd")
    for _ in range(3):
        assert (await rt.run_once()).ok
    assert state.tokens_issued == 1, "the token must be reused across polls"
    clock.advance(601)
    assert (await rt.run_once()).ok, "an expired token costs a new token, not a failed poll"
    assert state.tokens_issued == 2
    await knob(url, expire_tokens=True)
    assert (await rt.run_once()).ok
    assert state.tokens_issued == 3
    assert value(series(daemon), "monitord_avd_token_fetches_total") == 3


async def test_token_error_in_code_convention_is_retried_exactly_once(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, scenario="fixed", clock=clock)
    state = app[sim.SIM_KEY]
    # One room list at a time: which rooms' calls were under way when the rejection ended the
    # poll would otherwise depend on timing.
    daemon = make_daemon([target(url, participant_concurrency=1)], clock=clock)
    rt = daemon.runtime("avd")
    assert (await rt.run_once()).ok
    calls_before = state.calls["/room/participate/list"]
    await knob(url, error={"path": "/room/participate/list", "code": 40003, "msg": "access token check invalid"},
               error_key="code")
    outcome = await rt.run_once()
    assert (outcome.ok, outcome.reason) == (False, "auth")
    assert "40003" in outcome.detail
    assert state.tokens_issued == 2, "one new token, one retry, then give up"
    assert state.calls["/room/participate/list"] == calls_before + 2
    await knob(url, error=None)
    assert (await rt.run_once()).ok


async def test_a_fresh_token_that_is_rejected_is_auth_without_a_loop(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, scenario="fixed", clock=clock)
    state = app[sim.SIM_KEY]
    await knob(url, token_ttl=-1)  # every token is expired on arrival
    daemon = make_daemon([target(url)], clock=clock)
    rt = daemon.runtime("avd")
    outcome = await rt.run_once()
    assert (outcome.ok, outcome.reason) == (False, "auth")
    # A rejected token is renewed once (it may have been revoked), then the server is believed.
    assert state.tokens_issued == 2
    assert (await rt.run_once()).reason == "auth"
    assert state.tokens_issued == 3, "one renewal per poll, never a loop"


async def test_wrong_secret_is_auth(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, scenario="fixed", clock=clock)
    daemon = make_daemon([target(url, secret_key="Wrong-Secret-Key-42")], clock=clock)
    outcome = (await daemon.poll_all_once())["avd"]
    assert (outcome.ok, outcome.reason) == (False, "auth")
    assert "40001" in outcome.detail
    assert app[sim.SIM_KEY].calls == {}, "no API call without a token"
    s = series(daemon)
    assert value(s, "monitord_poll_errors_total", reason="auth") == 1
    assert value(s, "rtc_rooms", server="box1") is None


async def test_secret_and_token_never_leak(start_sim, make_daemon, clock, captured_logs, monkeypatch) -> None:
    """Across success and every failure path: not in logs, metrics or failure details. The
    secret comes from the environment, so the log scrubber knows it; the test still looks at
    the unscrubbed failure details, where only the source's own care keeps it out."""
    secret = "Leak-Canary-Secret-8c1d"
    url, app = await start_sim(sim, scenario="fixed", clock=clock, secret_key=secret)
    state = app[sim.SIM_KEY]
    monkeypatch.setenv("AVD_TEST_SECRET", secret)
    entry = target(url, recording_rooms=["12345678980"])
    del entry["secret_key"]
    daemon = make_daemon([{**entry, "secret_key_env": "AVD_TEST_SECRET"}], clock=clock)
    rt = daemon.runtime("avd")
    details: list[str] = []
    texts: list[str] = []
    tokens: set[str] = set()

    async def poll() -> None:
        outcome = await rt.run_once()
        details.append(outcome.detail)
        texts.append(exposition(daemon))
        tokens.update(state.tokens)

    await poll()
    assert rt.last is not None and rt.last.ok
    for path in ("/room/list", "/media_server/user_count", "/room/get_statistic", "/room/participate/list",
                 "/room/mix_record/get"):
        for key, code in (("ret", 41002), ("code", 41001)):
            # A server that echoes the token and the secret in its msg.
            await knob(url, error={"path": path, key: code, "msg": f"bad {sorted(state.tokens)} {secret}"},
                       error_key=key)
            clock.advance(301)  # recordings are due again
            await poll()
            await knob(url, error=None)
            await poll()  # recovering in between makes the daemon log every failure
    await knob(url, error={"path": "/room/list", "ret": 40003, "msg": f"invalid token {sorted(state.tokens)}"},
               error_key="ret")
    await poll()
    await knob(url, error=None, no_media_server=True, ghost_room=True)  # states, not failures
    await poll()
    await knob(url, no_media_server=False, ghost_room=False, patch={"/room/list": {"rooms": "x"}})
    await poll()
    await knob(url, patch={}, error={"path": "/room/get_statistic", "ret": 40004, "msg": "no such room_id"})
    await poll()
    await knob(url, error=None)
    for fault in ({"status": 503}, {"html": True}, {"garbage": True}, {"truncated": True}, {"status": 401}):
        await faults(url, **fault)
        await poll()
        await faults(url)
    await poll()
    await daemon.close()
    state.secret_key = "something-else"  # the next token request fails: a failure path of its own
    daemon2 = make_daemon([{**entry, "secret_key_env": "AVD_TEST_SECRET"}], clock=clock)
    outcome = (await daemon2.poll_all_once())["avd"]
    details.append(outcome.detail)
    texts.append(exposition(daemon2))

    assert len(tokens) >= 2 and all(len(t) > 8 for t in tokens)
    assert sum(1 for d in details if d) == 19, "every failure path must actually have failed"
    failing = [e for e in log_events(captured_logs) if e["event"] == "target_failing"]
    assert len(failing) >= 12, "the failures must have reached the log"
    haystacks = [*details, *texts, captured_logs.getvalue()]
    for needle in (secret, *tokens):
        where = [i for i, h in enumerate(haystacks) if needle in h]
        assert not where, f"leaked {needle[:4]}… in {[haystacks[i][:160] for i in where]}"
    assert any("<redacted>" in d for d in details), "the vendor msg is quoted, scrubbed"


async def test_odd_vendor_values_are_absent_or_counted_never_zero(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    stat = {"ios_cnt": "many", "user_cnt": "--", "android_cnt": None, "andronid_cnt": 7, "time_total": "90min",
            "meeting_total": -3}
    await knob(url, patch={"/room/get_statistic": stat,
                           "/media_server/user_count": {"server_user_count": [
                               {"server_id": "box1", "user_count": "lots"}, {"user_count": 3}]}})
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["avd"].ok
    s = series(daemon)
    assert value(s, "rtc_avd_window_platform_users", platform="ios") is None
    assert value(s, "rtc_avd_window_users") is None, '"--" is no value, not 0'
    assert value(s, "rtc_avd_window_meetings") is None, "a negative count is a vendor bug, not data"
    assert value(s, "rtc_avd_window_platform_users", platform="android") == 7, "the vendor's andronid_cnt spelling"
    assert value(s, "rtc_avd_window_meeting_time_seconds") == 5400
    assert value(s, "rtc_avd_window_platform_users", platform="pc") == 20
    assert value(s, "rtc_online_users", server="box1") is None
    assert value(s, "rtc_avd_media_server_online", server="box1") == 1, "listed is online, count or not"
    errors = {f: n for f, n in labelled(s, "monitord_parse_errors_total", "field").items() if n}
    assert errors == {"ios_cnt": 1, "meeting_total": 1, "server_user_count[].user_count": 1,
                      "server_user_count[].server_id": 1}


@pytest.mark.parametrize(
    ("path", "patch"),
    [
        ("/room/list", {"rooms": "two"}),
        ("/media_server/user_count", {"server_user_count": {"server_id": "box1"}}),
        ("/room/participate/list", {"participates": 3}),
        ("/room/list", {"ret": "zero"}),
        ("/room/mix_record/get", {"data": "none"}),
    ],
)
async def test_answers_of_the_wrong_shape_are_bad_response(start_sim, make_daemon, clock, path, patch) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    await knob(url, patch={path: patch})
    daemon = make_daemon([target(url, recording_rooms=["12345678980"])], clock=clock)
    outcome = (await daemon.poll_all_once())["avd"]
    assert (outcome.ok, outcome.reason) == (False, "bad_response"), outcome


# -------------------------------------------------------------------------- error conventions


@pytest.mark.parametrize(
    ("path", "key", "code", "reason"),
    [
        ("/room/list", "ret", 41002, "vendor_error"),      # "mysql error"
        ("/room/list", "code", 41001, "vendor_error"),     # "redis error", other convention
        ("/room/get_statistic", "ret", 40004, "not_found"),
        ("/room/get_statistic", "code", 40002, "vendor_error"),
        ("/media_server/user_count", "ret", 41003, "vendor_error"),
        ("/room/list", "ret", 40001, "auth"),
        ("/room/mix_record/get", "code", 41005, "vendor_error"),
    ],
)
async def test_vendor_errors_in_both_conventions_map_to_reasons(start_sim, make_daemon, clock, captured_logs,
                                                                path, key, code, reason) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    await knob(url, error={"path": path, key: code, "msg": "simulated trouble"}, error_key=key)
    daemon = make_daemon([target(url, recording_rooms=["12345678980"])], clock=clock)
    outcome = (await daemon.poll_all_once())["avd"]
    assert (outcome.ok, outcome.reason) == (False, reason)
    assert str(code) in outcome.detail and "simulated trouble" in outcome.detail
    assert path.lstrip("/") in outcome.detail
    failing = [e for e in log_events(captured_logs) if e["event"] == "target_failing"]
    assert len(failing) == 1 and str(code) in failing[0]["detail"]
    s = series(daemon)
    assert value(s, "monitord_target_up") == 0
    assert not any(n.startswith("rtc_") for n, _ in s), "a failed target's data is dropped"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [*TRANSPORT_FAULTS, ({"status": 401}, "auth")],
)
async def test_transport_faults_cost_one_poll_then_recover(start_sim, make_daemon, clock, fault, reason) -> None:
    url, _ = await start_sim(sim, scenario="fixed", clock=clock)
    daemon = make_daemon([target(url, timeout="1s")], clock=clock)
    rt = daemon.runtime("avd")
    assert (await rt.run_once()).ok
    await faults(url, **fault, match="/room/list")
    outcome = await rt.run_once()
    assert (outcome.ok, outcome.reason) == (False, reason)
    assert value(series(daemon), "rtc_avd_users_in_rooms") is None
    await faults(url)
    assert (await rt.run_once()).ok
    assert value(series(daemon), "rtc_avd_users_in_rooms") == 3


async def test_connection_refused_is_connect(make_daemon) -> None:
    daemon = make_daemon([target("http://127.0.0.1:9", timeout="2s")])
    assert (await daemon.poll_all_once())["avd"].reason == "connect"


# ----------------------------------------------------------------------------- media servers


async def test_media_server_that_drops_out_is_visible_and_remembered(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, outages=False)
    entry = target(url)
    daemon = make_daemon([entry], clock=clock)
    rt = daemon.runtime("avd")
    assert (await rt.run_once()).ok
    s = series(daemon)
    assert labelled(s, "rtc_avd_media_server_online", "server") == {"box1": 1, "box2": 1, "box3": 1}
    assert value(s, "rtc_avd_media_servers_online") == 3
    seen_at = clock()

    clock.advance(60)
    await knob(url, offline_servers=["box2"])
    assert (await rt.run_once()).ok
    s = series(daemon)
    assert labelled(s, "rtc_avd_media_server_online", "server") == {"box1": 1, "box2": 0, "box3": 1}
    assert value(s, "rtc_avd_media_servers_online") == 2
    assert value(s, "rtc_online_users", server="box2") is None, "no user count for an offline server"
    assert value(s, "rtc_avd_media_server_last_seen_timestamp_seconds", server="box2") == seen_at
    assert value(s, "rtc_avd_media_server_last_seen_timestamp_seconds", server="box1") == clock()

    # "have no media server is online" is a state of every known server, not a failed poll.
    await knob(url, offline_servers=[], no_media_server=True)
    assert (await rt.run_once()).ok
    s = series(daemon)
    assert labelled(s, "rtc_avd_media_server_online", "server") == {"box1": 0, "box2": 0, "box3": 0}
    assert value(s, "rtc_avd_media_servers_online") == 0
    assert value(s, "monitord_target_up") == 1
    assert not labelled(s, "rtc_online_users", "server")

    # A restarted daemon remembers the servers through the state store.
    await daemon.close()
    daemon2 = make_daemon([entry], clock=clock)
    assert (await daemon2.poll_all_once())["avd"].ok
    assert labelled(series(daemon2), "rtc_avd_media_server_online", "server") == {
        "box1": 0, "box2": 0, "box3": 0}


async def test_missing_media_servers_are_forgotten_after_the_configured_time(start_sim, make_daemon,
                                                                             clock) -> None:
    url, _ = await start_sim(sim, clock=clock, outages=False)
    daemon = make_daemon([target(url, media_server_forget_after="1h")], clock=clock)
    rt = daemon.runtime("avd")
    assert (await rt.run_once()).ok
    await knob(url, offline_servers=["box3"])
    clock.advance(3599)
    assert (await rt.run_once()).ok
    assert value(series(daemon), "rtc_avd_media_server_online", server="box3") == 0
    clock.advance(2)
    assert (await rt.run_once()).ok
    assert labelled(series(daemon), "rtc_avd_media_server_online", "server") == {"box1": 1, "box2": 1}


async def test_live_timeline_takes_a_media_server_offline_and_back(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url)], clock=clock)
    rt = daemon.runtime("avd")
    states = []
    for _ in range(25):
        clock.advance(30)
        assert (await rt.run_once()).ok
        states.append(value(series(daemon), "rtc_avd_media_server_online", server=sim.OUTAGE_SERVER))
    assert 0 in states and states[-1] == 1 and states.index(0) > 0, states


# ------------------------------------------------------------------------------------ rooms


async def test_rooms_come_and_go_with_the_simulator(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    state = app[sim.SIM_KEY]
    daemon = make_daemon([target(url)], clock=clock)
    rt = daemon.runtime("avd")
    seen: set[frozenset[str]] = set()
    for _ in range(12):
        clock.advance(120)
        assert (await rt.run_once()).ok
        s = series(daemon)
        rooms = state.rooms()
        expected = {r.room_id: len(r.users) for r in rooms}
        assert labelled(s, "rtc_avd_room_users", "room") == expected
        assert sum(labelled(s, "rtc_rooms", "server").values()) == len(rooms)
        assert value(s, "rtc_avd_users_in_rooms") == sum(expected.values())
        assert sum(labelled(s, "rtc_online_users", "server").values()) == sum(expected.values())
        seen.add(frozenset(expected))
    assert len(seen) > 3, "the timeline should open and close rooms"


async def test_room_series_are_capped_with_an_overflow_count(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    await knob(url, room_count=30)
    rooms = app[sim.SIM_KEY].rooms()
    assert len(rooms) > 5
    daemon = make_daemon([target(url, max_room_series=3)], clock=clock)
    assert (await daemon.poll_all_once())["avd"].ok
    s = series(daemon)
    exported = labelled(s, "rtc_avd_room_users", "room")
    biggest = sorted(rooms, key=lambda r: (-len(r.users), r.room_id))[:3]
    assert exported == {r.room_id: len(r.users) for r in biggest}
    assert value(s, "monitord_avd_room_series_overflow") == len(rooms) - 3
    assert sum(labelled(s, "rtc_rooms", "server").values()) == len(rooms), "totals are not capped"


# ----------------------------------------------------------------------------- participants


async def test_participant_lists_rotate_through_rooms_within_the_bound(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    state = app[sim.SIM_KEY]
    await knob(url, room_count=30)
    rooms = sorted(r.room_id for r in state.rooms())
    assert len(rooms) > 6
    daemon = make_daemon([target(url, participant_rooms_per_poll=3)], clock=clock)
    rt = daemon.runtime("avd")
    polls = -(-len(rooms) // 3)
    for _n in range(polls):
        before = len(state.participant_queries)
        assert (await rt.run_once()).ok
        assert len(state.participant_queries) - before == 3
        s = series(daemon)
        assert value(s, "monitord_avd_participant_rooms_queried") == 3
        assert value(s, "monitord_avd_participant_rooms_skipped") == len(rooms) - 3
    assert set(state.participant_queries) == set(rooms), "every room is read within one rotation"
    # All rooms have been read: the aggregate covers every user in every room.
    s = series(daemon)
    total_users = sum(len(r.users) for r in state.rooms())
    assert sum(labelled(s, "rtc_avd_participants", "client_type").values()) == total_users
    expected_tracks: dict[tuple[str, str], int] = {}
    for room in state.rooms():
        for person in state.participants(room):
            for media, key in (("video", "videos"), ("audio", "audios")):
                for item in person[key]:
                    st = "published" if item["status"] == "published" else "unpublished"
                    expected_tracks[(media, st)] = expected_tracks.get((media, st), 0) + 1
    for (media, st), count in expected_tracks.items():
        assert value(s, "rtc_avd_participant_tracks", media=media, state=st) == count


async def test_a_room_that_closed_since_room_list_is_skipped_not_a_failure(start_sim, make_daemon,
                                                                           clock) -> None:
    url, app = await start_sim(sim, scenario="fixed", clock=clock)
    await knob(url, ghost_room=True)
    daemon = make_daemon([target(url)], clock=clock)
    assert (await daemon.poll_all_once())["avd"].ok
    assert sim.GHOST_ROOM_ID in app[sim.SIM_KEY].participant_queries
    s = series(daemon)
    assert value(s, "monitord_avd_participant_rooms_queried") == 3
    assert sum(labelled(s, "rtc_avd_participants", "client_type").values()) == 3, "the ghost's user is not counted"


async def test_participant_reading_can_be_switched_off(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, scenario="fixed", clock=clock)
    daemon = make_daemon([target(url, participant_rooms_per_poll=0)], clock=clock)
    assert (await daemon.poll_all_once())["avd"].ok
    assert app[sim.SIM_KEY].participant_queries == []
    assert not labelled(series(daemon), "rtc_avd_participants", "client_type")


# ------------------------------------------------------------------------------- recordings


async def test_recordings_are_read_at_their_own_interval(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock)
    state = app[sim.SIM_KEY]
    rooms = ["12345678980", "10000000001", "10000000002", "99"]
    daemon = make_daemon([target(url, recording_rooms=rooms, recording_interval="5m")], clock=clock)
    rt = daemon.runtime("avd")
    assert (await rt.run_once()).ok
    assert state.calls["/room/mix_record/get"] == 4
    s = series(daemon)
    assert labelled(s, "rtc_avd_recording_room_exists", "room") == {
        "12345678980": 1, "10000000001": 1, "10000000002": 1, "99": 0}
    assert value(s, "rtc_avd_recordings", room="10000000002") == 0, "no such record: zero recordings"
    assert value(s, "rtc_avd_recordings", room="99") is None
    expected = state.recordings("10000000001")
    assert value(s, "rtc_avd_recordings", room="10000000001") == len(expected)
    clock.advance(299)
    assert (await rt.run_once()).ok
    assert state.calls["/room/mix_record/get"] == 4, "cached between reads"
    assert value(series(daemon), "rtc_avd_recordings", room="10000000001") == len(expected)
    clock.advance(1)
    assert (await rt.run_once()).ok
    assert state.calls["/room/mix_record/get"] == 8


# ------------------------------------------------------------------------ simulator contract


async def test_simulator_requires_a_valid_token_in_query_or_form(start_sim) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    api = f"{url}{sim.PREFIX}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{api}/room/list") as r:
            assert (await r.json())["ret"] == 40002
        async with s.get(f"{api}/room/list", params={"token": "guess"}) as r:
            assert (await r.json()) == sim.ERR_TOKEN
        async with s.get(f"{api}/room/participate/list", params={"token": "guess", "room_id": "1"}) as r:
            assert (await r.json())["code"] == 40003, "participate/list speaks code/msg"
        async with s.post(f"{api}/app/get_token", data={"access_key": sim.DEFAULT_ACCESS_KEY,
                                                         "secret_key": "nope"}) as r:
            assert (await r.json()) == sim.ERR_AUTH
        async with s.post(f"{api}/app/get_token", data={"access_key": sim.DEFAULT_ACCESS_KEY,
                                                         "secret_key": sim.DEFAULT_SECRET_KEY}) as r:
            token = (await r.json())["token"]
        async with s.post(f"{api}/room/list", data={"token": token}) as r:
            assert (await r.json())["ret"] == 0


# ------------------------------------------------------------------------------------- demo


async def test_demo_includes_the_avd_server_and_it_polls(make_daemon) -> None:
    running = await simulators.start(base_port=0)
    try:
        config = simulators.demo_config(running.urls)
        entries = [t for t in config["targets"] if t["source"] == "avd"]
        assert entries and parse(config).targets
        daemon = make_daemon(entries)
        outcomes = await daemon.poll_all_once()
        assert all(o.ok for o in outcomes.values()), outcomes
        assert labelled(series(daemon), "rtc_avd_media_server_online", "server")
    finally:
        await running.close()


def test_catalog_lists_the_avd_metrics() -> None:
    out = subprocess.run([sys.executable, "-m", "monitord", "catalog"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    for name in ("rtc_avd_media_server_online", "rtc_avd_recording_storage_bytes", "rtc_avd_participant_tracks"):
        assert name in out.stdout
