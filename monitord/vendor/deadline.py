"""The poll deadline, as seen from inside a poll.

The runtime bounds a whole poll with `asyncio.timeout` (global.timeout or the target's own). A
retry that would sleep past that bound buys nothing but a "timeout" that hides the vendor's real
answer, so the layer needs to know how much of the poll is left. The runtime publishes the
deadline here (a context variable: tasks a poll starts, such as a fan-out, inherit it) and the
retry policy reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_DEADLINE: ContextVar[float | None] = ContextVar("monitord_poll_deadline", default=None)


@contextlib.contextmanager
def poll_deadline(seconds: float) -> Iterator[None]:
    """Within this block the poll ends `seconds` from now (event-loop time)."""
    token = _DEADLINE.set(asyncio.get_running_loop().time() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left of the running poll; None outside a poll (a test, `close()` at shutdown)."""
    when = _DEADLINE.get()
    if when is None:
        return None
    return when - asyncio.get_running_loop().time()
