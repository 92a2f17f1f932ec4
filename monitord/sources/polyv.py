"""Polyv live: push-stream info of Tencent-CDN channels (保利威 "直播 API > 频道管理 > 查询频道的直播推流信息",
GET /live/v3/channel/monitor/list-tencent-stream-info).

One target is one Polyv account (appId + appSecret) with the channels to watch. Each poll asks
`list-tencent-stream-info` once per channel for a short recent window and exposes the newest
point of every push stream: bitrate, video and audio frame rate, and the point's time.

Choices worth knowing (docs/sources/polyv.md has the long form):

- Signing is the vendor's `LiveSignUtil` construction (see `sign`); the appSecret never leaves
  this process and the sign never appears in an error text (the HTTP layer drops query strings).
- "channel status not live" is a state: rtc_live_channel_live 0 and no stream series.
- Polyv limits the whole API domain to 1500 requests per 10 s per source IP and then bans the IP
  for 5 minutes ("API调用频率限制"). The targets of one API host share, from the daemon scope
  (monitord.vendor), one rate limiter ("requests") and one ban hold ("ban"). The limiter is a
  leaky bucket, which admits up to twice its rate within one window (a full bucket plus a
  bucket's worth of leak), so the configured rate is capped at 700/10 s: at most 1400 requests in
  any 10 s, below 1500; two targets of a host that configure different rates refuse to start
  (SharedConflict). A ban-like answer holds all Polyv polling of the host for `ban_seconds`;
  while held, polls fail at once with reason "throttled" and send nothing. The hold is persisted
  as `polyv@<host>.ban.json` (handed over between replicas with the host's targets), so a
  restart or a takeover does not walk into the ban again.
- Channels are queried with the layer's fan-out and its one partial-failure rule: one channel's
  failure (unknown channel, a vendor error, a broken body) does not fail the target while other
  channels answered: that channel's series are left out and
  monitord_polyv_channel_errors_total{channel,reason} counts it. Auth failures (signature,
  timestamp window, appId), bans and transport failures (timeout, connect, TLS) fail the poll.
  A request that timed out, could not connect or met an HTTP 5xx is sent once more, re-signed,
  within the poll deadline (RETRY).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from pydantic import Field, field_validator, model_validator
from yarl import URL

from monitord import normalize as norm
from monitord import redact
from monitord.config import BaseURL, Duration, Secret, TargetConfig
from monitord.errors import PollError
from monitord.http import Response, status_error
from monitord.metrics import MetricDef
from monitord.schedule import Schedule
from monitord.snapshot import SnapshotBuilder
from monitord.sources import shared
from monitord.sources.base import AccountStatus, Source, SourceContext
from monitord.vendor import FATAL, ITEM_REASONS, BanHold, RateLimiter, Request, RetryPolicy, Signer, fan_out
from monitord.vendor.pacing import BanState

API_PATH: Final = "/live/v3/channel/monitor/list-tencent-stream-info"
DEFAULT_URL: Final = "https://api.polyv.net"
LIMIT_PERIOD_SECONDS: Final = 10.0
# Polyv bans at 1500 per 10 s; a leaky bucket admits up to 2x its rate in one window.
MAX_CONFIGURED_RATE: Final = 700
# `time` and `timestamp` of one point may differ by rounding; more than this is a disagreement.
TIME_AGREEMENT_SECONDS: Final = 1.0

STREAM_LABELS: Final = ("channel", "stream")
# Where versions before the vendor layer kept the ban (read once, when the host has none).
LEGACY_BAN_OWNER: Final = "_polyv"
# Polyv advises nothing on retries; one more try of a request that met no answer or a gateway
# 5xx costs one request of the host's limit and saves a channel's data for the poll.
RETRY: Final = RetryPolicy(attempts=2, base_delay=0.5, max_delay=2.0)


def sign(params: Mapping[str, Any], app_secret: str, method: str = "MD5") -> str:
    """The vendor's request signature (vendor docs "签名生成规则", Java SDK LiveSignUtil).

    Every parameter but `sign` itself whose value is not null or blank, sorted by key, written
    as key1value1key2value2..., wrapped in the appSecret on both sides, hashed as UTF-8 with
    MD5 (or SHA-256 when the request carries signatureMethod=SHA256), upper-case hex.
    """
    body = "".join(
        f"{key}{value}" for key, value in sorted(params.items())
        if key != "sign" and value is not None and str(value).strip()
    )
    digest = hashlib.sha256 if method.upper() == "SHA256" else hashlib.md5
    return digest(f"{app_secret}{body}{app_secret}".encode()).hexdigest().upper()


class PolyvConfig(TargetConfig):
    source: Literal["polyv"]
    url: BaseURL = Field(DEFAULT_URL,
                         description="API base URL (the path of list-tencent-stream-info is appended).")
    app_id: str = Field(min_length=1, max_length=64, description="Account appId (sent with every request).")
    app_secret: Secret = Field(
        description="Account appSecret; signs requests, never sent (use app_secret_file or app_secret_env).")
    channels: tuple[str, ...] = Field(
        min_length=1, max_length=500,
        description="Channel ids (channelId) of this account to watch; one request per channel and poll.",
    )
    signature_method: Literal["MD5", "SHA256"] = Field(
        "MD5", description="Signature hash (SHA256 is sent as signatureMethod=SHA256).")
    window: Duration = Field(
        300.0, le=7 * 86400,
        description="How far back each request asks for points (startTime); the newest point is exposed.",
    )
    domain_requests_per_10s: int = Field(
        400, ge=1, le=MAX_CONFIGURED_RATE,
        description="Requests per 10 s the daemon sends to one Polyv API host, shared by every Polyv target of "
                    "the host, which must all give the same value. Polyv bans the IP above 1500.",
    )
    ban_seconds: Duration = Field(
        300.0,
        description="How long all Polyv polling of the host pauses after a ban-like answer (Polyv bans for 5 "
                    "minutes); one value for every Polyv target of the host.",
    )
    concurrency: int = Field(4, ge=1, le=32, description="Channels of this target queried at the same time.")
    max_streams_per_channel: int = Field(
        8, ge=1, le=100,
        description="Push streams exposed per channel (newest first); the rest are counted as dropped.",
    )
    expected_live: dict[str, Schedule] = Field(
        default_factory=dict,
        description="Per channel id: when it is expected live, `always` or {time_zone, windows: [{days: mon-fri, "
                    "start: '09:00', end: '12:00'}]}; exported as rtc_live_channel_expected_live. A channel without "
                    "an entry has no schedule (no series).",
    )

    @model_validator(mode="after")
    def _scheduled_channels_are_watched(self) -> PolyvConfig:
        unknown = sorted(set(self.expected_live) - set(self.channels))
        if unknown:
            raise ValueError(f"expected_live names channels that are not in channels: {', '.join(unknown)}")
        return self

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for channel in value:
            allowed = all(c.isascii() and (c.isalnum() or c in "_-") for c in channel)
            if not channel or len(channel) > 64 or not allowed:
                raise ValueError(f"channel id {channel!r} must be 1-64 characters of A-Z, a-z, 0-9, _ or -")
        duplicates = sorted({c for c in value if value.count(c) > 1})
        if duplicates:
            raise ValueError(f"channel ids listed twice: {', '.join(duplicates)}")
        return value


LIVE = MetricDef("rtc_live_channel_live", "gauge",
                 "1 while the live channel is streaming, 0 when the vendor says it is not live.",
                 labels=("channel",))
EXPECTED_LIVE = MetricDef(
    "rtc_live_channel_expected_live", "gauge",
    "1 while the channel's configured schedule (expected_live) says it should be live, else 0; absent for a "
    "channel without a schedule.",
    labels=("channel",),
)
BITRATE = shared.STREAM_BITRATE
FRAME_RATE = shared.STREAM_FRAME_RATE
POINT_TIME = MetricDef(
    "rtc_live_stream_point_timestamp_seconds", "gauge",
    "Unix time of the newest push-stream data point the vendor has for the stream (age = time() - value).",
    labels=STREAM_LABELS, unit="timestamp_seconds",
)
CHANNEL_ERRORS = MetricDef(
    "monitord_polyv_channel_errors", "counter",
    "Failed queries of one channel by reason; while other channels answer, the target stays up "
    "without this channel's series.",
    labels=("channel", "reason"),
    health=True,
)
STREAMS_DROPPED = MetricDef(
    "monitord_polyv_streams_dropped", "counter",
    "Push streams not exposed because a channel had more than max_streams_per_channel.",
    health=True,
)
BANNED = MetricDef(
    "monitord_polyv_banned", "gauge",
    "1 while all Polyv polling of this daemon is paused after a ban-like answer, else 0.",
    health=True,
)
BANNED_UNTIL = MetricDef(
    "monitord_polyv_banned_until_timestamp_seconds", "gauge",
    "Unix time until which Polyv polling is paused after the newest ban-like answer.",
    unit="timestamp_seconds",
    health=True,
)
BAN_ANSWERS = MetricDef(
    "monitord_polyv_ban_answers", "counter",
    "Ban-like answers (rate limit exceeded, IP blocked) this target received from Polyv.",
    health=True,
)


# How Polyv says what went wrong (Polyv "直播 API > 全局错误说明"): the envelope `code` is 200 for
# success, 40X (status "error") when a request field failed validation and 500 (status "fail")
# for a business error; the text is one of the documented messages ("Message 详细信息解释对照表"
# and the examples of "查询频道的直播推流信息"), repeated in `error.desc` ("Error参数描述": "错误描述,
# 与 error.code 对应"). `error.code` is documented as the specific cause, but Polyv publishes no
# table of its values: it is reported as the vendor code, never guessed at.
NOT_LIVE: Final = "not_live"
BANNED_ANSWER: Final = "ban"
DOCUMENTED_MESSAGES: Final[dict[str, str]] = {
    "channel status not live": NOT_LIVE,
    "channel in no live": NOT_LIVE,
    "qps exceeds number of calls": BANNED_ANSWER,
    "invalid signature.": "auth",
    "need to login": "auth",
    "access forbidden": "auth",
    "param validate error": "http_4xx",
    "invalid date time format": "http_4xx",
    "number range error": "http_4xx",
    "json format error": "http_4xx",
    "undefined error": "vendor_error",
    "illegal operation": "vendor_error",
}
# Documented messages that end in the offending parameter ("param should not be empty: %s").
DOCUMENTED_PREFIXES: Final[dict[str, str]] = {
    "param should not be empty:": "http_4xx",
    "param is not digit:": "http_4xx",
    "param is not number:": "http_4xx",
    "param length is incorrect:": "http_4xx",
    "param exceeds maximum value of integer:": "http_4xx",
}
# Last resort, for text outside the documented vocabulary only (Polyv answers messages of its own
# for the appId, the timestamp window or an unknown channel): English and Chinese substrings.
_BAN_MARKERS: Final = ("qps exceeds", "too frequent", "too many requests", "rate limit", "频繁", "限流",
                       "ip blocked", "ip is blocked", "forbidden ip", "封禁")
_AUTH_MARKERS: Final = ("sign", "timestamp", "appid", "app id", "appsecret", "secret")
_NOT_FOUND_MARKERS: Final = ("not found", "not exist", "不存在", "no such")
_NOT_LIVE_MARKER: Final = "not live"


@dataclass
class _Point:
    when: float
    raw: dict[str, Any]


@dataclass
class _ChannelResult:
    live: bool = False
    points: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0  # entries of `data` that are not objects


class _BanRecheck:
    """Pacing after the limiter: another target of the host may have met a ban while this
    request waited for its turn."""

    def __init__(self, ban: BanHold) -> None:
        self._ban = ban

    async def admit(self) -> None:
        self._ban.check()

    def observe(self, error: PollError | None) -> None:
        return None


class PolyvSource(Source[PolyvConfig]):
    kind: ClassVar[str] = "polyv"
    Config: ClassVar[type[TargetConfig]] = PolyvConfig
    description: ClassVar[str] = (
        "Polyv live: push-stream bitrate, frame rates and live state of Tencent-CDN channels")
    PARSE_FIELDS: ClassVar[tuple[str, ...]] = (
        "audioFrameRate", "bitRate", "data", "time", "timestamp", "videoFrameRate",
    )
    metrics: ClassVar[tuple[MetricDef, ...]] = (
        LIVE, EXPECTED_LIVE, BITRATE, FRAME_RATE, POINT_TIME, CHANNEL_ERRORS, STREAMS_DROPPED,
        BANNED, BANNED_UNTIL, BAN_ANSWERS,
    )

    @classmethod
    def budget_domain(cls, config: TargetConfig) -> str | None:
        # Polyv limits and bans the source address for its whole API domain, whatever the appId:
        # all targets of one API host share the daemon's limiter and ban, so they share a shard.
        assert isinstance(config, PolyvConfig)
        return URL(config.url).host

    def __init__(self, config: PolyvConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        host = URL(config.url).host or config.url
        # One per host, from the daemon scope: a different rate in another live target of the
        # host raises SharedConflict (the daemon does not start, a reload is refused).
        self._limiter: RateLimiter = self.shared.rate_limiter("requests", config.domain_requests_per_10s,
                                                              LIMIT_PERIOD_SECONDS)
        self._ban: BanHold = self.shared.ban("ban", config.ban_seconds, what=f"all Polyv polling of {host}")
        if self._ban.until == 0:
            legacy = ctx.state.load(LEGACY_BAN_OWNER, "ban", BanState, target=config.name)
            self._ban.restore(legacy)
        self._secret = config.app_secret.get_secret_value()
        self._api = self.caller(auth=Signer(self._signed), retry=RETRY,
                                pacing=(self._ban, self._limiter, _BanRecheck(self._ban)))
        self._channel_errors: Counter[tuple[str, str]] = Counter()
        self._streams_dropped = 0
        self._ban_answers = 0
        # Newest point time per channel and stream, kept while the channel stays live: a stalled
        # push stops producing points, and once its last one leaves the request window the stream
        # would vanish and PolyvStreamStalled would resolve while the stall goes on.
        self._last_points: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------------------------ the ban

    def account_status(self) -> AccountStatus:
        now = self.ctx.clock()
        return AccountStatus(
            account="this daemon's IP (every Polyv target)", window="requests per 10 s",
            limit=float(self._limiter.rate),
            throttled_until=self._ban.until if self._ban.until > now else None,
            note=f"{self._ban_answers} ban-like answer(s)",
        )

    # ------------------------------------------------------------------------------ protocol

    def _params(self, channel: str) -> dict[str, str]:
        now = self.ctx.clock()
        params = {
            "appId": self.config.app_id,
            "channelId": channel,
            "startTime": str(int((now - self.scaled(self.config.window)) * 1000)),
        }
        if self.config.signature_method == "SHA256":
            params["signatureMethod"] = "SHA256"
        return params

    def _signed(self, request: Request) -> Request:
        """The request with the current timestamp and its sign: a retry is signed afresh, so its
        timestamp is inside the vendor's 3-minute window."""
        params = {**(request.params or {}), "timestamp": str(int(self.ctx.clock() * 1000))}
        params.pop("sign", None)
        return request.with_params({**params, "sign": sign(params, self._secret, self.config.signature_method)})

    async def _query(self, channel: str) -> _ChannelResult:
        request = Request("GET", f"{self.config.url}{API_PATH}", params=self._params(channel))
        try:
            return await self._api.call(request, lambda resp: self._interpret(channel, resp))
        except PollError as exc:
            # Counted here, not from the fan-out's result: when every channel fails, the
            # fan-out raises and returns none of them.
            if exc.reason not in FATAL:
                self._channel_errors[(channel, exc.reason)] += 1
            raise

    def _interpret(self, channel: str, resp: Response) -> _ChannelResult:
        answer = _polyv_envelope(resp)
        if answer is None:
            if resp.status in (403, 429):
                raise self._ban_answer(f"HTTP {resp.status} from Polyv (channel {channel})", resp.status)
            if resp.status >= 400:
                raise status_error(resp.status, resp.url)
            try:
                resp.json()
            except PollError as exc:  # not JSON at all: say what it was
                raise PollError("bad_response", f"channel {channel}: {exc.detail}") from None
            raise PollError("bad_response", f"{resp.url}: answer for channel {channel} has no integer code")
        code = answer["code"]
        if code == 200 and resp.status < 400:
            data = answer.get("data")
            if data is None or data == "":
                data = []
            if not isinstance(data, list):
                kind = type(data).__name__
                raise PollError("bad_response", f"data for channel {channel} is a {kind}, not a list")
            points = [p for p in data if isinstance(p, dict)]
            return _ChannelResult(live=True, points=points, malformed=len(data) - len(points))
        failure = VendorFailure.read(answer)
        verdict = failure.classify(http_status=resp.status)
        shown = failure.describe()
        if verdict == NOT_LIVE:
            return _ChannelResult(live=False)
        if verdict == BANNED_ANSWER:
            raise self._ban_answer(f"Polyv answered {shown} (channel {channel})", failure.vendor_code)
        if verdict == "auth":
            hint = ""
            if "timestamp" in failure.text.lower():
                hint = " (is this host's clock right? the timestamp is valid for 3 minutes)"
            raise PollError("auth", f"Polyv rejected the request: {shown}{hint}", failure.vendor_code)
        raise PollError(verdict, f"channel {channel}: {shown}", failure.vendor_code)

    def _ban_answer(self, detail: str, code: int | str | None) -> PollError:
        """A ban-like answer: the host's BanHold (pacing of every call) holds on this
        "throttled" failure and persists it."""
        self._ban_answers += 1
        pause = self.scaled(self.config.ban_seconds)
        return PollError("throttled", f"{detail}; all Polyv polling paused for {pause:.0f}s", code)

    async def poll(self, out: SnapshotBuilder) -> None:
        self._ban.check()  # held: fail at once, send nothing
        channels = await fan_out(self.config.channels, self._query, concurrency=self.config.concurrency,
                                 noun="channel")
        for channel, result in channels.results.items():
            self._collect(channel, result, out)

    # ------------------------------------------------------------------------------ mapping

    def _collect(self, channel: str, result: _ChannelResult, out: SnapshotBuilder) -> None:
        out.add(LIVE, 1.0 if result.live else 0.0, channel=channel)
        newest: dict[str, _Point] = {}
        # A format change hits every point of the window: count it once per channel and poll.
        problems: set[str] = {"data"} if result.malformed else set()
        now = self.ctx.clock()
        for raw in result.points:
            when = _point_time(raw, problems, now)
            if when is None:
                continue
            stream = stream_label(raw.get("streamUrl"))
            held = newest.get(stream)
            if held is None or when > held.when:
                newest[stream] = _Point(when, raw)
        for problem in sorted(problems):
            out.report.parse_errors[problem] += 1
        ranked = sorted(newest.items(), key=lambda item: (-item[1].when, item[0]))
        keep = self.config.max_streams_per_channel
        self._streams_dropped += max(0, len(ranked) - keep)
        self._hold_silent_streams(channel, result.live, dict(ranked[:keep]), out)
        for stream, point in ranked[:keep]:
            labels = {"channel": channel, "stream": stream}
            p = point.raw
            out.add(POINT_TIME, point.when, "time", **labels)
            # The vendor documents bitRate as the video bitrate (视频码率), in bit/s. In the shared
            # stream families the channel is the room and a push stream is what the encoder sends.
            shared_labels = {"room": channel, "direction": "send", "stream": stream, "site": ""}
            video = {"media": "video", **shared_labels}
            audio = {"media": "audio", **shared_labels}
            out.add(BITRATE, norm.bitrate_bytes_per_second(p.get("bitRate")), "bitRate", **video)
            out.add(FRAME_RATE, norm.non_negative(p.get("videoFrameRate")), "videoFrameRate", **video)
            out.add(FRAME_RATE, norm.non_negative(p.get("audioFrameRate")), "audioFrameRate", **audio)

    def _hold_silent_streams(self, channel: str, live: bool, fresh: dict[str, _Point],
                             out: SnapshotBuilder) -> None:
        """Expose the remembered newest point time of a stream that has no point in this window
        while its channel is still live (only the time: its bitrate and frame rates are unknown,
        so they are absent). A channel that goes off air forgets its streams."""
        if not live:
            self._last_points.pop(channel, None)
            return
        held = self._last_points.setdefault(channel, {})
        for stream, point in fresh.items():
            held[stream] = max(point.when, held.get(stream, point.when))
        silent = sorted((s for s in held if s not in fresh), key=lambda s: (-held[s], s))
        room = max(0, self.config.max_streams_per_channel - len(fresh))
        for stream in silent[room:]:
            del held[stream]
        for stream in silent[:room]:
            out.add(POINT_TIME, held[stream], "time", channel=channel, stream=stream)

    def self_metrics(self, out: SnapshotBuilder) -> None:
        # From config and the clock, not the vendor: it survives failed polls.
        now = self.ctx.clock()
        for channel, schedule in sorted(self.config.expected_live.items()):
            out.add(EXPECTED_LIVE, 1.0 if schedule.expected_live(now) else 0.0, channel=channel)
        out.add(BANNED, 1.0 if self._ban.active() else 0.0)
        if self._ban.until > 0:
            out.add(BANNED_UNTIL, self._ban.until)
        out.add(BAN_ANSWERS, float(self._ban_answers))
        out.add(STREAMS_DROPPED, float(self._streams_dropped))
        errors = Counter({(c, r): 0 for c in self.config.channels for r in ITEM_REASONS})
        errors.update(self._channel_errors)
        for (channel, reason), count in sorted(errors.items()):
            out.add(CHANNEL_ERRORS, float(count), channel=channel, reason=reason)


