"""Which failures are tried again, how often, and how long to wait in between.

The vendor's own advice decides: a source passes a policy that says what its vendor documents
(SparkRTC: do not retry 503, it means the service sheds load). Every wait is full-jitter
exponential backoff under the daemon's time scale, and no wait reaches past the poll deadline:
when the next attempt could not start in time, the last real failure is raised at once instead
of a "timeout" that would hide it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from monitord.errors import RETRYABLE, PollError


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # tries in all, the first included; 1: never retry
    base_delay: float = 0.5  # seconds before the first retry at most (before jitter)
    max_delay: float = 8.0
    reasons: frozenset[str] = RETRYABLE  # PollError reasons worth another try
    # HTTP statuses never tried again whatever their reason (the vendor says so).
    never_statuses: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts counts the first try: at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def retries(self, error: PollError, status: int | None, attempt: int) -> bool:
        """Whether failing try number `attempt` (1-based) with `error` (after an answer with
        `status`, None when none came) is tried again."""
        if attempt >= self.attempts or error.reason not in self.reasons:
            return False
        return status is None or status not in self.never_statuses

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed try number `attempt`: full jitter over an exponential cap."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


NEVER = RetryPolicy(attempts=1)
