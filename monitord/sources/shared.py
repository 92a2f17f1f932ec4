"""Metric families that mean the same thing across vendors, so that one overview dashboard and
one alert rule cover all of them. A source attaches its own labels with `with_labels`; name,
type, help and unit stay identical (metrics.check_catalog enforces it)."""

from __future__ import annotations

import dataclasses
from typing import Final

from monitord.metrics import MetricDef

STREAM_JITTER: Final = MetricDef("rtc_stream_jitter_seconds", "gauge", "Jitter of the media stream.", unit="seconds")
STREAM_DELAY: Final = MetricDef("rtc_stream_delay_seconds", "gauge", "Network delay of the media stream.",
                                unit="seconds")
STREAM_LOSS: Final = MetricDef("rtc_stream_loss_ratio", "gauge", "Packet loss of the media stream, 0..1.",
                               unit="ratio")
STREAM_BITRATE: Final = MetricDef(
    "rtc_stream_bitrate_bytes_per_second", "gauge",
    "Bit rate of the media stream, in bytes per second (Prometheus base unit; dashboards show bits/s).",
    unit="bytes_per_second",
)
STREAM_FRAME_RATE: Final = MetricDef("rtc_stream_frames_per_second", "gauge", "Frame rate of the media stream.",
                                     unit="frames_per_second")
ONLINE_USERS: Final = MetricDef("rtc_online_users", "gauge", "Users online now.")
ROOMS: Final = MetricDef("rtc_rooms", "gauge", "Rooms (conferences) active now.")


def with_labels(metric: MetricDef, labels: tuple[str, ...]) -> MetricDef:
    return dataclasses.replace(metric, labels=labels)

