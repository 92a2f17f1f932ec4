"""A fake Kubernetes API server for the coordination.k8s.io/v1 Lease endpoints, on 127.0.0.1.

It keeps the API server's contract that leader election relies on: every write bumps
metadata.resourceVersion; a PUT whose resourceVersion is not the current one is refused with
409 Conflict; a POST of an existing name is 409 AlreadyExists; GET of a missing Lease is 404;
a request without the bearer token is 401. Each client gets its own listening port, so a test
can cut one client off (`partition(port)`: its requests hang, as in a network partition) while
the others go on.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

TOKEN = "fake-service-account-token"
PREFIX = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    return web.json_response(body, status=code)


class FakeLeaseServer:
    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.versions = itertools.count(1)
        self.partitioned: set[int] = set()
        # (monotonic time, holderIdentity) of every accepted write, for assertions.
        self.writes: list[tuple[float, str | None]] = []
        self.conflicts = 0
        self._runner: web.AppRunner | None = None
        self.ports: list[int] = []

    # -------------------------------------------------------------------------- the API

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        if sock is not None and sock[1] in self.partitioned:
            await asyncio.sleep(3600)  # a partition: the request never gets an answer
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _status(401, "Unauthorized", "Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    async def _get(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        lease = self.leases.get(key)
        if lease is None:
            return _status(404, "NotFound", f'leases.coordination.k8s.io "{key[1]}" not found')
        return web.json_response(lease)

    async def _create(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        body = await request.json()
        name = body.get("metadata", {}).get("name")
        if body.get("kind", "Lease") != "Lease" or not name:
            return _status(400, "BadRequest", "not a Lease with a name")
        if (namespace, name) in self.leases:
            self.conflicts += 1
            return _status(409, "AlreadyExists", f'leases.coordination.k8s.io "{name}" already exists')
        return web.json_response(self._store(namespace, name, body), status=201)

    async def _replace(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        body = await request.json()
        current = self.leases.get(key)
        if current is None:
            return _status(404, "NotFound", f'leases.coordination.k8s.io "{key[1]}" not found')
        sent = body.get("metadata", {}).get("resourceVersion")
        if sent != current["metadata"]["resourceVersion"]:
            self.conflicts += 1
            return _status(409, "Conflict", "Operation cannot be fulfilled on leases.coordination.k8s.io "
                           f'"{key[1]}": the object has been modified; please apply your changes to the latest '
                           "version and try again")
        return web.json_response(self._store(*key, body))

    def _store(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(next(self.versions))},
            "spec": copy.deepcopy(body.get("spec") or {}),
        }
        self.leases[(namespace, name)] = lease
        self.writes.append((time.monotonic(), lease["spec"].get("holderIdentity")))
        return lease

    # ------------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get(PREFIX + "/{name}", self._get)
        app.router.add_put(PREFIX + "/{name}", self._replace)
        app.router.add_post(PREFIX, self._create)
        return app

    async def start(self, listeners: int) -> list[int]:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        for _ in range(listeners):
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
        self.ports = [addr[1] for addr in self._runner.addresses]
        return self.ports

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def partition(self, port: int) -> None:
        self.partitioned.add(port)

    def heal(self, port: int) -> None:
        self.partitioned.discard(port)

    def holder(self, name: str, namespace: str = "monitoring") -> str | None:
        lease = self.leases.get((namespace, name))
        return None if lease is None else lease["spec"].get("holderIdentity")


def kubeconfig(path: Path, port: int, namespace: str = "monitoring") -> Path:
    """A kubeconfig that points the official client at one listener of the fake server."""
    path.write_text(json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "monitord", "user": {"token": TOKEN}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "monitord", "namespace": namespace}}],
        "current-context": "fake",
    }), encoding="utf-8")
    return path
