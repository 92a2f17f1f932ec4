"""Immutable per-target snapshots and the store a scrape reads from.

A poll builds a Snapshot; its sample lines are rendered once, when it is built. The Store swaps
snapshots in atomically (one dict assignment on the event loop) and caches the joined exposition
per format until something changes, so a scrape costs a dict lookup when nothing changed and a
join of cached strings when something did. A scrape never waits for a poll.
"""

from __future__ import annotations

import asyncio
import math
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from monitord.metrics import MetricDef, escape_label_value, format_value, histogram_lines
from monitord.normalize import ABSENT, INVALID, Missing

# Label values are vendor text (site names can be 192 chars of any UTF-8); a bound keeps one
# odd value from bloating every scrape.
MAX_LABEL_VALUE_LENGTH: Final = 256


# One metric family of one snapshot: name, header in text and in OpenMetrics format, sample
# lines, series count. A plain tuple of str/bytes/int, which the garbage collector stops tracking.
Family = tuple[str, bytes, bytes, bytes, int]


class Snapshot:
    """What one poll of one target produced, rendered once. A single GC-tracked object: at
    10,000 targets every tracked object a poll leaves behind is scanned by each full collection."""

    __slots__ = ("families", "series")

    def __init__(self, families: tuple[Family, ...], series: int) -> None:
        self.families = families
        self.series = series

    @staticmethod
    def empty() -> Snapshot:
        return Snapshot((), 0)


@dataclass
class BuildReport:
    """What a builder dropped, for the runtime's counters."""

    parse_errors: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)


# The rendered own-label part of sample lines (`media="audio",direction="send",…`), by label
# names and values. Shared by every target: labels rarely change from poll to poll and most label
# sets repeat across targets (every stream of every endpoint, every error reason). The base part
# (`source="…",target="…"`) is rendered once per builder. Cleared when full, so odd label values
# cannot grow it without bound; only the event loop's thread uses it.
_OWN_LABELS: dict[tuple[object, ...], str] = {}
OWN_LABELS_MAX: Final = 100_000


