"""The vendor layer's call pipeline over real HTTP on 127.0.0.1: the target's client, the three
auth strategies with the "renew once, then believe the vendor" rule, the retry policy (reasons,
statuses never retried, attempts, the poll deadline) and pacing around each attempt."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from monitord.config import HTTPClientConfig, TLSConfig
from monitord.errors import PollError
from monitord.http import HttpClient, Response
from monitord.vendor import deadline
from monitord.vendor.auth import LoginSession, Signer, Token, TokenAuth, TokenCache
from monitord.vendor.caller import Caller, raise_for_status
from monitord.vendor.client import Request, VendorClient
from monitord.vendor.pacing import BanHold, BudgetSpent, SlidingBudget
from monitord.vendor.retry import NEVER, RetryPolicy


class Vendor:
    """A tiny vendor: /data answers from a script of statuses (then 200), and checks a token,
    a session or a signature when asked to."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.hits: list[dict[str, str]] = []
        self.valid_tokens: set[str] = set()
        self.sessions: set[str] = set()
        self.logins = 0
        self.logouts: list[str] = []
        self.issued = 0
        self.want: str = ""  # "", "token", "session", "signature"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/data", self.data)
        app.router.add_post("/token", self.token)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        return app

    async def data(self, request: web.Request) -> web.Response:
        self.hits.append({"token": request.headers.get("X-Token", ""), "session": request.cookies.get("sid", ""),
                          "sig": request.query.get("sig", "")})
        if self.want == "token" and request.headers.get("X-Token") not in self.valid_tokens:
            return web.json_response({"error": "bad token"}, status=401)
        if self.want == "session" and request.cookies.get("sid") not in self.sessions:
            return web.json_response({"error": "no session"}, status=401)
        if self.want == "signature" and request.query.get("sig") != "good":
            return web.json_response({"error": "bad signature"}, status=403)
        if self.script:
            return web.Response(status=self.script.pop(0), text="nope")
        return web.json_response({"value": 42})

    async def token(self, request: web.Request) -> web.Response:
        self.issued += 1
        value = f"tok-{self.issued}"
        self.valid_tokens.add(value)
        return web.json_response({"token": value})

    async def login(self, request: web.Request) -> web.Response:
        self.logins += 1
        sid = f"s{self.logins}"
        self.sessions.add(sid)
        return web.json_response({"sid": sid})

    async def logout(self, request: web.Request) -> web.Response:
        sid = (await request.json())["sid"]
        self.logouts.append(sid)
        self.sessions.discard(sid)
        return web.json_response({})


@pytest.fixture
async def vendor(aiohttp_server: Any) -> Any:
    v = Vendor()
    server = await aiohttp_server(v.app())
    http = HttpClient(HTTPClientConfig(), 1 << 20)
    client = VendorClient(http, tls=TLSConfig(), target="t1")
    yield v, client, f"http://127.0.0.1:{server.port}"
    await http.close()


def value(resp: Response) -> int:
    resp.raise_for_status()
    v = resp.json_object()["value"]
    assert isinstance(v, int)
    return v


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def test_the_client_counts_every_request_and_keeps_the_query_out_of_errors(vendor: Any) -> None:
    v, client, base = vendor
    assert await Caller(client).call(Request("GET", f"{base}/data"), value) == 42
    v.script = [500]
    with pytest.raises(PollError) as err:
        await Caller(client).call(Request("GET", f"{base}/data", params={"secret": "s3cr3t"}), value)
    assert err.value.reason == "http_5xx" and "s3cr3t" not in str(err.value)
    assert client.sent == 2 and client.http.requests["t1"] == 2


async def test_retryable_failures_are_retried_with_backoff_up_to_the_attempts(vendor: Any) -> None:
    v, client, base = vendor
    sleeps = Sleeps()
    caller = Caller(client, retry=RetryPolicy(attempts=3, base_delay=1.0, max_delay=1.5), sleep=sleeps,
                    rng=random.Random(7), time_scale=2.0)
    v.script = [502, 503]
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42
    assert len(v.hits) == 3 and caller.retries == 2
    # Full jitter under the cap (1 s, then min(1.5, 2) s), divided by the time scale.
    assert len(sleeps.calls) == 2 and 0 <= sleeps.calls[0] <= 0.5 and 0 <= sleeps.calls[1] <= 0.75
    v.script = [500, 500, 500]
    with pytest.raises(PollError) as err:
        await caller.call(Request("GET", f"{base}/data"), value)
    assert err.value.reason == "http_5xx" and len(v.hits) == 6


