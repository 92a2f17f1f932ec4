"""The daemon's HTTP server: /, /metrics, /-/healthy, /-/ready, /-/reload and the source APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from monitord import status
from monitord.exposition import STORE_KEY, metrics_handler

if TYPE_CHECKING:
    from monitord.app import Daemon

# Source APIs take small JSON bodies (callbacks, task registrations); anything bigger is abuse.
MAX_API_BODY = 256 * 1024
DAEMON_KEY: web.AppKey[Daemon] = web.AppKey("daemon")


def _daemon(request: web.Request) -> Daemon:
    return request.app[DAEMON_KEY]


async def healthy(_request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    if daemon.ready():
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready: first polls still running.\n")


async def reload(request: web.Request) -> web.Response:
    daemon = _daemon(request)
    problems = await daemon.reload()
    if problems:
        text = "Reload failed, previous configuration kept:\n" + "\n".join(problems) + "\n"
        return web.Response(status=500, text=text)
    return web.Response(text="Reloaded.\n")


async def source_api(request: web.Request) -> web.StreamResponse:
    daemon = _daemon(request)
    name = request.match_info["target"]
    runtime = next((r for r in daemon.scheduler.runtimes() if r.name == name), None)
    if runtime is None:
        raise web.HTTPNotFound(text=f"no target {name!r}\n")
    if request.content_length is not None and request.content_length > MAX_API_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_API_BODY, actual_size=request.content_length)
    try:
        return await runtime.source.handle_api(request.match_info["action"], request)
    finally:
        # Callbacks and registrations change what self_metrics reports (event counts, watch
        # lists): show it on the next scrape rather than after the target's next poll.
        runtime.publish_self()


def build_app(daemon: Daemon) -> web.Application:
    app = web.Application(client_max_size=MAX_API_BODY)
    app[DAEMON_KEY] = daemon
    app[STORE_KEY] = daemon.store
    app.router.add_get("/", status.page)
    app.router.add_get("/api/v1/status", status.status_json)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_route("*", "/api/v1/targets/{target}/{action:.+}", source_api)
    return app
