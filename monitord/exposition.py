"""/metrics: content negotiation (Prometheus text 0.0.4 or OpenMetrics 1.0.0) and gzip.

The body comes from Store.render_async, which renders in a worker thread (so a large scrape
never holds up polls), in pieces of about a mebibyte sent one after the other, and caches per
format until a snapshot changes.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from monitord.snapshot import OPENMETRICS, TEXT, Store

CONTENT_TYPES: Final = {
    TEXT: "text/plain; version=0.0.4; charset=utf-8",
    OPENMETRICS: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
STORE_KEY: Final = web.AppKey("store", Store)


def _accepted(header: str) -> dict[str, float]:
    """Media types (and codings) with their q-values, e.g. Prometheus' scrape Accept header."""
    out: dict[str, float] = {}
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        q = 1.0
        version = ""
        for param in fields[1:]:
            key, _, value = param.partition("=")
            key = key.strip().lower()
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif key == "version":
                version = value.strip()
        name = fields[0].lower()
        # OpenMetrics 0.0.1 is an older draft we do not speak; 1.0.0 (or unversioned) we do.
        if name == "application/openmetrics-text" and version not in ("", "1.0.0"):
            continue
        out[name] = max(q, out.get(name, 0.0))
    return out


def negotiate_format(accept: str) -> str:
    accepted = _accepted(accept)
    om = accepted.get("application/openmetrics-text", 0.0)
    text = max(accepted.get("text/plain", 0.0), accepted.get("*/*", 0.0), accepted.get("text/*", 0.0))
    return OPENMETRICS if om > 0 and om >= text else TEXT


def wants_gzip(accept_encoding: str) -> bool:
    return _accepted(accept_encoding).get("gzip", 0.0) > 0


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE_KEY]
    fmt = negotiate_format(request.headers.get("Accept", ""))
    compress = wants_gzip(request.headers.get("Accept-Encoding", ""))
    body = await store.render_async(fmt, compress)
    headers = {"Content-Type": CONTENT_TYPES[fmt], "Vary": "Accept, Accept-Encoding"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    if len(body) <= 1 or request.method != "GET":
        return web.Response(body=b"".join(body), headers=headers)
    # A piece at a time (about a mebibyte each): handed over whole, a body of tens of megabytes
    # is copied into the socket's buffer in one go on the event loop.
    response = web.StreamResponse(headers=headers)
    response.content_length = sum(len(piece) for piece in body)
    await response.prepare(request)
    for piece in body:
        await response.write(piece)
    await response.write_eof()
    return response
