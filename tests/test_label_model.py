"""The label model of the cross-vendor families (docs/labels.md, monitord/sources/shared.py):
every source reports a shared family with exactly the shared labels, so one PromQL query covers
every vendor; and the endpoint's far-site names are bounded and can be turned off."""

from __future__ import annotations

from pathlib import Path

from helpers import parse_exposition

from monitord.simulators import endpoint as endpoint_sim
from monitord.sources import REGISTRY, shared

GOLDEN = Path(__file__).parent / "golden"
SHARED_NAMES = {m.name: m for m in shared.SHARED}


def test_every_source_uses_the_shared_definition_of_a_shared_family() -> None:
    problems = []
    for kind, cls in sorted(REGISTRY.items()):
        for metric in cls.metrics:
            expected = SHARED_NAMES.get(metric.name)
            if expected is not None and metric != expected:
                problems.append(f"{kind}: {metric.name} has labels {metric.labels}, the model says {expected.labels}")
            if metric.name.startswith("rtc_stream_") and metric.labels[: len(shared.STREAM_LABELS)] != \
                    shared.STREAM_LABELS:
                problems.append(f"{kind}: {metric.name} must start with the stream labels {shared.STREAM_LABELS}")
    assert not problems, "\n".join(problems)


def test_every_shared_family_is_reported_by_some_source() -> None:
    reported = {m.name for cls in REGISTRY.values() for m in cls.metrics}
    assert set(SHARED_NAMES) <= reported


def test_one_query_covers_every_vendor_in_the_real_expositions() -> None:
    """The golden files are what each source really emits against its simulator: within a shared
    family, every vendor's samples carry the same label names, so `sum by (...)` over any of them
    means the same for all."""
    label_sets: dict[str, dict[str, set[frozenset[str]]]] = {}
    for path in sorted(GOLDEN.glob("*_fixed.prom")):
        for (name, labels), _ in parse_exposition(path.read_text()).items():
            if name in SHARED_NAMES:
                source = dict(labels)["source"]
                label_sets.setdefault(name, {}).setdefault(source, set()).add(frozenset(dict(labels)))
    multi_vendor = {name: by_source for name, by_source in label_sets.items() if len(by_source) > 1}
    assert multi_vendor, "no shared family is reported by two vendors in the golden files"
    for name, by_source in label_sets.items():
        keys = {keys for sets in by_source.values() for keys in sets}
        assert keys == {frozenset({"source", "target", *SHARED_NAMES[name].labels})}, (name, by_source)


async def test_site_names_are_cut_to_the_configured_length(start_sim, make_daemon) -> None:
    url, _ = await start_sim(endpoint_sim, scenario="fixed")
    daemon = make_daemon([{"name": "room", "source": "endpoint", "url": url, "username": endpoint_sim.DEFAULT_USER,
                           "password": endpoint_sim.DEFAULT_PASSWORD, "site_name_max_length": 5}])
    assert (await daemon.poll_all_once())["room"].ok
    s = parse_exposition(daemon.store.render().decode())
    sites = {dict(labels)["site"] for (name, labels) in s if name == "rtc_stream_frames_per_second"}
    # 'Board "A" 会议室' is cut to its first five characters; short names stay whole.
    assert sites == {"", "site1", "Board"}


async def test_site_names_can_be_turned_off(start_sim, make_daemon) -> None:
    url, _ = await start_sim(endpoint_sim, scenario="fixed")
    daemon = make_daemon([{"name": "room", "source": "endpoint", "url": url, "username": endpoint_sim.DEFAULT_USER,
                           "password": endpoint_sim.DEFAULT_PASSWORD, "site_names": False}])
    assert (await daemon.poll_all_once())["room"].ok
    text = daemon.store.render().decode()
    assert "site1" not in text and "Board" not in text
    s = parse_exposition(text)
    streams = [labels for (name, labels) in s if name == "rtc_stream_frames_per_second"]
    assert len(streams) == 3, "turning names off must not merge or drop streams"
    assert {dict(labels)["site"] for labels in streams} == {""}
