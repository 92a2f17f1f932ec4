"""What every vendor simulator shares: fault knobs, a control API, and a controllable clock.

Each simulator is an aiohttp app that speaks its vendor's contract (auth, signatures, errors,
paging, limits). On top of that, this module adds transport-level faults any vendor can show:

    POST /_sim/faults   {"latency": 2.5, "status": 503, "html": true, "truncated": true,
                          "garbage": true, "huge": true, "hang": true, "reset": true,
                          "match": "/d/room-2"}
    DELETE /_sim/faults  clears them
    GET /_sim/state      the simulator's knobs and state, as JSON (with `http_requests`: every
                         vendor request received so far)

`match` limits a fault to requests whose path and query contain that text (one device of many,
or one action of an API that names its action in the query).

`"echo": true` makes the simulator a vendor that quotes the request back in its error text: the
method, the path and query string as sent (percent-encoded) and decoded, the body as sent and the
Authorization / X-Auth-Token headers, in every vendor's message field at once (msg, message,
Message, error_msg, error.message), with HTTP `status` (default 200). The secret-leak tests use it.

Recorded answers and body overrides, for feeding the real client mutated real answers:

    GET /_sim/answers     {"recorded": {KEY: BODY_TEXT}}: the newest accepted (status < 400) answer per call
    POST /_sim/answers    {"rules": [{"match": "/room/list", "body": "...", "status": 200}]}
    DELETE /_sim/answers  clears rules and recordings

KEY is the request path plus the query parameter that names the call where a vendor has one
(`?ActionID=...`, `?Action=...`). A rule applies to requests whose KEY contains `match`, and only
after the simulator's own handler accepted the request (auth, signature, parameters): the body of
that accepted answer is replaced, so the client under test still has to authenticate for real.

Vendor-level knobs (a vendor error body, an expired session, a channel that is not live) live in
each simulator's own /_sim/ routes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTML_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>"
)
# Bigger than the default 4 MiB body cap of the daemon, so "huge" exercises the cap.
HUGE_BODY_BYTES = 6 * 1024 * 1024
HANG_SECONDS = 3600.0


@dataclass
class Faults:
    latency: float = 0.0
    status: int = 0
    html: bool = False
    truncated: bool = False
    garbage: bool = False
    huge: bool = False
    hang: bool = False
    echo: bool = False
    reset: bool = False  # the connection is reset (RST) instead of answered
    match: str = ""

    def replace_with(self, other: Faults) -> None:
        # In place: a running aiohttp app's state must not be reassigned.
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))

    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name != "match")


class Clock:
    """Wall time, or a fixed/advanced time for deterministic tests."""

    def __init__(self, fixed: float | None = None) -> None:
        self._fixed = fixed

    def __call__(self) -> float:
        return time.time() if self._fixed is None else self._fixed

    def set(self, value: float) -> None:
        self._fixed = value

    def advance(self, seconds: float) -> None:
        self._fixed = self() + seconds


@dataclass
class Answers:
    """Recorded accepted answers per call, and the body overrides that replace them."""

    recorded: dict[str, str] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)

    def rule_for(self, key: str) -> dict[str, Any] | None:
        return next((r for r in self.rules if r["match"] in key), None)


FAULTS_KEY = web.AppKey("faults", Faults)
ANSWERS_KEY = web.AppKey("answers", Answers)
REQUESTS_KEY: web.AppKey[list[int]] = web.AppKey("http_requests")
# Query parameters that name the API call where several calls share one path.
CALL_PARAMETERS = ("ActionID", "Action")


def call_key(request: web.Request) -> str:
    named = [f"{p}={request.query[p]}" for p in CALL_PARAMETERS if p in request.query]
    return request.path + ("?" + "&".join(named) if named else "")


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/_sim/"):
        return await handler(request)
    # Every vendor request, whatever its fate: tests compare what one process and its shards send.
    request.app[REQUESTS_KEY][0] += 1
    faults = request.app[FAULTS_KEY]
    if not faults.active() or (faults.match and faults.match not in request.path_qs):
        return await _answer(request, handler)
    if faults.hang:
        await asyncio.sleep(HANG_SECONDS)
    if faults.reset:
        _reset(request)
        # aiohttp drops the answer to a closed transport without complaint.
        return web.Response(status=500)
    if faults.latency:
        await asyncio.sleep(faults.latency)
    if faults.echo:
        return await _echo(request, faults.status or 200)
    if faults.status:
        body = HTML_ERROR_PAGE if faults.html else json.dumps({"error": f"simulated HTTP {faults.status}"})
        return web.Response(status=faults.status, text=body,
                            content_type="text/html" if faults.html else "application/json")
    if faults.html:
        return web.Response(status=200, text=HTML_ERROR_PAGE, content_type="text/html")
    if faults.garbage:
        return web.Response(status=200, body=b"\x00\xff garbage \xfe{{{", content_type="application/json")
    if faults.huge:
        return web.Response(status=200, body=b"[" + b"0," * (HUGE_BODY_BYTES // 2) + b"0]",
                            content_type="application/json")
    response = await _answer(request, handler)
    if faults.truncated and isinstance(response, web.Response) and response.body:
        whole = response.body
        if not isinstance(whole, bytes | bytearray):
            # A streamed Payload has no bytes to cut; none of the simulators answers with one.
            raise TypeError(f"cannot truncate a {type(whole).__name__} body")
        return web.Response(status=response.status, body=bytes(whole[: max(1, len(whole) // 2)]),
                            content_type=response.content_type)
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer, recorded when accepted, its body replaced when a rule says so."""
    response = await handler(request)
    if not isinstance(response, web.Response) or response.status >= 400:
        return response
    answers = request.app[ANSWERS_KEY]
    key = call_key(request)
    body = response.body
    if isinstance(body, bytes | bytearray):
        answers.recorded[key] = bytes(body).decode("utf-8", "replace")
    rule = answers.rule_for(key)
    if rule is None:
        return response
    headers = {k: v for k, v in response.headers.items()
               if k.lower() not in ("content-length", "content-type", "content-encoding")}
    replaced = web.Response(status=int(rule.get("status", response.status)), body=str(rule["body"]).encode(),
                            headers=headers, content_type="application/json")
    for name, morsel in response.cookies.items():  # a login's session cookie stays
        replaced.cookies[name] = morsel
    return replaced


