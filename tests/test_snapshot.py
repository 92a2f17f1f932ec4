"""The snapshot store at scale: one change per poll, few GC-tracked objects, label parts reused
across polls without going stale, and scrapes rendered off the event loop with the same bytes."""

from __future__ import annotations

import asyncio
import gc
import gzip

import pytest
from helpers import parse_exposition, value
from test_endpoint import knob, target

from monitord import snapshot
from monitord.metrics import MetricDef
from monitord.simulators import endpoint as sim
from monitord.snapshot import OPENMETRICS, TEXT, SnapshotBuilder, Store

GAUGE = MetricDef("rtc_test_value", "gauge", "A test series.", labels=("stream", "site"))
COUNTER = MetricDef("rtc_test_events", "counter", "A test counter.", labels=("stream",))


async def test_a_poll_changes_the_store_once(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, name="ok"), target("http://127.0.0.1:9", name="down", timeout="2s")])
    for name in ("ok", "down", "ok", "down"):
        before = daemon.store.version
        await daemon.runtime(name).run_once()
        assert daemon.store.version == before + 1, f"a poll of {name} changed the store more than once"
    text = daemon.store.render().decode()
    s = parse_exposition(text)
    # Data and self-metrics still agree after the single change.
    assert value(s, "monitord_target_series", target="ok") == len(
        [k for k in s if k[0].startswith("rtc_") and ("target", "ok") in k[1]])
    assert value(s, "monitord_target_series", target="down") is None
    assert value(s, "monitord_target_up", target="down") == 0


async def test_a_scrape_between_polls_is_served_from_the_cache(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, name="a"), target(f"{url}/d/b", name="b")])
    await daemon.poll_all_once()
    first = await daemon.store.render_async(TEXT, True)
    assert await daemon.store.render_async(TEXT, True) is first
    await daemon.runtime("a").run_once()
    assert await daemon.store.render_async(TEXT, True) is not first


async def test_rendering_in_a_thread_gives_the_same_bytes(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="live")
    daemon = make_daemon([target(url, name=f"room-{i}") for i in range(5)])
    await daemon.poll_all_once()
    for fmt in (TEXT, OPENMETRICS):
        synchronous = daemon.store.render(fmt)
        fresh = Store()
        for key in daemon.store.keys():
            snapshot = daemon.store.get(key)
            assert snapshot is not None
            fresh.put(key, snapshot)
        threaded = await fresh.render_async(fmt)
        assert b"".join(threaded) == synchronous
        assert gzip.decompress(b"".join(await fresh.render_async(fmt, True))) == synchronous


async def test_concurrent_scrapes_share_one_rendering() -> None:
    store = Store()
    for t in range(50):
        out = SnapshotBuilder({"source": "endpoint", "target": f"t{t}"})
        for i in range(200):
            out.add(GAUGE, float(i), stream=str(i), site="x")
        store.put(f"target/t{t}/data", out.build())
    bodies = await asyncio.gather(*(store.render_async(TEXT, True) for _ in range(5)))
    assert all(body is bodies[0] for body in bodies)
    assert gzip.decompress(b"".join(bodies[0])) == store.render()


def test_a_snapshot_leaves_one_object_for_the_collector() -> None:
    out = SnapshotBuilder({"source": "endpoint", "target": "t"})
    for i in range(100):
        out.add(GAUGE, i / 3, stream=str(i), site=f"site {i}")
        out.add(COUNTER, float(i), stream=str(i))
    snapshot = out.build()
    # The collector untracks a tuple of strings, bytes and ints when it meets one; the outer tuple
    # on the pass after its members were untracked.
    gc.collect()
    gc.collect()
    assert gc.is_tracked(snapshot)
    assert not gc.is_tracked(snapshot.families)
    assert not any(gc.is_tracked(f) for f in snapshot.families)


def test_cached_labels_follow_changes_and_stay_bounded(monkeypatch) -> None:
    monkeypatch.setattr(snapshot, "OWN_LABELS_MAX", 50)
    store = Store()
    for poll in range(40):
        out = SnapshotBuilder({"source": "endpoint", "target": f"t{poll % 2}"})
        # Sites come and go from poll to poll; one label value needs escaping.
        for i in range(3):
            out.add(GAUGE, float(poll), stream=str(i), site=f'site-{poll}-{i} "q"')
        out.add(COUNTER, float(poll), stream="0")
        store.put(f"target/t{poll % 2}/data", out.build())
        s = parse_exposition(store.render().decode())
        for i in range(3):
            assert value(s, "rtc_test_value", target=f"t{poll % 2}", stream=str(i),
                         site=f'site-{poll}-{i} "q"') == poll
        assert len([k for k in s if k[0] == "rtc_test_value"]) == 6 if poll else 3
        assert len(snapshot._OWN_LABELS) <= 50


def test_cached_labels_still_check_names_and_duplicates() -> None:
    for name in ("a", "b"):  # for the second target every own-label part comes from the cache
        out = SnapshotBuilder({"source": "endpoint", "target": name})
        assert out.add(GAUGE, 1.0, stream="0", site="a")
        assert not out.add(GAUGE, 2.0, site="a", stream="0")  # same series, other keyword order
        assert out.report.dropped["duplicate"] == 1
        with pytest.raises(ValueError, match="missing label"):
            out.add(GAUGE, 1.0, stream="0")
        with pytest.raises(ValueError, match="unexpected labels"):
            out.add(GAUGE, 1.0, stream="0", site="a", extra="x")
        text = out.build().families[0][3].decode()
        assert text == f'rtc_test_value{{source="endpoint",target="{name}",stream="0",site="a"}} 1\n'
    with pytest.raises(ValueError, match="no base label"):
        SnapshotBuilder({"source": "endpoint"}).add(GAUGE, 1.0, stream="0", site="a")


