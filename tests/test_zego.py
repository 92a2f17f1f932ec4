"""The Zego source against the Zego simulator over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_golden, assert_promtool_clean, log_events, parse_exposition, sim_faults, sim_knob, value

from monitord.config import ConfigError, parse
from monitord.simulators import zego as sim
from monitord.simulators.base import Clock
from monitord.sources import zego as source
from monitord.vendor import SharedConflict

GOLDEN = Path(__file__).parent / "golden" / "zego_fixed.prom"
FIXED_IDS = ["X3CgNeE4I1qAAABN", "Rec2SingleStream", "Rec3AbnormalEnd0", "Rec4NoPublisher0", "Rec5PausedTask00"]
T0 = 1_790_000_000.0


def target(url: str, name: str = "rec", **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": "zego", "url": url, "app_id": sim.DEFAULT_APP_ID,
            "server_secret": sim.DEFAULT_SECRET, "interval": "10s", "timeout": "5s", **extra}


async def knob(url: str, **body: Any) -> dict[str, Any]:
    return await sim_knob(url, "zego", **body)


async def faults(url: str, **body: Any) -> None:
    await sim_faults(url, **body)


def exposition(daemon: Any) -> dict[Any, float]:
    return parse_exposition(daemon.store.render().decode())


def tasks_with_series(series: dict[Any, float]) -> set[str]:
    return {dict(ls)["task"] for n, ls in series if n.startswith("rtc_recording_task") and "task" in dict(ls)}


async def test_golden_exposition_for_fixed_state(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, task_ids=FIXED_IDS)], clock=clock)
    outcome = (await daemon.poll_all_once())["rec"]
    assert outcome.ok, outcome
    assert_golden(GOLDEN, daemon.store.render().decode())


async def test_seed_values_are_normalized_to_base_units(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, task_ids=FIXED_IDS)], clock=clock)
    assert (await daemon.poll_all_once())["rec"].ok
    s = exposition(daemon)
    seed = {"task": "X3CgNeE4I1qAAABN"}
    assert value(s, "rtc_recording_task_files_bytes", **seed) == 432_643_544
    assert value(s, "rtc_recording_task_files_duration_seconds", **seed) == 33.874
    assert value(s, "rtc_recording_task_begin_timestamp_seconds", **seed) == T0 - 3600 + 0.099
    assert value(s, "rtc_recording_task_end_timestamp_seconds", **seed) == T0 - 3600 + 56.795
    assert value(s, "rtc_recording_task_status", rtc_recording_task_status="ended", **seed) == 1
    assert value(s, "rtc_recording_task_status", rtc_recording_task_status="recording", **seed) == 0
    assert value(s, "rtc_recording_task_files", status="uploaded", **seed) == 1
    assert value(s, "rtc_recording_task_info", room="xxxx", record_mode="mixed", stream_type="audio_video",
                 **seed) == 1
    failed = {"task": "Rec3AbnormalEnd0"}
    assert value(s, "rtc_recording_task_status", rtc_recording_task_status="ended_abnormally", **failed) == 1
    assert value(s, "rtc_recording_task_files", status="upload_failed", **failed) == 1
    assert value(s, "rtc_recording_task_files", status="uploaded_backup", **failed) == 1
    running = {"task": "Rec2SingleStream"}
    assert value(s, "rtc_recording_task_end_timestamp_seconds", **running) is None, "0 means not ended: absent"
    assert value(s, "rtc_recording_task_files_duration_seconds", **running) == 899.5
    nobody = {"task": "Rec4NoPublisher0"}
    assert value(s, "rtc_recording_task_files", status="uploaded", **nobody) == 0, "no RecordFiles: zero files"
    assert value(s, "monitord_zego_tasks_watched", origin="config") == 5


async def test_promtool_accepts_the_exposition(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, task_ids=FIXED_IDS)], clock=clock)
    assert (await daemon.poll_all_once())["rec"].ok
    await assert_promtool_clean(daemon.store.render())


async def test_openmetrics_exposition_parses_with_stateset_and_info(start_sim, make_daemon, clock) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    from monitord.snapshot import OPENMETRICS

    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, task_ids=FIXED_IDS)], clock=clock)
    assert (await daemon.poll_all_once())["rec"].ok
    families = {f.name: f for f in text_string_to_metric_families(daemon.store.render(OPENMETRICS).decode())}
    status = families["rtc_recording_task_status"]
    assert status.type == "stateset"
    current = {s.labels["task"]: s.labels["rtc_recording_task_status"] for s in status.samples if s.value == 1}
    assert current == {"X3CgNeE4I1qAAABN": "ended", "Rec2SingleStream": "recording",
                       "Rec3AbnormalEnd0": "ended_abnormally", "Rec4NoPublisher0": "ended",
                       "Rec5PausedTask00": "paused"}
    assert families["rtc_recording_task"].type == "info"
    assert families["rtc_recording_task_begin_timestamp_seconds"].unit == "timestamp_seconds"


async def test_ended_task_stays_for_the_terminal_hold_then_leaves_for_good(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="fixed")
    state = app[sim.SIM_KEY]
    daemon = make_daemon([target(url, task_ids=FIXED_IDS)], clock=clock)
    assert (await daemon.poll_all_once())["rec"].ok
    assert tasks_with_series(exposition(daemon)) == set(FIXED_IDS)
    # Ended tasks stay visible long enough to be scraped, evaluated and grouped (15 min default).
    clock.advance(899)
    assert (await daemon.poll_all_once())["rec"].ok
    assert tasks_with_series(exposition(daemon)) == set(FIXED_IDS)
    clock.advance(1)
    before = state.requests
    assert (await daemon.poll_all_once())["rec"].ok
    s = exposition(daemon)
    assert tasks_with_series(s) == {"Rec2SingleStream", "Rec5PausedTask00"}
    assert state.requests - before == 2, "ended tasks are not queried again"
    assert value(s, "monitord_zego_tasks_removed_total", reason="ended") == 3
    assert value(s, "monitord_zego_tasks_watched", origin="config") == 2
    await daemon.close()
    # A restart on the same state_dir keeps them retired although they are still configured.
    again = make_daemon([target(url, task_ids=FIXED_IDS)], clock=clock)
    before = state.requests
    assert (await again.poll_all_once())["rec"].ok
    assert state.requests - before == 2
    assert tasks_with_series(exposition(again)) == {"Rec2SingleStream", "Rec5PausedTask00"}


async def test_task_moving_through_states_and_file_upload_failing(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    task = (await knob(url, create={"task_id": "MovingTask000001", "files": 2, "started_ago": 30}))["created"]
    daemon = make_daemon([target(url, task_ids=[task])], clock=clock)
    rt = daemon.runtime("rec")
    assert (await rt.run_once()).ok
    s = exposition(daemon)
    assert value(s, "rtc_recording_task_status", rtc_recording_task_status="recording") == 1
    assert value(s, "rtc_recording_task_files", status="recording") == 2
    first_duration = value(s, "rtc_recording_task_files_duration_seconds")
    clock.advance(60)
    assert (await rt.run_once()).ok
    s = exposition(daemon)
    assert value(s, "rtc_recording_task_files_duration_seconds") == first_duration + 120, "two files grew 60 s"
    await knob(url, task=task, status="paused")
    assert (await rt.run_once()).ok
    assert value(exposition(daemon), "rtc_recording_task_status", rtc_recording_task_status="paused") == 1
    await knob(url, task=task, status="ended")
    await knob(url, task=task, file_status="upload_failed", file=1)
    assert (await rt.run_once()).ok
    s = exposition(daemon)
    assert value(s, "rtc_recording_task_status", rtc_recording_task_status="ended") == 1
    assert value(s, "rtc_recording_task_end_timestamp_seconds") == T0 + 60
    assert value(s, "rtc_recording_task_files", status="uploading") == 1
    assert value(s, "rtc_recording_task_files", status="upload_failed") == 1
    assert value(s, "rtc_recording_tasks_ended_total", outcome="normal") == 1
    assert value(s, "rtc_recording_file_uploads_total", result="upload_failed") == 1
    # Past the hold, but one file is still uploading: the task stays watched.
    clock.advance(1000)
    assert (await rt.run_once()).ok
    assert tasks_with_series(exposition(daemon)) == {task}
    await knob(url, task=task, file_status="upload_failed", file=0)
    assert (await rt.run_once()).ok
    s = exposition(daemon)
    assert value(s, "rtc_recording_file_uploads_total", result="upload_failed") == 2, "a failure after the end"
    assert value(s, "rtc_recording_task_files", status="upload_failed") == 2
    assert value(s, "rtc_recording_tasks_ended_total", outcome="normal") == 1, "each end counted once"
    assert (await rt.run_once()).ok
    s = exposition(daemon)
    assert tasks_with_series(s) == set()
    assert value(s, "monitord_zego_tasks_removed_total", reason="ended") == 1
    assert value(s, "rtc_recording_file_uploads_total", result="upload_failed") == 2


def failed_files(series: dict[Any, float]) -> dict[str, dict[str, str]]:
    return {dict(ls)["file"]: {k: v for k, v in ls if k in ("task", "user", "stream", "format")}
            for (n, ls), v in series.items() if n == "rtc_recording_failed_file_info" and v == 1}


async def test_failed_upload_names_the_file(start_sim, make_daemon, clock, captured_logs) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, task_ids=FIXED_IDS)], clock=clock)
    assert (await daemon.poll_all_once())["rec"].ok
    named = failed_files(exposition(daemon))
    assert list(named.values()) == [{"task": "Rec3AbnormalEnd0", "user": "carol", "stream": "carol_main",
                                     "format": "mp4"}]
    assert next(iter(named)).startswith("Rec3AbnormalEnd0_room-3_carol_VA_")
    assert value(exposition(daemon), "monitord_zego_failed_files_dropped_total") == 0
    events = [e for e in log_events(captured_logs)
              if e.get("event") == "recording_upload_final" and e["result"] == "upload_failed"]
    assert [(e["file"], e["user"], e["stream"], e["named"]) for e in events] == \
        [(next(iter(named)), "carol", "carol_main", True)]


async def test_failed_files_are_named_up_to_the_cap_and_the_rest_counted_once(start_sim, make_daemon,
                                                                               clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    task = (await knob(url, create={"task_id": "ManyFailedFiles1", "files": 4, "started_ago": 60}))["created"]
    config = target(url, task_ids=[task], max_failed_files_per_task=2)
    daemon = make_daemon([config], clock=clock)
    rt = daemon.runtime("rec")
    await knob(url, task=task, file_status="upload_failed", file=2)
    assert (await rt.run_once()).ok
    assert [f["user"] for f in failed_files(exposition(daemon)).values()] == ["user3"]
    await knob(url, task=task, status="ended")
    await knob(url, task=task, file_status="upload_failed")
    for _ in range(3):
        assert (await rt.run_once()).ok
        s = exposition(daemon)
        # The first failure stays named; one more fits; the other two are counted, once each.
        assert sorted(f["user"] for f in failed_files(s).values()) == ["user1", "user3"]
        assert value(s, "rtc_recording_task_files", status="upload_failed") == 4
        assert value(s, "monitord_zego_failed_files_dropped_total") == 2
        assert value(s, "rtc_recording_file_uploads_total", result="upload_failed") == 4
    await daemon.close()
    again = make_daemon([config], clock=clock)
    assert (await again.poll_all_once())["rec"].ok
    s = exposition(again)
    assert sorted(f["user"] for f in failed_files(s).values()) == ["user1", "user3"], "kept across a restart"
    assert value(s, "monitord_zego_failed_files_dropped_total") == 2
    # Held like the task's other terminal state, then gone with the task.
    clock.advance(900)
    assert (await again.poll_all_once())["rec"].ok
    assert failed_files(exposition(again)) == {}


async def test_failed_files_counted_by_an_older_version_are_named(start_sim, make_daemon, clock,
                                                                  tmp_path) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    config = target(url, task_ids=["Rec3AbnormalEnd0"])
    daemon = make_daemon([config], clock=clock)
    assert (await daemon.poll_all_once())["rec"].ok
    await daemon.close()
    # The watch list as a version without failed_files wrote it.
    state_files = list((tmp_path / "state").glob("rec.tasks.json"))
    assert len(state_files) == 1
    stored = json.loads(state_files[0].read_text())
    for entry in stored["tasks"].values():
        del entry["failed_files"]
    del stored["counters"]["failed_files"]
    state_files[0].write_text(json.dumps(stored))
    again = make_daemon([config], clock=clock)
    assert (await again.poll_all_once())["rec"].ok
    s = exposition(again)
    assert [f["user"] for f in failed_files(s).values()] == ["carol"]
    assert value(s, "rtc_recording_file_uploads_total", result="upload_failed") == 1, "not counted again"


async def test_last_report_of_an_ended_task_survives_a_failed_poll(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    await knob(url, create={"task_id": "EndsDuringFault1"})
    await knob(url, task="EndsDuringFault1", status="ended")
    daemon = make_daemon([target(url, task_ids=["EndsDuringFault1"])], clock=clock)
    rt = daemon.runtime("rec")
    await faults(url, truncated=True)
    assert not (await rt.run_once()).ok
    await faults(url)
    assert (await rt.run_once()).ok
    assert tasks_with_series(exposition(daemon)) == {"EndsDuringFault1"}, "the report nobody saw is repeated"
    assert (await rt.run_once()).ok
    assert tasks_with_series(exposition(daemon)) == {"EndsDuringFault1"}, "held"
    clock.advance(900)
    assert (await rt.run_once()).ok
    assert tasks_with_series(exposition(daemon)) == {"EndsDuringFault1"}, "its file is still uploading"
    await knob(url, task="EndsDuringFault1", file_status="uploaded")
    assert (await rt.run_once()).ok
    assert value(exposition(daemon), "rtc_recording_file_uploads_total", result="uploaded") == 1
    assert (await rt.run_once()).ok
    assert tasks_with_series(exposition(daemon)) == set()


async def test_tasks_past_the_three_day_window_leave_without_a_query(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="empty")
    await knob(url, create={"task_id": "AlmostThreeDays1", "started_ago": 3 * 86400 - 60})
    await knob(url, create={"task_id": "FreshTask0000001", "started_ago": 60})
    daemon = make_daemon([target(url, task_ids=["AlmostThreeDays1", "FreshTask0000001"])], clock=clock)
    rt = daemon.runtime("rec")
    assert (await rt.run_once()).ok
    assert tasks_with_series(exposition(daemon)) == {"AlmostThreeDays1", "FreshTask0000001"}
    clock.advance(120)
    before = app[sim.SIM_KEY].requests
    assert (await rt.run_once()).ok
    s = exposition(daemon)
    assert tasks_with_series(s) == {"FreshTask0000001"}
    assert app[sim.SIM_KEY].requests - before == 1
    assert value(s, "monitord_zego_tasks_removed_total", reason="expired") == 1


async def test_unknown_task_is_counted_not_fatal_and_dropped_after_repeated_misses(start_sim, make_daemon,
                                                                                 clock) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, task_ids=["Rec2SingleStream", "NoSuchTask000000"])], clock=clock)
    rt = daemon.runtime("rec")
    for poll in range(1, source.NOT_FOUND_LIMIT + 1):
        assert (await rt.run_once()).ok
        s = exposition(daemon)
        assert tasks_with_series(s) == {"Rec2SingleStream"}
        assert value(s, "monitord_zego_task_query_errors_total", reason="not_found") == poll
    assert value(s, "monitord_zego_tasks_removed_total", reason="not_found") == 1
    before = app[sim.SIM_KEY].requests
    assert (await rt.run_once()).ok
    assert app[sim.SIM_KEY].requests - before == 1


async def test_only_unknown_tasks_is_still_a_successful_poll(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    daemon = make_daemon([target(url, task_ids=["NoSuchTask000000"])], clock=clock)
    assert (await daemon.poll_all_once())["rec"].ok
    assert value(exposition(daemon), "monitord_target_up") == 1


async def test_one_failing_task_does_not_fail_the_others(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, task="Rec5PausedTask00", task_code=300010000)
    daemon = make_daemon([target(url, task_ids=["Rec2SingleStream", "Rec5PausedTask00"])], clock=clock)
    assert (await daemon.poll_all_once())["rec"].ok
    s = exposition(daemon)
    assert tasks_with_series(s) == {"Rec2SingleStream"}
    assert value(s, "monitord_zego_task_query_errors_total", reason="vendor_error") == 1


@pytest.mark.parametrize(
    ("knobs", "reason"),
    [
        ({"task_code": 300000004}, "invalid_task"),
        ({"task_code": 300001001}, "vendor_error"),
        ({"task_code": 399999999}, "vendor_error"),
        ({"task_data": ["not", "an", "object"]}, "bad_response"),
        # An HTTP error on one task's query (after its retry) while another task answers leaves
        # the poll up; the failure shows under its own reason.
        ({"task_http_status": 502}, "http_5xx"),
    ],
)
async def test_per_task_answers_map_to_query_error_reasons(start_sim, make_daemon, clock, knobs, reason) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, task="Rec5PausedTask00", **knobs)
    daemon = make_daemon([target(url, task_ids=["Rec2SingleStream", "Rec5PausedTask00"])], clock=clock)
    assert (await daemon.poll_all_once())["rec"].ok
    s = exposition(daemon)
    assert tasks_with_series(s) == {"Rec2SingleStream"}
    errors = {dict(ls)["reason"]: v for (n, ls), v in s.items() if n == "monitord_zego_task_query_errors_total"}
    assert errors == {r: (1 if r == reason else 0) for r in source.QUERY_ERROR_REASONS}


@pytest.mark.parametrize(
    ("code", "reason"),
    [(100000010, "auth"), (100000009, "auth"), (100000011, "vendor_error"), (300000003, "throttled")],
)
async def test_gateway_codes_fail_the_whole_poll(start_sim, make_daemon, clock, code, reason) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, vendor_error=code)
    daemon = make_daemon([target(url, task_ids=["Rec2SingleStream", "Rec5PausedTask00"])], clock=clock)
    outcome = (await daemon.poll_all_once())["rec"]
    assert (outcome.ok, outcome.reason, str(code) in outcome.detail) == (False, reason, True)


async def test_a_5xx_is_tried_once_more_then_counted_for_its_task(start_sim, make_daemon, clock) -> None:
    from monitord.simulators.base import REQUESTS_KEY

    url, app = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, task_ids=["Rec2SingleStream"])], clock=clock)
    await faults(url, status=503)
    before = app[REQUESTS_KEY][0]
    outcome = (await daemon.poll_all_once())["rec"]
    assert (outcome.ok, outcome.reason) == (False, "http_5xx")
    assert app[REQUESTS_KEY][0] - before == 2, "sent once more (re-signed), then given up"


async def test_two_targets_of_one_app_id_with_different_paces_refuse_to_start(make_daemon) -> None:
    with pytest.raises(SharedConflict, match="give them one value"):
        make_daemon([target("http://127.0.0.1:9", name="a", max_requests_per_second=9),
                     target("http://127.0.0.1:9", name="b", max_requests_per_second=5)])


async def test_answer_without_a_code_is_a_bad_response(aiohttp_server, make_daemon, clock) -> None:
    # A proxy in front of the API answering its own JSON (no Code) must not read as success.
    from aiohttp import web

    async def foreign(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "data": {}})

    app = web.Application()
    app.router.add_route("*", "/", foreign)
    server = await aiohttp_server(app, host="127.0.0.1")
    daemon = make_daemon([target(f"http://127.0.0.1:{server.port}", task_ids=["Rec2SingleStream"])], clock=clock)
    outcome = (await daemon.poll_all_once())["rec"]
    assert (outcome.ok, outcome.reason) == (False, "bad_response")


async def test_every_task_failing_fails_the_poll_with_the_vendor_code(start_sim, make_daemon, clock,
                                                                     captured_logs) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    await knob(url, vendor_error=300010000)
    daemon = make_daemon([target(url, task_ids=["Rec2SingleStream", "Rec5PausedTask00"])], clock=clock)
    outcome = (await daemon.poll_all_once())["rec"]
    assert (outcome.ok, outcome.reason) == (False, "vendor_error")
    assert "300010000" in outcome.detail
    s = exposition(daemon)
    assert tasks_with_series(s) == set()
    assert value(s, "monitord_zego_task_query_errors_total", reason="vendor_error") == 0, "counted as the poll's"
    failing = [e for e in log_events(captured_logs) if e["event"] == "target_failing"]
    assert len(failing) == 1 and "300010000" in failing[0]["detail"]


async def test_wrong_secret_is_auth_and_never_shown(start_sim, make_daemon, clock, captured_logs) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, server_secret="Wrong-Zego-Secret-42", task_ids=FIXED_IDS)], clock=clock)
    outcome = (await daemon.poll_all_once())["rec"]
    assert (outcome.ok, outcome.reason) == (False, "auth")
    assert "100000005" in outcome.detail
    s = exposition(daemon)
    assert value(s, "monitord_poll_errors_total", reason="auth") == 1
    assert tasks_with_series(s) == set()
    shown = captured_logs.getvalue() + daemon.store.render().decode()
    assert "Wrong-Zego-Secret-42" not in shown and sim.DEFAULT_SECRET not in shown


async def test_clock_skew_beyond_ten_minutes_is_an_expired_signature(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, task_ids=FIXED_IDS)], clock=Clock(T0 - 601))
    outcome = (await daemon.poll_all_once())["rec"]
    assert (outcome.reason, "100000004" in outcome.detail) == ("auth", True)
    within = make_daemon([target(url, name="near", task_ids=FIXED_IDS)], clock=Clock(T0 + 590))
    assert (await within.poll_all_once())["near"].ok


async def test_vendor_throttling_fails_the_poll_as_throttled(start_sim, make_daemon, clock) -> None:
    # A frozen rate clock puts every request into the same second: deterministic throttling.
    url, _ = await start_sim(sim, clock=clock, scenario="fixed", rate_limit=2, rate_clock=Clock(0.0))
    daemon = make_daemon([target(url, task_ids=FIXED_IDS)], clock=clock)
    outcome = (await daemon.poll_all_once())["rec"]
    assert (outcome.ok, outcome.reason) == (False, "throttled")
    assert "300000003" in outcome.detail
    assert value(exposition(daemon), "monitord_poll_errors_total", reason="throttled") == 1


async def test_pacing_keeps_many_tasks_under_the_vendor_limit(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="empty")
    ids = [(await knob(url, create={"task_id": f"PacedTask{n:07d}"}))["created"] for n in range(13)]
    daemon = make_daemon([target(url, task_ids=ids, timeout="8s")], clock=clock)
    outcome = (await daemon.poll_all_once())["rec"]
    assert outcome.ok, outcome
    assert app[sim.SIM_KEY].answered[300000003] == 0
    assert len(tasks_with_series(exposition(daemon))) == 13
    assert outcome.duration >= 12 / 9 - 0.05, "13 calls at 9/s take at least 12 intervals"


async def test_targets_of_one_app_share_the_pace(start_sim, make_daemon, clock) -> None:
    url, app = await start_sim(sim, clock=clock, scenario="empty")
    ids = [(await knob(url, create={"task_id": f"SharedTask{n:06d}"}))["created"] for n in range(12)]
    daemon = make_daemon([target(url, name="a", task_ids=ids[:6], timeout="8s"),
                          target(url, name="b", task_ids=ids[6:], timeout="8s")], clock=clock)
    outcomes = await daemon.poll_all_once()
    assert outcomes["a"].ok and outcomes["b"].ok
    assert app[sim.SIM_KEY].answered[300000003] == 0
    assert max(o.duration for o in outcomes.values()) >= 11 / 9 - 0.05


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"status": 503}, "http_5xx"),
        ({"status": 403, "html": True}, "auth"),
        ({"html": True}, "bad_response"),
        ({"garbage": True}, "bad_response"),
        ({"truncated": True}, "bad_response"),
        ({"huge": True}, "too_large"),
        ({"latency": 5.0}, "timeout"),
    ],
)
async def test_transport_faults_cost_one_poll_then_recover(start_sim, make_daemon, clock, fault, reason) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    daemon = make_daemon([target(url, task_ids=["Rec2SingleStream"], timeout="1s")], clock=clock)
    rt = daemon.runtime("rec")
    assert (await rt.run_once()).ok
    await faults(url, **fault)
    outcome = await rt.run_once()
    assert (outcome.ok, outcome.reason) == (False, reason)
    s = exposition(daemon)
    assert value(s, "monitord_target_up") == 0
    assert tasks_with_series(s) == set(), "a failed target's data is dropped, not frozen"
    assert value(s, "monitord_zego_tasks_watched", origin="config") == 1, "the watch list stays visible"
    await faults(url)
    assert (await rt.run_once()).ok
    assert tasks_with_series(exposition(daemon)) == {"Rec2SingleStream"}


async def test_demo_target_shows_a_failed_upload(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim)
    daemon = make_daemon(sim.demo_targets(url))
    assert (await daemon.poll_all_once())["zego-recording"].ok
    s = exposition(daemon)
    assert tasks_with_series(s) == set(sim.DEMO_TASK_IDS)
    assert value(s, "rtc_recording_task_files", task="DemoSingleRec002", status="upload_failed") == 1


def test_config_rejects_bad_task_ids_and_too_many_tasks() -> None:
    base = {"name": "z", "source": "zego", "app_id": 1, "server_secret": "s"}
    with pytest.raises(ConfigError, match=r"targets\[0\].*not a task id"):
        parse({"targets": [{**base, "task_ids": ["ok", "bad id/../"]}]})
    with pytest.raises(ConfigError, match="more than max_tasks"):
        parse({"targets": [{**base, "task_ids": ["a", "b"], "max_tasks": 1}]})
    with pytest.raises(ConfigError, match=r"targets\[0\]\.app_id"):
        parse({"targets": [{**base, "app_id": 2**32}]})


def test_secrets_come_from_files_and_environment(tmp_path, monkeypatch) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("ZEGO_API_TOKEN", "from-the-env")
    config = parse({"targets": [{"name": "z", "source": "zego", "app_id": 1, "server_secret_file": str(secret),
                                 "api_token_env": "ZEGO_API_TOKEN"}]})
    t = config.targets[0]
    assert t.server_secret.get_secret_value() == "from-a-file"
    assert t.api_token.get_secret_value() == "from-the-env"
    with pytest.raises(ConfigError, match=r"targets\[0\]\.api_token.*NOT_SET_ANYWHERE"):
        parse({"targets": [{"name": "z", "source": "zego", "app_id": 1, "server_secret": "s",
                            "api_token_env": "NOT_SET_ANYWHERE"}]})


async def test_task_ends_and_final_uploads_are_counted_once_also_across_restarts(start_sim, make_daemon,
                                                                                  clock, captured_logs) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    task = (await knob(url, create={"task_id": "CountedOnce00001", "files": 2}))["created"]
    daemon = make_daemon([target(url, task_ids=[task], terminal_hold="30m")], clock=clock)
    s = exposition(daemon)
    for outcome in ("normal", "abnormal"):
        assert value(s, "rtc_recording_tasks_ended_total", outcome=outcome) == 0, "born at 0, before any poll"
    for result in ("uploaded", "uploaded_backup", "upload_failed"):
        assert value(s, "rtc_recording_file_uploads_total", result=result) == 0
    await knob(url, task=task, status="ended_abnormally")
    await knob(url, task=task, file_status="uploaded", file=0)
    for _ in range(3):
        assert (await daemon.poll_all_once())["rec"].ok
        clock.advance(10)
    s = exposition(daemon)
    assert value(s, "rtc_recording_tasks_ended_total", outcome="abnormal") == 1
    assert value(s, "rtc_recording_file_uploads_total", result="uploaded") == 1
    await daemon.close()
    again = make_daemon([target(url, task_ids=[task], terminal_hold="30m")], clock=clock)
    s = exposition(again)
    assert value(s, "rtc_recording_tasks_ended_total", outcome="abnormal") == 1, "persisted"
    await knob(url, task=task, file_status="upload_failed", file=1)
    assert (await again.poll_all_once())["rec"].ok
    s = exposition(again)
    assert value(s, "rtc_recording_tasks_ended_total", outcome="abnormal") == 1, "not counted again"
    assert value(s, "rtc_recording_file_uploads_total", result="uploaded") == 1, "not counted again"
    assert value(s, "rtc_recording_file_uploads_total", result="upload_failed") == 1
    assert tasks_with_series(s) == {task}, "held for terminal_hold (30m)"
    events = [(e["event"], e.get("outcome") or e.get("result")) for e in log_events(captured_logs)
              if e["event"].startswith("recording_")]
    assert events == [("recording_task_ended", "abnormal"), ("recording_upload_final", "upload_failed")], \
        "one line per event, none for a good upload, none repeated"
