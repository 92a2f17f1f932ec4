"""Huawei Cloud SparkRTC data APIs (spec §2, seed 003 chapters 13, 1.4, 3.2, 14).

The binding constraint is the vendor's limit of 30 data-statistics requests per minute per
account (seed table 1-2), shared by every call below. So a poll does not fetch everything: a
planner picks the calls that are due, most valuable first, within the account's budget, and the
rest of the series keep their last good value (with its age exported) until their turn.

The budget (class Account) is one object per account (keyed by the AK or the IAM domain, or
`budget_account`), shared by all targets of that account in one daemon. It is a sliding 60-second log of request
times, persisted in the state directory, so a restart continues the same minute instead of
starting with a burst. With no log on disk it assumes the last minute was fully spent, spread
evenly, and ramps up.

Planner: every call has a value tier and a natural period (per-minute data is not refreshed
faster than once a minute). When the configured set asks for more than the target's share of the
budget, the least valuable tiers are stretched (refreshed less often), never the budget. Within
a poll a target uses at most the share that accrued since its previous poll (budget / targets on
the account, per minute), so requests spread over the minute.

Partial failure: each call stands alone. A failed call leaves its series at their last good
value (aged out after `max_age`) and counts monitord_huawei_rtc_requests_total{outcome}. The poll
fails (target down, data dropped by the runtime) only on an auth failure or when every call it
made failed; a poll in which the budget allowed no call at all succeeds with the cached values.

Abnormal events are read in overlapping windows, every page, and deduplicated by a hash of the
event's fields against a persisted seen-set (key -> how many identical events were seen, so two
identical events are two). Counters, seen-set and high-water mark live in one state file
written atomically after every page: a restart never counts an event twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import weakref
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from aiohttp import web
from pydantic import Field, model_validator
from yarl import URL

from monitord import huawei_signer, redact, vendorjson
from monitord import normalize as norm
from monitord.config import BaseURL, Duration, Secret, StrictModel, TargetConfig
from monitord.errors import REASONS, PollError
from monitord.http import Limiters, Response, status_error
from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder
from monitord.sources import shared
from monitord.sources.base import AccountStatus, Source
from monitord.state import StateModel

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SdkType = Literal["native", "webrtc"]
SDK_TYPES: tuple[SdkType, ...] = ("native", "webrtc")
SCALE_METRICS = ("OnlineUsers", "RoomCount")
QUALITY_METRICS = ("JoinSuccessRate", "JoinSuccess5SecsRate", "VideoFreezeRate", "AudioFreezeRate")
NETWORK_METRICS = (
    "VideoUpstreamExcellentTransRate",
    "AudioUpstreamExcellentTransRate",
    "VideoExcellentTransRate",
    "AudioExcellentTransRate",
)
DIMENSIONS = ("region", "access_net", "platform", "sdk")
RECORD_EVENT_TYPES = ("RECORD_NEW_FILE_START", "RECORD_FILE_COMPLETE", "CLOUD_RECORD_SERVER_OVER")
# Abnormal types and their factors as the vendor documents them (SparkRTC API reference, data
# statistics, "AbnormalEvent" table): type 1 slow join (stage join_room), 2 video freeze and
# 3 audio freeze (stage communication). Their counters exist at 0 from the start for both
# locations; a combination the vendor sends beyond these is a series born at its first event.
JOIN_FACTORS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 90000004, 90100009, 90100008, 10000001, 31000003, 32000030)
FREEZE_FACTORS = tuple(range(1, 18))
KNOWN_ABNORMAL = (
    *((1, f, "join_room") for f in JOIN_FACTORS),
    *((t, f, "communication") for t in (2, 3) for f in FREEZE_FACTORS),
)
LOCATIONS = ("local", "remote")
# Outcomes of monitord_huawei_rtc_requests_total, each at 0 from the start for every polled API.
REQUEST_OUTCOMES = ("ok", *(r for r in REASONS if r != "internal"))
# The budget's window: the vendor counts requests per minute.
BUDGET_WINDOW = 60.0
THROTTLE_CODES = ("APIGW.0308",)  # "The request is throttled" of Huawei's API gateway
SECRET_HEADER = "X-Monitord-Secret"
# One window spans at most a day; more events than this in it is not an answer but a broken one.
MAX_EVENTS_PER_WINDOW = 1_000_000
OTHER_APP = "other"  # recording callbacks of apps that are not configured
# record_duration is one file's length in seconds; a file longer than a week is not a recording
# but a broken or hostile caller, and would poison the duration counter for good.
MAX_RECORD_DURATION = 7 * 86400.0


class AppConfig(StrictModel):
    id: str = Field(min_length=1, description="SparkRTC app id (the `app` query parameter).")
    room_id: str | None = Field(None, description="Only this room (optional filter); the `room` label.")


class HuaweiRtcConfig(TargetConfig):
    source: Literal["huawei_rtc"]
    endpoint: BaseURL = Field("https://rtc-api.myhuaweicloud.com", description="SparkRTC API base URL.")
    iam_endpoint: BaseURL | None = Field(
        None, description="IAM base URL for token auth (default https://iam.{region}.myhuaweicloud.com)."
    )
    region: str = Field("cn-north-4", description="Region of the IAM endpoint when iam_endpoint is not set.")
    project_id: str = Field(min_length=1, description="Project id (path parameter and X-Project-Id).")
    auth: Literal["aksk", "token"] = Field("aksk", description="AK/SK signing (default) or IAM password token.")
    ak: Secret | None = Field(None, description="Access key id (ak_file / ak_env).")
    sk: Secret | None = Field(None, description="Secret access key (sk_file / sk_env).")
    iam_domain: str | None = Field(None, description="Account (domain) name of the IAM user, for auth=token.")
    iam_user: str | None = Field(None, description="IAM user name, for auth=token.")
    iam_password: Secret | None = Field(None, description="IAM user password (iam_password_file / _env).")
    token_refresh_before: Duration = Field(3600.0, description="Renew the 24 h IAM token this long before it expires.")
    apps: tuple[AppConfig, ...] = Field(min_length=1, description="Apps to watch, each with an optional room.")
    sdk_types: tuple[SdkType, ...] = Field(SDK_TYPES, description="sdk_type values to query.")
    dimensions: tuple[Literal["region", "access_net", "platform", "sdk"], ...] = Field(
        (), description="Online-user distributions to fetch (each costs one request per app per refresh)."
    )
    dimension_top: int = Field(20, ge=1, le=500, description="Keep only this many values per dimension.")
    rate_scale: Literal["percent", "ratio"] = Field(
        "percent", description="How the API writes rates: 99.5 (percent) or 0.995 (ratio). Exposed as 0..1."
    )
    budget_per_minute: int = Field(30, ge=1, le=6000, description="Data requests per minute for the account.")
    budget_account: str | None = Field(
        None, description="Name of the shared budget (default: derived from the AK or IAM user and project)."
    )
    assume_budget_spent_at_start: bool = Field(
        True, description="With no persisted request log, assume the previous minute used the whole budget."
    )
    point_settle: Duration = Field(
        120.0, description="A per-minute point counts as complete once its minute ended this long ago."
    )
    max_age: Duration = Field(
        1200.0,
        description="Cache retention: drop a cached series not refreshed for this long. Keep it above the "
                    "data-stale alert threshold (900 s), so a series goes stale visibly before it disappears.",
    )
    max_refresh_period: Duration | None = Field(
        None, description="Slowest refresh the planner gives any call when the budget is tight (default: 10m, "
                          "or max_age when that is shorter); at most max_age."
    )
    abnormal_events: bool = Field(True, description="Count abnormal experience events.")
    events_interval: Duration = Field(60.0, description="How often the abnormal-event list is read.")
    events_overlap: Duration = Field(900.0, description="Each event window reaches back this far (late events).")
    events_page_size: int = Field(100, ge=1, le=1000, description="`limit` of each abnormal-event page.")
    event_distribution_window: Duration | None = Field(
        600.0, description="Window of the abnormal-event user distribution (null turns it off)."
    )
    retry_attempts: int = Field(3, ge=1, le=6, description="Attempts per call for 408/5xx/connection errors.")
    retry_base_delay: Duration = Field(0.5, description="First backoff delay (doubles, full jitter).")
    callback_secret: Secret | None = Field(
        None, description=f"Shared secret for POST .../record-events, in header {SECRET_HEADER} or ?secret=."
    )

    @model_validator(mode="after")
    def _retention(self) -> HuaweiRtcConfig:
        if self.max_refresh_period is not None and self.max_refresh_period > self.max_age:
            raise ValueError(
                f"max_refresh_period ({self.max_refresh_period:g}s) must not exceed max_age ({self.max_age:g}s), "
                "or a series would be dropped before its planned refresh"
            )
        return self

    @property
    def refresh_ceiling(self) -> float:
        return self.max_refresh_period or min(600.0, self.max_age)

    @model_validator(mode="after")
    def _credentials(self) -> HuaweiRtcConfig:
        if self.auth == "aksk" and (self.ak is None or self.sk is None):
            raise ValueError("auth aksk needs ak and sk (or ak_file/sk_file, ak_env/sk_env)")
        if self.auth == "token" and not (self.iam_domain and self.iam_user and self.iam_password):
            raise ValueError("auth token needs iam_domain, iam_user and iam_password")
        return self

    @property
    def iam_url(self) -> str:
        return self.iam_endpoint or f"https://iam.{self.region}.myhuaweicloud.com"

    def account_key(self) -> str:
        if self.budget_account:
            return self.budget_account
        # Huawei limits the account, not the project or the IAM user: an AK (or an IAM domain)
        # is the closest thing to the account we can see. Two AKs of one account cannot be told
        # apart: set the same budget_account on both. Hashed: the key names a state file.
        who = self.ak.get_secret_value() if self.auth == "aksk" and self.ak else f"domain:{self.iam_domain}"
        return hashlib.sha256(who.encode()).hexdigest()[:16]

    def token_key(self) -> str:
        """IAM tokens are per user and project-scoped: one cache per (domain, user, project)."""
        return f"{self.iam_domain}/{self.iam_user}/{self.project_id}"


# ----------------------------------------------------------------------------------- metrics

APP = ("app", "room")
ONLINE_USERS = shared.ONLINE_USERS
ROOMS = shared.ROOMS
ONLINE_BY_DIMENSION = MetricDef(
    "rtc_huawei_online_users_by_dimension",
    "gauge",
    "Online users of the app by region, access_net, platform or sdk (top values), newest complete minute.",
    labels=(*APP, "dimension", "dimension_value"),
)
QUALITY = {
    "JoinSuccessRate": MetricDef(
        "rtc_join_success_ratio",
        "gauge",
        "Share of room joins that succeeded, 0..1, newest complete minute.",
        labels=(*APP, "sdk_type"),
        unit="ratio",
    ),
    "JoinSuccess5SecsRate": MetricDef(
        "rtc_join_success_within_5s_ratio",
        "gauge",
        "Share of room joins that succeeded within 5 seconds, 0..1.",
        labels=(*APP, "sdk_type"),
        unit="ratio",
    ),
    "VideoFreezeRate": MetricDef(
        "rtc_video_freeze_ratio",
        "gauge",
        "Video freeze rate, 0..1, newest complete minute.",
        labels=(*APP, "sdk_type"),
        unit="ratio",
    ),
    "AudioFreezeRate": MetricDef(
        "rtc_audio_freeze_ratio",
        "gauge",
        "Audio freeze rate, 0..1, newest complete minute.",
        labels=(*APP, "sdk_type"),
        unit="ratio",
    ),
}
EXCELLENT = MetricDef(
    "rtc_huawei_excellent_transmission_ratio",
    "gauge",
    "Share of excellent transmission, 0..1: path upstream (client to cloud) or end_to_end, per media.",
    labels=(*APP, "sdk_type", "media", "path"),
    unit="ratio",
)
_NETWORK_LABELS = {
    "VideoUpstreamExcellentTransRate": ("video", "upstream"),
    "AudioUpstreamExcellentTransRate": ("audio", "upstream"),
    "VideoExcellentTransRate": ("video", "end_to_end"),
    "AudioExcellentTransRate": ("audio", "end_to_end"),
}
SERIES_LABELS = (*APP, "api", "vendor_metric", "sdk_type")
POINT_TIME = MetricDef(
    "rtc_huawei_point_timestamp_seconds",
    "gauge",
    "Start of the per-minute point each realtime series shows; now minus this is the data's lag.",
    labels=SERIES_LABELS,
    unit="timestamp_seconds",
)
ABNORMAL_EVENTS = MetricDef(
    "rtc_huawei_abnormal_events",
    "counter",
    "Abnormal experience events (slow join, video/audio freeze), each counted once, also across restarts.",
    labels=(*APP, "abnormal_type", "abnormal_factor", "stage", "location"),
)
ABNORMAL_DESC = MetricDef(
    "rtc_huawei_abnormal_cause",
    "info",
    "Vendor descriptions of abnormal types and factors seen.",
    labels=("abnormal_type", "abnormal_factor", "abnormal_type_desc", "abnormal_factor_desc"),
)
ABNORMAL_USERS = MetricDef(
    "rtc_huawei_abnormal_users",
    "gauge",
    "Users affected by abnormal events in the latest distribution window, by type and factor.",
    labels=(*APP, "abnormal_type", "abnormal_factor"),
)
RECORD_EVENTS = MetricDef(
    "rtc_huawei_record_events",
    "counter",
    "Recording callbacks received, by event_type and app (apps not configured count as other).",
    labels=("app", "event_type"),
)
RECORD_DURATION = MetricDef(
    "rtc_huawei_recorded_duration_seconds",
    "counter",
    "Recorded duration reported by RECORD_FILE_COMPLETE callbacks.",
    labels=("app",),
    unit="seconds",
)
BUDGET_LIMIT = MetricDef(
    "monitord_huawei_rtc_budget_requests_per_minute",
    "gauge",
    "Configured data-request budget of the account, per minute.",
    labels=("account",),
)
BUDGET_USED = MetricDef(
    "monitord_huawei_rtc_budget_used_requests",
    "gauge",
    "Data requests the account made in the last 60 seconds (all its targets).",
    labels=("account",),
)
REQUESTS = MetricDef(
    "monitord_huawei_rtc_requests",
    "counter",
    "Data requests of this target by API and outcome (ok or a poll-error reason).",
    labels=("api", "outcome"),
)
THROTTLED_WAITS = MetricDef(
    "monitord_huawei_rtc_budget_throttled_waits",
    "counter",
    "Due calls postponed to a later poll because the account's budget was spent.",
    labels=("api",),
)
VENDOR_THROTTLED = MetricDef(
    "monitord_huawei_rtc_vendor_throttled",
    "counter",
    "Throttling answers from Huawei's API gateway (APIGW.0308 / HTTP 429).",
)
REFRESH_AGE = MetricDef(
    "monitord_huawei_rtc_refresh_age_seconds",
    "gauge",
    "Time since each series was last fetched successfully.",
    labels=SERIES_LABELS,
    unit="seconds",
)
PLANNED_PERIOD = MetricDef(
    "monitord_huawei_rtc_planned_refresh_period_seconds",
    "gauge",
    "Refresh period the planner gives each API under the budget (stretched when over).",
    labels=("api",),
    unit="seconds",
)
TOKEN_REFRESHES = MetricDef("monitord_huawei_rtc_token_refreshes", "counter", "IAM tokens fetched.")
CALLBACK_REJECTED = MetricDef(
    "monitord_huawei_rtc_callbacks_rejected",
    "counter",
    "Recording callbacks refused: bad_secret, bad_body.",
    labels=("reason",),
)
DIMENSION_DROPPED = MetricDef(
    "monitord_huawei_rtc_dimension_values_dropped",
    "counter",
    "Dimension values beyond dimension_top, left out of the exposition.",
)


# --------------------------------------------------------------------------------- budget


class BudgetState(StateModel):
    """Send times (unix seconds) of the account's requests in the last minute."""

    sent: list[float]
    blocked_until: float = 0.0


