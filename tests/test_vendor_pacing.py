"""Pacing policies and fan-out of the vendor layer, on fake clocks (ordering, never wall time)."""

from __future__ import annotations

import asyncio

import pytest

from monitord.errors import PollError
from monitord.vendor.fanout import fan_out
from monitord.vendor.pacing import BanHold, BanState, BudgetSpent, BudgetState, RateLimiter, SlidingBudget


class FakeTime:
    """A clock that only moves when a waiter sleeps: every sleep is recorded and then passes."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_rate_limiter_admits_a_burst_of_its_rate_then_one_per_interval_in_arrival_order() -> None:
    t = FakeTime()
    limiter = RateLimiter(2, 10.0, clock=t, sleep=t.sleep)
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.admit()
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert [round(s, 6) for s in t.sleeps] == [5.0, 5.0, 5.0]  # 2 at once, then one per 5 s
    assert t.now == pytest.approx(115.0)
    t.now += 100.0  # an idle bucket is empty again
    await limiter.admit()
    assert len(t.sleeps) == 3


def test_rate_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 1.0, clock=FakeTime())
    limiter = RateLimiter(1, 1.0, clock=FakeTime())
    with pytest.raises(ValueError):
        limiter.reconfigure((1, 0.0))
    limiter.reconfigure((5, 2.0))
    assert limiter.settings == (5, 2.0)


async def test_sliding_budget_counts_requests_in_the_window() -> None:
    t = FakeTime(1000.0)
    budget = SlidingBudget(3, 60.0, clock=t)
    changes: list[int] = []
    budget.on_change = lambda b: changes.append(b.used())
    taken = []
    for _ in range(4):
        taken.append(budget.take())
        t.now += 1.0
    assert taken == [True, True, True, False]
    assert changes == [1, 2, 3] and budget.free() == 0 and budget.next_free_at() == 1060.0
    with pytest.raises(BudgetSpent):
        await budget.admit()
    t.now = 1060.0  # the first send leaves the window exactly one window later
    assert budget.free() == 1 and budget.used() == 2
    await budget.wait(t.sleep)
    assert t.sleeps == []


async def test_a_throttling_answer_blocks_the_budget_longer_each_time_in_a_row() -> None:
    t = FakeTime(0.0)
    budget = SlidingBudget(30, 60.0, clock=t, backoff=15.0, max_backoff=40.0)
    budget.observe(PollError("throttled", "429"))
    assert budget.blocked_until == 15.0 and budget.free() == 0 and budget.next_free_at() == 15.0
    budget.observe(PollError("throttled", "429"))
    assert budget.blocked_until == 30.0  # 15 * 2 from now (0)
    budget.observe(PollError("throttled", "429"))
    assert budget.blocked_until == 40.0  # capped
    budget.observe(PollError("http_5xx", "x"))
    assert budget.throttle_streak == 3
    budget.observe(None)
    assert budget.throttle_streak == 0 and budget.throttled_answers == 3
    await budget.wait(t.sleep)
    assert t.now == 40.0 and budget.take()


def test_sliding_budget_restores_a_saved_window_and_assumes_a_spent_one_without() -> None:
    t = FakeTime(1000.0)
    budget = SlidingBudget(4, 60.0, clock=t)
    budget.restore(BudgetState(sent=[930.0, 950.0, 990.0, 2000.0], blocked_until=5000.0), assume_spent=True)
    assert list(budget.sent) == [950.0, 990.0]  # out of the window or in the future: dropped
    assert budget.blocked_until == 0.0  # beyond the longest back-off: a damaged file
    assert budget.dump() == BudgetState(sent=[950.0, 990.0], blocked_until=0.0)
    fresh = SlidingBudget(4, 60.0, clock=t)
    fresh.restore(None, assume_spent=True)
    assert fresh.used() == 4 and list(fresh.sent) == [955.0, 970.0, 985.0, 1000.0]
    t.now = 955.0 + 60.0
    assert fresh.free() == 1  # ramps up one step at a time
    untouched = SlidingBudget(4, 60.0, clock=t)
    untouched.restore(None, assume_spent=False)
    assert untouched.free() == 4


def test_ban_hold() -> None:
    t = FakeTime(0.0)
    ban = BanHold(600.0, clock=t, what="Polyv polling")
    saved: list[float] = []
    ban.on_change = lambda b: saved.append(b.until)
    ban.check()
    ban.observe(PollError("vendor_error", "x"))
    assert not ban.active()
    ban.observe(PollError("throttled", "IP blocked"))
    assert ban.active() and saved == [600.0] and ban.answers == 1
    with pytest.raises(PollError) as err:
        ban.check()
    assert err.value.reason == "throttled" and "Polyv polling paused" in err.value.detail
    t.now = 600.0
    ban.check()
    other = BanHold(600.0, clock=t)
    other.restore(BanState(until=99999.0))  # more than one hold ahead: not ours
    assert not other.active()
    other.restore(BanState(until=700.0))
    assert other.active() and other.dump() == BanState(until=700.0)
    with pytest.raises(ValueError):
        BanHold(0, clock=t)


async def test_fan_out_bounds_concurrency_and_returns_per_item_errors() -> None:
    running = peak = 0

    async def call(item: str) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        if item == "b":
            raise PollError("not_found", "no channel b")
        return item.upper()

    result = await fan_out(["a", "b", "c", "d"], call, concurrency=2)
    assert peak == 2
    assert list(result.results) == ["a", "c", "d"] and result.results["a"] == "A"
    assert list(result.errors) == ["b"] and result.errors["b"].reason == "not_found"
    assert (await fan_out([], call, concurrency=1)).results == {}


async def test_fan_out_ends_the_poll_on_a_fatal_reason_and_cancels_the_rest() -> None:
    cancelled: list[str] = []
    gate = asyncio.Event()

    async def call(item: str) -> str:
        if item == "bad":
            raise PollError("auth", "signature rejected")
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.append(item)
            raise
        return item

    with pytest.raises(PollError) as err:
        await fan_out(["x", "bad", "y"], call, concurrency=3)
    assert err.value.reason == "auth" and sorted(cancelled) == ["x", "y"]


async def test_fan_out_fails_the_poll_when_every_item_failed() -> None:
    async def call(item: str) -> str:
        raise PollError("vendor_error" if item == "a" else "not_found", f"{item} broke", vendor_code=7)

    with pytest.raises(PollError) as err:
        await fan_out(["a", "b"], call, concurrency=1, noun="channel")
    assert err.value.reason == "vendor_error" and err.value.vendor_code == 7
    assert "every channel failed" in err.value.detail and "a broke" in err.value.detail


async def test_fan_out_reports_a_bug_as_the_bug() -> None:
    async def call(item: str) -> str:
        if item == "a":
            raise PollError("auth", "x")
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await fan_out(["a", "b"], call, concurrency=2)
    with pytest.raises(ValueError):
        await fan_out(["a"], call, concurrency=0)


async def test_rate_limiter_waits_fractions_of_a_second_too() -> None:
    t = FakeTime()
    limiter = RateLimiter(2, 1.0, clock=t, sleep=t.sleep)
    for _ in range(3):
        await limiter.admit()
    assert t.sleeps == [pytest.approx(0.5)]


def test_budget_and_ban_take_their_smallest_sensible_settings() -> None:
    t = FakeTime(0.0)
    assert SlidingBudget(1, 0.5, clock=t).take()
    for limit, window in ((0, 60.0), (1, 0.0), (1, -1.0)):
        with pytest.raises(ValueError):
            SlidingBudget(limit, window, clock=t)
    assert BanHold(0.5, clock=t).hold_seconds == 0.5


async def test_the_default_throttle_back_off_is_15_seconds_doubling_up_to_5_minutes() -> None:
    t = FakeTime(500.0)
    budget = SlidingBudget(30, 60.0, clock=t)
    blocks = []
    for _ in range(7):
        budget.throttled()
        blocks.append(budget.blocked_until - t.now)
    assert blocks == [15.0, 30.0, 60.0, 120.0, 240.0, 300.0, 300.0]
    assert budget.dump().blocked_until == 800.0
    await budget.wait(t.sleep)
    assert t.sleeps == [300.0] and t.now == 800.0


def test_restore_keeps_the_window_edges_and_the_longest_back_off() -> None:
    t = FakeTime(1000.0)
    budget = SlidingBudget(5, 60.0, clock=t, max_backoff=300.0)
    budget.restore(BudgetState(sent=[940.0, 940.5, 1000.0], blocked_until=1300.0), assume_spent=False)
    assert list(budget.sent) == [940.5, 1000.0] and budget.blocked_until == 1300.0
    budget.restore(BudgetState(sent=[], blocked_until=0.0), assume_spent=True)
    assert budget.blocked_until == 0.0 and budget.used() == 0  # a saved empty window is not "no file"
    ban = BanHold(600.0, clock=t)
    ban.restore(BanState(until=1600.0))
    assert ban.until == 1600.0


def test_a_ban_says_until_when_and_how_long_is_left() -> None:
    t = FakeTime(1_790_000_000.0)
    ban = BanHold(90.0, clock=t, what="Polyv polling of api.polyv.net")
    ban.hold()
    ban.hold()
    assert ban.answers == 2
    t.now += 30.0
    with pytest.raises(PollError) as err:
        ban.check()
    assert err.value.detail == ("Polyv polling of api.polyv.net paused until 2026-09-21T14:14:50Z (60s left) "
                                "after a ban-like answer")


async def test_fan_out_names_items_by_default() -> None:
    async def call(item: str) -> str:
        raise PollError("not_found", "gone")

    with pytest.raises(PollError, match=r"every item failed; first \(x\): gone"):
        await fan_out(["x"], call, concurrency=1)


async def test_waiting_for_a_budget_waits_fractions_of_a_second_too() -> None:
    t = FakeTime(10.0)
    budget = SlidingBudget(1, 0.5, clock=t)
    assert budget.take()
    await budget.wait(t.sleep)
    assert t.sleeps == [0.5] and budget.take()


def test_budget_and_ban_take_new_settings() -> None:
    t = FakeTime(0.0)
    budget = SlidingBudget(2, 60.0, clock=t)
    budget.reconfigure((3, 30.0))
    assert budget.settings == (3, 30.0) and [budget.take() for _ in range(4)] == [True, True, True, False]
    for bad in ((0, 30.0), (1, 0.0)):
        with pytest.raises(ValueError):
            budget.reconfigure(bad)
    ban = BanHold(60.0, clock=t)
    ban.reconfigure(120.0)
    ban.hold()
    assert ban.settings == 120.0 and ban.until == 120.0


def test_a_budget_takes_a_limit_of_one_and_a_short_window() -> None:
    budget = SlidingBudget(5, 60.0, clock=FakeTime())
    budget.reconfigure((1, 0.5))
    assert budget.settings == (1, 0.5)
