"""Recording event callbacks that Huawei POSTs to /api/v1/targets/{target}/record-events.

Huawei Cloud "SparkRTC API Reference > 附录 > 接收增值(录制)事件回调通知内容" describes the body;
every field is optional. Counted per app and event type and persisted; apps that are not
configured count as "other", and so do event types not in that table, so labels stay bounded
whatever callers send.

Authenticity, either or both:
- the app's callback key (`auth_key` of "配置RTC增值(录制)事件回调", PUT
  /v2/apps/{app_id}/record-callback): Huawei's FAQ "如何对录制回调进行鉴权" adds X-Rtc-Rand,
  X-Rtc-Timestamp and X-Rtc-Signature = lower-case hex HMAC-SHA256(key, rand + timestamp + body).
  A timestamp further than `callback_max_skew` from now is stale; a signature seen within that
  window is a replay (bounded memory, persisted);
- a shared secret in the callback URL (`?secret=`) or header X-Monitord-Secret.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from monitord import normalize as norm
from monitord import vendorjson
from monitord.snapshot import SnapshotBuilder
from monitord.sources.base import SourceContext
from monitord.sources.huawei_rtc.config import SECRET_HEADER, HuaweiRtcConfig
from monitord.sources.huawei_rtc.metrics import CALLBACK_REJECTED, RECORD_DURATION, RECORD_EVENT_TYPES, RECORD_EVENTS
from monitord.state import StateModel
from monitord.vendor import StateFile

OTHER = "other"  # apps that are not configured, event types the vendor's table does not list
# record_duration is one file's length in seconds; a file longer than a week is not a recording
# but a broken or hostile caller, and would poison the duration counter for good.
MAX_RECORD_DURATION = 7 * 86400.0
REJECT_REASONS = ("bad_secret", "bad_signature", "stale", "replay", "bad_body")
# Signatures remembered against replays. Recording callbacks come a few per recorded file; more
# than this many within one skew window evicts the oldest (documented limit).
MAX_REPLAY_MEMORY = 4096
RAND_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "X-Rtc-Rand", "X-Rtc-Timestamp", "X-Rtc-Signature"
# X-Rtc-Timestamp is Unix time; the FAQ does not give the unit, so milliseconds are told apart
# from seconds by size (seconds pass 10**12 in the year 33658).
_MILLISECONDS_FROM = 10**12


class CallbacksState(StateModel):
    """Recording callbacks received: events by app and type, recorded seconds by app, rejections,
    and the signatures seen in the replay window (hash -> X-Rtc-Timestamp, Unix seconds)."""

    events: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    duration: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    rejected: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    seen: dict[str, float] = Field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, reason: str, status: type[web.HTTPException], text: str) -> None:
        super().__init__(reason)
        self.reason, self.status, self.text = reason, status, text


def signature(key: str, rand: str, timestamp: str, body: bytes) -> str:
    """X-Rtc-Signature as Huawei computes it (FAQ "如何对录制回调进行鉴权")."""
    content = rand.encode() + timestamp.encode() + body
    return hmac.new(key.encode(), content, hashlib.sha256).hexdigest()


def _timestamp(text: str) -> float | None:
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        return None
    n = int(text)
    return n / 1000.0 if n >= _MILLISECONDS_FROM else float(n)


class RecordCallbacks:
    def __init__(self, config: HuaweiRtcConfig, ctx: SourceContext, log: Any,
                 state_file: Callable[[str, type[CallbacksState]], StateFile[CallbacksState]]) -> None:
        self.config = config
        self.ctx = ctx
        self.log = log
        self.file = state_file("record-callbacks", CallbacksState)
        saved = self.file.load()
        self.state: dict[str, Any] = (saved or CallbacksState()).model_dump()
        self._refusing: str | None = None  # the reason of the last refusal, until one is accepted

    @property
    def enabled(self) -> bool:
        return self.config.callback_secret is not None or self.config.callback_key is not None

    def _save(self) -> None:
        self.file.save(self.state)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        if not self.enabled:
            raise web.HTTPNotFound(text="record callbacks are off: set callback_key or callback_secret\n")
        raw = await request.read()
        try:
            self._check_secret(request)
            self._check_signature(request, raw)
            app, event_type, duration = self._read(raw)
            self._count(app, event_type, duration)
        except _Refused as refused:
            rejected = self.state["rejected"]
            rejected[refused.reason] = rejected.get(refused.reason, 0) + 1
            self._save()
            if self._refusing != refused.reason:
                self._refusing = refused.reason
                self.log.warning("record_callback_refused", reason=refused.reason, peer=request.remote or "")
            raise refused.status(text=refused.text) from None
        if self._refusing is not None:
            self._refusing = None
            self.log.info("record_callback_accepted")
        self._save()
        return web.json_response({"result": "ok"})

    def _check_secret(self, request: web.Request) -> None:
        secret = self.config.callback_secret
        if secret is None:
            return
        given = request.headers.get(SECRET_HEADER) or request.query.get("secret")
        if not given:
            raise _Refused("bad_secret", web.HTTPUnauthorized, "missing secret\n")
        if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
            raise _Refused("bad_secret", web.HTTPForbidden, "wrong secret\n")

    def _check_signature(self, request: web.Request, raw: bytes) -> None:
        key = self.config.callback_key
        if key is None:
            return
        rand = request.headers.get(RAND_HEADER)
        stamp = request.headers.get(TIMESTAMP_HEADER)
        given = request.headers.get(SIGNATURE_HEADER)
        if not rand or not stamp or not given:
            raise _Refused("bad_signature", web.HTTPUnauthorized,
                           f"missing {RAND_HEADER}, {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}\n")
        expected = signature(key.get_secret_value(), rand, stamp, raw)
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise _Refused("bad_signature", web.HTTPForbidden, "wrong signature\n")
        when = _timestamp(stamp.strip())
        now = self.ctx.clock()
        window = float(self.config.callback_max_skew)
        if when is None or abs(now - when) > window:
            raise _Refused("stale", web.HTTPForbidden, f"{TIMESTAMP_HEADER} is not within {window:g}s of now\n")
        seen: dict[str, float] = self.state["seen"]
        for old in [k for k, t in seen.items() if abs(now - t) > window]:
            del seen[old]
        ident = hashlib.sha256(f"{rand}\0{stamp}\0{given.strip()}".encode()).hexdigest()[:24]
        if ident in seen:
            raise _Refused("replay", web.HTTPForbidden, "callback already received\n")
        while len(seen) >= MAX_REPLAY_MEMORY:
            del seen[min(seen, key=seen.__getitem__)]
        seen[ident] = when

    def _read(self, raw: bytes) -> tuple[str, str, float | None]:
        try:
            body = vendorjson.loads(raw)
        except vendorjson.JSONError:
            body = None
        if not isinstance(body, dict):
            raise _Refused("bad_body", web.HTTPBadRequest, "expected a JSON object\n")
        duration = norm.non_negative(body.get("record_duration"))
        if duration is norm.INVALID or (isinstance(duration, float) and duration > MAX_RECORD_DURATION):
            raise _Refused("bad_body", web.HTTPBadRequest,
                           f"record_duration, when given, is 0..{MAX_RECORD_DURATION:.0f} seconds\n")
        app, event_type = body.get("app_id"), body.get("event_type")
        # The label stays bounded by the config and the vendor's table whatever the callers send.
        app = app if isinstance(app, str) and app in {a.id for a in self.config.apps} else OTHER
        event_type = event_type if event_type in RECORD_EVENT_TYPES else OTHER
        return app, event_type, duration if isinstance(duration, float) else None

    def _count(self, app: str, event_type: str, duration: float | None) -> None:
        cb = self.state
        if event_type == "RECORD_FILE_COMPLETE" and duration is not None:
            previous = cb["duration"].get(app, 0.0)
            total = float(previous) + duration
            if not math.isfinite(total):
                # A counter must never become +Inf (nor be persisted as Infinity).
                raise _Refused("bad_body", web.HTTPBadRequest,
                               "record_duration would overflow the recorded duration\n")
            cb["duration"][app] = total
        key = f"{app}\0{event_type}"
        cb["events"][key] = cb["events"].get(key, 0) + 1

    def emit(self, out: SnapshotBuilder) -> None:
        if not self.enabled:
            return
        cb = self.state
        for reason in REJECT_REASONS:
            out.add(CALLBACK_REJECTED, float(cb["rejected"].get(reason, 0)), reason=reason)
        apps = (*(a.id for a in self.config.apps), OTHER)
        events = {f"{a}\0{e}": 0 for a in apps for e in (*RECORD_EVENT_TYPES, OTHER)}
        events.update(cb["events"])
        for key, n in sorted(events.items()):
            app, event_type = key.split("\0", 1)
            out.add(RECORD_EVENTS, float(n), app=app, event_type=event_type)
        for app, seconds in sorted(cb["duration"].items()):
            out.add(RECORD_DURATION, float(seconds), app=app)
