"""The user and room lists: who failed to join, and how many rooms run.

Huawei Cloud "SparkRTC API Reference > 数据统计分析 > 查询用户列表" (`GET /v1/{project_id}/rtc/users`)
lists the users who joined in a time range, with `state` FAIL (加入失败) / ONLINE / OFFLINE and the
user's isp, region, platform and sdk; "查询房间列表" (`GET /v1/{project_id}/rtc/rooms`) lists the
rooms created in a range with `state` RUNNING / CLOSED. Both are paged (`limit`, `offset`,
`total`), span at most 90 days and are paid from the same 30/min data budget.

Failed joins: every page of the window `[now - failed_joins_window, now]` is read with
`state=FAIL` (the array parameter in the SDK's csv form). The total is the answer's `total`; the
breakdown by isp, region, platform and sdk counts the rows, and is only shown when every row was
read (a window with more than `users_max_pages` pages exposes its total, and the incomplete
breakdown is counted, not shown). A window cut short by the budget is continued at the same
offset in a later poll. No user id, nickname or IP is kept or exposed: counts only.

Running rooms: one request with `state=RUNNING&limit=1`; the count is the answer's `total`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from monitord import normalize as norm
from monitord.errors import PollError
from monitord.sources.base import SourceContext
from monitord.sources.huawei_rtc.client import DataClient
from monitord.sources.huawei_rtc.config import HuaweiRtcConfig
from monitord.sources.huawei_rtc.metrics import FAILED_JOIN_DIMENSIONS
from monitord.sources.huawei_rtc.parsing import fmt, label_text
from monitord.sources.huawei_rtc.planner import Call
from monitord.sources.huawei_rtc.series import Cached, Series, app_query
from monitord.vendor import BudgetSpent

UNKNOWN = "unknown"  # a user row without the field
# A list cannot hold more rows than this; a larger total is a broken answer, not a number of users.
MAX_LIST_TOTAL = 10_000_000


@dataclass
class _Read:
    """A failed-join window being read page by page."""

    start: float
    end: float
    offset: int = 0
    pages: int = 0
    total: int = 0
    counts: dict[str, Counter[str]] = field(default_factory=lambda: {d: Counter() for d in FAILED_JOIN_DIMENSIONS})


def _total(answer: dict[str, Any], what: str) -> int:
    total = answer.get("total")
    if not isinstance(total, int) or isinstance(total, bool) or not 0 <= total <= MAX_LIST_TOTAL:
        raise PollError("bad_response", f"{what}: no 'total' count")
    return total


class Lists:
    def __init__(self, config: HuaweiRtcConfig, ctx: SourceContext, client: DataClient, series: Series,
                 parse_errors: Counter[str]) -> None:
        self.config = config
        self.ctx = ctx
        self.client = client
        self.series = series
        self.parse_errors = parse_errors
        self.pending: dict[tuple[str, ...], _Read] = {}
        self.breakdowns_incomplete = 0

    async def failed_joins(self, call: Call) -> None:
        c = self.config
        now = self.ctx.clock()
        read = self.pending.pop(call.key, None) or _Read(now - float(c.failed_joins_window), now)
        path = f"/v1/{c.project_id}/rtc/users"
        while True:
            query = {**app_query(call.app), "state": "FAIL", "start_time": fmt(read.start),
                     "end_time": fmt(read.end), "limit": str(c.users_page_size), "offset": str(read.offset)}
            try:
                answer = await self.client.get("failed_joins", path, query)
            except BudgetSpent:
                self.pending[call.key] = read
                raise
            users = answer.get("users")
            if not isinstance(users, list):
                raise PollError("bad_response", "rtc/users: no 'users' list")
            read.total = _total(answer, "rtc/users")
            read.pages += 1
            for user in users:
                self._count(user, read)
            read.offset += len(users)
            if not users or read.offset >= read.total or read.pages >= c.users_max_pages:
                break
        values = self.series.values
        for key in [k for k in values if k[0] in ("fj", "fjd") and k[1] == call.key]:
            del values[key]
        values[("fj", call.key)] = Cached(float(read.total), read.end, now)
        if read.offset < read.total:
            self.breakdowns_incomplete += 1
            return
        for dimension, counts in read.counts.items():
            kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            for name, n in kept[: c.dimension_top]:
                values[("fjd", call.key, dimension, name)] = Cached(float(n), read.end, now)
            self.series.dimension_dropped += max(0, len(kept) - c.dimension_top)

    def _count(self, user: Any, read: _Read) -> None:
        if not isinstance(user, dict):
            self.parse_errors["failed_joins.user"] += 1
            return
        for dimension in FAILED_JOIN_DIMENSIONS:
            text = label_text(user.get(dimension))
            if text is None:
                self.parse_errors[f"failed_joins.{dimension}"] += 1
            read.counts[dimension][(text or UNKNOWN)[:64]] += 1

    async def running_rooms(self, call: Call) -> None:
        c = self.config
        now = self.ctx.clock()
        query = {**app_query(call.app), "state": "RUNNING", "start_time": fmt(now - float(c.rooms_lookback)),
                 "end_time": fmt(now), "limit": "1", "offset": "0"}
        answer = await self.client.get("running_rooms", f"/v1/{c.project_id}/rtc/rooms", query)
        if not isinstance(answer.get("room_info_list"), list):
            raise PollError("bad_response", "rtc/rooms: no 'room_info_list'")
        rooms = norm.non_negative(_total(answer, "rtc/rooms"))
        if isinstance(rooms, float):
            self.series.values[("rooms", call.key)] = Cached(rooms, now, now)
