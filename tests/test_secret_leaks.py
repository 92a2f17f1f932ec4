"""Canary secrets against vendors that quote the request back (the simulators' `echo` fault):
the request's path, query, body, Authorization and X-Auth-Token land in the vendor's error text,
which the sources quote in their failure details. No form of any canary may reach `monitord
once`'s stdout or stderr, the daemon's logs, /metrics, the status page, HTTP error bodies or the
state files."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from helpers import sim_faults

from monitord import redact
from monitord.simulators import avd, endpoint, huawei_rtc, polyv, zego
from monitord.sources import REGISTRY
from monitord.sources.huawei_rtc.callbacks import signature
from monitord.web import build_app

ROOT = Path(__file__).resolve().parent.parent
# Characters that change under percent-, form- and JSON-encoding, so every form is tried.
CANARIES = {
    "endpoint_password": "Canary-EP+pw/1=x y",
    "avd_access_key": "CanaryAK+avd/2=",
    "avd_secret_key": "Canary-SK+avd/3=&ü",
    "polyv_app_secret": "Canary-polyv+4/=",
    "zego_server_secret": "Canary-zego+5/=",
    "zego_api_token": "Canary-zego-token-6",
    # An AK travels in the Authorization header as `Access=<AK>`: letters and digits only.
    "rtc_ak": "CANARYAK7Q2ZLWX4M0007",
    "rtc_sk": "Canary-SK+rtc/8=",
    "rtc_callback": "Canary-cb+9/=",
    "rtc_iam_password": "Canary-iam+10/= ü",
    "rtc_callback_key": "Canary-cbkey+11/=",
}


def leaks(text: str) -> list[tuple[str, str]]:
    """(canary, the form found) for every canary form in `text` (any hex case)."""
    return [(name, form) for name, canary in CANARIES.items() for form in redact.find(text, [canary])]


async def start_echoing_vendors(start_sim: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every source's simulator, quoting requests back; returns the targets and the sims' URLs."""
    c = CANARIES
    urls = {
        "endpoint": (await start_sim(endpoint, password=c["endpoint_password"]))[0],
        # avd-a quotes every call (get_token carries the secret key in its query); avd-b hands
        # out a token and quotes the calls that carry it.
        "avd-a": (await start_sim(avd, access_key=c["avd_access_key"], secret_key=c["avd_secret_key"]))[0],
        "avd-b": (await start_sim(avd, access_key=c["avd_access_key"], secret_key=c["avd_secret_key"]))[0],
        "polyv": (await start_sim(polyv))[0],
        "zego": (await start_sim(zego, server_secret=c["zego_server_secret"]))[0],
        "rtc-a": (await start_sim(huawei_rtc, keys={c["rtc_ak"]: c["rtc_sk"]}))[0],
        # rtc-b issues IAM tokens for the canary password and quotes the data calls that carry one.
        "rtc-b": (await start_sim(huawei_rtc, users={(huawei_rtc.IAM_DOMAIN, huawei_rtc.IAM_USER):
                                                     c["rtc_iam_password"]}))[0],
    }
    for name, url in urls.items():
        match = {"avd-b": "/room/", "rtc-b": "/rtc/"}.get(name, "")
        # Huawei quotes error_msg of HTTP 400 answers; the others read their envelope from a 200.
        await sim_faults(url, echo=True, match=match, status=400 if name.startswith("rtc") else 0)
    common = {"timeout": "10s"}
    rtc = {"source": "huawei_rtc", "project_id": huawei_rtc.PROJECT_ID, "apps": [{"id": huawei_rtc.APPS[0]}],
           "assume_budget_spent_at_start": False, "retry_base_delay": "1ms", **common}
    targets = [
        {"name": "ep", "source": "endpoint", "url": f"{urls['endpoint']}/d/room-101",
         "username": endpoint.DEFAULT_USER, "password": c["endpoint_password"], **common},
        *({"name": name, "source": "avd", "url": urls[name], "access_key": c["avd_access_key"],
           "secret_key": c["avd_secret_key"], **common} for name in ("avd-a", "avd-b")),
        {"name": "pv", "source": "polyv", "url": urls["polyv"], "app_id": polyv.DEFAULT_APP_ID,
         "app_secret": c["polyv_app_secret"], "channels": ["3880533"], **common},
        {"name": "zg", "source": "zego", "url": urls["zego"], "app_id": zego.DEFAULT_APP_ID,
         "server_secret": c["zego_server_secret"], "api_token": c["zego_api_token"],
         "task_ids": ["DemoMixedRecord1"], **common},
        {"name": "rtc-a", "endpoint": urls["rtc-a"], "iam_endpoint": urls["rtc-a"], "ak": c["rtc_ak"],
         "sk": c["rtc_sk"], "callback_secret": c["rtc_callback"], **rtc},
        {"name": "rtc-b", "endpoint": urls["rtc-b"], "iam_endpoint": urls["rtc-b"], "auth": "token",
         "iam_domain": huawei_rtc.IAM_DOMAIN, "iam_user": huawei_rtc.IAM_USER,
         "iam_password": c["rtc_iam_password"], "callback_key": c["rtc_callback_key"], **rtc},
    ]
    assert {t["source"] for t in targets} == set(REGISTRY), "every source meets an echoing vendor"
    return targets, urls


