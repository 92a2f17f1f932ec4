"""Vendor simulators, one module per source kind, used by `monitord demo`, `monitord simulate`,
the tests and the benchmarks. Each module has `create_app(clock=...)` and
`demo_targets(base_url) -> list[dict]` (the demo config's entries for that simulator)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from aiohttp import web

from monitord.simulators import avd, endpoint, huawei_rtc, polyv, zego

SIMULATORS: dict[str, ModuleType] = {
    "avd": avd,
    "endpoint": endpoint,
    "huawei_rtc": huawei_rtc,
    "polyv": polyv,
    "zego": zego,
}

# Default ports of `monitord simulate` / `monitord demo`, next to the daemon's 10520: BASE_PORT
# plus a fixed offset per kind, so a config written against `simulate` keeps working as kinds are
# added.
BASE_PORT = 10530
PORT_OFFSETS: dict[str, int] = {"endpoint": 0, "huawei_rtc": 1, "polyv": 2, "zego": 3, "avd": 4}


@dataclass
class RunningSimulators:
    urls: dict[str, str]
    runners: list[web.AppRunner]
    apps: dict[str, web.Application]

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


async def start(host: str = "127.0.0.1", base_port: int = BASE_PORT,
                factory_kwargs: Callable[[str], dict[str, Any]] | None = None,
                time_scale: float = 1.0) -> RunningSimulators:
    """Start every simulator; base_port 0 picks free ports. time_scale divides each simulator's
    own timings (rate windows, bans, demo timelines), like global.time_scale the daemon's."""
    running = RunningSimulators({}, [], {})
    for kind in sorted(SIMULATORS):
        kwargs = {"time_scale": time_scale, **(factory_kwargs(kind) if factory_kwargs else {})}
        app = SIMULATORS[kind].create_app(**kwargs)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, base_port + PORT_OFFSETS[kind] if base_port else 0)
        await site.start()
        port = runner.addresses[0][1]
        running.urls[kind] = f"http://{host}:{port}"
        running.runners.append(runner)
        running.apps[kind] = app
    return running


def demo_config(urls: dict[str, str], time_scale: float = 1.0) -> dict[str, Any]:
    """The demo's config. Its targets keep production-like timings; time_scale (global.time_scale)
    divides them all, with the exporter's holds, retention and pacing, in one place."""
    targets: list[dict[str, Any]] = []
    for kind in sorted(urls):
        targets.extend(SIMULATORS[kind].demo_targets(urls[kind]))
    global_: dict[str, Any] = {"interval": "10s", "timeout": "5s"}
    if time_scale != 1:
        global_["time_scale"] = time_scale
    return {"global": global_, "targets": targets}


def urls_at(host: str, base_port: int) -> dict[str, str]:
    """Where `monitord simulate --simulate.host HOST --simulate.base-port N` serves each kind."""
    return {kind: f"http://{host}:{base_port + offset}" for kind, offset in sorted(PORT_OFFSETS.items())}


# Keys of the demo targets that only make the demo show data sooner; a config meant to be copied
# keeps the production default instead (the huawei_rtc budget then ramps up after a restart).
_DEMO_ONLY_KEYS = ("assume_budget_spent_at_start",)

_CONFIG_HEADER = """\
# monitord configuration for the built-in vendor simulators (`monitord simulate`).
# Printed by `monitord simulate --print-config`; check it with `monitord check-config`.
# The credentials below are the simulators' fixed, public test values. A real config keeps
# secrets out of the file: password_env: NAME or password_file: PATH (same for every secret key).
"""


def simulator_config(urls: dict[str, str]) -> str:
    """A ready-to-use YAML config polling the simulators at `urls`: the demo's targets, without
    the demo-only shortcuts."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # shared lists printed in full: no &id001 anchors in a file people edit

    raw = demo_config(urls)
    targets = []
    for target in raw["targets"]:
        ordered = {"name": target["name"], "source": target["source"]}
        ordered.update((k, v) for k, v in target.items() if k not in _DEMO_ONLY_KEYS)
        targets.append(ordered)
    raw["targets"] = targets
    return _CONFIG_HEADER + yaml.dump(raw, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=120)