class SnapshotBuilder:
    """Collects samples of one poll. Missing values never become samples; invalid ones are
    counted by field name (never by value: values are unbounded vendor text)."""

    def __init__(self, base_labels: Mapping[str, str], max_series: int = 10_000) -> None:
        self._base = dict(base_labels)
        # By a metric's base label names: the opening of its label part, followed by own labels
        # or not.
        self._openings: dict[tuple[str, ...], tuple[str, str]] = {}
        self._max_series = max_series
        self._lines: dict[str, list[str]] = {}
        self._metrics: dict[str, MetricDef] = {}
        self._seen: set[tuple[str, str]] = set()
        self.report = BuildReport()

    @property
    def series(self) -> int:
        return len(self._seen)

    def add(self, metric: MetricDef, value: float | Missing | None, field: str = "", /, **labels: str) -> bool:
        """Add one sample; `field` names the vendor field for parse-error counts (positional only, so
        a label may be called "field"). Returns whether it was added."""
        # The hottest function of the daemon (every sample of every poll): the common cases first.
        if value is None or value is ABSENT:
            return False
        number = self._finite(metric, value, field)
        if number is None:
            return False
        return self._put(metric, number, self._label_text(metric, labels))

    def _label_text(self, metric: MetricDef, labels: Mapping[str, str]) -> str:
        """The label part (`{…}`) of the metric's lines with these own labels."""
        # Own label names (the metric's order) and the call's names and values: the same call
        # gives the same key every poll, and on every target.
        key = (metric.own_labels, *labels, *labels.values())
        own = _OWN_LABELS.get(key)
        if own is None:
            own = self._render_own(metric, labels)
            if len(_OWN_LABELS) >= OWN_LABELS_MAX:
                _OWN_LABELS.clear()
            _OWN_LABELS[key] = own
        opening = self._openings.get(metric.base_labels)
        if opening is None:
            opening = self._opening(metric)
        return f"{opening[0]}{own}}}" if own else opening[1]

    def _finite(self, metric: MetricDef, value: float | Missing, field: str) -> float | None:
        """The sample's value, or None (counted as a parse error of `field`) when it has none."""
        if value is INVALID:
            self.report.parse_errors[field or metric.name] += 1
            return None
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:  # an int beyond float range
            number = math.inf
        if number - number != 0.0:  # inf or NaN
            # The last line of defence: a source that let inf or NaN through (a sum that
            # overflowed, a product of huge factors) costs that sample, never the exposition.
            self.report.parse_errors[field or metric.name] += 1
            return None
        return number

    def row(self, **labels: str) -> Row:
        """Samples of several metrics with the same labels (a stream's jitter, delay, loss…): the
        label part of their lines is rendered once for the row, not once per sample."""
        return Row(self, labels)

    def _put(self, metric: MetricDef, number: float, text: str) -> bool:
        """Add a finite sample whose label part (`{…}`) is `text`."""
        sample_name = metric.sample_name
        series = (sample_name, text)
        seen = self._seen
        if series in seen:
            self.report.dropped["duplicate"] += 1
            return False
        if len(seen) >= self._max_series:
            self.report.dropped["series_limit"] += 1
            return False
        lines = self._lines.get(metric.name)
        if lines is None:
            lines = self._lines[metric.name] = []
            self._metrics[metric.name] = metric
        else:
            first = self._metrics[metric.name]
            if first is not metric and first.type != metric.type:
                raise ValueError(f"{metric.name}: added as {metric.type} and {first.type}")
        seen.add(series)
        # Integers inline (most samples are counts, states and flags), as format_value writes them.
        formatted = str(int(number)) if number.is_integer() and -1e15 < number < 1e15 else format_value(number)
        lines.append(f"{sample_name}{text} {formatted}\n")
        return True

    def histogram(self, metric: MetricDef, bounds: Sequence[float], cumulative: Sequence[int], total: float,
                  **labels: str) -> bool:
        """One histogram series: cumulative counts per bound plus the +Inf count, and the sum."""
        if not math.isfinite(total):
            self.report.parse_errors[metric.name] += 1
            return False
        try:
            values = (*(self._base[k] for k in metric.base_labels), *self._own_values(metric, labels))
        except KeyError as exc:
            raise ValueError(f"{metric.name}: no base label {exc.args[0]} in this snapshot") from None
        series = (metric.sample_name, self._render_labels(metric, labels))
        if series in self._seen:
            self.report.dropped["duplicate"] += 1
            return False
        if len(self._seen) >= self._max_series:
            self.report.dropped["series_limit"] += 1
            return False
        existing = self._metrics.setdefault(metric.name, metric)
        if existing.type != metric.type:
            raise ValueError(f"{metric.name}: added as {metric.type} and {existing.type}")
        self._seen.add(series)
        self._lines.setdefault(metric.name, []).append(histogram_lines(metric, values, bounds, cumulative, total))
        return True

    def prefix(self, metric: MetricDef, **labels: str) -> str:
        """The part of a sample line before its value (`name{labels} `), as add() writes it."""
        return f"{metric.sample_name}{self._render_labels(metric, labels)} "

    def _opening(self, metric: MetricDef) -> tuple[str, str]:
        try:
            base = ",".join(f'{k}="{escape_label_value(self._base[k])}"' for k in metric.base_labels)
        except KeyError as exc:
            raise ValueError(f"{metric.name}: no base label {exc.args[0]} in this snapshot") from None
        opening = (f"{{{base},", f"{{{base}}}") if base else ("{", "")
        self._openings[metric.base_labels] = opening
        return opening

    def _render_own(self, metric: MetricDef, labels: Mapping[str, str]) -> str:
        """`k="v",…` of the metric's own labels in its order, values clipped and escaped."""
        return ",".join(f'{k}="{escape_label_value(v)}"'
                        for k, v in zip(metric.own_labels, self._own_values(metric, labels), strict=True))

    def _render_labels(self, metric: MetricDef, labels: Mapping[str, str]) -> str:
        opening = self._openings.get(metric.base_labels) or self._opening(metric)
        own = self._render_own(metric, labels)
        return f"{opening[0]}{own}}}" if own else opening[1]

    def _own_values(self, metric: MetricDef, labels: Mapping[str, str]) -> list[str]:
        own_names = metric.own_labels
        try:
            own = [_clip(labels[name]) for name in own_names]
        except KeyError as exc:
            raise ValueError(f"{metric.name}: missing label {exc.args[0]}") from None
        if len(labels) != len(own_names):
            raise ValueError(f"{metric.name}: unexpected labels {sorted(set(labels) - set(own_names))}")
        return own

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
        families: list[Family] = []
        for name, lines in self._lines.items():
            text_header, om_header = self._metrics[name].headers
            families.append((name, text_header, om_header, "".join(lines).encode(), len(lines)))
        return Snapshot(tuple(families), len(self._seen))