async def test_statuses_the_vendor_says_never_to_retry_and_other_reasons_are_not_retried(vendor: Any) -> None:
    v, client, base = vendor
    sleeps = Sleeps()
    caller = Caller(client, retry=RetryPolicy(attempts=5, never_statuses=frozenset({503})), sleep=sleeps)
    v.script = [503]
    with pytest.raises(PollError):
        await caller.call(Request("GET", f"{base}/data"), value)
    v.script = [404]
    with pytest.raises(PollError) as err:
        await caller.call(Request("GET", f"{base}/data"), value)
    assert err.value.reason == "http_4xx" and len(v.hits) == 2 and sleeps.calls == []
    v.script = [502]  # 502 is not on the vendor's list: retried
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42 and len(v.hits) == 4


async def test_no_retry_waits_past_the_poll_deadline(vendor: Any) -> None:
    v, client, base = vendor
    sleeps = Sleeps()
    caller = Caller(client, retry=RetryPolicy(attempts=3, base_delay=100.0, max_delay=100.0), sleep=sleeps,
                    rng=random.Random(1))
    v.script = [500, 500]
    with deadline.poll_deadline(5.0), pytest.raises(PollError) as err:
        await caller.call(Request("GET", f"{base}/data"), value)
    # random.Random(1) draws well above 5 s of 100: the real failure, at once, not a timeout.
    assert err.value.reason == "http_5xx" and len(v.hits) == 1 and sleeps.calls == []
    assert deadline.remaining() is None


async def test_connection_failures_are_retried_and_keep_their_reason(unused_tcp_port: int) -> None:
    http = HttpClient(HTTPClientConfig(), 1024)
    client = VendorClient(http, tls=TLSConfig(), target="t")
    sleeps = Sleeps()
    caller = Caller(client, retry=RetryPolicy(attempts=2), sleep=sleeps)
    with pytest.raises(PollError) as err:
        await caller.call(Request("GET", f"http://127.0.0.1:{unused_tcp_port}/data"), value)
    await http.close()
    assert err.value.reason == "connect" and client.sent == 2 and len(sleeps.calls) == 1


def token_auth(client: VendorClient, base: str, cache: TokenCache, clock: Callable[[], float]) -> TokenAuth:
    async def fetch() -> Token:
        resp = raise_for_status(await client.send(Request("POST", f"{base}/token")))
        return Token(str(resp.json_object()["token"]), clock() + 3600)

    return TokenAuth(cache, fetch, lambda r, t: r.with_headers(**{"X-Token": t}), clock=clock, refresh_before=60)


async def test_a_token_is_shared_renewed_once_on_rejection_then_the_vendor_is_believed(vendor: Any) -> None:
    v, client, base = vendor
    v.want = "token"
    now = [1000.0]
    cache = TokenCache()
    auth = token_auth(client, base, cache, lambda: now[0])
    caller = Caller(client, auth=auth)
    other = Caller(client, auth=token_auth(client, base, cache, lambda: now[0]))
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42
    assert await other.call(Request("GET", f"{base}/data"), value) == 42
    assert v.issued == 1 and cache.fetches == 1  # one token for both
    v.valid_tokens.clear()  # revoked before its expiry
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42
    assert v.issued == 2 and caller.renewals == 1 and [h["token"] for h in v.hits[-2:]] == ["tok-1", "tok-2"]
    assert await other.call(Request("GET", f"{base}/data"), value) == 42 and v.issued == 2
    now[0] += 3600 - 59  # inside refresh_before: renewed ahead of expiry, no rejection needed
    assert await other.call(Request("GET", f"{base}/data"), value) == 42 and v.issued == 3
    v.script = [401]  # rejected right after a renewal as well: that is the answer
    v.valid_tokens.clear()
    hits = len(v.hits)
    with pytest.raises(PollError) as err:
        await caller.call(Request("GET", f"{base}/data"), value)
    assert err.value.reason == "auth" and len(v.hits) == hits + 2 and v.issued == 4 and caller.renewals == 2


async def test_a_login_session_logs_the_old_session_out_before_logging_in_again(vendor: Any) -> None:
    v, client, base = vendor
    v.want = "session"

    async def login() -> str:
        resp = raise_for_status(await client.send(Request("POST", f"{base}/login")))
        return str(resp.json_object()["sid"])

    async def logout(sid: str) -> None:
        raise_for_status(await client.send(Request("POST", f"{base}/logout", json_body={"sid": sid})))

    session = LoginSession(login, logout, lambda r, sid: r.with_headers(Cookie=f"sid={sid}"))
    caller = Caller(client, auth=session, retry=RetryPolicy(attempts=3), sleep=Sleeps())
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42
    assert v.logins == 1
    v.sessions.clear()  # the device dropped it
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42
    assert v.logouts == ["s1"] and v.logins == 2 and caller.renewals == 1
    await session.close()
    assert v.logouts == ["s1", "s2"] and session.session is None
    await session.close()  # nothing left to log out
    assert v.logouts == ["s1", "s2"]


