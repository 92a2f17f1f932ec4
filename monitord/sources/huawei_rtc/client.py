"""Requests to the SparkRTC data APIs through the vendor layer's Caller: AK/SK signature or IAM
token, the poll's allowance and the account's budget, retries, the vendor's error bodies.

Errors as Huawei Cloud "SparkRTC API Reference > 附录 > 状态码 / 错误码" describe them: HTTP 400
with `{"error_code": "DATA.…", "error_msg": …}` is a wrong request (not retried); 408, 500, 502
and 504 are retried with backoff; 503 is not ("不要重试该请求", do not retry); the API
gateway's APIGW.0308 (or HTTP 429) means throttled, which blocks the account's budget.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from yarl import URL

from monitord import redact, vendorjson
from monitord.errors import RETRYABLE, PollError
from monitord.http import Response, status_error
from monitord.sources.base import SourceContext
from monitord.sources.huawei_rtc import signer
from monitord.sources.huawei_rtc.budget import PollAttempts
from monitord.sources.huawei_rtc.config import HuaweiRtcConfig
from monitord.sources.huawei_rtc.parsing import parse_time
from monitord.vendor import Caller, Request, RetryPolicy, Signer, SlidingBudget, Token, TokenAuth, TokenCache
from monitord.vendor.auth import Auth
from monitord.vendor.pacing import Pacing

THROTTLE_CODES = ("APIGW.0308",)  # "The request is throttled" of Huawei's API gateway
NO_RETRY_STATUSES = frozenset({503})

MakeCaller = Callable[..., Caller]  # Source.caller


class DataClient:
    def __init__(self, config: HuaweiRtcConfig, ctx: SourceContext, budget: SlidingBudget, tokens: TokenCache,
                 caller: MakeCaller, send: Callable[[Request], Any]) -> None:
        self.config = config
        self.ctx = ctx
        self.budget = budget
        self.attempts = PollAttempts()
        self._caller = caller
        self._send_raw = send  # the target's VendorClient.send, for IAM (not a data request)
        self.vendor_throttled = 0  # throttling answers this target received
        self.token_refreshes = 0  # IAM tokens this target fetched
        self.auth: Auth = (
            TokenAuth(tokens, self._fetch_token, self._attach_token, clock=ctx.clock,
                      refresh_before=float(config.token_refresh_before))
            if config.auth == "token" else Signer(self._sign)
        )
        self.retry = RetryPolicy(attempts=config.retry_attempts, base_delay=float(config.retry_base_delay),
                                 reasons=RETRYABLE, never_statuses=NO_RETRY_STATUSES)
        self._callers: dict[str, Caller] = {}

    def caller_for(self, api: str) -> Caller:
        caller = self._callers.get(api)
        if caller is None:
            pacing: tuple[Pacing, ...] = (self.attempts.of(api), self.budget)
            caller = self._callers[api] = self._caller(auth=self.auth, retry=self.retry, pacing=pacing)
        return caller

    async def get(self, api: str, path: str, query: dict[str, str]) -> dict[str, Any]:
        """One data request: the poll's allowance and the account's budget pay every attempt
        (BudgetSpent before anything is sent when either is gone)."""
        request = Request("GET", str(self.config.endpoint).rstrip("/") + path, params=query)
        return await self.caller_for(api).call(request, self._check)

    # ---------------------------------------------------------------------------- auth

    def _canonical(self, request: Request) -> tuple[URL, str, list[tuple[str, str]]]:
        url = URL(request.url)
        return url, url.raw_authority, sorted((request.params or {}).items())

    def _sign(self, request: Request) -> Request:
        c = self.config
        assert c.ak is not None and c.sk is not None
        url, host, pairs = self._canonical(request)
        headers, uri = signer.sign(
            method=request.method,
            host=host,
            resource_path=url.raw_path,
            query=pairs,
            headers={"X-Project-Id": c.project_id},
            body=b"",
            access_key=c.ak.get_secret_value(),
            secret_key=c.sk.get_secret_value(),
            when=datetime.fromtimestamp(self.ctx.clock(), UTC).replace(tzinfo=None),
        )
        # Send exactly the URI that was signed, already encoded.
        return Request(request.method, URL(f"{url.scheme}://{host}{uri}", encoded=True), headers=headers)

    def _attach_token(self, request: Request, token: str) -> Request:
        url, host, pairs = self._canonical(request)
        uri = url.raw_path + ("?" + signer.canonical_query(pairs) if pairs else "")
        return Request(request.method, URL(f"{url.scheme}://{host}{uri}", encoded=True),
                       headers={"X-Auth-Token": token, "Host": host})

    async def _fetch_token(self) -> Token:
        c = self.config
        assert c.iam_password is not None
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": c.iam_user,
                            "password": c.iam_password.get_secret_value(),
                            "domain": {"name": c.iam_domain},
                        }
                    },
                },
                "scope": {"project": {"id": c.project_id}},
            }
        }
        resp = await self._send_raw(Request("POST", f"{c.iam_url}/v3/auth/tokens", json_body=body))
        if resp.status in (400, 401, 403):
            raise PollError("auth", f"IAM token request rejected (HTTP {resp.status})")
        resp.raise_for_status()
        token = resp.headers.get("X-Subject-Token")
        answer = resp.json_object().get("token")
        expires = answer.get("expires_at") if isinstance(answer, dict) else None
        expires_at = parse_time(expires)
        if not token or expires_at is None:
            raise PollError("bad_response", "IAM answered without X-Subject-Token or token.expires_at")
        self.token_refreshes += 1
        return Token(token, expires_at)

    # ------------------------------------------------------------------------- answers

    def _check(self, resp: Response) -> dict[str, Any]:
        if resp.status < 400:
            return resp.json_object()
        code = msg = None
        try:
            body = vendorjson.loads(resp.body)
        except vendorjson.JSONError:
            body = None
        if isinstance(body, dict):
            raw_code, raw_msg = body.get("error_code"), body.get("error_msg")
            code = redact.quote_vendor(raw_code, limit=64) if isinstance(raw_code, str) else None
            msg = redact.quote_vendor(raw_msg) if isinstance(raw_msg, str) else None
        if resp.status == 429 or code in THROTTLE_CODES:
            self.vendor_throttled += 1  # the budget itself observes the answer and blocks
            raise PollError("throttled", f"{resp.url}: HTTP {resp.status} {msg or ''}".strip(), code)
        err = status_error(resp.status, resp.url)
        if isinstance(code, str) and resp.status == 400:
            # DATA.* and RTC.* answers: the request is wrong; a vendor error, not a transport one.
            raise PollError("vendor_error", f"{resp.url}: {msg or 'rejected'}", code)
        # 401/403 are "auth": a token is renewed once by the layer, a signature is believed.
        raise PollError(err.reason, err.detail + (f": {msg}" if isinstance(msg, str) else ""), code)
