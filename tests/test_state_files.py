"""Every state file of every source, unreadable in each way (bytes that are not UTF-8, text that
is not JSON, JSON of the wrong shape, non-finite numbers): the target polls on from a fresh
state, the file is moved aside, the problem is counted by reason and logged once. Files read
when a target starts (events, callbacks, tasks, bans) and during its first poll (budgets, media
servers) alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_avd
import test_huawei_rtc
import test_polyv
import test_zego
from helpers import log_events, parse_exposition, value

from monitord.simulators import avd as avd_sim
from monitord.simulators import huawei_rtc as huawei_sim
from monitord.simulators import polyv as polyv_sim
from monitord.simulators import zego as zego_sim
from monitord.state import REASONS


class Case:
    def __init__(self, sim: Any, sim_kwargs: dict[str, Any], target: Callable[[str], dict[str, Any]], pattern: str,
                 seed: str | None = None) -> None:
        self.sim, self.sim_kwargs, self.target, self.pattern, self.seed = sim, sim_kwargs, target, pattern, seed


CASES = {
    "huawei-events": Case(huawei_sim, {}, test_huawei_rtc.target, "rtc.events-*.json"),
    "huawei-budget": Case(huawei_sim, {}, test_huawei_rtc.target, "rtc.budget-*.json"),
    "huawei-callbacks": Case(huawei_sim, {}, lambda url: test_huawei_rtc.target(url, callback_secret="cb-Secret-123"),
                             "rtc.record-callbacks.json", '{"events": {}, "duration": {}, "rejected": {}}'),
    # Written after a ban-like answer only: seeded with a ban long over.
    "polyv-ban": Case(polyv_sim, {"scenario": "fixed"}, test_polyv.target, "polyv@127.0.0.1.ban.json",
                      '{"until": 1}'),
    # The file of versions before the vendor layer, read once when the host has no ban of its own.
    "polyv-legacy-ban": Case(polyv_sim, {"scenario": "fixed"}, test_polyv.target, "_polyv.ban.json", '{"until": 1}'),
    "avd-media-servers": Case(avd_sim, {"scenario": "fixed"}, test_avd.target, "avd.media_servers.json"),
    "zego-tasks": Case(zego_sim, {"scenario": "fixed"},
                       lambda url: test_zego.target(url, task_ids=["Rec2SingleStream"]), "rec.tasks.json"),
}

# One body per way of being unreadable; each fails every state model (wrong shape: each model
# finds one of its keys of the wrong type; non-finite: each finds a NaN or an infinity).
BODIES: dict[str, tuple[bytes, str]] = {
    "non-utf8": (b'{"until": 1, "note": "\xff\xfe\xfd"}', "not_utf8"),
    "bad-json": (b'{"sent": [1, 2', "bad_json"),
    "deep-json": (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
    "wrong-shape": (b'{"sent": "x", "hwm": "x", "events": [], "until": "soon", "servers": [], "tasks": []}',
                    "wrong_shape"),
    "top-level-list": (b'["a", "list"]', "wrong_shape"),
    "non-finite": (b'{"sent": [Infinity], "hwm": NaN, "seen": {}, "counts": {}, "descs": {}, "events": {}, '
                   b'"duration": {"a": Infinity}, "rejected": {}, "until": Infinity, "servers": {"s": Infinity}, '
                   b'"tasks": {"T": {"origin": "api", "registered_at": Infinity}}}', "wrong_shape"),
}


def state_errors(daemon: Any, name: str) -> dict[str, float | None]:
    s = parse_exposition(daemon.store.render().decode())
    return {reason: value(s, "monitord_state_errors_total", target=name, reason=reason) for reason in REASONS}


@pytest.mark.parametrize("body", sorted(BODIES))
@pytest.mark.parametrize("case", sorted(CASES))
async def test_unreadable_state_file_is_moved_aside_counted_and_logged_once(
        case: str, body: str, start_sim, make_daemon, clock, tmp_path: Path, captured_logs) -> None:
    c = CASES[case]
    url, _ = await start_sim(c.sim, clock=clock, **c.sim_kwargs)
    state_dir = tmp_path / "state"
    t = c.target(url)
    name = t["name"]

    first = make_daemon([t], clock=clock)
    assert (await first.poll_all_once())[name].ok
    await first.close()
    if c.seed is not None:
        (state_dir / c.pattern).write_text(c.seed)
    files = sorted(state_dir.glob(c.pattern))
    assert len(files) == 1, sorted(p.name for p in state_dir.iterdir())
    path = files[0]

    content, reason = BODIES[body]
    path.write_bytes(content)
    clock.advance(60)
    daemon = make_daemon([t], clock=clock)
    outcome = (await daemon.poll_all_once())[name]
    assert outcome.ok, outcome
    assert path.with_suffix(".corrupt").read_bytes() == content, "kept for inspection"
    expected = {r: 0.0 for r in REASONS} | {reason: 1.0}
    assert state_errors(daemon, name) == expected
    problems = [e for e in log_events(captured_logs) if e["event"] == "state_file_problem"]
    assert [(e["reason"], e["target"]) for e in problems] == [(reason, name)]

    clock.advance(60)
    assert (await daemon.poll_all_once())[name].ok
    assert state_errors(daemon, name) == expected, "one problem, counted once"
    assert len([e for e in log_events(captured_logs) if e["event"] == "state_file_problem"]) == 1


async def test_valid_state_files_raise_no_error(start_sim, make_daemon, clock) -> None:
    for case in CASES.values():
        url, _ = await start_sim(case.sim, clock=clock, **case.sim_kwargs)
        t = case.target(url)
        first = make_daemon([t], clock=clock)
        assert (await first.poll_all_once())[t["name"]].ok
        await first.close()
        again = make_daemon([t], clock=clock)
        assert (await again.poll_all_once())[t["name"]].ok
        assert state_errors(again, t["name"]) == {r: 0.0 for r in REASONS}