async def test_a_failed_logout_is_counted_and_the_login_goes_ahead(vendor: Any, unused_tcp_port: int) -> None:
    v, client, base = vendor
    v.want = "session"

    async def login() -> str:
        return str(raise_for_status(await client.send(Request("POST", f"{base}/login"))).json_object()["sid"])

    async def logout(sid: str) -> None:
        raise_for_status(await client.send(Request("POST", f"http://127.0.0.1:{unused_tcp_port}/logout")))

    session = LoginSession(login, logout, lambda r, sid: r.with_headers(Cookie=f"sid={sid}"))
    caller = Caller(client, auth=session)
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42
    v.sessions.clear()
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42
    assert session.logout_failures == 1 and v.logins == 2


async def test_a_rejected_signature_is_believed_at_once(vendor: Any) -> None:
    v, client, base = vendor
    v.want = "signature"
    good = Signer(lambda r: r.with_params({"sig": "good"}))
    assert await Caller(client, auth=good).call(Request("GET", f"{base}/data"), value) == 42
    bad = Caller(client, auth=Signer(lambda r: r.with_params({"sig": "bad"})), retry=RetryPolicy(attempts=3))
    with pytest.raises(PollError) as err:
        await bad.call(Request("GET", f"{base}/data", params={"q": "1"}), value)
    assert err.value.reason == "auth" and len(v.hits) == 2 and bad.renewals == 0


async def test_pacing_admits_every_attempt_and_observes_its_outcome(vendor: Any) -> None:
    v, client, base = vendor
    now = [0.0]
    budget = SlidingBudget(3, 60.0, clock=lambda: now[0], backoff=10.0)
    ban = BanHold(30.0, clock=lambda: now[0], what="test polling")
    caller = Caller(client, retry=RetryPolicy(attempts=3), pacing=(budget,), sleep=Sleeps())
    v.script = [500]
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42
    assert budget.used() == 2  # the retry was paid from the budget too
    v.script = [500, 500]
    with pytest.raises(PollError):  # one attempt left in the budget: the last real failure
        await caller.call(Request("GET", f"{base}/data"), value)
    with pytest.raises(BudgetSpent):
        await caller.call(Request("GET", f"{base}/data"), value)
    assert len(v.hits) == 3
    v.script = [429]
    banned = Caller(client, pacing=(ban,))
    with pytest.raises(PollError) as err:
        await banned.call(Request("GET", f"{base}/data"), value)
    assert err.value.reason == "throttled" and ban.active()
    with pytest.raises(PollError) as err:
        await banned.call(Request("GET", f"{base}/data"), value)
    assert "test polling paused" in str(err.value) and len(v.hits) == 4
    now[0] += 30.0
    assert await banned.call(Request("GET", f"{base}/data"), value) == 42


async def test_a_bug_in_parse_is_not_retried_or_swallowed(vendor: Any) -> None:
    v, client, base = vendor

    def broken(resp: Response) -> int:
        raise KeyError("value")

    with pytest.raises(KeyError):
        await Caller(client, retry=RetryPolicy(attempts=3)).call(Request("GET", f"{base}/data"), broken)
    assert len(v.hits) == 1


def test_retry_policy_rules() -> None:
    policy = RetryPolicy(attempts=2, never_statuses=frozenset({503}))
    err5, err4 = PollError("http_5xx", "x"), PollError("http_4xx", "x")
    assert policy.retries(err5, 500, 1) and policy.retries(err5, None, 1)
    assert not policy.retries(err5, 500, 2) and not policy.retries(err5, 503, 1) and not policy.retries(err4, 400, 1)
    assert not NEVER.retries(err5, 500, 1)
    rng = random.Random(3)
    assert all(0 <= RetryPolicy(base_delay=1, max_delay=3).backoff(a, rng) <= min(3, 2 ** (a - 1)) for a in range(1, 8))
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)


