"""One poll over many items (channels, tasks, rooms), with bounded concurrency and one rule for
partial failure, the same for every source:

- a failure whose reason concerns the host or the account, not the item (`FATAL`: auth,
  throttling, an unreachable or hanging vendor) ends the poll at once: the other items are
  cancelled and that failure is raised;
- when every item failed, the poll fails with the first item's error (in item order), its
  reason kept, so a broken target is down, not "up with nothing";
- otherwise the poll succeeds with what was read, and each failed item's error is returned for
  the source to count (a per-item, reason-labelled counter).

Anything that is not a PollError is a bug and propagates as one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from monitord.errors import REASONS, PollError

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

FATAL: Final = frozenset({"auth", "throttled", "timeout", "connect", "tls"})
# What one item can fail with while the poll goes on: the reasons of a source's per-item error
# counter, each exposed at 0 from the start.
ITEM_REASONS: Final = tuple(r for r in REASONS if r not in FATAL and r != "internal")


@dataclass
class FanOut(Generic[K, T]):
    results: dict[K, T] = field(default_factory=dict)  # in item order
    errors: dict[K, PollError] = field(default_factory=dict)  # in item order


async def fan_out(
    items: Sequence[K],
    call: Callable[[K], Awaitable[T]],
    *,
    concurrency: int,
    fatal: frozenset[str] = FATAL,
    noun: str = "item",
) -> FanOut[K, T]:
    if concurrency < 1:
        raise ValueError("fan-out concurrency must be at least 1")
    gate = asyncio.Semaphore(concurrency)
    outcomes: dict[K, T | PollError] = {}

    async def one(item: K) -> None:
        async with gate:
            try:
                outcomes[item] = await call(item)
            except PollError as exc:
                if exc.reason in fatal:
                    raise
                outcomes[item] = exc

    try:
        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))
    except BaseExceptionGroup as failed:
        raise _first_failure(failed) from None
    out: FanOut[K, T] = FanOut()
    for item in items:
        outcome = outcomes[item]
        if isinstance(outcome, PollError):
            out.errors[item] = outcome
        else:
            out.results[item] = outcome
    if items and not out.results:
        item, error = next(iter(out.errors.items()))
        raise PollError(error.reason, f"every {noun} failed; first ({item}): {error.detail}", error.vendor_code)
    return out


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first fatal PollError, unless a bug (any other exception) is among the failures:
    then the first bug, which the runtime reports as "internal" with its traceback."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup[BaseException]) -> None:
        for exc in g.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            else:
                leaves.append(exc)

    walk(group)
    bugs = [e for e in leaves if not isinstance(e, PollError)]
    return bugs[0] if bugs else leaves[0]