class Row:
    """Samples with the same labels, from SnapshotBuilder.row(): add() takes what the builder's
    add() takes, without the labels, and adds exactly what the builder's add() would."""

    __slots__ = ("_builder", "_labels", "_texts")

    def __init__(self, builder: SnapshotBuilder, labels: dict[str, str]) -> None:
        self._builder = builder
        self._labels = labels
        # The label part by a metric's (base label names, own label names).
        self._texts: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}

    def add(self, metric: MetricDef, value: float | Missing | None, field: str = "") -> bool:
        if value is None or value is ABSENT:
            return False
        builder = self._builder
        number = builder._finite(metric, value, field)
        if number is None:
            return False
        key = (metric.base_labels, metric.own_labels)
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = builder._label_text(metric, self._labels)
        return builder._put(metric, number, text)

    def info(self, metric: MetricDef, **facts: str) -> bool:
        """An info metric with the row's labels and `facts` (SnapshotBuilder.info)."""
        return self._builder.info(metric, **self._labels, **facts)


class FixedSeries:
    """Families of one target whose series are the same poll after poll (its self-metrics,
    rebuilt after every poll of every target): the name and labels of each line are rendered
    once, and a family whose values did not change since the previous build is reused as it
    was. What it builds equals what a SnapshotBuilder builds from the same samples."""

    def __init__(self, base_labels: Mapping[str, str]) -> None:
        self._labels = SnapshotBuilder(base_labels)
        # By metric name: a MetricDef's hash covers every field, help text included.
        self._prefixes: dict[tuple[str, str], str] = {}
        self._last: dict[str, tuple[tuple[object, ...], Family | None]] = {}

    def family(self, metric: MetricDef, values: Sequence[float | None],
               label_values: Sequence[str] = ()) -> Family | None:
        """One family: `values[i]` is the sample whose own label (a metric here has at most one)
        is `label_values[i]`; with no own label, one value. None and non-finite values give no
        sample; a family without samples is None."""
        key = (*values, *label_values)
        last = self._last.get(metric.name)
        if last is not None and last[0] == key:
            return last[1]
        lines: list[str] = []
        for i, value in enumerate(values):
            if value is None or value - value != 0.0:  # absent, inf or NaN
                continue
            label = label_values[i] if label_values else ""
            prefix = self._prefixes.get((metric.name, label))
            if prefix is None:
                own = {metric.own_labels[0]: label} if metric.own_labels else {}
                prefix = self._prefixes[(metric.name, label)] = self._labels.prefix(metric, **own)
            lines.append(f"{prefix}{format_value(float(value))}\n")
        family: Family | None = None
        if lines:
            text_header, om_header = metric.headers
            family = (metric.name, text_header, om_header, "".join(lines).encode(), len(lines))
        self._last[metric.name] = (key, family)
        return family


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

# A rendered exposition: pieces to be sent one after the other (see Store.render_async).
Body = tuple[bytes, ...]
BODY_PIECE: Final = 1 << 20


