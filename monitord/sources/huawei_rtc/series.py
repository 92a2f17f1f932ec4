"""The realtime series (scale, quality, network, online-user distribution) and their cache.

A poll fetches only the calls that are due; every series keeps its last good value, with its
age exported, until its next refresh or until `max_age` drops it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from monitord import normalize as norm
from monitord.errors import PollError
from monitord.sources.base import SourceContext
from monitord.sources.huawei_rtc.client import DataClient
from monitord.sources.huawei_rtc.config import AppConfig, HuaweiRtcConfig
from monitord.sources.huawei_rtc.parsing import fmt, parse_time
from monitord.sources.huawei_rtc.planner import Call


@dataclass
class Cached:
    value: float
    point_time: float
    fetched_at: float


def app_query(app: AppConfig) -> dict[str, str]:
    return {"app": app.id, **({"room_id": app.room_id} if app.room_id else {})}


class Series:
    def __init__(self, config: HuaweiRtcConfig, ctx: SourceContext, client: DataClient,
                 parse_errors: Counter[str], log: Any) -> None:
        self.config = config
        self.ctx = ctx
        self.client = client
        self.parse_errors = parse_errors
        self.values: dict[tuple[Any, ...], Cached] = {}  # (kind, call key, labels...) -> value
        self.dimension_dropped = 0
        self.log = log
        self._scale_wrong = False  # a rate above 1 came under rate_scale ratio

    async def realtime(self, call: Call) -> None:
        api = key = call.api  # the answer's list is named like the API: scale, quality, network
        now = self.ctx.clock()
        span = float(self.config.point_settle) + 900.0  # enough to hold the newest settled minute
        query = {**app_query(call.app), "metric": call.metric, "start_time": fmt(now - span), "end_time": fmt(now)}
        if call.sdk_type:
            query["sdk_type"] = call.sdk_type
        answer = await self.client.get(api, f"/v1/{self.config.project_id}/rtc/realtime/{api}", query)
        points = answer.get(key)
        if not isinstance(points, list):
            raise PollError("bad_response", f"realtime/{api}: no '{key}' list")
        newest: tuple[float, Any] | None = None
        for point in points:
            if not isinstance(point, dict):
                continue
            t = parse_time(point.get("time"))
            if t is None or isinstance(norm.plausible_time(t, now), norm.Missing):
                # Unreadable, before 2000 or more than a day ahead: a broken point, counted.
                self.parse_errors[f"{api}.time"] += 1
                continue
            # The newest minute is published late and revised: only settled minutes count.
            if t + 60.0 + self.config.point_settle > now:
                continue
            if newest is None or t > newest[0]:
                newest = (t, point.get("value"))
        if newest is None:
            return  # nothing complete yet: the old value stays until it ages out
        t, raw = newest
        if api == "scale":
            value = norm.non_negative(raw)
        elif self._scale_wrong:
            value = norm.INVALID  # a 0.8 next to a 99.5 is 0.8 %, not 80 %: no rate is trusted
        else:
            value = norm.ratio(raw, self.config.rate_scale)
            if not isinstance(value, float) and self.config.rate_scale == "ratio" and _above_one(raw):
                self._distrust_rates(call, raw)
        if isinstance(value, float):
            self.values[("series", call.key)] = Cached(value, t, now)
        else:
            self.values.pop(("series", call.key), None)
            self.parse_errors[f"{api}.{call.metric}"] += 1

    def _distrust_rates(self, call: Call, raw: Any) -> None:
        # Huawei Cloud "SparkRTC API Reference > 数据统计分析 > 查询历史质量" documents these rates as
        # fractions (1 is 100 %). A rate above 1 means this account writes percent, so its rates
        # below 1 are percent too: none is shown (each a parse error) until the config says so.
        self._scale_wrong = True
        for key in [k for k in self.values if k[0] == "series" and k[1][0] != "scale"]:
            del self.values[key]
        self.log.warning("rate_scale_mismatch", config_key="rate_scale", configured=self.config.rate_scale,
                         api=call.api, vendor_metric=call.metric, value=str(raw)[:32],
                         hint="the API sent a rate above 1, so it writes percent: set rate_scale: percent; "
                              "until then no rate of this target is exposed")

    async def scale_dimension(self, call: Call) -> None:
        now = self.ctx.clock()
        minute = (now - 60.0 - self.config.point_settle) // 60 * 60
        query = {
            **app_query(call.app),
            "metric": "OnlineUsers",
            "dimension": call.metric,
            "time": fmt(minute),
        }
        answer = await self.client.get(
            "scale_dimension", f"/v1/{self.config.project_id}/rtc/realtime/scale/dimension", query
        )
        rows = answer.get("dimensions")
        if not isinstance(rows, list):
            raise PollError("bad_response", "realtime/scale/dimension: no 'dimensions' list")
        for k in [k for k in self.values if k[0] == "dim" and k[1] == call.key]:
            del self.values[k]
        kept = 0
        for row in sorted(
            (r for r in rows if isinstance(r, dict)),
            key=lambda r: -(r.get("online_users") or 0) if isinstance(r.get("online_users"), int | float) else 0,
        ):
            name, users = row.get("dimension"), norm.non_negative(row.get("online_users"))
            if not isinstance(name, str) or not isinstance(users, float):
                continue
            if kept >= self.config.dimension_top:
                self.dimension_dropped += 1
                continue
            kept += 1
            self.values[("dim", call.key, name)] = Cached(users, minute, now)

    def expire(self, now: float, max_age: float) -> None:
        for key in [k for k, v in self.values.items() if now - v.fetched_at > max_age]:
            del self.values[key]


def _above_one(raw: Any) -> bool:
    if isinstance(raw, bool):
        return False
    if isinstance(raw, int | float):
        return raw > 1
    if isinstance(raw, str):
        try:
            return float(raw.strip()) > 1
        except ValueError:
            return False
    return False
