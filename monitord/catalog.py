"""The metric catalog, generated from the metric tables in code (README and docs/metrics.md are
checked against it by a test, so the documentation cannot drift)."""

from __future__ import annotations

from monitord import selfmetrics
from monitord.metrics import MetricDef, check_catalog
from monitord.sources import REGISTRY


def entries() -> list[tuple[str, MetricDef]]:
    """(where, metric) for every metric: "monitord" for self-metrics, else the source kind.
    A name shared by several sources appears once per source, with that source's labels."""
    rows: list[tuple[str, MetricDef]] = [("monitord", m) for m in selfmetrics.ALL]
    for kind in sorted(REGISTRY):
        rows.extend((kind, m) for m in REGISTRY[kind].metrics)
    check_catalog(m for _, m in rows)
    return rows


def markdown() -> str:
    lines = [
        "| metric | type | source | labels | help |",
        "|---|---|---|---|---|",
    ]
    for where, m in entries():
        labels = ", ".join(m.all_labels) or "-"
        lines.append(f"| `{m.sample_name}` | {m.type} | {where} | {labels} | {m.help} |")
    return "\n".join(lines) + "\n"
