"""Reading the vendor's values: times, label text."""

from __future__ import annotations

import re
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


# ISO 8601 date and time as the vendor may write it: "2020-04-23T06:00:00Z" (the documented
# form), with a fraction ("…00.123Z", as IAM writes expires_at), with an offset ("+08:00",
# "+0800") or none (UTC, which the vendor's pages say every time is). A bare date is not a time.
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}(:?\d{2})?)?", re.ASCII
)


def parse_time(value: Any) -> float | None:
    """Unix time of an ISO 8601 date-time; None when it is not one (a parse error for the caller,
    never a point to skip silently)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _ISO_DATETIME.fullmatch(text) is None:
        return None
    if text.endswith("z"):
        text = text[:-1] + "Z"
    head, dot, rest = text.partition(".")
    if dot:
        # Python reads at most 6 fraction digits; nanoseconds say nothing a per-minute point needs.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + "." + rest[:min(digits, 6)] + rest[digits:]
    try:
        parsed = datetime.fromisoformat(text)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        return None
