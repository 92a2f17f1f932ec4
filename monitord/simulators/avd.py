"""Simulated nice2meet AVD conferencing server, `sdkapi/v2` (nice2meet AVD server API reference).

Enforces the token flow of the real server: `app/get_token` checks access_key/secret_key
(40001 otherwise), tokens expire after `token_ttl` seconds of the (injectable) clock or at once
through the knob, and every other call needs a valid `token` in the query string or a
form-urlencoded POST body (40002 without one, 40003 "access token check invalid" for a bad or
expired one). Errors come in both of the vendor's conventions: most calls answer
`{"ret": .., "msg": ..}`, room/participate/list answers `{"code": 200 | 41005 | .., "msg": ..}`
as in the vendor's examples.

Scenario "live": rooms open and close on a timeline derived from their ids and the clock, users
come and go every minute, rooms sit on media servers box1..box3, and box3 has a short outage
every 10 minutes (`outages`). Tokens expire after `token_ttl` (default 10 minutes). Scenario "fixed": the vendor's
examples (two rooms, box1, the recording list with "67.008s" / "16.367M"), for golden files.

Vendor knobs, POST /_sim/avd (JSON, all optional):
  {"scenario": "live" | "fixed", "token_ttl": 3600, "expire_tokens": true,
   "offline_servers": ["box2"], "no_media_server": true, "outages": false, "room_count": 8,
   "error": {"path": "/room/list", "ret": 41002, "msg": "mysql error"} | null,
   "error_key": "ret" | "code", "recorded_rooms": ["12345678980"], "ghost_room": true,
   "patch": {"/room/get_statistic": {"ios_cnt": "many", "user_cnt": null}}}
`error` makes every call to that path answer with that vendor error (in `error_key` convention).
`patch` overrides (null: deletes) top-level keys of a path's success answers: odd vendor values.
`ghost_room` lists a room in room/list that participate/list no longer knows (41005).
`room_errors` ({room_id: {"code": 41002, "msg": "mysql error"}}; null clears) makes
participate/list of those rooms alone answer that error (a failure of one room, not the server).

Licence, SIP gateways and recording status (the vendor's answer shapes and error bodies):
  {"max_users": 500, "licence_error": 40071 | null, "sip_gates": [{"id": 2, "name": "pbx",
   "status": "1", "url": "10.0.0.5:5060"}] | [] | null, "record_status": {"<record_id>": 2}}
`licence_error` answers get_licence_info with one of the vendor's [licence] codes (40070-40073).
`sip_gates: []` is a server with no gateway set (40023 "no sip gate set"); null restores the
default gateways. `record_status` sets the status code of record ids (a new id becomes known;
null as a value forgets it: 40090 "no such record_id").
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from monitord.simulators.base import Clock, make_app, read_knobs

DEFAULT_ACCESS_KEY = "sim_access_key"
DEFAULT_SECRET_KEY = "Sim-Avd-Secret-9f2c71"
PREFIX = "/sdkapi/v2"
SERVERS = ("box1", "box2", "box3")
CLIENT_TYPES = ("web", "pc", "android", "ios", "miniprogram")
ROOM_PERIOD = 900  # seconds: each room opens and closes once per period
# With outages on (the default, so `monitord demo` shows them), box3 drops out of
# media_server/user_count for OUTAGE_LENGTH seconds every OUTAGE_PERIOD seconds.
OUTAGE_SERVER = "box3"
OUTAGE_PERIOD = 600
OUTAGE_LENGTH = 90
FIRST_ROOM_ID = 10000000000
GHOST_ROOM_ID = "10000000999"

ERR_AUTH = {"ret": 40001, "msg": "Authenticate failed, access_key or secret_key error"}
ERR_ARGS = {"ret": 40002, "msg": "args required"}
ERR_TOKEN = {"ret": 40003, "msg": "access token check invalid"}
ERR_NO_ROOM = {"ret": 40004, "msg": "no such room_id"}
ERR_NO_RECORD = {"ret": 40094, "msg": "no such record"}
ERR_NO_MEDIA_SERVER = {"ret": 11003, "msg": "have no media server is online"}
ERR_ROOM_NOT_FOUND = {"code": 41005, "msg": "Internal server error:room not found"}
ERR_NO_SIP_GATE = {"ret": 40023, "msg": "no sip gate set"}
ERR_NO_RECORD_ID = {"ret": 40090, "msg": "no such record_id"}
LICENCE_ERRORS = {40070: "no company info in this site", 40071: "no site licence set", 40072: "no licence info",
                  40073: "service not available"}
MAX_USERS = 500
# The vendor's sip/gate/list example: one gateway enabled, one not.
EXAMPLE_SIP_GATES = ({"id": 2, "name": "11123", "status": "1", "url": "192.168.0.100:6060"},
                     {"id": 3, "name": "1234", "status": "0", "url": "192.168.3.6:7500"})
LIVE_SIP_GATES = ({"id": 1, "name": "pbx-main", "status": "1", "url": "10.0.0.5:5060"},
                  {"id": 2, "name": "pbx-backup", "status": "1", "url": "10.0.0.6:5060"})
# The record id of the vendor's mix_record/get example (a recording that has ended), and one
# continuous recording that the live demo keeps running.
EXAMPLE_RECORD_ID = "a150e71f957144a5b0ded9205fa1001d"
LIVE_RECORD_ID = "5e1d0c0ffee04d6a9b7f2a3c4d5e6f70"


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from some names and timeline parts."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Room:
    room_id: str
    server_id: str | None
    create_time: int
    users: list[dict[str, Any]]


@dataclass
class AvdSim:
    clock: Clock
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    scenario: str = "live"
    token_ttl: float = 600.0
    tokens: dict[str, float] = field(default_factory=dict)  # token -> issued at
    offline_servers: set[str] = field(default_factory=set)
    no_media_server: bool = False
    outages: bool = True
    time_scale: float = 1.0  # divides the outage and room timelines
    room_count: int = 8
    error: dict[str, Any] | None = None
    error_key: str = "ret"
    recorded_rooms: set[str] = field(default_factory=lambda: {"12345678980", str(FIRST_ROOM_ID + 1)})
    tokens_issued: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    last_query: dict[str, dict[str, str]] = field(default_factory=dict)
    participant_queries: list[str] = field(default_factory=list)
    ghost_room: bool = False
    patch: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> top-level keys to override
    max_users: int = MAX_USERS
    room_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    licence_error: int | None = None
    sip_gates: list[Any] | None = None  # None: the scenario's gateways
    record_statuses: dict[str, int] = field(default_factory=lambda: {EXAMPLE_RECORD_ID: 4, LIVE_RECORD_ID: 2})

    # ----------------------------------------------------------------------------- the world

    def online_servers(self) -> list[str]:
        if self.no_media_server:
            return []
        servers = ("box1",) if self.scenario == "fixed" else SERVERS
        offline = set(self.offline_servers)
        scale = self.time_scale
        if self.outages and self.scenario == "live" and self.clock() % (OUTAGE_PERIOD / scale) < OUTAGE_LENGTH / scale:
            offline.add(OUTAGE_SERVER)
        return [s for s in servers if s not in offline]

    def rooms(self) -> list[Room]:
        if self.scenario == "fixed":
            return fixed_rooms()
        now = self.clock()
        online = self.online_servers()
        minute = int(now // 60)
        rooms = []
        for n in range(self.room_count):
            room_id = str(FIRST_ROOM_ID + n)
            period = ROOM_PERIOD / self.time_scale
            phase = (now + _unit(room_id, "offset") * period) % period
            if phase >= period * (0.4 + 0.5 * _unit(room_id, "length")):
                continue
            if not online:
                continue  # no media server, no conference
            users = [
                {"user_name": f"user {room_id[-2:]}-{i}", "node_id": i + 10, "user_id": f"{room_id}-{i}"}
                for i in range(1 + int(_unit(room_id, "users", minute) * 6))
            ]
            server = online[int(_unit(room_id, "server") * len(online))]
            rooms.append(Room(room_id, server, int(now - phase), users))
        return rooms

    def listed_rooms(self) -> list[Room]:
        """room/list's view: with `ghost_room`, one room that has closed by the time anyone asks
        for its participants (the race between two calls on a real server)."""
        rooms = self.rooms()
        if self.ghost_room:
            rooms.append(Room(GHOST_ROOM_ID, "box1", int(self.clock()) - 60, [
                {"user_name": "leaving", "node_id": 1, "user_id": "ghost-1"}]))
        return rooms

    def room(self, room_id: str) -> Room | None:
        return next((r for r in self.rooms() if r.room_id == room_id), None)

    def participants(self, room: Room) -> list[dict[str, Any]]:
        if self.scenario == "fixed":
            return fixed_participants(room)
        minute = int(self.clock() // 60)
        people = []
        for user in room.users:
            uid = user["user_id"]
            u = _unit(uid, "client")
            videos = [
                {"level": 0, "status": "published" if _unit(uid, "video", v, minute) < 0.7 else "init",
                 "id": f"{uid}_v{v}", "type": "video", "ctype": "unknown", "name": f"camera {v}",
                 "description": ""}
                for v in range(int(_unit(uid, "cameras") * 3))
            ]
            audios = [{"type": "Audio", "status": "published" if _unit(uid, "mic", minute) < 0.8 else "init",
                       "name": "microphone", "id": f"{uid}_default"}]
            people.append({"user_name": user["user_name"], "user_id": uid, "status": 1,
                           "type": CLIENT_TYPES[int(u * len(CLIENT_TYPES))], "videos": videos, "audios": audios})
        return people

    def statistic(self, start: int, end: int) -> dict[str, Any]:
        if self.scenario == "fixed":
            return {"meeting_total": 12, "ios_cnt": 3, "pc_cnt": 20, "user_cnt": 41, "other_cnt": 1,
                    "android_cnt": 5, "time_total": 5400, "box_cnt": 2, "web_cnt": 10}
        hours = max(0, end - start) / 3600
        bucket = end // 300
        counts = {f"{p}_cnt": int(hours * 10 * _unit(p, bucket)) for p in ("ios", "pc", "other", "android",
                                                                            "box", "web")}
        meetings = int(hours * 6 * (0.5 + _unit("meetings", bucket)))
        return {"meeting_total": meetings, "user_cnt": sum(counts.values()), **counts,
                "time_total": int(meetings * 1800 * _unit("time", bucket))}

    def user_counts(self) -> list[dict[str, Any]]:
        counts = dict.fromkeys(self.online_servers(), 0)
        for room in self.rooms():
            if room.server_id in counts:
                counts[room.server_id] += len(room.users)
        return [{"server_id": s, "user_count": n} for s, n in counts.items()]

    def recordings(self, room_id: str) -> list[dict[str, Any]] | None:
        if room_id not in self.recorded_rooms:
            return None
        if room_id == "12345678980":
            return example_recordings()
        base = 1_700_000_000 + int(_unit(room_id, "rec") * 10_000_000)
        return [
            {"record_id": hashlib.sha256(f"{room_id}{i}".encode()).hexdigest()[:32], "room_id": room_id,
             "name": f"auto_record_{i}", "file_type": "tms", "play_url": "",
             "start_time": str(base + i * 7200), "end_time": str(base + i * 7200 + 600 + i * 60),
             "file_size": f"{5 + i * 3.25:.3f}M",
             "transcode_files": [{"download_url": f"/attachment?file={room_id}-{i}.mp4",
                                  "duration": f"{600 + i * 60 + 0.5:.3f}s", "file_size": f"{4 + i * 2.5:.3f}M",
                                  "play_url": ""}]}
            for i in range(1 + int(_unit(room_id, "records") * 3))
        ]

    def gateways(self) -> list[Any]:
        if self.sip_gates is not None:
            return self.sip_gates
        return [dict(g) for g in (EXAMPLE_SIP_GATES if self.scenario == "fixed" else LIVE_SIP_GATES)]

    def active_users(self) -> int:
        if self.scenario == "fixed":
            return 3  # the vendor's example
        return sum(len(r.users) for r in self.rooms())

    def describe(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "tokens": len(self.tokens),
            "tokens_issued": self.tokens_issued,
            "calls": dict(self.calls),
            "offline_servers": sorted(self.offline_servers),
            "no_media_server": self.no_media_server,
            "rooms": [r.room_id for r in self.rooms()],
        }


def fixed_rooms() -> list[Room]:
    """The vendor's room/list example (the first room predates server_id) plus a room on box1."""
    return [
        Room("12345678980", None, 1688697174, [{"user_name": "fan", "node_id": 34, "user_id": "2"}]),
        Room("10000000000", "box1", 1688697215,
             [{"user_name": "1", "node_id": 10, "user_id": "cb94cle4b91d4323a9c81045c0e735c0"},
              {"user_name": "李", "node_id": 11, "user_id": "16"}]),
    ]