async def run(coro: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(coro, 10)


class Edge(random.Random):
    """An rng that always draws one end of the range."""

    def __init__(self, upper: bool) -> None:
        super().__init__(0)
        self.upper = upper

    def uniform(self, a: float, b: float) -> float:
        return b if self.upper else a


def test_backoff_doubles_from_the_base_up_to_the_cap_and_jitters_down_to_zero() -> None:
    policy = RetryPolicy(attempts=9, base_delay=0.5, max_delay=3.0)
    assert [policy.backoff(a, Edge(True)) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.backoff(4, Edge(False)) == 0.0
    for fine in (RetryPolicy(attempts=1), RetryPolicy(base_delay=0.0, max_delay=0.0), RetryPolicy(max_delay=0.5)):
        assert fine.attempts >= 1
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(max_delay=-0.5)


async def test_the_sleep_between_tries_is_the_backoff_under_the_time_scale(vendor: Any) -> None:
    v, client, base = vendor
    sleeps = Sleeps()
    caller = Caller(client, retry=RetryPolicy(attempts=3, base_delay=2.0), sleep=sleeps, rng=Edge(True))
    v.script = [500, 500]
    assert await caller.call(Request("GET", f"{base}/data"), value) == 42
    assert sleeps.calls == [2.0, 4.0] and caller.retries == 2


async def test_a_rejected_token_request_is_not_renewed_or_retried(vendor: Any) -> None:
    v, client, base = vendor
    fetches = 0

    async def fetch() -> Token:
        nonlocal fetches
        fetches += 1
        raise PollError("auth", "IAM token request rejected (HTTP 401)")

    auth = TokenAuth(TokenCache(), fetch, lambda r, t: r.with_headers(**{"X-Token": t}), clock=lambda: 0.0)
    caller = Caller(client, auth=auth, retry=RetryPolicy(attempts=3), sleep=Sleeps())
    with pytest.raises(PollError, match="IAM token request rejected"):
        await caller.call(Request("GET", f"{base}/data"), value)
    assert fetches == 1 and caller.renewals == 0 and v.hits == []


async def test_a_token_is_renewed_exactly_at_its_refresh_point(vendor: Any) -> None:
    v, client, base = vendor
    v.want = "token"
    now = [1000.0]
    cache = TokenCache()
    auth = token_auth(client, base, cache, lambda: now[0])  # expires 3600 s after issue, refresh 60 s before
    assert (await auth.token()).value == "tok-1"
    now[0] = 1000.0 + 3600 - 60 - 0.001
    assert (await auth.token()).value == "tok-1"
    now[0] = 1000.0 + 3600 - 60
    assert (await auth.token()).value == "tok-2" and cache.fetches == 2


async def test_a_stale_rejection_does_not_end_a_newer_session(vendor: Any) -> None:
    v, client, base = vendor
    logouts: list[str] = []
    logins = iter(["s1", "s2"])

    async def login() -> str:
        return next(logins)

    async def logout(sid: str) -> None:
        logouts.append(sid)

    session = LoginSession(login, logout, lambda r, sid: r)
    first = await session.current()
    await session.renew(first)
    second = await session.current()
    await session.renew(first)  # a call that used s1 learns of its rejection late
    assert await session.current() == second == "s2" and logouts == ["s1"] and session.logins == 2


async def test_the_client_sends_form_bodies_and_enforces_a_request_size_limit(aiohttp_server: Any) -> None:
    async def echo(request: web.Request) -> web.Response:
        form = await request.post()
        return web.Response(text="x" * int(str(form["n"])))

    app = web.Application()
    app.router.add_post("/echo", echo)
    server = await aiohttp_server(app)
    http = HttpClient(HTTPClientConfig(), 1 << 20)
    client = VendorClient(http, tls=TLSConfig(), target="t")
    url = f"http://127.0.0.1:{server.port}/echo"
    try:
        assert (await client.send(Request("POST", url, data={"n": "10"}))).body == b"x" * 10
        with pytest.raises(PollError) as err:
            await client.send(Request("POST", url, data={"n": "100"}, max_bytes=50))
        assert err.value.reason == "too_large"
    finally:
        await http.close()


async def test_a_failed_logout_is_logged_once_with_its_reason(vendor: Any, unused_tcp_port: int,
                                                              captured_logs: Any) -> None:
    v, client, base = vendor

    async def login() -> str:
        return "s"

    async def logout(sid: str) -> None:
        await client.send(Request("POST", f"http://127.0.0.1:{unused_tcp_port}/logout", json_body={"sid": sid}))

    session = LoginSession(login, logout, lambda r, sid: r, target="dev1")
    for _ in range(2):
        await session.current()
        await session.invalidate()
    assert session.logout_failures == 2 and session.logins == 2 and client.sent == 2
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    failed = [line for line in lines if line.get("event") == "logout_failed"]
    assert len(failed) == 2 and failed[0]["reason"] == "connect" and failed[0]["target"] == "dev1"