async def test_the_echo_fault_really_quotes_the_request(start_sim) -> None:
    """Without this, the leak tests below could pass against a vendor that echoes nothing."""
    url, _ = await start_sim(avd)
    await sim_faults(url, echo=True)
    secret = CANARIES["avd_secret_key"]
    async with aiohttp.ClientSession() as s, s.get(f"{url}/sdkapi/v2/app/get_token",
                                                   params={"secret_key": secret},
                                                   headers={"Authorization": "Bearer X-7"}) as r:
        answer = await r.json()
    assert f"secret_key={quote(secret, safe='/')}" in answer["msg"].replace("%2F", "/")
    assert "Authorization=Bearer X-7" in answer["Message"] and answer["error_msg"] == answer["msg"]


async def test_once_prints_no_secret_in_any_encoding(start_sim, tmp_path) -> None:
    targets, _ = await start_echoing_vendors(start_sim)
    config = tmp_path / "monitord.yml"
    config.write_text(json.dumps({"global": {"state_dir": str(tmp_path / "state")}, "targets": targets}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitord", "once", "--config.file", str(config), "--log.format", "json",
        cwd=str(ROOT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    out, err = stdout.decode(), stderr.decode()
    assert proc.returncode == 1, err
    for name in ("avd-a", "avd-b", "rtc-a", "rtc-b", "zg", "pv"):
        assert f"target {name} failed" in err, err
    assert "echo:" in err, "the vendors' quoted texts reach stderr (scrubbed)"
    assert redact.REDACTED in err, "something to scrub was there"
    state = "".join(p.read_text(errors="replace") for p in (tmp_path / "state").glob("*") if p.is_file())
    assert leaks(out + err + state) == []


async def test_daemon_logs_pages_metrics_and_state_hold_no_secret(start_sim, make_daemon, captured_logs,
                                                                  aiohttp_client, tmp_path) -> None:
    targets, _ = await start_echoing_vendors(start_sim)
    daemon = make_daemon(targets)
    outcomes = await daemon.poll_all_once()
    assert not any(o.ok for o in outcomes.values()), outcomes
    await daemon.poll_all_once()  # a second round: logs only say what changed
    client = await aiohttp_client(build_app(daemon))
    texts = [captured_logs.getvalue(), *(o.detail for o in outcomes.values())]
    for path in ("/", "/api/v1/status", "/metrics", "/-/ready", "/-/healthy"):
        texts.append(await (await client.get(path)).text())
    # The callback and registration APIs: canaries in query strings, headers and bodies, accepted
    # and refused; their answers are HTTP bodies too.
    c = CANARIES
    cb = "/api/v1/targets/rtc-a/record-events"
    answers = [
        await client.post(cb, params={"secret": c["rtc_callback"]},
                          json={"event_type": "RECORD_FILE_COMPLETE", "app_id": huawei_rtc.APPS[0],
                                "record_duration": 12}),
        await client.post(cb, params={"secret": c["rtc_callback"]}, data=f"not json {c['rtc_sk']}"),
        await client.post(cb, params={"secret": c["rtc_callback"] + "x"}, json={}),
        await client.post("/api/v1/targets/zg/tasks", headers={"Authorization": f"Bearer {c['zego_api_token']}"},
                          json={"task_id": "CanaryTask1", "note": c["zego_server_secret"]}),
        await client.post("/api/v1/targets/zg/tasks", headers={"Authorization": f"Bearer {c['zego_api_token']}"},
                          json={"task_id": "CanaryTask1"}),
        await client.get("/api/v1/targets/zg/tasks", headers={"Authorization": f"Bearer {c['zego_api_token']}"}),
        *[await client.post("/api/v1/targets/rtc-b/record-events", data=body, headers={
            "X-Rtc-Rand": rand, "X-Rtc-Timestamp": stamp,
            "X-Rtc-Signature": signature(c["rtc_callback_key"], "r", stamp, body)})
          for rand, body in (("r", b"{}"), ("x", c["rtc_callback_key"].encode()))
          for stamp in [str(int(time.time()))]],
    ]
    assert [a.status for a in answers] == [200, 400, 403, 400, 201, 200, 200, 403]
    texts += [await a.text() for a in answers]
    texts.append(await (await client.get("/metrics")).text())
    state_dir = tmp_path / "state"
    files = [p for p in state_dir.glob("*") if p.is_file()]
    assert files, "the sources wrote state"
    texts += [p.read_text(errors="replace") for p in files]
    everything = "\n".join(texts)
    assert "echo:" in everything and redact.REDACTED in everything
    assert leaks(everything) == []


@pytest.mark.parametrize("secret", ["a", "ab", "dmi", "edac"])
async def test_a_short_secret_does_not_mangle_the_logs(start_sim, make_daemon, captured_logs, secret) -> None:
    """A one-character password is legal config; it must not turn every "a" of every log line, or
    the marker of another redaction, into garbage."""
    url, _ = await start_sim(endpoint, password=secret)
    daemon = make_daemon([{"name": "ep", "source": "endpoint", "url": f"{url}/d/room-101",
                           "username": endpoint.DEFAULT_USER, "password": secret, "timeout": "5s"}])
    outcome = await daemon.runtime("ep").run_once()
    assert outcome.ok, outcome.detail
    await sim_faults(url, status=503)
    outcome = await daemon.runtime("ep").run_once()
    assert outcome.reason == "http_5xx" and "HTTP 503 from http://127.0.0.1" in outcome.detail
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    failing = [e for e in lines if e["event"] == "target_failing"]
    assert failing and failing[0]["detail"] == outcome.detail
    assert all(redact.REDACTED not in line for line in captured_logs.getvalue().splitlines())
