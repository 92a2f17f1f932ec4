"""The metric naming rule, checked on every metric table.

- The exporter's own health (polls, errors, budgets, tokens, bans, what it dropped or skipped)
  is marked `health=True` on its MetricDef and named `monitord_...`; a source's own health
  metric `monitord_<source>_...`.
- What the vendor reports is `health=False` (the default) and named `rtc_...`, and its name
  carries none of the words that describe the exporter's work (HEALTH_WORDS).

Metrics that break the rule today are listed in ALLOWED, per source, for their owners to rename
(NAMING.md at the repository's parent has the list and the rule). The list only shrinks: a
metric that breaks the rule and is not listed fails, and so does a listed one that no longer
breaks it (take it off the list with the rename).
"""

from __future__ import annotations

from typing import Any

import pytest

from examples.rooms_source import RoomsSource
from monitord import process, selfmetrics
from monitord.metrics import MetricDef
from monitord.sources import REGISTRY, shared

# Words that say what the exporter did, not what the vendor measured; matched against the
# underscore-separated parts of a name (phrases with their underscore).
HEALTH_WORDS = frozenset({
    "error", "errors", "dropped", "skipped", "queried", "query", "queries", "watched", "overflow", "banned",
    "ban", "throttled", "requests", "request", "token", "tokens", "fetches", "refreshes", "rejected", "waits",
    "budget", "answers", "age", "polls", "retries", "renewals", "logins", "logouts", "removed", "over_limit",
})
# The client libraries' standard process metrics: health, under the names every dashboard knows.
STANDARD_PREFIXES = ("process_", "python_")

ALLOWED: dict[str, set[str]] = {
    "avd": set(),
    "endpoint": set(),
    "huawei_rtc": {
        "monitord_huawei_rtc_budget_requests_per_minute",
        "monitord_huawei_rtc_budget_throttled_waits",
        "monitord_huawei_rtc_budget_used_requests",
        "monitord_huawei_rtc_callbacks_rejected",
        "monitord_huawei_rtc_dimension_values_dropped",
        "monitord_huawei_rtc_planned_refresh_period_seconds",
        "monitord_huawei_rtc_refresh_age_seconds",
        "monitord_huawei_rtc_requests",
        "monitord_huawei_rtc_token_refreshes",
        "monitord_huawei_rtc_vendor_throttled",
    },
    "polyv": set(),
    "zego": set(),
}


def health_words(name: str) -> set[str]:
    parts = set(name.split("_"))
    padded = f"_{name}_"
    return {w for w in HEALTH_WORDS if (w in parts if "_" not in w else f"_{w}_" in padded)}


def problems(metric: MetricDef, source: str | None) -> list[str]:
    """What is wrong with `metric`'s name in the table of `source` (None: the daemon's own)."""
    name = metric.name
    if metric.health:
        prefix = f"monitord_{source}_" if source else "monitord_"
        if source is None and name.startswith(STANDARD_PREFIXES):
            return []
        return [] if name.startswith(prefix) else [f"exporter health must be named {prefix}..."]
    if name.startswith("monitord_"):
        return ["named as exporter health but not marked health=True on its MetricDef"]
    out = [] if name.startswith("rtc_") else ["vendor data must be named rtc_..."]
    words = health_words(name)
    if words:
        out.append(f"vendor data named with exporter words {sorted(words)}: if it is the exporter's own health, "
                   f"name it monitord_{source}_... with health=True")
    return out


def flagged(metrics: Any, source: str | None) -> dict[str, list[str]]:
    return {m.name: p for m in metrics if (p := problems(m, source))}


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_source_metric_names_follow_the_rule(kind: str) -> None:
    found = flagged(REGISTRY[kind].metrics, kind)
    allowed = ALLOWED.get(kind, set())
    new = {name: why for name, why in found.items() if name not in allowed}
    assert not new, f"{kind}: metrics that break the naming rule: {new}"
    fixed = sorted(allowed - set(found))
    assert not fixed, f"{kind}: {fixed} follow the rule now: take them off ALLOWED in tests/test_naming.py"


def test_every_source_has_an_allow_list_entry_to_shrink() -> None:
    assert set(ALLOWED) <= set(REGISTRY)


def test_the_daemons_own_metrics_are_health() -> None:
    own = [v for v in vars(selfmetrics).values() if isinstance(v, MetricDef)] + list(process.RUNTIME)
    assert len(own) > 30
    assert all(m.health for m in own), [m.name for m in own if not m.health]
    assert flagged(own, None) == {}


def test_shared_families_are_vendor_data() -> None:
    assert flagged(shared.SHARED, "any") == {}
    assert not any(m.health for m in shared.SHARED)


def test_the_readme_example_follows_the_rule() -> None:
    assert flagged(RoomsSource.metrics, RoomsSource.kind) == {}


@pytest.mark.parametrize(("metric", "source", "expected"), [
    (MetricDef("rtc_polyv_channel_errors", "counter", "x"), "polyv", ["exporter words ['errors']"]),
    (MetricDef("rtc_recording_tasks_over_limit", "counter", "x"), "zego", ["exporter words ['over_limit']"]),
    (MetricDef("rtc_stream_errors_concealed", "gauge", "x"), "s", ["exporter words ['errors']"]),
    (MetricDef("rtc_avd_recording_storage_bytes", "gauge", "x", unit="bytes"), "avd", []),  # "age" is not "storage"
    (MetricDef("monitord_polyv_bans", "counter", "x"), "polyv", ["not marked health=True"]),
    (MetricDef("monitord_zego_watched", "gauge", "x", health=True), "polyv", ["named monitord_polyv_..."]),
    (MetricDef("monitord_zego_watched", "gauge", "x", health=True), "zego", []),
    (MetricDef("polyv_live", "gauge", "x"), "polyv", ["named rtc_..."]),
    (MetricDef("process_open_fds", "gauge", "x", health=True), None, []),
    (MetricDef("process_open_fds", "gauge", "x", health=True), "zego", ["named monitord_zego_..."]),
])
def test_the_rule_can_fail(metric: MetricDef, source: str | None, expected: list[str]) -> None:
    got = problems(metric, source)
    assert len(got) == len(expected)
    for text, part in zip(got, expected, strict=True):
        assert part in text
