"""Metric definitions and the text form of samples in both exposition formats.

We render exposition text ourselves instead of going through prometheus_client's registry: the
data of a target changes once per poll, so its text is rendered once per poll and a scrape only
joins cached pieces (see snapshot.Store). The formats differ only in the family header lines
(# HELP / # TYPE / # UNIT) and the final "# EOF"; sample lines are the same in both, so one
rendering of the samples serves both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final, Literal

MetricType = Literal["gauge", "counter", "info", "stateset", "histogram"]

_NAME_RE: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_UNITS: Final = ("seconds", "bytes", "ratio", "bytes_per_second", "pixels", "frames_per_second",
                 "packets", "timestamp_seconds", "users", "rooms")

# Labels every data series carries, first, in this order.
BASE_LABELS: Final = ("source", "target")


@dataclass(frozen=True)
class MetricDef:
    """One metric family. ``name`` is the family name: a counter's samples get ``_total``
    appended, an info metric's ``_info``; a stateset's state is a label named like the family."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    unit: str = ""
    base_labels: tuple[str, ...] = field(default=BASE_LABELS)
    # True for the exporter's own health (named monitord_..., a source's monitord_<source>_...),
    # False for what the vendor reports (rtc_...): tests/test_naming.py holds every table to it.
    health: bool = False

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"bad metric name {self.name!r}")
        if self.type == "counter" and self.name.endswith("_total"):
            raise ValueError(f"{self.name}: a counter's family name must not end in _total")
        if self.type == "histogram" and "le" in self.labels:
            raise ValueError(f"{self.name}: a histogram's `le` label is its own")
        if self.type == "info" and self.name.endswith("_info"):
            raise ValueError(f"{self.name}: an info family name must not end in _info")
        for label in (*self.base_labels, *self.labels):
            if not _LABEL_RE.match(label) or label.startswith("__"):
                raise ValueError(f"{self.name}: bad label name {label!r}")
        if self.unit and not self.name.endswith("_" + self.unit):
            raise ValueError(f"{self.name}: name must end in its unit _{self.unit}")
        if "\n" in self.help:
            raise ValueError(f"{self.name}: help must be one line")

    # Cached: SnapshotBuilder.add reads these for every sample (frozen dataclasses allow
    # cached_property, which writes the instance __dict__ directly).
    @cached_property
    def all_labels(self) -> tuple[str, ...]:
        base = self.base_labels
        return (*base, *self.labels, self.name) if self.type == "stateset" else (*base, *self.labels)

    @cached_property
    def own_labels(self) -> tuple[str, ...]:
        """The labels after the base labels (a stateset's state label included)."""
        return (*self.labels, self.name) if self.type == "stateset" else self.labels

    @cached_property
    def sample_name(self) -> str:
        if self.type == "counter":
            return self.name + "_total"
        if self.type == "info":
            return self.name + "_info"
        return self.name

    @cached_property
    def headers(self) -> tuple[bytes, bytes]:
        """The family's header in text and in OpenMetrics format, encoded (read by every snapshot
        build: a dict keyed by the definition would hash all its fields each time)."""
        return self.header(False).encode(), self.header(True).encode()

    def header(self, openmetrics: bool) -> str:
        help_text = escape_help(self.help)
        if openmetrics:
            lines = [f"# HELP {self.name} {help_text}", f"# TYPE {self.name} {self.type}"]
            if self.unit:
                lines.append(f"# UNIT {self.name} {self.unit}")
            return "\n".join(lines) + "\n"
        legacy_type = self.type if self.type in ("counter", "histogram") else "gauge"
        name = self.sample_name
        return f"# HELP {name} {help_text}\n# TYPE {name} {legacy_type}\n"


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    # Integers first: most samples are counts, states and flags (is_integer is False for inf/NaN).
    if value.is_integer() and -1e15 < value < 1e15:
        return str(int(value))
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


def sample_line(metric: MetricDef, label_values: Sequence[str], value: float) -> str:
    pairs = ",".join(
        f'{k}="{escape_label_value(v)}"' for k, v in zip(metric.all_labels, label_values, strict=True)
    )
    if not pairs:
        return f"{metric.sample_name} {format_value(value)}\n"
    return f"{metric.sample_name}{{{pairs}}} {format_value(value)}\n"


def histogram_lines(metric: MetricDef, label_values: Sequence[str], bounds: Sequence[float],
                    cumulative: Sequence[int], total: float) -> str:
    """The _bucket (one per bound, then +Inf), _count and _sum lines of one histogram series.
    `cumulative` has one count per bound plus the +Inf count (the total)."""
    pairs = [f'{k}="{escape_label_value(v)}"' for k, v in zip(metric.all_labels, label_values, strict=True)]
    labels = ",".join(pairs)
    lines = []
    for bound, count in zip((*bounds, math.inf), cumulative, strict=True):
        le = format_value(float(bound)) if bound != math.inf else "+Inf"
        if "." not in le and le != "+Inf":
            le += ".0"  # OpenMetrics writes bounds as floats; both formats accept it
        bucket_labels = ",".join([*pairs, f'le="{le}"'])
        lines.append(f"{metric.name}_bucket{{{bucket_labels}}} {count}\n")
    braces = f"{{{labels}}}" if labels else ""
    lines.append(f"{metric.name}_count{braces} {cumulative[-1]}\n")
    lines.append(f"{metric.name}_sum{braces} {format_value(total)}\n")
    return "".join(lines)


def check_catalog(metrics: Iterable[MetricDef]) -> dict[str, MetricDef]:
    """Index metric tables by name. One name must mean one thing everywhere (type, help, unit);
    sources may attach different labels to a shared name (e.g. rtc_online_users per app or per
    server), which the exposition formats allow within one family."""
    index: dict[str, MetricDef] = {}
    for m in metrics:
        other = index.get(m.name)
        if other is not None and (other.type, other.help, other.unit) != (m.type, m.help, m.unit):
            raise ValueError(f"metric {m.name} is defined twice, differently: {other} vs {m}")
        index.setdefault(m.name, m)
    return index
