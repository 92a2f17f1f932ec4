"""Real vendor answers, recorded from the simulators and served back mutated (importable as
`vendor_bodies`).

The simulators record every answer they accept and replace its body when a rule says so
(`/_sim/answers`, monitord/simulators/base.py), after their own handler checked the request: the
client under test still logs in, signs and fetches tokens for real. Nothing here patches monitord.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from helpers import parse_exposition
from hypothesis import strategies as st

from monitord.config import HTTPClientConfig, TargetConfig, parse
from monitord.errors import PollError
from monitord.http import HttpClient
from monitord.simulators import avd, endpoint, huawei_rtc, polyv, zego
from monitord.simulators.base import Clock
from monitord.snapshot import SnapshotBuilder, Store
from monitord.sources import REGISTRY
from monitord.sources.base import Source, SourceContext
from monitord.state import StateStore

T0 = 1_790_000_000.0
DEEP = "[" * 100_000 + "]" * 100_000


async def recorded(url: str) -> dict[str, str]:
    """The newest accepted answer per call (key: path, plus ?ActionID= / ?Action= where the
    vendor names calls in the query)."""
    async with aiohttp.ClientSession() as s, s.get(f"{url}/_sim/answers") as r:
        assert r.status == 200
        return (await r.json())["recorded"]  # type: ignore[no-any-return]


async def override(url: str, rules: list[dict[str, Any]]) -> None:
    """Replace the body of accepted answers to calls whose key contains `match`; [] clears."""
    async with aiohttp.ClientSession() as s:
        if rules:
            async with s.post(f"{url}/_sim/answers", json={"rules": rules}) as r:
                assert r.status == 200, await r.text()
        else:
            async with s.delete(f"{url}/_sim/answers") as r:
                assert r.status == 200


# ------------------------------------------------------------------------------ the sources

def _targets(url: str) -> dict[str, dict[str, Any]]:
    return {
        "endpoint": {"source": "endpoint", "url": f"{url}/d/room-101", "username": endpoint.DEFAULT_USER,
                     "password": endpoint.DEFAULT_PASSWORD},
        "avd": {"source": "avd", "url": url, "access_key": avd.DEFAULT_ACCESS_KEY,
                "secret_key": avd.DEFAULT_SECRET_KEY, "recording_rooms": ["12345678980"]},
        "polyv": {"source": "polyv", "url": url, "app_id": polyv.DEFAULT_APP_ID,
                  "app_secret": polyv.DEFAULT_APP_SECRET, "channels": ["3880533", "2477096"]},
        "zego": {"source": "zego", "url": url, "app_id": zego.DEFAULT_APP_ID, "server_secret": zego.DEFAULT_SECRET,
                 "task_ids": ["Rec2SingleStream", "Rec5PausedTask00"]},
        "huawei_rtc": {"source": "huawei_rtc", "endpoint": url, "iam_endpoint": url,
                       "project_id": huawei_rtc.PROJECT_ID, "ak": huawei_rtc.ACCESS_KEY, "sk": huawei_rtc.SECRET_KEY,
                       "apps": [{"id": huawei_rtc.APPS[0]}], "sdk_types": ["native"], "dimensions": ["region"],
                       "budget_per_minute": 6000, "assume_budget_spent_at_start": False,
                       "retry_attempts": 1, "interval": "60s"},
    }


def _simulator(kind: str, clock: Clock) -> web.Application:
    if kind == "endpoint":
        return endpoint.create_app(clock=clock, scenario="fixed")
    if kind == "avd":
        return avd.create_app(clock=clock, scenario="fixed")
    if kind == "polyv":
        return polyv.create_app(clock=clock, scenario="fixed", rate_limit=10**9)
    if kind == "zego":
        return zego.create_app(clock=clock, scenario="fixed", rate_limit=10**9)
    return huawei_rtc.create_app(clock=clock, budget_per_minute=10**9)


@dataclass
class Vendor:
    """One simulator on 127.0.0.1 and a factory of fresh sources polling it, all on one loop."""

    kind: str
    loop: asyncio.AbstractEventLoop
    runner: web.AppRunner
    url: str
    clock: Clock
    http: HttpClient
    config: TargetConfig

    @staticmethod
    def start(kind: str) -> Vendor:
        loop = asyncio.new_event_loop()
        clock = Clock(fixed=T0)
        runner = web.AppRunner(_simulator(kind, clock), access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        target = {"name": "t", "timeout": "20s", **_targets(url)[kind]}
        config = parse({"targets": [target]}).targets[0]
        return Vendor(kind, loop, runner, url, clock, HttpClient(HTTPClientConfig(), 4 * 1024 * 1024), config)

    def __repr__(self) -> str:  # hypothesis prints the fixture on failure: keep it short
        return f"Vendor({self.kind!r}, {self.url})"

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def source(self) -> Source[Any]:
        """A fresh source: its own budget, ban state, tokens and memory-only state."""
        ctx = SourceContext(http=self.http, state=StateStore(None), clock=self.clock)
        return REGISTRY[self.kind](self.config, ctx)

    def poll(self, source: Source[Any] | None = None) -> tuple[PollError | None, str, SnapshotBuilder]:
        """One real poll; returns the PollError (if any), the exposition text of the poll's data
        and the source's self-metrics, and the data builder. Anything but a PollError escapes."""
        source = source or self.source()
        data = SnapshotBuilder({"source": self.kind, "target": "t"})
        error: PollError | None = None

        async def go() -> None:
            async with asyncio.timeout(60):
                await source.poll(data)

        try:
            self.run(go())
        except PollError as exc:
            error = exc
        extra = SnapshotBuilder({"source": self.kind, "target": "t"})
        source.self_metrics(extra)
        store = Store()
        store.put("data", data.build())
        store.put("self", extra.build())
        return error, store.render().decode(), data

    def close(self) -> None:
        self.run(self.http.close())
        self.run(self.runner.cleanup())
        self.loop.close()


