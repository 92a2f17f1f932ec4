"""Requests to the SparkRTC data APIs: signing or token, retries, throttling, error bodies.

Every attempt sent is paid from the account's budget (`budget.Account`). Errors as Huawei Cloud
"SparkRTC API Reference > 附录 > 状态码 / 错误码" describe them: HTTP 400 with
`{"error_code": "DATA.…", "error_msg": …}` is a wrong request (not retried); 408 and 5xx are
retried with backoff; the API gateway's APIGW.0308 (or HTTP 429) means throttled.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from yarl import URL

from monitord import redact, vendorjson
from monitord.errors import PollError
from monitord.http import Response, status_error
from monitord.sources.base import SourceContext
from monitord.sources.huawei_rtc import signer
from monitord.sources.huawei_rtc.budget import Account, TokenCache
from monitord.sources.huawei_rtc.config import HuaweiRtcConfig
from monitord.sources.huawei_rtc.parsing import parse_time

THROTTLE_CODES = ("APIGW.0308",)  # "The request is throttled" of Huawei's API gateway


class BudgetSpent(Exception):
    """No budget left for this call now; it stays due for a later poll."""


class _TokenRejected(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


Request = Callable[..., Awaitable[Response]]


class DataClient:
    def __init__(self, config: HuaweiRtcConfig, ctx: SourceContext, account: Account, tokens: TokenCache,
                 request: Request, scaled: Callable[[float], float], save_budget: Callable[[], None]) -> None:
        self.config = config
        self.ctx = ctx
        self.account = account
        self.tokens = tokens
        self._request = request
        self._scaled = scaled
        self._save_budget = save_budget
        self.requests: Counter[tuple[str, str]] = Counter()
        self.vendor_throttled = 0
        self.token_refreshes = 0
        self.allowance = self.sent = 0  # requests this poll may send / has sent

    async def get(self, api: str, path: str, query: dict[str, str]) -> dict[str, Any]:
        """One data request under the budget, with retries for 408/5xx/connection errors and one
        token renewal on 401/403; every attempt sent is paid from the budget. Raises
        BudgetSpent before sending anything when the budget is gone."""
        attempts = self.config.retry_attempts
        last_error: PollError | None = None
        attempt = 0
        renewed = False
        while True:
            if self.sent >= self.allowance or not self.account.take(self.ctx.clock()):
                if last_error is None:
                    raise BudgetSpent
                raise last_error  # no budget left to retry with
            self.sent += 1
            self._save_budget()
            try:
                answer = await self._send(path, query)
                self.requests[(api, "ok")] += 1
                self.account.throttle_streak = 0
                return answer
            except _TokenRejected as rejected:
                self.requests[(api, "auth")] += 1
                if renewed:
                    raise PollError("auth", f"{rejected.url}: token rejected right after renewal") from None
                # Tokens can be revoked before their expiry: renew once, then believe the answer.
                renewed = True
                self.tokens.token = None
                last_error = PollError("auth", f"{rejected.url}: token rejected")
            except PollError as exc:
                self.requests[(api, exc.reason)] += 1
                attempt += 1
                if not exc.retryable or attempt >= attempts:
                    raise
                last_error = exc
                delay = self._scaled(self.config.retry_base_delay) * 2 ** (attempt - 1)
                await asyncio.sleep(random.uniform(0, delay))

    async def _send(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        base = URL(self.config.endpoint)
        resource_path = base.path.rstrip("/") + path
        pairs = sorted((k, v) for k, v in query.items())
        host = base.raw_authority
        if self.config.auth == "aksk":
            assert self.config.ak is not None and self.config.sk is not None
            headers, uri = signer.sign(
                method="GET",
                host=host,
                resource_path=resource_path,
                query=pairs,
                headers={"X-Project-Id": self.config.project_id},
                body=b"",
                access_key=self.config.ak.get_secret_value(),
                secret_key=self.config.sk.get_secret_value(),
                when=datetime.fromtimestamp(self.ctx.clock(), UTC).replace(tzinfo=None),
            )
        else:
            token = await self._token()
            uri = resource_path + ("?" + signer.canonical_query(pairs) if pairs else "")
            headers = {"X-Auth-Token": token, "Host": host}
        url = URL(f"{base.scheme}://{host}{uri}", encoded=True)
        resp = await self._request("GET", url, headers=headers)
        if resp.status in (401, 403) and self.config.auth == "token":
            raise _TokenRejected(resp.url)
        return self._check(resp)

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
            self.vendor_throttled += 1
            self.account.throttled(self.ctx.clock())
            raise PollError("throttled", f"{resp.url}: HTTP {resp.status} {msg or ''}".strip(), code)
        err = status_error(resp.status, resp.url)
        if isinstance(code, str) and resp.status == 400:
            # DATA.* and RTC.* answers: the request is wrong; a vendor error, not a transport one.
            raise PollError("vendor_error", f"{resp.url}: {msg or 'rejected'}", code)
        raise PollError(err.reason, err.detail + (f": {msg}" if isinstance(msg, str) else ""), code)

    async def _token(self) -> str:
        cache = self.tokens
        async with cache.lock:
            now = self.ctx.clock()
            if cache.token and now < cache.expires - self.config.token_refresh_before:
                return cache.token
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
            resp = await self._request("POST", f"{c.iam_url}/v3/auth/tokens", json_body=body)
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
            redact.register_token(token)  # a vendor that quotes the request would quote X-Auth-Token
            cache.token, cache.expires = token, expires_at
            return token