def fixed_participants(room: Room) -> list[dict[str, Any]]:
    """The vendor's participate/list example (a web user, camera published, microphone init),
    and for the second user of a room an iOS client with nothing published."""
    people = []
    for index, user in enumerate(room.users):
        if index == 0:
            people.append({
                "user_name": user["user_name"], "user_id": user["user_id"], "status": 1, "type": "web",
                "videos": [{"level": 0, "status": "published", "id": f"{user['user_id']}_5996d976b7ea9",
                            "type": "video", "ctype": "unknown", "name": "webcam C170 (046d:082b)",
                            "description": ""}],
                "audios": [{"type": "Audio", "status": "init",
                            "name": "麦克风 (Realtek High Definition Audio)", "id": f"{user['user_id']}_default"}],
            })
        else:
            people.append({"user_name": user["user_name"], "user_id": user["user_id"], "status": 1,
                           "type": "ios", "videos": [{"level": 0, "status": "init", "id": "x", "type": "video",
                                                      "ctype": "unknown", "name": "front"}],
                           "audios": [{"type": "Audio", "status": "init", "name": "mic", "id": "y"}]})
    return people


def example_recordings() -> list[dict[str, Any]]:
    """The vendor's mix_record/get example: one tms recording, five transcoded files."""
    base = "https://avd.nice2meet.cn:9610/attachment?file=/home/data/recorder/files/test/20211201/" \
           "12345678980-a150e71f957144a5b0ded9205fa1001d-2021-12-01-10-07-11"
    transcodes = [(".mp3", "67.008s", "0.234M"), (".mp4", "80.878s", "16.367M"),
                  ("/mini_B5CE28B3-AD1C-4528-9CAA-91405C308E76_v1.mp4", "80.967s", "9.947M"),
                  ("/aaa_aaa_v1.webm", "80.775s", "8.407M"), ("/audio_alluser.mp3", "67.008s", "0.234M")]
    return [{
        "download_url": base + ".tms",
        "transcode_files": [{"download_url": base + suffix, "duration": duration, "file_size": size,
                             "play_url": f"https://avd.nice2meet.cn:9610/videoPlayer?url={base}{suffix}"}
                            for suffix, duration, size in transcodes],
        "play_url": "", "file_size": "20.547M", "start_time": "1638324431", "end_time": "1638324512",
        "room_id": "12345678980", "file_type": "tms", "name": "20211201auto_record",
        "record_id": "a150e71f957144a5b0ded9205fa1001d",
    }]


