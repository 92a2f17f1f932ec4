"""Property tests of the AVD source's parsing: recording lists, envelopes and msg scrubbing."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord import normalize as norm
from monitord.config import HTTPClientConfig
from monitord.errors import PollError
from monitord.http import HttpClient
from monitord.sources.avd import AvdConfig, AvdSource, _recording_values
from monitord.sources.base import SourceContext

MIB = 1024 * 1024
NOW = 1_790_000_000.0

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
megabytes = st.integers(min_value=0, max_value=10_000_000).map(lambda n: n / 1000)


def make_source(secret: str = "S3cret-Key-0000", access: str = "AK-0000") -> AvdSource:
    config = AvdConfig.model_validate({"name": "t", "source": "avd", "url": "http://127.0.0.1:1",
                                       "access_key": access, "secret_key": secret})
    return AvdSource(config, SourceContext(http=HttpClient(HTTPClientConfig(), 1024)))


@given(records=json_values)
@settings(max_examples=300)
def test_recording_values_never_crash(records: Any) -> None:
    try:
        values = _recording_values(records, NOW)
    except PollError as exc:
        assert exc.reason == "bad_response"
        return
    for v in values.values():
        assert isinstance(v, norm.Missing) or 0 <= v < float("inf")


@given(sizes=st.lists(st.lists(megabytes, min_size=1, max_size=4), max_size=5))
def test_storage_is_the_sum_of_every_file_in_binary_megabytes(sizes: list[list[float]]) -> None:
    records = [{"file_size": f"{files[0]:.3f}M", "start_time": str(1_600_000_000 + i),
                "transcode_files": [{"file_size": f"{s:.3f}M", "duration": f"{s:.3f}s"} for s in files[1:]]}
               for i, files in enumerate(sizes)]
    values = _recording_values(records, NOW)
    assert values["recordings"] == len(sizes)
    assert values["files"] == sum(len(f) - 1 for f in sizes)
    assert values["storage"] == pytest.approx(sum(map(sum, sizes)) * MIB, rel=1e-9, abs=1e-6)
    if sizes:
        assert values["last_size"] == pytest.approx(sizes[-1][0] * MIB, rel=1e-9, abs=1e-6)


def test_transcode_files_of_the_wrong_type_are_no_files() -> None:
    for odd in (5, "3", {"duration": "1s"}, True):
        values = _recording_values([{"file_size": "1M", "transcode_files": odd}], NOW)
        assert values["files"] == 0.0 and "last_duration" not in values


def test_sizes_summing_beyond_float_range_make_storage_invalid() -> None:
    values = _recording_values([{"file_size": 1e308}, {"file_size": 1e308}], NOW)
    assert values["storage"] is norm.INVALID


def test_one_unreadable_size_makes_storage_invalid_not_smaller() -> None:
    values = _recording_values([{"file_size": "20.547M", "transcode_files": [{"file_size": "a lot"}]}], NOW)
    assert values["storage"] is norm.INVALID
    assert values["last_size"] == pytest.approx(20.547 * MIB)


@given(code=st.integers(min_value=-10**6, max_value=10**6), key=st.sampled_from(["ret", "code"]))
def test_envelope_reads_both_conventions(code: int, key: str) -> None:
    ok, got, _ = make_source()._envelope({key: code, "msg": "m"}, "x")
    assert got == code
    assert ok == (code == 0 or (key == "code" and code == 200))


@given(value=json_values.filter(lambda v: not isinstance(v, int | float) or isinstance(v, bool)))
def test_envelope_with_a_non_numeric_code_is_bad_response(value: Any) -> None:
    if isinstance(value, str) and norm.number(value) is not norm.INVALID and norm.number(value) is not norm.ABSENT:
        return  # "0", " 40003 " are numbers in a string: read as such
    with pytest.raises(PollError) as exc:
        make_source()._envelope({"ret": value}, "x")
    assert exc.value.reason == "bad_response"


secrets_ = st.text(alphabet=string.ascii_uppercase + string.digits + "+/=", min_size=8, max_size=40)


@given(secret=secrets_, access=secrets_, prefix=st.text(max_size=300), suffix=st.text(max_size=300))
def test_scrubbed_msg_never_contains_the_secret_or_access_key(secret: str, access: str, prefix: str,
                                                              suffix: str) -> None:
    source = make_source(secret=secret, access=access)
    out = source._scrub(f"{prefix}{secret}{suffix}{access}")
    assert secret not in out and access not in out
    assert len(out) <= 200
