"""Huawei videoconferencing endpoints: WEB_GetMultiCallStatusInfoAPI (Huawei "TE10, TE20 会议电视终端
HTTP API 编程参考" > 会议控制类 > 获取多流会议中的通话状态; login per its 登录认证流程介绍).

Login (endpoint_session, on monitord.vendor's LoginSession): a SessionID cookie, then a CSRF
token for user/password; both are reused across polls, and the old session is logged out before
every new login (devices have few session slots). Devices drop sessions whenever they like and
answer with a generic error, so a failed call on a session of an earlier poll costs one re-login
and one retry before it is called a failure. Transport failures are tried once more.

A device that is not in a call answers with a failure whose code is in
`not_in_call_error_codes` (by default the one failure body the vendor's page for this call
shows), or on some firmware with empty `data`: both are a state (rtc_endpoint_in_call 0), not an
error. A video or aux stream with no codec and no bitrate is
not flowing (the device reports "Unknown", "--" and a frame rate of 0): it gets no series,
rather than zeros that would read as a frozen stream.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

from pydantic import Field

from monitord import normalize as norm
from monitord.config import BaseURL, Secret, TargetConfig
from monitord.errors import PollError
from monitord.http import Response
from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder
from monitord.sources import shared
from monitord.sources.base import Source, SourceContext
from monitord.sources.endpoint_session import DeviceSessions, decode_data, envelope, error_code
from monitord.vendor import Request, RetryPolicy

STREAM_LABELS = shared.STREAM_LABELS
# No conference lasts ten years: a longer call duration is a counter gone wrong, not data.
MAX_CALL_SECONDS = 10 * 365 * 86400.0
# The error code the vendor's reference page for WEB_GetMultiCallStatusInfoAPI shows; devices
# answer it outside a conference (docs/sources/endpoint.md says how to confirm it on yours).
NOT_IN_CALL_CODE = 33558532
# Devices sit on the local network: a reset connection, a 5xx of a busy web server or a lost
# answer is worth one more try within the poll's deadline (the vendor documents no advice).
TRANSPORT_RETRY: Final = RetryPolicy(attempts=2, base_delay=0.5, max_delay=1.0)


class EndpointConfig(TargetConfig):
    source: Literal["endpoint"]
    url: BaseURL = Field(description="Device base URL, e.g. https://10.1.2.3 (action.cgi is appended).")
    username: str = Field(min_length=1, description="Web API user of the device.")
    password: Secret = Field(description="Its password (use password_file or password_env).")
    not_in_call_error_codes: tuple[int, ...] = Field(
        (NOT_IN_CALL_CODE,),
        description="Vendor error codes of WEB_GetMultiCallStatusInfoAPI that mean 'not in a conference' "
                    "(in_call 0, not a failure); [] treats every failure as one.",
    )
    site_names: bool = Field(
        True, description="Put the far site's display name (szName) in the site label; false leaves it "
                          "empty (names can identify people).",
    )
    site_name_max_length: int = Field(
        32, ge=1, le=192, description="Longest site label; longer names are cut (bounds series size and churn).",
    )


IN_CALL = MetricDef("rtc_endpoint_in_call", "gauge",
                    "1 while the endpoint is in a multi-stream conference, 0 when it is not.")
CALL_DURATION = MetricDef("rtc_endpoint_call_duration_seconds", "gauge",
                          "Time the endpoint has been in the current conference (minute resolution).",
                          unit="seconds")
JITTER = shared.STREAM_JITTER
DELAY = shared.STREAM_DELAY
LOSS = shared.STREAM_LOSS
LOST_PACKETS = MetricDef("rtc_stream_packets_lost", "gauge",
                         "Packets the stream lost in the current call, as the endpoint reports them.",
                         labels=STREAM_LABELS)
BITRATE = shared.STREAM_BITRATE
FRAME_RATE = shared.STREAM_FRAME_RATE
WIDTH = MetricDef("rtc_stream_width_pixels", "gauge", "Video width of the stream.", labels=STREAM_LABELS,
                  unit="pixels")
HEIGHT = MetricDef("rtc_stream_height_pixels", "gauge", "Video height of the stream.", labels=STREAM_LABELS,
                   unit="pixels")
CODEC = MetricDef("rtc_stream_codec", "info", "Codec the stream uses, as the endpoint names it.",
                  labels=(*STREAM_LABELS, "codec"))
LOGINS = MetricDef("monitord_endpoint_logins", "counter",
                   "Sessions opened on the device (first poll, and after the device dropped or refused one).",
                   health=True)
LOGOUT_FAILURES = MetricDef("monitord_endpoint_logout_failures", "counter",
                            "Logouts the device refused or did not answer (its slot frees when the session times out).",
                            health=True)

_AUDIO = (("stAudioParamSend", "send"), ("stAudioParamRecv", "recv"))
_AUX = (("stAuxParamSend", "send"), ("stAuxParamRecv", "recv"))
_VIDEO = (("stVideoParamSend", "send"), ("stVideoParamRecv", "recv"))


class EndpointSource(Source[EndpointConfig]):
    kind: ClassVar[str] = "endpoint"
    Config: ClassVar[type[TargetConfig]] = EndpointConfig
    description: ClassVar[str] = "Huawei IdeaHub / TE / CloudLink endpoints: per-stream call quality"
    PARSE_FIELDS: ClassVar[tuple[str, ...]] = (
        "audioLossNum", "audioLossPer", "auxAudioRate", "joinDay/joinHour/joinMin", "valueAudioJitter",
        "valueNetDelayAudio", "valueNetDelayVideo", "valueVideoJitter", "videoFrame", "videoLossNum",
        "videoLossPer", "videoProtocolPostfix", "videoRate",
    )
    metrics: ClassVar[tuple[MetricDef, ...]] = (
        IN_CALL, CALL_DURATION, JITTER, DELAY, LOSS, LOST_PACKETS, BITRATE, FRAME_RATE, WIDTH, HEIGHT, CODEC,
        LOGINS, LOGOUT_FAILURES,
    )

    def __init__(self, config: EndpointConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        self.sessions = DeviceSessions(self.client, str(config.url), config.username,
                                       config.password.get_secret_value, scaled=self.scaled, target=config.name)
        self.api = self.caller(auth=self.sessions, retry=TRANSPORT_RETRY)

    async def poll(self, out: SnapshotBuilder) -> None:
        self.sessions.poll += 1
        request = Request("POST", self.sessions.action_url("WEB_GetMultiCallStatusInfoAPI"), json_body={})
        answer = await self.api.call(request, self._status)
        if answer.get("success") != 1:
            out.add(IN_CALL, 0.0)  # a not-in-call code (see _status)
            return
        self._collect(decode_data(answer.get("data")), out)

    def _status(self, resp: Response) -> dict[str, Any]:
        resp.raise_for_status()
        answer = envelope(resp)
        code = error_code(answer)
        if answer.get("success") == 1 or code in self.config.not_in_call_error_codes:
            return answer
        if self.sessions.renewable:
            # Possibly an expired session: the devices answer it with the same generic error,
            # so the session of an earlier poll is renewed once (the layer's rule) before the
            # error is believed.
            raise PollError("auth", "WEB_GetMultiCallStatusInfoAPI failed (session expired?)", code)
        raise PollError("vendor_error", "WEB_GetMultiCallStatusInfoAPI failed", code)

    def self_metrics(self, out: SnapshotBuilder) -> None:
        out.add(LOGINS, float(self.sessions.logins))
        out.add(LOGOUT_FAILURES, float(self.sessions.logout_failures))

    async def close(self) -> None:
        await self.sessions.close()

    # ------------------------------------------------------------------------------ mapping

    def _collect(self, data: Any, out: SnapshotBuilder) -> None:
        if data is None or data == {} or data == []:
            out.add(IN_CALL, 0.0)
            return
        if not isinstance(data, dict):
            raise PollError("bad_response", f"call status data is a {type(data).__name__}, not an object")
        out.add(IN_CALL, 1.0)
        out.add(CALL_DURATION, _call_duration(data), "joinDay/joinHour/joinMin")
        for key, direction in _AUDIO:
            stream = data.get(key)
            if isinstance(stream, dict):
                self._audio(stream, direction, out)
        for key, direction in _AUX:
            stream = data.get(key)
            if isinstance(stream, dict):
                self._video(stream, "aux", direction, "0", out)
        for key, direction in _VIDEO:
            streams = data.get(key)
            if isinstance(streams, dict):  # a single stream where firmware skips the array
                streams = [streams]
            if isinstance(streams, list):
                for index, stream in enumerate(streams):
                    if isinstance(stream, dict):
                        self._video(stream, "video", direction, str(index), out)

    @staticmethod
    def _audio(s: dict[str, Any], direction: str, out: SnapshotBuilder) -> None:
        row = out.row(room="", media="audio", direction=direction, stream="0", site="")
        row.add(JITTER, norm.duration_seconds(s.get("valueAudioJitter")), "valueAudioJitter")
        row.add(DELAY, norm.duration_seconds(s.get("valueNetDelayAudio")), "valueNetDelayAudio")
        row.add(LOSS, norm.ratio(s.get("audioLossPer")), "audioLossPer")
        row.add(LOST_PACKETS, norm.non_negative(s.get("audioLossNum")), "audioLossNum")
        row.add(BITRATE, norm.bitrate_bytes_per_second(s.get("auxAudioRate")), "auxAudioRate")
        codec = s.get("audioProtocol")
        if isinstance(codec, str) and not norm.is_absent(codec):
            row.info(CODEC, codec=codec.strip())

    def _site(self, name: object) -> str:
        """The far site's name as a label: bounded, and empty when the operator turned names off."""
        if not self.config.site_names or not isinstance(name, str):
            return ""
        return name.strip()[: self.config.site_name_max_length]

    def _video(self, s: dict[str, Any], media: str, direction: str, index: str, out: SnapshotBuilder) -> None:
        codec = s.get("videoProtocolPrefix")
        rate = norm.bitrate_bytes_per_second(s.get("videoRate"))
        if norm.is_absent(codec) and rate is norm.ABSENT:
            return  # not flowing: no series rather than zeros
        row = out.row(room="", media=media, direction=direction, stream=index, site=self._site(s.get("szName")))
        row.add(JITTER, norm.duration_seconds(s.get("valueVideoJitter")), "valueVideoJitter")
        row.add(DELAY, norm.duration_seconds(s.get("valueNetDelayVideo")), "valueNetDelayVideo")
        row.add(LOSS, norm.ratio(s.get("videoLossPer")), "videoLossPer")
        row.add(LOST_PACKETS, norm.non_negative(s.get("videoLossNum")), "videoLossNum")
        row.add(BITRATE, rate, "videoRate")
        row.add(FRAME_RATE, norm.non_negative(s.get("videoFrame")), "videoFrame")
        res = norm.resolution(s.get("videoProtocolPostfix"))
        if isinstance(res, tuple):
            row.add(WIDTH, res[0])
            row.add(HEIGHT, res[1])
        else:
            row.add(WIDTH, res, "videoProtocolPostfix")
        if isinstance(codec, str) and not norm.is_absent(codec):
            row.info(CODEC, codec=codec.strip())


def _call_duration(data: dict[str, Any]) -> float | norm.Missing:
    """joinDay/joinHour/joinMin as seconds; a total beyond MAX_CALL_SECONDS is not a call."""
    join = [norm.non_negative(data.get(k)) for k in ("joinDay", "joinHour", "joinMin")]
    days, hours, minutes = join
    if isinstance(days, float) and isinstance(hours, float) and isinstance(minutes, float):
        total = days * 86400 + hours * 3600 + minutes * 60
        return total if total <= MAX_CALL_SECONDS else norm.INVALID
    return norm.INVALID if norm.INVALID in join else norm.ABSENT
