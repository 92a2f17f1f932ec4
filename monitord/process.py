"""The exporter's own process and runtime metrics: process_* (memory, CPU, open fds, start
time), python_gc_* and python_info, exactly as prometheus_client's collectors define them.

They are collected on a timer into the store like any snapshot, never on a scrape: a scrape
keeps costing a join of cached text, whatever it asks for. The families are declared here too,
so the metric catalog lists them and a test checks the collectors still produce just these.
"""

from __future__ import annotations

import asyncio
import math
from typing import Final

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from monitord import logs
from monitord.metrics import MetricDef, MetricType
from monitord.snapshot import SnapshotBuilder, Store

# How often the figures are read: often enough for a scrape every 15 s to see memory and CPU
# move, cheap enough (a few /proc reads) to be free.
REFRESH_SECONDS: Final = 10.0
STORE_KEY: Final = "process"


def _process(name: str, kind: MetricType, help_text: str, labels: tuple[str, ...] = ()) -> MetricDef:
    # The client libraries' standard names: exporter health, named as every dashboard expects.
    return MetricDef(name, kind, help_text, labels=labels, base_labels=(), health=True)


RUNTIME: Final = (
    _process("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes."),
    _process("process_resident_memory_bytes", "gauge", "Resident memory size in bytes."),
    _process("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds."),
    _process("process_cpu_seconds", "counter", "Total user and system CPU time spent in seconds."),
    _process("process_open_fds", "gauge", "Number of open file descriptors."),
    _process("process_max_fds", "gauge", "Maximum number of open file descriptors."),
    _process("python_gc_objects_collected", "counter", "Objects collected during gc", ("generation",)),
    _process("python_gc_objects_uncollectable", "counter", "Uncollectable objects found during GC", ("generation",)),
    _process("python_gc_collections", "counter", "Number of times this generation was collected", ("generation",)),
    _process("python_info", "gauge", "Python platform information",
             ("implementation", "major", "minor", "patchlevel", "version")),
)
_BY_NAME: Final = {m.name: m for m in RUNTIME}


class ProcessMetrics:
    """Reads prometheus_client's process, GC and platform collectors into one store snapshot."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._registry)
        GCCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        self._log = logs.get("monitord.process")
        self.unknown: set[str] = set()

    def refresh(self) -> None:
        out = SnapshotBuilder({})
        for family in self._registry.collect():
            metric = _BY_NAME.get(family.name)
            if metric is None:
                # A newer prometheus_client may add a family: leave it out rather than expose a
                # series the catalog does not know (and say so once).
                if family.name not in self.unknown:
                    self.unknown.add(family.name)
                    self._log.info("runtime_family_skipped", family=family.name)
                continue
            for sample in family.samples:
                if sample.name == metric.sample_name and math.isfinite(sample.value):
                    out.add(metric, sample.value, **sample.labels)
        self.store.put(STORE_KEY, out.build())

    async def run(self) -> None:
        """Refresh forever, every REFRESH_SECONDS; the daemon cancels it on shutdown."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                self.refresh()
            except Exception:  # a /proc oddity must not end the refreshes, let alone the daemon
                self._log.exception("runtime_metrics_failed")
