"""Reload is all or nothing: a config that fails validation, or whose runtimes cannot be built,
leaves the running config untouched (targets polled, series intact), sets the reload gauge to 0,
logs `reload_failed` once per attempt and tells the HTTP caller what is wrong. Reading and
validating happen off the event loop, so scrapes go on during the reload of a big file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import yaml
from helpers import log_events, parse_exposition, value
from test_endpoint import target

from monitord.app import Daemon
from monitord.config import TargetConfig, load
from monitord.simulators import endpoint as sim
from monitord.sources import REGISTRY
from monitord.sources.endpoint import EndpointConfig, EndpointSource
from monitord.web import Surface, build_app

# POST /-/reload is served only with --web.enable-lifecycle.
LIFECYCLE = Surface(enable_lifecycle=True)


async def wait_until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def write(path: Path, targets: list[dict[str, Any]], **global_: Any) -> None:
    path.write_text(yaml.safe_dump({"global": {"state_dir": str(path.parent / "state"), **global_},
                                    "targets": targets}))


def good(url: str, **extra: Any) -> list[dict[str, Any]]:
    return [target(url, name="a", **extra), target(url, name="b", **extra)]


BAD_FILES: dict[str, tuple[str | bytes, str]] = {
    "nan-interval": ("targets: [{name: a, source: endpoint, url: 'http://127.0.0.1:9', username: u, "
                     "password: p, interval: .nan}]", "targets[0].interval: must be a finite duration"),
    "listen-port": ("web: {listen_address: '127.0.0.1:70000'}\ntargets: []",
                    "web.listen_address: port must be 0-65535"),
    "listen-not-hostport": ("web: {listen_address: localhost}\ntargets: []", "web.listen_address: must be HOST:PORT"),
    "state-dir-is-file": ("global: {state_dir: /etc/passwd}\ntargets: []",
                          "global.state_dir: '/etc/passwd' exists and is not a directory"),
    "huge-integer": ("global: {max_series_per_target: " + "9" * 5000 + "}", "Exceeds the limit"),
    "deep-nesting": ("targets: " + "[" * 50_000 + "]" * 50_000, "nested deeper than 64 levels"),
    "list-as-key": ("targets:\n  - ? [a, b]\n    : c", "a list or mapping cannot be a key"),
    "empty": ("", "the file is empty"),
    "not-utf8": (b"targets: [\xff\xfe]", "not UTF-8 text"),
    "unknown-source": ("targets: [{name: a, source: nope}]", "targets[0].source: unknown source 'nope'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_a_bad_file_leaves_the_old_config_running(case: str, start_sim, tmp_path, aiohttp_client,
                                                        captured_logs) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    path = tmp_path / "monitord.yml"
    write(path, good(url))
    daemon = Daemon(load(path), config_path=path)
    daemon.start(schedule=False)
    try:
        client = await aiohttp_client(build_app(daemon, LIFECYCLE))
        await daemon.poll_all_once()
        before = {rt.name: rt for rt in daemon.scheduler.runtimes()}

        content, message = BAD_FILES[case]
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        for attempt in (1, 2):  # a second reload of the same bad file fails again
            resp = await client.post("/-/reload")
            body = await resp.text()
            assert resp.status == 500 and message in body, body
            assert "Traceback" not in body
            s = parse_exposition(await (await client.get("/metrics")).text())
            assert value(s, "monitord_config_last_reload_successful") == 0
            for name in ("a", "b"):
                assert value(s, "monitord_target_up", target=name) == 1, "the old config stays in force"
                assert value(s, "rtc_endpoint_in_call", target=name) == 1
            assert {rt.name: rt for rt in daemon.scheduler.runtimes()} == before
            failed = [e for e in log_events(captured_logs) if e["event"] == "reload_failed"]
            assert len(failed) == attempt, "one log line per failed reload"
            assert any(message in p for p in failed[-1]["problems"])
        outcomes = await daemon.poll_all_once()
        assert all(o.ok for o in outcomes.values()), "the old targets are still polled"

        write(path, good(url))
        assert (await client.post("/-/reload")).status == 200
        s = parse_exposition(await (await client.get("/metrics")).text())
        assert value(s, "monitord_config_last_reload_successful") == 1
    finally:
        await daemon.close()


class ExplodingConfig(EndpointConfig):
    source: Literal["exploding"]  # type: ignore[assignment]


class ExplodingSource(EndpointSource):
    """A source whose constructor raises, as one reading a broken resource might: a stand-in
    for any runtime that cannot be built, registered next to the real sources."""

    kind: ClassVar[str] = "exploding"
    Config: ClassVar[type[TargetConfig]] = ExplodingConfig

    def __init__(self, config: Any, ctx: Any) -> None:
        raise RuntimeError(f"cannot build target {config.name}")


async def test_a_runtime_that_cannot_be_built_leaves_the_old_config_polling(start_sim, tmp_path, aiohttp_client,
                                                                           captured_logs) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    registry = {**REGISTRY, "exploding": ExplodingSource}
    path = tmp_path / "monitord.yml"
    write(path, good(url, interval="1s", timeout="1s"), jitter=0)
    daemon = Daemon(load(path, registry), config_path=path, registry=registry)
    daemon.start(schedule=True)
    try:
        client = await aiohttp_client(build_app(daemon, LIFECYCLE))
        a, b = daemon.runtime("a"), daemon.runtime("b")
        await wait_until(lambda: a.polls >= 1 and b.polls >= 1)
        http, state = daemon.http, daemon.state

        # "a" changes (so a new runtime for it is built first), the shared settings change (so
        # a new HTTP client and state store are built), and the last target cannot be built.
        write(path, [target(url, name="a", interval="2s", timeout="1s"), target(url, name="b", interval="1s",
                     timeout="1s"), {**target(url, name="c"), "source": "exploding"}],
              jitter=0.05, state_dir=str(tmp_path / "other-state"))
        resp = await client.post("/-/reload")
        body = await resp.text()
        assert resp.status == 500 and "RuntimeError: cannot build target c" in body, body
        assert daemon.runtime("a") is a and daemon.runtime("b") is b
        assert daemon.http is http and daemon.state is state and daemon.config.global_.jitter == 0
        assert [e["event"] for e in log_events(captured_logs)].count("reload_failed") == 1

        polls = a.polls
        await wait_until(lambda: a.polls >= polls + 2)  # still scheduled, every second
        s = parse_exposition(await (await client.get("/metrics")).text())
        assert value(s, "monitord_target_up", target="a") == 1, "the abandoned runtime took nothing out"
        assert value(s, "rtc_endpoint_in_call", target="a") == 1
        assert value(s, "monitord_config_last_reload_successful") == 0
    finally:
        await daemon.close()


async def test_scrapes_are_answered_while_a_10000_target_file_is_read(start_sim, tmp_path, aiohttp_client) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    path = tmp_path / "monitord.yml"
    write(path, [target(url, name="a")])
    daemon = Daemon(load(path), config_path=path)
    daemon.start(schedule=False)
    try:
        client = await aiohttp_client(build_app(daemon, LIFECYCLE))
        await daemon.poll_all_once()
        many = [target(url, name="a")] + [target(f"http://127.0.0.1:9/d/{i}", name=f"t{i}") for i in range(10_000)]
        write(path, many)

        reload = asyncio.ensure_future(daemon.reload())
        # Observable only if the loop is free while the file is read: read on the loop, the
        # phase would be over before this coroutine ran again.
        await wait_until(lambda: daemon.reload_phase == "reading")
        resp = await client.get("/metrics")
        s = parse_exposition(await resp.text())
        assert resp.status == 200 and value(s, "monitord_target_up", target="a") == 1
        assert not reload.done(), "the scrape was answered while the reload was still running"
        assert await reload == []
        assert len(daemon.config.targets) == 10_001
        assert sum(1 for _ in daemon.scheduler.runtimes()) == 10_001
    finally:
        await daemon.close()


async def test_a_reloaded_huawei_target_keeps_its_share_of_the_account_budget(start_sim, tmp_path, clock) -> None:
    """The new runtime of a changed target joins its account before the old one leaves: the
    account counts members, so the old one leaving does not take the new one out."""
    import test_huawei_rtc

    from monitord.simulators import huawei_rtc as huawei_sim

    url, _ = await start_sim(huawei_sim, clock=clock)
    path = tmp_path / "monitord.yml"
    write(path, [test_huawei_rtc.target(url, name="a"), test_huawei_rtc.target(url, name="b")])
    daemon = Daemon(load(path), config_path=path, clock=clock)
    daemon.start(schedule=False)
    try:
        budget = daemon.runtime("a").source.budget  # type: ignore[attr-defined]

        def holders() -> list[str]:
            return daemon.runtime("b").source.shared.holders("data-requests")  # type: ignore[no-any-return]

        assert holders() == ["a", "b"]
        write(path, [test_huawei_rtc.target(url, name="a", interval="120s"), test_huawei_rtc.target(url, name="b")])
        assert await daemon.reload() == []
        assert daemon.runtime("a").source.budget is budget  # type: ignore[attr-defined]
        assert holders() == ["a", "b"]
        assert daemon.runtime("a").source.planner.share() == 15  # type: ignore[attr-defined]

        write(path, [test_huawei_rtc.target(url, name="b")])
        assert await daemon.reload() == []
        assert holders() == ["b"]
        assert daemon.runtime("b").source.planner.share() == 30  # type: ignore[attr-defined]
    finally:
        await daemon.close()
