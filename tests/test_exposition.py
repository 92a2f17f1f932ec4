"""/metrics over HTTP: formats, gzip, caching, validity, and that a scrape never waits for a poll."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import pytest
from helpers import assert_promtool_clean, parse_exposition, value
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from test_endpoint import faults, target

from monitord.exposition import negotiate_format, wants_gzip
from monitord.simulators import endpoint as sim
from monitord.web import build_app

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


@pytest.mark.parametrize(("accept", "fmt"), [
    (PROMETHEUS_ACCEPT, "openmetrics"),
    ("text/plain;version=0.0.4", "text"),
    ("", "text"),
    ("*/*", "text"),
    ("application/openmetrics-text;version=0.0.1", "text"),
    ("application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.9", "text"),
    ("application/openmetrics-text", "openmetrics"),
])
def test_negotiation(accept: str, fmt: str) -> None:
    assert negotiate_format(accept) == fmt


def test_gzip_negotiation() -> None:
    assert wants_gzip("gzip")
    assert wants_gzip("deflate, gzip;q=0.5")
    assert not wants_gzip("gzip;q=0")
    assert not wants_gzip("identity")


async def polled_daemon(start_sim: Any, make_daemon: Any, scenario: str = "fixed") -> Any:
    url, _ = await start_sim(sim, scenario=scenario)
    daemon = make_daemon([target(url, name="room-a"), target(f"{url}/d/b", name="room-b"),
                          target("http://127.0.0.1:9", name="unreachable", timeout="2s")])
    await daemon.poll_all_once()
    return daemon


async def test_text_and_openmetrics_over_http_with_gzip(aiohttp_client, start_sim, make_daemon) -> None:
    daemon = await polled_daemon(start_sim, make_daemon)
    client = await aiohttp_client(build_app(daemon))

    resp = await client.get("/metrics", headers={"Accept": "text/plain", "Accept-Encoding": "identity"})
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await resp.text()
    s = parse_exposition(text)
    assert value(s, "monitord_target_up", target="room-a") == 1
    assert value(s, "monitord_target_up", target="unreachable") == 0

    resp = await client.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
                            auto_decompress=False)
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert resp.headers["Content-Encoding"] == "gzip"
    om = gzip.decompress(await resp.read()).decode()
    assert om.endswith("# EOF\n")
    families = {f.name: f for f in om_families(om)}  # the strict OpenMetrics parser accepts it
    assert families["monitord_poll_errors"].type == "counter"
    assert families["rtc_stream_codec"].type == "info"
    assert families["rtc_stream_jitter_seconds"].unit == "seconds"


async def test_render_is_cached_until_a_snapshot_changes(start_sim, make_daemon) -> None:
    daemon = await polled_daemon(start_sim, make_daemon)
    first = daemon.store.render()
    assert daemon.store.render() is first, "an unchanged store must not re-render"
    await daemon.runtime("room-a").run_once()
    assert daemon.store.render() is not first


async def test_a_scrape_never_waits_for_a_poll(aiohttp_client, start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url, name="slow", timeout="5s")])
    await daemon.poll_all_once()
    await faults(url, hang=True)
    client = await aiohttp_client(build_app(daemon))
    poll = asyncio.ensure_future(daemon.runtime("slow").run_once())
    await asyncio.sleep(0.2)  # let the poll reach the hanging simulator
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert not poll.done(), "the scrape answered while the poll was still hanging"
    assert value(parse_exposition(await resp.text()), "rtc_endpoint_in_call", target="slow") == 1
    poll.cancel()


async def test_promtool_finds_nothing_wrong(start_sim, make_daemon, tmp_path) -> None:
    daemon = await polled_daemon(start_sim, make_daemon, scenario="live")
    # promtool lints the text format only; the OpenMetrics form is checked by the strict
    # OpenMetrics parser in test_text_and_openmetrics_over_http_with_gzip.
    await assert_promtool_clean(daemon.store.render("text"))


async def test_series_cap_counts_what_it_drops(start_sim, make_daemon) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    daemon = make_daemon([target(url)], max_series_per_target=10)
    await daemon.poll_all_once()
    s = parse_exposition(daemon.store.render().decode())
    data = [k for k in s if k[0].startswith("rtc_")]
    assert len(data) == 10
    assert value(s, "monitord_series_dropped_total", reason="series_limit") == 41 - 10


@pytest.mark.parametrize(("accept", "fmt"), [
    # Wildcards count for the text format: a client that prefers "anything" to OpenMetrics gets text.
    ("application/openmetrics-text;q=0.1,*/*;q=0.9", "text"),
    ("application/openmetrics-text;q=0.1,text/*;q=0.9", "text"),
    ("application/openmetrics-text;q=0.9,*/*;q=0.1", "openmetrics"),
    # A q-value that is not a number means "not acceptable", never "most preferred".
    ("application/openmetrics-text;q=abc,text/plain;q=0.5", "text"),
    ("application/openmetrics-text;q=,text/plain;q=0.5", "text"),
    ("application/openmetrics-text;q=0", "text"),
    # Ties go to OpenMetrics; names and parameters are case-insensitive, spaces are ignored.
    ("application/openmetrics-text;q=0.5,text/plain;q=0.5", "openmetrics"),
    ("Application/OpenMetrics-Text ; Q=0.7 , text/plain;q=0.5", "openmetrics"),
    ("application/openmetrics-text; version=1.0.0 ;q=0.6, text/plain;q=0.5", "openmetrics"),
    (",,application/openmetrics-text", "openmetrics"),
    # A missing q is 1, no more: an explicit q=1 ties, and ties go to OpenMetrics.
    ("text/plain,application/openmetrics-text;q=1.0", "openmetrics"),
    # "q=0=1" is a malformed q-value (refused), not some other parameter.
    ("application/openmetrics-text;q=0=1,text/plain;q=0.5", "text"),
    # An OpenMetrics version we do not speak is skipped, and what follows it still counts.
    ("application/openmetrics-text;version=0.0.1,application/openmetrics-text;version=1.0.0", "openmetrics"),
    # A type listed twice keeps its best q-value.
    ("application/openmetrics-text;q=0.9,application/openmetrics-text;q=0.1,text/plain;q=0.5", "openmetrics"),
])
def test_negotiation_edges(accept: str, fmt: str) -> None:
    assert negotiate_format(accept) == fmt


def test_gzip_negotiation_edges() -> None:
    assert not wants_gzip("gzip;q=abc"), "an unreadable q-value refuses the coding"
    assert wants_gzip("GZIP")
    assert wants_gzip("identity;q=1, gzip;q=0.1")


async def test_caches_are_told_the_body_depends_on_accept_headers(aiohttp_client, start_sim, make_daemon) -> None:
    daemon = await polled_daemon(start_sim, make_daemon)
    client = await aiohttp_client(build_app(daemon))
    for headers in ({}, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 200
        assert resp.headers["Vary"] == "Accept, Accept-Encoding"
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers


async def test_a_client_that_sends_no_accept_headers_gets_plain_text(aiohttp_client, start_sim, make_daemon) -> None:
    daemon = await polled_daemon(start_sim, make_daemon)
    client = await aiohttp_client(build_app(daemon))
    resp = await client.get("/metrics", skip_auto_headers=["Accept", "Accept-Encoding"], auto_decompress=False)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in resp.headers
    assert "monitord_build_info" in await resp.text()


async def test_a_body_of_many_megabytes_goes_out_in_pieces_whole(aiohttp_client, make_daemon) -> None:
    from monitord import snapshot
    from monitord.metrics import MetricDef
    from monitord.snapshot import SnapshotBuilder

    daemon = make_daemon([])
    big = MetricDef("rtc_test_big", "gauge", "Many series.", labels=("stream",))
    builder = SnapshotBuilder({"source": "endpoint", "target": "t" * 200}, max_series=100_000)
    for i in range(20_000):
        builder.add(big, float(i), stream=f"s{i}")
    daemon.store.put("target/big/data", builder.build())
    expected = daemon.store.render()
    assert len(expected) > 2 * snapshot.BODY_PIECE
    big_lines = [line for line in expected.splitlines() if line.startswith(b"rtc_test_big{")]
    assert len(big_lines) == 20_000
    client = await aiohttp_client(build_app(daemon))
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    body = await plain.read()
    assert plain.headers["Content-Length"] == str(len(body))
    # Process metrics may have moved since `expected`; every big series arrives, in order.
    assert [line for line in body.splitlines() if line.startswith(b"rtc_test_big{")] == big_lines
    assert body.endswith(b"\n")
    compressed = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert compressed.headers["Content-Encoding"] == "gzip"
    unpacked = gzip.decompress(await compressed.read())
    assert [line for line in unpacked.splitlines() if line.startswith(b"rtc_test_big{")] == big_lines
    head = await client.head("/metrics")
    assert head.status == 200 and await head.read() == b""
