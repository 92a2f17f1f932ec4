"""Zego cloud recording: DescribeRecordStatus per watched task (ZEGO "云端录制 > 服务端 API >
查询录制状态", English "Cloud Recording > Server APIs > DescribeRecordStatus").

Where task ids come from: the target's `task_ids`, and tasks the system that starts recordings
registers at run time through the daemon's API (`/api/v1/targets/<name>/tasks`, bearer token).
The watch list is kept in the state store, so registrations survive a restart.

A task leaves the watch list by itself:
  * ended (Status 3 or 4): it is still queried, so its terminal state stays visible, for
    `terminal_hold` after we first saw it end (default 15 min: well above a 15 s scrape, a 15 s
    evaluation, Alertmanager's 30 s group_wait and a rule's `for:`), and beyond that until every
    file's upload is final (uploaded, uploaded_backup, upload_failed), so a file that fails after
    its task ended is seen; then it is dropped before the next query;
  * expired: older than the vendor's 3-day query window (by its start time, else by the time we
    first watched it); the vendor would only answer "task not found" from then on;
  * not_found: the vendor answered 300001000 on NOT_FOUND_LIMIT polls in a row (a wrong id, or a
    task of another AppId); one miss is not enough, so a vendor hiccup drops nothing.
A configured task that left is remembered as retired, so a restart does not poll it again.

Events are counters that exist at 0 from the start and are persisted with the watch list: a
task's end (rtc_recording_tasks_ended_total{outcome}) is counted once, when first seen; a file
(by FileId) once, when its upload becomes final (rtc_recording_file_uploads_total{result}).

One poll queries every watched task through the vendor layer (monitord.vendor): each request
signed afresh (Signer), paced by the AppId's limiter from the daemon scope below the vendor's 10
requests/second, a timeout, connection failure or HTTP 5xx sent once more within the poll
deadline (RETRY), the tasks fanned out with the layer's partial-failure rule. A per-task answer
(task not found, invalid task id, a vendor system error for that task, a malformed Data object)
omits that task's series and is counted in monitord_zego_task_query_errors_total{reason}; the
poll still succeeds when any task answered or every failure was "not found". Signature,
timestamp, throttling and transport failures concern every task alike and fail the poll; other
failed requests (an answer without a Code, a gateway code about the request's form, an HTTP
error) are counted per task like the answers above, and fail the poll when every task has one.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from aiohttp import web
from pydantic import Field, model_validator

from monitord import normalize as norm
from monitord import redact, vendorjson
from monitord.config import BaseURL, Duration, Secret, TargetConfig
from monitord.errors import PollError
from monitord.http import Response
from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder
from monitord.sources.base import Source, SourceContext
from monitord.state import StateModel
from monitord.vendor import ITEM_REASONS, Request, RetryPolicy, Signer, fan_out

DEFAULT_URL = "https://cloudrecord-api.zego.im"
ACTION = "DescribeRecordStatus"
SIGNATURE_VERSION = "2.0"
# Only tasks that started within the last three days can be queried (查询录制状态: "支持查询录制开始
# 时间在发起接口调用时三天内的任务").
VENDOR_WINDOW_SECONDS = 3 * 86400
NOT_FOUND_LIMIT = 3
# ZEGO advises nothing on retries: a request that met no answer or an HTTP 5xx is sent once
# more (newly signed, paced again), within the poll deadline.
RETRY = RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0)
# Tasks queried at the same time; the AppId's limiter spaces the requests anyway.
CONCURRENT_QUERIES = 16
STATE_KEY = "tasks"
# Task ids are 16-character strings from the vendor; we accept a little more (ids of other
# regions/versions) but nothing that could break a label, a URL path or a log line.
TASK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

TASK_STATES = {1: "initialising", 2: "recording", 3: "ended", 4: "ended_abnormally", 5: "paused"}
ENDED = frozenset({3, 4})
FILE_STATES = {1: "recording", 2: "uploading", 3: "uploaded", 4: "uploaded_backup", 5: "upload_failed"}
RECORD_MODES = {1: "single_stream", 2: "mixed"}
STREAM_TYPES = {1: "audio", 2: "video", 3: "audio_video", 4: "separate"}

# Vendor codes (common gateway codes 1000000xx and cloud recording codes 3000xxxxx).
AUTH_CODES = frozenset({100000004, 100000005, 100000009, 100000010})
THROTTLED = 300000003
INVALID_PARAMETER = 300000004
TASK_NOT_FOUND = 300001000
# A task's own answer (not found, invalid id, an error code for it, a malformed Data) or a request
# for it that failed while other tasks answered (the fan-out's ITEM_REASONS: an HTTP error, a
# body too large, ...): each exposed at 0 from the start.
QUERY_ERROR_REASONS = ("invalid_task", *ITEM_REASONS)
REMOVAL_REASONS = ("ended", "expired", "not_found", "unregistered")
END_OUTCOMES = {3: "normal", 4: "abnormal"}
FINAL_FILE_STATES = ("uploaded", "uploaded_backup", "upload_failed")


class ZegoConfig(TargetConfig):
    source: Literal["zego"]
    url: BaseURL = Field(DEFAULT_URL, description="Cloud recording API base URL (a regional one, e.g. "
                                                  "https://cloudrecord-api-sha.zego.im, works too).")
    app_id: int = Field(gt=0, lt=2**32, description="The project's AppId (a Uint32).")
    server_secret: Secret = Field(description="The project's ServerSecret (use server_secret_file or "
                                              "server_secret_env). Only its MD5 signature is ever sent.")
    task_ids: tuple[str, ...] = Field((), description="Recording task ids to watch from the start; more can be "
                                                      "registered through the API.")
    api_token: Secret | None = Field(None, description="Bearer token of the task registration API "
                                                       "(api_token_file / api_token_env); without it the API is off.")
    max_tasks: int = Field(200, gt=0, le=5000, description="Most tasks watched at once (each is a `task` label "
                                                          "value); registrations beyond it are refused and counted.")
    terminal_hold: Duration = Field(
        900.0, description="An ended task stays watched (its terminal state visible) this long after it was first "
                           "seen ended, and until every file's upload is final. Keep it above scrape interval + rule "
                           "evaluation + group_wait + the rule's for:.")
    max_failed_files_per_task: int = Field(
        10, ge=1, le=100,
        description="Failed uploads named per task (rtc_recording_failed_file_info: file, user, stream, format); "
                    "the first ones seen are kept, later ones are counted in monitord_zego_failed_files_dropped_total "
                    "and still counted in rtc_recording_task_files.")
    max_requests_per_second: float = Field(
        9.0, gt=0, le=10, description="Pace of DescribeRecordStatus calls per AppId (vendor limit: 10/s). Calls "
                                      "are spaced evenly, so no one-second window holds more than this plus one.")

    @model_validator(mode="after")
    def _check_tasks(self) -> ZegoConfig:
        bad = [t for t in self.task_ids if not TASK_ID_RE.match(t)]
        if bad:
            raise ValueError(f"task_ids: not a task id: {bad[0]!r} (letters, digits, _ and -, at most 64)")
        if len(set(self.task_ids)) > self.max_tasks:
            raise ValueError(f"task_ids lists {len(set(self.task_ids))} tasks, more than max_tasks ({self.max_tasks})")
        return self


TASK_LABELS = ("task",)
TASK_INFO = MetricDef("rtc_recording_task", "info",
                      "A watched cloud recording task: its room, record mode and stream type.",
                      labels=("task", "room", "record_mode", "stream_type"))
TASK_STATUS = MetricDef("rtc_recording_task_status", "stateset",
                        "State of the recording task (initialising, recording, ended, ended_abnormally, paused).",
                        labels=TASK_LABELS)
TASK_BEGIN = MetricDef("rtc_recording_task_begin_timestamp_seconds", "gauge",
                       "Unix time the recording task started.", labels=TASK_LABELS, unit="timestamp_seconds")
TASK_END = MetricDef("rtc_recording_task_end_timestamp_seconds", "gauge",
                     "Unix time the recording task ended (absent while it runs).", labels=TASK_LABELS,
                     unit="timestamp_seconds")
TASK_FILES = MetricDef("rtc_recording_task_files", "gauge",
                       "Files of the recording task by status (recording, uploading, uploaded, uploaded_backup: "
                       "stored by the vendor after your storage failed, upload_failed).",
                       labels=("task", "status"))
TASK_BYTES = MetricDef("rtc_recording_task_files_bytes", "gauge",
                       "Total size of the recording task's files.", labels=TASK_LABELS, unit="bytes")
TASK_DURATION = MetricDef("rtc_recording_task_files_duration_seconds", "gauge",
                          "Total duration of the recording task's files.", labels=TASK_LABELS, unit="seconds")
TASKS_WATCHED = MetricDef("monitord_zego_tasks_watched", "gauge",
                          "Recording tasks on the watch list (configured and registered), by where they came from.",
                          labels=("origin",), health=True)
TASKS_REMOVED = MetricDef("monitord_zego_tasks_removed", "counter",
                          "Tasks that left the watch list, by reason (ended, expired, not_found, unregistered).",
                          labels=("reason",), health=True)
TASKS_REFUSED = MetricDef("monitord_zego_tasks_over_limit", "counter",
                          "Task registrations refused because the watch list was full (max_tasks).", health=True)
TASKS_ENDED = MetricDef("rtc_recording_tasks_ended", "counter",
                        "Recording tasks seen ending, by outcome (normal: ended, abnormal: ended abnormally); each "
                        "task once, also across restarts.", labels=("outcome",))
FILE_UPLOADS = MetricDef("rtc_recording_file_uploads", "counter",
                         "Recording files whose upload became final, by result (uploaded, uploaded_backup, "
                         "upload_failed); each file once, also when it fails after its task ended.",
                         labels=("result",))
FAILED_FILE = MetricDef(
    "rtc_recording_failed_file", "info",
    "A file of a watched task whose upload failed: its FileId, the publishing user and stream (the mix output "
    "stream for a mixed recording) and its format. At most max_failed_files_per_task per task; present while the "
    "task is watched, so as long as its other terminal state (terminal_hold).",
    labels=("task", "file", "user", "stream", "format"))
FAILED_FILES_DROPPED = MetricDef(
    "monitord_zego_failed_files_dropped", "counter",
    "Failed uploads not named in rtc_recording_failed_file_info because their task already had "
    "max_failed_files_per_task named; each file once.", health=True)
QUERY_ERRORS = MetricDef("monitord_zego_task_query_errors", "counter",
                         "Per-task query failures that did not fail the poll (that task's series are left out), "
                         "by reason.", labels=("reason",), health=True)


def sign(app_id: int | str, nonce: str, server_secret: str, timestamp: int | str) -> str:
    """Zego server API signature v2: md5(AppId + SignatureNonce + ServerSecret + Timestamp), hex."""
    return hashlib.md5(f"{app_id}{nonce}{server_secret}{timestamp}".encode()).hexdigest()


def new_nonce() -> str:
    return secrets.token_hex(8)


class TaskState(StateModel):
    origin: Literal["config", "api"]
    registered_at: float
    started_at: float | None = None
    ended_at: float | None = None
    final: bool = False  # older versions: seen ended, without ended_at
    not_found: int = Field(0, ge=0)
    final_files: list[str] = Field(default_factory=list)
    files_pending: bool = False
    failed_files: list[str] | None = None  # None: written by a version that did not name them


class TasksState(StateModel):
    """The watch list: tasks by id, configured tasks retired (by id, with the reason), and the
    end and upload counters (by outcome)."""

    tasks: dict[str, TaskState] = Field(default_factory=dict)
    retired: dict[str, str] = Field(default_factory=dict)
    counters: dict[str, dict[str, Annotated[int, Field(ge=0)]]] = Field(default_factory=dict)


@dataclass
class WatchedTask:
    origin: Literal["config", "api"]
    registered_at: float
    started_at: float | None = None
    ended_at: float | None = None  # when we first saw it ended (and counted its end)
    not_found: int = 0       # consecutive "task not found" answers
    final_files: list[str] = field(default_factory=list)  # files whose final upload state was counted
    files_pending: bool = False  # the newest answer listed a file whose upload is not final yet
    # Failed files named in rtc_recording_failed_file_info, in the order they failed: the first
    # max_failed_files_per_task stay named for good, so a page never switches to another file.
    failed_files: list[str] = field(default_factory=list)
    # Loaded from a version without failed_files: name the failed files already counted.
    name_failures_from_answer: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "registered_at": self.registered_at, "started_at": self.started_at,
                "ended_at": self.ended_at, "not_found": self.not_found, "final_files": self.final_files,
                "files_pending": self.files_pending, "failed_files": self.failed_files}

    @staticmethod
    def from_state(stored: TaskState) -> WatchedTask:
        # State of an older version: "final" meant seen ended (not counted then; not counted now).
        ended = stored.ended_at if stored.ended_at is not None else (stored.registered_at if stored.final else None)
        return WatchedTask(stored.origin, stored.registered_at, stored.started_at, ended, stored.not_found,
                           list(stored.final_files), stored.files_pending, list(stored.failed_files or ()),
                           name_failures_from_answer=stored.failed_files is None)

    def age_reference(self) -> float:
        return self.started_at if self.started_at is not None else self.registered_at


class _TaskFailure:
    """One task's query failed in a way that leaves the other tasks' answers usable (a value the
    fan-out passes through: its reasons are per-task, not poll reasons)."""

    def __init__(self, reason: str, detail: str, code: int | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.code = code


class ZegoSource(Source[ZegoConfig]):
    kind: ClassVar[str] = "zego"
    Config: ClassVar[type[TargetConfig]] = ZegoConfig
    description: ClassVar[str] = "Zego cloud recording: status and files of watched recording tasks"
    PARSE_FIELDS: ClassVar[tuple[str, ...]] = (
        "RecordBeginTimestamp", "RecordEndTimestamp", "RecordFiles", "RecordFiles[]", "RecordFiles[].Duration",
        "RecordFiles[].FileSize", "RecordFiles[].Status", "rtc_recording_task_status",
    )
    metrics: ClassVar[tuple[MetricDef, ...]] = (
        TASK_INFO, TASK_STATUS, TASK_BEGIN, TASK_END, TASK_FILES, TASK_BYTES, TASK_DURATION,
        FAILED_FILE, TASKS_WATCHED, TASKS_REMOVED, TASKS_REFUSED, QUERY_ERRORS, TASKS_ENDED, FILE_UPLOADS,
        FAILED_FILES_DROPPED,
    )

    @classmethod
    def budget_domain(cls, config: TargetConfig) -> str | None:
        # DescribeRecordStatus is limited per AppId (10/s): one pacing limiter, one shard.
        assert isinstance(config, ZegoConfig)
        return str(config.app_id)

    def __init__(self, config: ZegoConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        # One per AppId, from the daemon scope: requests spaced evenly (a bucket of one), so no
        # one-second window holds more than the rate plus one. Two targets of one AppId with
        # different rates refuse to start (SharedConflict).
        limiter = self.shared.rate_limiter("requests", 1, 1.0 / config.max_requests_per_second)
        self._secret = config.server_secret.get_secret_value()
        self._api = self.caller(auth=Signer(self._signed), retry=RETRY, pacing=(limiter,))
        self.removed: Counter[str] = Counter()
        self.refused = 0
        self.query_errors: Counter[str] = Counter()
        self.tasks: dict[str, WatchedTask] = {}
        self.retired: dict[str, str] = {}  # configured task id -> why it left
        self.ended: Counter[str] = Counter()  # outcome -> tasks
        self.uploads: Counter[str] = Counter()  # result -> files
        self.failed_dropped = 0  # failed files not named (over max_failed_files_per_task)
        self._load_state()

    # ------------------------------------------------------------------------------ watch list

    def _load_state(self) -> None:
        stored = self.ctx.state.load(self.config.name, STATE_KEY, TasksState) or TasksState()
        configured = set(self.config.task_ids)
        now = self.ctx.clock()
        for task_id, entry in stored.tasks.items():
            task = WatchedTask.from_state(entry)
            if not TASK_ID_RE.match(task_id):
                continue
            if task.origin == "config" and task_id not in configured:
                continue  # taken out of the config since
            self.tasks[task_id] = task
        self.retired = {t: r for t, r in stored.retired.items() if t in configured}
        for name, target, known in (("ended", self.ended, END_OUTCOMES.values()),
                                    ("uploads", self.uploads, FINAL_FILE_STATES)):
            target.update({k: v for k, v in stored.counters.get(name, {}).items() if k in known})
        self.failed_dropped = stored.counters.get("failed_files", {}).get("dropped", 0)
        for task_id in self.config.task_ids:
            if task_id in self.retired:
                continue
            existing = self.tasks.get(task_id)
            if existing is None:
                self.tasks[task_id] = WatchedTask("config", now)
            else:
                existing.origin = "config"
        # Saved by the first poll, not here: a runtime built for a reload that is then abandoned
        # must leave the running target's file alone.
        self._unsaved = True

    def _save_state(self) -> None:
        self._unsaved = False
        self.ctx.state.save(self.config.name, STATE_KEY, TasksState, {
            "tasks": {t: task.to_json() for t, task in sorted(self.tasks.items())},
            "retired": dict(sorted(self.retired.items())),
            "counters": {"ended": dict(sorted(self.ended.items())), "uploads": dict(sorted(self.uploads.items())),
                         "failed_files": {"dropped": self.failed_dropped}},
        })

    def _remove(self, task_id: str, reason: str) -> None:
        task = self.tasks.pop(task_id, None)
        if task is None:
            return
        self.removed[reason] += 1
        if task.origin == "config":
            self.retired[task_id] = reason

    def _retire_finished(self, now: float) -> bool:
        changed = False
        hold = self.scaled(self.config.terminal_hold)
        for task_id, task in list(self.tasks.items()):
            if task.ended_at is not None and now - task.ended_at >= hold and not task.files_pending:
                self._remove(task_id, "ended")
                changed = True
            elif now - task.age_reference() > VENDOR_WINDOW_SECONDS:
                self._remove(task_id, "expired")
                changed = True
        return changed

    # --------------------------------------------------------------------------------- polling

    async def poll(self, out: SnapshotBuilder) -> None:
        changed = self._retire_finished(self.ctx.clock())
        try:
            ids = list(self.tasks)
            # The layer's rule: auth, throttling and transport failures end the poll; when
            # every task failed in another way, so does the poll.
            answers = await fan_out(ids, self._query, concurrency=CONCURRENT_QUERIES, noun="task")
            failures: list[_TaskFailure] = []
            for task_id, answer in answers.results.items():
                task = self.tasks.get(task_id)
                if task is None:
                    continue  # unregistered while its query was under way
                if isinstance(answer, _TaskFailure):
                    failures.append(answer)
                    if answer.reason == "not_found":
                        task.not_found += 1
                        if task.not_found >= NOT_FOUND_LIMIT:
                            self._remove(task_id, "not_found")
                        changed = True
                    continue
                changed |= self._collect(task_id, task, answer, out)
            # A vendor answer about one task (not found, invalid, a system error for it): the
            # poll fails only when every task had one and not all of them were "not found".
            hard = [f for f in failures if f.reason != "not_found"]
            if hard and len(failures) == len(ids):
                first = hard[0]
                raise PollError("bad_response" if first.reason == "bad_response" else "vendor_error",
                                f"no task could be queried; first failure: {first.detail}", first.code)
            self.query_errors.update(f.reason for f in failures)
            self.query_errors.update(e.reason for e in answers.errors.values())
        finally:
            if changed or self._unsaved:
                self._save_state()

    def _signed(self, request: Request) -> Request:
        """The common parameters with a fresh nonce and timestamp for every attempt (ZEGO server
        API "调用方式 > 签名机制": md5(AppId + SignatureNonce + ServerSecret + Timestamp))."""
        nonce = new_nonce()
        timestamp = int(self.ctx.clock())
        return request.with_params({
            "Action": ACTION,
            "AppId": str(self.config.app_id),
            "SignatureNonce": nonce,
            "Timestamp": str(timestamp),
            "Signature": sign(self.config.app_id, nonce, self._secret, timestamp),
            "SignatureVersion": SIGNATURE_VERSION,
        })

    async def _query(self, task_id: str) -> dict[str, Any] | _TaskFailure:
        request = Request("POST", f"{self.config.url}/", json_body={"TaskId": task_id})
        return await self._api.call(request, lambda resp: self._describe(task_id, resp))

    def _describe(self, task_id: str, resp: Response) -> dict[str, Any] | _TaskFailure:
        """One DescribeRecordStatus answer: the task's Data, a failure about this task alone (a
        value: not retried, not fatal), or a PollError about the request (raised)."""
        resp.raise_for_status()
        answer = resp.json_object()
        code = answer.get("Code")
        if isinstance(code, bool) or not isinstance(code, int):
            raise PollError("bad_response", f"{ACTION}: answer has no integer Code")
        if code == 0:
            data = answer.get("Data")
            if not isinstance(data, dict):
                return _TaskFailure("bad_response", f"{ACTION} {task_id}: Data is not an object")
            return data
        message = _message(answer)
        if code in AUTH_CODES:
            raise PollError("auth", f"{ACTION} rejected the signature: {message}", code)
        if code == THROTTLED:
            raise PollError("throttled", f"{ACTION}: {message}", code)
        if code == TASK_NOT_FOUND:
            return _TaskFailure("not_found", f"{ACTION} {task_id}: {message}", code)
        if code == INVALID_PARAMETER:
            return _TaskFailure("invalid_task", f"{ACTION} {task_id}: {message}", code)
        if 100000000 <= code < 200000000:
            # Gateway codes about the request's form: every task would get the same answer.
            raise PollError("vendor_error", f"{ACTION}: {message}", code)
        return _TaskFailure("vendor_error", f"{ACTION} {task_id}: {message}", code)

    # --------------------------------------------------------------------------------- mapping

    def _collect(self, task_id: str, task: WatchedTask, data: dict[str, Any], out: SnapshotBuilder) -> bool:
        """Add one task's series; returns whether the watch list entry changed."""
        changed = task.not_found != 0
        task.not_found = 0
        now = self.ctx.clock()
        begin = norm.plausible_time(norm.epoch_millis_to_seconds(data.get("RecordBeginTimestamp")), now)
        if isinstance(begin, float) and begin != task.started_at:
            task.started_at = begin
            changed = True
        # Events first: a file that failed in this answer is named in this poll's series.
        changed = self._count_events(task_id, task, data) or changed
        collect_task(task_id, data, out, now, named_failures=frozenset(task.failed_files))
        return changed

    def _count_events(self, task_id: str, task: WatchedTask, data: dict[str, Any]) -> bool:
        """Count the task's end and its files' final upload states, each once (one log line each
        for an abnormal end and a file that did not reach your storage)."""
        changed = False
        status = _int(data.get("Status"))
        if task.ended_at is None and status in ENDED:
            task.ended_at = self.ctx.clock()
            outcome = END_OUTCOMES[status]
            self.ended[outcome] += 1
            changed = True
            log = self.log.warning if outcome == "abnormal" else self.log.info
            log("recording_task_ended", task=task_id, outcome=outcome)
        files = data.get("RecordFiles")
        pending = False
        for index, f in enumerate(files if isinstance(files, list) else []):
            if not isinstance(f, dict):
                continue
            file_status = f.get("Status")
            name = FILE_STATES.get(file_status) if isinstance(file_status, int) and not isinstance(file_status, bool) \
                else None
            if name not in FINAL_FILE_STATES:
                pending = True
                continue
            key = file_key(f, index)
            if name == "upload_failed" and task.name_failures_from_answer and key in task.final_files \
                    and key not in task.failed_files \
                    and len(task.failed_files) < self.config.max_failed_files_per_task:
                # Counted by a version that did not name failed files: name it now.
                task.failed_files.append(key)
                changed = True
            if key in task.final_files:
                continue
            task.final_files.append(key)
            self.uploads[str(name)] += 1
            changed = True
            if name == "uploaded":
                continue
            facts: dict[str, Any] = {"file": _text(f.get("FileId")), "user": _text(f.get("UserId")),
                                     "stream": _text(f.get("StreamId")), "format": _text(f.get("OutputFileFormat"))}
            if name == "upload_failed":
                facts["named"] = len(task.failed_files) < self.config.max_failed_files_per_task
                if facts["named"]:
                    task.failed_files.append(key)
                else:
                    self.failed_dropped += 1
            # uploaded_backup: the vendor kept the file after your storage refused it.
            self.log.warning("recording_upload_final", task=task_id, result=name, **facts)
        task.name_failures_from_answer = False
        if pending != task.files_pending:
            task.files_pending = pending
            changed = True
        return changed

    # ------------------------------------------------------------------------------- self metrics

    def self_metrics(self, out: SnapshotBuilder) -> None:
        origins = Counter(task.origin for task in self.tasks.values())
        for origin in ("config", "api"):
            out.add(TASKS_WATCHED, float(origins[origin]), origin=origin)
        for reason in REMOVAL_REASONS:
            out.add(TASKS_REMOVED, float(self.removed[reason]), reason=reason)
        out.add(TASKS_REFUSED, float(self.refused))
        for reason in QUERY_ERROR_REASONS:
            out.add(QUERY_ERRORS, float(self.query_errors[reason]), reason=reason)
        for outcome in END_OUTCOMES.values():
            out.add(TASKS_ENDED, float(self.ended[outcome]), outcome=outcome)
        for result in FINAL_FILE_STATES:
            out.add(FILE_UPLOADS, float(self.uploads[result]), result=result)
        out.add(FAILED_FILES_DROPPED, float(self.failed_dropped))

    # ------------------------------------------------------------------------------------- API

    async def handle_api(self, action: str, request: web.Request) -> web.StreamResponse:
        if action != "tasks" and not action.startswith("tasks/"):
            return await super().handle_api(action, request)
        self._authorize(request)
        if action == "tasks":
            if request.method == "GET":
                return web.json_response({"tasks": self._listing()})
            if request.method == "POST":
                return await self._register(request)
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        task_id = action.removeprefix("tasks/")
        if request.method == "GET":
            if task_id not in self.tasks:
                return _api_error(404, f"task {task_id!r} is not watched")
            return web.json_response(self._listing(task_id)[0])
        if request.method == "DELETE":
            if task_id not in self.tasks:
                return _api_error(404, f"task {task_id!r} is not watched")
            self._remove(task_id, "unregistered")
            self._save_state()
            return web.json_response({"task_id": task_id, "removed": True})
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "DELETE"])

    def _authorize(self, request: web.Request) -> None:
        if self.config.api_token is None:
            raise web.HTTPNotFound(text=f"target {self.config.name} has no registration API (set api_token)\n")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise web.HTTPUnauthorized(text="bearer token required\n", headers={"WWW-Authenticate": "Bearer"})
        expected = self.config.api_token.get_secret_value().encode()
        if not hmac.compare_digest(given.strip().encode(), expected):
            raise web.HTTPForbidden(text="wrong token\n")

    def _listing(self, only: str | None = None) -> list[dict[str, Any]]:
        return [{"task_id": t, "origin": task.origin, "registered_at": task.registered_at,
                 "started_at": task.started_at, "ended": task.ended_at is not None}
                for t, task in sorted(self.tasks.items()) if only is None or t == only]

    async def _register(self, request: web.Request) -> web.Response:
        try:
            body = vendorjson.loads(await request.read())
        except vendorjson.JSONError:
            return _api_error(400, "body must be a JSON object")
        if not isinstance(body, dict):
            return _api_error(400, "body must be a JSON object")
        unknown = sorted(set(body) - {"task_id", "started_at"})
        if unknown:
            return _api_error(400, f"unknown keys: {', '.join(unknown)}")
        task_id = body.get("task_id")
        if not isinstance(task_id, str) or not TASK_ID_RE.match(task_id):
            return _api_error(400, "task_id must be a task id (letters, digits, _ and -, at most 64)")
        now = self.ctx.clock()
        started = body.get("started_at")
        if started is not None:
            if isinstance(started, bool) or not isinstance(started, int | float) or started <= 0:
                return _api_error(400, "started_at must be Unix time in seconds")
            started = float(started)
            if started > now + 600:
                return _api_error(400, "started_at is in the future")
            if now - started > VENDOR_WINDOW_SECONDS:
                return _api_error(422, "started_at is older than the vendor's 3-day query window")
        if task_id in self.tasks:
            task = self.tasks[task_id]
            if started is not None and task.started_at is None:
                task.started_at = started
                self._save_state()
            return web.json_response(self._listing(task_id)[0], status=200)
        if len(self.tasks) >= self.config.max_tasks:
            self.refused += 1
            return _api_error(409, f"watch list is full ({self.config.max_tasks} tasks, max_tasks)")
        self.retired.pop(task_id, None)
        self.tasks[task_id] = WatchedTask("api", now, started)
        self._save_state()
        return web.json_response(self._listing(task_id)[0], status=201)


