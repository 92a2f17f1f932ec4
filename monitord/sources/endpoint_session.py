"""Login sessions of Huawei conference endpoints (Huawei "TE10, TE20 会议电视终端 HTTP API 编程参考" >
登录认证流程介绍, 登录认证类).

A session is a `SessionID` cookie from WEB_RequestSessionIDAPI plus the acCSRFToken that
WEB_RequestCertificateAPI gives for user/password; every later call carries both, and
WEB_LogoutAPI ends it. A device grants a session only while it has a free slot, and it has few,
shared with people using its web UI; so (monitord.vendor.auth.LoginSession) the old session is
logged out before the next login and on close, and the session of a refused login, which holds
a slot but has no token to log out with, is tried again by the next login for up to a minute
instead of a new one being asked for.

A session opened during the current poll is never renewed in that poll: a device that refuses
a session the moment it was made refuses the account, and a second login would only take
another slot (`renewable` says which, per request).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from monitord import vendorjson
from monitord.errors import PollError
from monitord.http import Response
from monitord.vendor import LoginSession, Request, VendorClient

# The device's session lifetime is not documented; a session it has already dropped would make
# every later login with it fail, so the session of a refused login is reused only this long.
UNAUTHENTICATED_REUSE_SECONDS: Final = 60.0


@dataclass(eq=False)
class Session:
    cookie: str
    token: str
    poll: int  # the poll that opened it


class DeviceSessions(LoginSession[Session]):
    def __init__(self, client: VendorClient, url: str, username: str, password: Callable[[], str], *,
                 scaled: Callable[[float], float], target: str) -> None:
        super().__init__(self._open, self._end_session, self._attach, target=target)
        self._client = client
        self._url = url
        self._username = username
        self._password = password
        self._scaled = scaled
        self.poll = 0  # the source counts its polls here
        self._unauthenticated: str | None = None  # the cookie of a refused login
        self._unauthenticated_since = 0.0  # monotonic

    def action_url(self, action: str) -> str:
        return f"{self._url}/action.cgi?ActionID={action}"

    def _attach(self, request: Request, session: Session) -> Request:
        # Only a session of an earlier poll may have expired since; see the module docstring.
        self.renewable = session.poll != self.poll
        body = request.json_body if isinstance(request.json_body, dict) else {}
        return dataclasses.replace(request, json_body={**body, "acCSRFToken": session.token},
                                   headers={**(request.headers or {}), "Cookie": f"SessionID={session.cookie}"})

    async def _post(self, action: str, body: dict[str, Any] | None, cookie: str | None) -> Response:
        headers = {"Cookie": f"SessionID={cookie}"} if cookie else None
        resp = await self._client.send(Request("POST", self.action_url(action), json_body=body, headers=headers))
        resp.raise_for_status()
        return resp

    async def _session_id(self) -> str:
        """A session id: the one a refused login left (it holds a slot), or a new one."""
        age = time.monotonic() - self._unauthenticated_since
        if self._unauthenticated is not None and age < self._scaled(UNAUTHENTICATED_REUSE_SECONDS):
            return self._unauthenticated
        self._unauthenticated = None
        resp = await self._post("WEB_RequestSessionIDAPI", None, None)
        cookie = resp.cookies.get("SessionID")
        if not cookie:
            answer = maybe_envelope(resp)
            if answer is not None and answer.get("success") == 0:
                # The device checks for a free session slot before granting one.
                raise PollError("vendor_error", "WEB_RequestSessionIDAPI refused a session (all session "
                                                "slots taken?)", error_code(answer))
            raise PollError("bad_response", "WEB_RequestSessionIDAPI set no SessionID cookie")
        self._unauthenticated, self._unauthenticated_since = cookie, time.monotonic()
        return cookie

    async def _open(self) -> Session:
        cookie = await self._session_id()
        answer = envelope(await self._post("WEB_RequestCertificateAPI",
                                           {"user": self._username, "password": self._password()}, cookie))
        if answer.get("success") != 1:
            raise PollError("auth", "login rejected (WEB_RequestCertificateAPI)", error_code(answer))
        data = decode_data(answer.get("data"))
        token = data.get("acCSRFToken") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise PollError("bad_response", "WEB_RequestCertificateAPI returned no acCSRFToken")
        self._unauthenticated = None  # the session owns the cookie now
        return Session(cookie, token, self.poll)

    async def _end_session(self, session: Session) -> None:
        answer = maybe_envelope(await self._post("WEB_LogoutAPI", {"acCSRFToken": session.token}, session.cookie))
        if answer is not None and answer.get("success") == 0:
            # Usually a session the device dropped already: its slot is free anyway.
            raise PollError("vendor_error", "WEB_LogoutAPI refused", error_code(answer))


def envelope(resp: Response) -> dict[str, Any]:
    answer = resp.json_object()
    if answer.get("success") not in (0, 1):
        raise PollError("bad_response", f"{resp.url}: no success flag in the answer")
    return answer


def maybe_envelope(resp: Response) -> dict[str, Any] | None:
    """The JSON envelope of an answer whose body the protocol does not need, if it has one."""
    try:
        return envelope(resp)
    except PollError:
        return None


def error_code(answer: dict[str, Any]) -> int | None:
    error = answer.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        return int(error["code"])
    return None


def decode_data(data: Any) -> Any:
    """`data` is a JSON document inside a JSON string: decode it a second time."""
    if data is None or isinstance(data, dict | list):
        return data
    if not isinstance(data, str):
        raise PollError("bad_response", f"data is a {type(data).__name__}, not a JSON string")
    if not data.strip():
        return None
    try:
        return vendorjson.loads(data)
    except vendorjson.JSONError as exc:
        raise PollError("bad_response", f"data is not a JSON document we accept ({exc})") from None
