"""Simulated Huawei Cloud SparkRTC data APIs plus the IAM token endpoint (Huawei Cloud "SparkRTC API
Reference": 数据统计分析, 使用前必读 > 约束与限制, 如何调用API > 认证鉴权, 附录 > 状态码 / 错误码; IAM
"获取IAM用户Token(使用密码)").


What it enforces, like the real service:
- AK/SK: the SDK-HMAC-SHA256 signature is recomputed here from the request as received (method,
  raw path, raw query re-canonicalised, the headers named in SignedHeaders, the body), with its
  own code rather than monitord.sources.huawei_rtc.signer, and X-Sdk-Date must be within 15 minutes of the
  clock; X-Project-Id must match the path. IAM tokens: issued by POST /v3/auth/tokens for a known
  user, valid `token_ttl` seconds, revocable through the knob.
- The budget: at most `budget_per_minute` accepted data requests per account in any 60 s
  (sliding, the strictest reading); beyond it, HTTP 429 with APIGW.0308, counted in `throttled`.
- Realtime points: minute m is published `publish_delay` s after it ends, first as a provisional
  value that is revised until `revise_window` s later.
- Abnormal events: generated per app and minute from hashes, each visible only after its own
  publication delay (up to `max_event_delay`), sorted by time, paged by limit/offset with total.
- User and room lists ("查询用户列表", "查询房间列表"): users joining each minute (some failing, from
  hashes) with isp, region, platform and sdk; a room created every 10 minutes that runs 5 min to
  3 h; filters (state as the SDK's csv array, region, isp, room, uid), 90-day span, limit/offset
  paging with total (limit at most LIST_MAX_LIMIT: the reference names no maximum).
- Bad parameters: HTTP 400 with DATA.100011001 and the vendor's message form.

Vendor knobs, POST /_sim/huawei_rtc (JSON, all optional):
  {"rate_scale": "ratio"|"percent", "time_format": "plain"|"fraction"|"offset"|"naive",
   "budget_per_minute": 30, "revoke_tokens": true,
   "token_ttl": 86400, "publish_delay": 30, "revise_window": 60, "events_per_minute": 2,
   "max_event_delay": 300, "joins_per_minute": 6, "failed_joins_per_minute": 1,
   "network_join_failures": {"app": "...", "isp": "CUCC", "per_minute": 4} | null,
   "error": {"path": "realtime/quality", "status": 400,
   "error_code": "DATA.100011001", "error_msg": "...", "count": 1}, "clear_error": true}
`error` answers requests whose path contains `path` with that body `count` times (-1: always).
`network_join_failures`: from the minute it is set, `per_minute` more users of that app whose
join fails join each minute, all on one carrier (`isp`) or province (`region`), and the app's
join success rate of those minutes falls below 99 % (96-98 %), as when one network blocks the
service; null ends it (minutes already affected stay so).
  {"send_record_event": {"app_id": ..., "event": {...}, "times": 1, "timestamp_offset": 0,
   "key": "..."}} POSTs a recording event to the app's callback set by
  PUT /v2/apps/{app_id}/record-callback, signed with its auth_key (see send_record_event).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from aiohttp import web

from monitord.simulators.base import Clock, make_app

PROJECT_ID = "0b2f6c1d9e8a4b7c8d9e0f1a2b3c4d5e"
ACCESS_KEY = "SIMAK7Q2ZLWX4MRTC0001"
SECRET_KEY = "simSK-3k9v0QmN8pL2xR7tY5wZ1aB4cD6eF8gH0jK2"
IAM_DOMAIN = "sim-domain"
IAM_USER = "monitor"
IAM_PASSWORD = "Sim-Iam-Pass-42"
APPS = ("5fa682b34a974f7ad24d223b", "6a1b2c3d4e5f60718293a4b5")

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SCALE_METRICS = ("OnlineUsers", "RoomCount")
QUALITY_METRICS = ("JoinSuccessRate", "JoinSuccess5SecsRate", "VideoFreezeRate", "AudioFreezeRate")
NETWORK_METRICS = (
    "VideoUpstreamExcellentTransRate",
    "AudioUpstreamExcellentTransRate",
    "VideoExcellentTransRate",
    "AudioExcellentTransRate",
)
DIMENSION_VALUES = {
    "region": ("GD", "BJ", "SH", "ZJ", "JS", "SC"),
    "access_net": ("wifi", "4g", "5g", "ethernet"),
    "platform": ("android", "ios", "windows", "mac", "web"),
    "sdk": ("2.0.1", "2.1.0", "2.2.3"),
}
ABNORMAL_TYPES = {1: "进房慢(5s加入房间失败)", 2: "视频卡顿", 3: "音频卡顿"}
FACTORS = {
    1: {1: "建链失败", 3: "服务器异常", 5: "鉴权失败"},
    2: {5: "视频上行网络延时", 14: "下行视频丢包", 18: "对端用户无码流"},
    3: {11: "上行音频丢包", 13: "下行音频丢包"},
}
MAX_SPAN = 86400.0
LIST_MAX_SPAN = 90 * 86400.0  # the user and room lists: "最大查询跨度90天"
# The reference gives no maximum `limit` for the lists; the simulator refuses more than this, so a
# client that asks for everything in one page is caught rather than served.
LIST_MAX_LIMIT = 1000
USER_STATES = ("FAIL", "ONLINE", "OFFLINE")
ROOM_STATES = ("RUNNING", "CLOSED")
ISPS = ("CTCC", "CMCC", "CUCC")
PROVINCES = ("广东", "北京", "上海", "陕西")
PLATFORMS = ("android", "ios", "web-Mac10_15_4", "windows")
SDKS = ("2.0.1", "2.1.0", "1.4.0")
ROOM_SLOT = 600.0  # a room is created every 10 minutes per app
SKEW = 15 * 60.0


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(values: tuple[str, ...], what: str, key: tuple[object, ...]) -> str:
    return values[int(_unit(*key, what) * len(values))]


def _fmt(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime(TIME_FORMAT)


# How the answers write times (knob `time_format`): the pages document "YYYY-MM-DDThh:mm:ssZ"
# ("plain"); IAM writes fractions; other ISO 8601 forms a service may drift to are served too.
TIME_FORMATS = ("plain", "fraction", "offset", "naive")


def stamp(t: float, form: str = "plain") -> str:
    when = datetime.fromtimestamp(t, UTC)
    if form == "fraction":
        return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if form == "offset":
        return when.astimezone(timezone(timedelta(hours=8))).isoformat()
    if form == "naive":
        return when.strftime("%Y-%m-%dT%H:%M:%S")
    return when.strftime(TIME_FORMAT)


class DataError(Exception):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


@dataclass
class RtcSim:
    clock: Clock
    # Huawei Cloud "SparkRTC API Reference > 数据统计分析 > 查询历史质量": rates are fractions, 1 is 100 %.
    rate_scale: str = "ratio"
    time_format: str = "plain"
    budget_per_minute: int = 30
    token_ttl: float = 86400.0
    publish_delay: float = 30.0
    revise_window: float = 60.0
    events_per_minute: int = 2
    max_event_delay: float = 300.0
    joins_per_minute: int = 6  # users joining per app and minute
    failed_joins_per_minute: int = 1  # of them, at most this many fail (0..n, from hashes)
    # One network failing joins: (app, "isp" | "region", value, users per minute, first minute, last minute).
    network_failures: list[tuple[str, str, str, int, int, int | None]] = field(default_factory=list)
    budget_window: float = 60.0  # the vendor's minute; divided by create_app(time_scale=...)
    keys: dict[str, str] = field(default_factory=lambda: {ACCESS_KEY: SECRET_KEY})
    users: dict[tuple[str, str], str] = field(default_factory=lambda: {(IAM_DOMAIN, IAM_USER): IAM_PASSWORD})
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (account, expires)
    windows: dict[str, deque[float]] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    accepted: int = 0
    throttled: int = 0
    rejected_auth: int = 0
    tokens_issued: int = 0
    requests_by_path: Counter[str] = field(default_factory=Counter)
    max_in_window: int = 0
    # PUT /v2/apps/{app_id}/record-callback: app -> {"url", "auth_key"}
    record_callbacks: dict[str, dict[str, str]] = field(default_factory=dict)

    # ------------------------------------------------------------------------- data model

    def point(self, app: str, metric: str, sdk: str, minute: float, now: float) -> float | None:
        """Value of one per-minute point as published at `now` (None: not published yet)."""
        published = minute + 60.0 + self.publish_delay
        if now < published:
            return None
        u = _unit(app, metric, sdk, int(minute))
        if metric == "OnlineUsers":
            final = float(int(200 + 800 * u))
        elif metric == "RoomCount":
            final = float(int(10 + 90 * u))
        elif metric in ("VideoFreezeRate", "AudioFreezeRate"):
            final = round(0.5 + 4.5 * u, 2)
        elif metric in ("JoinSuccessRate", "JoinSuccess5SecsRate") and self._network_failing(app, int(minute // 60)):
            final = round(96.0 + 2.0 * u, 2)
        else:
            # A healthy app: joins succeed 99.3-99.9 % of the time, so no minute's errors reach the
            # 99 % join SLO's budget and the demo tickets or pages nobody without a fault.
            final = round(99.3 + 0.6 * u, 2)
        if now < published + self.revise_window:
            # Provisional: the minute is still being aggregated; it grows into the final value.
            final = float(int(final * 0.5)) if metric in SCALE_METRICS else round(final * 0.5, 2)
        if metric not in SCALE_METRICS and self.rate_scale == "ratio":
            final = round(final / 100.0, 6)
        return final

    def events_of_minute(self, app: str, minute: int) -> list[dict[str, Any]]:
        count = int(_unit(app, "n", minute) * (self.events_per_minute + 1))
        out = []
        for i in range(count):
            a_type = 1 + int(_unit(app, "type", minute, i) * 3)
            factors = sorted(FACTORS[a_type])
            factor = factors[int(_unit(app, "factor", minute, i) * len(factors))]
            uid = f"u{int(_unit(app, 'uid', minute, i) * 40):03d}"
            out.append(
                {
                    "time": stamp(minute * 60.0, self.time_format),
                    "uid": uid,
                    "room_id": f"room-{int(_unit(app, 'room', minute, i) * 5)}",
                    "stage": "join_room" if a_type == 1 else "communication",
                    "location": "local" if _unit(app, "loc", minute, i) < 0.5 else "remote",
                    "peer_uid": "" if a_type == 1 else f"u{int(_unit(app, 'peer', minute, i) * 40):03d}",
                    "abnormal_type": a_type,
                    "abnormal_type_desc": ABNORMAL_TYPES[a_type],
                    "abnormal_factor": factor,
                    "abnormal_factor_desc": FACTORS[a_type][factor],
                    "_visible": minute * 60.0 + 60.0 + _unit(app, "delay", minute, i) * self.max_event_delay,
                }
            )
        return out

    def events(
        self, app: str, start: float, end: float, now: float, room: str | None = None
    ) -> list[dict[str, Any]]:
        """Events with time in [start, end) visible at `now`, oldest first."""
        out: list[dict[str, Any]] = []
        for minute in range(int(start // 60), int(end // 60) + 1):
            for e in self.events_of_minute(app, minute):
                t = minute * 60.0
                if start <= t < end and e["_visible"] <= now and (room is None or e["room_id"] == room):
                    out.append(e)
        return out

    def set_network_failures(self, spec: dict[str, Any] | None) -> None:
        """Start one network failing joins from this minute (spec), or end every one (None)."""
        minute = int(self.clock() // 60)
        # Ended ones keep their minutes: the vendor's past data does not change.
        self.network_failures = [(a, d, v, n, first, minute if last is None else last)
                                 for a, d, v, n, first, last in self.network_failures]
        if spec is None:
            return
        dimensions = [d for d in ("isp", "region") if d in spec]
        if len(dimensions) != 1:
            raise ValueError("name one isp or one region")
        per_minute = int(spec["per_minute"])
        if per_minute < 1:
            raise ValueError("per_minute is at least 1")
        self.network_failures.append((str(spec["app"]), dimensions[0], str(spec[dimensions[0]]), per_minute,
                                      minute, None))

    def _network_failing(self, app_key: str, minute: int) -> bool:
        """Whether a network failed joins of the app in that minute (`app_key`: app id + room)."""
        return any(app_key.startswith(app) and first <= minute and (last is None or minute <= last)
                   for app, _, _, _, first, last in self.network_failures)

    def _network_failed_users(self, app: str, minute: int, start: float, end: float,
                              now: float) -> list[tuple[float, dict[str, Any]]]:
        out: list[tuple[float, dict[str, Any]]] = []
        for n, (failing_app, dimension, value, per_minute, first, last) in enumerate(self.network_failures):
            if failing_app != app or minute < first or (last is not None and minute > last):
                continue
            for i in range(per_minute):
                joined = minute * 60.0 + (i + 0.5) * 60.0 / per_minute
                if not start <= joined <= min(end, now):
                    continue
                key = (app, minute, "net", n, i)
                user = self._user(app, key, f"u{minute % 1000:03d}n{n}{i:02d}", "FAIL", joined, joined)
                user[dimension] = value
                out.append((joined, user))
        return out

    def _user(self, app: str, key: tuple[object, ...], uid: str, state: str, joined: float,
              left: float | None) -> dict[str, Any]:
        return {
            "domain": f"{app}.sparkrtc.myhuaweicloud.com", "app": app,
            "room_id": f"room-{int(_unit(*key, 'uroom') * 5)}",
            "uid": uid,
            "session": hashlib.sha256("".join(map(str, key)).encode()).hexdigest()[:32],
            "state": state, "nick_name": f"user {key[-1]}", "ip": "113.140.81.xx",
            "region": _pick(PROVINCES, "region", key), "isp": _pick(ISPS, "isp", key),
            "device_model": "iphone", "platform": _pick(PLATFORMS, "platform", key),
            "sdk": _pick(SDKS, "sdk", key),
            "join_time": stamp(joined, self.time_format),
            "leave_time": "-" if left is None else stamp(left, self.time_format),
        }

    def rtc_users(self, app: str, start: float, end: float, now: float) -> list[dict[str, Any]]:
        """Users who joined in [start, end] by `now`, oldest first (the user list, summary mode)."""
        out: list[dict[str, Any]] = []
        for minute in range(int(start // 60), int(min(end, now) // 60) + 1):
            rows = self._network_failed_users(app, minute, start, end, now)
            failed = int(_unit(app, "fails", minute) * (self.failed_joins_per_minute + 1))
            for i in range(max(self.joins_per_minute, failed)):
                joined = minute * 60.0 + i * 60.0 / max(self.joins_per_minute, failed, 1)
                if not start <= joined <= min(end, now):
                    continue
                stays = 60.0 + _unit(app, "stay", minute, i) * 3600.0
                state = "FAIL" if i < failed else ("ONLINE" if joined + stays > now else "OFFLINE")
                key = (app, minute, i)
                rows.append((joined, {
                    "domain": f"{app}.sparkrtc.myhuaweicloud.com", "app": app,
                    "room_id": f"room-{int(_unit(app, 'uroom', minute, i) * 5)}",
                    "uid": f"u{minute % 1000:03d}{i:02d}",
                    "session": hashlib.sha256(f"{app}{minute}{i}".encode()).hexdigest()[:32],
                    "state": state, "nick_name": f"user {i}", "ip": "113.140.81.xx",
                    "region": _pick(PROVINCES, "region", key), "isp": _pick(ISPS, "isp", key),
                    "device_model": "iphone", "platform": _pick(PLATFORMS, "platform", key),
                    "sdk": _pick(SDKS, "sdk", key),
                    "join_time": stamp(joined, self.time_format),
                    "leave_time": "-" if state == "ONLINE" else stamp(joined + (0 if state == "FAIL" else stays),
                                                                       self.time_format),
                }))
            out += [user for _, user in sorted(rows, key=lambda row: row[0])]
        return out

    def rooms(self, app: str, start: float, end: float, now: float) -> list[dict[str, Any]]:
        """Rooms created in [start, end] by `now`, oldest first (the room list)."""
        out = []
        for slot in range(int(start // ROOM_SLOT) - 1, int(min(end, now) // ROOM_SLOT) + 1):
            created = slot * ROOM_SLOT + _unit(app, "created", slot) * ROOM_SLOT
            if not start <= created <= min(end, now):
                continue
            lasts = 300.0 + _unit(app, "lasts", slot) * 10800.0
            running = now < created + lasts
            out.append({
                "domain": f"{app}.sparkrtc.myhuaweicloud.com", "app": app, "room_id": f"room-{slot % 5}",
                "state": "RUNNING" if running else "CLOSED",
                "duration": int((now if running else created + lasts) - created),
                "start_time": stamp(created, self.time_format),
                "end_time": "-" if running else stamp(created + lasts, self.time_format),
            })
        return out

    def expected_counts(self, app: str, start: float, end: float) -> Counter[tuple[str, ...]]:
        """Ground truth for tests: events in [start, end) visible by `end`, by label set."""
        return Counter(
            (str(e["abnormal_type"]), str(e["abnormal_factor"]), e["stage"], e["location"])
            for e in self.events(app, start, end, end)
        )

    # ------------------------------------------------------------------------------ auth

    def verify(self, request: web.Request, body: bytes) -> str:
        """The account making the request, or raise an HTTP 401 with the gateway's body."""
        token = request.headers.get("X-Auth-Token")
        if token is not None:
            account, expires = self.tokens.get(token, ("", 0.0))
            if not account or self.clock() >= expires:
                raise self._unauthorized(
                    "APIGW.0301", "Incorrect IAM authentication information: token expired or invalid"
                )
            return account
        auth = request.headers.get("Authorization", "")
        prefix = "SDK-HMAC-SHA256 "
        if not auth.startswith(prefix):
            raise self._unauthorized(
                "APIGW.0301", "Incorrect IAM authentication information: Authorization missing"
            )
        parts = dict(p.strip().split("=", 1) for p in auth[len(prefix) :].split(",") if "=" in p)
        ak, names, given = parts.get("Access", ""), parts.get("SignedHeaders", ""), parts.get("Signature", "")
        sk = self.keys.get(ak)
        if sk is None:
            raise self._unauthorized("APIGW.0301", "Incorrect IAM authentication information: AK not found")
        date = request.headers.get("X-Sdk-Date", "")
        try:
            when = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise self._unauthorized(
                "APIGW.0301", "Incorrect IAM authentication information: bad X-Sdk-Date"
            ) from None
        if abs(when - self.clock()) > SKEW:
            raise self._unauthorized(
                "APIGW.0301", "Incorrect IAM authentication information: request expired"
            )
        signed = names.split(";") if names else []
        if "x-sdk-date" not in signed or "host" not in signed:
            raise self._unauthorized(
                "APIGW.0301", "Incorrect IAM authentication information: headers not signed"
            )
        raw_path, _, raw_query = request.raw_path.partition("?")
        uri = "/".join(quote(seg, safe="~") for seg in unquote(raw_path).split("/"))
        if not uri.endswith("/"):
            uri += "/"
        pairs = sorted(parse_qsl(raw_query, keep_blank_values=True))
        query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)
        header_lines = []
        for name in signed:
            value = request.headers.get(name)
            if value is None:
                raise self._unauthorized(
                    "APIGW.0301", f"Incorrect IAM authentication information: {name} missing"
                )
            header_lines.append(f"{name}:{value.strip()}\n")
        body_hash = hashlib.sha256(body).hexdigest()
        canonical = "\n".join([request.method, uri, query, "".join(header_lines), names, body_hash])
        to_sign = "SDK-HMAC-SHA256\n" + date + "\n" + hashlib.sha256(canonical.encode()).hexdigest()
        expected = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            raise self._unauthorized(
                "APIGW.0301", "Incorrect IAM authentication information: verify aksk signature fail"
            )
        project = request.match_info.get("project_id")
        if project is not None and request.headers.get("X-Project-Id") != project:
            raise self._unauthorized(
                "APIGW.0301", "Incorrect IAM authentication information: project mismatch"
            )
        return "ak:" + ak

    def _unauthorized(self, code: str, msg: str) -> web.HTTPException:
        self.rejected_auth += 1
        return web.HTTPUnauthorized(
            text=json.dumps({"error_code": code, "error_msg": msg}), content_type="application/json"
        )

    def admit(self, account: str) -> None:
        now = self.clock()
        window = self.windows.setdefault(account, deque())
        while window and window[0] <= now - self.budget_window:
            window.popleft()
        if len(window) >= self.budget_per_minute:
            self.throttled += 1
            raise web.HTTPTooManyRequests(
                text=json.dumps({"error_code": "APIGW.0308", "error_msg": "The request is throttled."}),
                content_type="application/json",
            )
        window.append(now)
        self.accepted += 1
        self.max_in_window = max(self.max_in_window, len(window))

    def describe(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "throttled": self.throttled,
            "rejected_auth": self.rejected_auth,
            "tokens_issued": self.tokens_issued,
            "max_in_window": self.max_in_window,
            "rate_scale": self.rate_scale,
            "budget_per_minute": self.budget_per_minute,
        }


