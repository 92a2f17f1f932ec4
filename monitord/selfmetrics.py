"""The exporter's own metrics (monitord_*): what a person on call needs to trust the data."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Final

from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder, Store

TARGET_UP: Final = MetricDef(
    "monitord_target_up", "gauge",
    "1 if the vendor answered the requests of the target's newest poll that made any, 0 if that poll failed. "
    "A poll that asked the vendor nothing keeps the state. Data series of a failed target are dropped.",
    health=True,
)
POLL_DURATION: Final = MetricDef(
    "monitord_poll_duration_seconds", "gauge", "How long the newest poll of the target took.", unit="seconds",
    health=True,
)
LAST_SUCCESS: Final = MetricDef(
    "monitord_last_success_timestamp_seconds", "gauge",
    "Unix time of the target's newest successful poll that asked the vendor something. Scrapes serve cached data; "
    "alert on its age.",
    unit="timestamp_seconds",
    health=True,
)
LAST_DATA: Final = MetricDef(
    "monitord_last_data_timestamp_seconds", "gauge",
    "Unix time the newest vendor data the target exposes was received (for cached values: their newest "
    "successful fetch). Survives failed polls; time() minus this is the age of the data.",
    unit="timestamp_seconds",
    health=True,
)
POLLS: Final = MetricDef("monitord_polls", "counter", "Polls of the target that finished, successful or not.",
                         health=True)
POLL_ERRORS: Final = MetricDef(
    "monitord_poll_errors", "counter", "Failed polls of the target by reason.", labels=("reason",),
    health=True,
)
PARSE_ERRORS: Final = MetricDef(
    "monitord_parse_errors", "counter",
    "Vendor values that could not be read, by field. The sample is left out, never replaced by 0.",
    labels=("field",),
    health=True,
)
SERIES_DROPPED: Final = MetricDef(
    "monitord_series_dropped", "counter",
    "Series not exposed: over the per-target cap (series_limit) or repeated within one poll (duplicate).",
    labels=("reason",),
    health=True,
)
TARGET_SERIES: Final = MetricDef("monitord_target_series", "gauge", "Data series the target exposes now.", health=True)
POLLS_SKIPPED: Final = MetricDef(
    "monitord_polls_skipped", "counter",
    "Scheduled polls skipped because the previous poll of the target was still running.",
    health=True,
)
STATE_ERRORS: Final = MetricDef(
    "monitord_state_errors", "counter",
    "Problems with the target's persistent state files: content set aside (not_utf8, bad_json, wrong_shape), "
    "read_error, write_error.",
    labels=("reason",),
    health=True,
)

_GLOBAL: Final = ()
BUILD_INFO: Final = MetricDef(
    "monitord_build", "info", "Version of monitord and of the Python running it.",
    labels=("version", "python_version"), base_labels=_GLOBAL,
    health=True,
)
RELOAD_OK: Final = MetricDef(
    "monitord_config_last_reload_successful", "gauge",
    "1 if the newest configuration (re)load succeeded; on failure the previous configuration stays in force.",
    base_labels=_GLOBAL,
    health=True,
)
RELOAD_TIME: Final = MetricDef(
    "monitord_config_last_reload_success_timestamp_seconds", "gauge",
    "Unix time of the newest successful configuration load.", unit="timestamp_seconds", base_labels=_GLOBAL,
    health=True,
)
TARGETS: Final = MetricDef(
    "monitord_targets", "gauge", "Configured targets by source.", labels=("source",), base_labels=_GLOBAL,
    health=True,
)
HTTP_REJECTED: Final = MetricDef(
    "monitord_http_requests_rejected", "counter",
    "Requests to monitord's own port refused: unauthorized (basic auth), client_certificate (SAN not "
    "allowed), lifecycle_disabled (/-/reload without --web.enable-lifecycle), header_timeout, body_timeout.",
    labels=("reason",), base_labels=_GLOBAL,
    health=True,
)

# Sharding and hot standby (monitord.sharding, monitord.leader). Every replica exposes them, the
# standby too, so a rule can compare shards and see a shard with no leader.
SHARD: Final = MetricDef(
    "monitord_shard", "gauge", "The shard this replica serves (value and label: the shard number).",
    labels=("shard",), base_labels=_GLOBAL,
    health=True,
)
TOTAL_SHARDS: Final = MetricDef(
    "monitord_total_shards", "gauge", "How many shards this replica believes the targets are split over.",
    base_labels=_GLOBAL,
    health=True,
)
SHARD_TARGETS: Final = MetricDef(
    "monitord_shard_targets", "gauge",
    "Targets of the configuration that belong to this replica's shard (polled only while it leads).",
    labels=("shard",), base_labels=_GLOBAL,
    health=True,
)
CONFIGURED_TARGETS: Final = MetricDef(
    "monitord_configured_targets", "gauge", "Targets in the whole configuration file, of every shard.",
    base_labels=_GLOBAL,
    health=True,
)
LEADER: Final = MetricDef(
    "monitord_leader", "gauge",
    "1 while this replica polls its shard's targets, 0 while it is a standby (it then polls no vendor).",
    labels=("shard",), base_labels=_GLOBAL,
    health=True,
)
LEADER_ACQUIRED: Final = MetricDef(
    "monitord_leader_acquired", "counter", "Times this replica took its shard's lease and started polling.",
    labels=("shard",), base_labels=_GLOBAL,
    health=True,
)
LEADER_LOST: Final = MetricDef(
    "monitord_leader_lost", "counter",
    "Times this replica stopped polling as leader: renew_deadline (it could not renew the lease in time), "
    "taken (another holder), released (shutdown).",
    labels=("shard", "reason"), base_labels=_GLOBAL,
    health=True,
)
LEASE_ERRORS: Final = MetricDef(
    "monitord_lease_errors", "counter",
    "Failed calls to the Kubernetes Lease API by reason (timeout, connect, conflict, http).",
    labels=("reason",), base_labels=_GLOBAL,
    health=True,
)
STATE_HANDOVER_FILES: Final = MetricDef(
    "monitord_state_handover_files", "counter",
    "Target state files taken from a peer replica because they were newer than the local copy.",
    base_labels=_GLOBAL,
    health=True,
)
STATE_HANDOVER_ERRORS: Final = MetricDef(
    "monitord_state_handover_errors", "counter",
    "Peers that could not give their state (connect, timeout, http, bad_response).",
    labels=("reason",), base_labels=_GLOBAL,
    health=True,
)

SOURCE_POLL_DURATION: Final = MetricDef(
    "monitord_source_poll_duration_seconds", "histogram",
    "Durations of the polls of every target of the source, failed or not.",
    labels=("source",), unit="seconds", base_labels=_GLOBAL,
    health=True,
)
# From a LAN device's tens of milliseconds to a budget-bound SparkRTC poll near its deadline.
POLL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0)

POLL_START_DELAY: Final = MetricDef(
    "monitord_poll_start_delay_seconds", "histogram",
    "How late polls of the source started after their scheduled time (the event loop was busy; "
    "the process lacks CPU when this grows).",
    labels=("source",), unit="seconds", base_labels=_GLOBAL,
    health=True,
)
# A process within its means starts polls within tens of milliseconds (README "Sizing"); seconds
# mean a starved event loop, and past the interval a fire time is dropped (counted here as well).
START_DELAY_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

PER_TARGET: Final = (TARGET_UP, POLL_DURATION, LAST_SUCCESS, LAST_DATA, POLLS, POLL_ERRORS, PARSE_ERRORS,
                     SERIES_DROPPED, TARGET_SERIES, POLLS_SKIPPED, STATE_ERRORS)
GLOBAL: Final = (BUILD_INFO, RELOAD_OK, RELOAD_TIME, TARGETS, SOURCE_POLL_DURATION, POLL_START_DELAY,
                  HTTP_REJECTED)
CLUSTER: Final = (SHARD, TOTAL_SHARDS, SHARD_TARGETS, CONFIGURED_TARGETS, LEADER, LEADER_ACQUIRED, LEADER_LOST,
                  LEASE_ERRORS, STATE_HANDOVER_FILES, STATE_HANDOVER_ERRORS)
ALL: Final = PER_TARGET + GLOBAL + CLUSTER


class SourceHistogram:
    """A histogram per source (poll durations, poll start delays). It outlives reloads (it is the
    daemon's), and a source's series exist at zero from the moment a target of it is configured."""

    def __init__(self, store: Store, metric: MetricDef, buckets: tuple[float, ...]) -> None:
        self.store = store
        self.metric = metric
        self.buckets = buckets
        self.store_key = f"histogram/{metric.name}"
        self._counts: dict[str, list[int]] = {}  # per bucket, plus +Inf; not cumulative
        self._sums: dict[str, float] = {}
        self._dirty = False

    def ensure(self, kinds: Iterable[str]) -> None:
        for kind in kinds:
            self._counts.setdefault(kind, [0] * (len(self.buckets) + 1))
            self._sums.setdefault(kind, 0.0)
        self.publish()

    def observe(self, kind: str, seconds: float) -> None:
        counts = self._counts.setdefault(kind, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self._sums[kind] = self._sums.get(kind, 0.0) + seconds
        # Published when a scrape renders (Store.add_refresher), not here: at thousands of polls a
        # second, a store change per poll for this would defeat the scrape cache.
        self._dirty = True

    def refresh(self) -> None:
        if self._dirty:
            self.publish()

    def publish(self) -> None:
        self._dirty = False
        out = SnapshotBuilder({})
        for kind in sorted(self._counts):
            cumulative, running = [], 0
            for count in self._counts[kind]:
                running += count
                cumulative.append(running)
            out.histogram(self.metric, self.buckets, cumulative, self._sums[kind], source=kind)
        self.store.put(self.store_key, out.build())
