"""Edges of the normalizers that a mutation run showed untested: signs, bounds, and inputs that
must come back INVALID rather than raise or turn into a plausible number."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord import normalize as n
from monitord.normalize import ABSENT, INVALID


@pytest.mark.parametrize("raw", ["-5ms", "-0.5s", "-1", -7, -0.001])
def test_a_negative_duration_is_invalid(raw: Any) -> None:
    assert n.duration_seconds(raw) is INVALID


def test_an_unknown_default_unit_is_invalid_not_an_error() -> None:
    assert n.duration_seconds("5", default_unit="fortnights") is INVALID
    assert n.duration_seconds("5ms", default_unit="fortnights") == 0.005, "an explicit unit needs no default"


@pytest.mark.parametrize("raw", ["-5k", "-1", -1157120])
def test_a_negative_bitrate_is_invalid(raw: Any) -> None:
    assert n.bitrate_bits_per_second(raw) is INVALID
    assert n.bitrate_bytes_per_second(raw) is INVALID


@pytest.mark.parametrize("raw", ["0x0", "0*0", " 0 x 0 "])
def test_a_zero_resolution_is_absent_not_invalid(raw: str) -> None:
    # Endpoints write 0x0 for a stream that is set up but carries no picture: no value, no error.
    assert n.resolution(raw) is ABSENT


@pytest.mark.parametrize("raw", ["0x720", "1280x0", "0p"])
def test_a_half_zero_resolution_is_invalid(raw: str) -> None:
    assert n.resolution(raw) is INVALID


def test_string_length_limits_are_exact() -> None:
    # Vendor values are short; a long string is garbage, however it ends. The limit is 64
    # characters for numbers and 40 for timestamps, whitespace included.
    assert n.duration_seconds("5ms".rjust(64)) == 0.005
    assert n.duration_seconds("5ms".rjust(65)) is INVALID
    assert n.china_time_to_unix("2024-05-01 09:30:00".ljust(40)) == 1714527000
    assert n.china_time_to_unix("2024-05-01 09:30:00".ljust(41)) is INVALID


@pytest.mark.parametrize("fn", [n.duration_seconds, n.bitrate_bits_per_second, n.size_bytes, n.ratio, n.number])
def test_integers_beyond_float_range_are_invalid_not_an_error(fn: Any) -> None:
    # float(10**400) raises OverflowError: an integer is read through its digits, never float().
    assert fn(10**400) is INVALID
    assert fn(10**70) is INVALID


def test_epoch_millis_sign_and_smallest_values() -> None:
    assert n.epoch_millis_to_seconds(1) == 0.001
    assert n.epoch_millis_to_seconds(0.5) == 0.0005
    assert n.epoch_millis_to_seconds(-1000) is INVALID
    assert n.epoch_millis_to_seconds("-1") is INVALID


def test_non_negative_passes_counts_and_refuses_negatives() -> None:
    assert n.non_negative("5") == 5.0
    assert n.non_negative(0) == 0.0
    assert n.non_negative("0.5") == 0.5
    assert n.non_negative(-1) is INVALID
    assert n.non_negative("-0.5") is INVALID
    assert n.non_negative("--") is ABSENT
    assert n.non_negative("many") is INVALID


def test_integers_are_exact_up_to_64_bits() -> None:
    assert n.number(2**63 - 1) == float(2**63 - 1)
    assert n.number(-(2**63) + 1) == float(-(2**63) + 1)
    assert n.number(2**63) is INVALID
    assert n.number(-(2**63)) is INVALID


def test_resolution_bounds() -> None:
    assert n.resolution("1x1") == (1.0, 1.0)
    assert n.resolution("1280x720".rjust(32)) == (1280.0, 720.0)
    assert n.resolution("1280x720".rjust(33)) is INVALID


def test_size_edges() -> None:
    assert n.size_bytes("0") == 0.0
    assert n.size_bytes("0.5") == 0.5
    assert n.size_bytes("-5") is INVALID
    assert n.size_bytes("-5M") is INVALID
    assert n.size_bytes("5", bare_unit="parsec") is INVALID
    assert n.size_bytes("5", bare_unit="k") == 5 * 1024


# The fast paths (plain decimals followed by a unit, WxH resolutions, digit strings) must give
# exactly what the patterns give, for every string, near-misses included.
_fast_chars = st.sampled_from([*"0123456789", ".", ".", "+", "-", "e", "E", " ", "%", "k", "K", "m", "M", "g", "G",
                               "s", "S", "u", "µ", "b", "i", "t", "/", "p", "x", "X", "*", "c", "n", "h", "٣"])
_fast_values = st.one_of(
    st.text(_fast_chars, max_size=16),
    st.builds(lambda d, f, u: d + f + u, st.text(st.sampled_from("0123456789"), min_size=1, max_size=13),
              st.sampled_from(["", ".", ".5", ".25", ".000"]),
              st.sampled_from(["", "%", "ms", "MS", "s", "sec", "secs", "us", "µs", "m", "h", "k", "K", "M", "g",
                               "kbps", "Mbit/s", "b/s", "bits/s", "bit", "bps", "x", "e3", " ms", "ms "])),
    st.builds(lambda w, sep, h: f"{w}{sep}{h}", st.integers(0, 200_000), st.sampled_from(["x", "X", "*", " x ", "\u00d7"]),
              st.integers(0, 200_000)),
)


@settings(max_examples=3000, deadline=None)
@given(_fast_values)
def test_fast_paths_give_what_the_patterns_give(raw: str) -> None:
    assert repr(n.duration_seconds(raw)) == repr(n._duration_seconds(raw, "ms"))
    assert repr(n.duration_seconds(raw, "s")) == repr(n._duration_seconds(raw, "s"))
    assert repr(n.ratio(raw)) == repr(n._ratio(raw, "percent"))
    assert repr(n.ratio(raw, "ratio")) == repr(n._ratio(raw, "ratio"))
    assert repr(n.bitrate_bits_per_second(raw)) == repr(n._bitrate_bits_per_second(raw))
    assert repr(n.number(raw)) == repr(n._number(raw))
    resolution = n.resolution(raw)
    if resolution not in (n.ABSENT,) and raw.strip().lower() not in n._NAMED_RESOLUTION_PIXELS and len(raw) <= 32:
        assert resolution == n._resolution(raw)
