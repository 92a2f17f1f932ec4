"""Simulated Zego cloud recording API: DescribeRecordStatus (ZEGO "云端录制 > 服务端 API > 查询录制状态";
its codes from "云端录制 > 服务端 API > 返回码" and the server API "调用方式" page).

Enforces what the real gateway enforces, in its order, with its codes and bodies
({"Code", "Message", "RequestId"[, "Data"]}, always HTTP 200):
  * the common parameters (Action, AppId, Timestamp, SignatureNonce, Signature,
    SignatureVersion 2.0) and the v2 signature md5(AppId + SignatureNonce + ServerSecret +
    Timestamp) in lower-case hex (100000001..100000014);
  * the ±10 minute timestamp window (100000004), on the injectable clock;
  * nonce reuse: a nonce seen within the timestamp window is a replay (100000005; the vendor
    documents no own code for it, and a replayed request is a wrongly signed one);
  * 10 requests per second per AppId over a sliding one-second window (300000003). The window
    runs on `rate_clock` (monotonic by default), not on the test clock: a frozen test clock would
    make every request of a test "the same second";
  * the body {"TaskId": "..."} (300000004), and the 3-day query window: a task that started
    more than three days ago is "not found" (300001000), like one that never existed.

Vendor knobs, POST /_sim/zego (JSON, all optional, applied in this order):
  {"scenario": "fixed" | "live" | "empty",            replace every task
   "rate_limit": 10,
   "create": {"task_id": "...", "room": "...", "record_mode": 1|2, "stream_type": 1..4,
              "started_ago": 60, "files": 2, "status": "recording"},
   "task": "<id>", "status": "recording" | "ended" | "ended_abnormally" | "paused" | "initialising",
   "file_status": "recording" | "uploading" | "uploaded" | "uploaded_backup" | "upload_failed",
   "file": 0,                                          only that file (default: every file)
   "task_code": 300010000 | null,                      that task answers with this code
   "task_data": [] | "text" | null,                    that task answers Code 0 with this Data
   "task_http_status": 502 | null,                     that task's query meets this HTTP error (a
                                                       gateway in front of the API failing one request)
   "vendor_error": 300010000 | null,                   every DescribeRecordStatus answers with it
   "delete": "<id>"}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from monitord.simulators.base import Clock, make_app, read_knobs

DEFAULT_APP_ID = 1234567890
DEFAULT_SECRET = "sim0zego0server0secret0000000001"
DEMO_API_TOKEN = "demo-registration-token"
TIMESTAMP_WINDOW = 600
VENDOR_WINDOW_SECONDS = 3 * 86400

TASK_STATUS = {"initialising": 1, "recording": 2, "ended": 3, "ended_abnormally": 4, "paused": 5}
FILE_STATUS = {"recording": 1, "uploading": 2, "uploaded": 3, "uploaded_backup": 4, "upload_failed": 5}

MESSAGES = {
    0: "succeed",
    100000001: "AppId field format error",
    100000002: "Timestamp field is empty",
    100000003: "Timestamp field format error",
    100000004: "Signature expired",
    100000005: "Signature error",
    100000006: "Action is empty",
    100000007: "Unsupported Action",
    100000008: "SignatureNonce field is empty",
    100000009: "Signature field is empty",
    100000010: "Failed to get ServerSecret",
    100000013: "SignatureVersion field is empty",
    100000014: "Unsupported SignatureVersion",
    300000003: "request too frequent",
    300000004: "invalid parameter",
    300001000: "task not found",
    300001001: "task already ended",
    300010000: "system error",
}


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class SimFile:
    user_id: str
    begin_ms: int
    status: int = 1
    output_format: str = "mp4"
    width: int = 1280
    height: int = 720
    track_type: int = 3
    byte_rate: int = 150_000
    duration_ms: int | None = None  # None: still growing with the clock
    size: int | None = None
    stream_id: str | None = None  # None: the user's id (the vendor's default stream naming)

    def payload(self, task_id: str, room: str, now_ms: int) -> dict[str, Any]:
        duration = self.duration_ms if self.duration_ms is not None else max(0, now_ms - self.begin_ms)
        size = self.size if self.size is not None else duration * self.byte_rate // 1000
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(self.begin_ms / 1000)) + f"{self.begin_ms % 1000:03d}"
        file_id = f"{task_id}_{room}_{self.user_id}_VA_{stamp}.{self.output_format}"
        return {
            "UserId": self.user_id, "UserName": self.user_id, "StreamId": self.stream_id or self.user_id,
            "FileId": file_id, "VideoId": hashlib.md5(file_id.encode()).hexdigest(),
            "FileUrl": f"https://record.example.com/record/{file_id}",
            "OutputFileFormat": self.output_format, "FileSize": size, "Duration": duration,
            "ResolutionWidth": self.width, "ResolutionHeight": self.height,
            "MediaTrackType": self.track_type, "BeginTimestamp": self.begin_ms, "Status": self.status,
        }

    def freeze(self, now_ms: int) -> None:
        if self.duration_ms is None:
            self.duration_ms = max(0, now_ms - self.begin_ms)
            self.size = self.duration_ms * self.byte_rate // 1000


@dataclass
class SimTask:
    task_id: str
    room: str
    begin_ms: int
    record_mode: int = 2
    stream_type: int = 3
    status: int = 2
    end_ms: int = 0
    files: list[SimFile] = field(default_factory=list)
    code: int | None = None  # answer this task with an error code
    raw_data: Any = None     # answer this task with this Data instead (malformed answers)
    http_status: int | None = None  # its queries meet this HTTP error before reaching the API

    def payload(self, now_ms: int) -> dict[str, Any]:
        data: dict[str, Any] = {
            "RoomId": self.room, "RecordMode": self.record_mode, "StreamType": self.stream_type,
            "RecordBeginTimestamp": self.begin_ms, "RecordEndTimestamp": self.end_ms, "Status": self.status,
        }
        if self.files:  # absent, not empty, when nobody published (查询录制状态, RecordFiles)
            data["RecordFiles"] = [f.payload(self.task_id, self.room, now_ms) for f in self.files]
        return data

    def set_status(self, status: int, now_ms: int) -> None:
        self.status = status
        if status in (3, 4):
            self.end_ms = self.end_ms or now_ms
            for f in self.files:
                f.freeze(now_ms)
                if f.status == 1:
                    f.status = 2
        elif status == 5:
            for f in self.files:
                f.freeze(now_ms)


@dataclass
class ZegoSim:
    clock: Clock
    rate_clock: Callable[[], float]
    app_id: int = DEFAULT_APP_ID
    server_secret: str = DEFAULT_SECRET
    rate_limit: int = 10
    rate_window: float = 1.0  # seconds of rate_clock per rate_limit requests (divided by time_scale)
    tasks: dict[str, SimTask] = field(default_factory=dict)
    vendor_error: int | None = None
    nonces: dict[str, float] = field(default_factory=dict)
    recent: deque[float] = field(default_factory=deque)
    requests: int = 0
    answered: Counter[int] = field(default_factory=Counter)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def load(self, scenario: str) -> None:
        self.tasks.clear()
        if scenario == "fixed":
            self.tasks.update((t.task_id, t) for t in fixed_tasks(self.now_ms()))
        elif scenario == "live":
            self.tasks.update((t.task_id, t) for t in demo_tasks(self.now_ms()))
        elif scenario != "empty":
            raise ValueError("scenario is fixed, live or empty")

    def create(self, spec: dict[str, Any]) -> SimTask:
        now_ms = self.now_ms()
        task_id = str(spec.get("task_id") or task_id_for(f"task-{len(self.tasks)}-{now_ms}"))
        begin = now_ms - int(float(spec.get("started_ago", 60)) * 1000)
        room = str(spec.get("room", f"room-{task_id[:4]}"))
        task = SimTask(task_id, room, begin, int(spec.get("record_mode", 2)), int(spec.get("stream_type", 3)))
        for n in range(int(spec.get("files", 1))):
            task.files.append(SimFile(f"user{n + 1}", begin + 500 + n * 1000,
                                      byte_rate=100_000 + int(_unit(task_id, n) * 200_000)))
        task.set_status(TASK_STATUS[spec.get("status", "recording")], now_ms)
        self.tasks[task_id] = task
        return task

    def describe(self) -> dict[str, Any]:
        return {
            "tasks": {t: task.status for t, task in sorted(self.tasks.items())},
            "rate_limit": self.rate_limit,
            "vendor_error": self.vendor_error,
            "requests": self.requests,
            "answered": {str(code): n for code, n in sorted(self.answered.items())},
        }

    # ------------------------------------------------------------------------- the gateway

    def check(self, query: Any) -> int:
        """0 if the common parameters, signature, nonce and rate limit pass, else the code."""
        action = query.get("Action", "")
        if not action:
            return 100000006
        if action != "DescribeRecordStatus":
            return 100000007
        app_id = query.get("AppId", "")
        if not app_id.isdigit():
            return 100000001
        timestamp = query.get("Timestamp", "")
        if not timestamp:
            return 100000002
        if not timestamp.lstrip("-").isdigit():
            return 100000003
        nonce = query.get("SignatureNonce", "")
        if not nonce:
            return 100000008
        signature = query.get("Signature", "")
        if not signature:
            return 100000009
        version = query.get("SignatureVersion", "")
        if not version:
            return 100000013
        if version != "2.0":
            return 100000014
        if int(app_id) != self.app_id:
            return 100000010
        now = self.clock()
        if abs(now - int(timestamp)) > TIMESTAMP_WINDOW:
            return 100000004
        expected = hashlib.md5(f"{app_id}{nonce}{self.server_secret}{timestamp}".encode()).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return 100000005
        for old in [n for n, seen in self.nonces.items() if now - seen > 2 * TIMESTAMP_WINDOW]:
            del self.nonces[old]
        if nonce in self.nonces:
            return 100000005
        self.nonces[nonce] = now
        tick = self.rate_clock()
        while self.recent and tick - self.recent[0] >= self.rate_window:
            self.recent.popleft()
        if len(self.recent) >= self.rate_limit:
            return 300000003
        self.recent.append(tick)
        return 0

    def describe_task(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("TaskId"), str) or not body["TaskId"]:
            return 300000004, None
        if self.vendor_error is not None:
            return self.vendor_error, None
        task = self.tasks.get(body["TaskId"])
        if task is None or self.clock() * 1000 - task.begin_ms > VENDOR_WINDOW_SECONDS * 1000:
            return 300001000, None
        if task.code is not None:
            return task.code, None
        if task.raw_data is not None:
            return 0, task.raw_data
        return 0, task.payload(self.now_ms())


def task_id_for(seed: str) -> str:
    """A 16-character id in the vendor's alphabet, derived from a seed."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    n = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:16], "big")
    chars = []
    for _ in range(16):
        n, r = divmod(n, len(alphabet))
        chars.append(alphabet[r])
    return "".join(chars)


