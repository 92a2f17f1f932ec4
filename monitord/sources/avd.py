"""nice2meet AVD conferencing server, `sdkapi/v2` (nice2meet AVD server API reference).

Auth: a token from `/app/get_token?access_key=..&secret_key=..`, sent as `token` in the query
string of every call. Its lifetime is undocumented, so we keep it until the server rejects it
(ret 40003 "access token check invalid", the vendor's error-code table; configurable), then fetch a new
one and retry that call once. Both the secret key and the token travel in query strings: they
must never reach a PollError detail, a log line or a label. The HTTP layer strips query strings
from its own texts; the vendor's `msg` is scrubbed of both before we quote it.

Envelopes: success is `ret == 0`, or `code == 200` / `code == 0` (participate/list and some
other calls use `code`); the vendor's get_statistic example has neither field, so an answer with
neither is read as a success and validated by its payload.

Per poll: room/list, media_server/user_count and room/get_statistic (a sliding window ending
now); participate/list for at most `participant_rooms_per_poll` rooms, rotating through the room
list across polls; mix_record/get for the rooms in `recording_rooms`, at most once per
`recording_interval`. Media servers seen before are remembered (also in the state store, so a
restart does not forget them): a known server that is missing now is exported as offline, and
the answer "have no media server is online" (ret 11003) is that state for every known server,
not a failed poll. Licence capacity, SIP gateways and watched recordings: avd_services.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from pydantic import Field
from yarl import URL

from monitord import normalize as norm
from monitord import redact
from monitord.config import BaseURL, Duration, Secret, TargetConfig
from monitord.errors import PollError
from monitord.http import Response
from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder
from monitord.sources import avd_services, shared
from monitord.sources.base import Source, SourceContext
from monitord.state import StateModel
from monitord.vendor import ITEM_REASONS, Request, RetryPolicy, Token, TokenAuth, TokenCache, fan_out

API_PREFIX: Final = "/sdkapi/v2"

# Vendor codes from the reference's error-code table (ret or code).
AUTH_FAILED: Final = 40001           # "Authenticate failed, access_key or secret_key error"
TOKEN_INVALID: Final = 40003         # "access token check invalid"
NO_SUCH_ROOM: Final = 40004          # "no such room id"
USER_NOT_IN_ROOM: Final = 40008
ROOM_NOT_OPEN: Final = 40009         # "room not open or not exist"
NO_SUCH_RECORD: Final = 40094        # "no such record"
NO_MEDIA_SERVER_ONLINE: Final = 11003  # "have no media server is online"
INTERNAL_ERROR: Final = 41005        # "Internal server error:room not found" when a room closed
# get_token's own error example is {"ret": 401, ...}; read it like 40001.
TOKEN_REQUEST_REJECTED: Final = 401

NOT_FOUND_CODES: Final = frozenset({NO_SUCH_ROOM, USER_NOT_IN_ROOM, ROOM_NOT_OPEN, NO_SUCH_RECORD})
CLIENT_TYPES: Final = ("web", "miniprogram", "android", "ios", "pc", "other")
PLATFORMS: Final = (("ios", ("ios_cnt",)), ("android", ("android_cnt", "andronid_cnt")),
                    ("pc", ("pc_cnt",)), ("web", ("web_cnt",)), ("box", ("box_cnt",)),
                    ("other", ("other_cnt",)))
MEDIA_KINDS: Final = (("video", "videos"), ("audio", "audios"))
TRACK_STATES: Final = ("published", "unpublished")
_UNPUBLISHED: Final = frozenset({"init", "unpublished", "unpublish", "closed", "stopped"})
MAX_MSG_LENGTH: Final = 200
# A reset connection, a 5xx or a lost answer is worth one more try within the poll's deadline
# (the vendor documents no retry advice).
TRANSPORT_RETRY: Final = RetryPolicy(attempts=2, base_delay=0.5, max_delay=1.0)
STATE_KEY: Final = "media_servers"
# Saving the media-server memory on every poll would be an fsync per poll; membership changes
# are saved at once, last-seen times at most this often.
STATE_SAVE_INTERVAL: Final = 300.0


class AvdConfig(TargetConfig):
    source: Literal["avd"] = Field(description="avd: a nice2meet AVD conferencing server.")
    url: BaseURL = Field(description="Server base URL, e.g. https://avd.example.com:9610 (/sdkapi/v2 is appended).")
    access_key: Secret = Field(description="Access key of the app (use access_key_file or access_key_env).")
    secret_key: Secret = Field(description="Secret key of the app (use secret_key_file or secret_key_env).")
    token_error_codes: tuple[int, ...] = Field(
        (TOKEN_INVALID,),
        description="ret/code values meaning 'token invalid or expired': fetch a new token, retry once.",
    )
    statistic_window: Duration = Field(
        3600.0, description="Sliding window of room/get_statistic: from now minus this to now.",
    )
    statistic_time_unit: Literal["ms", "s", "min"] = Field(
        "s", description="Unit of get_statistic's time_total (undocumented; seconds unless your server differs).",
    )
    max_room_series: int = Field(
        200, ge=0, description="Rooms exported with a per-room series (largest first); the rest are counted.",
    )
    participant_rooms_per_poll: int = Field(
        20, ge=0, description="Rooms whose participate/list is read per poll, rotating through the list (0: off).",
    )
    participant_concurrency: int = Field(
        4, ge=1, le=32, description="participate/list calls in flight at once.",
    )
    recording_rooms: tuple[str, ...] = Field(
        (), description="Room ids whose mix recordings (room/mix_record/get) are watched.",
    )
    recording_interval: Duration = Field(
        300.0, description="Read the watched rooms' recordings at most this often.",
    )
    media_server_forget_after: Duration = Field(
        86400.0, description="A media server missing this long is forgotten (its offline series ends).",
    )
    licence_info: bool = Field(
        True, description="Read app/get_licence_info each poll: licensed vs active users.",
    )
    sip_gateways: bool = Field(
        True, description="Read sip/gate/list each poll: the SIP gateways and their status "
                          "(false for servers without SIP).",
    )
    sip_gateway_up_values: tuple[str, ...] = Field(
        ("1",), description="sip_gates[].status values that mean the gateway is up.",
    )
    sip_gateway_down_values: tuple[str, ...] = Field(
        ("0",), description="sip_gates[].status values that mean it is down; any other value is a parse error.",
    )
    watched_records: tuple[str, ...] = Field(
        (), description="Record ids whose room/record/status is read each poll.",
    )
    record_states: dict[int, avd_services.RecordState] = Field(
        default_factory=lambda: dict(avd_services.RECORD_STATES),
        description="record_status code -> state (not_started, preparing, recording, paused, stopped, failed); "
                    "a code not listed is a parse error.",
    )


# ------------------------------------------------------------------------------------ metrics

ROOMS = shared.ROOMS
ONLINE_USERS = shared.ONLINE_USERS
USERS_IN_ROOMS = MetricDef("rtc_avd_users_in_rooms", "gauge",
                           "Users in rooms now, as room/list counts them (user_count).")
ROOM_USERS = MetricDef("rtc_avd_room_users", "gauge",
                       "Users in the room now (room/list); only the largest max_room_series rooms.",
                       labels=("room",))
ROOM_CREATED = MetricDef("rtc_avd_room_created_timestamp_seconds", "gauge",
                         "When the room was created (room/list create_time).", labels=("room",),
                         unit="timestamp_seconds")
ROOM_OVERFLOW = MetricDef("monitord_avd_room_series_overflow", "gauge",
                          "Active rooms left without per-room series because of max_room_series.", health=True)
MEDIA_SERVER_ONLINE = MetricDef(
    "rtc_avd_media_server_online", "gauge",
    "1 if the media server is in media_server/user_count now, 0 if it was seen before and is missing.",
    labels=("server",))
MEDIA_SERVER_LAST_SEEN = MetricDef("rtc_avd_media_server_last_seen_timestamp_seconds", "gauge",
                                   "When the media server was last listed as online.", labels=("server",),
                                   unit="timestamp_seconds")
MEDIA_SERVERS_ONLINE = MetricDef(
    "rtc_avd_media_servers_online", "gauge",
    "Media servers online now; 0 when the server answers 'have no media server is online'.")
WINDOW = MetricDef("rtc_avd_statistic_window_seconds", "gauge",
                   "Length of the sliding window the rtc_avd_window_* statistics cover.", unit="seconds")
WINDOW_MEETINGS = MetricDef("rtc_avd_window_meetings", "gauge",
                            "Meetings in the statistic window (get_statistic meeting_total).")
WINDOW_USERS = MetricDef("rtc_avd_window_users", "gauge",
                         "Users who joined meetings in the statistic window (get_statistic user_cnt).")
WINDOW_PLATFORM_USERS = MetricDef("rtc_avd_window_platform_users", "gauge",
                                  "Users in the statistic window by client platform (get_statistic *_cnt).",
                                  labels=("platform",))
WINDOW_MEETING_TIME = MetricDef("rtc_avd_window_meeting_time_seconds", "gauge",
                                "Total meeting time in the statistic window (get_statistic time_total).",
                                unit="seconds")
PARTICIPANTS = MetricDef("rtc_avd_participants", "gauge",
                         "Participants by client type, over the rooms whose participate/list has been read.",
                         labels=("client_type",))
TRACKS = MetricDef("rtc_avd_participant_tracks", "gauge",
                   "Participants' video and audio tracks by publish state (init counts as unpublished).",
                   labels=("media", "state"))
PARTICIPANT_ROOMS_QUERIED = MetricDef("monitord_avd_participant_rooms_queried", "gauge",
                                      "Rooms whose participate/list was read in this poll.", health=True)
PARTICIPANT_ROOMS_SKIPPED = MetricDef(
    "monitord_avd_participant_rooms_skipped", "gauge",
    "Active rooms whose participate/list was not read in this poll (participant_rooms_per_poll).", health=True)
PARTICIPANT_AGE = MetricDef("monitord_avd_participant_data_age_seconds", "gauge",
                            "Age of the oldest participant list in rtc_avd_participants.", unit="seconds", health=True)
RECORDING_ROOM_EXISTS = MetricDef("rtc_avd_recording_room_exists", "gauge",
                                  "1 if the watched room exists on the server, 0 if it answers 'no such room'.",
                                  labels=("room",))
RECORDINGS = MetricDef("rtc_avd_recordings", "gauge", "Mix recordings of the watched room.", labels=("room",))
RECORDING_FILES = MetricDef("rtc_avd_recording_files", "gauge",
                            "Transcoded files of the watched room's mix recordings.", labels=("room",))
RECORDING_STORAGE = MetricDef("rtc_avd_recording_storage_bytes", "gauge",
                              "Size of all recording and transcoded files of the watched room.",
                              labels=("room",), unit="bytes")
RECORDING_LAST_SIZE = MetricDef("rtc_avd_recording_last_size_bytes", "gauge",
                                "Size of the newest recording of the watched room (file_size).",
                                labels=("room",), unit="bytes")
RECORDING_LAST_DURATION = MetricDef("rtc_avd_recording_last_duration_seconds", "gauge",
                                    "Longest transcoded file of the newest recording of the watched room.",
                                    labels=("room",), unit="seconds")
RECORDING_LAST_END = MetricDef("rtc_avd_recording_last_end_timestamp_seconds", "gauge",
                               "End time of the newest recording of the watched room.", labels=("room",),
                               unit="timestamp_seconds")
TOKEN_FETCHES = MetricDef("monitord_avd_token_fetches", "counter",
                          "Tokens fetched from app/get_token (first use and after the server rejected one).",
                          health=True)
PARTICIPANT_ROOM_ERRORS = MetricDef(
    "monitord_avd_participant_room_errors", "counter",
    "Rooms whose participate/list failed while others were read; the poll goes on without them.",
    labels=("reason",), health=True)


@dataclass
class RoomParticipants:
    fetched_at: float
    clients: dict[str, int]
    tracks: dict[tuple[str, str], int]


@dataclass
class RoomRecordings:
    fetched_at: float
    exists: bool
    values: dict[str, float | norm.Missing] = field(default_factory=dict)


class MediaServersState(StateModel):
    """The media servers seen, each with when it was last seen (unix seconds)."""

    servers: dict[str, float]


class AvdSource(Source[AvdConfig]):
    kind: ClassVar[str] = "avd"
    Config: ClassVar[type[TargetConfig]] = AvdConfig
    description: ClassVar[str] = ("nice2meet AVD conferencing server: rooms, users, media servers, recordings, "
                                 "licence capacity, SIP gateways")
    PARSE_FIELDS: ClassVar[tuple[str, ...]] = (
        *(key for _, keys in PLATFORMS for key in keys),
        *(f"participates[].{key}[].status" for _, key in MEDIA_KINDS),
        "data", "transcode_files", "file_size", "transcode_files[].duration", "end_time",
        "meeting_total", "participates[]", "rooms[].create_time", "rooms[].room_id", "rooms[].users",
        "server_user_count[].server_id", "server_user_count[].user_count", "time_total", "user_cnt", "user_count",
        *avd_services.PARSE_FIELDS,
    )
    metrics: ClassVar[tuple[MetricDef, ...]] = (
        ROOMS, ONLINE_USERS, USERS_IN_ROOMS, ROOM_USERS, ROOM_CREATED, ROOM_OVERFLOW,
        MEDIA_SERVER_ONLINE, MEDIA_SERVER_LAST_SEEN, MEDIA_SERVERS_ONLINE,
        WINDOW, WINDOW_MEETINGS, WINDOW_USERS, WINDOW_PLATFORM_USERS, WINDOW_MEETING_TIME,
        PARTICIPANTS, TRACKS, PARTICIPANT_ROOMS_QUERIED, PARTICIPANT_ROOMS_SKIPPED, PARTICIPANT_AGE,
        RECORDING_ROOM_EXISTS, RECORDINGS, RECORDING_FILES, RECORDING_STORAGE, RECORDING_LAST_SIZE,
        RECORDING_LAST_DURATION, RECORDING_LAST_END, TOKEN_FETCHES, PARTICIPANT_ROOM_ERRORS,
        *avd_services.METRICS,
    )

    def __init__(self, config: AvdConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        # Tokens held before: a server may quote an old one in its msg after we replaced it.
        self._old_tokens: deque[str] = deque(maxlen=8)
        self.token_fetches = 0  # fetched by this target (the cache may be filled by another)
        # One token per server and access key, shared by the targets that poll with them, for
        # as long as the daemon runs (its scope owns the cache; a token is never persisted).
        identity = hashlib.sha256(f"{config.url}|{config.access_key.get_secret_value()}".encode()).hexdigest()[:16]
        self.tokens = self.shared.get(f"token:{identity}", TokenCache)
        self.api = self.caller(
            # The lifetime is undocumented: a token is kept until the server rejects it, then
            # renewed once (the layer's rule) before the rejection is believed.
            auth=TokenAuth(self.tokens, self._fetch_token, _with_token, clock=ctx.clock, refresh_before=0.0),
            retry=TRANSPORT_RETRY,
        )
        self.participant_room_errors: Counter[str] = Counter()
        self._known_servers: dict[str, float] | None = None  # server id -> last seen (unix s)
        self._servers_file = self.state_file(STATE_KEY, MediaServersState)  # <target>.media_servers.json
        self._servers_saved_at = 0.0
        self._participants: dict[str, RoomParticipants] = {}
        self._rotation_after: str | None = None  # the last room id read; the next poll goes on after it
        self._recordings: dict[str, RoomRecordings] = {}

    @classmethod
    def budget_domain(cls, config: TargetConfig) -> str | None:
        """The server: targets that poll one server share its token (and go to one shard)."""
        assert isinstance(config, AvdConfig)
        url = URL(str(config.url))
        return f"{url.host}:{url.port}"

    # ----------------------------------------------------------------------------- protocol

    def _url(self, path: str) -> str:
        return f"{self.config.url}{API_PREFIX}{path}"

    def _scrub(self, text: str) -> str:
        """The vendor's msg, safe to quote: no secret, no token, in any encoding (a server that
        quotes the request has them percent-encoded), bounded."""
        held = self.tokens.token.value if self.tokens.token is not None else ""
        own = (self.config.secret_key.get_secret_value(), self.config.access_key.get_secret_value(),
               held, *self._old_tokens)
        return redact.quote_vendor(text, own, MAX_MSG_LENGTH)

    async def _fetch_token(self) -> Token:
        self.token_fetches += 1
        resp = await self.client.send(Request("GET", self._url("/app/get_token"), params={
            "access_key": self.config.access_key.get_secret_value(),
            "secret_key": self.config.secret_key.get_secret_value(),
        }))
        resp.raise_for_status()
        answer = resp.json_object()
        ok, code, msg = self._envelope(answer, "app/get_token")
        if not ok:
            if code in (AUTH_FAILED, TOKEN_REQUEST_REJECTED):
                raise PollError("auth", f"app/get_token rejected the access key/secret key: {msg or 'no msg'}", code)
            raise self._failure("app/get_token", code, msg)
        token = answer.get("token")
        if not isinstance(token, str) or not token.strip():
            raise PollError("bad_response", "app/get_token answered without a token")
        self._old_tokens.append(token)
        return Token(token, math.inf)

    def _envelope(self, answer: dict[str, Any], call: str) -> tuple[bool, int | None, str]:
        """(success, vendor code, scrubbed msg) for both conventions: ret/msg and code/msg."""
        raw_msg = answer.get("msg")
        msg = self._scrub(raw_msg) if isinstance(raw_msg, str) else ""
        for key, success in (("ret", (0,)), ("code", (0, 200))):
            if key in answer:
                code = norm.number(answer[key])
                if not isinstance(code, float) or not code.is_integer():
                    raise PollError("bad_response", f"{call}: {key} is not an integer")
                return int(code) in success, int(code), msg
        return True, None, msg

    def _failure(self, call: str, code: int | None, msg: str) -> PollError:
        detail = f"{call}: {msg or 'no msg'}"
        if code in (AUTH_FAILED, TOKEN_REQUEST_REJECTED) or code in self.config.token_error_codes:
            return PollError("auth", detail, code)
        if code in NOT_FOUND_CODES:
            return PollError("not_found", detail, code)
        return PollError("vendor_error", detail, code)

    async def _call(self, path: str, params: Mapping[str, str] | None = None,
                    accept: Iterable[int] = ()) -> tuple[dict[str, Any], int | None]:
        """One API call with the token (renewed once when the server rejects it, see __init__).
        Returns (answer, vendor code); a failure whose code is in `accept` is returned, not raised."""
        call = path.lstrip("/")
        accepted = frozenset(accept)

        def parse(resp: Response) -> tuple[dict[str, Any], int | None]:
            resp.raise_for_status()
            answer = resp.json_object()
            ok, code, msg = self._envelope(answer, call)
            if ok or code in accepted:
                return answer, code
            raise self._failure(call, code, msg)  # a token code is "auth": the layer renews once

        return await self.api.call(Request("GET", self._url(path), params=dict(params or {})), parse)

    # --------------------------------------------------------------------------------- poll

    async def poll(self, out: SnapshotBuilder) -> None:
        now = self.ctx.clock()
        rooms, _ = await self._call("/room/list")
        servers, code = await self._call("/media_server/user_count", accept=(NO_MEDIA_SERVER_ONLINE,))
        self._media_servers(servers, code == NO_MEDIA_SERVER_ONLINE, now, out)
        room_list = self._rooms(rooms, now, out)
        window = self.config.statistic_window
        statistic, _ = await self._call("/room/get_statistic", {
            "start_time": str(int(now - window)), "end_time": str(int(now)),
        })
        self._statistic(statistic, out)
        if self.config.participant_rooms_per_poll > 0:
            await self._read_participants([room_id for room_id, _users, _created in room_list], now, out)
        if self.config.recording_rooms:
            await self._read_recordings(now, out)
        await self._read_services(out)

    async def _read_services(self, out: SnapshotBuilder) -> None:
        cfg = self.config
        if cfg.licence_info:
            answer, code = await self._call("/app/get_licence_info", accept=avd_services.LICENCE_ABSENT)
            if code not in avd_services.LICENCE_ABSENT:
                avd_services.licence(answer, out)
        if cfg.sip_gateways:
            answer, code = await self._call("/sip/gate/list", accept=(avd_services.NO_SIP_GATE_SET,))
            avd_services.sip_gateways(None if code == avd_services.NO_SIP_GATE_SET else answer,
                                      cfg.sip_gateway_up_values, cfg.sip_gateway_down_values, out)
        for record in cfg.watched_records:
            answer, code = await self._call("/room/record/status", {"record_id": record},
                                            accept=(avd_services.NO_SUCH_RECORD_ID,))
            avd_services.record_status(record, None if code == avd_services.NO_SUCH_RECORD_ID else answer,
                                       cfg.record_states, out)

    async def close(self) -> None:
        """The API has no logout, and the token is shared with the server's other targets: it
        stays in the daemon's cache until the server rejects it."""

    def self_metrics(self, out: SnapshotBuilder) -> None:
        out.add(TOKEN_FETCHES, float(self.token_fetches))
        for reason in ITEM_REASONS:
            out.add(PARTICIPANT_ROOM_ERRORS, float(self.participant_room_errors[reason]), reason=reason)

    # ------------------------------------------------------------------------------ mapping

    def _rooms(self, answer: dict[str, Any], now: float, out: SnapshotBuilder) -> list[tuple[str, float, Any]]:
        rooms = answer.get("rooms")
        if rooms is None:
            rooms = []
        if not isinstance(rooms, list):
            raise PollError("bad_response", f"room/list: rooms is a {type(rooms).__name__}, not a list")
        parsed: list[tuple[str, float, Any]] = []
        per_server: dict[str, int] = {}
        for room in rooms:
            if not isinstance(room, dict):
                raise PollError("bad_response", "room/list: a room is not an object")
            room_id = _text(room.get("room_id"))
            if not room_id:
                out.add(ROOM_USERS, norm.INVALID, "rooms[].room_id")
                continue
            users = room.get("users")
            count = float(len(users)) if isinstance(users, list) else 0.0
            if users is not None and not isinstance(users, list):
                out.add(ROOM_USERS, norm.INVALID, "rooms[].users")
            server = _text(room.get("server_id"))
            per_server[server] = per_server.get(server, 0) + 1
            parsed.append((room_id, count, room.get("create_time")))
        # Known media servers without rooms have 0 rooms (a fact, not missing data); with no
        # server known and no room, one "" series still says "0 rooms".
        for server in self._known_servers or {"": 0.0}:
            per_server.setdefault(server, 0)
        for server, count in sorted(per_server.items()):
            out.add(ROOMS, float(count), app="", room="", server=server)
        total = norm.non_negative(answer.get("user_count"))
        out.add(USERS_IN_ROOMS, total if total is not norm.ABSENT else sum(c for _, c, _ in parsed),
                "user_count")
        # The biggest rooms get series: that is where a problem touches the most people.
        ranked = sorted(parsed, key=lambda r: (-r[1], r[0]))
        limit = self.config.max_room_series
        for room_id, count, created in ranked[:limit]:
            out.add(ROOM_USERS, count, room=room_id)
            out.add(ROOM_CREATED, norm.plausible_time(_epoch_seconds(created), now), "rooms[].create_time",
                    room=room_id)
        out.add(ROOM_OVERFLOW, float(max(0, len(ranked) - limit)))
        return sorted(parsed)

    def _load_known_servers(self) -> dict[str, float]:
        if self._known_servers is None:
            stored = self._servers_file.load()
            self._known_servers = dict(stored.servers) if stored is not None else {}
        return self._known_servers

    def _media_servers(self, answer: dict[str, Any], none_online: bool, now: float, out: SnapshotBuilder) -> None:
        known = self._load_known_servers()
        before = set(known)
        online: dict[str, float | norm.Missing] = {}
        if not none_online:
            entries = answer.get("server_user_count")
            if entries is None:
                entries = []
            if not isinstance(entries, list):
                raise PollError("bad_response", "media_server/user_count: server_user_count is not a list")
            for entry in entries:
                if not isinstance(entry, dict) or not _text(entry.get("server_id")):
                    out.add(MEDIA_SERVER_ONLINE, norm.INVALID, "server_user_count[].server_id")
                    continue
                server = _text(entry.get("server_id"))
                online[server] = norm.non_negative(entry.get("user_count"))
                known[server] = now
        forget_after = self.scaled(self.config.media_server_forget_after)
        for server in [s for s, seen in known.items() if s not in online and now - seen > forget_after]:
            del known[server]
        for server in sorted(known):
            out.add(MEDIA_SERVER_ONLINE, 1.0 if server in online else 0.0, server=server)
            out.add(MEDIA_SERVER_LAST_SEEN, known[server], server=server)
        for server, users in sorted(online.items()):
            out.add(ONLINE_USERS, users, "server_user_count[].user_count", app="", room="", server=server)
        out.add(MEDIA_SERVERS_ONLINE, float(len(online)))
        if set(known) != before or now - self._servers_saved_at >= STATE_SAVE_INTERVAL:
            self._servers_file.save({"servers": known})
            self._servers_saved_at = now

    def _statistic(self, answer: dict[str, Any], out: SnapshotBuilder) -> None:
        data = answer.get("data")
        if not isinstance(data, dict):
            data = answer
        out.add(WINDOW, self.config.statistic_window)
        out.add(WINDOW_MEETINGS, norm.non_negative(data.get("meeting_total")), "meeting_total")
        out.add(WINDOW_USERS, norm.non_negative(data.get("user_cnt")), "user_cnt")
        for platform, keys in PLATFORMS:
            key = next((k for k in keys if k in data), keys[0])
            out.add(WINDOW_PLATFORM_USERS, norm.non_negative(data.get(key)), key, platform=platform)
        out.add(WINDOW_MEETING_TIME,
                norm.duration_seconds(data.get("time_total"), default_unit=self.config.statistic_time_unit),
                "time_total")

    # ------------------------------------------------------------------------- participants

    def _rotation(self, room_ids: list[str]) -> list[str]:
        """The next participant_rooms_per_poll rooms after the last one read, wrapping around;
        keyed by room id, so rooms coming and going do not make the rotation skip or repeat."""
        limit = self.config.participant_rooms_per_poll
        if len(room_ids) <= limit:
            return room_ids
        after = self._rotation_after
        start = 0 if after is None else next((i for i, r in enumerate(room_ids) if r > after), 0)
        return [room_ids[(start + i) % len(room_ids)] for i in range(limit)]

    async def _read_participants(self, room_ids: list[str], now: float, out: SnapshotBuilder) -> None:
        active = set(room_ids)
        for gone in [r for r in self._participants if r not in active]:
            del self._participants[gone]
        chosen = self._rotation(room_ids)

        async def read(room_id: str) -> RoomParticipants | None:
            answer, code = await self._call("/room/participate/list", {"room_id": room_id},
                                            accept=(*NOT_FOUND_CODES, INTERNAL_ERROR))
            if code in NOT_FOUND_CODES or code == INTERNAL_ERROR:
                # The room closed between room/list and now (the server says 41005 "room not
                # found" as well); a real internal error of one room is not worth the whole poll.
                return None
            return self._participant_counts(answer, now, out)

        # The layer's partial-failure rule: a server or credential failure ends the poll, every
        # room failing fails it, otherwise the rooms that failed are counted and left out.
        lists = await fan_out(chosen, read, concurrency=self.config.participant_concurrency, noun="room")
        for room_id, error in lists.errors.items():
            self.participant_room_errors[error.reason] += 1
            self._participants.pop(room_id, None)
        for room_id, counts in lists.results.items():
            if counts is None:
                self._participants.pop(room_id, None)
            else:
                self._participants[room_id] = counts
        queried = len(chosen)
        if chosen:
            self._rotation_after = chosen[-1]
        clients = dict.fromkeys(CLIENT_TYPES, 0)
        tracks = {(m, s): 0 for m, _ in MEDIA_KINDS for s in TRACK_STATES}
        for room in self._participants.values():
            for k, v in room.clients.items():
                clients[k] += v
            for k2, v in room.tracks.items():
                tracks[k2] += v
        for client_type, count in clients.items():
            out.add(PARTICIPANTS, float(count), client_type=client_type)
        for (media, state), count in tracks.items():
            out.add(TRACKS, float(count), media=media, state=state)
        out.add(PARTICIPANT_ROOMS_QUERIED, float(queried))
        out.add(PARTICIPANT_ROOMS_SKIPPED, float(len(room_ids) - len(chosen)))
        if self._participants:
            out.add(PARTICIPANT_AGE, max(0.0, now - min(r.fetched_at for r in self._participants.values())))

    @staticmethod
    def _participant_counts(answer: dict[str, Any], now: float, out: SnapshotBuilder) -> RoomParticipants:
        people = answer.get("participates")
        if people is None:
            people = []
        if not isinstance(people, list):
            raise PollError("bad_response", "room/participate/list: participates is not a list")
        clients: dict[str, int] = {}
        tracks: dict[tuple[str, str], int] = {}
        for person in people:
            if not isinstance(person, dict):
                out.add(PARTICIPANTS, norm.INVALID, "participates[]")
                continue
            client = _text(person.get("type")).lower()
            client = client if client in CLIENT_TYPES else "other"
            clients[client] = clients.get(client, 0) + 1
            for media, key in MEDIA_KINDS:
                items = person.get(key)
                if not isinstance(items, list):
                    continue
                for item in items:
                    status = _text(item.get("status")).lower() if isinstance(item, dict) else ""
                    if status == "published":
                        state = "published"
                    elif status in _UNPUBLISHED:
                        state = "unpublished"
                    else:
                        out.add(TRACKS, norm.INVALID, f"participates[].{key}[].status")
                        continue
                    tracks[(media, state)] = tracks.get((media, state), 0) + 1
        return RoomParticipants(now, clients, tracks)

    # --------------------------------------------------------------------------- recordings

    async def _read_recordings(self, now: float, out: SnapshotBuilder) -> None:
        for room_id in self.config.recording_rooms:
            cached = self._recordings.get(room_id)
            if cached is None or now - cached.fetched_at >= self.scaled(self.config.recording_interval):
                answer, code = await self._call("/room/mix_record/get", {"room_id": room_id},
                                                accept=(NO_SUCH_ROOM, ROOM_NOT_OPEN, NO_SUCH_RECORD))
                if code in (NO_SUCH_ROOM, ROOM_NOT_OPEN):
                    cached = RoomRecordings(now, exists=False)
                else:
                    records = [] if code == NO_SUCH_RECORD else answer.get("data")
                    cached = RoomRecordings(now, exists=True, values=_recording_values(records, now))
                self._recordings[room_id] = cached
                fresh = True
            else:
                fresh = False
            out.add(RECORDING_ROOM_EXISTS, 1.0 if cached.exists else 0.0, room=room_id)
            for name, value in cached.values.items():
                metric = _RECORDING_METRICS[name]
                # Parse errors count once, when the answer was read, not on every poll that
                # shows the cached result.
                if value is norm.INVALID and not fresh:
                    continue
                out.add(metric, value, _RECORDING_FIELDS.get(name, name), room=room_id)
        for stale in [r for r in self._recordings if r not in self.config.recording_rooms]:
            del self._recordings[stale]


