"""Metric families that mean the same thing across vendors, so that one overview dashboard and
one alert rule cover all of them: the label model of docs/labels.md.

Every source that reports a shared family uses the definition here as it is, labels included, so
one PromQL query over a family covers every vendor (tests/test_label_model.py walks the catalog).
A label that does not apply to a vendor is present and empty, never a different label.
"""

from __future__ import annotations

from typing import Final

from monitord.metrics import MetricDef

# room: the conference, channel or room the stream belongs to ("" where the target is the room,
#       as for a conference endpoint); media: audio, video or aux (content sharing);
# direction: send or recv, seen from the target's device or encoder; stream: the vendor's identity
#       of the stream within (room, media, direction); site: the far site's name (endpoints only,
#       bounded and optional: it can name people).
STREAM_LABELS: Final = ("room", "media", "direction", "stream", "site")
# app: the vendor application; room: one room of it ("" for all); server: a media server of a
#       self-hosted deployment ("" where the vendor has none to name).
USAGE_LABELS: Final = ("app", "room", "server")

STREAM_JITTER: Final = MetricDef("rtc_stream_jitter_seconds", "gauge", "Jitter of the media stream.",
                                 labels=STREAM_LABELS, unit="seconds")
STREAM_DELAY: Final = MetricDef("rtc_stream_delay_seconds", "gauge", "Network delay of the media stream.",
                                labels=STREAM_LABELS, unit="seconds")
STREAM_LOSS: Final = MetricDef("rtc_stream_loss_ratio", "gauge", "Packet loss of the media stream, 0..1.",
                               labels=STREAM_LABELS, unit="ratio")
STREAM_BITRATE: Final = MetricDef(
    "rtc_stream_bitrate_bytes_per_second", "gauge",
    "Bit rate of the media stream, in bytes per second (Prometheus base unit; dashboards show bits/s).",
    labels=STREAM_LABELS, unit="bytes_per_second",
)
STREAM_FRAME_RATE: Final = MetricDef("rtc_stream_frames_per_second", "gauge", "Frame rate of the media stream.",
                                     labels=STREAM_LABELS, unit="frames_per_second")
ONLINE_USERS: Final = MetricDef("rtc_online_users", "gauge", "Users online now.", labels=USAGE_LABELS)
ROOMS: Final = MetricDef("rtc_rooms", "gauge", "Rooms (conferences) active now.", labels=USAGE_LABELS)

SHARED: Final = (STREAM_JITTER, STREAM_DELAY, STREAM_LOSS, STREAM_BITRATE, STREAM_FRAME_RATE, ONLINE_USERS, ROOMS)

