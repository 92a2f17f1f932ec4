"""The vendor answers that escaped the parsers or reached /metrics as non-finite values, each
served by the real simulator (its accepted answer, body replaced) to the real poll() over HTTP."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import parse_exposition, value
from vendor_bodies import DEEP, Vendor, assert_finite_exposition, override, recorded

from monitord.metrics import MetricDef
from monitord.normalize import INVALID
from monitord.simulators import huawei_rtc
from monitord.snapshot import SnapshotBuilder, Store
from monitord.sources import REGISTRY

KINDS = tuple(sorted(REGISTRY))


@pytest.fixture
def vendor(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    v = Vendor.start(request.param)
    try:
        yield v
    finally:
        v.close()


def answers_of(v: Vendor) -> dict[str, Any]:
    """A clean poll, then the recorded answers, decoded."""
    error, _, _ = v.poll()
    assert error is None, error
    return {k: json.loads(body) for k, body in v.run(recorded(v.url)).items()}


def key_of(answers: dict[str, Any], part: str) -> str:
    return next(k for k in answers if part in k)


def serve(v: Vendor, key: str, doc: Any) -> tuple[Any, str, SnapshotBuilder]:
    v.run(override(v.url, [{"match": key, "body": doc if isinstance(doc, str) else json.dumps(doc)}]))
    error, text, builder = v.poll()
    assert_finite_exposition(text)
    return error, text, builder


@pytest.mark.parametrize("vendor", KINDS, indirect=True)
def test_deeply_nested_answers_are_bad_responses(vendor: Vendor) -> None:
    vendor.run(override(vendor.url, [{"match": "", "body": DEEP}]))  # every accepted answer
    error, text, _ = vendor.poll()
    assert error is not None and error.reason == "bad_response", error
    assert "nested deeper than" in error.detail
    assert_finite_exposition(text)


@pytest.mark.parametrize("vendor", ["endpoint"], indirect=True)
def test_endpoint_data_string_nested_deeply_is_a_bad_response(vendor: Vendor) -> None:
    answers = answers_of(vendor)
    error, _, _ = serve(vendor, key_of(answers, "GetMultiCallStatusInfoAPI"), {"success": 1, "data": DEEP})
    assert error is not None and error.reason == "bad_response" and "nested deeper" in error.detail


@pytest.mark.parametrize("vendor", ["endpoint"], indirect=True)
@pytest.mark.parametrize("join_day", [1e308, 10**15, "1e308", -1])
def test_endpoint_impossible_call_duration_is_a_parse_error(vendor: Vendor, join_day: Any) -> None:
    answers = answers_of(vendor)
    key = key_of(answers, "GetMultiCallStatusInfoAPI")
    doc = answers[key]
    data = json.loads(doc["data"])
    data["joinDay"] = join_day
    error, text, builder = serve(vendor, key, {**doc, "data": json.dumps(data)})
    assert error is None
    assert value(parse_exposition(text), "rtc_endpoint_call_duration_seconds") is None
    assert builder.report.parse_errors["joinDay/joinHour/joinMin"] == 1
    assert value(parse_exposition(text), "rtc_stream_jitter_seconds", media="audio", direction="send") is not None


@pytest.mark.parametrize("vendor", ["zego"], indirect=True)
def test_zego_status_of_the_wrong_type_is_a_parse_error_not_a_crash(vendor: Vendor) -> None:
    answers = answers_of(vendor)
    key = key_of(answers, "DescribeRecordStatus")
    for odd in ([3], {"a": 3}, "3", 3.0, True):
        doc = answers[key]
        error, text, builder = serve(vendor, key, {**doc, "Data": {**doc["Data"], "Status": odd}})
        assert error is None, (odd, error)
        assert not [k for k in parse_exposition(text) if k[0] == "rtc_recording_task_status"]
        assert builder.report.parse_errors["rtc_recording_task_status"] >= 1, odd


@pytest.mark.parametrize("vendor", ["zego"], indirect=True)
def test_zego_sizes_and_durations_summing_beyond_float_range_are_parse_errors(vendor: Vendor) -> None:
    answers = answers_of(vendor)
    key = key_of(answers, "DescribeRecordStatus")
    doc = answers[key]
    files = [{**f, "FileSize": 1e308, "Duration": 1e308} for f in doc["Data"]["RecordFiles"]] * 2
    assert len(files) >= 2
    error, text, builder = serve(vendor, key, {**doc, "Data": {**doc["Data"], "RecordFiles": files}})
    assert error is None
    s = parse_exposition(text)
    assert value(s, "rtc_recording_task_files_bytes", task="Rec2SingleStream") is None
    assert value(s, "rtc_recording_task_files_duration_seconds", task="Rec2SingleStream") is None
    assert builder.report.parse_errors["RecordFiles[].FileSize"] >= 1
    assert builder.report.parse_errors["RecordFiles[].Duration"] >= 1


@pytest.mark.parametrize("vendor", ["zego"], indirect=True)
def test_zego_timestamps_outside_a_sane_range_are_parse_errors(vendor: Vendor) -> None:
    answers = answers_of(vendor)
    key = key_of(answers, "DescribeRecordStatus")
    doc = answers[key]
    future = int((vendor.clock() + 2 * 86400) * 1000)
    error, text, builder = serve(vendor, key, {**doc, "Data": {**doc["Data"], "RecordBeginTimestamp": 86_400_000,
                                                               "RecordEndTimestamp": future}})
    assert error is None
    s = parse_exposition(text)
    assert value(s, "rtc_recording_task_begin_timestamp_seconds", task="Rec2SingleStream") is None
    assert value(s, "rtc_recording_task_end_timestamp_seconds", task="Rec2SingleStream") is None
    assert builder.report.parse_errors["RecordBeginTimestamp"] >= 1
    assert builder.report.parse_errors["RecordEndTimestamp"] >= 1


@pytest.mark.parametrize("vendor", ["avd"], indirect=True)
def test_avd_transcode_files_of_the_wrong_type_are_no_files(vendor: Vendor) -> None:
    answers = answers_of(vendor)
    key = key_of(answers, "mix_record")
    doc = answers[key]
    for odd in (5, 1e308, "3", {"duration": "1s"}):
        records = [{**r, "transcode_files": odd} for r in doc["data"]]
        error, text, _ = serve(vendor, key, {**doc, "data": records})
        assert error is None, (odd, error)
        assert value(parse_exposition(text), "rtc_avd_recording_files", room="12345678980") == 0.0


@pytest.mark.parametrize("vendor", ["avd"], indirect=True)
def test_avd_sizes_summing_beyond_float_range_and_ancient_times_are_parse_errors(vendor: Vendor) -> None:
    answers = answers_of(vendor)
    key = key_of(answers, "mix_record")
    doc = answers[key]
    records = [{**r, "file_size": 1e308, "end_time": "12", "transcode_files": []} for r in doc["data"]] * 2
    error, text, builder = serve(vendor, key, {**doc, "data": records})
    assert error is None
    s = parse_exposition(text)
    assert value(s, "rtc_avd_recording_storage_bytes", room="12345678980") is None
    assert value(s, "rtc_avd_recording_last_end_timestamp_seconds", room="12345678980") is None
    assert builder.report.parse_errors["file_size"] == 1 and builder.report.parse_errors["end_time"] == 1


@pytest.mark.parametrize("vendor", ["polyv"], indirect=True)
@pytest.mark.parametrize("when", ["0001-01-01 00:00:00", "1970-01-01 08:00:00", "2999-01-01 00:00:00"])
def test_polyv_point_times_outside_a_sane_range_give_no_sample(vendor: Vendor, when: str) -> None:
    answers = answers_of(vendor)
    key = key_of(answers, "list-tencent-stream-info")
    doc = answers[key]
    points = [{**p, "time": when, "timestamp": None} for p in doc["data"]]
    error, text, builder = serve(vendor, key, {**doc, "data": points})
    assert error is None
    assert not [k for k in parse_exposition(text) if k[0] == "rtc_live_stream_point_timestamp_seconds"]
    assert builder.report.parse_errors["time"] >= 1


@pytest.mark.parametrize("vendor", ["huawei_rtc"], indirect=True)
def test_huawei_points_before_2000_are_parse_errors(vendor: Vendor) -> None:
    answers = answers_of(vendor)
    key = key_of(answers, "/rtc/realtime/scale")
    error, text, builder = serve(vendor, key, {"scale": [{"time": "0001-01-01T00:00:00Z", "value": 5}]})
    assert error is None
    s = parse_exposition(text)
    assert value(s, "rtc_huawei_point_timestamp_seconds", api="scale", vendor_metric="OnlineUsers") is None
    assert builder.report.parse_errors["scale.time"] >= 1


# --------------------------------------------------------------------------- callbacks


def rtc_target(url: str) -> dict[str, Any]:
    return {"name": "rtc", "source": "huawei_rtc", "endpoint": url, "iam_endpoint": url,
            "project_id": huawei_rtc.PROJECT_ID, "ak": huawei_rtc.ACCESS_KEY, "sk": huawei_rtc.SECRET_KEY,
            "apps": [{"id": huawei_rtc.APPS[0]}], "callback_secret": "cb-Secret-123",
            "assume_budget_spent_at_start": False}


async def test_callback_bodies_that_are_deep_or_overflow_are_refused_and_counted(
        start_sim, make_daemon, aiohttp_client, tmp_path) -> None:
    from monitord.web import build_app

    url, _ = await start_sim(huawei_rtc)
    daemon = make_daemon([rtc_target(url)])
    client = await aiohttp_client(build_app(daemon))
    path = "/api/v1/targets/rtc/record-events"
    headers = {huawei_rtc_secret_header(): "cb-Secret-123", "Content-Type": "application/json"}
    event = {"event_type": "RECORD_FILE_COMPLETE", "app_id": huawei_rtc.APPS[0]}

    deep = await client.post(path, data="[" * 100_000, headers=headers)
    assert deep.status == 400
    huge = [await client.post(path, json={**event, "record_duration": 1e308}, headers=headers) for _ in range(2)]
    assert [r.status for r in huge] == [400, 400]
    assert "record_duration" in await huge[0].text()
    # Two callbacks just under the per-file bound, and the counter stays a plain finite number.
    ok = [await client.post(path, json={**event, "record_duration": 7 * 86400}, headers=headers)
          for _ in range(2)]
    assert [r.status for r in ok] == [200, 200]

    s = parse_exposition(await (await client.get("/metrics")).text())
    assert value(s, "monitord_huawei_rtc_callbacks_rejected_total", reason="bad_body") == 3
    assert value(s, "rtc_huawei_recorded_duration_seconds_total", app=huawei_rtc.APPS[0]) == 2 * 7 * 86400
    assert all(math.isfinite(v) for v in s.values())
    for state in (tmp_path / "state").glob("*.json"):
        text = state.read_text()
        assert "Infinity" not in text and "NaN" not in text, state


def huawei_rtc_secret_header() -> str:
    from monitord.sources.huawei_rtc import SECRET_HEADER

    return SECRET_HEADER


# ------------------------------------------------------------------ the last line of defence


M = MetricDef("x_value", "gauge", "A value.")


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 10**400])
def test_the_snapshot_builder_never_exposes_a_non_finite_value(bad: Any) -> None:
    out = SnapshotBuilder({"source": "s", "target": "t"})
    assert out.add(M, bad, "vendorField") is False
    assert out.add(M, INVALID, "other") is False
    assert out.report.parse_errors == {"vendorField": 1, "other": 1}
    store = Store()
    store.put("t", out.build())
    assert "x_value" not in store.render().decode()


def test_label_values_with_lone_surrogates_still_render() -> None:
    info = MetricDef("x_thing", "info", "Facts.", labels=("name",))
    out = SnapshotBuilder({"source": "s", "target": "t"})
    assert out.info(info, name="bad \ud800 name")
    store = Store()
    store.put("t", out.build())
    text = store.render().decode()
    assert 'name="bad \ufffd name"' in text or 'name="bad ? name"' in text


# ------------------------------------------------------------- persisted pauses from state


@pytest.mark.parametrize("file", ["polyv@127.0.0.1.ban.json", "_polyv.ban.json"])
async def test_a_damaged_polyv_ban_state_does_not_pause_polling_for_good(start_sim, make_daemon, tmp_path,
                                                                       file) -> None:
    from monitord.simulators import polyv

    url, _ = await start_sim(polyv, scenario="fixed")
    state = tmp_path / "state"
    state.mkdir()
    (state / file).write_text('{"until": 1e308}')
    daemon = make_daemon([{"name": "pv", "source": "polyv", "url": url, "app_id": polyv.DEFAULT_APP_ID,
                           "app_secret": polyv.DEFAULT_APP_SECRET, "channels": ["3880533"]}])
    outcome = await daemon.runtime("pv").run_once()
    assert outcome.ok, outcome.detail
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_polyv_banned", target="pv") == 0.0
    assert all(math.isfinite(v) for v in s.values())


async def test_a_damaged_huawei_budget_state_does_not_block_for_good(start_sim, make_daemon, tmp_path) -> None:
    from monitord.config import parse

    url, _ = await start_sim(huawei_rtc)
    target = {**rtc_target(url), "budget_per_minute": 100}
    key = parse({"targets": [target]}).targets[0].account_key()  # type: ignore[attr-defined]
    state = tmp_path / "state"
    state.mkdir()
    (state / f"rtc.budget-{key}.json").write_text('{"sent": [], "blocked_until": 1e308}')
    daemon = make_daemon([target])
    outcome = await daemon.runtime("rtc").run_once()
    assert outcome.ok, outcome.detail
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "monitord_huawei_rtc_requests_total", api="scale", outcome="ok") is not None


@pytest.mark.parametrize("vendor", ["huawei_rtc"], indirect=True)
@pytest.mark.parametrize("total", [2**80, -1, True, "5"])
def test_huawei_event_totals_no_window_can_hold_are_bad_responses(vendor: Vendor, total: Any) -> None:
    """A total of 2**80 with a page of events would have the source page through the whole budget."""
    answers = answers_of(vendor)
    key = key_of(answers, "/abnormal-events")
    doc = answers[key]
    source = vendor.source()
    vendor.run(override(vendor.url, [{"match": key, "body": json.dumps({**doc, "total": total})}]))
    error, text, _ = vendor.poll(source)
    assert error is None, error  # the other calls answered
    sent = vendor.run(recorded(vendor.url))
    assert key in sent
    s = parse_exposition(text)
    # The counters of the documented event kinds exist at 0 from the start; none counted a thing.
    events = {k: v for k, v in s.items() if k[0] == "rtc_huawei_abnormal_events_total"}
    assert events and set(events.values()) == {0}


# ------------------------------------------------------------------------ bounded decoding


def test_vendor_json_is_bounded_and_standard() -> None:
    from monitord import vendorjson

    limit = vendorjson.MAX_DEPTH
    assert vendorjson.loads("[" * limit + "]" * limit) is not None
    for text in ("[" * (limit + 1) + "]" * (limit + 1), '{"a": ' * (limit + 1) + "1" + "}" * (limit + 1),
                 "[" * 100_000, DEEP, '{"v": NaN}', '{"v": -Infinity}', b"\xff\xfe{}", "{", ""):
        with pytest.raises(vendorjson.JSONError):
            vendorjson.loads(text)
    assert vendorjson.loads('{"big": 1e999}')["big"] == math.inf, "valid JSON; the field parser refuses it"
