"""Target state that follows the target to another replica.

Persistent state (abnormal-event counters with their seen-sets and high-water marks, SparkRTC
request logs, Zego watch lists) lives in each replica's own state directory (a PersistentVolume
per StatefulSet pod). When a target changes hands, after a change of --total-shards or when a
standby takes over, the new owner must continue from the old owner's state, or it would count
the events of its look-back window a second time. So:

- every replica serves `GET /api/v1/state?shard=N&total=M`: the state files it holds of the
  targets that shard N of M owns (its own or not: a pod keeps the files of targets it gave away);
- a replica takes those of its own shard from every peer before it first polls, and a standby
  keeps doing so every --shard.state-sync-interval, so that it can take over with the leader's
  state no older than that;
- per (target, key) the newest copy wins (by the time it was saved), so stale copies never
  overwrite fresh ones.

Because the event counters continue from the handed-over state and events are deduplicated
against the handed-over seen-set, two replicas that briefly count the same target (an old and a
new owner during a rolling update) report the same count: `max by (target, ...)` of a counter
across replicas is exact. State carries no secrets (monitord.state never writes one), so the
endpoint needs no credentials; it only ever reads.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from monitord import logs, selfmetrics
from monitord.sharding import ShardSpec
from monitord.snapshot import SnapshotBuilder
from monitord.vendor.scope import shared_owners

if TYPE_CHECKING:
    from monitord.app import Daemon

PATH = "/api/v1/state"
# State of one shard is small (a few KB per target); a bigger answer is not a peer of ours.
MAX_ANSWER_BYTES = 256 * 1024 * 1024

_DAEMON: web.AppKey[Daemon] = web.AppKey("handover_daemon")


def shard_state(daemon: Daemon, spec: ShardSpec) -> dict[str, dict[str, dict[str, Any]]]:
    """State files of the targets shard `spec` owns, and of their vendor domains (a shared
    budget or ban lives in `<kind>@<domain>` files; sharding keeps a domain in one shard)."""
    targets = daemon.full_config.targets
    owned = [t for t in targets if spec.owns(t, daemon.registry)]
    names = [t.name for t in targets] + sorted(shared_owners(targets, daemon.registry))
    wanted = [t.name for t in owned] + sorted(shared_owners(owned, daemon.registry))
    return daemon.state.export_many(wanted, names)


async def _serve_state(request: web.Request) -> web.Response:
    try:
        spec = ShardSpec(int(request.query["shard"]), int(request.query["total"]))
    except (KeyError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"want ?shard=N&total=M with 0 <= N < M: {exc}\n") from None
    return web.json_response({"targets": shard_state(request.app[_DAEMON], spec)})


def add_routes(app: web.Application, daemon: Daemon) -> None:
    app[_DAEMON] = daemon
    app.router.add_get(PATH, _serve_state)


class Handover:
    """Takes this shard's state from the peers; counts what it took and what failed."""

    def __init__(self, daemon: Daemon, peers: Sequence[str], timeout: float = 10.0) -> None:
        self.daemon = daemon
        self.peers = list(peers)
        self.timeout = timeout
        self.files = 0
        self.errors: Counter[str] = Counter()
        self._failing: set[str] = set()
        self._log = logs.get("monitord.handover")
        self._lock = asyncio.Lock()
        daemon.cluster_metrics.append(self.publish)

    def publish(self, out: SnapshotBuilder) -> None:
        out.add(selfmetrics.STATE_HANDOVER_FILES, float(self.files))
        for reason in ("connect", "timeout", "http", "bad_response"):
            out.add(selfmetrics.STATE_HANDOVER_ERRORS, float(self.errors[reason]), reason=reason)

    async def _fetch(self, session: aiohttp.ClientSession, peer: str) -> dict[str, Any] | None:
        spec = self.daemon.shard
        reason = ""
        try:
            async with asyncio.timeout(self.timeout), session.get(
                    f"{peer}{PATH}", params={"shard": str(spec.shard), "total": str(spec.total)}) as resp:
                if resp.status != 200:
                    reason = "http"
                else:
                    body = await resp.content.read(MAX_ANSWER_BYTES + 1)
                    answer = None if len(body) > MAX_ANSWER_BYTES else _json(body)
                    targets = answer.get("targets") if isinstance(answer, dict) else None
                    if isinstance(targets, dict):
                        self._recovered(peer)
                        return targets
                    reason = "bad_response"
        except TimeoutError:
            reason = "timeout"
        except (aiohttp.ClientError, OSError):
            reason = "connect"
        self.errors[reason] += 1
        if peer not in self._failing:
            # One line per peer when it starts failing; a peer that is down during a rollout is
            # normal, so this is a warning and the counter carries every occurrence.
            self._failing.add(peer)
            self._log.warning("state_peer_failing", peer=peer, reason=reason)
        return None

    def _recovered(self, peer: str) -> None:
        if peer in self._failing:
            self._failing.discard(peer)
            self._log.info("state_peer_recovered", peer=peer)

    async def pull(self, unless_polling: bool = False) -> int:
        """Take every (target, key) a peer holds a newer copy of; the number of files taken.
        unless_polling: a standby's copy, dropped if this replica started polling meanwhile (its
        sources have read their state already and write their own from now on)."""
        if not self.peers:
            return 0
        async with self._lock, aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            answers = await asyncio.gather(*(self._fetch(session, p) for p in self.peers))
            if unless_polling and self.daemon.polling:
                return 0
            newest: dict[tuple[str, str], tuple[float, Any]] = {}
            targets = self.daemon.config.targets
            owned = {t.name for t in targets} | shared_owners(targets, self.daemon.registry)
            for answer in answers:
                for target, files in (answer or {}).items():
                    if target not in owned or not isinstance(files, dict):
                        continue
                    for key, item in files.items():
                        saved_at = item.get("saved_at") if isinstance(item, dict) else None
                        if not isinstance(saved_at, int | float) or not isinstance(key, str) or "value" not in item:
                            continue
                        if (target, key) not in newest or newest[(target, key)][0] < saved_at:
                            newest[(target, key)] = (float(saved_at), item["value"])
            taken = 0
            state = self.daemon.state
            for (target, key), (saved_at, value) in sorted(newest.items()):
                local = state.saved_at(target, key)
                if local is None or local < saved_at:
                    state.adopt(target, key, value, saved_at)
                    taken += 1
            self.files += taken
            if taken:
                self._log.info("state_taken_from_peers", files=taken)
            self.daemon.publish_global()
            return taken


def _json(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