def fixed_tasks(now_ms: int) -> list[SimTask]:
    """The example answer of 查询录制状态 (its task, shifted to an hour ago) and one task per other case the golden
    exposition must show: recording with files in two states, ended abnormally with a failed
    upload and a backup-stored file, ended with nobody publishing (no RecordFiles), paused."""
    hour_ago = now_ms - 3_600_000
    seed = SimTask("X3CgNeE4I1qAAABN", "xxxx", hour_ago + 99, record_mode=2, stream_type=3, status=3,
                   end_ms=hour_ago + 56_795)
    seed.files.append(SimFile("my_out", hour_ago + 7_830, status=3, width=1920, height=1080, track_type=3,
                              duration_ms=33_874, size=432_643_544))
    recording = SimTask("Rec2SingleStream", "room-2", now_ms - 600_000, record_mode=1, stream_type=4, status=2)
    recording.files += [
        SimFile("alice", now_ms - 599_000, status=1, duration_ms=599_000, size=74_875_000),
        SimFile("bob", now_ms - 590_000, status=2, output_format="aac", width=0, height=0, track_type=1,
                duration_ms=300_500, size=1_202_000),
    ]
    abnormal = SimTask("Rec3AbnormalEnd0", "room-3", now_ms - 1_800_000, status=4, end_ms=now_ms - 1_200_000)
    abnormal.files += [
        SimFile("carol", now_ms - 1_799_000, status=5, duration_ms=599_000, size=80_000_000,
                stream_id="carol_main"),
        SimFile("dave", now_ms - 1_798_000, status=4, duration_ms=598_000, size=79_000_000),
    ]
    nobody = SimTask("Rec4NoPublisher0", "room-4", now_ms - 900_000, status=3, end_ms=now_ms - 300_000)
    paused = SimTask("Rec5PausedTask00", "room-5", now_ms - 120_000, record_mode=2, stream_type=2, status=5)
    paused.files.append(SimFile("mix_out", now_ms - 119_500, status=2, output_format="flv", duration_ms=60_250,
                                size=9_037_500))
    return [seed, recording, abnormal, nobody, paused]