def test_a_row_adds_exactly_what_add_adds() -> None:
    """Row.add is add without the labels: same lines, same parse errors and drops, same checks."""
    flag = MetricDef("rtc_test_flag", "gauge", "A test flag.", labels=("stream", "site", "codec"))
    counter = MetricDef("rtc_test_lost", "counter", "A test counter.", labels=("stream", "site"))
    samples = [(GAUGE, 0.25, "f1"), (counter, 3, "f2"), (GAUGE, snapshot.INVALID, "bad"), (counter, None, "n"),
               (GAUGE, float("nan"), ""), (counter, 10**400, "huge"), (counter, snapshot.ABSENT, "a"),
               (GAUGE, 7.0, "again")]  # the last one a duplicate of the first series
    labels = {"stream": "1", "site": 'far "site"' + "x" * 300}
    by_add = SnapshotBuilder({"source": "endpoint", "target": "t"}, max_series=3)
    by_row = SnapshotBuilder({"source": "endpoint", "target": "t"}, max_series=3)
    row = by_row.row(**labels)
    for metric, sample, field in samples:
        own = {k: labels[k] for k in metric.own_labels}
        assert by_add.add(metric, sample, field, **own) == row.add(metric, sample, field)
    assert by_add.info(flag, codec="H.264", **labels) == row.info(flag, codec="H.264")
    assert not by_row.row(stream="2", site="").add(GAUGE, 1.0)  # the series limit
    assert not by_add.add(GAUGE, 1.0, stream="2", site="")
    assert by_row.build().families == by_add.build().families
    assert by_row.report == by_add.report
    assert by_row.report.parse_errors == {"bad": 1, "rtc_test_value": 1, "huge": 1}
    assert by_row.report.dropped == {"duplicate": 1, "series_limit": 1}
    with pytest.raises(ValueError, match="missing label"):
        SnapshotBuilder({"source": "endpoint", "target": "t"}).row(stream="0").add(GAUGE, 1.0)
    with pytest.raises(ValueError, match="unexpected labels"):
        SnapshotBuilder({"source": "endpoint", "target": "t"}).row(**labels).add(COUNTER, 1.0)


async def test_labels_of_a_stream_that_changes_are_not_stale(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url)])
    await daemon.poll_all_once()
    await knob(url, override={"szName": "renamed room"})
    await daemon.poll_all_once()
    s = parse_exposition(daemon.store.render().decode())
    sites = {dict(k[1]).get("site") for k in s if k[0] == "rtc_stream_jitter_seconds"}
    assert "renamed room" in sites
    assert "site1" not in sites


def test_fixed_series_build_what_a_builder_builds_and_reuse_unchanged_families() -> None:
    from monitord.snapshot import FixedSeries

    gauge = MetricDef("monitord_test_gauge", "gauge", "A gauge.")
    errors = MetricDef("monitord_test_errors", "counter", "Errors.", labels=("reason",))
    base = {"source": "endpoint", "target": 'room "1"\n'}
    fixed = FixedSeries(base)
    reasons = ("timeout", "x" * 300, 'quote"d')
    for values in ([0.0, 1.0, 2.5], [0.0, 1.0, 2.5], [1e20, float("nan"), 3.0]):
        builder = SnapshotBuilder(base)
        for reason, v in zip(reasons, values, strict=True):
            builder.add(errors, v, reason=reason)
        builder.add(gauge, 0.125)
        expected = builder.build().families
        got = (fixed.family(errors, values, reasons), fixed.family(gauge, (0.125,)))
        assert got == expected
    first = fixed.family(gauge, (7.0,))
    assert fixed.family(gauge, (7.0,)) is first, "an unchanged family is reused, not rendered again"
    assert fixed.family(gauge, (None,)) is None
    assert fixed.family(gauge, (float("inf"),)) is None


async def test_a_big_body_comes_in_pieces_of_about_a_mebibyte_that_join_to_the_exposition() -> None:
    store = Store()
    for t in range(20):
        out = SnapshotBuilder({"source": "endpoint", "target": f"t{t}" + "x" * 200}, max_series=5_000)
        for i in range(1_000):
            out.add(GAUGE, float(i), stream=str(i), site="x" * 50)
        store.put(f"target/t{t}/data", out.build())
    for fmt in (TEXT, OPENMETRICS):
        whole = store.render(fmt)
        pieces = await store.render_async(fmt)
        assert len(whole) > 3 * snapshot.BODY_PIECE
        assert b"".join(pieces) == whole
        assert len(pieces) > 3
        # A piece ends once it reaches the size: at most one target's family over it.
        assert all(len(piece) < 2 * snapshot.BODY_PIECE for piece in pieces)
        assert gzip.decompress(b"".join(await store.render_async(fmt, True))) == whole
        assert gzip.decompress(store.render(fmt, True)) == whole