@dataclass(frozen=True)
class VendorFailure:
    """A Polyv answer whose `code` is not 200: the envelope code, the documented error object
    (`error.code`, `error.desc`) and `message`."""

    code: int
    error_code: int | None
    desc: str
    message: str

    @staticmethod
    def read(answer: dict[str, Any]) -> VendorFailure:
        error = answer.get("error")
        error_code = desc = None
        if isinstance(error, dict):
            if type(error.get("code")) is int:
                error_code = error["code"]
            if isinstance(error.get("desc"), str):
                desc = error["desc"]
        message = answer.get("message")
        # Quoted in error details and logs: strings, bounded.
        return VendorFailure(answer["code"], error_code, redact.quote_vendor(desc) if desc else "",
                             redact.quote_vendor(message) if isinstance(message, str) else "")

    @property
    def text(self) -> str:
        """What Polyv says went wrong: error.desc, else message."""
        return self.desc.strip() or self.message.strip()

    @property
    def vendor_code(self) -> int:
        return self.error_code if self.error_code is not None else self.code

    def describe(self) -> str:
        codes = f"code {self.code}" + (f", error.code {self.error_code}" if self.error_code is not None else "")
        return f"{self.text!r} ({codes})"

    def documented(self) -> str | None:
        """The verdict of a documented message (error.desc or message), or None."""
        for text in (self.desc, self.message):
            key = text.strip().lower()
            if not key:
                continue
            if key in DOCUMENTED_MESSAGES:
                return DOCUMENTED_MESSAGES[key]
            for prefix, verdict in DOCUMENTED_PREFIXES.items():
                if key.startswith(prefix):
                    return verdict
        return None

    def classify(self, http_status: int) -> str:
        """A PollError reason, NOT_LIVE or BANNED_ANSWER. The documented vocabulary decides;
        only text outside it falls back to substrings, then to the envelope code."""
        verdict = self.documented()
        if verdict is not None:
            return verdict
        lowered = f"{self.desc} {self.message}".lower()
        if _NOT_LIVE_MARKER in lowered:
            return NOT_LIVE
        # Polyv documents no 403/429 envelope; a gateway answering so is the IP ban.
        banned = self.code in (403, 429) or http_status in (403, 429) or any(m in lowered for m in _BAN_MARKERS)
        if self.code == 401 or (not banned and any(m in lowered for m in _AUTH_MARKERS)):
            return "auth"
        if banned:
            return BANNED_ANSWER
        if any(m in lowered for m in _NOT_FOUND_MARKERS):
            return "not_found"
        return "vendor_error"


