"""One vendor call: pacing, authentication, the request, the source's reading of the answer,
and what happens on failure. The order of things, in one place for every source:

1. every pacing policy admits the attempt (a rate limiter waits; a spent budget raises
   BudgetSpent, a ban raises "throttled": neither is retried, nothing was sent; a retry that
   finds the budget spent raises the failure it was retrying);
2. the auth strategy adds its credential (a token or session is obtained first if needed);
3. the request goes out through the target's VendorClient (counted);
4. `parse(response)` turns the answer into the source's value or raises PollError (the source
   knows its vendor's error bodies; `Response.raise_for_status` covers plain HTTP statuses);
5. every pacing policy observes the outcome (throttling blocks a budget, holds a ban);
6. a rejected credential ("auth") is renewed once when the strategy can and the call repeated;
   a second rejection is the vendor's answer. Other failures follow the retry policy, never
   past the poll deadline.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from monitord.errors import PollError
from monitord.http import Response
from monitord.vendor import deadline
from monitord.vendor.auth import Auth, NoAuth
from monitord.vendor.client import Request, VendorClient
from monitord.vendor.pacing import BudgetSpent, Pacing
from monitord.vendor.retry import NEVER, RetryPolicy

T = TypeVar("T")


def raise_for_status(resp: Response) -> Response:
    """A `parse` for calls whose answer the source reads itself: HTTP errors become PollErrors."""
    resp.raise_for_status()
    return resp


class Caller:
    def __init__(
        self,
        client: VendorClient,
        *,
        auth: Auth | None = None,
        retry: RetryPolicy = NEVER,
        pacing: Sequence[Pacing] = (),
        time_scale: float = 1.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.auth: Auth = auth or NoAuth()
        self.retry = retry
        self.pacing = tuple(pacing)
        self.time_scale = time_scale
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.renewals = 0  # credentials renewed after a rejection
        self.retries = 0  # attempts sent again after a retryable failure

    async def call(self, request: Request, parse: Callable[[Response], T]) -> T:
        attempt = 0
        renewed = False
        last: PollError | None = None
        while True:
            try:
                for policy in self.pacing:
                    await policy.admit()
            except BudgetSpent:
                if last is None:
                    raise
                raise last from None  # no budget left to try again with: the vendor's answer stands
            status: int | None = None
            credential: object = None
            sent = False  # a credential can only have been rejected by an answer to it
            try:
                authorized, credential = await self.auth.authorize(request)
                sent = True
                resp = await self.client.send(authorized)
                status = resp.status
                result = parse(resp)
            except PollError as exc:
                error = exc
            else:
                for policy in self.pacing:
                    policy.observe(None)
                return result
            last = error
            for policy in self.pacing:
                policy.observe(error)
            if error.reason == "auth" and sent and self.auth.renewable and not renewed:
                renewed = True
                self.renewals += 1
                await self.auth.renew(credential)
                continue
            attempt += 1
            if not self.retry.retries(error, status, attempt):
                raise error
            delay = self.retry.backoff(attempt, self._rng) / self.time_scale
            left = deadline.remaining()
            if left is not None and delay >= left:
                raise error  # the next try could not finish: the vendor's answer is the poll's
            self.retries += 1
            await self._sleep(delay)