async def _echo(request: web.Request, status: int) -> web.Response:
    """A vendor that quotes the request in its error text, in every vendor's message field."""
    body = await request.read()
    text = (f"echo: {request.method} {request.raw_path} query={dict(request.query)!r} "
            f"Authorization={request.headers.get('Authorization', '')} "
            f"X-Auth-Token={request.headers.get('X-Auth-Token', '')} "
            f"body={body.decode('utf-8', 'replace')}")
    answer = {"success": 0, "error": {"code": 49999, "message": text}, "ret": 49999, "code": 49999,
              "msg": text, "message": text, "Code": 300009999, "Message": text,
              "error_code": "ECHO.0001", "error_msg": text}
    return web.json_response(answer, status=status)


def _reset(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0: close() sends RST, as a crashing server or a middlebox does, not FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def read_json_object(request: web.Request) -> dict[str, Any] | None:
    """The request's JSON body if it is an object, else None (bad JSON, not an object, not UTF-8)."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


async def read_knobs(request: web.Request, scenarios: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object of a vendor-knob request; a 400 answer for anything else, including a
    `scenario` the simulator does not have."""
    body = await read_json_object(request)
    if body is None:
        raise _bad_knobs("JSON object expected")
    if scenarios and "scenario" in body and body["scenario"] not in scenarios:
        raise _bad_knobs(f"scenario is one of {', '.join(scenarios)}")
    return body


def _bad_knobs(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _get_state(request: web.Request) -> web.Response:
    describe = request.app.get(STATE_DESCRIBER_KEY)
    state = describe() if describe else {}
    return web.json_response({"faults": asdict(request.app[FAULTS_KEY]),
                              "http_requests": request.app[REQUESTS_KEY][0], **state})


async def _set_faults(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        faults = Faults(**body)
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": f"bad faults: {exc}"}, status=400)
    request.app[FAULTS_KEY].replace_with(faults)
    return web.json_response(asdict(faults))


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS_KEY].replace_with(Faults())
    return web.json_response(asdict(request.app[FAULTS_KEY]))


async def _get_answers(request: web.Request) -> web.Response:
    return web.json_response({"recorded": request.app[ANSWERS_KEY].recorded})


async def _set_answers(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    rules = body.get("rules") if body is not None else None
    if not isinstance(rules, list) or not all(
        isinstance(r, dict) and isinstance(r.get("match"), str) and isinstance(r.get("body"), str)
        and isinstance(r.get("status", 200), int) for r in rules
    ):
        return web.json_response({"error": "rules: a list of {match: str, body: str, status?: int}"}, status=400)
    request.app[ANSWERS_KEY].rules[:] = rules
    return web.json_response({"rules": len(rules)})


async def _clear_answers(request: web.Request) -> web.Response:
    answers = request.app[ANSWERS_KEY]
    answers.rules.clear()
    answers.recorded.clear()
    return web.json_response({"rules": 0})


STATE_DESCRIBER_KEY: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("state_describer")


def make_app(describe: Callable[[], dict[str, Any]] | None = None) -> web.Application:
    """A simulator app with the fault middleware and the /_sim/ control routes installed."""
    app = web.Application(middlewares=[fault_middleware])
    app[FAULTS_KEY] = Faults()
    app[ANSWERS_KEY] = Answers()
    app[REQUESTS_KEY] = [0]
    if describe is not None:
        app[STATE_DESCRIBER_KEY] = describe
    app.router.add_get("/_sim/state", _get_state)
    app.router.add_post("/_sim/faults", _set_faults)
    app.router.add_delete("/_sim/faults", _clear_faults)
    app.router.add_get("/_sim/answers", _get_answers)
    app.router.add_post("/_sim/answers", _set_answers)
    app.router.add_delete("/_sim/answers", _clear_answers)
    return app
