"""The account's request budget and the IAM token cache: shared by every target of one account.

Huawei Cloud "SparkRTC API Reference > 使用前必读 > 约束与限制" (表1-2 API流控说明) lists every
data-statistics API under one limit of 30 requests per minute. The budget is a sliding 60-second
log of request times, persisted in the state directory, so a restart continues the same minute
instead of starting with a burst. With no log on disk it assumes the last minute was fully
spent, spread evenly, and ramps up.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter, deque
from typing import Any

from monitord.http import Limiters
from monitord.state import StateModel

# The budget's window: the vendor counts requests per minute.
BUDGET_WINDOW = 60.0


class BudgetState(StateModel):
    """Send times (unix seconds) of the account's requests in the last minute."""

    sent: list[float]
    blocked_until: float = 0.0



class Account:
    """The per-account sliding-window request budget, shared by the targets of one account."""

    def __init__(self, key: str, per_minute: int, window: float = BUDGET_WINDOW) -> None:
        self.key = key
        self.per_minute = per_minute
        self.window = window  # the vendor's minute, under the daemon's time scale
        self.sent: deque[float] = deque()
        self.blocked_until = 0.0
        self.throttle_streak = 0
        # Counted: during a reload a target's new runtime joins before its old one leaves.
        self.members: Counter[str] = Counter()
        self.loaded = False

    def _prune(self, now: float) -> None:
        while self.sent and self.sent[0] <= now - self.window:
            self.sent.popleft()

    def used(self, now: float) -> int:
        self._prune(now)
        return len(self.sent)

    def free(self, now: float) -> int:
        if now < self.blocked_until:
            return 0
        return max(0, self.per_minute - self.used(now))

    def take(self, now: float) -> bool:
        if self.free(now) <= 0:
            return False
        self.sent.append(now)
        return True

    def throttled(self, now: float) -> None:
        """The gateway said slow down: our idea of the budget is wrong (another client on the
        account?), so stop for a while, longer each time in a row."""
        self.throttle_streak += 1
        scale = BUDGET_WINDOW / self.window
        self.blocked_until = now + min(300.0, 15.0 * 2 ** (self.throttle_streak - 1)) / scale

    def restore(self, saved: BudgetState | None, now: float, assume_spent: bool) -> None:
        self.loaded = True
        if saved is not None:
            self.sent = deque(sorted(t for t in saved.sent if now - self.window < t <= now))
            # At most the longest back-off from now: a damaged file must not block for good.
            blocked = saved.blocked_until
            self.blocked_until = blocked if 0 <= blocked <= now + 300.0 else 0.0
        elif assume_spent:
            step = self.window / self.per_minute
            self.sent = deque(now - self.window + step * (i + 1) for i in range(self.per_minute))

    def dump(self) -> dict[str, Any]:
        return {"sent": list(self.sent), "blocked_until": self.blocked_until}


class TokenCache:
    """An IAM token shared by the targets of one user and project."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.expires = 0.0
        self.lock = asyncio.Lock()


# One dict of accounts (and token caches) per daemon: the daemon's Limiters object is per daemon, so two daemons in
# one process (tests, reloads with a changed global section) do not share a budget by accident.
_ACCOUNTS: weakref.WeakKeyDictionary[Limiters, dict[str, Account]] = weakref.WeakKeyDictionary()
_TOKENS: weakref.WeakKeyDictionary[Limiters, dict[str, TokenCache]] = weakref.WeakKeyDictionary()


def account_for(limiters: Limiters, key: str, per_minute: int, window: float = BUDGET_WINDOW) -> Account:
    accounts = _ACCOUNTS.setdefault(limiters, {})
    account = accounts.get(key)
    if account is None:
        account = accounts[key] = Account(key, per_minute, window)
    return account



def token_cache_for(limiters: Limiters, key: str) -> TokenCache:
    return _TOKENS.setdefault(limiters, {}).setdefault(key, TokenCache())
