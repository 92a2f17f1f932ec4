"""Hot standby: two replicas of a shard, one polls, through a Kubernetes coordination.k8s.io/v1 Lease.

The algorithm is client-go's leaderelection, through the official `kubernetes` client
(`pip install monitord[kubernetes]`; its calls are blocking, so each runs in a worker thread):

- a candidate reads the Lease; it may take it when it has no holder, or when the holder's record
  (holder, renewTime, resourceVersion) has not changed for leaseDurationSeconds *as measured on
  the candidate's own monotonic clock since it first saw that record*, so clock skew between
  nodes does not matter;
- every write carries the resourceVersion that was read: the API server answers 409 Conflict if
  anyone wrote in between, so two candidates never both take the same expired lease;
- the leader renews every retry period. Fencing: a renewal counts from the moment it was *sent*;
  when no renewal has succeeded for renew_deadline (< lease duration) the leader stops polling by
  itself (requests in flight are aborted), before any candidate can consider the lease expired:
  that takes at least lease duration after the last successful write. A partitioned leader
  therefore never polls alongside its successor;
- on shutdown the leader stops polling first, then releases the lease (empty holder), so the
  standby takes over at its next retry instead of after a whole lease duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitord import logs, selfmetrics
from monitord.snapshot import SnapshotBuilder

LEASE_ERROR_REASONS = ("timeout", "connect", "conflict", "http")
LOST_REASONS = ("renew_deadline", "taken", "released")


class LeaderElectionUnavailable(RuntimeError):
    """The `kubernetes` package is missing or no cluster/kubeconfig can be reached."""


@dataclass(frozen=True)
class ElectionConfig:
    namespace: str
    lease_name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("leader election needs lease-duration > renew-deadline > retry-period > 0, got "
                             f"{self.lease_duration:g} / {self.renew_deadline:g} / {self.retry_period:g}")

    @property
    def lease_seconds(self) -> int:
        """What the Lease records (whole seconds): rounded up, so a candidate never waits less
        than the leader's renew deadline."""
        return math.ceil(self.lease_duration)


