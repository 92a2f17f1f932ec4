"""Recording event callbacks that Huawei POSTs to /api/v1/targets/{target}/record-events.

Huawei Cloud "SparkRTC API Reference > 附录 > 接收增值(录制)事件回调通知内容" describes the body
(event_type RECORD_NEW_FILE_START | RECORD_FILE_COMPLETE | CLOUD_RECORD_SERVER_OVER, app_id,
record_duration, ...). Counted per app and type and persisted; apps that are not configured
count as "other", so the label stays bounded whatever callers send.
"""

from __future__ import annotations

import hmac
import math
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

OTHER_APP = "other"  # recording callbacks of apps that are not configured
# record_duration is one file's length in seconds; a file longer than a week is not a recording
# but a broken or hostile caller, and would poison the duration counter for good.
MAX_RECORD_DURATION = 7 * 86400.0
REJECT_REASONS = ("bad_secret", "bad_body")


class CallbacksState(StateModel):
    """Recording callbacks received: events by app and type, recorded seconds by app, rejections."""

    events: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    duration: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    rejected: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class RecordCallbacks:
    def __init__(self, config: HuaweiRtcConfig, ctx: SourceContext) -> None:
        self.config = config
        self.ctx = ctx
        saved = ctx.state.load(config.name, "record-callbacks", CallbacksState)
        self.state: dict[str, Any] = (saved or CallbacksState()).model_dump()

    @property
    def enabled(self) -> bool:
        return self.config.callback_secret is not None

    def _save(self) -> None:
        self.ctx.state.save(self.config.name, "record-callbacks", CallbacksState, self.state)

    def _reject(self, reason: str, save: bool = False) -> None:
        self.state["rejected"][reason] = self.state["rejected"].get(reason, 0) + 1
        if save:
            self._save()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        cb = self.state
        secret = self.config.callback_secret
        if secret is None:
            raise web.HTTPNotFound(text="record callbacks are off: set callback_secret\n")
        given = request.headers.get(SECRET_HEADER) or request.query.get("secret")
        if not given:
            self._reject("bad_secret")
            raise web.HTTPUnauthorized(text="missing secret\n")
        if not _same(given, secret.get_secret_value()):
            self._reject("bad_secret")
            raise web.HTTPForbidden(text="wrong secret\n")
        try:
            body = vendorjson.loads(await request.read())
        except vendorjson.JSONError:
            body = None
        event_type = body.get("event_type") if isinstance(body, dict) else None
        app = body.get("app_id") if isinstance(body, dict) else None
        duration = norm.non_negative(body.get("record_duration")) if isinstance(body, dict) else norm.INVALID
        if isinstance(duration, float) and duration > MAX_RECORD_DURATION:
            duration = norm.INVALID
        if event_type not in RECORD_EVENT_TYPES or not isinstance(app, str) or not app or (duration is norm.INVALID):
            self._reject("bad_body", save=True)
            raise web.HTTPBadRequest(text="expected a JSON record event with app_id, a known event_type and, if "
                                      f"any, a record_duration of 0..{MAX_RECORD_DURATION:.0f} seconds\n")
        if app not in {a.id for a in self.config.apps}:
            # The label stays bounded by the config whatever the callers send.
            app = OTHER_APP
        previous = cb["duration"].get(app, 0.0)
        previous = float(previous) if isinstance(previous, int | float) and not isinstance(previous, bool) else 0.0
        total = previous + (duration if isinstance(duration, float) else 0.0)
        if not math.isfinite(total):
            # A counter must never become +Inf (nor be persisted as Infinity).
            self._reject("bad_body", save=True)
            raise web.HTTPBadRequest(text="record_duration would overflow the recorded duration\n")
        key = f"{app}\0{event_type}"
        cb["events"][key] = cb["events"].get(key, 0) + 1
        if event_type == "RECORD_FILE_COMPLETE" and isinstance(duration, float):
            cb["duration"][app] = total
        self._save()
        return web.json_response({"result": "ok"})

    def emit(self, out: SnapshotBuilder) -> None:
        if not self.enabled:
            return
        cb = self.state
        for reason in REJECT_REASONS:
            out.add(CALLBACK_REJECTED, float(cb["rejected"].get(reason, 0)), reason=reason)
        apps = (*(a.id for a in self.config.apps), OTHER_APP)
        events = {f"{a}\0{e}": 0 for a in apps for e in RECORD_EVENT_TYPES}
        events.update(cb["events"])
        for key, n in sorted(events.items()):
            app, event_type = key.split("\0", 1)
            out.add(RECORD_EVENTS, float(n), app=app, event_type=event_type)
        for app, seconds in sorted(cb["duration"].items()):
            out.add(RECORD_DURATION, float(seconds), app=app)