def _polyv_envelope(resp: Response) -> dict[str, Any] | None:
    """The answer if it is a Polyv envelope ({"code": int, ...}), whatever the HTTP status."""
    try:
        answer = resp.json()
    except PollError:
        return None
    if isinstance(answer, dict) and type(answer.get("code")) is int:  # not a bool
        return answer
    return None


def stream_label(stream_url: Any) -> str:
    """The stream's name from `streamUrl`: no scheme, host or query. Push URLs of Tencent CDN
    carry their auth key in the query (txSecret=...), which must never become a label."""
    if not isinstance(stream_url, str):
        return ""
    text = stream_url.strip()
    if "://" in text:
        try:
            text = URL(text).path
        except ValueError:
            text = text.split("://", 1)[1].partition("/")[2]
    text = text.split("?", 1)[0].split("#", 1)[0]
    return text.rstrip("/").rsplit("/", 1)[-1]


def _point_time(point: dict[str, Any], problems: set[str], now: float) -> float | None:
    """Unix seconds of a point. `time` (China Standard Time text, the documented field) wins;
    `timestamp` (epoch ms, often null) is used only when `time` is missing, and a disagreement
    of more than a second counts a parse error on `timestamp`. A time before 2000 or more than
    a day ahead ("0001-01-01 00:00:00") is unreadable (normalize.plausible_time)."""
    from_text = norm.plausible_time(norm.china_time_to_unix(point.get("time")), now)
    from_epoch = norm.plausible_time(_epoch_seconds(point.get("timestamp")), now)
    if isinstance(from_text, float):
        if isinstance(from_epoch, float) and abs(from_epoch - from_text) > TIME_AGREEMENT_SECONDS:
            problems.add("timestamp")
        elif from_epoch is norm.INVALID:
            problems.add("timestamp")
        return from_text
    if from_text is norm.INVALID:
        problems.add("time")
    if isinstance(from_epoch, float):
        return from_epoch
    if from_epoch is norm.INVALID:
        problems.add("timestamp")
    if from_text is norm.ABSENT and from_epoch is norm.ABSENT:
        problems.add("time")  # a point without any time cannot be placed
    return None


def _epoch_seconds(value: Any) -> float | norm.Missing:
    """`timestamp`: epoch milliseconds (13 digits); 10-digit seconds are accepted too."""
    n = norm.non_negative(value)
    if not isinstance(n, float):
        return n
    seconds = n / 1000.0 if n >= 1e11 else n
    # Outside 2000..2100 it is not a time (a counter, a unit mix-up): do not draw it as one.
    if not 946_684_800.0 <= seconds < 4_102_444_800.0:
        return norm.INVALID
    return seconds
