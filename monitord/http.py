"""The one HTTP client every source uses.

One aiohttp ClientSession for the whole daemon (connection pooling, one place for limits).
Every way a vendor can misbehave ends here as a PollError with a fixed reason: a refused
connection, a bad certificate, a hang, an HTML error page, a 2 GB body. Error texts never carry
the query string: some vendors take credentials there.

Cookies are not kept by the session: two devices behind one address (or two simulated devices
on 127.0.0.1) would share a jar, and aiohttp's jar ignores cookies from bare IP addresses anyway.
Sources that need a session cookie read it from Response.cookies and send it themselves.
"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from monitord import logs, vendorjson
from monitord.config import HTTPClientConfig, TLSConfig
from monitord.errors import PollError

T = TypeVar("T")


@dataclass(frozen=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    cookies: Mapping[str, str]
    url: str  # without query string

    def json(self) -> Any:
        """The body as JSON, or a bad_response PollError that says what it looked like instead.
        Bodies nested deeper than vendorjson.MAX_DEPTH are refused (they would exhaust the stack)."""
        try:
            return vendorjson.loads(self.body)
        except vendorjson.JSONError as exc:
            reason = str(exc) if "nested" in str(exc) else _looks_like(self)
            detail = f"HTTP {self.status} body from {self.url} is not JSON ({reason})"
            raise PollError("bad_response", detail) from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise PollError("bad_response", f"expected a JSON object from {self.url}, got {type(data).__name__}")
        return data

    def raise_for_status(self) -> None:
        if self.status < 400:
            return
        raise status_error(self.status, self.url)


def status_error(status: int, url: str) -> PollError:
    if status in (401, 403):
        return PollError("auth", f"HTTP {status} from {url}")
    if status == 429:
        return PollError("throttled", f"HTTP 429 from {url}")
    if status == 408:
        return PollError("timeout", f"HTTP 408 from {url}")
    if status >= 500:
        return PollError("http_5xx", f"HTTP {status} from {url}")
    return PollError("http_4xx", f"HTTP {status} from {url}")


def _looks_like(resp: Response) -> str:
    ctype = resp.headers.get("Content-Type", "no content type")
    head = resp.body[:64].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<")):
        kind = "HTML/XML"
    elif not resp.body:
        kind = "empty"
    else:
        kind = "unparseable"
    return f"{kind}, {len(resp.body)} bytes, {ctype}"


def redact_url(url: str | URL) -> str:
    return str(URL(url).with_query(None).with_fragment(None))


class HttpClient:
    def __init__(self, config: HTTPClientConfig, max_body_bytes: int) -> None:
        self._config = config
        self.max_body_bytes = max_body_bytes
        self._session: aiohttp.ClientSession | None = None
        self._ssl_contexts: dict[tuple[str | None, bool], ssl.SSLContext | bool] = {}
        self._insecure_logged: set[str] = set()
        # Requests started per target: `once` tells a poll that verified nothing from one that did.
        self.requests: Counter[str] = Counter()
        self._log = logs.get("monitord.http")
        self._fenced = False

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._fenced:
            # A replica that lost its lease must not reach a vendor again, not even from a poll
            # that was already running: the new leader may be polling the same account.
            raise PollError("connect", "this replica stopped polling (it is no longer the leader)")
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._config.max_connections,
                limit_per_host=self._config.max_connections_per_host,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._config.connect_timeout, sock_read=self._config.read_timeout
                ),
                headers={"User-Agent": self._config.user_agent},
                raise_for_status=False,
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def fence(self) -> None:
        """Refuse every request from now on and abort those in flight (closing the session
        closes their connections; that part runs before this coroutine first yields)."""
        self._fenced = True
        await self.close()

    def ssl_for(self, tls: TLSConfig, target: str) -> ssl.SSLContext | bool:
        if tls.insecure_skip_verify:
            if target not in self._insecure_logged:
                self._insecure_logged.add(target)
                self._log.warning("tls_verification_disabled", target=target,
                                  hint="tls.insecure_skip_verify is set for this target")
            return False
        key = (str(tls.ca_file) if tls.ca_file else None, False)
        ctx = self._ssl_contexts.get(key)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=key[0])
            self._ssl_contexts[key] = ctx
        return ctx

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        tls: TLSConfig,
        target: str,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> Response:
        limit = max_bytes or self.max_body_bytes
        safe_url = redact_url(url)
        self.requests[target] += 1
        try:
            async with self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                ssl=self.ssl_for(tls, target),
                allow_redirects=False,
            ) as resp:
                declared = resp.content_length
                if declared is not None and declared > limit:
                    raise PollError("too_large", f"{safe_url} announced {declared} bytes (limit {limit})")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise PollError("too_large", f"{safe_url} sent more than {limit} bytes")
                    chunks.append(chunk)
                cookies = {k: m.value for k, m in resp.cookies.items()}
                return Response(resp.status, resp.headers, b"".join(chunks), cookies, safe_url)
        except PollError:
            raise
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise PollError("tls", f"{safe_url}: {type(exc).__name__}") from None
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise PollError("timeout", f"{safe_url}: {type(exc).__name__}") from None
        except aiohttp.ClientConnectorError as exc:
            raise PollError("connect", f"{safe_url}: {exc.os_error.strerror or type(exc.os_error).__name__}") from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise PollError("bad_response", f"{safe_url}: {type(exc).__name__}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PollError("connect", f"{safe_url}: {type(exc).__name__}") from None
