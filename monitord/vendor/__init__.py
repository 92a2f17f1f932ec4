"""What every vendor client does, once: the layer under all sources.

- client.py   `VendorClient`: a target's requests, with its TLS, counted; `Request`.
- caller.py   `Caller.call(request, parse)`: pacing, auth, send, parse, renew once, retry.
- auth.py     `Signer`, `TokenAuth` (+ shared `TokenCache`), `LoginSession`.
- retry.py    `RetryPolicy` (reasons, statuses never retried, attempts, jittered backoff).
- deadline.py the poll deadline the runtime sets, which no retry waits past.
- pacing.py   `RateLimiter`, `SlidingBudget`, `BanHold`.
- fanout.py   `fan_out(items, call, concurrency=)`: one partial-failure rule.
- scope.py    `Scope`/`SharedScope`: daemon-scoped shared objects with persisted state.
- persist.py  `StateFile`: a typed state file bound to its owner and key.

A source reaches all of it through its base class: `self.client`, `self.caller(...)`,
`self.shared`, `self.state_file(...)` (monitord.sources.base; README "Adding a source").
"""

from monitord.vendor.auth import LoginSession, NoAuth, Signer, Token, TokenAuth, TokenCache
from monitord.vendor.caller import Caller, raise_for_status
from monitord.vendor.client import Request, VendorClient
from monitord.vendor.fanout import FATAL, ITEM_REASONS, FanOut, fan_out
from monitord.vendor.pacing import BanHold, BudgetSpent, RateLimiter, SlidingBudget
from monitord.vendor.persist import StateFile
from monitord.vendor.retry import NEVER, RetryPolicy
from monitord.vendor.scope import Scope, SharedConflict, SharedScope

__all__ = [
    "FATAL", "ITEM_REASONS", "NEVER", "BanHold", "BudgetSpent", "Caller", "FanOut", "LoginSession", "NoAuth",
    "RateLimiter", "Request", "RetryPolicy", "Scope", "SharedConflict", "SharedScope", "Signer", "SlidingBudget",
    "StateFile", "Token", "TokenAuth", "TokenCache", "VendorClient", "fan_out", "raise_for_status",
]