class EventsState(StateModel):
    """Abnormal-event counting of one app (and room): high-water mark, events seen in the
    overlap (hash -> [times seen in its window, event time]), counts by labels, descriptions."""

    hwm: float | None
    seen: dict[str, Annotated[list[float], Field(min_length=2, max_length=2)]]
    counts: dict[str, Annotated[int, Field(ge=0)]]
    descs: dict[str, list[str]]


class CallbacksState(StateModel):
    """Recording callbacks received: events by app and type, recorded seconds by app, rejections."""

    events: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    duration: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    rejected: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


class Account:
    """The per-account sliding-window request budget, shared by the targets of one account."""

    def __init__(self, key: str, per_minute: int, window: float = BUDGET_WINDOW) -> None:
        self.key = key
        self.per_minute = per_minute
        self.window = window  # the vendor's minute, under the daemon's time scale
        self.sent: deque[float] = deque()
        self.blocked_until = 0.0
        self.throttle_streak = 0
        # Counted: during a reload a target's new runtime joins before its old one leaves.
        self.members: Counter[str] = Counter()
        self.loaded = False

    def _prune(self, now: float) -> None:
        while self.sent and self.sent[0] <= now - self.window:
            self.sent.popleft()

    def used(self, now: float) -> int:
        self._prune(now)
        return len(self.sent)

    def free(self, now: float) -> int:
        if now < self.blocked_until:
            return 0
        return max(0, self.per_minute - self.used(now))

    def take(self, now: float) -> bool:
        if self.free(now) <= 0:
            return False
        self.sent.append(now)
        return True

    def throttled(self, now: float) -> None:
        """The gateway said slow down: our idea of the budget is wrong (another client on the
        account?), so stop for a while, longer each time in a row."""
        self.throttle_streak += 1
        scale = BUDGET_WINDOW / self.window
        self.blocked_until = now + min(300.0, 15.0 * 2 ** (self.throttle_streak - 1)) / scale

    def restore(self, saved: BudgetState | None, now: float, assume_spent: bool) -> None:
        self.loaded = True
        if saved is not None:
            self.sent = deque(sorted(t for t in saved.sent if now - self.window < t <= now))
            # At most the longest back-off from now: a damaged file must not block for good.
            blocked = saved.blocked_until
            self.blocked_until = blocked if 0 <= blocked <= now + 300.0 else 0.0
        elif assume_spent:
            step = self.window / self.per_minute
            self.sent = deque(now - self.window + step * (i + 1) for i in range(self.per_minute))

    def dump(self) -> dict[str, Any]:
        return {"sent": list(self.sent), "blocked_until": self.blocked_until}


