"""The status page as a person sees it: loaded in headless Chromium while a target fails, another
is stale and vendor budgets are in use; and the same facts as JSON at /api/v1/status."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from test_endpoint import target

from monitord import status
from monitord.simulators import endpoint, huawei_rtc, polyv
from monitord.web import build_app

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "status-page.png"
WRONG_PASSWORD = "Wrong-Pass-7731"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("MONITORD_REQUIRE_E2E"):
            pytest.fail("chromium is required in CI (.ci/run installs it)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def browse(url: str, profile: Path, *mode: str) -> subprocess.CompletedProcess[bytes]:
    """Headless Chromium on one URL, offline apart from 127.0.0.1 (as air-gapped as it gets)."""
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", "--hide-scrollbars",
            "--window-size=1400,1000", *mode, url]
    result = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return result


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color in (2, 6) and interlace == 0
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        pixels.extend(tuple(line[x:x + 3]) for x in range(0, stride, channels))  # type: ignore[misc]
        previous = line
    return width, height, pixels


def visible_text(dom: str) -> str:
    dom = re.sub(r"(?s)<(style|script|head)\b.*?</\1>", " ", dom)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def row(dom: str, attribute: str, name: str) -> str:
    found = re.search(rf'(?s)<tr[^>]*{attribute}="{re.escape(name)}"[^>]*>.*?</tr>', dom)
    assert found, f"no row {attribute}={name}"
    return found.group(0)


async def test_status_page_in_a_browser_shows_what_is_wrong(start_sim, make_daemon, aiohttp_server,
                                                            tmp_path: Path) -> None:
    ep_url, _ = await start_sim(endpoint, scenario="fixed")
    pv_url, _ = await start_sim(polyv)
    rtc_url, _ = await start_sim(huawei_rtc)
    now = [time.time()]
    rtc = {**huawei_rtc.demo_targets(rtc_url)[0], "interval": "10s", "timeout": "8s"}
    daemon = make_daemon(
        [target(ep_url, name="boardroom"), target(ep_url, name="lobby-stale"),
         target(ep_url, name="cafeteria", password=WRONG_PASSWORD),
         *polyv.demo_targets(pv_url)[:1], rtc],
        clock=lambda: now[0],
    )
    await daemon.poll_all_once()
    # Two minutes on, every target polls again but one: its data is now stale.
    now[0] += 120
    for rt in daemon.scheduler.runtimes():
        if rt.name != "lobby-stale":
            await rt.run_once()
    server = await aiohttp_server(build_app(daemon), host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"

    dom = (await asyncio.to_thread(browse, f"{base}/", tmp_path / "profile", "--dump-dom")).stdout.decode()
    text = visible_text(dom)
    failing = row(dom, "data-target", "cafeteria")
    assert 'data-state="failing"' in failing and "row-failing" in failing
    assert "auth" in visible_text(failing) and "login rejected" in visible_text(failing)
    assert "never" in visible_text(failing), "a target that never succeeded has no data age"
    stale = row(dom, "data-target", "lobby-stale")
    assert 'data-state="stale"' in stale and "no new data" in visible_text(stale)
    assert "2m" in visible_text(stale), "its data age is shown"
    healthy = row(dom, "data-target", "boardroom")
    assert 'data-state="up"' in healthy and "row-" in healthy and "row-failing" not in healthy
    # The worst rows come first, so they are what a person sees first.
    order = [m.group(1) for m in re.finditer(r'<tr[^>]*data-target="([^"]+)"', dom)]
    assert order[:2] == ["cafeteria", "lobby-stale"], order
    assert re.search(r"5 targets 3 up 1 failing 1 stale", text), text[:300]
    assert "<title>monitord: 1 failing</title>" in dom
    # Per target: interval, last poll duration, series, parse errors, polls.
    assert re.search(r"boardroom endpoint up - 2m just now \d+ ms 10s [1-9]\d* 0 2\b", text), text
    # Vendor accounts: the SparkRTC budget in use, Polyv's ban state.
    account = visible_text(row(dom, "data-account", daemon.runtime(rtc["name"]).source.account_status().account))
    assert re.search(r"\b[1-9]\d* / 30 data requests per minute", account) and "not throttled" in account
    assert "this daemon's IP" in text and "at most 400 requests per 10 s" in text
    # Reload state, version, links.
    assert "configuration loaded" in text and "0.1.0" in text
    for uid, _ in status.DASHBOARDS:
        assert uid in text
    assert status.RUNBOOKS_URL in dom and 'href="metrics"' in dom
    # Air-gapped and secret-free: nothing fetched from elsewhere, no credential anywhere.
    assert not re.search(r"<(script|img|link|iframe)\b|@import|url\(", dom, re.I)
    for secret in (WRONG_PASSWORD, endpoint.DEFAULT_PASSWORD, polyv.DEFAULT_APP_SECRET, huawei_rtc.SECRET_KEY,
                   huawei_rtc.ACCESS_KEY, "demo-callback-secret"):
        assert secret not in dom

    shot = tmp_path / "status.png"
    await asyncio.to_thread(browse, f"{base}/", tmp_path / "profile", f"--screenshot={shot}")
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1400, 1000)
    colours = set(pixels)
    assert (0xB3, 0x26, 0x1E) in colours, "the failing badge is red"
    assert sum(1 for p in pixels if p == (0xFD, 0xEC, 0xEA)) > 5000, "the failing row is tinted red"
    assert sum(1 for p in pixels if p == (0xFF, 0xF4, 0xE0)) > 5000, "the stale row is tinted amber"
    if os.environ.get("MONITORD_UPDATE_SCREENSHOT"):
        SCREENSHOT.write_bytes(shot.read_bytes())

    # The same facts for tooling.
    async with __import__("aiohttp").ClientSession() as session, session.get(f"{base}/api/v1/status") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        facts: dict[str, Any] = await resp.json()
    by_name = {t["name"]: t for t in facts["targets"]}
    assert by_name["cafeteria"]["state"] == "failing" and by_name["cafeteria"]["reason"] == "auth"
    assert by_name["lobby-stale"]["state"] == "stale" and by_name["lobby-stale"]["data_age_seconds"] >= 120
    assert by_name["boardroom"]["last_poll_duration_seconds"] > 0 and by_name["boardroom"]["interval_seconds"] == 10
    assert facts["summary"] == {"targets": 5, "failing": 1, "stale": 1, "pending": 0, "up": 3}
    assert facts["config"]["last_reload_successful"] is True
    rtc_account = next(a for a in facts["accounts"] if a["source"] == "huawei_rtc")
    assert rtc_account["limit"] == 30 and rtc_account["used"] >= 1 and rtc_account["throttled"] is False
    assert WRONG_PASSWORD not in json.dumps(facts)


def test_readme_shows_the_status_page_and_its_dashboards_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/status-page.png)" in readme and SCREENSHOT.is_file()
    width, height, _ = png_pixels(SCREENSHOT.read_bytes())
    assert width >= 1000 and height >= 600
    uids = {json.loads(p.read_text())["uid"] for p in (ROOT / "dashboards").glob("*.json")}
    assert {uid for uid, _ in status.DASHBOARDS} <= uids
    assert f"Runbook base URL: <{status.RUNBOOKS_URL}>" in (ROOT / "docs" / "runbooks.md").read_text()


async def test_status_says_when_a_reload_failed(start_sim, tmp_path: Path, aiohttp_client) -> None:
    import yaml

    from monitord.app import Daemon
    from monitord.config import load

    url, _ = await start_sim(endpoint, scenario="fixed")
    path = tmp_path / "monitord.yml"
    path.write_text(yaml.safe_dump({"targets": [target(url, name="room-1")]}))
    daemon = Daemon(load(path), config_path=path)
    daemon.start(schedule=False)
    try:
        client = await aiohttp_client(build_app(daemon))
        await daemon.poll_all_once()
        ok = await (await client.get("/api/v1/status")).json()
        assert ok["config"] == {"file": str(path), "last_reload_successful": True,
                                "last_reload_success_time": daemon.reload_time}
        path.write_text("targets: [{name: room-1}]\n")
        assert await daemon.reload()
        failed = await (await client.get("/api/v1/status")).json()
        assert failed["config"]["last_reload_successful"] is False
        assert failed["config"]["last_reload_success_time"] == ok["config"]["last_reload_success_time"]
        page = visible_text(await (await client.get("/")).text())
        assert "reload FAILED, previous config in force" in page and str(path) in page
        assert "room-1 endpoint up" in page, "the previous config keeps polling"
    finally:
        await daemon.close()
