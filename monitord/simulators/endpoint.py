"""Simulated Huawei conference endpoints (IdeaHub / TE / CloudLink Box), WEB_* action API.

Enforces the login flow of the real devices: a SessionID cookie from WEB_RequestSessionIDAPI,
then WEB_RequestCertificateAPI with user/password for an acCSRFToken, then every call with the
cookie *and* the token in the JSON body. Sessions expire after `session_ttl` seconds (or at once
through the knob). Payloads are double-encoded (`data` is a JSON string), as on the devices.

Session slots: the device grants a session id only while it has a free slot ("TE10, TE20 会议电视终端
HTTP API 编程参考 > 登录认证流程介绍": the HTTP server checks whether the session count is full before
answering WEB_RequestSessionIDAPI, and answers a failure otherwise). A slot is freed by
WEB_LogoutAPI (cookie + acCSRFToken of a logged-in session) or when the session expires; a session
whose login was refused keeps its slot and may log in again. `max_sessions` sets the slot count
of every device (each device has its own slots, and its sessions are valid on it alone).

A device that is not in a conference answers WEB_GetMultiCallStatusInfoAPI with a failure: the
call is documented to carry information only once the device has joined a multi-stream
conference, and its reference page shows one failure body, {"success":0,"error":{"id":100666995,
"code":33558532,"params":[]}}, which the simulator sends when idle (`idle_answer: "error"`).
`idle_answer: "empty"` models firmware that answers success with an empty `data` instead.

One simulator serves many devices: `/action.cgi` is device "default", `/d/{device}/action.cgi`
any other. Each device's call follows a timeline derived from its name and the clock: calls
start and end, receive streams appear and vanish every minute, content sharing comes and goes.

Vendor knobs, POST /_sim/endpoint (JSON, all optional):
  {"scenario": "live" | "fixed", "in_call": true | false | null, "vendor_error": bool,
   "expire_sessions": true, "session_ttl": 600, "degrade": {"loss_percent": 15, "jitter_ms": 150,
   "delay_ms": 400, "frame_rate": 3, "bitrate_k": 20}, "override": {"valueVideoJitter": "fast"},
   "device": "room-2", "max_sessions": 4, "idle_answer": "error" | "empty"}
`override` sets raw field values in every stream that has the field (firmware quirks, parse errors).
`raw_data` (any JSON value; null clears it) is sent as the status answer's `data` as it is, in
place of the JSON-encoded call status: firmware that skips the double encoding, or sends junk.
`login_data` (any JSON value; null clears it) likewise replaces the `data` of a successful
WEB_RequestCertificateAPI answer (which normally carries the acCSRFToken).
`device` scopes in_call / vendor_error / degrade to one device; without it they apply to all.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from monitord.simulators.base import Clock, make_app, read_json_object, read_knobs

DEFAULT_USER = "admin"
DEFAULT_PASSWORD = "Sim-Endpoint-Pass1"
# The vendor documents the error shape ({"id", "code", "params"}) and one body,
# 100666995 / 33558532, on the reference page of the status call: the simulator answers it when
# the device is not in a conference. The other codes are the simulator's own.
ERROR_NOT_IN_CALL = {"id": 100666995, "code": 33558532, "params": []}
ERROR_SESSION_INVALID = {"id": 100666001, "code": 33558529, "params": []}
ERROR_BAD_LOGIN = {"id": 100666002, "code": 33558530, "params": []}
ERROR_SESSIONS_FULL = {"id": 100666003, "code": 33558531, "params": []}
ERROR_GENERIC = {"id": 100666996, "code": 33558533, "params": []}
MAX_SESSIONS = 4

CALL_PERIOD = 300  # seconds: in a call for the first 240 s of every 5 minutes
CALL_LENGTH = 240

RESOLUTIONS = ("720p", "1080p", "320x180", "1920*1080", "640x360", "360p")
CODECS = ("H.264 EC", "H.265", "H.264 HP")


def _unit(device: str, *parts: object) -> float:
    """A deterministic number in [0, 1) from the device name and some parts of the timeline."""
    digest = hashlib.sha256("|".join(map(str, (device, *parts))).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Session:
    created: float
    device: str
    token: str | None = None


@dataclass
class DeviceKnobs:
    in_call: bool | None = None
    vendor_error: bool = False
    degrade: dict[str, float] = field(default_factory=dict)
    override: dict[str, Any] = field(default_factory=dict)
    raw_data: Any = None


@dataclass
class EndpointSim:
    clock: Clock
    login_data: Any = None
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    scenario: str = "live"
    session_ttl: float = 600.0
    max_sessions: int = MAX_SESSIONS
    idle_answer: str = "error"  # "error": the documented failure body; "empty": success, empty data
    time_scale: float = 1.0  # divides the call timeline (create_app(time_scale=...))
    sessions: dict[str, Session] = field(default_factory=dict)
    knobs: dict[str, DeviceKnobs] = field(default_factory=dict)  # "" = every device
    logins: int = 0
    logouts: int = 0
    calls: int = 0

    def knob(self, device: str) -> DeviceKnobs:
        own = self.knobs.get(device)
        every = self.knobs.get("", DeviceKnobs())
        if own is None:
            return every
        return DeviceKnobs(
            own.in_call if own.in_call is not None else every.in_call,
            own.vendor_error or every.vendor_error,
            {**every.degrade, **own.degrade},
            {**every.override, **own.override},
            own.raw_data if own.raw_data is not None else every.raw_data,
        )

    # ---------------------------------------------------------------------------- the payload

    def payload(self, device: str) -> dict[str, Any] | None:
        """The decoded `data` document of WEB_GetMultiCallStatusInfoAPI, None when not in a call."""
        knob = self.knob(device)
        if self.scenario == "fixed":
            data = fixed_payload()
        else:
            now = self.clock()
            period = CALL_PERIOD / self.time_scale
            phase = (now + _unit(device, "offset") * period) % period
            in_call = phase < CALL_LENGTH / self.time_scale
            if knob.in_call is not None:
                in_call = knob.in_call
            if not in_call:
                return None
            data = self._live_payload(device, now, phase * self.time_scale)
        if knob.degrade:
            _degrade(data, knob.degrade)
        if knob.override:
            for stream in _streams(data):
                stream.update({k: v for k, v in knob.override.items() if k in stream})
        return data

    def _live_payload(self, device: str, now: float, phase: float) -> dict[str, Any]:
        minute = int(now // 60)
        call_no = int(now // CALL_PERIOD)
        recv_count = 1 + int(_unit(device, "streams", minute) * 3)
        aux_on = 60 <= phase < 150
        elapsed = int(phase) + int(_unit(device, "joined", call_no) * 3) * 86400 // 2

        def video(kind: str, index: int, active: bool = True) -> dict[str, Any]:
            u = _unit(device, kind, index, minute)
            if not active:
                return _inactive_video()
            loss = 0.0 if u < 0.7 else round(u * 3, 2)
            rate = 200 + u * 1800
            return {
                "szName": "" if kind.endswith("send") else f"site{index + 1}",
                "videoProtocolPrefix": CODECS[index % len(CODECS)],
                "videoProtocolPostfix": RESOLUTIONS[int(u * len(RESOLUTIONS))],
                "videoRate": f"{rate / 1000:.1f}M" if rate >= 1500 else f"{rate:.2f}k",
                "videoFrame": 15 + int(u * 16),
                "valueVideoJitter": f"{1 + int(u * 9)}ms",
                "valueNetDelayVideo": f"{5 + int(u * 40)}ms",
                "videoLossPer": f"{loss:.2f}%",
                "videoLossNum": int(loss * 10),
            }

        def audio(kind: str) -> dict[str, Any]:
            u = _unit(device, kind, minute)
            return {
                "audioProtocol": "AAC-LD MONO" if u < 0.5 else "OPUS STEREO",
                "valueAudioJitter": f"{2 + int(u * 6)}ms",
                "valueNetDelayAudio": f"{5 + int(u * 30)} ms" if u > 0.8 else f"{5 + int(u * 30)}ms",
                "audioLossPer": f"{(u * 0.5 if u > 0.6 else 0):.2f}%",
                "audioLossNum": int(u * 4) if u > 0.6 else 0,
                "auxAudioRate": f"{32 + u * 16:.2f}k",
            }

        return {
            "stAudioParamSend": audio("audio-send"),
            "stAudioParamRecv": audio("audio-recv"),
            "stAuxParamSend": video("aux-send", 0, active=aux_on),
            "stAuxParamRecv": _inactive_video(),
            "stVideoParamSend": [video("video-send", 0)],
            "stVideoParamRecv": [video("video-recv", i) for i in range(recv_count)],
            "joinDay": elapsed // 86400,
            "joinHour": elapsed % 86400 // 3600,
            "joinMin": elapsed % 3600 // 60,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "sessions": len(self.sessions),
            "max_sessions": self.max_sessions,
            "logins": self.logins,
            "logouts": self.logouts,
            "calls": self.calls,
        }


def _inactive_video() -> dict[str, Any]:
    return {
        "szName": "", "videoProtocolPrefix": "", "videoProtocolPostfix": "Unknown", "videoRate": "--",
        "videoFrame": 0, "valueVideoJitter": "--", "valueNetDelayVideo": "0ms", "videoLossPer": "--",
        "videoLossNum": 0,
    }


def _streams(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [data["stAudioParamSend"], data["stAudioParamRecv"], data["stAuxParamSend"], data["stAuxParamRecv"],
            *data["stVideoParamSend"], *data["stVideoParamRecv"]]


def _degrade(data: dict[str, Any], degrade: dict[str, float]) -> None:
    """Make a call bad on purpose (alert tests): loss, jitter, delay, frame rate, bitrate."""
    flowing = [s for s in _streams(data) if s.get("videoProtocolPrefix", "x")]
    for s in flowing:
        is_audio = "audioProtocol" in s
        if "loss_percent" in degrade:
            s["audioLossPer" if is_audio else "videoLossPer"] = f"{degrade['loss_percent']:.2f}%"
        if "jitter_ms" in degrade:
            s["valueAudioJitter" if is_audio else "valueVideoJitter"] = f"{int(degrade['jitter_ms'])}ms"
        if "delay_ms" in degrade:
            s["valueNetDelayAudio" if is_audio else "valueNetDelayVideo"] = f"{int(degrade['delay_ms'])}ms"
        if not is_audio and "frame_rate" in degrade:
            s["videoFrame"] = int(degrade["frame_rate"])
        if not is_audio and "bitrate_k" in degrade:
            s["videoRate"] = f"{degrade['bitrate_k']:.2f}k"


def fixed_payload() -> dict[str, Any]:
    """The example answer on the vendor's page for the call (获取多流会议中的通话状态), plus a
    second receive stream in the other string forms devices send (WxH with '*', 'M' rates, '%'
    with a fraction, ms with a space) and a site name that needs escaping. The golden exposition
    test is built on this."""
    return {
        "stAudioParamSend": {"audioProtocol": "AAC-LD MONO", "valueAudioJitter": "5ms", "valueNetDelayAudio": "5ms",
                             "audioLossPer": "0.00%", "audioLossNum": 0, "auxAudioRate": "35.62k"},
        "stAudioParamRecv": {"audioProtocol": "AAC-LD MONO", "valueAudioJitter": "5ms", "valueNetDelayAudio": "5ms",
                             "audioLossPer": "0.00%", "audioLossNum": 0, "auxAudioRate": "38.95k"},
        "stAuxParamSend": _inactive_video(),
        "stAuxParamRecv": _inactive_video(),
        "stVideoParamSend": [
            {"szName": "", "videoProtocolPrefix": "H.264 EC", "videoProtocolPostfix": "320x180",
             "videoRate": "109.54k", "videoFrame": 15, "valueVideoJitter": "3ms", "valueNetDelayVideo": "5ms",
             "videoLossPer": "0.00%", "videoLossNum": 0}],
        "stVideoParamRecv": [
            {"szName": "site1", "videoProtocolPrefix": "H.264 EC", "videoProtocolPostfix": "720p",
             "videoRate": "962.76k", "videoFrame": 41, "valueVideoJitter": "2ms", "valueNetDelayVideo": "5ms",
             "videoLossPer": "0.00%", "videoLossNum": 0},
            {"szName": 'Board "A" 会议室', "videoProtocolPrefix": "H.265", "videoProtocolPostfix": "1920*1080",
             "videoRate": "1.2M", "videoFrame": 30, "valueVideoJitter": "12ms", "valueNetDelayVideo": "120 ms",
             "videoLossPer": "12.5%", "videoLossNum": 37}],
        "joinDay": 1, "joinHour": 2, "joinMin": 3,
    }


SIM_KEY = web.AppKey("endpoint_sim", EndpointSim)


def _error(error: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response({"success": 0, "error": error}, status=status)


async def action(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    device = request.match_info.get("device", "default")
    action_id = request.query.get("ActionID", "")
    now = sim.clock()
    # Expired sessions are forgotten, as the device does.
    for sid in [s for s, sess in sim.sessions.items() if now - sess.created > sim.session_ttl]:
        del sim.sessions[sid]
    if request.method != "POST":
        return web.Response(status=405, text="POST only")

    if action_id == "WEB_RequestSessionIDAPI":
        if sum(1 for s in sim.sessions.values() if s.device == device) >= sim.max_sessions:
            return _error(ERROR_SESSIONS_FULL)
        sid = secrets.token_hex(16)
        sim.sessions[sid] = Session(created=now, device=device)
        response = web.json_response({"success": 1, "data": json.dumps({"acSessionId": "", "szTermType": "Sim TE"})})
        response.set_cookie("SessionID", sid, path="/", httponly=True)
        return response

    sid = request.cookies.get("SessionID", "")
    session = sim.sessions.get(sid)
    if session is None or session.device != device:
        return _error(ERROR_SESSION_INVALID)
    body = await read_json_object(request)
    if body is None:
        return _error(ERROR_GENERIC)

    if action_id == "WEB_RequestCertificateAPI":
        if body.get("user") != sim.user or body.get("password") != sim.password:
            return _error(ERROR_BAD_LOGIN)
        session.token = secrets.token_hex(16)
        sim.logins += 1
        if sim.login_data is not None:
            return web.json_response({"success": 1, "data": sim.login_data})
        return web.json_response({"success": 1, "data": json.dumps({"acCSRFToken": session.token})})

    if session.token is None or body.get("acCSRFToken") != session.token:
        return _error(ERROR_SESSION_INVALID)

    if action_id == "WEB_LogoutAPI":
        del sim.sessions[sid]
        sim.logouts += 1
        return web.json_response({"success": 1})

    if action_id == "WEB_GetMultiCallStatusInfoAPI":
        sim.calls += 1
        if sim.knob(device).vendor_error:
            return _error(ERROR_GENERIC)
        raw = sim.knob(device).raw_data
        if raw is not None:
            return web.json_response({"success": 1, "data": raw})
        data = sim.payload(device)
        if data is None and sim.idle_answer == "error":
            return _error(ERROR_NOT_IN_CALL)
        return web.json_response({"success": 1, "data": "" if data is None else json.dumps(data, ensure_ascii=False)})

    return _error(ERROR_GENERIC)


async def control(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    body = await read_knobs(request, scenarios=("live", "fixed"))
    if "scenario" in body:
        sim.scenario = body["scenario"]
    if "login_data" in body:
        sim.login_data = body["login_data"]
    if "session_ttl" in body:
        sim.session_ttl = float(body["session_ttl"])
    if "max_sessions" in body:
        sim.max_sessions = int(body["max_sessions"])
    if "idle_answer" in body:
        if body["idle_answer"] not in ("error", "empty"):
            raise web.HTTPBadRequest(text="idle_answer is 'error' or 'empty'\n")
        sim.idle_answer = body["idle_answer"]
    if body.get("expire_sessions"):
        sim.sessions.clear()
    device = str(body.get("device", ""))
    knob = sim.knobs.setdefault(device, DeviceKnobs())
    if "in_call" in body:
        knob.in_call = body["in_call"]
    if "vendor_error" in body:
        knob.vendor_error = bool(body["vendor_error"])
    if "degrade" in body:
        knob.degrade = {k: float(v) for k, v in (body["degrade"] or {}).items()}
    if "override" in body:
        knob.override = dict(body["override"] or {})
    if "raw_data" in body:
        knob.raw_data = body["raw_data"]
    return web.json_response(sim.describe())


def create_app(clock: Clock | None = None, password: str = DEFAULT_PASSWORD, scenario: str = "live",
               time_scale: float = 1.0) -> web.Application:
    sim = EndpointSim(clock=clock or Clock(), password=password, scenario=scenario, time_scale=time_scale)
    app = make_app(sim.describe)
    app[SIM_KEY] = sim
    app.router.add_route("*", "/action.cgi", action)
    app.router.add_route("*", "/d/{device}/action.cgi", action)
    app.router.add_post("/_sim/endpoint", control)
    return app


def demo_targets(base_url: str) -> list[dict[str, Any]]:
    """Targets of the built-in demo: three rooms on one simulator."""
    return [
        {
            "name": f"room-{n}",
            "source": "endpoint",
            "url": f"{base_url}/d/room-{n}",
            "username": DEFAULT_USER,
            "password": DEFAULT_PASSWORD,
            "interval": "5s",
            "timeout": "4s",
        }
        for n in (101, 102, 103)
    ]