class TokenCache:
    """An IAM token shared by the targets of one user and project."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.expires = 0.0
        self.lock = asyncio.Lock()


# One dict of accounts (and token caches) per daemon: the daemon's Limiters object is per daemon, so two daemons in
# one process (tests, reloads with a changed global section) do not share a budget by accident.
_ACCOUNTS: weakref.WeakKeyDictionary[Limiters, dict[str, Account]] = weakref.WeakKeyDictionary()
_TOKENS: weakref.WeakKeyDictionary[Limiters, dict[str, TokenCache]] = weakref.WeakKeyDictionary()


def account_for(limiters: Limiters, key: str, per_minute: int, window: float = BUDGET_WINDOW) -> Account:
    accounts = _ACCOUNTS.setdefault(limiters, {})
    account = accounts.get(key)
    if account is None:
        account = accounts[key] = Account(key, per_minute, window)
    return account


# -------------------------------------------------------------------------------- planner


@dataclass(frozen=True)
class Call:
    api: str  # scale | scale_dimension | quality | network | abnormal_events | abnormal_dimension
    app: AppConfig
    metric: str = ""  # vendor metric name or dimension
    sdk_type: str = ""

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.api, self.app.id, self.app.room_id or "", self.metric, self.sdk_type)


# Value order: what users feel first (who is online), then whether they can join and hear/see,
# then network quality, then breakdowns.
TIERS = {
    "scale": 0,
    "quality": 1,
    "abnormal_events": 1,
    "network": 2,
    "scale_dimension": 3,
    "abnormal_dimension": 3,
}


@dataclass
class _Window:
    """An abnormal-event window being read page by page."""

    start: float
    end: float
    offset: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # identical events seen in this window


@dataclass
class Cached:
    value: float
    point_time: float
    fetched_at: float


# Labels of an abnormal event; an event without readable values for all of them is not counted.
_EVENT_LABEL_FIELDS = ("abnormal_type", "abnormal_factor", "stage", "location")


class HuaweiRtcSource(Source[HuaweiRtcConfig]):
    kind: ClassVar[str] = "huawei_rtc"
    Config: ClassVar[type[TargetConfig]] = HuaweiRtcConfig
    description: ClassVar[str] = "Huawei Cloud SparkRTC: realtime scale/quality/network, abnormal events, recordings"
    PARSE_FIELDS: ClassVar[tuple[str, ...]] = (
        *(f"{api}.{m}" for api, names in (("scale", SCALE_METRICS), ("quality", QUALITY_METRICS),
                                          ("network", NETWORK_METRICS)) for m in names),
        *(f"{api}.time" for api in ("scale", "quality", "network")),
        "abnormal_events.time",
        *(f"abnormal_events.{name}" for name in _EVENT_LABEL_FIELDS),
        "abnormal_dimension.abnormal_type",
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
    )

    @classmethod
    def budget_domain(cls, config: TargetConfig) -> str | None:
        # The 30 requests/min budget is the account's: every target of one account, one shard.
        assert isinstance(config, HuaweiRtcConfig)
        return config.account_key()

    def __init__(self, config: HuaweiRtcConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        c = config
        self.account = account_for(ctx.limiters, c.account_key(), c.budget_per_minute, self.scaled(BUDGET_WINDOW))
        self.account.members[c.name] += 1
        self.tokens = _TOKENS.setdefault(ctx.limiters, {}).setdefault(c.token_key(), TokenCache())
        # Only used before the first poll and as the "a bit early" slack; the pace itself
        # follows the time that actually passed between polls.
        self.interval = self.scaled(float(c.interval or 30.0))
        self.calls = self._all_calls()
        self.last_refresh: dict[tuple[str, ...], float] = {}
        self.values: dict[tuple[Any, ...], Cached] = {}  # (metric name, labels...) -> value
        self.requests: Counter[tuple[str, str]] = Counter()
        self.waits: Counter[str] = Counter()
        self.vendor_throttled = 0
        self.token_refreshes = 0
        self.dimension_dropped = 0
        self.periods: dict[str, float] = {}
        self._pending_windows: dict[str, _Window] = {}
        self._parse_errors: Counter[str] = Counter()
        self._credit = 0.0
        self._data_at: float | None = None  # newest successful data call
        self._last_poll: float | None = None
        self._allowance = self._sent = 0  # requests this poll may send / has sent
        self._descs: dict[str, list[str]] = {}
        self._events = {self._events_key(app): self._load_events(app) for app in c.apps if c.abnormal_events}
        for state in self._events.values():
            self._descs.update(state["descs"])
        self._callbacks = self._load_callbacks()

    # ------------------------------------------------------------------------------ plan

    def _all_calls(self) -> list[Call]:
        c = self.config
        calls: list[Call] = []
        for app in c.apps:
            calls += [Call("scale", app, m) for m in SCALE_METRICS]
            calls += [Call("quality", app, m, s) for s in c.sdk_types for m in QUALITY_METRICS]
            calls += [Call("network", app, m, s) for s in c.sdk_types for m in NETWORK_METRICS]
            if c.abnormal_events:
                calls.append(Call("abnormal_events", app))
                if c.event_distribution_window is not None:
                    calls.append(Call("abnormal_dimension", app))
            calls += [Call("scale_dimension", app, d) for d in c.dimensions]
        return calls

    def _base_period(self, api: str) -> float:
        if api in ("scale", "quality", "network"):
            return self.scaled(60.0)  # per-minute points: faster refreshes buy nothing
        if api == "abnormal_events":
            return self.scaled(float(self.config.events_interval))
        return self.scaled(300.0)

    def plan_periods(self) -> dict[str, float]:
        """Per API, the refresh period that fits the target's share of the budget. First every
        call is reserved its slowest acceptable rate (one refresh per max_age, so nothing ages
        out); the rest of the share goes to the tiers in value order, each at full speed while it
        fits; the first tier that does not fit gets what is left, the later ones their floor.
        Rates are per budget window."""
        share = self.config.budget_per_minute / max(1, len(self.account.members))
        window = self.account.window
        slowest = max(self.scaled(self.config.refresh_ceiling), window)
        need: defaultdict[str, float] = defaultdict(float)
        floor: defaultdict[str, float] = defaultdict(float)
        for call in self.calls:
            need[call.api] += window / self._base_period(call.api)
            floor[call.api] += window / max(slowest, self._base_period(call.api))
        left = max(0.0, share - sum(floor.values()))
        periods: dict[str, float] = {}
        for tier in sorted(set(TIERS.values())):
            apis = [a for a in need if TIERS[a] == tier]
            tier_need, tier_floor = sum(need[a] for a in apis), sum(floor[a] for a in apis)
            extra = tier_need - tier_floor
            rate = tier_need if extra <= left else tier_floor + left
            left = max(0.0, left - extra)
            stretch = tier_need / rate if rate > 0 else 1.0
            for api in apis:
                periods[api] = min(self._base_period(api) * stretch, max(slowest, self._base_period(api)))
        self.periods = periods
        return periods

    def due_calls(self, now: float) -> list[Call]:
        """Due calls, most valuable first; a call left waiting for half a period more than
        planned jumps the queue, so a tight budget stretches the low tiers but never starves them."""
        periods = self.plan_periods()
        due: list[tuple[int, int, float, Call]] = []
        for call in self.calls:
            last = self.last_refresh.get(call.key)
            period = periods[call.api]
            # Small slack: a poll that lands a moment early must not skip a whole interval.
            if last is None or now - last >= period - min(5.0, self.interval / 2):
                overdue = (now - last) / period if last is not None else 1.0
                due.append((0 if overdue >= 1.5 else 1, TIERS[call.api], -overdue, call))
        due.sort(key=lambda t: t[:3])
        return [c for *_, c in due]

    def pace(self, now: float) -> int:
        """Requests this target may make in this poll, so a minute's budget spreads over the
        minute: the target's share accrues with the time since its previous poll (the
        configured interval before the first), fractions carry over, at most one share."""
        share = self.config.budget_per_minute / max(1, len(self.account.members))
        elapsed = self.interval if self._last_poll is None else max(0.0, now - self._last_poll)
        self._last_poll = now
        window = self.account.window
        self._credit = min(share, self._credit + share * min(elapsed, window) / window)
        return int(self._credit)

    # -------------------------------------------------------------------------------- poll

    async def poll(self, out: SnapshotBuilder) -> None:
        now = self.ctx.clock()
        self._restore_budget(now)
        self._allowance, self._sent = self.pace(now), 0
        if self.ctx.once:
            # `once` must prove the account works with a real request, and an assumed-spent budget
            # (assume_budget_spent_at_start) would allow none: wait for the budget's first free
            # slot instead (the poll deadline bounds the wait), never past it.
            self._allowance = max(1, self._allowance)
            await self._wait_for_budget()
        ok = failed = 0
        last_error: PollError | None = None
        due = self.due_calls(now)
        for index, call in enumerate(due):
            if self._sent >= self._allowance or self.account.free(self.ctx.clock()) <= 0:
                for rest in due[index:]:
                    self.waits[rest.api] += 1
                break
            try:
                await self._run(call)
                ok += 1
            except _BudgetSpent:
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
        self._credit = max(0.0, self._credit - self._sent)
        self._save_budget()
        if failed and not ok and last_error is not None:
            raise last_error
        self._emit(out, self.ctx.clock())

    async def _wait_for_budget(self) -> None:
        while True:
            now = self.ctx.clock()
            if self.account.free(now) > 0:
                return
            oldest = self.account.sent[0] + 60.0 if self.account.sent else now
            await asyncio.sleep(min(max(0.05, max(self.account.blocked_until, oldest) - now), 60.0))

    async def _run(self, call: Call) -> None:
        """Run one planned call. Raises PollError on failure, _BudgetSpent when out of budget."""
        now = self.ctx.clock()
        if call.api == "abnormal_events":
            await self._read_events(call.app)
        elif call.api in ("scale", "quality", "network"):
            await self._realtime(call)
        elif call.api == "scale_dimension":
            await self._scale_dimension(call)
        else:
            await self._abnormal_dimension(call)
        self.last_refresh[call.key] = now
        self._data_at = now

    # -------------------------------------------------------------------------- requests

    async def _api(self, api: str, path: str, query: dict[str, str]) -> dict[str, Any]:
        """One data request under the budget, with retries for 408/5xx/connection errors and one
        token renewal on 401/403; every attempt sent is paid from the budget. Raises
        _BudgetSpent before sending anything when the budget is gone."""
        attempts = self.config.retry_attempts
        last_error: PollError | None = None
        attempt = 0
        renewed = False
        while True:
            if self._sent >= self._allowance or not self.account.take(self.ctx.clock()):
                if last_error is None:
                    raise _BudgetSpent
                raise last_error  # no budget left to retry with
            self._sent += 1
            self._save_budget()
            try:
                answer = await self._send(path, query)
                self.requests[(api, "ok")] += 1
                self.account.throttle_streak = 0
                return answer
            except _TokenRejected as rejected:
                self.requests[(api, "auth")] += 1
                if renewed:
                    raise PollError("auth", f"{rejected.url}: token rejected right after renewal") from None
                # Tokens can be revoked before their expiry: renew once, then believe the answer.
                renewed = True
                self.tokens.token = None
                last_error = PollError("auth", f"{rejected.url}: token rejected")
            except PollError as exc:
                self.requests[(api, exc.reason)] += 1
                attempt += 1
                if not exc.retryable or attempt >= attempts:
                    raise
                last_error = exc
                delay = self.scaled(self.config.retry_base_delay) * 2 ** (attempt - 1)
                await asyncio.sleep(random.uniform(0, delay))

    async def _send(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        base = URL(self.config.endpoint)
        resource_path = base.path.rstrip("/") + path
        pairs = sorted((k, v) for k, v in query.items())
        host = base.raw_authority
        if self.config.auth == "aksk":
            assert self.config.ak is not None and self.config.sk is not None
            headers, uri = huawei_signer.sign(
                method="GET",
                host=host,
                resource_path=resource_path,
                query=pairs,
                headers={"X-Project-Id": self.config.project_id},
                body=b"",
                access_key=self.config.ak.get_secret_value(),
                secret_key=self.config.sk.get_secret_value(),
                when=datetime.fromtimestamp(self.ctx.clock(), UTC).replace(tzinfo=None),
            )
        else:
            token = await self._token()
            uri = resource_path + ("?" + huawei_signer.canonical_query(pairs) if pairs else "")
            headers = {"X-Auth-Token": token, "Host": host}
        url = URL(f"{base.scheme}://{host}{uri}", encoded=True)
        resp = await self.request("GET", url, headers=headers)
        if resp.status in (401, 403) and self.config.auth == "token":
            raise _TokenRejected(resp.url)
        return self._check(resp)

    def _check(self, resp: Response) -> dict[str, Any]:
        if resp.status < 400:
            return resp.json_object()
        code = msg = None
        try:
            body = vendorjson.loads(resp.body)
        except vendorjson.JSONError:
            body = None
        if isinstance(body, dict):
            raw_code, raw_msg = body.get("error_code"), body.get("error_msg")
            code = redact.quote_vendor(raw_code, limit=64) if isinstance(raw_code, str) else None
            msg = redact.quote_vendor(raw_msg) if isinstance(raw_msg, str) else None
        if resp.status == 429 or code in THROTTLE_CODES:
            self.vendor_throttled += 1
            self.account.throttled(self.ctx.clock())
            raise PollError("throttled", f"{resp.url}: HTTP {resp.status} {msg or ''}".strip(), code)
        err = status_error(resp.status, resp.url)
        if isinstance(code, str) and resp.status == 400:
            # DATA.* and RTC.* answers: the request is wrong; a vendor error, not a transport one.
            raise PollError("vendor_error", f"{resp.url}: {msg or 'rejected'}", code)
        raise PollError(err.reason, err.detail + (f": {msg}" if isinstance(msg, str) else ""), code)

    async def _token(self) -> str:
        cache = self.tokens
        async with cache.lock:
            now = self.ctx.clock()
            if cache.token and now < cache.expires - self.config.token_refresh_before:
                return cache.token
            c = self.config
            assert c.iam_password is not None
            body = {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": c.iam_user,
                                "password": c.iam_password.get_secret_value(),
                                "domain": {"name": c.iam_domain},
                            }
                        },
                    },
                    "scope": {"project": {"id": c.project_id}},
                }
            }
            resp = await self.request("POST", f"{c.iam_url}/v3/auth/tokens", json_body=body)
            if resp.status in (400, 401, 403):
                raise PollError("auth", f"IAM token request rejected (HTTP {resp.status})")
            resp.raise_for_status()
            token = resp.headers.get("X-Subject-Token")
            answer = resp.json_object().get("token")
            expires = answer.get("expires_at") if isinstance(answer, dict) else None
            expires_at = _parse_iso(expires)
            if not token or expires_at is None:
                raise PollError("bad_response", "IAM answered without X-Subject-Token or token.expires_at")
            self.token_refreshes += 1
            redact.register_token(token)  # a vendor that quotes the request would quote X-Auth-Token
            cache.token, cache.expires = token, expires_at
            return token

    # ------------------------------------------------------------------------- realtime

    def _app_query(self, app: AppConfig) -> dict[str, str]:
        return {"app": app.id, **({"room_id": app.room_id} if app.room_id else {})}

    def _window(self, now: float, span: float) -> dict[str, str]:
        return {"start_time": _fmt(now - span), "end_time": _fmt(now)}

    async def _realtime(self, call: Call) -> None:
        api = key = call.api  # the answer's list is named like the API: scale, quality, network
        now = self.ctx.clock()
        span = float(self.config.point_settle) + 900.0  # enough to hold the newest settled minute
        query = {**self._app_query(call.app), "metric": call.metric, **self._window(now, span)}
        if call.sdk_type:
            query["sdk_type"] = call.sdk_type
        answer = await self._api(api, f"/v1/{self.config.project_id}/rtc/realtime/{api}", query)
        points = answer.get(key)
        if not isinstance(points, list):
            raise PollError("bad_response", f"realtime/{api}: no '{key}' list")
        newest: tuple[float, Any] | None = None
        for point in points:
            if not isinstance(point, dict):
                continue
            t = _parse_time(point.get("time"))
            # The newest minute is published late and revised: only settled minutes count.
            if t is None or t + 60.0 + self.config.point_settle > now:
                continue
            if t < norm.EARLIEST_TIMESTAMP:
                self._parse_errors[f"{api}.time"] += 1
                continue
            if newest is None or t > newest[0]:
                newest = (t, point.get("value"))
        if newest is None:
            return  # nothing complete yet: the old value stays until it ages out
        t, raw = newest
        if api == "scale":
            value = norm.non_negative(raw)
        else:
            value = norm.ratio(raw, self.config.rate_scale)
        if isinstance(value, float):
            self.values[("series", call.key)] = Cached(value, t, now)
        else:
            self.values.pop(("series", call.key), None)
            self._parse_errors[f"{api}.{call.metric}"] += 1

    async def _scale_dimension(self, call: Call) -> None:
        now = self.ctx.clock()
        minute = (now - 60.0 - self.config.point_settle) // 60 * 60
        query = {
            **self._app_query(call.app),
            "metric": "OnlineUsers",
            "dimension": call.metric,
            "time": _fmt(minute),
        }
        answer = await self._api("scale_dimension", f"/v1/{self.config.project_id}/rtc/realtime/scale/dimension", query)
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

    async def _abnormal_dimension(self, call: Call) -> None:
        now = self.ctx.clock()
        query = {
            **self._app_query(call.app),
            "dimension": "abnormal_type,abnormal_factor",
            **self._window(now, float(self.config.event_distribution_window or 600.0)),
        }
        answer = await self._api("abnormal_dimension", "/v1/rtc/data/abnormal-event/dimension", query)
        rows = answer.get("dimensions")
        if not isinstance(rows, list):
            raise PollError("bad_response", "abnormal-event/dimension: no 'dimensions' list")
        for k in [k for k in self.values if k[0] == "abn" and k[1] == call.key]:
            del self.values[k]
        for row in rows:
            if not isinstance(row, dict):
                continue
            users = norm.non_negative(row.get("user_count"))
            kind, factor = _label_text(row.get("abnormal_type")), _label_text(row.get("abnormal_factor"))
            if kind is None or factor is None:
                self._parse_errors["abnormal_dimension.abnormal_type"] += 1
                continue
            if isinstance(users, float):
                key = ("abn", call.key, kind, factor)
                self.values[key] = Cached(users, now, now)
                self._remember_desc(row)

    # ------------------------------------------------------------------- abnormal events

    def _events_key(self, app: AppConfig) -> str:
        return app.id + "|" + (app.room_id or "")

    def _load_events(self, app: AppConfig) -> dict[str, Any]:
        key = "events-" + hashlib.sha256(self._events_key(app).encode()).hexdigest()[:12]
        loaded = self.ctx.state.load(self.config.name, key, EventsState)
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

    def _save_events(self, state: dict[str, Any]) -> None:
        self.ctx.state.save(self.config.name, state["_key"], EventsState,
                            {k: v for k, v in state.items() if k != "_key"})

    async def _read_events(self, app: AppConfig) -> None:
        """Read every page of the current window. A window cut short by the budget is continued
        at the same offset (with its per-window counts) in a later poll."""
        c = self.config
        key = self._events_key(app)
        state = self._events[key]
        now = self.ctx.clock()
        pending = self._pending_windows.pop(key, None)
        if pending is None:
            hwm = state["hwm"]
            start = (hwm if hwm is not None else now) - float(c.events_overlap)
            start = max(start, now - 86400.0 + 60.0)  # the API's maximum span is one day
            pending = _Window(start, now)
        while True:
            query = {
                **self._app_query(app),
                "start_time": _fmt(pending.start),
                "end_time": _fmt(pending.end),
                "limit": str(c.events_page_size),
                "offset": str(pending.offset),
            }
            try:
                answer = await self._api("abnormal_events", "/v1/rtc/data/abnormal-events", query)
            except _BudgetSpent:
                self._pending_windows[key] = pending
                raise
            events, total = answer.get("events"), answer.get("total")
            if not isinstance(events, list) or not isinstance(total, int) or isinstance(total, bool):
                raise PollError("bad_response", "abnormal-events: no 'events' list or 'total'")
            if not 0 <= total <= MAX_EVENTS_PER_WINDOW:
                # A total no window can hold would have us page through the whole budget.
                raise PollError("bad_response", f"abnormal-events: total {total} is not a number of events")
            self._count_events(state, events, pending.counts)
            pending.offset += len(events)
            if not events or pending.offset >= total:
                break
        state["hwm"] = pending.end
        cutoff = pending.end - float(c.events_overlap) - 60.0
        state["seen"] = {k: v for k, v in state["seen"].items() if v[1] >= cutoff}
        self._save_events(state)

    def _count_events(self, state: dict[str, Any], events: list[Any], window_counts: Counter[str]) -> None:
        seen: dict[str, list[float]] = state["seen"]
        for event in events:
            if not isinstance(event, dict):
                continue
            t = _parse_time(event.get("time"))
            if t is None or isinstance(norm.plausible_time(t, self.ctx.clock()), norm.Missing):
                self._parse_errors["abnormal_events.time"] += 1
                continue
            bad = next((k for k in _EVENT_LABEL_FIELDS if _label_text(event.get(k)) is None), None)
            if bad is not None:
                self._parse_errors[f"abnormal_events.{bad}"] += 1
                continue
            ident = json.dumps(
                [
                    event.get(k)
                    for k in (
                        "time",
                        "uid",
                        "room_id",
                        "stage",
                        "location",
                        "peer_uid",
                        "abnormal_type",
                        "abnormal_factor",
                    )
                ],
                ensure_ascii=True,
            )
            key = hashlib.sha256(ident.encode()).hexdigest()[:20]  # no user ids on disk
            window_counts[key] += 1
            known = seen.get(key)
            if known is not None and window_counts[key] <= known[0]:
                continue
            seen[key] = [window_counts[key], t]
            labels = "\0".join(_label_text(event.get(k)) or "" for k in _EVENT_LABEL_FIELDS)
            state["counts"][labels] = state["counts"].get(labels, 0) + 1
            self._remember_desc(event, state)
        self._save_events(state)

    def _remember_desc(self, row: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        key = f"{_label_text(row.get('abnormal_type')) or ''}\0{_label_text(row.get('abnormal_factor')) or ''}"
        desc = [_label_text(row.get("abnormal_type_desc")) or "", _label_text(row.get("abnormal_factor_desc")) or ""]
        self._descs[key] = desc
        if state is not None:
            state["descs"][key] = desc

    # --------------------------------------------------------------------------- output

    def _emit(self, out: SnapshotBuilder, now: float) -> None:
        max_age = self.scaled(float(self.config.max_age))
        for key in [k for k, v in self.values.items() if now - v.fetched_at > max_age]:
            del self.values[key]
        for key, cached in sorted(self.values.items(), key=lambda kv: str(kv[0])):
            kind, (api, app, room, metric, sdk) = key[0], key[1]
            labels = {"app": app, "room": room}
            if kind == "series":
                if api == "scale":
                    out.add(ONLINE_USERS if metric == "OnlineUsers" else ROOMS, cached.value, **labels, server="")
                elif api == "quality":
                    out.add(QUALITY[metric], cached.value, **labels, sdk_type=sdk)
                else:
                    media, path = _NETWORK_LABELS[metric]
                    out.add(EXCELLENT, cached.value, **labels, sdk_type=sdk, media=media, path=path)
                out.add(POINT_TIME, cached.point_time, **labels, api=api, vendor_metric=metric, sdk_type=sdk)
            elif kind == "dim":
                out.add(ONLINE_BY_DIMENSION, cached.value, **labels, dimension=metric, dimension_value=key[2])
            elif kind == "abn":
                out.add(ABNORMAL_USERS, cached.value, **labels, abnormal_type=key[2], abnormal_factor=key[3])
        for desc_key, (type_desc, factor_desc) in sorted(self._descs.items()):
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
        return AccountStatus(
            account=self.account.key, window="data requests per minute", limit=float(self.account.per_minute),
            used=float(self.account.used(now)),
            throttled_until=self.account.blocked_until if self.account.blocked_until > now else None,
            note=f"{self.vendor_throttled} throttling answer(s), {waits} call(s) postponed for budget",
        )

    def data_timestamp(self) -> float | None:
        # Cached values are republished by polls that fetch nothing: their age is that of the
        # newest successful fetch, not of the poll.
        return self._data_at

    def self_metrics(self, out: SnapshotBuilder) -> None:
        now = self.ctx.clock()
        acct = {"account": self.account.key}
        out.add(BUDGET_LIMIT, float(self.account.per_minute), **acct)
        out.add(BUDGET_USED, float(self.account.used(now)), **acct)
        requests = Counter({(c.api, o): 0 for c in self.calls for o in REQUEST_OUTCOMES})
        requests.update(self.requests)
        for (api, outcome), n in sorted(requests.items()):
            out.add(REQUESTS, float(n), api=api, outcome=outcome)
        for api in sorted({c.api for c in self.calls}):
            out.add(THROTTLED_WAITS, float(self.waits[api]), api=api)
            if api in self.periods:
                out.add(PLANNED_PERIOD, self.periods[api], api=api)
        out.add(VENDOR_THROTTLED, float(self.vendor_throttled))
        out.add(DIMENSION_DROPPED, float(self.dimension_dropped))
        # A counter, so it survives failed polls (it is persisted) and exists at 0 from the start.
        for watched in self.config.apps if self.config.abnormal_events else ():
            state = self._events[self._events_key(watched)]
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
            out.add(TOKEN_REFRESHES, float(self.token_refreshes))
        for call in self.calls:
            last = self.last_refresh.get(call.key)
            if last is not None:
                api, app, room, metric, sdk = call.key
                out.add(
                    REFRESH_AGE,
                    max(0.0, now - last),
                    app=app,
                    room=room,
                    api=api,
                    vendor_metric=metric,
                    sdk_type=sdk,
                )
        if self.config.callback_secret is not None:
            cb = self._callbacks
            for reason in ("bad_secret", "bad_body"):
                out.add(CALLBACK_REJECTED, float(cb["rejected"].get(reason, 0)), reason=reason)
            apps = (*(a.id for a in self.config.apps), OTHER_APP)
            events = {f"{a}\0{e}": 0 for a in apps for e in RECORD_EVENT_TYPES}
            events.update(cb["events"])
            for key, n in sorted(events.items()):
                app, event_type = key.split("\0", 1)
                out.add(RECORD_EVENTS, float(n), app=app, event_type=event_type)
            for app, seconds in sorted(cb["duration"].items()):
                out.add(RECORD_DURATION, float(seconds), app=app)

    async def close(self) -> None:
        # A removed or reconfigured target no longer takes a share of the account's budget.
        self.account.members[self.config.name] -= 1
        if self.account.members[self.config.name] <= 0:
            del self.account.members[self.config.name]

    # ------------------------------------------------------------------------ budget I/O

    def _restore_budget(self, now: float) -> None:
        if not self.account.loaded:
            # The account's log lives in the file of its first member (by name), whichever
            # member happens to poll first after a restart.
            owner = sorted(self.account.members)[0]
            saved = self.ctx.state.load(owner, f"budget-{self.account.key}", BudgetState, target=self.config.name)
            self.account.restore(saved, now, self.config.assume_budget_spent_at_start)

    def _save_budget(self) -> None:
        for member in sorted(self.account.members)[:1]:
            self.ctx.state.save(member, f"budget-{self.account.key}", BudgetState, self.account.dump(),
                                target=self.config.name)

    # ------------------------------------------------------------------------ callbacks

    def _load_callbacks(self) -> dict[str, Any]:
        saved = self.ctx.state.load(self.config.name, "record-callbacks", CallbacksState)
        return (saved or CallbacksState()).model_dump()

    async def handle_api(self, action: str, request: web.Request) -> web.StreamResponse:
        if action != "record-events":
            return await super().handle_api(action, request)
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        cb = self._callbacks
        secret = self.config.callback_secret
        if secret is None:
            raise web.HTTPNotFound(text="record callbacks are off: set callback_secret\n")
        given = request.headers.get(SECRET_HEADER) or request.query.get("secret")
        if not given:
            cb["rejected"]["bad_secret"] = cb["rejected"].get("bad_secret", 0) + 1
            raise web.HTTPUnauthorized(text="missing secret\n")
        if not _same(given, secret.get_secret_value()):
            cb["rejected"]["bad_secret"] = cb["rejected"].get("bad_secret", 0) + 1
            raise web.HTTPForbidden(text="wrong secret\n")
        try:
            body = vendorjson.loads(await request.read())
        except vendorjson.JSONError:
            body = None
        event_type = body.get("event_type") if isinstance(body, dict) else None
        app = body.get("app_id") if isinstance(body, dict) else None
        duration = norm.non_negative(body.get("record_duration")) if isinstance(body, dict) else norm.INVALID
        if isinstance(duration, float) and duration > MAX_RECORD_DURATION:
            duration = norm.INVALID
        if event_type not in RECORD_EVENT_TYPES or not isinstance(app, str) or not app or (duration is norm.INVALID):
            cb["rejected"]["bad_body"] = cb["rejected"].get("bad_body", 0) + 1
            self.ctx.state.save(self.config.name, "record-callbacks", CallbacksState, cb)
            raise web.HTTPBadRequest(text="expected a JSON record event with app_id, a known event_type and, if "
                                      f"any, a record_duration of 0..{MAX_RECORD_DURATION:.0f} seconds\n")
        if app not in {a.id for a in self.config.apps}:
            # The label stays bounded by the config whatever the callers send.
            app = OTHER_APP
        previous = cb["duration"].get(app, 0.0)
        previous = float(previous) if isinstance(previous, int | float) and not isinstance(previous, bool) else 0.0
        total = previous + (duration if isinstance(duration, float) else 0.0)
        if not math.isfinite(total):
            # A counter must never become +Inf (nor be persisted as Infinity).
            cb["rejected"]["bad_body"] = cb["rejected"].get("bad_body", 0) + 1
            self.ctx.state.save(self.config.name, "record-callbacks", CallbacksState, cb)
            raise web.HTTPBadRequest(text="record_duration would overflow the recorded duration\n")
        key = f"{app}\0{event_type}"
        cb["events"][key] = cb["events"].get(key, 0) + 1
        if event_type == "RECORD_FILE_COMPLETE" and isinstance(duration, float):
            cb["duration"][app] = total
        self.ctx.state.save(self.config.name, "record-callbacks", CallbacksState, cb)
        return web.json_response({"result": "ok"})


class _TokenRejected(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class _BudgetSpent(Exception):
    """No budget left for this call now; it stays due for a later poll."""


def _fmt(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime(TIME_FORMAT)




def _label_text(value: Any) -> str | None:
    """A vendor value that becomes a label: a string or an integer ("" when absent); None for
    anything else (objects, lists, floats, booleans), which is a parse error, not a label."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip(), TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _parse_iso(value: Any) -> float | None:
    """IAM writes "2026-11-22T12:00:00.000000Z" (with microseconds, unlike the data APIs)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        return None


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())
