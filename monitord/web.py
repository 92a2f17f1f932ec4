"""The daemon's HTTP server: /, /metrics, /-/healthy, /-/ready, /-/reload and the source APIs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from monitord import status
from monitord.exposition import STORE_KEY, metrics_handler
from monitord.selfmetrics import HTTP_REJECTED
from monitord.snapshot import SnapshotBuilder
from monitord.webconfig import WebSecurity
from monitord.webguard import BasicAuth, Rejections, Timeouts, guard_middleware, headers_hook

if TYPE_CHECKING:
    from monitord.app import Daemon

# Source APIs take small JSON bodies (callbacks, task registrations); anything bigger is abuse.
MAX_API_BODY = 256 * 1024
DAEMON_KEY: web.AppKey[Daemon] = web.AppKey("daemon")


@dataclass
class Surface:
    """How the HTTP surface is exposed: --web.config.file (TLS, users, headers; re-read on change
    through `security`), --web.enable-lifecycle, and the read timeouts."""

    security: Callable[[], WebSecurity] = WebSecurity
    enable_lifecycle: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    # Live connections' header-timeout guards, by transport (filled by webguard.GuardedSite).
    guards: dict[Any, Any] = field(default_factory=dict)
    rejections: Rejections = field(default_factory=Rejections)


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
    surface = request.app[SURFACE_KEY]
    if not surface.enable_lifecycle:
        # As Prometheus: the route exists but is refused, so a caller learns why.
        surface.rejections.add("lifecycle_disabled")
        raise web.HTTPForbidden(text="Lifecycle API is not enabled.\n")
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


SURFACE_KEY: web.AppKey[Surface] = web.AppKey("surface", Surface)


async def reload_wrong_method(_request: web.Request) -> web.Response:
    raise web.HTTPMethodNotAllowed("GET", ["POST"], text="Only POST requests allowed.\n")


def build_app(daemon: Daemon, surface: Surface | None = None) -> web.Application:
    surface = surface or Surface()
    # Authentication comes first and covers every route, unknown ones included (a 404 or 405
    # must not tell an anonymous client which routes exist).
    middleware = guard_middleware(surface.security, surface.timeouts, surface.guards, BasicAuth(),
                                  surface.rejections)
    app = web.Application(client_max_size=MAX_API_BODY, middlewares=[middleware])
    app.on_response_prepare.append(headers_hook(surface.security))
    app[SURFACE_KEY] = surface
    app[DAEMON_KEY] = daemon

    def publish_rejections() -> None:
        out = SnapshotBuilder({})
        for reason, count in surface.rejections.counts.items():
            out.add(HTTP_REJECTED, float(count), reason=reason)
        daemon.store.put("web", out.build())

    surface.rejections.on_change = publish_rejections
    publish_rejections()
    app[STORE_KEY] = daemon.store
    app.router.add_get("/", status.page)
    app.router.add_get("/api/v1/status", status.status_json)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/-/reload", reload_wrong_method)
    app.router.add_route("*", "/api/v1/targets/{target}/{action:.+}", source_api)
    return app
