"""Garbage collection for a daemon that holds many long-lived objects.

CPython's full (generation 2) collection scans every object the collector tracks. At 10,000
targets the configuration, sources, sessions, connections and runtimes are millions of objects
that live as long as the process, and each full collection paused the event loop for half a
second. gc.freeze() moves them out of the collector's sight, once the runtimes exist and again
when start-up is over (every target has polled once, so sessions and connections exist): full
collections then scan only what was created since. A reload thaws the heap, so that the retired
runtimes' reference cycles can be collected, and freezes it again once the new targets have polled.

Young collections are set further apart than CPython's default (every 700 allocations of
tracked objects): a poll allocates thousands (request, response, decoded JSON, builder), so at
the default each poll's objects were scanned several times while still in use and, surviving
those scans, promoted into the old generation, whose growth then triggered full collections.
Every 20,000 allocations most of a poll's objects are gone by the time the collector looks:
at 5,000 devices about a tenth less CPU per poll and no full collection in a minute.

The other part of the heap that grows with the series count is the scrape: a body of tens of
megabytes, rendered and compressed for each scrape. glibc serves a block that large with mmap,
but raises its mmap threshold each time such a block is freed (up to 32 MiB), after which scrape
bodies come from the heap and their pages stay in RSS once freed. A fixed threshold keeps them
going back to the OS.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
from collections.abc import Callable

_M_MMAP_THRESHOLD = -3  # glibc malloc.h
YOUNG_THRESHOLD = 20_000


def return_large_blocks_to_the_os(threshold: int = 1 << 20) -> bool:
    """Serve allocations above `threshold` bytes with mmap, so that freeing them shrinks RSS.
    False where this is not glibc (the call is then a no-op)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


class HeapFreezer:
    def __init__(self, settled: Callable[[], bool], check_every: float = 1.0) -> None:
        self._settled = settled
        self._check_every = check_every
        self._task: asyncio.Task[None] | None = None
        self._thresholds: tuple[int, int, int] | None = None

    def arm(self) -> None:
        """Freeze now (configuration, sources and runtimes exist), and again as soon as
        `settled()` is true (checked every `check_every` seconds); young collections from now on
        every YOUNG_THRESHOLD allocations."""
        self.cancel()
        if self._thresholds is None:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(max(YOUNG_THRESHOLD, self._thresholds[0]), *self._thresholds[1:])
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
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    async def _freeze_when_settled(self, collect: bool) -> None:
        # Readiness is derived from every runtime's state; there is no event to wait on.
        while not self._settled():  # noqa: ASYNC110
            await asyncio.sleep(self._check_every)
        if collect:
            gc.collect()
        gc.freeze()
