"""What stands between the network and the routes: basic authentication, client-certificate SAN
checks, the configured response headers, and read timeouts for slow clients.

aiohttp has no timeout for reading request headers (its keep-alive timer closes an idle
connection only after an hour), so a client that sends a header byte every few seconds would
hold a connection forever. Each connection's protocol is wrapped: a timer starts when the
connection opens, or when the first byte of a new request arrives on an idle keep-alive
connection, and is stopped when aiohttp hands the parsed request to the app. If it fires first,
the connection is closed. The request body gets its own deadline, read up front (bodies are
capped at a few hundred KiB).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import bcrypt
from aiohttp import web
from aiohttp.typedefs import Middleware

from monitord import logs
from monitord.webconfig import WebSecurity

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


DEFAULT_HEADER_TIMEOUT: Final = 10.0
DEFAULT_BODY_TIMEOUT: Final = 30.0
# A bcrypt hash of a password nobody has: unknown users cost the same time as known ones, so
# response times do not tell which user names exist (as the exporter-toolkit does).
_DUMMY_HASH: Final = b"$2b$10$U56LGLbx89TPLRjWZYMLIuMMTFu7WZ1eL9.dRxGVS1xCXQJGy56ty"
# Verdicts are cached so a scraper's every request does not cost a bcrypt run (~70 ms at cost
# 10); keys are digests, never passwords. Bounded: wrong guesses must not grow memory.
_CACHE_MAX: Final = 1024


REJECTION_REASONS: Final = ("unauthorized", "client_certificate", "lifecycle_disabled", "header_timeout",
                             "body_timeout")


class Rejections:
    """Counts of refused requests by reason, each present at 0 from the start; `on_change` is told
    after every count (the web app publishes them as monitord_http_requests_rejected_total)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(REJECTION_REASONS, 0)
        self.on_change: Callable[[], None] = lambda: None

    def add(self, reason: str) -> None:
        self.counts[reason] += 1
        self.on_change()


@dataclass(frozen=True)
class Timeouts:
    header: float = DEFAULT_HEADER_TIMEOUT
    body: float = DEFAULT_BODY_TIMEOUT


class BasicAuth:
    def __init__(self) -> None:
        self._cache: dict[bytes, bool] = {}
        # bcrypt is CPU-bound: run it off the event loop, one at a time.
        self._lock = asyncio.Lock()

    async def allowed(self, header: str | None, users: Mapping[str, bytes]) -> bool:
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        known = user in users
        hashed = users[user] if known else _DUMMY_HASH
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, password))).digest()
        verdict = self._cache.get(key)
        if verdict is None:
            async with self._lock:
                ok = await asyncio.get_running_loop().run_in_executor(None, _checkpw, password, hashed)
            verdict = known and ok
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = verdict
        return verdict


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:
        return False


def _parse_basic(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
        user, sep, password = raw.partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (binascii.Error, UnicodeDecodeError):
        return None


def _san_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return False
    wanted = {_canonical(s) for s in allowed}
    return any(_canonical(value) in wanted for _kind, value in cert.get("subjectAltName", ()))


def _canonical(value: str) -> str:
    # Python spells IPv6 SANs in full ("0:0:0:0:0:0:0:1"); operators write "::1".
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value.strip()


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol to time out requests whose headers come too slowly."""

    def __init__(self, inner: asyncio.Protocol, timeout: float, registry: dict[Any, _Guard],
                 rejections: Rejections) -> None:
        self._inner = inner
        self._timeout = timeout
        self._registry = registry
        self._rejections = rejections
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._bytes_while_busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._registry[transport] = self
        self._arm()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._registry.pop(self._transport, None)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._busy:
            # Body bytes, or the next pipelined request: which, only the parser knows. The timer
            # starts when this request is done (see request_finished).
            self._bytes_while_busy = True
        elif self._timer is None:
            self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def request_started(self) -> None:
        self._disarm()
        self._busy = True
        self._bytes_while_busy = False

    def request_finished(self) -> None:
        self._busy = False
        if self._bytes_while_busy:
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            # Counted, logged at debug only: a scanner must not be able to flood the log.
            logs.get("monitord.web").debug("request_header_timeout", timeout_seconds=self._timeout)
            self._rejections.add("header_timeout")
            self._transport.close()


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections get the header-read deadline (and a TLS handshake deadline).
    With TLS, each handshake takes the newest context from `security`, so a rotated certificate
    serves new connections without a restart."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, security: Callable[[], WebSecurity],
                 header_timeout: float, registry: dict[Any, _Guard], rejections: Rejections) -> None:
        context = security().ssl_context
        if context is not None:
            def newest(sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
                latest = security().ssl_context
                if latest is not None and latest is not sock.context:
                    sock.context = latest

            context.sni_callback = newest  # called for every ClientHello, with or without SNI
        super().__init__(runner, host, port, ssl_context=context)
        self._header_timeout = header_timeout
        self._guards = registry
        self._rejections = rejections

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        timeout, registry, rejections = self._header_timeout, self._guards, self._rejections

        def protocol() -> asyncio.Protocol:
            return _Guard(server(), timeout, registry, rejections)

        self._server = await asyncio.get_running_loop().create_server(
            protocol, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            ssl_handshake_timeout=timeout if self._ssl_context is not None else None,
        )


def guard_middleware(security: Callable[[], WebSecurity], timeouts: Timeouts, registry: dict[Any, _Guard],
                     auth: BasicAuth, rejections: Rejections) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        guard = registry.get(request.transport)
        if guard is not None:
            guard.request_started()
        try:
            current = security()
            if current.client_allowed_sans and not _san_allowed(request, current.client_allowed_sans):
                rejections.add("client_certificate")
                raise web.HTTPForbidden(text="Client certificate is not allowed.\n")
            if current.users and not await auth.allowed(request.headers.get("Authorization"), current.users):
                rejections.add("unauthorized")
                raise web.HTTPUnauthorized(text="Unauthorized\n", headers={"WWW-Authenticate": "Basic"})
            if request.body_exists:
                try:
                    await asyncio.wait_for(request.read(), timeouts.body)
                except TimeoutError:
                    logs.get("monitord.web").debug("request_body_timeout", timeout_seconds=timeouts.body)
                    rejections.add("body_timeout")
                    raise web.HTTPRequestTimeout(text="Request body not received in time.\n",
                                                 headers={"Connection": "close"}) from None
            return await handler(request)
        finally:
            if guard is not None:
                guard.request_finished()

    return middleware


def headers_hook(security: Callable[[], WebSecurity]) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def on_prepare(_request: web.Request, response: web.StreamResponse) -> None:
        for name, value in security().headers.items():
            response.headers[name] = value

    return on_prepare
