"""The heap freezer: start-up objects leave the collector's sight, a reload thaws them."""

from __future__ import annotations

import asyncio
import gc
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from monitord.heap import YOUNG_THRESHOLD, HeapFreezer


async def test_freezes_at_once_and_again_when_settled_and_thaws_for_a_reload() -> None:
    settled = False
    freezer = HeapFreezer(lambda: settled, check_every=0.01)
    thresholds = gc.get_threshold()
    try:
        freezer.arm()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (max(YOUNG_THRESHOLD, thresholds[0]), *thresholds[1:])
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
    assert gc.get_threshold() == thresholds


# Allocate and free a scrape-sized body a few times, then print how much RSS grew.
_SCRAPES = """
import sys
from monitord.heap import return_large_blocks_to_the_os
if sys.argv[1] == "fixed":
    assert return_large_blocks_to_the_os()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
before = rss()
for size in (12, 20, 20, 20):
    body = b"x" * (size << 20)
    del body
print(rss() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_scrape_bodies_go_back_to_the_os() -> None:
    def growth(mode: str) -> int:
        proc = subprocess.run([sys.executable, "-c", _SCRAPES, mode], capture_output=True, text=True, timeout=60,
                              check=True, cwd=Path(__file__).parent.parent)
        return int(proc.stdout)

    assert growth("default") >= 16 << 20, "glibc's default kept a freed body in RSS (the reason for the fix)"
    assert growth("fixed") < 4 << 20
