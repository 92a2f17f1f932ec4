"""The persistent state store: atomic writes, missing and corrupt files are never fatal."""

from __future__ import annotations

from pathlib import Path

from helpers import log_events

from monitord.state import StateStore


def test_round_trip_and_missing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load("t", "events") is None
    store.save("t", "events", {"high_water": 5, "seen": ["a", "b"]})
    assert StateStore(tmp_path).load("t", "events") == {"high_water": 5, "seen": ["a", "b"]}
    assert not list(tmp_path.glob("*.tmp")), "no temp files left behind"


def test_corrupt_file_is_reported_moved_aside_and_rebuilt(tmp_path: Path, captured_logs) -> None:
    store = StateStore(tmp_path)
    store.save("t", "events", {"ok": True})
    path = next(tmp_path.glob("t.events.json"))
    path.write_text('{"ok": tr')  # a crash of some other writer, a full disk, a human
    assert store.load("t", "events") is None
    assert store.errors[("t", "corrupt")] == 1
    assert path.with_suffix(".corrupt").exists()
    assert [e["reason"] for e in log_events(captured_logs) if e["event"] == "state_file_problem"] == ["corrupt"]
    store.save("t", "events", {"ok": 2})
    assert store.load("t", "events") == {"ok": 2}


def test_unwritable_directory_keeps_running(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    tmp_path.chmod(0o500)
    try:
        store.save("t", "k", {"x": 1})  # must not raise
    finally:
        tmp_path.chmod(0o700)
    import os

    if os.geteuid() != 0:  # root writes anyway
        assert store.errors[("t", "write_error")] == 1


def test_names_are_made_safe_for_the_filesystem(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("../../etc/passwd", "k", 1)
    assert all(p.parent == tmp_path for p in tmp_path.iterdir())


def test_memory_only_without_a_directory() -> None:
    store = StateStore(None)
    store.save("t", "k", [1, 2])
    assert store.load("t", "k") == [1, 2]
