"""What a poll may spend: the account's budget (shared) and this target's share of it.

Huawei Cloud "SparkRTC API Reference > 使用前必读 > 约束与限制" (表1-2 API流控说明) lists every
data-statistics API under one limit of 30 requests per minute. That budget is the account's: a
`SlidingBudget` from the daemon scope (monitord.vendor), one per account, persisted as
`huawei_rtc@<account>.data-requests.json` so a restart continues the same minute; with no file
it assumes the last minute was fully spent and ramps up.

Within it, a target spends at most its poll's allowance (the planner's pace), paid by every
attempt, retries included: `PollAttempts` is a pacing policy in front of the budget that also
counts each attempt's outcome per API.
"""

from __future__ import annotations

from collections import Counter

from monitord.errors import PollError
from monitord.vendor import BudgetSpent

# The budget's window: the vendor counts requests per minute.
BUDGET_WINDOW = 60.0
BUDGET_NAME = "data-requests"


class PollAttempts:
    """This target's attempts in the current poll (`allowance`, `sent`) and all its outcomes."""

    def __init__(self) -> None:
        self.allowance = self.sent = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (api, "ok" or a PollError reason)

    def start(self, allowance: int) -> None:
        self.allowance, self.sent = allowance, 0

    def of(self, api: str) -> ApiAttempts:
        return ApiAttempts(self, api)


class ApiAttempts:
    """The pacing policy of one API's Caller: admits while the poll's allowance lasts."""

    def __init__(self, attempts: PollAttempts, api: str) -> None:
        self.attempts = attempts
        self.api = api

    async def admit(self) -> None:
        if self.attempts.sent >= self.attempts.allowance:
            raise BudgetSpent

    def observe(self, error: PollError | None) -> None:
        self.attempts.sent += 1
        self.attempts.outcomes[(self.api, "ok" if error is None else error.reason)] += 1