DEMO_TASK_IDS = ("DemoMixedRecord1", "DemoSingleRec002", "DemoPausedTask03")


def demo_tasks(now_ms: int) -> list[SimTask]:
    """Long-running tasks for `monitord demo`: files grow with the clock; one earlier segment of
    the single-stream task failed to upload, so the "upload failed" alert has something to show."""
    mixed = SimTask(DEMO_TASK_IDS[0], "demo-room-1", now_ms - 300_000, record_mode=2, stream_type=3, status=2)
    mixed.files.append(SimFile("mix_out", now_ms - 299_000, byte_rate=250_000))
    single = SimTask(DEMO_TASK_IDS[1], "demo-room-2", now_ms - 1_200_000, record_mode=1, stream_type=4, status=2)
    single.files += [
        SimFile("alice", now_ms - 1_199_000, status=5, duration_ms=600_000, size=90_000_000),
        SimFile("alice", now_ms - 599_000, byte_rate=150_000),
        SimFile("bob", now_ms - 598_000, byte_rate=16_000, output_format="aac", width=0, height=0, track_type=1),
    ]
    paused = SimTask(DEMO_TASK_IDS[2], "demo-room-3", now_ms - 200_000, stream_type=2, status=5)
    paused.files.append(SimFile("mix_out", now_ms - 199_000, status=2, duration_ms=100_000, size=15_000_000))
    return [mixed, single, paused]


