"""Property tests: every source, fed mutated real vendor answers through its real poll() over
HTTP on 127.0.0.1 (wrong types, deleted keys, huge/negative/non-finite numbers, deep nesting,
garbage), fails only with a PollError and never exposes a non-finite value.

The answers are the simulators' own, recorded during a clean poll; hypothesis picks which calls
to break and how (vendor_bodies.mutated_rules). Examples are few and derandomized, so the suite
stays fast and every run tries the same bodies.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vendor_bodies import Vendor, assert_finite_exposition, mutated_rules, override, recorded

from monitord.sources import REGISTRY

KINDS = tuple(sorted(REGISTRY))  # a new source is covered, or fails here until vendor_bodies knows it


class Answers(dict[str, str]):
    def __repr__(self) -> str:  # printed by hypothesis on failure: the keys are enough
        return f"Answers({sorted(self)})"


@pytest.fixture(scope="module", params=KINDS)
def vendor(request: pytest.FixtureRequest) -> Iterator[tuple[Vendor, dict[str, str]]]:
    v = Vendor.start(request.param)
    try:
        error, text, _ = v.poll()
        assert error is None, f"the clean poll must succeed: {error}"
        assert_finite_exposition(text)
        answers = v.run(recorded(v.url))
        assert answers, "the simulator recorded its answers"
        yield v, Answers(answers)
    finally:
        v.close()


@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_answers_fail_cleanly_and_expose_only_finite_values(
        vendor: tuple[Vendor, dict[str, str]], data: st.DataObject) -> None:
    v, answers = vendor
    rules = mutated_rules(data.draw, answers)
    v.run(override(v.url, rules))
    try:
        error, text, _ = v.poll()  # anything but a PollError propagates and fails the test
    finally:
        v.run(override(v.url, []))
    assert error is None or error.reason != "internal"
    assert_finite_exposition(text)
    assert "Inf" not in text and "NaN" not in text