class Store:
    """Newest snapshot per key (a target's data, a target's self-metrics, global self-metrics).

    Every change bumps the version; a rendered body is cached per format until the next change.
    A poll changes the store once (data and self-metrics together, see `update`), so a body
    rendered for one scrape is still good for the next one whenever no poll ended in between."""

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._sorted: list[str] | None = None
        self._version = 0
        self._cache: dict[tuple[str, bool], tuple[int, Body]] = {}
        self._rendering: dict[tuple[str, bool], asyncio.Future[Body]] = {}
        self._refreshers: list[Callable[[], None]] = []

    @property
    def version(self) -> int:
        return self._version

    def put(self, key: str, snapshot: Snapshot) -> None:
        self.update({key: snapshot})

    def remove(self, key: str) -> None:
        self.update({key: None})

    def update(self, changes: Mapping[str, Snapshot | None]) -> None:
        """Put (or, for None, remove) several snapshots as one change."""
        changed = False
        for key, snapshot in changes.items():
            if snapshot is None:
                if self._snapshots.pop(key, None) is not None:
                    changed = True
                    self._sorted = None
            else:
                if key not in self._snapshots:
                    self._sorted = None
                self._snapshots[key] = snapshot
                changed = True
        if changed:
            self._version += 1
            # A stale body is never served again; free it now (it can be tens of megabytes).
            self._cache.clear()

    def add_refresher(self, refresh: Callable[[], None]) -> None:
        """`refresh` runs before each render: for snapshots that would change on every poll (a
        histogram of all poll durations) and are put only when a scrape needs them."""
        self._refreshers.append(refresh)

    def get(self, key: str) -> Snapshot | None:
        return self._snapshots.get(key)

    def keys(self) -> list[str]:
        return list(self._snapshots)

    def series(self) -> int:
        return sum(s.series for s in self._snapshots.values())

    def render(self, fmt: str = TEXT, compress: bool = False) -> bytes:
        """The exposition, rendered in the caller's thread (tests, the `once` command)."""
        self._refresh()
        cached = self._cached(fmt, compress)
        if cached is None:
            version = self._version
            cached = _render(self._in_order(), fmt == OPENMETRICS, compress)
            self._cache[(fmt, compress)] = (version, cached)
        return b"".join(cached)

    async def render_async(self, fmt: str = TEXT, compress: bool = False) -> Body:
        """The exposition for a scrape, in pieces of about a mebibyte: joined and compressed in a
        worker thread, so a scrape of hundreds of thousands of series never holds up polls.
        Never one piece of tens of megabytes: the thread holds the interpreter lock while it
        copies one, and the event loop, polls included, would wait for the whole copy. Concurrent
        scrapes of one format share one rendering."""
        self._refresh()
        cached = self._cached(fmt, compress)
        if cached is not None:
            return cached
        key = (fmt, compress)
        running = self._rendering.get(key)
        if running is not None:
            return await asyncio.shield(running)
        version = self._version
        # The snapshots are immutable: the thread reads this list while the loop moves on.
        future = asyncio.ensure_future(asyncio.to_thread(_render, self._in_order(), fmt == OPENMETRICS, compress))
        self._rendering[key] = future
        try:
            body = await asyncio.shield(future)
        finally:
            if self._rendering.get(key) is future:
                del self._rendering[key]
        if version == self._version:
            self._cache[key] = (version, body)
        return body

    def _refresh(self) -> None:
        for refresh in self._refreshers:
            refresh()

    def _cached(self, fmt: str, compress: bool) -> Body | None:
        cached = self._cache.get((fmt, compress))
        return cached[1] if cached is not None and cached[0] == self._version else None

    def _in_order(self) -> list[Snapshot]:
        if self._sorted is None:
            self._sorted = sorted(self._snapshots)
        return [self._snapshots[key] for key in self._sorted]


def _render(snapshots: list[Snapshot], openmetrics: bool, compress: bool) -> Body:
    headers: dict[str, bytes] = {}
    by_name: dict[str, list[bytes]] = {}
    for snapshot in snapshots:
        for family in snapshot.families:
            samples = by_name.get(family[0])
            if samples is None:
                samples = by_name[family[0]] = []
                headers[family[0]] = family[2] if openmetrics else family[1]
            samples.append(family[3])
    pieces: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for name in sorted(by_name):
        group.append(headers[name])
        for part in by_name[name]:
            group.append(part)
            size += len(part)
            if size >= BODY_PIECE:
                pieces.append(b"".join(group))
                group.clear()
                size = 0
    if openmetrics:
        group.append(b"# EOF\n")
    if group:
        pieces.append(b"".join(group))
    if not compress:
        return tuple(pieces)
    # Level 1: scrapes are frequent and the text compresses ~10x even at the fastest level.
    # wbits 31: a gzip member with mtime 0, as gzip.compress(..., mtime=0) writes it; zlib lets
    # other threads run while it deflates each piece.
    deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
    out = [deflate.compress(piece) for piece in pieces]
    out.append(deflate.flush())
    return tuple(chunk for chunk in out if chunk)
