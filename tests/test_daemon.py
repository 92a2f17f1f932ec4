"""The daemon as a whole: scheduling, transitions in the log, secrets, reload, web endpoints, CLI."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from helpers import log_events, parse_exposition, value
from test_endpoint import faults, knob, target

from monitord import logs
from monitord.app import Daemon
from monitord.config import load
from monitord.simulators import endpoint as sim
from monitord.web import Surface, build_app

ROOT = Path(__file__).parent.parent


async def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_scheduler_keeps_polling_healthy_targets_while_one_hangs(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    await faults(url, hang=True, match="/d/stuck/")
    daemon = make_daemon(
        # Generous deadlines for "fine": a loaded CI machine must not make a healthy poll time out.
        [target(f"{url}/d/stuck", name="stuck", interval="4s", timeout="4s"),
         target(f"{url}/d/fine", name="fine", interval="1s", timeout="1s")],
        schedule=True, jitter=0,
    )
    fine, stuck = daemon.runtime("fine"), daemon.runtime("stuck")
    await wait_until(lambda: fine.polls >= 3 and stuck.polls >= 1)
    # While "stuck" spent its whole deadline hanging, "fine" went on at its own pace.
    assert fine.errors.total() == 0
    assert stuck.errors["timeout"] == stuck.polls
    assert fine.polls > stuck.polls


async def test_failure_and_recovery_are_logged_once_each(start_sim, make_daemon, captured_logs) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, timeout="1s")])
    rt = daemon.runtime("room")
    await rt.run_once()
    await faults(url, status=502)
    for _ in range(4):
        await rt.run_once()
    await faults(url, html=True)
    await rt.run_once()
    await faults(url)
    for _ in range(3):
        await rt.run_once()
    events = [e["event"] for e in log_events(captured_logs) if e.get("target") == "room"]
    assert events.count("target_failing") == 2, events  # once on failure, once on the change of reason
    assert events.count("target_recovered") == 1
    failing = [e for e in log_events(captured_logs) if e["event"] == "target_failing"]
    assert [e["reason"] for e in failing] == ["http_5xx", "bad_response"]
    assert failing[1]["previous_reason"] == "http_5xx"


async def test_no_secret_in_logs_metrics_or_errors(start_sim, make_daemon, captured_logs, aiohttp_client) -> None:
    secret = "Sup3r-Secret-Passw0rd"
    url, app = await start_sim(sim, scenario="fixed", password=secret)
    daemon = make_daemon([target(url, password=secret, timeout="1s")])
    rt = daemon.runtime("room")
    outcomes = [await rt.run_once()]
    for fault in ({"status": 500}, {"html": True}, {"truncated": True}, {"garbage": True}):
        await faults(url, **fault)
        outcomes.append(await rt.run_once())
    await faults(url)
    await knob(url, vendor_error=True)
    outcomes.append(await rt.run_once())
    logs.get("test").error("direct", detail=f"an accidental {secret} in a message")
    client = await aiohttp_client(build_app(daemon))
    page = await (await client.get("/")).text() + await (await client.get("/metrics")).text()
    everything = captured_logs.getvalue() + page + "".join(o.detail for o in outcomes)
    assert secret not in everything
    assert logs.REDACTED in captured_logs.getvalue(), "the scrubber caught the accidental one"


async def test_tls_verification_is_on_unless_a_target_turns_it_off(make_daemon, captured_logs) -> None:
    daemon = make_daemon([
        target("https://127.0.0.1:9", name="verified", timeout="2s"),
        target("https://127.0.0.1:9", name="unverified", timeout="2s", tls={"insecure_skip_verify": True}),
    ])
    ctx = daemon.http.ssl_for(daemon.config.target("verified").tls, "verified")
    import ssl

    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert daemon.http.ssl_for(daemon.config.target("unverified").tls, "unverified") is False
    daemon.http.ssl_for(daemon.config.target("unverified").tls, "unverified")
    warned = [e for e in log_events(captured_logs) if e["event"] == "tls_verification_disabled"]
    assert [e["target"] for e in warned] == ["unverified"], "logged once, for that target only"


def write_config(path: Path, targets: list[dict[str, Any]], state_dir: Path) -> None:
    path.write_text(yaml.safe_dump({"global": {"state_dir": str(state_dir)}, "targets": targets}))


async def test_reload_keeps_old_config_when_new_is_bad(start_sim, tmp_path, aiohttp_client) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    path = tmp_path / "monitord.yml"
    write_config(path, [target(url, name="a"), target(url, name="b")], tmp_path / "state")
    daemon = Daemon(load(path), config_path=path)
    daemon.start(schedule=False)
    try:
        client = await aiohttp_client(build_app(daemon, Surface(enable_lifecycle=True)))
        await daemon.poll_all_once()
        keep = daemon.runtime("a")

        path.write_text("targets: [{name: a, source: nope}]")
        resp = await client.post("/-/reload")
        assert resp.status == 500 and "targets[0].source: unknown source" in await resp.text()
        s = parse_exposition(await (await client.get("/metrics")).text())
        assert value(s, "monitord_config_last_reload_successful") == 0
        assert value(s, "monitord_target_up", target="b") == 1, "the old config stays in force"

        write_config(path, [target(url, name="a"), target(url, name="c")], tmp_path / "state")
        resp = await client.post("/-/reload")
        assert resp.status == 200
        assert {rt.name for rt in daemon.scheduler.runtimes()} == {"a", "c"}
        assert daemon.runtime("a") is keep, "an unchanged target keeps its runtime and session"
        s = parse_exposition(await (await client.get("/metrics")).text())
        assert value(s, "monitord_config_last_reload_successful") == 1
        assert value(s, "monitord_target_up", target="b") is None, "a removed target's series vanish"
    finally:
        await daemon.close()


async def test_health_ready_and_landing(start_sim, make_daemon, aiohttp_client) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, name="room-1")])
    client = await aiohttp_client(build_app(daemon))
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/-/ready")).status == 503
    await daemon.poll_all_once()
    assert (await client.get("/-/ready")).status == 200
    page = await (await client.get("/")).text()
    assert 'data-target="room-1"' in page and 'href="metrics"' in page
    assert (await client.post("/api/v1/targets/nope/x")).status == 404
    assert (await client.post("/api/v1/targets/room-1/x")).status == 404, "endpoints have no API"


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitord", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_once_prints_exposition_and_fails_naming_the_failed_target(start_sim, tmp_path) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    path = tmp_path / "monitord.yml"
    write_config(path, [target(url, name="good")], tmp_path / "state")
    code, out, err = await run_cli("once", "--config.file", str(path))
    assert code == 0, err
    assert value(parse_exposition(out), "rtc_endpoint_in_call", target="good") == 1

    write_config(path, [target(url, name="good"), target(url, name="locked", password="nope-nope")],
                 tmp_path / "state")
    code, out, err = await run_cli("once", "--config.file", str(path))
    assert code == 1
    assert "target locked failed: auth" in err
    assert value(parse_exposition(out), "monitord_target_up", target="locked") == 0


async def test_demo_command_serves_metrics(unused_tcp_port: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitord", "demo", "--web.listen-address", f"127.0.0.1:{unused_tcp_port}",
        "--simulate.base-port", "0", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("metrics: ") for line in lines):
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
            assert line, "demo exited early"
            lines.append(line)
        metrics_url = next(line for line in lines if line.startswith("metrics: ")).split(" ", 1)[1].strip()
        import aiohttp

        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                async with session.get(metrics_url) as resp:
                    s = parse_exposition(await resp.text())
                if value(s, "monitord_target_up", target="room-101") == 1:
                    break
                await asyncio.sleep(0.1)
        assert value(s, "monitord_target_up", target="room-101") == 1
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0, "SIGTERM is a clean shutdown"


async def test_a_poll_in_flight_during_reload_does_not_resurrect_a_removed_target(start_sim, tmp_path) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    path = tmp_path / "monitord.yml"
    write_config(path, [target(url, name="keep"), target(f"{url}/d/gone", name="gone", timeout="5s")],
                 tmp_path / "state")
    daemon = Daemon(load(path), config_path=path)
    daemon.start(schedule=False)
    try:
        await daemon.runtime("keep").run_once()
        # "gone" has no session yet, so retiring it needs no logout and is quick; its first poll
        # (session, login, call: 3 slow requests) is still running when the reload retires it.
        await faults(url, latency=0.7, match="/d/gone/")
        in_flight = asyncio.ensure_future(daemon.runtime("gone").run_once())
        await asyncio.sleep(0.2)
        write_config(path, [target(url, name="keep")], tmp_path / "state")
        assert await daemon.reload() == []
        await in_flight  # it finished after the reload removed its target
        s = parse_exposition(daemon.store.render().decode())
        assert value(s, "monitord_target_up", target="gone") is None
        assert value(s, "rtc_endpoint_in_call", target="gone") is None
        assert value(s, "rtc_endpoint_in_call", target="keep") == 1
    finally:
        await daemon.close()


async def test_sighup_reloads_the_running_daemon(start_sim, tmp_path, unused_tcp_port: int) -> None:
    import signal

    import aiohttp

    url, _ = await start_sim(sim, scenario="fixed")
    path = tmp_path / "monitord.yml"
    write_config(path, [target(url, name="first", interval="1s", timeout="1s")], tmp_path / "state")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitord", "run", "--config.file", str(path),
        "--web.listen-address", f"127.0.0.1:{unused_tcp_port}", cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )

    async def up(name: str) -> float | None:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"http://127.0.0.1:{unused_tcp_port}/metrics") as resp:
                        found = value(parse_exposition(await resp.text()), "monitord_target_up", target=name)
                        if found is not None:
                            return found
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        return None

    try:
        assert await up("first") == 1
        write_config(path, [target(url, name="second", interval="1s", timeout="1s")], tmp_path / "state")
        proc.send_signal(signal.SIGHUP)
        assert await up("second") == 1
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{unused_tcp_port}/metrics") as resp:
                s = parse_exposition(await resp.text())
        assert value(s, "monitord_target_up", target="first") is None
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
