"""The normalization table of the spec, row by row, and properties over arbitrary input."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord import normalize as n
from monitord.normalize import ABSENT, INVALID

ABSENT_FORMS = ["--", "", "Unknown", "N/A", None, "  --  ", "unknown", "null", "-"]


@pytest.mark.parametrize(("raw", "seconds"), [
    ("5ms", 0.005), ("120 ms", 0.12), ("1.5s", 1.5), ("67.008s", 67.008), ("0ms", 0.0), ("5", 0.005),
    ("2 MS", 0.002), (7, 0.007),
])
def test_duration(raw: Any, seconds: float) -> None:
    assert n.duration_seconds(raw) == seconds


def test_duration_bare_number_takes_the_default_unit() -> None:
    assert n.duration_seconds("67.008", default_unit="s") == 67.008


@pytest.mark.parametrize(("raw", "ratio"), [("0.00%", 0.0), ("12.5%", 0.125), ("100%", 1.0), ("99.5", 0.995)])
def test_ratio_from_percent(raw: str, ratio: float) -> None:
    assert n.ratio(raw) == ratio


def test_ratio_scale_is_explicit() -> None:
    assert n.ratio(0.995, scale="ratio") == 0.995
    assert n.ratio(99.5, scale="percent") == 0.995
    assert n.ratio("12%", scale="ratio") == 0.12, "an explicit % sign wins over the configured scale"
    assert n.ratio(1.5, scale="ratio") is INVALID, "a ratio above 1 is a vendor bug, not data"
    assert n.ratio("130%") is INVALID
    assert n.ratio("-1%") is INVALID


@pytest.mark.parametrize(("raw", "bits"), [
    ("35.62k", 35620), ("962.76k", 962760), ("1.2M", 1_200_000), ("1157120", 1_157_120),
    ("35.62K", 35620), ("962.76 kbps", 962760), ("2 Mb/s", 2_000_000), (1157120, 1_157_120),
])
def test_bitrate(raw: Any, bits: float) -> None:
    assert n.bitrate_bits_per_second(raw) == bits
    assert n.bitrate_bytes_per_second(raw) == bits / 8


@pytest.mark.parametrize(("raw", "wh"), [
    ("720p", (1280, 720)), ("1080p", (1920, 1080)), ("320x180", (320, 180)), ("1920*1080", (1920, 1080)),
    ("CIF", (352, 288)), ("4K", (3840, 2160)), ("900p", (1600, 900)),
])
def test_resolution(raw: str, wh: tuple[int, int]) -> None:
    assert n.resolution(raw) == wh


def test_sizes_document_binary_megabytes() -> None:
    assert n.size_bytes("16.367M") == pytest.approx(16.367 * 2**20)
    assert n.size_bytes("0.234M") == pytest.approx(0.234 * 2**20)
    assert n.size_bytes("1MB") == 1_000_000
    assert n.size_bytes("1MiB") == 2**20
    assert n.size_bytes("12") == 12


@pytest.mark.parametrize("raw", ABSENT_FORMS)
def test_absent_forms_yield_no_value(raw: Any) -> None:
    for fn in (n.duration_seconds, n.ratio, n.bitrate_bits_per_second, n.size_bytes, n.number,
               n.resolution, n.china_time_to_unix):
        assert fn(raw) is ABSENT, fn.__name__


@pytest.mark.parametrize("raw", ["fast", "5 parsecs", "1.2.3k", "%", "nan", "inf", "1e999k", True, [1], {"a": 1},
                                 "--5ms", "x" * 100])
def test_unreadable_values_are_invalid_not_zero(raw: Any) -> None:
    for fn in (n.duration_seconds, n.ratio, n.bitrate_bits_per_second, n.size_bytes, n.resolution):
        assert fn(raw) is INVALID, (fn.__name__, raw)


def test_china_time() -> None:
    # 2024-05-01 09:30:00.123 in UTC+8 is 01:30:00.123 UTC.
    assert n.china_time_to_unix("2024-05-01 09:30:00.123") == pytest.approx(1714527000.123)
    assert n.china_time_to_unix("2024-05-01 09:30:00") == 1714527000
    assert n.china_time_to_unix("May 1st") is INVALID


def test_epoch_millis() -> None:
    assert n.epoch_millis_to_seconds(1714527000123) == pytest.approx(1714527000.123)
    assert n.epoch_millis_to_seconds(0) is ABSENT


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
vendorish = st.from_regex(r"\A\s?-?[0-9]{0,6}(\.[0-9]{0,4})?\s?(ms|s|%|k|K|M|G|p|x[0-9]{1,4}|\*[0-9]{1,4}|kbps|MB)?\s?\Z")


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, vendorish))
def test_no_input_makes_a_normalizer_raise_or_return_non_finite(raw: Any) -> None:
    for fn in (n.duration_seconds, n.ratio, n.bitrate_bits_per_second, n.bitrate_bytes_per_second, n.size_bytes,
               n.number, n.non_negative, n.china_time_to_unix, n.epoch_millis_to_seconds):
        out = fn(raw)
        assert out in (ABSENT, INVALID) or (isinstance(out, float) and math.isfinite(out)), (fn.__name__, raw, out)
    res = n.resolution(raw)
    assert res in (ABSENT, INVALID) or (isinstance(res, tuple) and all(v > 0 for v in res))


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False, allow_infinity=False))
def test_formatted_values_round_trip(x: Any) -> None:
    assert n.duration_seconds(f"{x}ms") == pytest.approx(float(x) / 1000)
    assert n.bitrate_bits_per_second(f"{x}k") == pytest.approx(float(x) * 1000)
    if x <= 100:
        assert n.ratio(f"{x}%") == pytest.approx(float(x) / 100)


def test_short_decimals_skip_the_rounding_round_trip_with_the_same_result() -> None:
    """The normalizer parses a short decimal scaled by a power of ten directly (normalize._rounded)
    instead of formatting and re-parsing the product; the float must be the same either way."""
    rng = random.Random(3)
    cases = [("ms", 1e-3, n.duration_seconds), ("us", 1e-6, n.duration_seconds),
             ("s", 1.0, n.duration_seconds), ("k", 1e3, n.bitrate_bits_per_second),
             ("M", 1e6, n.bitrate_bits_per_second), ("G", 1e9, n.bitrate_bits_per_second),
             ("", 1.0, n.number)]
    for _ in range(5000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 15)))
        cut = rng.randint(0, len(digits))
        text = digits[:cut] + "." + digits[cut:] if rng.random() < 0.7 and cut else digits
        for unit, factor, fn in cases:
            assert fn(text + unit) == float(f"{float(text) * factor:.12g}"), (text, unit)
        if float(text) <= 100:
            assert n.ratio(text + "%") == float(f"{float(text) / 100:.12g}"), text
