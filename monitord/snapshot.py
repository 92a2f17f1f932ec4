"""Immutable per-target snapshots and the store a scrape reads from.

A poll builds a Snapshot; its sample lines are rendered once, when it is built. The Store swaps
snapshots in atomically (one dict assignment on the event loop) and caches the joined exposition
per format until something changes, so a scrape costs a dict lookup when nothing changed and a
join of cached strings when something did. A scrape never waits for a poll.
"""

from __future__ import annotations

import gzip
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from monitord.metrics import MetricDef, histogram_lines, sample_line
from monitord.normalize import Missing

# Label values are vendor text (site names can be 192 chars of any UTF-8); a bound keeps one
# odd value from bloating every scrape.
MAX_LABEL_VALUE_LENGTH: Final = 256


@dataclass(frozen=True)
class RenderedFamily:
    metric: MetricDef
    text: str
    series: int


@dataclass(frozen=True)
class Snapshot:
    """What one poll of one target produced: sample text per metric family, rendered once."""

    families: Mapping[str, RenderedFamily]
    series: int
    created_at: float

    @staticmethod
    def empty() -> Snapshot:
        return Snapshot(MappingProxyType({}), 0, time.time())


@dataclass
class BuildReport:
    """What a builder dropped, for the runtime's counters."""

    parse_errors: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)


class SnapshotBuilder:
    """Collects samples of one poll. Missing values never become samples; invalid ones are
    counted by field name (never by value: values are unbounded vendor text)."""

    def __init__(self, base_labels: Mapping[str, str], max_series: int = 10_000) -> None:
        self._base = tuple(base_labels.items())
        self._max_series = max_series
        self._lines: dict[str, list[str]] = {}
        self._metrics: dict[str, MetricDef] = {}
        self._seen: set[tuple[str, tuple[str, ...]]] = set()
        self.report = BuildReport()

    @property
    def series(self) -> int:
        return len(self._seen)

    def add(self, metric: MetricDef, value: float | Missing | None, field: str = "", /, **labels: str) -> bool:
        """Add one sample; `field` names the vendor field for parse-error counts (positional only, so
        a label may be called "field"). Returns whether it was added."""
        if value is None or value is Missing.ABSENT:
            return False
        if value is Missing.INVALID:
            self.report.parse_errors[field or metric.name] += 1
            return False
        try:
            value = float(value)
        except OverflowError:  # an int beyond float range
            value = math.inf
        if not math.isfinite(value):
            # The last line of defence: a source that let inf or NaN through (a sum that
            # overflowed, a product of huge factors) costs that sample, never the exposition.
            self.report.parse_errors[field or metric.name] += 1
            return False
        values = self._admit(metric, labels)
        if values is None:
            return False
        self._lines.setdefault(metric.name, []).append(sample_line(metric, values, value))
        return True

    def histogram(self, metric: MetricDef, bounds: Sequence[float], cumulative: Sequence[int], total: float,
                  **labels: str) -> bool:
        """One histogram series: cumulative counts per bound plus the +Inf count, and the sum."""
        if not math.isfinite(total):
            self.report.parse_errors[metric.name] += 1
            return False
        values = self._admit(metric, labels)
        if values is None:
            return False
        self._lines.setdefault(metric.name, []).append(histogram_lines(metric, values, bounds, cumulative, total))
        return True

    def _admit(self, metric: MetricDef, labels: Mapping[str, str]) -> tuple[str, ...] | None:
        """The series' label values, or None when it is a duplicate or over the series cap."""
        base_values = [v for k, v in self._base if k in metric.base_labels]
        # A stateset's state is a label named like the family (metrics.MetricDef.all_labels).
        own_names = (*metric.labels, metric.name) if metric.type == "stateset" else metric.labels
        try:
            own = [_clip(labels[name]) for name in own_names]
        except KeyError as exc:
            raise ValueError(f"{metric.name}: missing label {exc.args[0]}") from None
        if len(labels) != len(own_names):
            raise ValueError(f"{metric.name}: unexpected labels {sorted(set(labels) - set(own_names))}")
        values = (*base_values, *own)
        key = (metric.name, values)
        if key in self._seen:
            self.report.dropped["duplicate"] += 1
            return None
        if len(self._seen) >= self._max_series:
            self.report.dropped["series_limit"] += 1
            return None
        self._seen.add(key)
        existing = self._metrics.setdefault(metric.name, metric)
        if existing.type != metric.type:
            raise ValueError(f"{metric.name}: added as {metric.type} and {existing.type}")
        return values

    def info(self, metric: MetricDef, **labels: str) -> bool:
        """An info metric: value 1, the facts are in its labels. Empty facts stay empty strings."""
        return self.add(metric, 1.0, **labels)

    def state_set(self, metric: MetricDef, states: Iterable[str], current: str | None, **labels: str) -> None:
        """One series per possible state, 1 for the current one. An unknown current state is a
        parse error and yields no series at all, rather than a set of zeros that lies."""
        states = tuple(states)
        if current is None:
            return
        if current not in states:
            self.report.parse_errors[metric.name] += 1
            return
        for state in states:
            self.add(metric, 1.0 if state == current else 0.0, **labels, **{metric.name: state})

    def build(self) -> Snapshot:
        families = {
            name: RenderedFamily(self._metrics[name], "".join(lines), len(lines))
            for name, lines in self._lines.items()
        }
        return Snapshot(MappingProxyType(families), len(self._seen), time.time())


def _clip(value: str) -> str:
    if not isinstance(value, str):
        value = str(value)
    if len(value) > MAX_LABEL_VALUE_LENGTH:
        value = value[: MAX_LABEL_VALUE_LENGTH - 1] + "…"
    try:
        value.encode()
    except UnicodeEncodeError:
        # JSON "\ud800" decodes to a lone surrogate, which no UTF-8 exposition can carry.
        value = value.encode("utf-8", "replace").decode()
    return value


OPENMETRICS: Final = "openmetrics"
TEXT: Final = "text"


class Store:
    """Newest snapshot per key (a target's data, a target's self-metrics, global self-metrics)."""

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._version = 0
        self._cache: dict[tuple[str, bool], tuple[int, bytes]] = {}

    @property
    def version(self) -> int:
        return self._version

    def put(self, key: str, snapshot: Snapshot) -> None:
        self._snapshots[key] = snapshot
        self._version += 1

    def get(self, key: str) -> Snapshot | None:
        return self._snapshots.get(key)

    def remove(self, key: str) -> None:
        if self._snapshots.pop(key, None) is not None:
            self._version += 1

    def keys(self) -> list[str]:
        return list(self._snapshots)

    def series(self) -> int:
        return sum(s.series for s in self._snapshots.values())

    def render(self, fmt: str = TEXT, compress: bool = False) -> bytes:
        cache_key = (fmt, compress)
        cached = self._cache.get(cache_key)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        version = self._version
        body = self._join(fmt == OPENMETRICS).encode()
        if compress:
            # Level 1: scrapes are frequent and the text compresses ~10x even at the fastest level.
            body = gzip.compress(body, compresslevel=1, mtime=0)
        self._cache[cache_key] = (version, body)
        return body

    def _join(self, openmetrics: bool) -> str:
        by_name: dict[str, list[RenderedFamily]] = {}
        for key in sorted(self._snapshots):
            for name, family in self._snapshots[key].families.items():
                by_name.setdefault(name, []).append(family)
        parts: list[str] = []
        for name in sorted(by_name):
            families = by_name[name]
            parts.append(families[0].metric.header(openmetrics))
            parts.extend(f.text for f in families)
        if openmetrics:
            parts.append("# EOF\n")
        return "".join(parts)
