"""How fast a target may ask its vendor, as named policies.

- `RateLimiter`: a leaky bucket, `rate` requests per `period`, waited for in arrival order (Zego's
  QPS per app, Polyv's requests per 10 s per source IP).
- `SlidingBudget`: at most `limit` requests in any `window` (SparkRTC's 30 data requests per
  minute per account). Never waited for inside a poll: `admit` raises BudgetSpent, and the
  source's planner decides what gives way. A throttling answer blocks the budget for a while,
  longer each time in a row: our idea of the budget is wrong (another client on the account).
- `BanHold`: after a ban-like answer, no request at all until the hold ends (Polyv bans the
  source IP).

Each is a `Pacing`: `admit()` before every attempt, `observe(error or None)` after it. The shared
ones come from the daemon scope (monitord.vendor.scope), which persists their state. Durations
given here are already under the daemon's time scale (the scope applies it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from monitord.errors import PollError
from monitord.state import StateModel


class Pacing(Protocol):
    async def admit(self) -> None:
        """Return when one request may go; raise when none may in this poll."""
        ...

    def observe(self, error: PollError | None) -> None:
        """The outcome of the request admitted last (None: the vendor answered it)."""
        ...


class BudgetSpent(Exception):
    """No room in a SlidingBudget: nothing was sent. Not a failure of the vendor (the runtime
    never sees it: the source counts the postponed call and moves on)."""


class RateLimiter:
    def __init__(self, rate: float, period: float, *, clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rate = rate
        self.period = period
        self._check()
        self._clock = clock
        self._sleep = sleep
        self._level = 0.0  # requests in the bucket, leaking at rate/period per second
        self._at = clock()
        self._lock = asyncio.Lock()

    def _check(self) -> None:
        if self.rate <= 0 or self.period <= 0:
            raise ValueError("a rate limiter needs a positive rate and period")

    @property
    def settings(self) -> tuple[float, float]:
        return (self.rate, self.period)

    def reconfigure(self, settings: tuple[float, float]) -> None:
        self.rate, self.period = settings
        self._check()

    def _leak(self) -> None:
        now = self._clock()
        self._level = max(0.0, self._level - (now - self._at) * self.rate / self.period)
        self._at = now

    def wait_time(self) -> float:
        """Seconds until one more request fits (0: now)."""
        self._leak()
        over = self._level + 1.0 - self.rate
        return max(0.0, over * self.period / self.rate)

    async def admit(self) -> None:
        async with self._lock:  # first come, first served
            while (wait := self.wait_time()) > 0:
                await self._sleep(wait)
            self._level += 1.0

    def observe(self, error: PollError | None) -> None:
        return None


class BudgetState(StateModel):
    """Send times (unix seconds) of the requests in the budget's window, and until when the
    vendor's throttling keeps it shut."""

    sent: list[float]
    blocked_until: float = 0.0


