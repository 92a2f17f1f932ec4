"""Simulated Polyv live API: GET /live/v3/channel/monitor/list-tencent-stream-info (保利威 "直播 API >
频道管理 > 查询频道的直播推流信息"; limits from "API调用频率限制", signing from "签名生成规则").

Enforced as the vendor documents it, in the order a gateway would:
- the domain-wide limit: at most `rate_limit` (1500) requests per `rate_window` (10 s) per client
  IP; the request over it and every request in the `ban_seconds` (300) after it get the
  vendor's rate-limit body `{"code":500,"status":"fail","message":"qps exceeds number of calls"}`;
- required parameters appId, timestamp, channelId, sign;
- a known appId; a 13-digit millisecond timestamp within 3 minutes of the simulator's clock;
- the sign: MD5, or SHA-256 with signatureMethod=SHA256, over every non-blank parameter but
  sign, sorted by key, wrapped in the appSecret; a repeated signatureNonce is refused;
- startTime no older than 7 days;
- the channel must exist and be live ("channel status not live" otherwise).
Error bodies are the envelope of Polyv "直播 API > 全局错误说明" (code 40X with status "error" for a
request field that failed validation, 500 with status "fail" for a business error) with the
error object this API's page documents ("Error参数描述": `error.code`, `error.desc`, "状态码非200时的
错误信息"): {"code", "status", "message", "error": {"code", "desc"}, "data": ""}. The page's own
examples ("查询频道的直播推流信息 > 异常示例") carry no error object; knob error_form picks
"documented" (both, the default), "message_only" (the examples' form) or "error_only" (an empty
message, the text only in error.desc). Messages from the documented vocabulary ("全局错误说明 >
Message 详细信息解释对照表" and the examples): "invalid signature.", "channel status not live",
"qps exceeds number of calls", "param should not be empty: <name>"; the others ("appId is
illegal.", "timestamp expired.", "channel not found.", ...) are ours, as are the numeric
error.code values (the vendor publishes no table of them). Errors are answered with the HTTP
status equal to `code` (knob: error_http_status).

Times come from the injectable clock. Points are 10 s apart, `time` in China Standard Time with
milliseconds, `timestamp` null as in the API page's success example (knob: with_timestamp). Each channel is
live for 25 minutes of every 30 (phase from its name) unless a knob pins it.

Vendor knobs, POST /_sim/polyv (JSON, all optional):
  {"scenario": "live" | "fixed", "channel": "3880533", "live": true | false | null,
   "exists": bool, "error": "message" | null, "streams": 2, "with_timestamp": bool,
   "timestamp_skew": 30 (seconds the epoch `timestamp` runs ahead of `time`),
   "bad_points": true (adds malformed entries to every answer),
   "error_http_status": "mirror" | "200", "error_form": "documented" | "message_only" | "error_only",
   "rate_limit": 1500, "rate_window": 10,
   "ban_seconds": 300, "unban": true, "accounts": {"appId": "appSecret"},
   "stalled": true | false}
`channel` scopes live / exists / error / streams / stalled to one channel; without it they apply
to all. `stalled: true` freezes the channel's push data at that moment: it stays live, but its
newest point stops advancing (a stalled push); `false` resumes it.

`create_app(time_scale=F)` divides the simulator's own timings by F (the rate window, the ban,
the 30-minute live cycle and the 10 s point step), to match `monitord demo --time-scale F`.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from monitord.simulators.base import Clock, make_app, read_knobs

API_PATH = "/live/v3/channel/monitor/list-tencent-stream-info"
DEFAULT_APP_ID = "simpolyv01"
DEFAULT_APP_SECRET = "sim-polyv-app-secret-0123456789ab"
SECOND_APP_ID = "simpolyv02"
SECOND_APP_SECRET = "sim-polyv-app-secret-fedcba987654"

RATE_LIMIT = 1500
RATE_WINDOW = 10.0
BAN_SECONDS = 300.0
TIMESTAMP_WINDOW_MS = 3 * 60 * 1000
HISTORY_LIMIT_MS = 7 * 86400 * 1000
DEFAULT_SPAN_MS = 3 * 3600 * 1000
POINT_STEP = 10.0
LIVE_PERIOD = 1800.0
LIVE_LENGTH = 1500.0
CST = timezone(timedelta(hours=8))

# Channels of the demo's "polyv-classes" account, pinned by default so the demo raises nothing on
# its own: 1000001 is a 24/7 channel (expected live always), 1000002 is inside today's class
# window, 1000003's class ended on schedule an hour ago (not live, not expected). Knobs
# (`live`, `stalled`) turn them into an interruption while expected live or a stalled push.
SCHEDULED_DEMO_CHANNELS = {"1000001": True, "1000002": True, "1000003": False}
DEMO_TIME_ZONE = "Asia/Shanghai"

MSG_BAD_SIGN = "invalid signature."
MSG_NOT_LIVE = "channel status not live"
MSG_QPS = "qps exceeds number of calls"
MSG_EMPTY = "param should not be empty: {}"
ERROR_FORMS = ("documented", "message_only", "error_only")
# error.code per message. The values are the simulator's own: Polyv documents the field
# ("错误代码,用于确定具体的错误原因") but publishes no table of its values, so the source must
# not depend on them (it reports them as the vendor code).
SIM_ERROR_CODES = {
    MSG_BAD_SIGN: 40001, MSG_NOT_LIVE: 40021, MSG_QPS: 50001, "appId is illegal.": 40002,
    "timestamp is illegal.": 40003, "timestamp expired.": 40004, "signatureNonce has been used.": 40005,
    "only the last 7 days can be queried.": 40011, "startTime or endTime is illegal.": 40012,
    "channel not found.": 40020,
}
SIM_OTHER_ERROR_CODE = 40099


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def expected_sign(query: dict[str, str], app_secret: str) -> str:
    """The simulator's own reading of the vendor's rule, written apart from the source's signer
    so that tests comparing the two are not comparing one function with itself."""
    kept = sorted((k, v) for k, v in query.items() if k != "sign" and v != "" and not v.isspace())
    text = app_secret + "".join(k + v for k, v in kept) + app_secret
    algorithm = "sha256" if query.get("signatureMethod", "").upper() == "SHA256" else "md5"
    return hashlib.new(algorithm, text.encode("utf-8")).hexdigest().upper()


def cst_text(unix: float) -> str:
    """Unix seconds -> "%Y-%m-%d %H:%M:%S.%ms" in China Standard Time, as Polyv writes `time`."""
    moment = datetime.fromtimestamp(unix, CST)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


@dataclass
class ChannelKnobs:
    live: bool | None = None
    exists: bool | None = None
    error: str | None = None
    streams: int | None = None
    stalled_at: float | None = None  # newest point time while the push is stalled


@dataclass
class PolyvSim:
    clock: Clock
    scenario: str = "live"
    accounts: dict[str, str] = field(default_factory=lambda: {DEFAULT_APP_ID: DEFAULT_APP_SECRET,
                                                              SECOND_APP_ID: SECOND_APP_SECRET})
    rate_limit: int = RATE_LIMIT
    rate_window: float = RATE_WINDOW
    ban_seconds: float = BAN_SECONDS
    with_timestamp: bool = False
    timestamp_skew: float = 0.0
    bad_points: bool = False
    error_http_status: str = "mirror"
    error_form: str = "documented"
    time_scale: float = 1.0
    # "" = every channel. The demo's scheduled channels start pinned (see demo_targets).
    knobs: dict[str, ChannelKnobs] = field(
        default_factory=lambda: {c: ChannelKnobs(live=live) for c, live in SCHEDULED_DEMO_CHANNELS.items()})
    recent: dict[str, deque[float]] = field(default_factory=dict)  # client IP -> request times
    banned_until: dict[str, float] = field(default_factory=dict)
    nonces: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    answered: int = 0
    sign_failures: int = 0
    throttled: int = 0
    bans: int = 0

    def knob(self, channel: str) -> ChannelKnobs:
        every = self.knobs.get("", ChannelKnobs())
        own = self.knobs.get(channel, ChannelKnobs())
        return ChannelKnobs(
            live=own.live if own.live is not None else every.live,
            exists=own.exists if own.exists is not None else every.exists,
            error=own.error if own.error is not None else every.error,
            streams=own.streams if own.streams is not None else every.streams,
            stalled_at=own.stalled_at if own.stalled_at is not None else every.stalled_at,
        )

    # ------------------------------------------------------------------------------ limits

    def admit(self, ip: str) -> bool:
        """Count one request of `ip`; False when it is banned or this request breaks the limit."""
        now = self.clock()
        if now < self.banned_until.get(ip, 0.0):
            return False
        times = self.recent.setdefault(ip, deque())
        while times and times[0] <= now - self.rate_window:
            times.popleft()
        times.append(now)
        if len(times) > self.rate_limit:
            self.banned_until[ip] = now + self.ban_seconds
            self.bans += 1
            times.clear()
            return False
        return True

    # ------------------------------------------------------------------------------- data

    def is_live(self, channel: str) -> bool:
        knob = self.knob(channel)
        if knob.live is not None:
            return knob.live
        if self.scenario == "fixed":
            return True
        period = LIVE_PERIOD / self.time_scale
        phase = (self.clock() + _unit(channel, "phase") * period) % period
        return phase < LIVE_LENGTH / self.time_scale

    def points(self, channel: str, start_ms: int, end_ms: int) -> list[Any]:
        out: list[Any] = self._points(channel, start_ms, end_ms)
        if self.bad_points:
            out += bad_points(self.clock())
        return out

    def _points(self, channel: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        if self.scenario == "fixed":
            return fixed_points()
        now = self.clock()
        period, step = LIVE_PERIOD / self.time_scale, POINT_STEP / self.time_scale
        phase = (now + _unit(channel, "phase") * period) % period
        knob = self.knob(channel)
        # A channel pinned live by the knob is one long session: its pushes do not restart.
        session_start = float("-inf") if knob.live else now - phase
        streams = knob.streams or 1
        first = max(start_ms / 1000.0, session_start)
        last = min(end_ms / 1000.0, now, knob.stalled_at if knob.stalled_at is not None else now)
        step_no = int(first // step) + (first % step > 0)
        out = []
        while step_no * step <= last:
            at = step_no * step + 0.443 / self.time_scale  # the vendor's points carry milliseconds
            if at <= last:
                for n in range(streams):
                    out.append(self._point(channel, n, at))
            step_no += 1
        return out

    def _point(self, channel: str, n: int, at: float) -> dict[str, Any]:
        u = _unit(channel, n, int(at // (POINT_STEP / self.time_scale)))
        return {
            "streamUrl": f"lv{channel}" + (f"_{n}" if n else ""),
            "bitRate": str(int(600_000 + u * 1_900_000)),
            "audioFrameRate": str(43 + int(u * 5)),
            "videoFrameRate": str(15 + int(u * 16)),
            "time": cst_text(at),
            "timestamp": int((at + self.timestamp_skew) * 1000) if self.with_timestamp else None,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "requests": self.requests, "answered": self.answered,
            "sign_failures": self.sign_failures, "throttled": self.throttled, "bans": self.bans,
            "banned_until": dict(self.banned_until), "rate_limit": self.rate_limit,
            "rate_window": self.rate_window, "ban_seconds": self.ban_seconds,
        }


def fixed_points() -> list[dict[str, Any]]:
    """The API page's example point ("成功示例"), an older point of the same stream (the newest must win), and a
    second stream whose URL carries a Tencent auth key in its query and whose values use the
    other forms the API has been seen to send (numbers, an epoch-ms `timestamp`)."""
    return [
        {"streamUrl": "recordf", "bitRate": "1157120", "audioFrameRate": "46", "videoFrameRate": "13",
         "time": "2023-04-07 09:45:24.443", "timestamp": None},
        {"streamUrl": "recordf", "bitRate": "998400", "audioFrameRate": "45", "videoFrameRate": "25",
         "time": "2023-04-07 09:45:14.443", "timestamp": None},
        {"streamUrl": "rtmp://push.sim.invalid/recordf/backup?txSecret=5f0c0ffee&txTime=643A1F00",
         "bitRate": 2048000, "audioFrameRate": 43, "videoFrameRate": 30,
         "time": "2023-04-07 09:45:20.000", "timestamp": 1680831920000},
    ]


def bad_points(now: float) -> list[Any]:
    """What a vendor format change would look like: an entry that is not an object, a point with
    an impossible time, and one with unreadable or "--" values."""
    return [
        "oops",
        {"streamUrl": "broken", "bitRate": "1157120", "audioFrameRate": "46", "videoFrameRate": "13",
         "time": "2023-13-45 99:00:00.000", "timestamp": None},
        {"streamUrl": "oddvalues", "bitRate": "fast", "audioFrameRate": "-3", "videoFrameRate": "--",
         "time": cst_text(now - 1), "timestamp": None},
    ]


SIM_KEY = web.AppKey("polyv_sim", PolyvSim)


def _answer(sim: PolyvSim, code: int, status: str, message: str, data: Any = "") -> web.Response:
    http_status = code if sim.error_http_status == "mirror" else 200
    body: dict[str, Any] = {"code": code, "status": status, "message": message}
    if sim.error_form != "message_only":
        body["error"] = {"code": SIM_ERROR_CODES.get(message, SIM_OTHER_ERROR_CODE), "desc": message}
        if sim.error_form == "error_only":
            body["message"] = ""
    body["data"] = data
    return web.json_response(body, status=http_status)


def _error(sim: PolyvSim, message: str) -> web.Response:
    return _answer(sim, 400, "error", message)


async def stream_info(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    sim.requests += 1
    if not sim.admit(request.remote or "?"):
        sim.throttled += 1
        return _answer(sim, 500, "fail", MSG_QPS)
    query = {k: v for k, v in request.query.items()}
    for name in ("appId", "timestamp", "channelId", "sign"):
        if not query.get(name, "").strip():
            return _error(sim, MSG_EMPTY.format(name))
    secret = sim.accounts.get(query["appId"])
    if secret is None:
        return _error(sim, "appId is illegal.")
    stamp = query["timestamp"]
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) == 13):
        return _error(sim, "timestamp is illegal.")
    if abs(int(stamp) - sim.clock() * 1000) > TIMESTAMP_WINDOW_MS:
        return _error(sim, "timestamp expired.")
    if query["sign"] != expected_sign(query, secret):
        sim.sign_failures += 1
        return _error(sim, MSG_BAD_SIGN)
    nonce = query.get("signatureNonce", "")
    if nonce:
        now = sim.clock()
        for old in [n for n, at in sim.nonces.items() if now - at > TIMESTAMP_WINDOW_MS / 1000]:
            del sim.nonces[old]
        if nonce in sim.nonces:
            return _error(sim, "signatureNonce has been used.")
        sim.nonces[nonce] = now
    now_ms = int(sim.clock() * 1000)
    try:
        start_ms = int(query["startTime"]) if query.get("startTime") else now_ms - DEFAULT_SPAN_MS
        end_ms = int(query["endTime"]) if query.get("endTime") else now_ms
    except ValueError:
        return _error(sim, "startTime or endTime is illegal.")
    if start_ms < now_ms - HISTORY_LIMIT_MS:
        return _error(sim, "only the last 7 days can be queried.")
    channel = query["channelId"]
    knob = sim.knob(channel)
    if knob.exists is False:
        return _error(sim, "channel not found.")
    if knob.error:
        return _error(sim, knob.error)
    if not sim.is_live(channel):
        return _error(sim, MSG_NOT_LIVE)
    sim.answered += 1
    return web.json_response({"code": 200, "status": "success", "message": "",
                              "data": sim.points(channel, start_ms, end_ms)})


async def control(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    body = await read_knobs(request, scenarios=("live", "fixed"))
    if "scenario" in body:
        sim.scenario = body["scenario"]
    if "error_http_status" in body:
        if body["error_http_status"] not in ("mirror", "200"):
            return web.json_response({"error": "error_http_status is mirror or 200"}, status=400)
        sim.error_http_status = body["error_http_status"]
    if "error_form" in body:
        if body["error_form"] not in ERROR_FORMS:
            return web.json_response({"error": f"error_form is one of {', '.join(ERROR_FORMS)}"}, status=400)
        sim.error_form = body["error_form"]
    for name in ("rate_limit",):
        if name in body:
            setattr(sim, name, int(body[name]))
    for name in ("rate_window", "ban_seconds"):
        if name in body:
            setattr(sim, name, float(body[name]))
    if "with_timestamp" in body:
        sim.with_timestamp = bool(body["with_timestamp"])
    if "bad_points" in body:
        sim.bad_points = bool(body["bad_points"])
    if "timestamp_skew" in body:
        sim.timestamp_skew = float(body["timestamp_skew"])
    if body.get("unban"):
        sim.banned_until.clear()
        sim.recent.clear()
    if "accounts" in body:
        sim.accounts = {str(k): str(v) for k, v in dict(body["accounts"]).items()}
    knob = sim.knobs.setdefault(str(body.get("channel", "")), ChannelKnobs())
    if "live" in body:
        knob.live = None if body["live"] is None else bool(body["live"])
    if "exists" in body:
        knob.exists = bool(body["exists"])
    if "error" in body:
        knob.error = body["error"] or None
    if "streams" in body:
        knob.streams = max(1, int(body["streams"]))
    if "stalled" in body:
        knob.stalled_at = sim.clock() if body["stalled"] else None
    return web.json_response(sim.describe())


def create_app(clock: Clock | None = None, scenario: str = "live", rate_limit: int = RATE_LIMIT,
               rate_window: float = RATE_WINDOW, ban_seconds: float = BAN_SECONDS,
               time_scale: float = 1.0) -> web.Application:
    sim = PolyvSim(clock=clock or Clock(), scenario=scenario, rate_limit=rate_limit,
                   rate_window=rate_window / time_scale, ban_seconds=ban_seconds / time_scale,
                   time_scale=time_scale)
    app = make_app(sim.describe)
    app[SIM_KEY] = sim
    app.router.add_get(API_PATH, stream_info)
    app.router.add_post("/_sim/polyv", control)
    return app


def demo_targets(base_url: str, now: float | None = None) -> list[dict[str, Any]]:
    """Two accounts sharing the daemon's one Polyv limiter and ban state. The events account's
    channels come and go on the simulator's cycle and have no schedule; the classes account has
    one channel of each schedule kind (SCHEDULED_DEMO_CHANNELS), its windows placed around the
    demo's start so that they hold for hours whenever the demo runs."""
    now = time.time() if now is None else now

    def window(start_hours: float, end_hours: float) -> dict[str, Any]:
        def local(hours: float) -> str:
            return datetime.fromtimestamp(now + hours * 3600, CST).strftime("%H:%M")
        return {"time_zone": DEMO_TIME_ZONE, "windows": [{"days": "mon-sun", "start": local(start_hours),
                                                          "end": local(end_hours)}]}

    return [
        {"name": "polyv-events", "source": "polyv", "url": base_url, "app_id": DEFAULT_APP_ID,
         "app_secret": DEFAULT_APP_SECRET, "channels": ["3880533", "2477096", "2272655"],
         "interval": "5s", "timeout": "4s"},
        {"name": "polyv-classes", "source": "polyv", "url": base_url, "app_id": SECOND_APP_ID,
         "app_secret": SECOND_APP_SECRET, "channels": list(SCHEDULED_DEMO_CHANNELS),
         "interval": "5s", "timeout": "4s",
         "expected_live": {"1000001": "always", "1000002": window(-1, 8), "1000003": window(-3, -1)}},
    ]

