"""One replica of a shard: take the shard's state from the peers, then poll (alone) or campaign
for the shard's lease (hot standby), copying the leader's state while standing by.

The command line wires it (`monitord run --total-shards 3 --shard.from-pod-name --leader-election`);
the pieces are monitord.sharding (which targets), monitord.handover (their state) and
monitord.leader (who polls).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import TYPE_CHECKING

from monitord import logs
from monitord.handover import Handover
from monitord.leader import ElectionConfig, Elector, LeaseClient, default_identity
from monitord.sharding import peer_urls

if TYPE_CHECKING:
    from monitord.app import Daemon


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hot standby (leader election on a Kubernetes Lease)")
    group.add_argument("--leader-election", dest="leader_election", action="store_true",
                       help="poll only while holding the shard's Lease (needs monitord[kubernetes])")
    group.add_argument("--leader-election.namespace", dest="le_namespace", default=None,
                       help="namespace of the Lease (default: the pod's, from the service account, else default)")
    group.add_argument("--leader-election.lease-name", dest="le_lease_name", default=None,
                       help="name of the Lease; {shard} in it is the shard number (default: monitord-shard-N "
                            "for shard N)")
    group.add_argument("--leader-election.identity", dest="le_identity", default=None,
                       help="this candidate's name in the Lease (default: $POD_NAME or host name, plus a random part)")
    group.add_argument("--leader-election.lease-duration", dest="le_lease_duration", type=float, default=15.0,
                       help="seconds a standby waits for a silent leader before taking over; the Lease records "
                            "it in whole seconds, rounded up (default: %(default)s)")
    group.add_argument("--leader-election.renew-deadline", dest="le_renew_deadline", type=float, default=10.0,
                       help="seconds after which a leader that could not renew stops polling (default: %(default)s)")
    group.add_argument("--leader-election.retry-period", dest="le_retry_period", type=float, default=2.0,
                       help="seconds between attempts to take or renew the Lease (default: %(default)s)")
    group.add_argument("--leader-election.kubeconfig", dest="le_kubeconfig", default=None,
                       help="kubeconfig file to reach the API server (default: in-cluster service account)")


_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _namespace(value: str | None) -> str:
    if value:
        return value
    try:
        with open(_SA_NAMESPACE, encoding="utf-8") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


class Replica:
    def __init__(self, daemon: Daemon, handover: Handover | None, elector: Elector | None,
                 sync_interval: float) -> None:
        self.daemon = daemon
        self.handover = handover
        self.elector = elector
        self.sync_interval = sync_interval
        self._tasks: list[asyncio.Task[None]] = []
        self._log = logs.get("monitord.replica")

    @classmethod
    def from_args(cls, daemon: Daemon, args: argparse.Namespace) -> Replica:
        spec = daemon.shard
        peers = peer_urls(getattr(args, "shard_peers", "") or "", spec.total,
                          int(getattr(args, "replicas_per_shard", 1) or 1))
        handover = Handover(daemon, peers) if peers else None
        elector = None
        # global.time_scale (a testing aid) divides every exporter timing: these too.
        scale = daemon.full_config.global_.time_scale
        if getattr(args, "leader_election", False):
            config = ElectionConfig(
                namespace=_namespace(args.le_namespace),
                lease_name=(args.le_lease_name or "monitord-shard-{shard}").replace("{shard}", str(spec.shard)),
                identity=args.le_identity or default_identity(),
                lease_duration=args.le_lease_duration / scale,
                renew_deadline=args.le_renew_deadline / scale,
                retry_period=args.le_retry_period / scale,
            )
            client = LeaseClient(args.le_kubeconfig, request_timeout=config.retry_period)
            # A new leader polls every target within one retry period: the data is already as old
            # as the takeover took, and the old leader's polls were spread over the interval anyway.
            within = config.retry_period
            elector = Elector(config, client, on_started=lambda: daemon.start(first_run_within=within),
                              on_stopped=daemon.stop_polling,
                              on_released=lambda grace: daemon.stop_polling(grace=grace),
                              shard=str(spec.shard), publish=daemon.publish_global)
            daemon.cluster_metrics.append(elector.metrics)
            daemon.elected = True
        daemon.publish_global()
        return cls(daemon, handover, elector, float(getattr(args, "state_sync_interval", 15.0)) / scale)

    async def run(self) -> None:
        """Called once the web server listens (peers may be asking us for state meanwhile)."""
        if self.handover is not None:
            await self.handover.pull()
        if self.elector is None:
            self.daemon.start()
            return
        self.daemon.start_process_metrics()  # a standby's health is its process's
        if self.handover is not None:
            self._tasks.append(asyncio.create_task(self._sync_while_standby()))
        self._tasks.append(asyncio.create_task(self.elector.run()))

    async def _sync_while_standby(self) -> None:
        assert self.handover is not None
        while True:
            await asyncio.sleep(self.sync_interval)
            if not self.daemon.polling:
                await self.handover.pull(unless_polling=True)

    async def stop(self) -> None:
        """Before the daemon closes: stop copying, stop polling, give the lease back."""
        if self.elector is not None:
            self.elector.request_stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.elector is not None:
            await self.elector.stop()