def assert_finite_exposition(text: str) -> None:
    """The text parses as an exposition and every value in it is a finite number."""
    series = parse_exposition(text)
    bad = {k: v for k, v in series.items() if not math.isfinite(v)}
    assert not bad, bad


# ---------------------------------------------------------------------------- mutations

INF_TOKEN = "__monitord_inf__"
DEEP_TOKEN = "__monitord_deep__"

# The values that broke parsers before, drawn often; then any JSON value of any type.
SPECIAL_VALUES = st.sampled_from([
    1e308, -1e308, INF_TOKEN, DEEP_TOKEN, -1, -0.001, 2**63, 10**19, 2**80, 5e-324, 0, "", "--", "N/A", "-5ms",
    "1e999", "9" * 400, "0001-01-01 00:00:00", "9999-12-31 23:59:59", "0001-01-01T00:00:00Z", "\ud800", "<html>",
    [], {}, [1], {"a": 1}, None, True,
])
ODD_VALUES = st.one_of(
    SPECIAL_VALUES,
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=24),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
WHOLE_BODIES = st.sampled_from([
    DEEP_TOKEN, "", "null", "[]", "{}", "1", '"text"', "<!DOCTYPE html><html></html>", "\x00\xff garbage {{{",
    '{"a": ' * 5000 + "1" + "}" * 5000, '{"code": NaN}', '{"truncated": [1, 2',
])


def _mutate(draw: Callable[[Any], Any], doc: Any) -> Any:
    """`doc` with one node replaced by an odd value or deleted, at a randomly chosen depth. A string
    holding a JSON document (the endpoint's `data`) is walked into and re-encoded."""
    if isinstance(doc, str) and doc[:1] in "{[":
        try:
            inner = json.loads(doc)
        except ValueError:
            inner = None
        if isinstance(inner, dict | list) and draw(st.integers(0, 3)) > 0:
            return json.dumps(_mutate(draw, inner))
    if isinstance(doc, dict | list) and doc and draw(st.integers(0, 5)) > 0:
        copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
        key = draw(st.sampled_from(sorted(copy) if isinstance(copy, dict) else range(len(copy))))
        if draw(st.integers(0, 5)) == 0:
            del copy[key]
        else:
            copy[key] = _mutate(draw, copy[key])
        return copy
    return draw(ODD_VALUES)


_FUZZ_VALUES: list[Any] = [
    1e308, 1e308, 1e308, "1e308", -1e308, 7, INF_TOKEN, DEEP_TOKEN, -1, -0.001, 2**63, 2**80, 0, "", "--", "-5ms", "1e999", "9" * 400,
    "0001-01-01 00:00:00", "9999-12-31 23:59:59", "0001-01-01T00:00:00Z", "\ud800", "garbage", [], {}, [1],
    {"a": 1}, None, True, 3.5,
]


def _fuzz(rnd: random.Random, doc: Any, rate: float) -> Any:
    """Every node of `doc` independently replaced (or, in an object, deleted) with probability
    `rate`: type confusion on any field, many at once, in one document."""
    if isinstance(doc, str) and doc[:1] in "{[":
        try:
            inner = json.loads(doc)
        except ValueError:
            inner = None
        if isinstance(inner, dict | list):
            return json.dumps(_fuzz(rnd, inner, rate))
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            if rnd.random() < rate / 4:
                continue
            out[key] = _fuzz_node(rnd, value, rate)
        return out
    if isinstance(doc, list):
        return [_fuzz_node(rnd, v, rate) for v in doc]
    if _numeric(doc) and rnd.random() < 0.5:
        return rnd.choice(_EXTREME_NUMBERS)  # a number the vendor could send, but should not
    return doc


def _fuzz_node(rnd: random.Random, value: Any, rate: float) -> Any:
    # A whole object or list is replaced less often than a leaf: it takes every field below along.
    container = isinstance(value, dict | list) or (isinstance(value, str) and value[:1] in "{[")
    if rnd.random() < (rate / 3 if container else rate):
        return rnd.choice(_FUZZ_VALUES)
    return _fuzz(rnd, value, rate)


_EXTREME_NUMBERS: list[Any] = [1e308, "1e308", -1, "-1", 2**80, INF_TOKEN, -1e308, 10**19]


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    try:
        float(str(value).rstrip("%kKMsm "))
    except ValueError:
        return False
    return True


def _encode(doc: Any) -> str:
    text = json.dumps(doc)
    return text.replace(f'"{INF_TOKEN}"', "1e999").replace(f'"{DEEP_TOKEN}"', DEEP)


def mutated_rules(draw: Callable[[Any], Any], answers: dict[str, str]) -> list[dict[str, Any]]:
    """One to three recorded answers, each replaced by a mutation of itself or by a broken body."""
    rules = []
    for key in draw(st.lists(st.sampled_from(sorted(answers)), min_size=1, max_size=3, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            body = draw(WHOLE_BODIES).replace(DEEP_TOKEN, DEEP)
        else:
            doc = json.loads(answers[key])
            if draw(st.integers(0, 3)) > 0:
                rnd = draw(st.randoms(use_true_random=True))  # seeded from the draw: reproducible
                doc = _fuzz(rnd, doc, draw(st.sampled_from([0.05, 0.15, 0.3])))
            else:
                for _ in range(draw(st.integers(1, 4))):
                    doc = _mutate(draw, doc)
            body = _encode(doc)
        rules.append({"match": key, "body": body})
    return rules