SIM_KEY = web.AppKey("zego_sim", ZegoSim)


def _answer(sim: ZegoSim, code: int, data: Any = None) -> web.Response:
    sim.answered[code] += 1
    body: dict[str, Any] = {"Code": code, "Message": MESSAGES.get(code, "error"),
                            "RequestId": hashlib.md5(f"req-{sim.requests}".encode()).hexdigest()[:16]}
    if data is not None:
        body["Data"] = data
    return web.json_response(body)


async def gateway(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    sim.requests += 1
    code = sim.check(request.query)
    if code:
        return _answer(sim, code)
    try:
        body = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
    task = sim.tasks.get(body["TaskId"]) if isinstance(body, dict) and isinstance(body.get("TaskId"), str) else None
    if task is not None and task.http_status is not None:
        return web.Response(status=task.http_status, text="Bad Gateway", content_type="text/plain")
    code, data = sim.describe_task(body)
    return _answer(sim, code, data)


async def control(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    body = await read_knobs(request)
    now_ms = sim.now_ms()
    try:
        if "scenario" in body:
            sim.load(str(body["scenario"]))
        if "rate_limit" in body:
            sim.rate_limit = int(body["rate_limit"])
        if "vendor_error" in body:
            sim.vendor_error = None if body["vendor_error"] is None else int(body["vendor_error"])
        created = sim.create(body["create"]) if isinstance(body.get("create"), dict) else None
        if "task" in body:
            task = sim.tasks[str(body["task"])]
            if "status" in body:
                task.set_status(TASK_STATUS[body["status"]], now_ms)
            if "file_status" in body:
                chosen = [task.files[int(body["file"])]] if "file" in body else task.files
                for f in chosen:
                    f.status = FILE_STATUS[body["file_status"]]
                    if f.status != 1:
                        f.freeze(now_ms)
            if "task_code" in body:
                task.code = None if body["task_code"] is None else int(body["task_code"])
            if "task_data" in body:
                task.raw_data = body["task_data"]
            if "task_http_status" in body:
                task.http_status = None if body["task_http_status"] is None else int(body["task_http_status"])
        if "delete" in body:
            sim.tasks.pop(str(body["delete"]), None)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        return web.json_response({"error": f"bad knob: {exc!r}"}, status=400)
    state = sim.describe()
    if created is not None:
        state["created"] = created.task_id
    return web.json_response(state)


def create_app(clock: Clock | None = None, app_id: int = DEFAULT_APP_ID, server_secret: str = DEFAULT_SECRET,
               scenario: str = "live", rate_limit: int = 10,
               rate_clock: Callable[[], float] = time.monotonic, time_scale: float = 1.0) -> web.Application:
    """time_scale divides Zego's only timing, the one-second window of its 10 requests per second,
    as the daemon's pacing is divided under `monitord demo --time-scale`; task timelines are
    driven by knobs."""
    sim = ZegoSim(clock=clock or Clock(), rate_clock=rate_clock, app_id=app_id, server_secret=server_secret,
                  rate_limit=rate_limit, rate_window=1.0 / time_scale)
    sim.load(scenario)
    app = make_app(sim.describe)
    app[SIM_KEY] = sim
    app.router.add_route("*", "/", gateway)
    app.router.add_post("/_sim/zego", control)
    return app


def demo_targets(base_url: str) -> list[dict[str, Any]]:
    """One recording project whose three tasks are configured; more can be registered with
    curl -H 'Authorization: Bearer demo-registration-token' -d '{"task_id": "..."}'
    http://127.0.0.1:10520/api/v1/targets/zego-recording/tasks"""
    return [{
        "name": "zego-recording",
        "source": "zego",
        "url": base_url,
        "app_id": DEFAULT_APP_ID,
        "server_secret": DEFAULT_SECRET,
        "api_token": DEMO_API_TOKEN,
        "task_ids": list(DEMO_TASK_IDS),
        "interval": "5s",
        "timeout": "4s",
    }]