class SlidingBudget:
    def __init__(self, limit: int, window: float, *, clock: Callable[[], float],
                 backoff: float = 15.0, max_backoff: float = 300.0) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a request budget needs a limit of at least 1 and a positive window")
        self.limit = limit
        self.window = window
        self.backoff = backoff  # first block after a throttling answer
        self.max_backoff = max_backoff
        self._clock = clock
        self.sent: deque[float] = deque()
        self.blocked_until = 0.0
        self.throttle_streak = 0
        self.throttled_answers = 0
        self.on_change: Callable[[SlidingBudget], None] = lambda _: None

    @property
    def settings(self) -> tuple[int, float]:
        return (self.limit, self.window)

    def reconfigure(self, settings: tuple[int, float]) -> None:
        if settings[0] < 1 or settings[1] <= 0:
            raise ValueError("a request budget needs a limit of at least 1 and a positive window")
        self.limit, self.window = settings

    def _prune(self, now: float) -> None:
        while self.sent and self.sent[0] <= now - self.window:
            self.sent.popleft()

    def used(self) -> int:
        self._prune(self._clock())
        return len(self.sent)

    def free(self) -> int:
        now = self._clock()
        if now < self.blocked_until:
            return 0
        self._prune(now)
        return max(0, self.limit - len(self.sent))

    def take(self) -> bool:
        """Spend one request if there is room."""
        if self.free() <= 0:
            return False
        self.sent.append(self._clock())
        self.on_change(self)
        return True

    def next_free_at(self) -> float:
        """When free() turns positive at the earliest (now when it is)."""
        now = self._clock()
        self._prune(now)
        at = now
        if len(self.sent) >= self.limit:
            at = self.sent[len(self.sent) - self.limit] + self.window
        return max(at, self.blocked_until)

    async def wait(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Until there is room (the poll deadline bounds it). For `monitord once`, which must
        send at least one real request, never for a normal poll."""
        while self.free() <= 0:
            await sleep(max(0.0, self.next_free_at() - self._clock()))

    def throttled(self) -> None:
        self.throttle_streak += 1
        self.throttled_answers += 1
        block = min(self.max_backoff, self.backoff * 2 ** (self.throttle_streak - 1))
        self.blocked_until = max(self.blocked_until, self._clock() + block)
        self.on_change(self)

    async def admit(self) -> None:
        if not self.take():
            raise BudgetSpent

    def observe(self, error: PollError | None) -> None:
        if error is None:
            self.throttle_streak = 0
        elif error.reason == "throttled":
            self.throttled()

    def restore(self, saved: BudgetState | None, *, assume_spent: bool) -> None:
        """Continue the window a previous run left (none: a spent window, when `assume_spent`,
        so a restart does not begin with a burst)."""
        now = self._clock()
        if saved is not None:
            self.sent = deque(sorted(t for t in saved.sent if now - self.window < t <= now))
            # A damaged file must not block for longer than the longest back-off.
            blocked = saved.blocked_until
            self.blocked_until = blocked if 0 <= blocked <= now + self.max_backoff else 0.0
        elif assume_spent:
            step = self.window / self.limit
            self.sent = deque(now - self.window + step * (i + 1) for i in range(self.limit))

    def dump(self) -> BudgetState:
        return BudgetState(sent=list(self.sent), blocked_until=self.blocked_until)


class BanState(StateModel):
    """Until when (unix seconds) no request may go after a ban-like answer."""

    until: float


class BanHold:
    def __init__(self, hold: float, *, clock: Callable[[], float], what: str = "polling") -> None:
        if hold <= 0:
            raise ValueError("a ban hold needs a positive duration")
        self.hold_seconds = hold
        self.what = what  # for the error text, e.g. "all Polyv polling of api.polyv.net"
        self._clock = clock
        self.until = 0.0
        self.answers = 0  # ban-like answers seen
        self.on_change: Callable[[BanHold], None] = lambda _: None

    @property
    def settings(self) -> float:
        return self.hold_seconds

    def reconfigure(self, settings: float) -> None:
        self.hold_seconds = settings

    def active(self) -> bool:
        return self._clock() < self.until

    def check(self) -> None:
        now = self._clock()
        if now < self.until:
            until = datetime.fromtimestamp(self.until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise PollError("throttled", f"{self.what} paused until {until} ({self.until - now:.0f}s left) "
                                         "after a ban-like answer")

    def hold(self) -> None:
        self.answers += 1
        self.until = max(self.until, self._clock() + self.hold_seconds)
        self.on_change(self)

    async def admit(self) -> None:
        self.check()

    def observe(self, error: PollError | None) -> None:
        if error is not None and error.reason == "throttled":
            self.hold()

    def restore(self, saved: BanState | None) -> None:
        # A pause longer than one hold from now is not one we wrote (a damaged file).
        if saved is not None and 0 <= saved.until <= self._clock() + self.hold_seconds:
            self.until = max(self.until, saved.until)

    def dump(self) -> BanState:
        return BanState(until=self.until)
