"""The persistent state store: typed reads, atomic writes, missing and unreadable files are never fatal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import log_events

from monitord.state import StateModel, StateStore


class Marks(StateModel):
    high_water: float
    seen: list[str]


def test_round_trip_and_missing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load("t", "events", Marks) is None
    store.save("t", "events", Marks, {"high_water": 5, "seen": ["a", "b"]})
    assert StateStore(tmp_path).load("t", "events", Marks) == Marks(high_water=5, seen=["a", "b"])
    assert not list(tmp_path.glob("*.tmp")), "no temp files left behind"


@pytest.mark.parametrize("content, reason", [
    (b'{"high_water": 1, "seen": ["\xff"]}', "not_utf8"),
    (b'{"high_water": tr', "bad_json"),
    (b'{"high_water": "5", "seen": []}', "wrong_shape"),  # strict: a string is not a number
    (b'{"high_water": Infinity, "seen": []}', "wrong_shape"),
    (b'{"seen": []}', "wrong_shape"),
])
def test_unreadable_file_is_reported_moved_aside_and_rebuilt(tmp_path: Path, captured_logs, content: bytes,
                                                             reason: str) -> None:
    store = StateStore(tmp_path)
    path = tmp_path / "t.events.json"
    path.write_bytes(content)  # a crash of some other writer, a full disk, a human
    assert store.load("t", "events", Marks) is None
    assert store.errors[("t", reason)] == 1
    assert path.with_suffix(".corrupt").read_bytes() == content and not path.exists()
    events = [e for e in log_events(captured_logs) if e["event"] == "state_file_problem"]
    assert [e["reason"] for e in events] == [reason]
    assert events[0]["moved_to"] == str(path.with_suffix(".corrupt"))
    store.save("t", "events", Marks, {"high_water": 2, "seen": []})
    assert store.load("t", "events", Marks) == Marks(high_water=2, seen=[])


def test_counted_under_the_target_that_read_it(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    (tmp_path / "_shared.k.json").write_text("nope")
    assert store.load("_shared", "k", Marks, target="reader") is None
    assert store.errors == {("reader", "bad_json"): 1}


def test_a_value_that_could_not_be_read_back_is_not_written(tmp_path: Path, captured_logs) -> None:
    store = StateStore(tmp_path)
    store.save("t", "events", Marks, {"high_water": 1, "seen": []})
    store.save("t", "events", Marks, {"high_water": float("inf"), "seen": []})
    assert store.errors[("t", "write_error")] == 1
    assert store.load("t", "events", Marks) == Marks(high_water=1, seen=[]), "the last good state stays"


def test_unwritable_directory_keeps_running(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    tmp_path.chmod(0o500)
    try:
        store.save("t", "k", Marks, {"high_water": 1, "seen": []})  # must not raise
    finally:
        tmp_path.chmod(0o700)
    if os.geteuid() != 0:  # root writes anyway
        assert store.errors[("t", "write_error")] == 1


def test_names_are_made_safe_for_the_filesystem(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("../../etc/passwd", "k", Marks, {"high_water": 1, "seen": []})
    assert all(p.parent == tmp_path for p in tmp_path.iterdir())


def test_memory_only_without_a_directory() -> None:
    store = StateStore(None)
    store.save("t", "k", Marks, {"high_water": 1, "seen": ["x"]})
    assert store.load("t", "k", Marks) == Marks(high_water=1, seen=["x"])
