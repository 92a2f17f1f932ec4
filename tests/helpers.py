"""Helpers for tests (importable as `helpers`; fixtures live in conftest.py)."""

from __future__ import annotations

import io
import json
import shutil
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_exposition(text: str) -> Series:
    """(sample name, sorted labels) -> value, through prometheus_client's own parser."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(series: Series, name: str, **labels: str) -> float | None:
    """The value of the one series `name` whose labels include `labels`; None if absent."""
    hits = [v for (n, ls), v in series.items() if n == name and set(labels.items()) <= set(ls)]
    if len(hits) > 1:
        raise AssertionError(f"{name}{labels} matches {len(hits)} series")
    return hits[0] if hits else None


def names(series: Series) -> set[str]:
    return {n for n, _ in series}



def log_events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def promtool() -> str | None:
    return shutil.which("promtool")


async def sim_knob(url: str, kind: str, **body: Any) -> dict[str, Any]:
    """POST a vendor knob to a simulator (`/_sim/<kind>`); returns its JSON answer."""
    import aiohttp

    async with aiohttp.ClientSession() as s, s.post(f"{url}/_sim/{kind}", json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()  # type: ignore[no-any-return]


async def sim_faults(url: str, **body: Any) -> None:
    """Set the generic transport faults of a simulator; no arguments clears them."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        if body:
            async with s.post(f"{url}/_sim/faults", json=body) as r:
                assert r.status == 200, await r.text()
        else:
            async with s.delete(f"{url}/_sim/faults") as r:
                assert r.status == 200


# Self-metrics that change from run to run (durations, wall-clock times, versions, the process's
# own figures): not golden. Their # HELP/# TYPE lines are.
VOLATILE = ("monitord_poll_duration_seconds", "monitord_last_success_timestamp_seconds",
            "monitord_last_data_timestamp_seconds",
            "monitord_config_last_reload_success_timestamp_seconds", "monitord_build_info",
            "monitord_source_poll_duration_seconds_", "process_", "python_")


def stable_lines(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith(VOLATILE))


def assert_golden(path: Any, exposition: str) -> None:
    """The exposition, less its volatile lines, equals the golden file.
    MONITORD_UPDATE_GOLDEN=1 rewrites the file instead (review the diff before committing)."""
    import os

    text = stable_lines(exposition)
    if os.environ.get("MONITORD_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


async def assert_promtool_clean(body: bytes) -> None:
    """`promtool check metrics` reports nothing on this text-format exposition. Without promtool
    the test skips, except under MONITORD_REQUIRE_E2E=1 (CI), where that is a failure."""
    import asyncio
    import os
    import subprocess

    import pytest

    tool = promtool()
    if tool is None:
        if os.environ.get("MONITORD_REQUIRE_E2E"):
            pytest.fail("promtool is required in CI")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    result = await asyncio.to_thread(subprocess.run, [tool, "check", "metrics"], input=body,
                                     capture_output=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout.decode(), result.stderr.decode())


# How the shared HTTP layer maps transport faults (simulators/base.py knobs) to poll-error
# reasons; each source's fault test adds the statuses its vendor gives a meaning of its own.
TRANSPORT_FAULTS: list[tuple[dict[str, Any], str]] = [
    ({"status": 503}, "http_5xx"),
    ({"status": 503, "html": True}, "http_5xx"),
    ({"html": True}, "bad_response"),
    ({"garbage": True}, "bad_response"),
    ({"truncated": True}, "bad_response"),
    ({"huge": True}, "too_large"),
    ({"latency": 5.0}, "timeout"),
    ({"hang": True}, "timeout"),
    ({"reset": True}, "connect"),
]
