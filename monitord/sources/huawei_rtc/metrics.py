"""What the huawei_rtc source exposes, and the vendor's names it maps from."""

from __future__ import annotations

from monitord.errors import REASONS
from monitord.metrics import MetricDef
from monitord.sources import shared

SCALE_METRICS = ("OnlineUsers", "RoomCount")
QUALITY_METRICS = ("JoinSuccessRate", "JoinSuccess5SecsRate", "VideoFreezeRate", "AudioFreezeRate")
NETWORK_METRICS = (
    "VideoUpstreamExcellentTransRate",
    "AudioUpstreamExcellentTransRate",
    "VideoExcellentTransRate",
    "AudioExcellentTransRate",
)
DIMENSIONS = ("region", "access_net", "platform", "sdk")
# What a failed join is broken down by: fields of the user list's RtcUser.
FAILED_JOIN_DIMENSIONS = ("isp", "region", "platform", "sdk")
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
NETWORK_LABELS = {
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
    "Recording callbacks received, by event_type and app (apps not configured and event types not "
    "documented count as other).",
    labels=("app", "event_type"),
)
RECORD_DURATION = MetricDef(
    "rtc_huawei_recorded_duration_seconds",
    "counter",
    "Recorded duration reported by RECORD_FILE_COMPLETE callbacks.",
    labels=("app",),
    unit="seconds",
)
FAILED_JOIN_USERS = MetricDef(
    "rtc_huawei_failed_join_users",
    "gauge",
    "Users whose join failed (user list, state FAIL) among those who joined in the last failed_joins_window.",
    labels=APP,
)
FAILED_JOINS_BY_DIMENSION = MetricDef(
    "rtc_huawei_failed_join_users_by_dimension",
    "gauge",
    "Users whose join failed in the last failed_joins_window, by isp, region, platform or sdk (top values; "
    "unknown when the vendor sends none).",
    labels=(*APP, "dimension", "dimension_value"),
)
RUNNING_ROOMS = MetricDef(
    "rtc_huawei_running_rooms",
    "gauge",
    "Rooms in state RUNNING among those created within rooms_lookback (room list).",
    labels=APP,
)
BUDGET_LIMIT = MetricDef(
    "monitord_huawei_rtc_budget_requests_per_minute",
    "gauge",
    "Configured data-request budget of the account, per minute.",
    labels=("account",),
    health=True,
)
BUDGET_USED = MetricDef(
    "monitord_huawei_rtc_budget_used_requests",
    "gauge",
    "Data requests the account made in the last 60 seconds (all its targets).",
    labels=("account",),
    health=True,
)
REQUESTS = MetricDef(
    "monitord_huawei_rtc_requests",
    "counter",
    "Data requests of this target by API and outcome (ok or a poll-error reason).",
    labels=("api", "outcome"),
    health=True,
)
THROTTLED_WAITS = MetricDef(
    "monitord_huawei_rtc_budget_throttled_waits",
    "counter",
    "Due calls postponed to a later poll because the account's budget was spent.",
    labels=("api",),
    health=True,
)
VENDOR_THROTTLED = MetricDef(
    "monitord_huawei_rtc_vendor_throttled",
    "counter",
    "Throttling answers from Huawei's API gateway (APIGW.0308 / HTTP 429).",
    health=True,
)
REFRESH_AGE = MetricDef(
    "monitord_huawei_rtc_refresh_age_seconds",
    "gauge",
    "Time since each series was last fetched successfully.",
    labels=SERIES_LABELS,
    unit="seconds",
    health=True,
)
PLANNED_PERIOD = MetricDef(
    "monitord_huawei_rtc_planned_refresh_period_seconds",
    "gauge",
    "Refresh period the planner gives each API under the budget (stretched when over).",
    labels=("api",),
    unit="seconds",
    health=True,
)
TOKEN_REFRESHES = MetricDef("monitord_huawei_rtc_token_refreshes", "counter", "IAM tokens fetched.", health=True)
CALLBACK_REJECTED = MetricDef(
    "monitord_huawei_rtc_callbacks_rejected",
    "counter",
    "Recording callbacks refused: bad_secret (URL secret), bad_signature (X-Rtc-Signature), stale "
    "(X-Rtc-Timestamp out of callback_max_skew), replay, bad_body.",
    labels=("reason",),
    health=True,
)
BREAKDOWN_INCOMPLETE = MetricDef(
    "monitord_huawei_rtc_failed_join_breakdowns_incomplete",
    "counter",
    "Failed-join windows with more users than users_max_pages pages hold: the total is exposed, the "
    "breakdown by dimension is not.",
    health=True,
)
DIMENSION_DROPPED = MetricDef(
    "monitord_huawei_rtc_dimension_values_dropped",
    "counter",
    "Dimension values beyond dimension_top, left out of the exposition.",
    health=True,
)

