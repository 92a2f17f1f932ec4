"""Shared fixtures: simulators on 127.0.0.1 (real HTTP), daemons built from config dicts, and an
exposition parser. Nothing here patches code under test."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from monitord import logs
from monitord.app import Daemon
from monitord.config import parse
from monitord.simulators.base import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock(fixed=1_790_000_000.0)


@pytest.fixture
async def start_sim(aiohttp_server: Any) -> Callable[..., Any]:
    """start_sim(module, **create_app_kwargs) -> (base_url, app), served on 127.0.0.1."""

    async def start(module: Any, **kwargs: Any) -> tuple[str, web.Application]:
        app = module.create_app(**kwargs)
        server = await aiohttp_server(app, host="127.0.0.1")
        return f"http://127.0.0.1:{server.port}", app

    return start


@pytest.fixture
async def make_daemon(tmp_path: Any) -> AsyncIterator[Callable[..., Daemon]]:
    """make_daemon(targets, **global) -> a started but unscheduled Daemon (tests call
    run_once / poll_all_once themselves, so nothing depends on timing)."""
    daemons: list[Daemon] = []

    def make(targets: list[dict[str, Any]], schedule: bool = False, clock: Any = None, **global_: Any) -> Daemon:
        raw = {"global": {"state_dir": str(tmp_path / "state"), **global_}, "targets": targets}
        kwargs = {"clock": clock} if clock is not None else {}
        daemon = Daemon(parse(raw), **kwargs)
        daemon.start(schedule=schedule)
        daemons.append(daemon)
        return daemon

    yield make
    for daemon in daemons:
        await daemon.close()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line the daemon writes during the test, as JSON lines."""
    stream = io.StringIO()
    logs.configure("debug", json=True, stream=stream)
    yield stream
    logs.configure("info", json=True)


