"""The command line as a newcomer meets it: the README's simulator walkthrough run as written,
help texts, dry-running a config without its secrets, `once` verifying every target, the demo
cleaning up after itself, and package data that matches the tree."""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shlex
import signal
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from helpers import parse_exposition, value

from monitord import simulators
from monitord.__main__ import _parser
from monitord.simulators import avd, endpoint, huawei_rtc, polyv, zego

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# The CLI runs from a scratch directory, as the README says; the worktree's code comes first.
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def free_port_block(count: int) -> int:
    """A base port with `count` consecutive free ports on 127.0.0.1 (tests never use fixed ports)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no block of free ports")


def readme_walkthrough() -> list[str]:
    """The command lines of the README's "Try it against the simulators" block, as written."""
    section = README.read_text().split("## Try it against the simulators\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


async def run(argv: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=ENV, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def wait_for_metrics(url: str, predicate: Any, timeout: float = 90) -> dict[Any, float]:
    deadline = asyncio.get_running_loop().time() + timeout
    series: dict[Any, float] = {}
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(url) as resp:
                    series = parse_exposition(await resp.text())
                if predicate(series):
                    return series
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never satisfied the condition; last: {sorted(series)[:20]}")


async def test_readme_simulator_walkthrough_works_as_written(tmp_path: Path) -> None:
    lines = readme_walkthrough()
    commands = [shlex.split(line.rstrip("&")) for line in lines]
    assert [c[:2] for c in commands] == [["monitord", "simulate"], ["monitord", "simulate"],
                                         ["monitord", "check-config"], ["monitord", "once"], ["monitord", "run"]]
    # Tests may not use the default ports (other runs share the machine): the only change made to
    # the README's commands is the port flags they document.
    base = free_port_block(5)
    listen = f"127.0.0.1:{free_port_block(1)}"
    procs: list[asyncio.subprocess.Process] = []
    try:
        for line, words in zip(lines, commands, strict=True):
            background = line.endswith("&")
            stdout_file = None
            if ">" in words:
                at = words.index(">")
                stdout_file, words = tmp_path / words[at + 1], words[:at]
            argv = [sys.executable, "-m", "monitord", *words[1:]]
            if words[1] == "simulate":
                argv += ["--simulate.base-port", str(base)]
            if words[1] == "run":
                argv += ["--web.listen-address", listen]
            if background or words[1] == "run":
                proc = await asyncio.create_subprocess_exec(*argv, cwd=tmp_path, env=ENV,
                                                            stdout=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.DEVNULL)
                procs.append(proc)
                if words[1] == "simulate":
                    await wait_for_port(base + 4)
                continue
            code, out, err = await run(argv, tmp_path)
            assert code == 0, f"{line}: exit {code}\n{err[-3000:]}"
            if stdout_file is not None:
                stdout_file.write_text(out)
            if words[1] == "check-config":
                assert "OK, 9 target(s)" in out
            if words[1] == "once":
                s = parse_exposition(out)
                ups = {dict(ls)["target"]: v for (n, ls), v in s.items() if n == "monitord_target_up"}
                assert len(ups) == 9 and set(ups.values()) == {1.0}, ups
                # Every source answered with data, huawei_rtc included (its budget is assumed spent
                # at start, so `once` waited for room in it rather than reporting up unasked).
                for name in ("room-101", "sparkrtc", "sparkrtc-iam", "polyv-events", "zego-recording",
                             "avd-server"):
                    assert value(s, "monitord_target_series", target=name), name
        config = yaml.safe_load((tmp_path / "simulators.yml").read_text())
        assert all("assume_budget_spent_at_start" not in t for t in config["targets"]), \
            "the printed config keeps production defaults"
        await wait_for_metrics(
            f"http://{listen}/metrics",
            lambda s: sum(1 for (n, _), v in s.items() if n == "monitord_target_up" and v == 1) == 9,
        )
        # `once` and then `run` on the same SparkRTC accounts stayed within the vendor's budget.
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{base + simulators.PORT_OFFSETS['huawei_rtc']}/_sim/state") as r:
                state = await r.json()
        assert state["accepted"] >= 2 and state["throttled"] == 0, state
    finally:
        for proc in reversed(procs):
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT if proc is procs[-1] else signal.SIGTERM)
        for proc in procs:
            await asyncio.wait_for(proc.wait(), timeout=30)


async def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_simulator_credentials_and_device_paths_are_in_the_readme() -> None:
    text = README.read_text()
    facts = [endpoint.DEFAULT_USER, endpoint.DEFAULT_PASSWORD, "/d/DEVICE/action.cgi",
             huawei_rtc.PROJECT_ID, huawei_rtc.ACCESS_KEY, huawei_rtc.SECRET_KEY, huawei_rtc.IAM_DOMAIN,
             huawei_rtc.IAM_USER, huawei_rtc.IAM_PASSWORD, *huawei_rtc.APPS,
             polyv.DEFAULT_APP_ID, polyv.DEFAULT_APP_SECRET, polyv.SECOND_APP_ID, polyv.SECOND_APP_SECRET,
             str(zego.DEFAULT_APP_ID), zego.DEFAULT_SECRET, *zego.DEMO_TASK_IDS,
             avd.DEFAULT_ACCESS_KEY, avd.DEFAULT_SECRET_KEY]
    section = text.split("## Try it against the simulators\n", 1)[1].split("\n## ", 1)[0]
    assert [f for f in facts if f not in section] == []
    for kind, offset in simulators.PORT_OFFSETS.items():
        assert re.search(rf"\| `{kind}` \| {simulators.BASE_PORT + offset} \|", section), kind


def _actions(parser: Any) -> list[tuple[str, Any]]:
    import argparse

    out = [("monitord", a) for a in parser._actions if not isinstance(a, argparse._SubParsersAction)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.extend((name, a) for a in sub._actions)
    return out


def test_every_flag_has_help_that_shows_its_default() -> None:
    parser = _parser()
    for command, action in _actions(parser):
        assert action.help, f"{command} {action.option_strings}: no help text"
    for command in ("run", "check-config", "once", "demo", "simulate", "catalog"):
        text = " ".join(parser._subparsers._group_actions[0].choices[command].format_help().split())  # type: ignore[union-attr]
        for _, action in [(c, a) for c, a in _actions(parser) if c == command]:
            if action.default not in (None, False, "==SUPPRESS==") and action.option_strings:
                assert re.search(rf"default:? {re.escape(str(action.default))}\b", text), (
                    command, action.option_strings, text)
    demo_help = " ".join(parser._subparsers._group_actions[0].choices["demo"].format_help().split())  # type: ignore[union-attr]
    assert "default: 10530" in demo_help and "default: 127.0.0.1:10520" in demo_help


async def test_version_and_check_config_help_explain_themselves(tmp_path: Path) -> None:
    code, out, _ = await run([sys.executable, "-m", "monitord", "--version"], tmp_path)
    assert code == 0 and re.fullmatch(r"monitord \d+\.\d+\.\d+\S*\n", out)
    code, out, _ = await run([sys.executable, "-m", "monitord", "check-config", "--help"], tmp_path)
    assert code == 0 and "--secrets.placeholders" in out and "EP_PASSWORD=x" in out


async def test_check_config_dry_runs_the_example_without_its_secrets(tmp_path: Path) -> None:
    example = str(ROOT / "deploy" / "config.example.yml")
    env_names = re.findall(r"^\s*[-\w ]*_env: ([A-Z_]+)", (ROOT / "deploy" / "config.example.yml").read_text(), re.M)
    assert env_names
    for name in env_names:
        ENV.pop(name, None)
    code, out, err = await run([sys.executable, "-m", "monitord", "check-config", "--config.file", example], tmp_path)
    assert code == 1 and "hint:" in err and "--secrets.placeholders" in err
    code, out, err = await run([sys.executable, "-m", "monitord", "check-config", "--config.file", example,
                                "--secrets.placeholders"], tmp_path)
    assert code == 0, err
    assert f"placeholders used for {len(set(env_names))} secret(s)" in out
    assert all(f"env {name}" in out for name in env_names)
    # Everything else is still checked.
    bad = tmp_path / "bad.yml"
    bad.write_text((ROOT / "deploy" / "config.example.yml").read_text().replace("interval: 15s", "interval: 15 parsecs"))
    code, out, err = await run([sys.executable, "-m", "monitord", "check-config", "--config.file", str(bad),
                                "--secrets.placeholders"], tmp_path)
    assert code == 1 and "targets[0].interval" in err


# Wrong credential of each simulator's demo target: `once` must name the target and the reason.
WRONG = {"endpoint": "password", "avd": "secret_key", "polyv": "app_secret", "zego": "server_secret",
         "huawei_rtc": "sk"}


async def test_once_fails_naming_target_and_reason_on_wrong_credentials(start_sim, tmp_path: Path) -> None:
    targets = []
    for kind, key in WRONG.items():
        url, _ = await start_sim(simulators.SIMULATORS[kind])
        first = simulators.SIMULATORS[kind].demo_targets(url)[0]
        first[key] = "wrong-credential-123"
        first.pop("assume_budget_spent_at_start", None)
        targets.append(first)
    path = tmp_path / "wrong.yml"
    path.write_text(yaml.safe_dump({"targets": targets}))
    code, out, err = await run([sys.executable, "-m", "monitord", "once", "--config.file", str(path)], tmp_path)
    assert code == 1
    for target in targets:
        assert f"target {target['name']} failed: auth: " in err, err
        assert value(parse_exposition(out), "monitord_target_up", target=target["name"]) == 0
    assert "wrong-credential-123" not in out + err


async def test_once_verifies_huawei_rtc_within_an_assumed_spent_budget(start_sim, tmp_path: Path) -> None:
    url, app = await start_sim(huawei_rtc)
    target = huawei_rtc.demo_targets(url)[0]
    del target["assume_budget_spent_at_start"]  # production default: assume the last minute was spent
    path = tmp_path / "rtc.yml"
    path.write_text(yaml.safe_dump({"targets": [target]}))
    code, out, err = await run([sys.executable, "-m", "monitord", "once", "--config.file", str(path)], tmp_path)
    assert code == 0, err
    sim = app[huawei_rtc.SIM_KEY]
    assert sim.accepted >= 1 and sim.throttled == 0
    assert value(parse_exposition(out), "rtc_online_users", target=target["name"]) is not None
    # With a wrong key the same wait ends in a real, rejected request.
    target["sk"] = "wrong-credential-123"
    path.write_text(yaml.safe_dump({"targets": [target]}))
    code, out, err = await run([sys.executable, "-m", "monitord", "once", "--config.file", str(path)], tmp_path)
    assert code == 1 and f"target {target['name']} failed: auth" in err


async def test_once_fails_a_target_whose_poll_asked_nothing(start_sim, tmp_path: Path) -> None:
    url, _ = await start_sim(zego)
    target = {**zego.demo_targets(url)[0], "task_ids": []}
    path = tmp_path / "zego.yml"
    path.write_text(yaml.safe_dump({"targets": [target]}))
    code, _, err = await run([sys.executable, "-m", "monitord", "once", "--config.file", str(path)], tmp_path)
    assert code == 1 and "target zego-recording not verified: its poll sent no request" in err


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_demo_removes_its_state_directory(tmp_path: Path, stop: int) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitord", "demo", "--web.listen-address", f"127.0.0.1:{free_port_block(1)}",
        "--simulate.base-port", "0", cwd=tmp_path, env={**ENV, "TMPDIR": str(scratch)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        while not (line := (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode()).startswith("status"):
            assert line, "demo exited early"
        assert [p.name for p in scratch.iterdir() if p.name.startswith("monitord-demo-")], "demo state dir in TMPDIR"
    finally:
        proc.send_signal(stop)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    assert list(scratch.iterdir()) == []


def test_package_data_matches_the_tree() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    covered: set[Path] = set()
    for package, patterns in package_data.items():
        base = ROOT / package.replace(".", "/")
        for pattern in patterns:
            hits = [Path(h) for h in glob.glob(str(base / pattern))]
            assert hits, f"package data {package}: {pattern} matches no file"
            covered.update(hits)
    shipped = {p for p in (ROOT / "monitord").rglob("*")
               if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert shipped <= covered, f"files in the package that would not be installed: {sorted(shipped - covered)}"


def test_config_reference_speaks_the_config_syntax() -> None:
    from monitord.catalog import config_markdown
    from monitord.config import _parse_duration, _parse_size

    text = config_markdown()
    rows = {line.split("|")[1].strip().strip("`"): [c.strip() for c in line.split("|")[2:5]]
            for line in text.splitlines() if line.startswith("| `")}
    assert rows["apps[].id"][:2] == ["string", "required"]
    assert rows["apps[].room_id"][1] == "-"
    assert rows["apps"][0] == "list of mappings"
    assert rows["global.interval"][:2] == ["duration", "`30s`"]
    assert rows["global.max_body_bytes"][:2] == ["size", "`4MiB`"]
    assert rows["token_error_codes"][:2] == ["list of int", "`[40003]`"]
    assert rows["sdk_types"][:2] == ["list of `native`, `webrtc`", "`[native, webrtc]`"]
    assert rows["auth"][0] == "one of `aksk`, `token`"
    assert rows["tls.insecure_skip_verify"][1] == "`false`"
    for key, (kind, default, _) in rows.items():
        assert not re.search(r"\(|\b\d+\.0\b|'", default) or key == "web.listen_address", (key, default)
        if kind in ("duration", "size") and default.startswith("`"):
            parse = _parse_duration if kind == "duration" else _parse_size
            assert parse(default.strip("`")) > 0, key
    assert text in README.read_text(), "README's config reference is stale: python3 -m monitord.catalog"
