"""Recording callbacks signed the way SparkRTC signs them, over real HTTP on 127.0.0.1: the
simulator is configured through PUT /v2/apps/{app_id}/record-callback (AK/SK-signed) and POSTs
each event to monitord with X-Rtc-Rand / X-Rtc-Timestamp / X-Rtc-Signature."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from helpers import log_events, value
from test_huawei_rtc import APP, APP2, series, target

from monitord.simulators import huawei_rtc as sim
from monitord.sources.huawei_rtc import signer
from monitord.sources.huawei_rtc.callbacks import MAX_REPLAY_MEMORY, signature
from monitord.web import build_app

KEY = "8923ab8c2dcef4538923ab8c2dcef453"  # the vendor's example auth_key (32 characters)
PATH = "/api/v1/targets/rtc/record-events"


async def configure_callback(url: str, clock: Any, app_id: str, callback_url: str, auth_key: str) -> None:
    """PUT /v2/apps/{app_id}/record-callback, AK/SK-signed like any SparkRTC management call."""
    body = json.dumps({"url": callback_url, "auth_key": auth_key}).encode()
    host = url.split("//", 1)[1]
    headers, uri = signer.sign(
        method="PUT", host=host, resource_path=f"/v2/apps/{app_id}/record-callback", query=[],
        headers={"X-Project-Id": sim.PROJECT_ID, "Content-Type": "application/json"}, body=body,
        access_key=sim.ACCESS_KEY, secret_key=sim.SECRET_KEY,
        when=datetime.fromtimestamp(clock(), UTC).replace(tzinfo=None),
    )
    async with aiohttp.ClientSession() as s, s.put(f"{url}{uri}", data=body, headers=headers) as r:
        assert r.status == 200, await r.text()


async def send(url: str, **spec: Any) -> list[int]:
    async with aiohttp.ClientSession() as s, s.post(f"{url}/_sim/huawei_rtc", json={"send_record_event": spec}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["callback_statuses"]  # type: ignore[no-any-return]


@pytest.fixture
async def signed_setup(start_sim, make_daemon, clock):  # type: ignore[no-untyped-def]
    url, _ = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url, apps=[{"id": APP}, {"id": APP2}], callback_key=KEY)], clock=clock)
    server = TestServer(build_app(daemon), host="127.0.0.1")
    await server.start_server()
    callback_url = str(server.make_url(PATH))
    for app_id in (APP, APP2):
        await configure_callback(url, clock, app_id, callback_url, KEY)
    yield url, daemon, callback_url
    await server.close()


async def test_signed_callbacks_are_counted_and_forgeries_stale_and_replays_refused(
    captured_logs, signed_setup, clock
) -> None:
    url, daemon, callback_url = signed_setup
    assert await send(url, app_id=APP) == [200]
    assert await send(url, app_id=APP2, event={"event_type": "RECORD_NEW_FILE_START",
                                               "record_duration": None}) == [200]
    # The same request again (a capture replayed, or the vendor's own retry of a delivered one).
    assert await send(url, app_id=APP, times=3) == [200, 403, 403]
    assert await send(url, app_id=APP, key="another-key-of-32-characters-000") == [403]
    assert await send(url, app_id=APP, timestamp_offset=-301) == [403]
    assert await send(url, app_id=APP, timestamp_offset=+301) == [403]
    assert await send(url, app_id=APP, timestamp_offset=-299) == [200]
    async with aiohttp.ClientSession() as s:
        async with s.post(callback_url, json={"app_id": APP, "event_type": "RECORD_FILE_COMPLETE"}) as r:
            assert r.status == 401, "no signature headers"
        # Every body field is optional: an empty object is a valid (if uninformative) event.
        body = b"{}"
        stamp = str(int(clock()) * 1000)  # milliseconds are read too
        headers = {"X-Rtc-Rand": "r1", "X-Rtc-Timestamp": stamp, "X-Rtc-Signature": signature(KEY, "r1", stamp, body)}
        async with s.post(callback_url, data=body, headers=headers) as r:
            assert r.status == 200, await r.text()
        tampered = {**headers, "X-Rtc-Rand": "r2"}
        async with s.post(callback_url, data=body, headers=tampered) as r:
            assert r.status == 403
    s = series(daemon)
    assert value(s, "rtc_huawei_record_events_total", app=APP, event_type="RECORD_FILE_COMPLETE") == 3
    assert value(s, "rtc_huawei_record_events_total", app=APP2, event_type="RECORD_NEW_FILE_START") == 1
    assert value(s, "rtc_huawei_record_events_total", app="other", event_type="other") == 1
    assert value(s, "rtc_huawei_recorded_duration_seconds_total", app=APP) == 3 * 65
    rejected = {r: value(s, "monitord_huawei_rtc_callbacks_rejected_total", reason=r)
                for r in ("bad_secret", "bad_signature", "stale", "replay", "bad_body")}
    assert rejected == {"bad_secret": 0, "bad_signature": 3, "stale": 2, "replay": 2, "bad_body": 0}
    refusals = [e["reason"] for e in log_events(captured_logs) if e.get("event") == "record_callback_refused"]
    # One line per change of reason (the second stale one is quiet), again after an accepted one.
    assert refusals == ["replay", "bad_signature", "stale", "bad_signature", "bad_signature"]
    assert KEY not in captured_logs.getvalue() + daemon.store.render().decode()


async def test_replay_memory_survives_a_restart(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    t = target(url, callback_key=KEY)
    body = json.dumps({"app_id": APP, "event_type": "RECORD_FILE_COMPLETE", "record_duration": 5}).encode()
    stamp = str(int(clock()))
    headers = {"X-Rtc-Rand": "abc", "X-Rtc-Timestamp": stamp, "X-Rtc-Signature": signature(KEY, "abc", stamp, body)}
    statuses = []
    for _ in range(2):
        daemon = make_daemon([t], clock=clock)
        server = TestServer(build_app(daemon), host="127.0.0.1")
        await server.start_server()
        async with aiohttp.ClientSession() as s, s.post(server.make_url(PATH), data=body, headers=headers) as r:
            statuses.append(r.status)
        await server.close()
        await daemon.close()
    assert statuses == [200, 403]
    assert MAX_REPLAY_MEMORY >= 1024


async def test_url_secret_and_signature_together_both_must_hold(start_sim, make_daemon, clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    daemon = make_daemon([target(url, callback_key=KEY, callback_secret="cb-Secret-123")], clock=clock)
    server = TestServer(build_app(daemon), host="127.0.0.1")
    await server.start_server()
    try:
        await configure_callback(url, clock, APP, str(server.make_url(PATH)), KEY)
        assert await send(url, app_id=APP) == [401], "signed but without the URL secret"
        await configure_callback(url, clock, APP, str(server.make_url(PATH + "?secret=cb-Secret-123")), KEY)
        assert await send(url, app_id=APP) == [200]
        await configure_callback(url, clock, APP, str(server.make_url(PATH + "?secret=cb-Secret-123")), "")
        assert await send(url, app_id=APP) == [401], "the URL secret alone is not enough once a key is set"
    finally:
        await server.close()
    s = series(daemon)
    assert value(s, "monitord_huawei_rtc_callbacks_rejected_total", reason="bad_secret") == 1
    assert value(s, "monitord_huawei_rtc_callbacks_rejected_total", reason="bad_signature") == 1
