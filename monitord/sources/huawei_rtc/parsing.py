"""Reading the vendor's values: times, label text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# What we send: Huawei Cloud "SparkRTC API Reference > 数据统计分析" writes every time parameter as
# "YYYY-MM-DDThh:mm:ssZ".
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def fmt(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime(TIME_FORMAT)


def label_text(value: Any) -> str | None:
    """A vendor value that becomes a label: a string or an integer ("" when absent); None for
    anything else (objects, lists, floats, booleans), which is a parse error, not a label."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip(), TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def parse_iso(value: Any) -> float | None:
    """IAM writes "2026-11-22T12:00:00.000000Z" (with microseconds, unlike the data APIs)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        return None
