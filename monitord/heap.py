"""Garbage collection for a daemon that holds many long-lived objects.

CPython's full (generation 2) collection scans every object the collector tracks. At 10,000
targets the configuration, sources, sessions, connections and runtimes are millions of objects
that live as long as the process, and each full collection paused the event loop for half a
second. gc.freeze() moves them out of the collector's sight, once the runtimes exist and again
when start-up is over (every target has polled once, so sessions and connections exist): full
collections then scan only what was created since. A reload thaws the heap, so that the retired
runtimes' reference cycles can be collected, and freezes it again once the new targets have polled.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable


class HeapFreezer:
    def __init__(self, settled: Callable[[], bool], check_every: float = 1.0) -> None:
        self._settled = settled
        self._check_every = check_every
        self._task: asyncio.Task[None] | None = None

    def arm(self) -> None:
        """Freeze now (configuration, sources and runtimes exist), and again as soon as
        `settled()` is true (checked every `check_every` seconds)."""
        self.cancel()
        gc.freeze()
        self._task = asyncio.get_running_loop().create_task(self._freeze_when_settled(collect=False))

    def thaw(self) -> None:
        """After a reload retired runtimes: unfreeze, and once the new targets have polled,
        collect the whole heap once (the retired cycles; one long pause per such reload) and
        freeze what is left."""
        self.cancel()
        gc.unfreeze()
        self._task = asyncio.get_running_loop().create_task(self._freeze_when_settled(collect=True))

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def close(self) -> None:
        self.cancel()
        gc.unfreeze()

    async def _freeze_when_settled(self, collect: bool) -> None:
        # Readiness is derived from every runtime's state; there is no event to wait on.
        while not self._settled():  # noqa: ASYNC110
            await asyncio.sleep(self._check_every)
        if collect:
            gc.collect()
        gc.freeze()
