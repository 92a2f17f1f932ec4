"""How a request proves who sends it, in three strategies with one rule.

- `Signer`: every request carries its own signature (Huawei AK/SK, Zego, Polyv). Nothing to
  renew: a rejected signature is believed at once.
- `TokenAuth`: a token fetched once and shared (`TokenCache`, from the daemon scope) by the
  targets of one user, refreshed ahead of its expiry (Huawei IAM, AVD).
- `LoginSession`: a session opened by a login and closed by a logout (conference endpoints,
  which have few session slots: an old session is always logged out before a new login).

The rule (monitord.vendor.caller applies it, a strategy only says whether it can renew): when
the vendor rejects the credential of a request (a PollError with reason "auth"), a renewable
credential is renewed once and the request sent again; a second rejection is the vendor's
answer and the poll fails with it. Credentials can be revoked before their expiry, so one
renewal is always worth it; more would hammer an identity service with a wrong password.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from monitord import logs, redact
from monitord.errors import PollError
from monitord.vendor.client import Request

S = TypeVar("S")


class Auth(Protocol):
    # Whether a rejected credential can be replaced by a new one (a token, a session).
    renewable: bool

    async def authorize(self, request: Request) -> tuple[Request, object]:
        """The request with its credential, and the credential itself (handed back to renew())."""
        ...

    async def renew(self, rejected: object) -> None:
        """Forget `rejected`: the next authorize() obtains a new credential."""
        ...

    async def close(self) -> None:
        """Give back what the vendor holds for us (log out)."""
        ...


class NoAuth:
    renewable = False

    async def authorize(self, request: Request) -> tuple[Request, object]:
        return request, None

    async def renew(self, rejected: object) -> None:
        return None

    async def close(self) -> None:
        return None


class Signer:
    """A signature computed per request from the request itself (and the clock)."""

    renewable = False

    def __init__(self, sign: Callable[[Request], Request]) -> None:
        self._sign = sign

    async def authorize(self, request: Request) -> tuple[Request, object]:
        return self._sign(request), None

    async def renew(self, rejected: object) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float  # unix seconds, from the vendor's answer


class TokenCache:
    """One token shared by every target that authenticates as the same identity (get it from
    the daemon scope: `Source.shared.get(name, TokenCache)`). Never persisted: a token is a
    secret and state files are not."""

    def __init__(self) -> None:
        self.token: Token | None = None
        self.fetches = 0  # tokens obtained since start (monitord_<source>_token_refreshes)
        self.lock = asyncio.Lock()


class TokenAuth:
    def __init__(
        self,
        cache: TokenCache,
        fetch: Callable[[], Awaitable[Token]],
        attach: Callable[[Request, str], Request],
        *,
        clock: Callable[[], float],
        refresh_before: float = 300.0,
    ) -> None:
        self.cache = cache
        self._fetch = fetch
        self._attach = attach
        self._clock = clock
        self._refresh_before = refresh_before

    renewable = True

    async def token(self) -> Token:
        cache = self.cache
        async with cache.lock:  # one fetch for all the targets that need it at the same moment
            held = cache.token
            if held is not None and self._clock() < held.expires_at - self._refresh_before:
                return held
            fresh = await self._fetch()
            redact.register_token(fresh.value)  # a vendor that quotes a request would quote it
            cache.token = fresh
            cache.fetches += 1
            return fresh

    async def authorize(self, request: Request) -> tuple[Request, object]:
        token = await self.token()
        return self._attach(request, token.value), token

    async def renew(self, rejected: object) -> None:
        async with self.cache.lock:
            # Another target may have renewed it already: only the rejected token is dropped.
            if self.cache.token is rejected:
                self.cache.token = None

    async def close(self) -> None:
        return None  # shared with other targets; it expires on its own


class LoginSession(Generic[S]):
    """A session of this target alone. Logged out before every new login (a device that keeps
    three stale sessions refuses the fourth) and on close."""

    renewable = True

    def __init__(
        self,
        login: Callable[[], Awaitable[S]],
        logout: Callable[[S], Awaitable[None]],
        attach: Callable[[Request, S], Request],
        *,
        target: str = "",
    ) -> None:
        self._login = login
        self._logout = logout
        self._attach = attach
        self.session: S | None = None
        self.logins = 0
        self.logout_failures = 0
        self._lock = asyncio.Lock()
        self._log = logs.get("monitord.vendor.auth", target=target)

    async def current(self) -> S:
        async with self._lock:
            if self.session is None:
                self.session = await self._login()
                self.logins += 1
            return self.session

    async def authorize(self, request: Request) -> tuple[Request, object]:
        session = await self.current()
        return self._attach(request, session), session

    async def renew(self, rejected: object) -> None:
        async with self._lock:
            if self.session is not None and self.session is rejected:
                await self._end()

    async def invalidate(self) -> None:
        """End the session now (the source learnt it is gone or wrong); the next call logs in."""
        async with self._lock:
            await self._end()

    async def close(self) -> None:
        await self.invalidate()

    async def _end(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        try:
            await self._logout(session)
        except PollError as exc:
            # The vendor may have dropped the session already; the login that follows says
            # whether the device is reachable at all, so this is counted, not fatal.
            self.logout_failures += 1
            self._log.info("logout_failed", reason=exc.reason)
