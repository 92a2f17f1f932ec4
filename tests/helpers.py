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
