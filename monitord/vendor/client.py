"""A vendor client bound to one target: its TLS settings, its name in the HTTP client's request
counts, and the count of requests the target sent (the runtime tells a poll the vendor answered
from one that asked the vendor nothing by that count; see monitord.scheduler)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yarl import URL

from monitord.config import TLSConfig
from monitord.http import HttpClient, Response


@dataclass(frozen=True)
class Request:
    """One vendor request before authentication: auth strategies return a changed copy
    (`with_headers`, `with_params`, or dataclasses.replace), never change it in place, so a
    retry starts from what the source asked for."""

    method: str
    url: str | URL
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    json_body: Any = None
    data: Any = None
    max_bytes: int | None = None

    def with_headers(self, **headers: str) -> Request:
        return dataclasses.replace(self, headers={**(self.headers or {}), **headers})

    def with_params(self, params: Mapping[str, str]) -> Request:
        return dataclasses.replace(self, params={**(self.params or {}), **params})


class VendorClient:
    def __init__(self, http: HttpClient, *, tls: TLSConfig, target: str) -> None:
        self.http = http
        self.tls = tls
        self.target = target
        self.sent = 0  # requests started since the target's runtime was built

    async def send(self, request: Request) -> Response:
        """Send as it is (no auth, retry or pacing: see monitord.vendor.caller). Failures of the
        transport are PollErrors with a fixed reason (monitord.http); the status is the caller's."""
        self.sent += 1
        return await self.http.request(
            request.method, request.url, tls=self.tls, target=self.target, params=request.params,
            json_body=request.json_body, data=request.data, headers=request.headers, max_bytes=request.max_bytes,
        )
