"""Abnormal experience events: counted once each, also across restarts.

Huawei Cloud "SparkRTC API Reference > 数据统计分析 > 查询用户异常体验事件" is paged (`limit`,
`offset`, `total`) and publishes late: events are read in overlapping windows, every page, and
deduplicated by a hash of the event's fields against a persisted seen-set (key -> how many
identical events were seen, so two identical events are two). Counters, seen-set and high-water
mark live in one state file written atomically after every page: a restart never counts an
event twice. "查询异常事件用户分布" gives the users affected per type and factor.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from monitord import normalize as norm
from monitord.errors import PollError
from monitord.sources.base import SourceContext
from monitord.sources.huawei_rtc.client import DataClient
from monitord.sources.huawei_rtc.config import AppConfig, HuaweiRtcConfig
from monitord.sources.huawei_rtc.parsing import fmt, label_text, parse_time
from monitord.sources.huawei_rtc.planner import Call
from monitord.sources.huawei_rtc.series import Cached, Series, app_query
from monitord.state import StateModel
from monitord.vendor import BudgetSpent, StateFile

# One window spans at most a day; more events than this in it is not an answer but a broken one.
MAX_EVENTS_PER_WINDOW = 1_000_000
# Labels of an abnormal event; an event without readable values for all of them is not counted.
EVENT_LABEL_FIELDS = ("abnormal_type", "abnormal_factor", "stage", "location")
_IDENTITY_FIELDS = ("time", "uid", "room_id", "stage", "location", "peer_uid", "abnormal_type", "abnormal_factor")


class EventsState(StateModel):
    """Abnormal-event counting of one app (and room): high-water mark, events seen in the
    overlap (hash -> [times seen in its window, event time]), counts by labels, descriptions."""

    hwm: float | None
    seen: dict[str, Annotated[list[float], Field(min_length=2, max_length=2)]]
    counts: dict[str, Annotated[int, Field(ge=0)]]
    descs: dict[str, list[str]]


@dataclass
class _Window:
    """An abnormal-event window being read page by page."""

    start: float
    end: float
    offset: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # identical events seen in this window


def events_key(app: AppConfig) -> str:
    return app.id + "|" + (app.room_id or "")


class AbnormalEvents:
    def __init__(self, config: HuaweiRtcConfig, ctx: SourceContext, client: DataClient, series: Series,
                 parse_errors: Counter[str], log: Any, state_file: Callable[[str, type[EventsState]],
                                                                            StateFile[EventsState]]) -> None:
        self.config = config
        self.ctx = ctx
        self.client = client
        self.series = series
        self.parse_errors = parse_errors
        self.log = log
        self._state_file = state_file
        self.files: dict[str, StateFile[EventsState]] = {}
        self.pending: dict[str, _Window] = {}
        self.descs: dict[str, list[str]] = {}
        self.states = {events_key(app): self._load(app) for app in config.apps if config.abnormal_events}
        for state in self.states.values():
            self.descs.update(state["descs"])

    def _load(self, app: AppConfig) -> dict[str, Any]:
        key = "events-" + hashlib.sha256(events_key(app).encode()).hexdigest()[:12]
        file = self.files[key] = self._state_file(key, EventsState)
        loaded = file.load()
        saved = loaded.model_dump() if loaded is not None else None
        if saved is None:
            # Said once per app, so an unexpected fresh start (a lost state directory) is visible;
            # the counters start at 0, which Prometheus reads as a counter reset.
            self.log.info(
                "abnormal_events_fresh_start",
                app=app.id,
                room=app.room_id or "",
                lookback_seconds=float(self.config.events_overlap),
            )
            saved = {"hwm": None, "seen": {}, "counts": {}, "descs": {}}
        saved["_key"] = key
        return saved

    def _save(self, state: dict[str, Any]) -> None:
        self.files[state["_key"]].save({k: v for k, v in state.items() if k != "_key"})

    async def read(self, app: AppConfig) -> None:
        """Read every page of the current window. A window cut short by the budget is continued
        at the same offset (with its per-window counts) in a later poll."""
        c = self.config
        key = events_key(app)
        state = self.states[key]
        now = self.ctx.clock()
        pending = self.pending.pop(key, None)
        if pending is None:
            hwm = state["hwm"]
            start = (hwm if hwm is not None else now) - float(c.events_overlap)
            start = max(start, now - 86400.0 + 60.0)  # the API's maximum span is one day
            pending = _Window(start, now)
        while True:
            query = {
                **app_query(app),
                "start_time": fmt(pending.start),
                "end_time": fmt(pending.end),
                "limit": str(c.events_page_size),
                "offset": str(pending.offset),
            }
            try:
                answer = await self.client.get("abnormal_events", "/v1/rtc/data/abnormal-events", query)
            except BudgetSpent:
                self.pending[key] = pending
                raise
            events, total = answer.get("events"), answer.get("total")
            if not isinstance(events, list) or not isinstance(total, int) or isinstance(total, bool):
                raise PollError("bad_response", "abnormal-events: no 'events' list or 'total'")
            if not 0 <= total <= MAX_EVENTS_PER_WINDOW:
                # A total no window can hold would have us page through the whole budget.
                raise PollError("bad_response", f"abnormal-events: total {total} is not a number of events")
            self._count(state, events, pending.counts)
            pending.offset += len(events)
            if not events or pending.offset >= total:
                break
        state["hwm"] = pending.end
        cutoff = pending.end - float(c.events_overlap) - 60.0
        state["seen"] = {k: v for k, v in state["seen"].items() if v[1] >= cutoff}
        self._save(state)

    def _count(self, state: dict[str, Any], events: list[Any], window_counts: Counter[str]) -> None:
        seen: dict[str, list[float]] = state["seen"]
        for event in events:
            if not isinstance(event, dict):
                continue
            t = parse_time(event.get("time"))
            if t is None or isinstance(norm.plausible_time(t, self.ctx.clock()), norm.Missing):
                self.parse_errors["abnormal_events.time"] += 1
                continue
            bad = next((k for k in EVENT_LABEL_FIELDS if label_text(event.get(k)) is None), None)
            if bad is not None:
                self.parse_errors[f"abnormal_events.{bad}"] += 1
                continue
            ident = json.dumps([event.get(k) for k in _IDENTITY_FIELDS], ensure_ascii=True)
            key = hashlib.sha256(ident.encode()).hexdigest()[:20]  # no user ids on disk
            window_counts[key] += 1
            known = seen.get(key)
            if known is not None and window_counts[key] <= known[0]:
                continue
            seen[key] = [window_counts[key], t]
            labels = "\0".join(label_text(event.get(k)) or "" for k in EVENT_LABEL_FIELDS)
            state["counts"][labels] = state["counts"].get(labels, 0) + 1
            self.remember_desc(event, state)
        self._save(state)

    def remember_desc(self, row: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        key = f"{label_text(row.get('abnormal_type')) or ''}\0{label_text(row.get('abnormal_factor')) or ''}"
        desc = [label_text(row.get("abnormal_type_desc")) or "", label_text(row.get("abnormal_factor_desc")) or ""]
        self.descs[key] = desc
        if state is not None:
            state["descs"][key] = desc

    async def dimension(self, call: Call) -> None:
        now = self.ctx.clock()
        query = {
            **app_query(call.app),
            "dimension": "abnormal_type,abnormal_factor",
            "start_time": fmt(now - float(self.config.event_distribution_window or 600.0)),
            "end_time": fmt(now),
        }
        answer = await self.client.get("abnormal_dimension", "/v1/rtc/data/abnormal-event/dimension", query)
        rows = answer.get("dimensions")
        if not isinstance(rows, list):
            raise PollError("bad_response", "abnormal-event/dimension: no 'dimensions' list")
        values = self.series.values
        for k in [k for k in values if k[0] == "abn" and k[1] == call.key]:
            del values[k]
        for row in rows:
            if not isinstance(row, dict):
                continue
            users = norm.non_negative(row.get("user_count"))
            kind, factor = label_text(row.get("abnormal_type")), label_text(row.get("abnormal_factor"))
            if kind is None or factor is None:
                self.parse_errors["abnormal_dimension.abnormal_type"] += 1
                continue
            if isinstance(users, float):
                values[("abn", call.key, kind, factor)] = Cached(users, now, now)
                self.remember_desc(row)