_RECORDING_METRICS: Final = {
    "recordings": RECORDINGS, "files": RECORDING_FILES, "storage": RECORDING_STORAGE,
    "last_size": RECORDING_LAST_SIZE, "last_duration": RECORDING_LAST_DURATION, "last_end": RECORDING_LAST_END,
}
_RECORDING_FIELDS: Final = {
    "recordings": "data", "files": "transcode_files", "storage": "file_size", "last_size": "file_size",
    "last_duration": "transcode_files[].duration", "last_end": "end_time",
}


def _with_token(request: Request, token: str) -> Request:
    # The vendor wants it in the query string of every call (GET, or form-urlencoded POST).
    return request.with_params({"token": token})


def _recording_values(records: Any, now: float) -> dict[str, float | norm.Missing]:
    if records is None:
        records = []
    if isinstance(records, dict):  # a single record where the server skips the array
        records = [records]
    if not isinstance(records, list):
        raise PollError("bad_response", "room/mix_record/get: data is not a list")
    records = [r for r in records if isinstance(r, dict)]
    files = 0
    storage: float | norm.Missing = 0.0
    for record in records:
        transcodes = _transcodes(record)
        files += len(transcodes)
        for item in (record, *transcodes):
            size = norm.size_bytes(item.get("file_size"))
            if size is norm.INVALID:
                storage = norm.INVALID
            elif isinstance(size, float) and isinstance(storage, float):
                storage += size
    if isinstance(storage, float) and not math.isfinite(storage):
        storage = norm.INVALID  # every size finite, the sum overflowed
    values: dict[str, float | norm.Missing] = {
        "recordings": float(len(records)), "files": float(files), "storage": storage,
    }
    if records:
        newest = max(records, key=lambda r: _sort_time(r.get("start_time")))
        values["last_size"] = norm.size_bytes(newest.get("file_size"))
        durations = [norm.duration_seconds(t.get("duration"), default_unit="s") for t in _transcodes(newest)]
        readable = [d for d in durations if isinstance(d, float)]
        if readable:
            values["last_duration"] = max(readable)
        elif norm.INVALID in durations:
            values["last_duration"] = norm.INVALID
        values["last_end"] = norm.plausible_time(_epoch_seconds(newest.get("end_time")), now)
    return values


def _transcodes(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's transcoded files; anything but a list of objects is no files."""
    items = record.get("transcode_files")
    return [t for t in items if isinstance(t, dict)] if isinstance(items, list) else []


# ------------------------------------------------------------------------------------ helpers


def _text(value: Any) -> str:
    """Ids arrive as strings or numbers ("room_id": "12345678980", "server_id": "box1")."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | str):
        return str(value).strip()
    return ""


def _epoch_seconds(value: Any) -> float | norm.Missing:
    """create_time / end_time: Unix seconds as a number or string; a millisecond value is
    recognised by its size (no server was running in 1970 + 50000 years)."""
    n = norm.non_negative(value)
    if not isinstance(n, float):
        return n
    if n == 0:
        return norm.ABSENT
    return n / 1000.0 if n > 1e11 else n


def _sort_time(value: Any) -> float:
    t = _epoch_seconds(value)
    return t if isinstance(t, float) else 0.0
