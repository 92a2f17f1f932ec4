"""The Zego simulator enforces the vendor contract; the signer and the mapping hold for any input."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aiohttp
from helpers import parse_exposition
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.simulators import zego as sim
from monitord.simulators.base import Clock
from monitord.snapshot import SnapshotBuilder, Store
from monitord.sources import zego as source

T0 = 1_790_000_000


def signed(nonce: str, timestamp: int, secret: str = sim.DEFAULT_SECRET, **override: str) -> dict[str, str]:
    params = {"Action": "DescribeRecordStatus", "AppId": str(sim.DEFAULT_APP_ID), "SignatureNonce": nonce,
              "Timestamp": str(timestamp), "SignatureVersion": "2.0",
              "Signature": source.sign(sim.DEFAULT_APP_ID, nonce, secret, timestamp)}
    params.update(override)
    return {k: v for k, v in params.items() if v != "<omit>"}


async def call(url: str, params: dict[str, str], body: Any = None) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.post(f"{url}/", params=params,
                                                    json={"TaskId": "X3CgNeE4I1qAAABN"} if body is None else body) as r:
        assert r.status == 200, "the gateway answers errors in the body, with HTTP 200"
        return await r.json()


async def test_signature_timestamp_and_nonce_rules(start_sim, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    ok = await call(url, signed("nonce-1", T0))
    assert ok["Code"] == 0 and ok["Data"]["Status"] == 3 and ok["RequestId"]
    replay = await call(url, signed("nonce-1", T0))
    assert replay["Code"] == 100000005, "a reused nonce is a replay"
    assert (await call(url, signed("nonce-2", T0 - 601)))["Code"] == 100000004
    assert (await call(url, signed("nonce-3", T0 + 601)))["Code"] == 100000004
    assert (await call(url, signed("nonce-4", T0 - 600)))["Code"] == 0
    assert (await call(url, signed("nonce-5", T0, secret="wrong")))["Code"] == 100000005
    upper = signed("nonce-6", T0)
    upper["Signature"] = upper["Signature"].upper()
    assert (await call(url, upper))["Code"] == 100000005, "lower-case hex only"
    assert (await call(url, signed("nonce-7", T0, SignatureVersion="1.0")))["Code"] == 100000014
    assert (await call(url, signed("nonce-8", T0, AppId="987")))["Code"] == 100000010
    assert (await call(url, signed("nonce-9", T0, Action="StartRecord")))["Code"] == 100000007
    assert (await call(url, signed("", T0)))["Code"] == 100000008
    assert (await call(url, signed("nonce-10", T0, Signature="<omit>")))["Code"] == 100000009
    assert (await call(url, signed("nonce-11", T0, Timestamp="soon")))["Code"] == 100000003


async def test_nonces_are_forgotten_only_after_the_timestamp_window(start_sim, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    assert (await call(url, signed("again", T0)))["Code"] == 0
    clock.advance(sim.TIMESTAMP_WINDOW)
    assert (await call(url, signed("again", int(clock()))))["Code"] == 100000005
    clock.advance(sim.TIMESTAMP_WINDOW + 1)
    assert (await call(url, signed("again", int(clock()))))["Code"] == 0


async def test_body_rules_and_three_day_window(start_sim, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="empty")
    async with aiohttp.ClientSession() as s, s.post(f"{url}/_sim/zego", json={
            "create": {"task_id": "OldTask000000001", "started_ago": 3 * 86400 + 1}}) as r:
        assert r.status == 200
    assert (await call(url, signed("n1", T0), {"TaskId": "OldTask000000001"}))["Code"] == 300001000
    assert (await call(url, signed("n2", T0), {"TaskId": "Unknown000000001"}))["Code"] == 300001000
    assert (await call(url, signed("n3", T0), {"Task": "x"}))["Code"] == 300000004
    assert (await call(url, signed("n4", T0), {"TaskId": 7}))["Code"] == 300000004


async def test_rate_limit_per_second(start_sim, clock) -> None:
    rate_clock = Clock(100.0)
    url, _ = await start_sim(sim, clock=clock, scenario="fixed", rate_clock=rate_clock)
    answers = await asyncio.gather(*(call(url, signed(f"burst-{n}", T0)) for n in range(14)))
    codes = sorted(a["Code"] for a in answers)
    assert codes == [0] * 10 + [300000003] * 4
    rate_clock.advance(0.999)
    assert (await call(url, signed("still-same-second", T0)))["Code"] == 300000003
    rate_clock.advance(0.002)
    assert (await call(url, signed("next-second", T0)))["Code"] == 0


async def test_knobs_reject_unknown_tasks_and_states(start_sim, clock) -> None:
    url, _ = await start_sim(sim, clock=clock, scenario="fixed")
    async with aiohttp.ClientSession() as s:
        for body in ({"task": "nope", "status": "ended"}, {"task": "Rec2SingleStream", "status": "exploded"},
                     {"task": "Rec2SingleStream", "file_status": "uploaded", "file": 9}, {"scenario": "odd"}):
            async with s.post(f"{url}/_sim/zego", json=body) as r:
                assert r.status == 400, body


@settings(max_examples=200, deadline=None)
@given(app_id=st.integers(1, 2**32 - 1), nonce=st.text(st.characters(codec="ascii", categories=("L", "N")),
                                                         min_size=1, max_size=32),
       secret=st.text(min_size=1, max_size=64), skew=st.integers(-600, 600))
def test_simulator_accepts_exactly_the_signature_of_the_source(app_id: int, nonce: str, secret: str,
                                                               skew: int) -> None:
    zs = sim.ZegoSim(clock=Clock(float(T0)), rate_clock=Clock(0.0), app_id=app_id, server_secret=secret,
                     rate_limit=10**9)
    timestamp = T0 + skew
    signature = source.sign(app_id, nonce, secret, timestamp)
    assert signature == hashlib.md5(f"{app_id}{nonce}{secret}{timestamp}".encode()).hexdigest()
    assert len(signature) == 32 and signature == signature.lower()
    query = {"Action": "DescribeRecordStatus", "AppId": str(app_id), "SignatureNonce": nonce,
             "Timestamp": str(timestamp), "Signature": signature, "SignatureVersion": "2.0"}
    assert zs.check(query) == 0
    fresh = dict(query, SignatureNonce=nonce + "x")
    assert zs.check(fresh) == 100000005, "a signature is bound to its nonce"
    wrong = dict(query, Signature=source.sign(app_id, nonce + "y", secret + "z", timestamp),
                 SignatureNonce=nonce + "y")
    assert zs.check(wrong) == 100000005


def test_nonces_are_fresh_per_call() -> None:
    nonces = {source.new_nonce() for _ in range(1000)}
    assert len(nonces) == 1000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
file_objects = st.fixed_dictionaries({}, optional={
    "Status": json_values | st.integers(0, 6), "FileSize": json_values | st.integers(0, 10**12),
    "Duration": json_values | st.integers(0, 10**8),
})
data_objects = st.fixed_dictionaries({}, optional={
    "RoomId": json_values, "RecordMode": json_values | st.integers(0, 3), "StreamType": json_values,
    "RecordBeginTimestamp": json_values | st.integers(0, 2 * 10**12), "RecordEndTimestamp": json_values,
    "Status": json_values | st.integers(0, 6), "RecordFiles": json_values | st.lists(file_objects, max_size=4),
})


@settings(max_examples=150, deadline=None)
@given(data=data_objects)
def test_any_data_object_maps_without_crashing_to_a_valid_exposition(data: dict[str, Any]) -> None:
    out = SnapshotBuilder({"source": "zego", "target": "t"})
    source.collect_task("Task", data, out, float(T0))
    store = Store()
    store.put("t", out.build())
    series = parse_exposition(store.render().decode())
    status = data.get("Status")
    states = [v for (n, ls), v in series.items() if n == "rtc_recording_task_status"]
    if isinstance(status, int) and not isinstance(status, bool) and status in source.TASK_STATES:
        assert sorted(states) == [0, 0, 0, 0, 1]
    else:
        assert states == [], "an unknown status is no state at all, never a set of zeros"
    files = data.get("RecordFiles")
    counts = [v for (n, ls), v in series.items() if n == "rtc_recording_task_files"]
    if isinstance(files, list) or files is None:
        known = [f for f in files or [] if isinstance(f, dict) and type(f.get("Status")) is int
                 and f["Status"] in source.FILE_STATES]
        assert sum(counts) == len(known)
    else:
        assert counts == []
