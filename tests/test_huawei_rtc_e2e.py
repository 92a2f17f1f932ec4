"""A real Prometheus scrapes monitord polling the huawei_rtc simulator; every dashboard query,
with its template variables filled in, must return data."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from monitord.simulators import huawei_rtc as sim

pytestmark = pytest.mark.e2e
DASHBOARD = Path(__file__).parent.parent / "dashboards" / "huawei_rtc.json"
READY_DEADLINE = 30.0  # seconds: Prometheus start-up plus two scrapes on a loaded CI box


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(check, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition (not a timing assumption) until it holds or the deadline passes."""
    deadline = time.monotonic() + READY_DEADLINE
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_every_dashboard_query_returns_data(start_sim, make_daemon, clock, tmp_path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("MONITORD_REQUIRE_E2E"):
            pytest.fail("prometheus is required in CI (MONITORD_REQUIRE_E2E is set)")
        pytest.skip("prometheus not installed")
    from aiohttp.test_utils import TestServer

    from monitord.web import build_app

    url, _ = await start_sim(sim, clock=clock, budget_per_minute=100)
    target = {
        "name": "rtc",
        "source": "huawei_rtc",
        "endpoint": url,
        "project_id": sim.PROJECT_ID,
        "ak": sim.ACCESS_KEY,
        "sk": sim.SECRET_KEY,
        "apps": [{"id": sim.APPS[0]}],
        "interval": "60s",
        "timeout": "10s",
        "budget_per_minute": 100,
        "dimensions": ["region"],
        "assume_budget_spent_at_start": False,
        "callback_secret": "e2e-secret",
    }
    daemon = make_daemon([target], clock=clock)
    server = TestServer(build_app(daemon), host="127.0.0.1")
    await server.start_server()
    prom_port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: monitord\n    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
    )
    proc = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{prom_port}"
    try:
        async with aiohttp.ClientSession() as http:
            event = {"event_type": "RECORD_FILE_COMPLETE", "app_id": sim.APPS[0], "record_duration": 60}
            async with http.post(
                f"http://127.0.0.1:{server.port}/api/v1/targets/rtc/record-events",
                params={"secret": "e2e-secret"},
                json=event,
            ) as r:
                assert r.status == 200
            assert (await daemon.poll_all_once())["rtc"].ok

            async def query(expr: str) -> list[object]:
                try:
                    async with http.get(f"{base}/api/v1/query", params={"query": expr}) as r:
                        body = await r.json()
                except aiohttp.ClientError:
                    return []
                assert body.get("status") == "success", (expr, body)
                return list(body["data"]["result"])

            async def scraped_twice() -> bool:
                return bool(await query('count_over_time(monitord_target_up{target="rtc"}[1m]) >= 2'))

            await _until(scraped_twice, "two scrapes of monitord")
            dashboard = json.loads(DASHBOARD.read_text())
            for panel in dashboard["panels"]:
                for t in panel["targets"]:
                    expr = t["expr"].replace("$target", ".*").replace("$app", ".*").replace("$__rate_interval", "1m")
                    assert await query(expr), f"panel {panel['title']!r}: no data for {expr}"
    finally:
        proc.terminate()
        await proc.wait()
        await server.close()