def collect_task(task_id: str, data: dict[str, Any], out: SnapshotBuilder, now: float,
                 named_failures: frozenset[str] = frozenset()) -> None:
    """The series of one DescribeRecordStatus Data object. Pure mapping; never raises on odd data.
    `now` bounds the plausible timestamps (normalize.plausible_time); `named_failures` are the
    file keys (file_key) whose failed upload is named in rtc_recording_failed_file_info."""
    out.info(TASK_INFO, task=task_id, room=_text(data.get("RoomId")),
             record_mode=_enum(data.get("RecordMode"), RECORD_MODES),
             stream_type=_enum(data.get("StreamType"), STREAM_TYPES))
    status = data.get("Status")
    if status is not None:
        state = TASK_STATES.get(status) if isinstance(status, int) and not isinstance(status, bool) else None
        out.state_set(TASK_STATUS, TASK_STATES.values(), state if state is not None else f"unknown:{status}",
                      task=task_id)
    for metric, key in ((TASK_BEGIN, "RecordBeginTimestamp"), (TASK_END, "RecordEndTimestamp")):
        out.add(metric, norm.plausible_time(norm.epoch_millis_to_seconds(data.get(key)), now), key, task=task_id)
    files = data.get("RecordFiles")
    if files is None:
        files = []  # the vendor leaves RecordFiles out when nobody published: zero files, a fact
    if not isinstance(files, list):
        out.add(TASK_FILES, norm.INVALID, "RecordFiles", task=task_id, status="")
        return
    by_status: Counter[str] = Counter()
    sizes: list[norm.Number] = []
    durations: list[norm.Number] = []
    for index, f in enumerate(files):
        if not isinstance(f, dict):
            out.add(TASK_FILES, norm.INVALID, "RecordFiles[]", task=task_id, status="")
            continue
        file_status = f.get("Status")
        name = FILE_STATES.get(file_status) if isinstance(file_status, int) and not isinstance(file_status, bool) \
            else None
        if name is None:
            out.add(TASK_FILES, norm.INVALID, "RecordFiles[].Status", task=task_id, status="")
        else:
            by_status[name] += 1
        if name == "upload_failed" and file_key(f, index) in named_failures:
            # UserName (a nickname) and FileUrl (may carry a storage token) stay out of labels.
            out.info(FAILED_FILE, task=task_id, file=_text(f.get("FileId")), user=_text(f.get("UserId")),
                     stream=_text(f.get("StreamId")), format=_text(f.get("OutputFileFormat")))
        sizes.append(norm.non_negative(f.get("FileSize")))
        durations.append(norm.non_negative(f.get("Duration")))
    for name in FILE_STATES.values():
        out.add(TASK_FILES, float(by_status[name]), task=task_id, status=name)
    out.add(TASK_BYTES, _total(sizes), "RecordFiles[].FileSize", task=task_id)
    total_ms = _total(durations)
    out.add(TASK_DURATION, total_ms / 1000.0 if isinstance(total_ms, float) else total_ms,
            "RecordFiles[].Duration", task=task_id)


def file_key(f: dict[str, Any], index: int) -> str:
    """A file's identity across polls: its FileId, else its place in the list."""
    file_id = f.get("FileId")
    return file_id if isinstance(file_id, str) and file_id else f"#{index}"


def _total(values: Iterable[norm.Number]) -> norm.Number:
    """Sum of the files' values. A file still being written may not report one yet (absent: not
    counted); one unreadable value makes the total unknown rather than too small."""
    total = 0.0
    for v in values:
        if v is norm.INVALID:
            return norm.INVALID
        if isinstance(v, float):
            total += v
    # Each value finite, the sum may still overflow: unknown, not +Inf.
    return total if math.isfinite(total) else norm.INVALID


def _int(value: Any) -> int | None:
    """A JSON integer (not a bool); None for anything else (a list, a string, a float)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _enum(value: Any, names: dict[int, str]) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return names.get(value, str(value))
    return ""


def _message(answer: dict[str, Any]) -> str:
    message = answer.get("Message")
    text = redact.quote_vendor(message) if isinstance(message, str) else ""
    request_id = answer.get("RequestId")
    if isinstance(request_id, str) and request_id:
        return f"{text} (RequestId {redact.quote_vendor(request_id, limit=64)})"
    return text


def _api_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