SIM_KEY = web.AppKey("huawei_rtc_sim", RtcSim)


# ---------------------------------------------------------------------------------- helpers


def _data_error(msg: str, code: str = "DATA.100011001") -> web.HTTPException:
    return web.HTTPBadRequest(
        text=json.dumps({"error_code": code, "error_msg": msg}), content_type="application/json"
    )


def _required(q: Any, name: str) -> str:
    value = q.get(name)
    if not value:
        raise DataError(f"Required String parameter '{name}' is not present")
    return str(value)


def _time(q: Any, name: str, default: float) -> float:
    value = q.get(name)
    if value is None:
        return default
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise DataError(f"Invalid parameter '{name}': expected YYYY-MM-DDThh:mm:ssZ") from None


def _span(q: Any, now: float) -> tuple[float, float]:
    end = _time(q, "end_time", now)
    start = _time(q, "start_time", end - 3600.0)
    if start > end:
        raise DataError("start_time must not be after end_time")
    if end - start > MAX_SPAN:
        raise DataError("The query span exceeds 1 day")
    return start, end


def _int(q: Any, name: str, default: int, low: int, high: int) -> int:
    value = q.get(name)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise DataError(f"Invalid parameter '{name}'") from None
    if not low <= n <= high:
        raise DataError(f"Invalid parameter '{name}': must be between {low} and {high}")
    return n


