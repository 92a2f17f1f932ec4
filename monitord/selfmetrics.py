"""The exporter's own metrics (monitord_*): what a person on call needs to trust the data."""

from __future__ import annotations

from typing import Final

from monitord.metrics import MetricDef

TARGET_UP: Final = MetricDef(
    "monitord_target_up", "gauge",
    "1 if the newest poll of the target succeeded, 0 if it failed. Data series of a failed target are dropped.",
)
POLL_DURATION: Final = MetricDef(
    "monitord_poll_duration_seconds", "gauge", "How long the newest poll of the target took.", unit="seconds",
)
LAST_SUCCESS: Final = MetricDef(
    "monitord_last_success_timestamp_seconds", "gauge",
    "Unix time of the target's newest successful poll. Scrapes serve cached data; alert on its age.",
    unit="timestamp_seconds",
)
POLLS: Final = MetricDef("monitord_polls", "counter", "Polls of the target that finished, successful or not.")
POLL_ERRORS: Final = MetricDef(
    "monitord_poll_errors", "counter", "Failed polls of the target by reason.", labels=("reason",),
)
PARSE_ERRORS: Final = MetricDef(
    "monitord_parse_errors", "counter",
    "Vendor values that could not be read, by field. The sample is left out, never replaced by 0.",
    labels=("field",),
)
SERIES_DROPPED: Final = MetricDef(
    "monitord_series_dropped", "counter",
    "Series not exposed: over the per-target cap (series_limit) or repeated within one poll (duplicate).",
    labels=("reason",),
)
TARGET_SERIES: Final = MetricDef("monitord_target_series", "gauge", "Data series the target exposes now.")
POLLS_SKIPPED: Final = MetricDef(
    "monitord_polls_skipped", "counter",
    "Scheduled polls skipped because the previous poll of the target was still running.",
)
STATE_ERRORS: Final = MetricDef(
    "monitord_state_errors", "counter",
    "Problems with the target's persistent state files: content set aside (not_utf8, bad_json, wrong_shape), "
    "read_error, write_error.",
    labels=("reason",),
)

_GLOBAL: Final = ()
BUILD_INFO: Final = MetricDef(
    "monitord_build", "info", "Version of monitord and of the Python running it.",
    labels=("version", "python_version"), base_labels=_GLOBAL,
)
RELOAD_OK: Final = MetricDef(
    "monitord_config_last_reload_successful", "gauge",
    "1 if the newest configuration (re)load succeeded; on failure the previous configuration stays in force.",
    base_labels=_GLOBAL,
)
RELOAD_TIME: Final = MetricDef(
    "monitord_config_last_reload_success_timestamp_seconds", "gauge",
    "Unix time of the newest successful configuration load.", unit="timestamp_seconds", base_labels=_GLOBAL,
)
TARGETS: Final = MetricDef(
    "monitord_targets", "gauge", "Configured targets by source.", labels=("source",), base_labels=_GLOBAL,
)

PER_TARGET: Final = (TARGET_UP, POLL_DURATION, LAST_SUCCESS, POLLS, POLL_ERRORS, PARSE_ERRORS, SERIES_DROPPED,
                     TARGET_SERIES, POLLS_SKIPPED, STATE_ERRORS)
GLOBAL: Final = (BUILD_INFO, RELOAD_OK, RELOAD_TIME, TARGETS)
ALL: Final = PER_TARGET + GLOBAL
