"""Vendor strings to numbers in base units.

Every function here is pure and total: whatever it is given (any JSON value, or anything else)
it returns a finite float (or a tuple of them) or one of the two ``Missing`` markers. It never
raises. ``ABSENT`` means the vendor said "no value" (``--``, ``Unknown``, empty, null): the
series must be absent. ``INVALID`` means we could not read it: also no sample, but the caller
counts a parse error so that a vendor changing its format is visible.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Final


class Missing(enum.Enum):
    ABSENT = "absent"
    INVALID = "invalid"


ABSENT: Final = Missing.ABSENT
INVALID: Final = Missing.INVALID

Number = float | Missing

_ABSENT_TOKENS: Final = frozenset({"", "-", "--", "---", "unknown", "n/a", "na", "null", "none", "nil"})

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_RE: Final = re.compile(rf"^\s*({_NUMBER})\s*$")
_DURATION_RE: Final = re.compile(rf"^\s*({_NUMBER})\s*(us|µs|ms|s|sec|secs|m|min|mins|h)?\s*$", re.IGNORECASE)
_PERCENT_RE: Final = re.compile(rf"^\s*({_NUMBER})\s*(%)?\s*$")
# "35.62k", "962.76 kbps", "1.2M", "1157120", "2 Mb/s". Case matters for nothing here: vendors
# write "K" and "k" interchangeably and nobody reports millibits.
_BITRATE_RE: Final = re.compile(rf"^\s*({_NUMBER})\s*([kmg])?\s*(?:bps|bit/s|b/s|bits/s|bit)?\s*$", re.IGNORECASE)
_SIZE_RE: Final = re.compile(rf"^\s*({_NUMBER})\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
_RESOLUTION_WXH_RE: Final = re.compile(r"^\s*(\d{1,5})\s*[xX*×]\s*(\d{1,5})\s*$")  # noqa: RUF001
_RESOLUTION_P_RE: Final = re.compile(r"^\s*(\d{2,4})\s*[pPiI]\s*$")

_DURATION_UNIT_SECONDS: Final = {
    "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "secs": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "h": 3600.0,
}
# Power-of-ten units as exponent suffixes, for _rounded.
_DURATION_SHIFT: Final = {"us": "e-6", "µs": "e-6", "ms": "e-3", "s": "", "sec": "", "secs": ""}
_SI: Final = {None: 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "K": 1e3, "M": 1e6, "G": 1e9}
_SI_SHIFT: Final = {None: "", "k": "e3", "m": "e6", "g": "e9", "K": "e3", "M": "e6", "G": "e9"}
_SIZE_UNIT_BYTES: Final = {
    "": 1.0, "b": 1.0,
    "k": 1024.0, "kb": 1000.0, "kib": 1024.0,
    "m": 1024.0**2, "mb": 1000.0**2, "mib": 1024.0**2,
    "g": 1024.0**3, "gb": 1000.0**3, "gib": 1024.0**3,
}
# Named and "Np" resolutions as conference endpoints report them. "Np" means a 16:9 picture of
# N lines; the CIF family and VGA are the 4:3 / 11:9 formats of older H.323 endpoints.
_NAMED_RESOLUTIONS: Final = {
    "144p": (256, 144), "180p": (320, 180), "240p": (426, 240), "270p": (480, 270),
    "360p": (640, 360), "448p": (800, 448), "480p": (854, 480), "540p": (960, 540),
    "576p": (1024, 576), "720p": (1280, 720), "1080p": (1920, 1080), "1440p": (2560, 1440),
    "2160p": (3840, 2160), "4k": (3840, 2160), "qcif": (176, 144), "cif": (352, 288),
    "4cif": (704, 576), "qvga": (320, 240), "vga": (640, 480), "svga": (800, 600),
    "xga": (1024, 768), "sxga": (1280, 1024), "wxga": (1280, 768), "w448p": (768, 448),
}

_NAMED_RESOLUTION_PIXELS: Final = {k: (float(w), float(h)) for k, (w, h) in _NAMED_RESOLUTIONS.items()}

CHINA_STANDARD_TIME: Final = timezone(timedelta(hours=8), "CST")

# The fast path: most vendor values are a plain decimal (ASCII digits, at most one dot, no sign,
# no exponent, at most 12 characters) directly followed by a unit. For those the result is the
# decimal scaled by a power of ten, which float() parses exactly rounded from the text (see
# _rounded): what the patterns would give, without running them. Anything else (signs,
# exponents, spaces inside, other units, non-ASCII) takes the patterns.
_UNIT_CHARS: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%/"
_DURATION_FAST_SHIFT: Final = {"us": "e-6", "ms": "e-3", "s": "", "sec": "", "secs": ""}
_BITRATE_FAST_SHIFT: Final = {
    prefix + suffix: _SI_SHIFT[prefix or None]
    for prefix in ("", "k", "m", "g") for suffix in ("", "bps", "bit/s", "b/s", "bits/s", "bit")
}


def _plain(value: str) -> tuple[str, str] | None:
    """(decimal, unit) of a value like "35.62k" or "5ms"; None when it is not that simple."""
    if not value.isascii() or len(value) > 64:
        return None
    text = value.rstrip(_UNIT_CHARS)
    # At most one dot and at least one digit; ASCII, so isdigit() means 0-9.
    if len(text) > 12 or not text.replace(".", "", 1).isdigit():
        return None
    return text, value[len(text):]


def is_absent(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, str) and value.strip().lower() in _ABSENT_TOKENS


def _finite(x: float) -> Number:
    # 12 significant digits: more than any vendor sends, and "26ms" exposes as 0.026, not
    # 0.026000000000000002.
    return float(f"{x:.12g}") if x - x == 0.0 else INVALID  # x - x is NaN for inf and NaN


def _rounded(text: str, shift: str, amount: float) -> Number:
    """_finite(amount), where amount is the decimal `text` times 10**shift (shift "e3", "e-2", "").

    For a decimal of at most 12 digits without an exponent, _finite's result is that decimal
    itself, which float() parses exactly rounded: the same float, without _finite's formatting
    round trip (the costliest step of the normalizer)."""
    if len(text) <= 12 and "e" not in text and "E" not in text:
        return float(text + shift) if shift else amount
    return _finite(amount)


def _match(pattern: re.Pattern[str], value: Any) -> re.Match[str] | Missing:
    """Common front end: absent tokens, then the pattern on a string form of the value."""
    if value.__class__ is str and len(value) <= 64:
        # The common case, pattern first: no absent token contains a digit and every pattern
        # needs one, so a match is never an absent value.
        m = pattern.match(value)
        if m is not None:
            return m
        return ABSENT if value.strip().lower() in _ABSENT_TOKENS else INVALID
    if is_absent(value):
        return ABSENT
    if isinstance(value, bool):
        return INVALID
    if isinstance(value, int | float):
        value = repr(float(value)) if isinstance(value, float) else str(value)
    if not isinstance(value, str) or len(value) > 64:
        return INVALID
    m = pattern.match(value)
    return m if m is not None else INVALID


def number(value: Any) -> Number:
    """A plain number, given as a JSON number or a numeric string ("15", "1157120", "29.97")."""
    if isinstance(value, bool):
        return INVALID
    if isinstance(value, int):
        # Exact as it is: the 12-digit rounding is for decimal artifacts, and would cut epoch
        # milliseconds (13 digits) to tenths of a second.
        return float(value) if abs(value) < 2**63 else INVALID
    if isinstance(value, float):
        return _finite(value)
    if value.__class__ is str and len(value) <= 12 and value.isascii() and value.isdigit():
        return float(value)
    return _number(value)


def _number(value: Any) -> Number:
    """number() of a value that is not a JSON number, by the pattern."""
    m = _match(_NUMBER_RE, value)
    if isinstance(m, Missing):
        return m
    text = m.group(1)
    return _rounded(text, "", float(text))


def non_negative(value: Any) -> Number:
    """A count or rate that cannot be negative: a negative one is a vendor bug, not data."""
    n = number(value)
    return INVALID if isinstance(n, float) and n < 0 else n


def duration_seconds(value: Any, default_unit: str = "ms") -> Number:
    """ "5ms" -> 0.005, "120 ms" -> 0.12, "1.5s" -> 1.5, "67.008s" -> 67.008.

    A bare number takes ``default_unit``: endpoints write jitter and delay in milliseconds.
    """
    if value.__class__ is str:
        plain = _plain(value)
        if plain is not None:
            shift = _DURATION_FAST_SHIFT.get((plain[1] or default_unit).lower())
            if shift is not None:
                return float(plain[0] + shift)
    return _duration_seconds(value, default_unit)


def _duration_seconds(value: Any, default_unit: str) -> Number:
    """duration_seconds by the pattern: every form it reads."""
    m = _match(_DURATION_RE, value)
    if isinstance(m, Missing):
        return m
    text, unit = m.group(1, 2)
    amount = float(text)
    unit = (unit or default_unit).lower()
    if amount < 0 or unit not in _DURATION_UNIT_SECONDS:
        return INVALID
    amount *= _DURATION_UNIT_SECONDS[unit]
    shift = _DURATION_SHIFT.get(unit)
    return _finite(amount) if shift is None else _rounded(text, shift, amount)


def ratio(value: Any, scale: str = "percent") -> Number:
    """ "0.00%" -> 0.0, "12.5%" -> 0.125. A bare number is read in ``scale`` ("percent" or "ratio").

    A ratio must land in [0, 1]: 130% loss is a vendor bug we must not draw as data.
    """
    if value.__class__ is str:
        plain = _plain(value)
        if plain is not None and (plain[1] == "%" or (not plain[1] and scale == "percent")):
            text = plain[0]
            return float(text + "e-2") if float(text) <= 100.0 else INVALID
    return _ratio(value, scale)


def _ratio(value: Any, scale: str) -> Number:
    """ratio by the pattern: every form it reads."""
    m = _match(_PERCENT_RE, value)
    if isinstance(m, Missing):
        return m
    text, percent = m.group(1, 2)
    amount = float(text)
    shift = ""
    if percent or scale == "percent":
        amount /= 100.0
        shift = "e-2"
    elif scale != "ratio":
        return INVALID
    if not 0.0 <= amount <= 1.0:
        return INVALID
    return _rounded(text, shift, amount)


def bitrate_bits_per_second(value: Any) -> Number:
    """ "35.62k" -> 35620, "1.2M" -> 1200000, "1157120" -> 1157120 (bits per second, SI prefixes)."""
    if value.__class__ is str:
        plain = _plain(value)
        if plain is not None:
            shift = _BITRATE_FAST_SHIFT.get(plain[1].lower())
            if shift is not None:
                return float(plain[0] + shift)
    return _bitrate_bits_per_second(value)


def _bitrate_bits_per_second(value: Any) -> Number:
    """bitrate_bits_per_second by the pattern: every form it reads."""
    m = _match(_BITRATE_RE, value)
    if isinstance(m, Missing):
        return m
    text, prefix = m.group(1, 2)
    amount = float(text) * _SI[prefix]
    return INVALID if amount < 0 else _rounded(text, _SI_SHIFT[prefix], amount)


def bitrate_bytes_per_second(value: Any) -> Number:
    """Bit rates are exposed in bytes per second (Prometheus base unit); dashboards show bits."""
    bits = bitrate_bits_per_second(value)
    return bits if isinstance(bits, Missing) else bits / 8.0


def size_bytes(value: Any, bare_unit: str = "b") -> Number:
    """ "16.367M" -> 17161977.9 bytes.

    A lone letter (K, M, G) is read as binary (2^10, 2^20, 2^30): that is how the servers we
    poll print sizes (file length / 1024 / 1024). "MB" is decimal, "MiB" binary, as written.
    """
    m = _match(_SIZE_RE, value)
    if isinstance(m, Missing):
        return m
    unit = (m.group(2) or bare_unit).lower()
    amount = float(m.group(1)) * _SIZE_UNIT_BYTES.get(unit, math.nan)
    return INVALID if not amount >= 0 else _finite(amount)


def resolution(value: Any) -> tuple[float, float] | Missing:
    """ "720p" -> (1280, 720), "320x180" / "1920*1080" -> (w, h), "CIF" -> (352, 288)."""
    if not isinstance(value, str):
        return ABSENT if value is None else INVALID
    key = value.strip().lower()
    if key in _ABSENT_TOKENS:
        return ABSENT
    if len(value) > 32:
        return INVALID
    named = _NAMED_RESOLUTION_PIXELS.get(key)
    if named is not None:
        return named
    if key.isascii():
        # "1920*1080", "320x180": what the pattern reads, without running it.
        width, sep, height = key.partition("*") if "*" in key else key.partition("x")
        if sep and 0 < len(width) <= 5 and 0 < len(height) <= 5 and width.isdigit() and height.isdigit():
            w, h = int(width), int(height)
            if w > 0 and h > 0:
                return float(w), float(h)
    return _resolution(value)


def _resolution(value: str) -> tuple[float, float] | Missing:
    """resolution() of a string that is no absent token or named resolution, by the patterns."""
    m = _RESOLUTION_WXH_RE.match(value)
    if m:
        w, h = int(m.group(1)), int(m.group(2))
    else:
        m = _RESOLUTION_P_RE.match(value)
        if not m:
            return INVALID
        h = int(m.group(1))
        w = round(h * 16 / 9 / 2) * 2  # an unlisted "Np": 16:9, even width as encoders need
    if w <= 0 or h <= 0:
        return ABSENT if w == 0 and h == 0 else INVALID
    return float(w), float(h)


def china_time_to_unix(value: Any) -> Number:
    """ "2024-05-01 09:30:00.123" in China Standard Time (UTC+8, no DST) -> Unix seconds."""
    if is_absent(value):
        return ABSENT
    if not isinstance(value, str) or len(value) > 40:
        return INVALID
    text = value.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=CHINA_STANDARD_TIME).timestamp()
    return INVALID


def epoch_millis_to_seconds(value: Any) -> Number:
    """Vendor timestamps in milliseconds -> Unix seconds; 0 means "not set"."""
    n = number(value)
    if isinstance(n, Missing):
        return n
    if n == 0:
        return ABSENT
    return n / 1000.0 if n > 0 else INVALID


# Vendor times describe recent events: before 2000 is a placeholder ("0001-01-01 00:00:00") or a
# unit mix-up, and more than a day ahead of our clock is not clock skew any more.
EARLIEST_TIMESTAMP: Final = 946_684_800.0  # 2000-01-01T00:00:00Z
FUTURE_SLACK_SECONDS: Final = 86_400.0


def plausible_time(seconds: Number, now: float) -> Number:
    """A Unix time passed through when it lies between 2000 and a day after `now`, else INVALID."""
    if isinstance(seconds, Missing):
        return seconds
    if not EARLIEST_TIMESTAMP <= seconds <= now + FUTURE_SLACK_SECONDS:
        return INVALID
    return seconds
