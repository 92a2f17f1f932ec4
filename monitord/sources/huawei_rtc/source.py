"""The huawei_rtc source: one poll plans, runs and publishes the due data calls.

Partial failure: each call stands alone. A failed call leaves its series at their last good
value (aged out after `max_age`) and counts monitord_huawei_rtc_requests_total{outcome}. The poll
fails (target down, data dropped by the runtime) only on an auth failure or when every call it
made failed; a poll in which the budget allowed no call at all succeeds with the cached values.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from aiohttp import web

from monitord.config import TargetConfig
from monitord.errors import PollError
from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder
from monitord.sources.base import AccountStatus, Source, SourceContext
from monitord.sources.huawei_rtc.budget import BUDGET_NAME, BUDGET_WINDOW
from monitord.sources.huawei_rtc.callbacks import RecordCallbacks
from monitord.sources.huawei_rtc.client import DataClient
from monitord.sources.huawei_rtc.config import HuaweiRtcConfig
from monitord.sources.huawei_rtc.events import EVENT_LABEL_FIELDS, AbnormalEvents, events_key
from monitord.sources.huawei_rtc.lists import Lists
from monitord.sources.huawei_rtc.metrics import (
    ABNORMAL_DESC,
    ABNORMAL_EVENTS,
    ABNORMAL_USERS,
    BREAKDOWN_INCOMPLETE,
    BUDGET_LIMIT,
    BUDGET_USED,
    CALLBACK_REJECTED,
    DIMENSION_DROPPED,
    EXCELLENT,
    FAILED_JOIN_DIMENSIONS,
    FAILED_JOIN_USERS,
    FAILED_JOINS_BY_DIMENSION,
    KNOWN_ABNORMAL,
    LOCATIONS,
    NETWORK_LABELS,
    NETWORK_METRICS,
    ONLINE_BY_DIMENSION,
    ONLINE_USERS,
    PLANNED_PERIOD,
    POINT_TIME,
    QUALITY,
    QUALITY_METRICS,
    RECORD_DURATION,
    RECORD_EVENTS,
    REFRESH_AGE,
    REQUEST_OUTCOMES,
    REQUESTS,
    ROOMS,
    RUNNING_ROOMS,
    SCALE_METRICS,
    THROTTLED_WAITS,
    TOKEN_REFRESHES,
    VENDOR_THROTTLED,
)
from monitord.sources.huawei_rtc.planner import Call, Planner
from monitord.sources.huawei_rtc.series import Series
from monitord.vendor import BudgetSpent, TokenCache


class HuaweiRtcSource(Source[HuaweiRtcConfig]):
    kind: ClassVar[str] = "huawei_rtc"
    Config: ClassVar[type[TargetConfig]] = HuaweiRtcConfig
    description: ClassVar[str] = "Huawei Cloud SparkRTC: realtime scale/quality/network, abnormal events, recordings"
    PARSE_FIELDS: ClassVar[tuple[str, ...]] = (
        *(f"{api}.{m}" for api, names in (("scale", SCALE_METRICS), ("quality", QUALITY_METRICS),
                                          ("network", NETWORK_METRICS)) for m in names),
        *(f"{api}.time" for api in ("scale", "quality", "network")),
        "abnormal_events.time",
        *(f"abnormal_events.{name}" for name in EVENT_LABEL_FIELDS),
        "abnormal_dimension.abnormal_type",
        "failed_joins.user",
        *(f"failed_joins.{name}" for name in FAILED_JOIN_DIMENSIONS),
    )
    metrics: ClassVar[tuple[MetricDef, ...]] = (
        ONLINE_USERS,
        ROOMS,
        ONLINE_BY_DIMENSION,
        *QUALITY.values(),
        EXCELLENT,
        POINT_TIME,
        ABNORMAL_EVENTS,
        ABNORMAL_DESC,
        ABNORMAL_USERS,
        FAILED_JOIN_USERS,
        FAILED_JOINS_BY_DIMENSION,
        RUNNING_ROOMS,
        RECORD_EVENTS,
        RECORD_DURATION,
        BUDGET_LIMIT,
        BUDGET_USED,
        REQUESTS,
        THROTTLED_WAITS,
        VENDOR_THROTTLED,
        REFRESH_AGE,
        PLANNED_PERIOD,
        TOKEN_REFRESHES,
        CALLBACK_REJECTED,
        DIMENSION_DROPPED,
        BREAKDOWN_INCOMPLETE,
    )

    @classmethod
    def budget_domain(cls, config: TargetConfig) -> str | None:
        # The 30 requests/min budget is the account's: every target of one account, one shard.
        assert isinstance(config, HuaweiRtcConfig)
        return config.account_key()

    def __init__(self, config: HuaweiRtcConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        c = config
        # The account's budget and an IAM user's token are the daemon's, shared by every target of
        # the account (the scope's domain is budget_domain: the account key).
        self.budget = self.shared.budget(BUDGET_NAME, c.budget_per_minute, BUDGET_WINDOW,
                                         assume_spent=c.assume_budget_spent_at_start)
        tokens = self.shared.get(f"token:{c.token_key()}", TokenCache)
        # ctx.interval is the effective one (the target's or global.interval), already scaled.
        self.planner = Planner(c, self.budget, self._members, ctx.interval, self.scaled)
        self.waits: Counter[str] = Counter()
        self._parse_errors: Counter[str] = Counter()
        self._data_at: float | None = None  # newest successful data call
        self.data = DataClient(c, ctx, self.budget, tokens, self.caller, self.client.send)
        self.series = Series(c, ctx, self.data, self._parse_errors, self.log)
        self.events = AbnormalEvents(c, ctx, self.data, self.series, self._parse_errors, self.log,
                                     self.state_file)
        self.callbacks = RecordCallbacks(c, ctx, self.log, self.state_file)
        self.lists = Lists(c, ctx, self.data, self.series, self._parse_errors)

    def _members(self) -> int:
        # One entry per runtime: during a reload a target's new runtime joins before the old leaves.
        return len(set(self.shared.holders(BUDGET_NAME)))

    # -------------------------------------------------------------------------------- poll

    async def poll(self, out: SnapshotBuilder) -> None:
        now = self.ctx.clock()
        attempts = self.data.attempts
        attempts.start(self.planner.pace(now))
        if self.ctx.once:
            # `once` must prove the account works with a real request, and an assumed-spent budget
            # (assume_budget_spent_at_start) would allow none: wait for the budget's first free
            # slot instead (the poll deadline bounds the wait), never past it.
            attempts.allowance = max(1, attempts.allowance)
            await self.budget.wait()
        ok = failed = 0
        last_error: PollError | None = None
        due = self.planner.due_calls(now)
        for index, call in enumerate(due):
            if attempts.sent >= attempts.allowance or self.budget.free() <= 0:
                for rest in due[index:]:
                    self.waits[rest.api] += 1
                break
            try:
                await self._run(call)
                ok += 1
            except BudgetSpent:
                self.waits[call.api] += 1
            except PollError as exc:
                if exc.reason == "auth":
                    raise
                failed += 1
                last_error = exc
                if exc.reason == "throttled":
                    for rest in due[index + 1 :]:
                        self.waits[rest.api] += 1
                    break
        self.planner.spent(attempts.sent)
        if failed and not ok and last_error is not None:
            raise last_error
        self._emit(out, self.ctx.clock())

    async def _run(self, call: Call) -> None:
        """Run one planned call. Raises PollError on failure, BudgetSpent when out of budget."""
        now = self.ctx.clock()
        if call.api == "abnormal_events":
            await self.events.read(call.app)
        elif call.api in ("scale", "quality", "network"):
            await self.series.realtime(call)
        elif call.api == "scale_dimension":
            await self.series.scale_dimension(call)
        elif call.api == "failed_joins":
            await self.lists.failed_joins(call)
        elif call.api == "running_rooms":
            await self.lists.running_rooms(call)
        else:
            await self.events.dimension(call)
        self.planner.last_refresh[call.key] = now
        self._data_at = now

    # --------------------------------------------------------------------------- output

    def _emit(self, out: SnapshotBuilder, now: float) -> None:
        self.series.expire(now, self.scaled(float(self.config.max_age)))
        for key, cached in sorted(self.series.values.items(), key=lambda kv: str(kv[0])):
            kind, (api, app, room, metric, sdk) = key[0], key[1]
            labels = {"app": app, "room": room}
            if kind == "series":
                if api == "scale":
                    out.add(ONLINE_USERS if metric == "OnlineUsers" else ROOMS, cached.value, **labels, server="")
                elif api == "quality":
                    out.add(QUALITY[metric], cached.value, **labels, sdk_type=sdk)
                else:
                    media, path = NETWORK_LABELS[metric]
                    out.add(EXCELLENT, cached.value, **labels, sdk_type=sdk, media=media, path=path)
                out.add(POINT_TIME, cached.point_time, **labels, api=api, vendor_metric=metric, sdk_type=sdk)
            elif kind == "dim":
                out.add(ONLINE_BY_DIMENSION, cached.value, **labels, dimension=metric, dimension_value=key[2])
            elif kind == "abn":
                out.add(ABNORMAL_USERS, cached.value, **labels, abnormal_type=key[2], abnormal_factor=key[3])
            elif kind == "fj":
                out.add(FAILED_JOIN_USERS, cached.value, **labels)
            elif kind == "fjd":
                out.add(FAILED_JOINS_BY_DIMENSION, cached.value, **labels, dimension=key[2], dimension_value=key[3])
            elif kind == "rooms":
                out.add(RUNNING_ROOMS, cached.value, **labels)
        for desc_key, (type_desc, factor_desc) in sorted(self.events.descs.items()):
            t, f = desc_key.split("\0", 1)
            out.info(
                ABNORMAL_DESC,
                abnormal_type=t,
                abnormal_factor=f,
                abnormal_type_desc=type_desc,
                abnormal_factor_desc=factor_desc,
            )
        out.report.parse_errors.update(self._parse_errors)
        self._parse_errors.clear()

    def account_status(self) -> AccountStatus:
        now = self.ctx.clock()
        waits = sum(self.waits.values())
        budget = self.budget
        return AccountStatus(
            account=self.config.account_key(), window="data requests per minute", limit=float(budget.limit),
            used=float(budget.used()),
            throttled_until=budget.blocked_until if budget.blocked_until > now else None,
            note=f"{self.data.vendor_throttled} throttling answer(s), {waits} call(s) postponed for budget",
        )

    def data_timestamp(self) -> float | None:
        # Cached values are republished by polls that fetch nothing: their age is that of the
        # newest successful fetch, not of the poll.
        return self._data_at

    def self_metrics(self, out: SnapshotBuilder) -> None:
        now = self.ctx.clock()
        acct = {"account": self.config.account_key()}
        out.add(BUDGET_LIMIT, float(self.budget.limit), **acct)
        out.add(BUDGET_USED, float(self.budget.used()), **acct)
        calls = self.planner.calls
        requests = Counter({(c.api, o): 0 for c in calls for o in REQUEST_OUTCOMES})
        requests.update(self.data.attempts.outcomes)
        for (api, outcome), n in sorted(requests.items()):
            out.add(REQUESTS, float(n), api=api, outcome=outcome)
        for api in sorted({c.api for c in calls}):
            out.add(THROTTLED_WAITS, float(self.waits[api]), api=api)
            if api in self.planner.periods:
                out.add(PLANNED_PERIOD, self.planner.periods[api], api=api)
        out.add(VENDOR_THROTTLED, float(self.data.vendor_throttled))
        out.add(DIMENSION_DROPPED, float(self.series.dimension_dropped))
        if self.config.failed_joins:
            out.add(BREAKDOWN_INCOMPLETE, float(self.lists.breakdowns_incomplete))
        # A counter, so it survives failed polls (it is persisted) and exists at 0 from the start.
        for watched in self.config.apps if self.config.abnormal_events else ():
            state = self.events.states[events_key(watched)]
            counts: dict[str, int] = {"\0".join((str(t), str(f), stage, loc)): 0
                                      for t, f, stage in KNOWN_ABNORMAL for loc in LOCATIONS}
            counts.update(state["counts"])
            for labels_key, count in sorted(counts.items()):
                parts = labels_key.split("\0")
                if len(parts) == 4:
                    out.add(
                        ABNORMAL_EVENTS,
                        float(count),
                        app=watched.id,
                        room=watched.room_id or "",
                        abnormal_type=parts[0],
                        abnormal_factor=parts[1],
                        stage=parts[2],
                        location=parts[3],
                    )
        if self.config.auth == "token":
            out.add(TOKEN_REFRESHES, float(self.data.token_refreshes))
        for call in calls:
            last = self.planner.last_refresh.get(call.key)
            if last is not None:
                api, app, room, metric, sdk = call.key
                out.add(REFRESH_AGE, max(0.0, now - last), app=app, room=room, api=api,
                        vendor_metric=metric, sdk_type=sdk)
        self.callbacks.emit(out)

    async def handle_api(self, action: str, request: web.Request) -> web.StreamResponse:
        if action != "record-events":
            return await super().handle_api(action, request)
        return await self.callbacks.handle(request)
