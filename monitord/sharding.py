"""Which targets this process polls when the config is split over M shards.

The convention is kube-state-metrics': `--shard N --total-shards M`, or the shard taken from the
ordinal of a StatefulSet pod (`--shard.from-pod-name monitord-4`). A target is owned by exactly
one shard: the hash of its *budget domain* modulo M. The budget domain is what a vendor limits as
one (a SparkRTC account, the Polyv API domain of one source address, a Zego AppId; see each
source's `budget_domain`), so every target that shares a budget or a ban lands in the same shard
and the shards together send what one process would. A target with no shared budget is its own
domain. The hash is SHA-256 of the domain key: stable across processes, Python versions and
restarts, unlike hash().

With `--shard.replicas-per-shard 2` (a hot standby per shard), the pod ordinals 2N and 2N+1 are
the two replicas of shard N; leader election (monitord.leader) picks the one that polls.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitord import selfmetrics
from monitord.config import Config, TargetConfig
from monitord.snapshot import SnapshotBuilder

if TYPE_CHECKING:
    from monitord.sources.base import Source

_ORDINAL_RE = re.compile(r"-(\d+)$")


class ShardError(ValueError):
    """A shard setting that cannot work; the message says which and why."""


def budget_domain(target: TargetConfig, registry: Mapping[str, type[Source[Any]]] | None = None) -> str:
    """The key that decides the shard: everything that shares a vendor budget shares this key."""
    if registry is None:
        from monitord.sources import REGISTRY

        registry = REGISTRY
    source = registry.get(target.source)
    domain = source.budget_domain(target) if source is not None else None
    return f"{target.source}/{domain}" if domain else f"target/{target.name}"


def shard_of(key: str, total: int) -> int:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % total


@dataclass(frozen=True)
class ShardSpec:
    shard: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ShardError(f"--total-shards must be at least 1, got {self.total}")
        if not 0 <= self.shard < self.total:
            raise ShardError(
                f"--shard must be in 0..{self.total - 1} for --total-shards {self.total}, got {self.shard}")

    def owns(self, target: TargetConfig, registry: Mapping[str, type[Source[Any]]] | None = None) -> bool:
        return self.total == 1 or shard_of(budget_domain(target, registry), self.total) == self.shard

    def restrict(self, config: Config, registry: Mapping[str, type[Source[Any]]] | None = None) -> Config:
        """The config with only this shard's targets; everything else is the same."""
        if self.total == 1:
            return config
        owned = tuple(t for t in config.targets if self.owns(t, registry))
        return config.model_copy(update={"targets": owned})

    def publish(self, out: SnapshotBuilder, owned: int, configured: int) -> None:
        label = str(self.shard)
        out.add(selfmetrics.SHARD, float(self.shard), shard=label)
        out.add(selfmetrics.TOTAL_SHARDS, float(self.total))
        out.add(selfmetrics.SHARD_TARGETS, float(owned), shard=label)
        out.add(selfmetrics.CONFIGURED_TARGETS, float(configured))


def ordinal_of(pod_name: str) -> int:
    match = _ORDINAL_RE.search(pod_name)
    if match is None:
        raise ShardError(f"cannot take a shard from pod name {pod_name!r}: it does not end in -<ordinal>")
    return int(match.group(1))


def add_arguments(parser: argparse.ArgumentParser, peers: bool = True) -> None:
    group = parser.add_argument_group("sharding (kube-state-metrics convention)")
    group.add_argument("--shard", type=int, default=None, help="this process's shard, 0..M-1 (default 0)")
    group.add_argument("--total-shards", dest="total_shards", type=int, default=1,
                       help="number of shards the targets are split over (default: %(default)s, no sharding)")
    group.add_argument("--shard.from-pod-name", dest="shard_from_pod_name", nargs="?", const="", default=None,
                       metavar="NAME",
                       help="take the shard from a StatefulSet pod name ending in -<ordinal> "
                            "(without a value: $POD_NAME, else the host name)")
    group.add_argument("--shard.replicas-per-shard", dest="replicas_per_shard", type=int, default=1,
                       help="pods per shard when taking the shard from the pod name, 2 with a hot standby "
                            "(default: %(default)s)")
    if not peers:
        return
    group.add_argument("--shard.peers", dest="shard_peers", default=None,
                       help="comma-separated base URLs of the other replicas to take target state from when "
                            "a target changes shard; {ordinal} expands to 0..M*replicas-1 "
                            "(e.g. http://monitord-{ordinal}.monitord-peers:10520)")
    group.add_argument("--shard.state-sync-interval", dest="state_sync_interval", type=float, default=15.0,
                       help="seconds between state copies a standby takes from its peers (default: %(default)s)")


def pod_name(value: str) -> str:
    return value or os.environ.get("POD_NAME", "") or socket.gethostname()


def spec_from_args(args: argparse.Namespace) -> ShardSpec:
    total = int(getattr(args, "total_shards", 1))
    replicas = int(getattr(args, "replicas_per_shard", 1))
    if total < 1:
        raise ShardError(f"--total-shards must be at least 1, got {total}")
    if replicas < 1:
        raise ShardError(f"--shard.replicas-per-shard must be at least 1, got {replicas}")
    from_pod = getattr(args, "shard_from_pod_name", None)
    explicit = getattr(args, "shard", None)
    if from_pod is not None:
        if explicit is not None:
            raise ShardError("give --shard or --shard.from-pod-name, not both")
        ordinal = ordinal_of(pod_name(from_pod))
        if ordinal >= total * replicas:
            raise ShardError(f"pod ordinal {ordinal} is past --total-shards {total} x "
                             f"--shard.replicas-per-shard {replicas}: the StatefulSet has more replicas than shards")
        return ShardSpec(ordinal // replicas, total)
    return ShardSpec(explicit or 0, total)


def peer_urls(template: str, total: int, replicas: int) -> list[str]:
    urls: list[str] = []
    for part in (p.strip() for p in template.split(",")):
        if not part:
            continue
        if "{ordinal}" in part:
            urls.extend(part.replace("{ordinal}", str(i)).rstrip("/") for i in range(total * replicas))
        else:
            urls.append(part.rstrip("/"))
    return urls