SIM_KEY = web.AppKey("avd_sim", AvdSim)


def _answer(body: dict[str, Any], patch: dict[str, Any] | None = None) -> web.Response:
    """A vendor answer; `patch` overrides top-level keys of a success (None deletes the key)."""
    if patch:
        body = {**body, **patch}
        body = {k: v for k, v in body.items() if not (k in patch and patch[k] is None)}
    return web.json_response(body)


def _in_convention(error: dict[str, Any], key: str) -> dict[str, Any]:
    code = error.get("ret", error.get("code"))
    return {key: code, "msg": error["msg"]}


async def _params(request: web.Request) -> dict[str, str]:
    """Query string, plus a form-urlencoded body for POST (the vendor accepts both)."""
    params = dict(request.query)
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        params.update({k: str(v) for k, v in form.items()})
    return params


async def get_token(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    params = await _params(request)
    if "access_key" not in params or "secret_key" not in params:
        return _answer(ERR_ARGS)
    # As bytes: compare_digest refuses str with non-ASCII characters, which keys may have.
    if not (secrets.compare_digest(params["access_key"].encode(), sim.access_key.encode())
            and secrets.compare_digest(params["secret_key"].encode(), sim.secret_key.encode())):
        return _answer(ERR_AUTH)
    token = base64.b64encode(secrets.token_hex(20).encode()).decode()
    sim.tokens[token] = sim.clock()
    sim.tokens_issued += 1
    return _answer({"ret": 0, "msg": "success", "token": token})


async def api(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    path = "/" + request.match_info["path"]
    params = await _params(request)
    # participate/list speaks the code/msg convention, everything else ret/msg (vendor examples).
    key = "code" if path == "/room/participate/list" else "ret"
    now = sim.clock()
    for token in [t for t, issued in sim.tokens.items() if now - issued > sim.token_ttl]:
        del sim.tokens[token]
    token = params.get("token", "")
    if not token:
        return _answer(_in_convention(ERR_ARGS, key))
    if token not in sim.tokens:
        return _answer(_in_convention(ERR_TOKEN, key))
    sim.calls[path] += 1
    sim.last_query[path] = {k: v for k, v in params.items() if k != "token"}
    if sim.error is not None and sim.error.get("path") == path:
        return _answer({sim.error_key: sim.error.get("ret", sim.error.get("code")),
                        "msg": sim.error.get("msg", "")})

    patch = sim.patch.get(path)
    if path == "/room/list":
        rooms = sim.listed_rooms()
        return _answer({
            "msg": "success", "ret": 0, "room_count": len(rooms), "user_count": sum(len(r.users) for r in rooms),
            "rooms": [{"users": r.users, "room_id": r.room_id, "create_time": r.create_time,
                       **({"server_id": r.server_id} if r.server_id is not None else {})} for r in rooms],
        }, patch)
    if path == "/media_server/user_count":
        if not sim.online_servers():
            return _answer(ERR_NO_MEDIA_SERVER)
        return _answer({"ret": 0, "msg": "success", "server_user_count": sim.user_counts()}, patch)
    if path == "/room/get_statistic":
        try:
            start, end = int(params["start_time"]), int(params["end_time"])
        except (KeyError, ValueError):
            return _answer(ERR_ARGS)
        if start > end:
            return _answer({"ret": 40002, "msg": "args error: start_time after end_time"})
        # The vendor's example answer carries the figures without a ret/msg envelope.
        return _answer(sim.statistic(start, end), patch)
    if path == "/room/participate/list":
        room_id = params.get("room_id")
        if not room_id:
            return _answer(_in_convention(ERR_ARGS, "code"))
        sim.participant_queries.append(room_id)
        if room_id in sim.room_errors:
            return _answer(_in_convention(sim.room_errors[room_id], "code"))
        room = sim.room(room_id)
        if room is None:
            return _answer(ERR_ROOM_NOT_FOUND)
        return _answer({"code": 200, "msg": "success", "participates": sim.participants(room)}, patch)
    if path == "/room/mix_record/get":
        room_id = params.get("room_id")
        if not room_id:
            return _answer(ERR_ARGS)
        records = sim.recordings(room_id)
        if records is None:
            # Closed rooms still exist on a real server: any 11-digit id is a room here, one
            # without recordings; anything else is unknown.
            known = sim.room(room_id) is not None or (room_id.isdigit() and len(room_id) == 11)
            return _answer(ERR_NO_RECORD if known else ERR_NO_ROOM)
        return _answer({"ret": 0, "msg": "success", "data": records}, patch)
    if path == "/app/get_licence_info":
        if sim.licence_error is not None:
            return _answer({"ret": sim.licence_error, "msg": LICENCE_ERRORS.get(sim.licence_error, "")})
        return _answer({"ret": 0, "msg": "success", "active_usernum": sim.active_users(),
                        "max_users": sim.max_users}, patch)
    if path == "/sip/gate/list":
        gates = sim.gateways()
        if not gates:
            return _answer(ERR_NO_SIP_GATE)
        return _answer({"sip_gates": gates, "msg": "success", "ret": 0}, patch)
    if path == "/room/record/status":
        record_id = params.get("record_id")
        if not record_id:
            return _answer(ERR_ARGS)
        if record_id not in sim.record_statuses:
            return _answer(ERR_NO_RECORD_ID)
        return _answer({"ret": 0, "msg": "success", "record_status": sim.record_statuses[record_id]}, patch)
    return _answer({"ret": 40002, "msg": f"no such api {path}"})


async def control(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    body = await read_knobs(request, scenarios=("live", "fixed"))
    if "scenario" in body:
        sim.scenario = body["scenario"]
    if "token_ttl" in body:
        sim.token_ttl = float(body["token_ttl"])
    if body.get("expire_tokens"):
        sim.tokens.clear()
    if "offline_servers" in body:
        sim.offline_servers = set(body["offline_servers"] or ())
    if "outages" in body:
        sim.outages = bool(body["outages"])
    if "no_media_server" in body:
        sim.no_media_server = bool(body["no_media_server"])
    if "room_count" in body:
        sim.room_count = int(body["room_count"])
    if "error" in body:
        sim.error = body["error"]
    if "error_key" in body:
        if body["error_key"] not in ("ret", "code"):
            return web.json_response({"error": "error_key is ret or code"}, status=400)
        sim.error_key = body["error_key"]
    if "patch" in body:
        sim.patch = dict(body["patch"] or {})
    if "ghost_room" in body:
        sim.ghost_room = bool(body["ghost_room"])
    if "room_errors" in body:
        sim.room_errors = {str(k): dict(v) for k, v in (body["room_errors"] or {}).items()}
    if "max_users" in body:
        sim.max_users = int(body["max_users"])
    if "licence_error" in body:
        if body["licence_error"] is not None and body["licence_error"] not in LICENCE_ERRORS:
            return web.json_response({"error": f"licence_error is one of {sorted(LICENCE_ERRORS)}"}, status=400)
        sim.licence_error = body["licence_error"]
    if "sip_gates" in body:
        # Entries go out as given: odd ones ("junk", a gateway without status) are firmware quirks.
        sim.sip_gates = None if body["sip_gates"] is None else list(body["sip_gates"])
    if "record_status" in body:
        for record_id, status in dict(body["record_status"] or {}).items():
            if status is None:
                sim.record_statuses.pop(str(record_id), None)
            else:
                sim.record_statuses[str(record_id)] = status
    if "recorded_rooms" in body:
        sim.recorded_rooms = set(body["recorded_rooms"] or ())
    return web.json_response(sim.describe())


def create_app(clock: Clock | None = None, access_key: str = DEFAULT_ACCESS_KEY,
               secret_key: str = DEFAULT_SECRET_KEY, scenario: str = "live", outages: bool = True,
               time_scale: float = 1.0) -> web.Application:
    sim = AvdSim(clock=clock or Clock(), access_key=access_key, secret_key=secret_key, scenario=scenario,
                 outages=outages, time_scale=time_scale)
    app = make_app(sim.describe)
    app[SIM_KEY] = sim
    app.router.add_route("*", f"{PREFIX}/app/get_token", get_token)
    app.router.add_route("*", PREFIX + "/{path:.+}", api)
    app.router.add_post("/_sim/avd", control)
    return app


def demo_targets(base_url: str) -> list[dict[str, Any]]:
    """One AVD server with a watched recording room."""
    return [{
        "name": "avd-server",
        "source": "avd",
        "url": base_url,
        "access_key": DEFAULT_ACCESS_KEY,
        "secret_key": DEFAULT_SECRET_KEY,
        "interval": "5s",
        "timeout": "4s",
        "participant_rooms_per_poll": 4,
        "recording_rooms": ["12345678980", str(FIRST_ROOM_ID + 1)],
        "recording_interval": "30s",
        "watched_records": [LIVE_RECORD_ID],
    }]
