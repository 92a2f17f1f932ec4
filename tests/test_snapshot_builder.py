"""What a SnapshotBuilder promises each sample, one rule at a time: values written as
format_value writes them, every drop and parse error counted (each occurrence), histograms and
state sets checked like plain samples, label values clipped and made encodable. The cases that
mutation testing (tools/mutation.py snapshot) showed no other test would notice."""

from __future__ import annotations

import pytest

from monitord import snapshot
from monitord.metrics import MetricDef, format_value
from monitord.normalize import INVALID
from monitord.snapshot import FixedSeries, SnapshotBuilder, Store

BASE = {"source": "endpoint", "target": "t"}
GAUGE = MetricDef("rtc_test_value", "gauge", "A test series.", labels=("stream",))
PLAIN = MetricDef("rtc_test_plain", "gauge", "A series without labels.")
HIST = MetricDef("rtc_test_seconds", "histogram", "A test histogram.", labels=("stream",), unit="seconds")
STATE = MetricDef("rtc_test_state", "gauge", "A test state set.", labels=("stream", "rtc_test_state"))


def lines(builder: SnapshotBuilder) -> list[str]:
    return "".join(f[3].decode() for f in builder.build().families).splitlines()


@pytest.mark.parametrize("number", [0.0, -0.0, 5.0, -7.0, 0.125, 1e15, -1e15, 1e15 - 1, -(1e15 - 1), 1e16,
                                    2.0**53, 1e-9, -2.5])
def test_values_are_written_as_format_value_writes_them(number: float) -> None:
    by_add, by_row = SnapshotBuilder(BASE), SnapshotBuilder(BASE)
    by_add.add(GAUGE, number, stream="0")
    by_row.row(stream="0").add(GAUGE, number)
    expected = f'rtc_test_value{{source="endpoint",target="t",stream="0"}} {format_value(number)}'
    assert lines(by_add) == lines(by_row) == [expected]
    family = FixedSeries(BASE).family(PLAIN, (number,))
    assert family is not None and family[3].decode().endswith(f" {format_value(number)}\n")


def test_every_drop_and_parse_error_is_counted() -> None:
    out = SnapshotBuilder(BASE, max_series=2)
    row = out.row(stream="0")
    assert row.add(GAUGE, 1.0)
    assert not row.add(GAUGE, 2.0) and not out.add(GAUGE, 3.0, stream="0")  # two duplicates
    assert not row.add(GAUGE, INVALID, "jitter") and not out.add(GAUGE, float("inf"), "jitter", stream="1")
    assert not row.add(GAUGE, INVALID, "delay") and not out.add(GAUGE, INVALID, "delay", stream="1")
    assert out.add(GAUGE, 1.0, stream="1")
    assert not out.add(GAUGE, 1.0, stream="2") and not out.add(GAUGE, 1.0, stream="3")  # two over the limit
    assert out.report.dropped == {"duplicate": 2, "series_limit": 2}
    assert out.report.parse_errors == {"jitter": 2, "delay": 2}


def test_histograms_are_checked_like_samples() -> None:
    out = SnapshotBuilder(BASE, max_series=2)
    assert out.histogram(HIST, (0.1, 1.0), (1, 2, 3), 1.5, stream="0") is True
    assert out.histogram(HIST, (0.1, 1.0), (0, 0, 0), 0.0, stream="0") is False
    assert out.histogram(HIST, (0.1, 1.0), (0, 0, 0), 0.0, stream="0") is False
    assert out.histogram(HIST, (0.1,), (0, 0), float("nan"), stream="1") is False
    assert out.histogram(HIST, (0.1,), (0, 0), float("inf"), stream="1") is False
    assert out.histogram(HIST, (0.1,), (1, 1), 0.5, stream="1") is True
    assert out.histogram(HIST, (0.1,), (1, 1), 0.5, stream="2") is False
    assert out.histogram(HIST, (0.1,), (1, 1), 0.5, stream="3") is False
    assert out.report.dropped == {"duplicate": 2, "series_limit": 2}
    assert out.report.parse_errors == {"rtc_test_seconds": 2}
    assert out.series == 2
    text = lines(out)
    assert 'rtc_test_seconds_bucket{source="endpoint",target="t",stream="0",le="1.0"} 2' in text
    assert 'rtc_test_seconds_count{source="endpoint",target="t",stream="0"} 3' in text
    assert 'rtc_test_seconds_sum{source="endpoint",target="t",stream="1"} 0.5' in text
    with pytest.raises(ValueError, match="rtc_test_seconds: no base label target in this snapshot"):
        SnapshotBuilder({"source": "endpoint"}).histogram(HIST, (0.1,), (0, 0), 0.0, stream="0")
    other = MetricDef("rtc_test_seconds", "gauge", "Same name, other type.", labels=("stream",))
    clash = SnapshotBuilder(BASE)
    clash.add(other, 1.0, stream="9")
    with pytest.raises(ValueError, match="rtc_test_seconds: added as histogram and gauge"):
        clash.histogram(HIST, (0.1,), (0, 0), 0.0, stream="0")


