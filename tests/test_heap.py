"""The heap freezer: start-up objects leave the collector's sight, a reload thaws them."""

from __future__ import annotations

import asyncio
import gc

from monitord.heap import HeapFreezer


async def test_freezes_at_once_and_again_when_settled_and_thaws_for_a_reload() -> None:
    settled = False
    freezer = HeapFreezer(lambda: settled, check_every=0.01)
    try:
        freezer.arm()
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        await asyncio.sleep(0.1)
        assert gc.get_freeze_count() == 0, "froze again before start-up was over"
        settled = True
        for _ in range(500):
            if gc.get_freeze_count():
                break
            await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0
        settled = False
        freezer.thaw()
        await asyncio.sleep(0.1)
        assert gc.get_freeze_count() == 0, "a thawed heap must stay thawed until the new targets polled"
        collections = gc.get_stats()[2]["collections"]
        settled = True
        for _ in range(500):
            if gc.get_freeze_count():
                break
            await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0
        assert gc.get_stats()[2]["collections"] > collections, "retired objects were not collected first"
    finally:
        freezer.close()
    assert gc.get_freeze_count() == 0