async def _guarded(request: web.Request, handler: Any) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    body = await request.read()
    account = sim.verify(request, body)
    sim.admit(account)
    sim.requests_by_path[request.path.split("/rtc/", 1)[-1]] += 1
    err = sim.error
    if err and err.get("path", "") in request.path and err.get("count", 1) != 0:
        if err.get("count", 1) > 0:
            err["count"] = err.get("count", 1) - 1
        return web.json_response(
            {
                "error_code": err.get("error_code", "DATA.100011001"),
                "error_msg": err.get("error_msg", "simulated error"),
            },
            status=int(err.get("status", 400)),
        )
    try:
        return web.json_response(handler(sim, request.query, sim.clock()))
    except DataError as exc:
        raise _data_error(exc.msg) from None


def _series(key: str, metrics: tuple[str, ...], needs_sdk: bool) -> Any:
    def handler(sim: RtcSim, q: Any, now: float) -> dict[str, Any]:
        app = _required(q, "app")
        metric = _required(q, "metric")
        if metric not in metrics:
            raise DataError(f"Invalid parameter 'metric': {metric}")
        sdk = ""
        if needs_sdk:
            sdk = _required(q, "sdk_type")
            if sdk not in ("native", "webrtc"):
                raise DataError(f"Invalid parameter 'sdk_type': {sdk}")
        start, end = _span(q, now)
        room = q.get("room_id", "")
        points = []
        for minute in range(int(start // 60) * 60, int(end) + 1, 60):
            value = sim.point(app + room, metric, sdk, float(minute), now)
            if value is not None and minute <= end:
                points.append({"time": stamp(minute, sim.time_format), "value": value})
        return {key: points}

    return handler


def _scale_dimension(sim: RtcSim, q: Any, now: float) -> dict[str, Any]:
    app = _required(q, "app")
    if _required(q, "metric") != "OnlineUsers":
        raise DataError("Invalid parameter 'metric'")
    dimension = _required(q, "dimension")
    if dimension not in DIMENSION_VALUES:
        raise DataError(f"Invalid parameter 'dimension': {dimension}")
    t = _time(q, "time", now) if "time" in q else None
    if t is None:
        raise DataError("Required String parameter 'time' is not present")
    rows = [
        {"dimension": v, "online_users": int(1 + 300 * _unit(app, dimension, v, int(t // 60)))}
        for v in DIMENSION_VALUES[dimension]
    ]
    return {"dimensions": sorted(rows, key=lambda r: -r["online_users"])}


def _abnormal_events(sim: RtcSim, q: Any, now: float) -> dict[str, Any]:
    app = _required(q, "app")
    start, end = _span(q, now)
    limit = _int(q, "limit", 10, 1, 1000)
    offset = _int(q, "offset", 0, 0, 10**6)
    found = sim.events(app, start, end, now, q.get("room_id"))
    page = [{k: v for k, v in e.items() if not k.startswith("_")} for e in found[offset : offset + limit]]
    return {"total": len(found), "events": page}


def _abnormal_dimension(sim: RtcSim, q: Any, now: float) -> dict[str, Any]:
    app = _required(q, "app")
    start, end = _span(q, now)
    dims = q.get("dimension", "abnormal_type,abnormal_factor")
    if not set(dims.split(",")) <= {"abnormal_type", "abnormal_factor"}:
        raise DataError(f"Invalid parameter 'dimension': {dims}")
    users: dict[tuple[int, int], set[str]] = {}
    descs: dict[tuple[int, int], tuple[str, str]] = {}
    for e in sim.events(app, start, end, now, q.get("room_id")):
        key = (e["abnormal_type"], e["abnormal_factor"])
        users.setdefault(key, set()).add(e["uid"])
        descs[key] = (e["abnormal_type_desc"], e["abnormal_factor_desc"])
    return {
        "dimensions": [
            {
                "abnormal_type": t,
                "abnormal_type_desc": descs[(t, f)][0],
                "abnormal_factor": f,
                "abnormal_factor_desc": descs[(t, f)][1],
                "user_count": len(u),
            }
            for (t, f), u in sorted(users.items())
        ]
    }


def _list_span(q: Any, now: float) -> tuple[float, float]:
    end = _time(q, "end_time", now)
    start = _time(q, "start_time", end - 3600.0)
    if start > end:
        raise DataError("start_time must not be after end_time")
    if end - start > LIST_MAX_SPAN:
        raise DataError("The query span exceeds 90 days")
    return start, end


def _csv(q: Any, name: str, allowed: tuple[str, ...]) -> set[str] | None:
    """An array parameter as the SDK sends it (csv), checked against its values."""
    raw = q.get(name)
    if raw is None:
        return None
    values = set(raw.split(","))
    if not values <= set(allowed):
        raise DataError(f"Invalid parameter '{name}': {raw}")
    return values


def _page(q: Any, rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    limit = _int(q, "limit", 10, 1, LIST_MAX_LIMIT)
    offset = _int(q, "offset", 0, 0, 10**7)
    return {"total": len(rows), "limit": limit, "offset": offset, key: rows[offset : offset + limit]}


def _users(sim: RtcSim, q: Any, now: float) -> dict[str, Any]:
    app = _required(q, "app")
    start, end = _list_span(q, now)
    states = _csv(q, "state", USER_STATES)
    if q.get("type", "summary") not in ("summary", "detail"):
        raise DataError(f"Invalid parameter 'type': {q.get('type')}")
    filters = {name: set(q[name].split(",")) for name in ("region", "isp") if name in q}
    rows = [u for u in sim.rtc_users(app, start, end, now)
            if (states is None or u["state"] in states)
            and all(u[name] in values for name, values in filters.items())
            and all(u[name] == q[name] for name in ("room_id", "uid") if name in q)]
    return _page(q, rows, "users")


def _rooms(sim: RtcSim, q: Any, now: float) -> dict[str, Any]:
    app = _required(q, "app")
    start, end = _list_span(q, now)
    state = q.get("state")
    if state is not None and state not in ROOM_STATES:
        raise DataError(f"Invalid parameter 'state': {state}")
    rows = [r for r in sim.rooms(app, start, end, now)
            if (state is None or r["state"] == state) and ("room_id" not in q or r["room_id"] == q["room_id"])]
    return _page(q, rows, "room_info_list")


ROUTES = {
    "/v1/{project_id}/rtc/users": _users,
    "/v1/{project_id}/rtc/rooms": _rooms,
    "/v1/{project_id}/rtc/realtime/scale": _series("scale", SCALE_METRICS, False),
    "/v1/{project_id}/rtc/realtime/scale/dimension": _scale_dimension,
    "/v1/{project_id}/rtc/realtime/quality": _series("quality", QUALITY_METRICS, True),
    "/v1/{project_id}/rtc/realtime/network": _series("network", NETWORK_METRICS, True),
    "/v1/rtc/data/abnormal-events": _abnormal_events,
    "/v1/rtc/data/abnormal-event/dimension": _abnormal_dimension,
}


def callback_signature(key: str, rand: str, timestamp: str, body: bytes) -> str:
    """Huawei FAQ "如何对录制回调进行鉴权": hex HMAC-SHA256 over rand + timestamp + body (own code,
    not monitord's)."""
    return hmac.new(key.encode("utf-8"), rand.encode("utf-8") + timestamp.encode("utf-8") + body,
                    hashlib.sha256).hexdigest()


async def put_record_callback(request: web.Request) -> web.Response:
    """配置RTC增值(录制)事件回调: `url` required (http:// or https://), `auth_key` optional. A
    management API with its own limit (60/min), not the data budget."""
    sim = request.app[SIM_KEY]
    body = await request.read()
    sim.verify(request, body)
    try:
        config = json.loads(body)
        url = config["url"]
        key = config.get("auth_key", "")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not isinstance(key, str):
            raise ValueError(url)
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error_code": "RTC.00001001", "error_msg": "Invalid parameter: url"}, status=400)
    app_id = request.match_info["app_id"]
    sim.record_callbacks[app_id] = {"url": url, "auth_key": key}
    return web.json_response({"app_id": app_id, "record_callback": {"url": url, "auth_key": key}})


async def get_record_callback(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    sim.verify(request, await request.read())
    app_id = request.match_info["app_id"]
    return web.json_response({"app_id": app_id, "record_callback": sim.record_callbacks.get(app_id, {})})


async def send_record_event(sim: RtcSim, spec: dict[str, Any]) -> list[int]:
    """POST one recording event to the app's configured callback, the way SparkRTC does: JSON body,
    and, when the app has an auth_key, X-Rtc-Rand / X-Rtc-Timestamp (Unix seconds) /
    X-Rtc-Signature. `times` sends the identical request again (a retry or a replay),
    `timestamp_offset` shifts the timestamp, `key` signs with another key. Returns the statuses."""
    import aiohttp

    app_id = str(spec.get("app_id", APPS[0]))
    target = sim.record_callbacks.get(app_id)
    if target is None:
        raise ValueError(f"no record-callback configured for app {app_id}")
    event = {"app_id": app_id, "event_type": "RECORD_FILE_COMPLETE", "record_format": "MP4",
             "record_duration": 65, **dict(spec.get("event", {}))}
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    key = str(spec.get("key", target["auth_key"]))
    if key:
        rand = secrets.token_hex(8)
        stamp = str(int(sim.clock() + float(spec.get("timestamp_offset", 0))))
        headers.update({"X-Rtc-Rand": rand, "X-Rtc-Timestamp": stamp,
                        "X-Rtc-Signature": callback_signature(key, rand, stamp, body)})
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(int(spec.get("times", 1))):
            async with session.post(target["url"], data=body, headers=headers) as r:
                statuses.append(r.status)
    return statuses


def _route(handler: Any) -> Any:
    async def serve(request: web.Request) -> web.StreamResponse:
        return await _guarded(request, handler)

    return serve


async def iam_tokens(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        body = await request.json()
        user = body["auth"]["identity"]["password"]["user"]
        name, password, domain = user["name"], user["password"], user["domain"]["name"]
    except (ValueError, KeyError, TypeError):
        return web.json_response(
            {"error": {"code": 400, "message": "The request body is invalid.", "title": "Bad Request"}},
            status=400,
        )
    if sim.users.get((domain, name)) != password:
        return web.json_response(
            {
                "error": {
                    "code": 401,
                    "message": "The username or password is wrong.",
                    "title": "Unauthorized",
                }
            },
            status=401,
        )
    token = "MIIsim" + secrets.token_hex(24)
    now = sim.clock()
    sim.tokens[token] = (f"iam:{domain}/{name}", now + sim.token_ttl)
    sim.tokens_issued += 1
    expires = datetime.fromtimestamp(now + sim.token_ttl, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return web.json_response(
        {"token": {"expires_at": expires, "issued_at": _fmt(now), "methods": ["password"]}},
        status=201,
        headers={"X-Subject-Token": token},
    )


async def control(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("expected an object")
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    for name in (
        "rate_scale",
        "time_format",
        "budget_per_minute",
        "token_ttl",
        "publish_delay",
        "revise_window",
        "events_per_minute",
        "max_event_delay",
        "joins_per_minute",
        "failed_joins_per_minute",
    ):
        if name in body:
            setattr(sim, name, body[name])
    if "network_join_failures" in body:
        try:
            sim.set_network_failures(body["network_join_failures"])
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": f"network_join_failures: {exc}"}, status=400)
    if body.get("revoke_tokens"):
        sim.tokens.clear()
    if "error" in body:
        sim.error = dict(body["error"])
    if body.get("clear_error"):
        sim.error = None
    if "send_record_event" in body:
        try:
            statuses = await send_record_event(sim, dict(body["send_record_event"]))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({**sim.describe(), "callback_statuses": statuses})
    return web.json_response(sim.describe())


def create_app(clock: Clock | None = None, time_scale: float = 1.0, **knobs: Any) -> web.Application:
    """time_scale divides the budget's one-minute window (matching `monitord demo --time-scale`);
    the per-minute data points keep the vendor's real minute."""
    sim = RtcSim(clock=clock or Clock(), budget_window=60.0 / time_scale, **knobs)
    app = make_app(sim.describe)
    app[SIM_KEY] = sim
    for path, handler in ROUTES.items():
        app.router.add_get(path, _route(handler))
    app.router.add_put("/v2/apps/{app_id}/record-callback", put_record_callback)
    app.router.add_get("/v2/apps/{app_id}/record-callback", get_record_callback)
    app.router.add_post("/v3/auth/tokens", iam_tokens)
    app.router.add_post("/_sim/huawei_rtc", control)
    return app


def demo_targets(base_url: str) -> list[dict[str, Any]]:
    """Two accounts, one per auth mode, so the demo shows both: an AK/SK account watching one app
    with a region breakdown, and an IAM-token account watching one room of another app. One
    sdk_type each keeps a full refresh within a demo's first half minute under 30 requests/min."""
    common = {
        "source": "huawei_rtc",
        "endpoint": base_url,
        "iam_endpoint": base_url,
        "project_id": PROJECT_ID,
        "sdk_types": ["native"],
        "interval": "10s",
        "timeout": "8s",
        "assume_budget_spent_at_start": False,
    }
    return [
        {
            **common,
            "name": "sparkrtc",
            "ak": ACCESS_KEY,
            "sk": SECRET_KEY,
            "apps": [{"id": APPS[0]}],
            "dimensions": ["region"],
            "callback_secret": "demo-callback-secret",
        },
        {
            **common,
            "name": "sparkrtc-iam",
            "auth": "token",
            "iam_domain": IAM_DOMAIN,
            "iam_user": IAM_USER,
            "iam_password": IAM_PASSWORD,
            "apps": [{"id": APPS[1], "room_id": "room-1"}],
        },
    ]
