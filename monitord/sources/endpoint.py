"""Huawei videoconferencing endpoints: WEB_GetMultiCallStatusInfoAPI (Huawei "TE10, TE20 会议电视终端
HTTP API 编程参考" > 会议控制类 > 获取多流会议中的通话状态; login per its 登录认证流程介绍).

Login: a SessionID cookie, then a CSRF token for user/password; both are reused across polls.
Devices drop sessions whenever they like and answer with a generic error, so on any failed
call we log in again once and retry once before calling it a failure.

A device has few session slots and refuses a new session id while they are full, so a session
is never abandoned: the old one is logged out before the next login, and the session of a refused
login (which holds a slot but has no token to log out with) is reused by the next attempt.

A device that is not in a call answers with a failure whose code is in
`not_in_call_error_codes` (by default the one failure body the vendor's page for this call
shows), or on some firmware with empty `data`: both are a state (rtc_endpoint_in_call 0), not an
error. A video or aux stream with no codec and no bitrate is
not flowing (the device reports "Unknown", "--" and a frame rate of 0): it gets no series,
rather than zeros that would read as a frozen stream.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from monitord import normalize as norm
from monitord import vendorjson
from monitord.config import BaseURL, Secret, TargetConfig
from monitord.errors import PollError
from monitord.http import Response
from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder
from monitord.sources import shared
from monitord.sources.base import Source, SourceContext

STREAM_LABELS = shared.STREAM_LABELS
# No conference lasts ten years: a longer call duration is a counter gone wrong, not data.
MAX_CALL_SECONDS = 10 * 365 * 86400.0
# The error code the vendor's reference page for WEB_GetMultiCallStatusInfoAPI shows; devices
# answer it outside a conference (docs/sources/endpoint.md says how to confirm it on yours).
NOT_IN_CALL_CODE = 33558532
# How long the session of a refused login is tried again before a fresh one is asked for: the
# device's session lifetime is not documented, and a session it has already dropped would make
# every later login fail.
UNAUTHENTICATED_REUSE_SECONDS = 60.0


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
    )

    def __init__(self, config: EndpointConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        self._cookie: str | None = None
        self._token: str | None = None
        self._cookie_since = 0.0  # monotonic time the device granted the session

    # ----------------------------------------------------------------------------- protocol

    def _url(self, action: str) -> str:
        return f"{self.config.url}/action.cgi?ActionID={action}"

    async def _post(self, action: str, body: dict[str, Any] | None) -> Response:
        headers = {"Cookie": f"SessionID={self._cookie}"} if self._cookie else None
        resp = await self.request("POST", self._url(action), json_body=body, headers=headers)
        resp.raise_for_status()
        return resp

    async def _logout(self) -> None:
        """Give the session's slot back. Best effort: a session the device already dropped, or a
        device that does not answer, frees the slot on its own when the session times out."""
        token, self._token = self._token, None
        cookie, self._cookie = self._cookie, None
        if token is None or cookie is None:
            return
        headers = {"Cookie": f"SessionID={cookie}"}
        try:
            resp = await self.request("POST", self._url("WEB_LogoutAPI"), json_body={"acCSRFToken": token},
                                      headers=headers)
            resp.raise_for_status()
        except PollError as exc:
            self.log.debug("logout_failed", reason=exc.reason)

    async def _session(self) -> None:
        """A session id: the one a refused login left (it holds a slot), or a new one."""
        fresh = time.monotonic() - self._cookie_since < self.scaled(UNAUTHENTICATED_REUSE_SECONDS)
        if self._cookie is not None and fresh:
            return
        self._cookie = None
        resp = await self._post("WEB_RequestSessionIDAPI", None)
        cookie = resp.cookies.get("SessionID")
        if not cookie:
            answer = _maybe_envelope(resp)
            if answer is not None and answer.get("success") == 0:
                # The device checks for a free session slot before granting one.
                raise PollError("vendor_error", "WEB_RequestSessionIDAPI refused a session (all session "
                                                "slots taken?)", _error_code(answer))
            raise PollError("bad_response", "WEB_RequestSessionIDAPI set no SessionID cookie")
        self._cookie = cookie
        self._cookie_since = time.monotonic()

    async def _login(self) -> None:
        if self._token is not None:
            await self._logout()
        await self._session()
        answer = _envelope(await self._post(
            "WEB_RequestCertificateAPI",
            {"user": self.config.username, "password": self.config.password.get_secret_value()},
        ))
        if answer.get("success") != 1:
            code = _error_code(answer)
            raise PollError("auth", "login rejected (WEB_RequestCertificateAPI)", code)
        data = _decode_data(answer.get("data"))
        token = data.get("acCSRFToken") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise PollError("bad_response", "WEB_RequestCertificateAPI returned no acCSRFToken")
        self._token = token

    async def _call_status(self) -> dict[str, Any]:
        return _envelope(await self._post("WEB_GetMultiCallStatusInfoAPI", {"acCSRFToken": self._token}))

    async def poll(self, out: SnapshotBuilder) -> None:
        fresh_session = self._token is None
        if fresh_session:
            await self._login()
        try:
            answer = await self._call_status()
        except PollError as exc:
            if exc.reason != "auth" or fresh_session:
                raise
            answer = {"success": 0}
        if (answer.get("success") != 1 and not fresh_session
                and _error_code(answer) not in self.config.not_in_call_error_codes):
            # Possibly an expired session: the devices answer with the same generic error.
            await self._login()
            answer = await self._call_status()
        if answer.get("success") != 1:
            code = _error_code(answer)
            if code in self.config.not_in_call_error_codes:
                out.add(IN_CALL, 0.0)
                return
            raise PollError("vendor_error", "WEB_GetMultiCallStatusInfoAPI failed", code)
        self._collect(_decode_data(answer.get("data")), out)

    async def close(self) -> None:
        await self._logout()

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
        labels = {"room": "", "media": "audio", "direction": direction, "stream": "0", "site": ""}
        out.add(JITTER, norm.duration_seconds(s.get("valueAudioJitter")), "valueAudioJitter", **labels)
        out.add(DELAY, norm.duration_seconds(s.get("valueNetDelayAudio")), "valueNetDelayAudio", **labels)
        out.add(LOSS, norm.ratio(s.get("audioLossPer")), "audioLossPer", **labels)
        out.add(LOST_PACKETS, norm.non_negative(s.get("audioLossNum")), "audioLossNum", **labels)
        out.add(BITRATE, norm.bitrate_bytes_per_second(s.get("auxAudioRate")), "auxAudioRate", **labels)
        codec = s.get("audioProtocol")
        if isinstance(codec, str) and not norm.is_absent(codec):
            out.info(CODEC, codec=codec.strip(), **labels)

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
        labels = {"room": "", "media": media, "direction": direction, "stream": index,
                  "site": self._site(s.get("szName"))}
        out.add(JITTER, norm.duration_seconds(s.get("valueVideoJitter")), "valueVideoJitter", **labels)
        out.add(DELAY, norm.duration_seconds(s.get("valueNetDelayVideo")), "valueNetDelayVideo", **labels)
        out.add(LOSS, norm.ratio(s.get("videoLossPer")), "videoLossPer", **labels)
        out.add(LOST_PACKETS, norm.non_negative(s.get("videoLossNum")), "videoLossNum", **labels)
        out.add(BITRATE, rate, "videoRate", **labels)
        out.add(FRAME_RATE, norm.non_negative(s.get("videoFrame")), "videoFrame", **labels)
        res = norm.resolution(s.get("videoProtocolPostfix"))
        if isinstance(res, tuple):
            out.add(WIDTH, res[0], **labels)
            out.add(HEIGHT, res[1], **labels)
        else:
            out.add(WIDTH, res, "videoProtocolPostfix", **labels)
        if isinstance(codec, str) and not norm.is_absent(codec):
            out.info(CODEC, codec=codec.strip(), **labels)


def _call_duration(data: dict[str, Any]) -> float | norm.Missing:
    """joinDay/joinHour/joinMin as seconds; a total beyond MAX_CALL_SECONDS is not a call."""
    join = [norm.non_negative(data.get(k)) for k in ("joinDay", "joinHour", "joinMin")]
    days, hours, minutes = join
    if isinstance(days, float) and isinstance(hours, float) and isinstance(minutes, float):
        total = days * 86400 + hours * 3600 + minutes * 60
        return total if total <= MAX_CALL_SECONDS else norm.INVALID
    return norm.INVALID if norm.INVALID in join else norm.ABSENT


def _envelope(resp: Response) -> dict[str, Any]:
    answer = resp.json_object()
    if answer.get("success") not in (0, 1):
        raise PollError("bad_response", f"{resp.url}: no success flag in the answer")
    return answer


def _maybe_envelope(resp: Response) -> dict[str, Any] | None:
    """The JSON envelope of an answer whose body the protocol does not need, if it has one."""
    try:
        return _envelope(resp)
    except PollError:
        return None


def _error_code(answer: dict[str, Any]) -> int | None:
    error = answer.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        return int(error["code"])
    return None


def _decode_data(data: Any) -> Any:
    """`data` is a JSON document inside a JSON string: decode it a second time."""
    if data is None or isinstance(data, dict | list):
        return data
    if not isinstance(data, str):
        raise PollError("bad_response", f"data is a {type(data).__name__}, not a JSON string")
    if not data.strip():
        return None
    try:
        return vendorjson.loads(data)
    except vendorjson.JSONError as exc:
        raise PollError("bad_response", f"data is not a JSON document we accept ({exc})") from None