def default_identity() -> str:
    """The pod name when there is one (what `kubectl get lease` should show), plus a random part
    so a restarted pod with the same name is a new candidate, like client-go's hostname_uuid."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class LeaseClient:
    """The Lease calls, on the official client. Blocking: call through asyncio.to_thread."""

    def __init__(self, kubeconfig: str | None, request_timeout: float) -> None:
        try:
            from kubernetes import client, config
        except ImportError:
            raise LeaderElectionUnavailable(
                "leader election needs the kubernetes package: pip install 'monitord[kubernetes]'") from None
        self._client = client
        configuration = client.Configuration()
        # The loaders are untyped; Any keeps mypy --strict quiet whether or not the package is there.
        from_file: Any = config.load_kube_config
        in_cluster: Any = config.load_incluster_config
        try:
            if kubeconfig:
                from_file(config_file=kubeconfig, client_configuration=configuration)
            else:
                in_cluster(client_configuration=configuration)
        except (config.ConfigException, OSError, TypeError, ValueError) as exc:
            raise LeaderElectionUnavailable(f"cannot configure the Kubernetes client: {exc}") from None
        configuration.retries = 0  # one attempt per call: the election loop is the retry
        self.api = client.CoordinationV1Api(client.ApiClient(configuration))
        self.timeout = request_timeout

    @property
    def api_exception(self) -> type[Exception]:
        exc: type[Exception] = self._client.exceptions.ApiException
        return exc

    def read(self, namespace: str, name: str) -> Any:
        return self.api.read_namespaced_lease(name, namespace, _request_timeout=self.timeout)

    def create(self, namespace: str, name: str, spec: dict[str, Any]) -> Any:
        c = self._client
        body = c.V1Lease(metadata=c.V1ObjectMeta(name=name, namespace=namespace), spec=c.V1LeaseSpec(**spec))
        return self.api.create_namespaced_lease(namespace, body, _request_timeout=self.timeout)

    def replace(self, namespace: str, name: str, resource_version: str, spec: dict[str, Any]) -> Any:
        c = self._client
        body = c.V1Lease(metadata=c.V1ObjectMeta(name=name, namespace=namespace, resource_version=resource_version),
                         spec=c.V1LeaseSpec(**spec))
        return self.api.replace_namespaced_lease(name, namespace, body, _request_timeout=self.timeout)


class _Conflict(Exception):
    pass


class Elector:
    """Campaigns for the lease; `on_started` when this replica must poll, `on_stopped` when it
    must stop (awaited before anything else happens)."""

    def __init__(
        self,
        config: ElectionConfig,
        client: LeaseClient,
        on_started: Callable[[], None],
        on_stopped: Callable[[], Awaitable[None]],
        shard: str = "0",
        publish: Callable[[], None] = lambda: None,
        on_released: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.on_started = on_started
        self.on_stopped = on_stopped
        # Shutdown while leading: the lease is still ours until the renew deadline, so polls in
        # flight may end and sessions close until then (the argument: seconds left).
        self.on_released = on_released
        self.shard = shard
        self.publish = publish
        self.leading = False
        self.acquired = 0
        self.lost: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._deadline = 0.0
        self._stopping = False
        self._failing_reason = ""
        self._log = logs.get("monitord.leader", lease=config.lease_name, identity=config.identity)

    # ------------------------------------------------------------------------ self-metrics

    def metrics(self, out: SnapshotBuilder) -> None:
        out.add(selfmetrics.LEADER, 1.0 if self.leading else 0.0, shard=self.shard)
        out.add(selfmetrics.LEADER_ACQUIRED, float(self.acquired), shard=self.shard)
        for reason in LOST_REASONS:
            out.add(selfmetrics.LEADER_LOST, float(self.lost[reason]), shard=self.shard, reason=reason)
        for reason in LEASE_ERROR_REASONS:
            out.add(selfmetrics.LEASE_ERRORS, float(self.errors[reason]), reason=reason)

    # -------------------------------------------------------------------------- the calls

    async def _call(self, fn: Callable[..., Any], *args: Any, within: float) -> Any:
        """One API call in a worker thread: its result, or _Conflict on 409, LookupError on 404,
        TimeoutError / ConnectionError for the rest."""
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the call completes, and a cancelled elector must stop.
            async with asyncio.timeout(max(0.05, within)):
                return await asyncio.to_thread(fn, *args)
        except TimeoutError:
            raise
        except self.client.api_exception as exc:
            status = getattr(exc, "status", 0)
            if status == 409:
                raise _Conflict() from None
            if status == 404:
                raise LookupError() from None
            raise ConnectionError(f"http {status}") from None
        except Exception as exc:  # urllib3 errors: refused, reset, read timeout
            if "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower():
                raise TimeoutError() from None
            raise ConnectionError(type(exc).__name__) from None

    def _spec(self, now: datetime, previous: Any | None) -> dict[str, Any]:
        transitions = 0
        acquire_time = now
        if previous is not None:
            transitions = previous.lease_transitions or 0
            if previous.holder_identity == self.config.identity:
                acquire_time = previous.acquire_time or now
            else:
                transitions += 1
        return {
            "holder_identity": self.config.identity,
            "lease_duration_seconds": self.config.lease_seconds,
            "acquire_time": acquire_time,
            "renew_time": now,
            "lease_transitions": transitions,
        }

    async def try_acquire_or_renew(self, within: float) -> bool:
        """One attempt. True when this replica holds the lease after it (the write succeeded)."""
        c, ns, name = self.config, self.config.namespace, self.config.lease_name
        give_up = time.monotonic() + within
        try:
            lease = await self._call(self.client.read, ns, name, within=within)
        except LookupError:
            try:
                await self._call(self.client.create, ns, name, self._spec(_now(), None),
                                 within=give_up - time.monotonic())
            except _Conflict:
                self._error("conflict")
                return False
            return True
        spec = lease.spec
        record = (spec.holder_identity, spec.renew_time, lease.metadata.resource_version)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        holder = spec.holder_identity
        duration = float(spec.lease_duration_seconds or c.lease_duration)
        if holder and holder != c.identity and time.monotonic() < self._observed_at + duration:
            return False  # held, and its holder renewed within the lease duration as we saw it
        try:
            await self._call(self.client.replace, ns, name, lease.metadata.resource_version,
                             self._spec(_now(), spec), within=give_up - time.monotonic())
        except _Conflict:
            self._error("conflict")
            return False
        return True

    def _error(self, reason: str) -> None:
        self.errors[reason] += 1
        if reason != self._failing_reason:
            self._failing_reason = reason
            self._log.warning("lease_call_failed", reason=reason)
        self.publish()

    # ---------------------------------------------------------------------------- the loop

    async def run(self) -> None:
        c = self.config
        while not self._stopping:
            sent = time.monotonic()
            # A leader's attempt may not outlive its deadline: the fence must not wait on a hung call.
            budget = (self._deadline - sent) if self.leading else c.retry_period
            ok = False
            try:
                ok = await self.try_acquire_or_renew(within=max(0.05, min(budget, c.renew_deadline)))
                if self._failing_reason and ok:
                    self._log.info("lease_calls_recovered")
                    self._failing_reason = ""
            except TimeoutError:
                self._error("timeout")
            except ConnectionError as exc:
                self._error("http" if str(exc).startswith("http") else "connect")
            if self._stopping:
                break
            if ok:
                self._deadline = sent + c.renew_deadline
                if not self.leading:
                    self._become_leader()
            elif self.leading:
                held_by_other = self._observed is not None and self._observed[0] not in (None, "", c.identity)
                if held_by_other:
                    await self._step_down("taken")
                elif time.monotonic() >= self._deadline:
                    await self._step_down("renew_deadline")
            # client-go's JitterFactor 1.2 for candidates; a leader renews on the period exactly.
            pause = c.retry_period if self.leading else c.retry_period * random.uniform(1.0, 1.2)
            if self.leading:
                pause = min(pause, max(0.0, self._deadline - time.monotonic()))
            await asyncio.sleep(pause)

    def _become_leader(self) -> None:
        self.leading = True
        self.acquired += 1
        self._log.info("leader_acquired", shard=self.shard)
        self.on_started()
        self.publish()

    async def _step_down(self, reason: str) -> None:
        self.leading = False
        self.lost[reason] += 1
        if reason == "released" and self.on_released is not None:
            self._log.info("leader_stepping_down", shard=self.shard, reason=reason)
            await self.on_released(max(0.0, self._deadline - time.monotonic()))
        else:
            self._log.warning("leader_lost", shard=self.shard, reason=reason,
                              action="stopped polling; campaigning again")
            await self.on_stopped()
        self.publish()

    def request_stop(self) -> None:
        """No new attempt, no new term: the loop ends at its next turn."""
        self._stopping = True

    async def stop(self) -> None:
        """Shutdown: stop polling, then hand the lease back so the standby need not wait it out."""
        self._stopping = True
        if not self.leading:
            return
        await self._step_down("released")
        with contextlib.suppress(Exception):
            lease = await self._call(self.client.read, self.config.namespace, self.config.lease_name,
                                     within=self.config.retry_period)
            if lease.spec.holder_identity == self.config.identity:
                now = _now()
                await self._call(self.client.replace, self.config.namespace, self.config.lease_name,
                                 lease.metadata.resource_version,
                                 {"holder_identity": None, "lease_duration_seconds": 1, "acquire_time": now,
                                  "renew_time": now, "lease_transitions": lease.spec.lease_transitions},
                                 within=self.config.retry_period)
                self._log.info("lease_released")


def _now() -> datetime:
    return datetime.now(UTC)