def test_a_metric_name_keeps_its_type() -> None:
    out = SnapshotBuilder(BASE)
    twin = MetricDef("rtc_test_value", "gauge", "Another definition, same name and type.", labels=("stream",))
    counter = MetricDef("rtc_test_value", "counter", "Same name, other type.", labels=("stream",))
    assert out.add(GAUGE, 1.0, stream="0") and out.add(twin, 2.0, stream="1")
    with pytest.raises(ValueError, match="rtc_test_value: added as counter and gauge"):
        out.add(counter, 3.0, stream="2")


def test_a_state_set_has_one_current_state_and_refuses_unknown_ones() -> None:
    out = SnapshotBuilder(BASE)
    out.state_set(STATE, ("running", "stopped", "failed"), "stopped", stream="0")
    out.state_set(STATE, ("running", "stopped"), None, stream="1")  # unknown: nothing
    out.state_set(STATE, ("running", "stopped"), "exploded", stream="2")
    out.state_set(STATE, ("running", "stopped"), "melted", stream="3")
    assert lines(out) == [
        f'rtc_test_state{{source="endpoint",target="t",stream="0",rtc_test_state="{state}"}} {v}'
        for state, v in (("running", 0), ("stopped", 1), ("failed", 0))
    ]
    assert out.report.parse_errors == {"rtc_test_state": 2}


def test_label_values_are_clipped_and_made_encodable() -> None:
    out = SnapshotBuilder(BASE)
    out.add(GAUGE, 1.0, stream=7)  # type: ignore[arg-type]  # a vendor number where text was expected
    out.add(GAUGE, 2.0, stream="x" * 300)
    out.add(GAUGE, 3.0, stream="bad \ud800 site")  # a lone surrogate, as JSON "\ud800" decodes
    out.add(GAUGE, 4.0, stream="y" * 256)  # at the bound: kept whole
    text = lines(out)
    assert text[0].endswith('stream="7"} 1')
    assert f'stream="{"x" * 255}…"}} 2' in text[1]
    assert text[2].endswith('stream="bad ? site"} 3')
    assert text[3].endswith(f'stream="{"y" * 256}"}} 4')
    "".join(text).encode()  # the exposition is UTF-8


def test_the_shared_label_cache_never_grows_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "_OWN_LABELS", {})
    monkeypatch.setattr(snapshot, "OWN_LABELS_MAX", 10)
    out = SnapshotBuilder(BASE)
    for i in range(35):
        assert out.add(GAUGE, float(i), stream=f"s{i}")
        assert len(snapshot._OWN_LABELS) <= 10
    assert len(lines(out)) == 35


def test_a_row_checks_each_metric_against_its_labels() -> None:
    """A row's rendered labels are reused only for metrics with the same label names: a metric
    with other labels is refused, even after another metric of the row was added."""
    counter = MetricDef("rtc_test_events", "counter", "A test counter.", labels=("stream", "site"))
    row = SnapshotBuilder(BASE).row(stream="0")
    assert row.add(GAUGE, 1.0)
    with pytest.raises(ValueError, match="rtc_test_events: missing label site"):
        row.add(counter, 1.0)


def one_line(target: str) -> SnapshotBuilder:
    out = SnapshotBuilder({"source": "endpoint", "target": target})
    out.add(PLAIN, 1.0)
    return out


def test_the_store_changes_only_when_something_changed() -> None:
    """A put or a removal is a change (the version moves, the cached body goes); removing what
    is not there is none, so a scrape keeps its cached body."""
    store = Store()
    store.update({"target/a": one_line("a").build(), "target/b": one_line("b").build()})
    version = store.version
    assert [line.split("{")[1] for line in store.render().decode().splitlines() if line.startswith("rtc")] == [
        'source="endpoint",target="a"} 1', 'source="endpoint",target="b"} 1']
    store.remove("target/missing")
    store.update({"target/missing": None})
    assert store.version == version, "nothing changed"
    store.remove("target/a")
    assert store.version == version + 1 and store.keys() == ["target/b"]
    assert 'target="a"' not in store.render().decode()
    store.update({"target/b": None, "target/0": one_line("0").build()})
    assert store.version == version + 2 and store.keys() == ["target/0"]
    assert 'target="0"' in store.render().decode() and 'target="b"' not in store.render().decode()
