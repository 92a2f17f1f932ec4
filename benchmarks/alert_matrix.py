"""Fault matrix: every failure a user feels, injected into `monitord demo` through simulator knobs,
timed from injection to the notification at a webhook receiver, on a real stack with production
timings.

    python3 benchmarks/alert_matrix.py [--minutes 28] [--time-scale 1] [--only NAME ...]

What runs (all on 127.0.0.1, free ports, ended by PID when the run ends):
- four `python3 -m monitord demo` processes with their normal intervals: "quality" (call quality,
  recordings, live channels, media servers, SparkRTC events, state file), "outage" (every
  vendor answers 503), "access" (rejected credentials, vendor throttling) and "stale" (SparkRTC
  publishes nothing new; its AVD server, otherwise healthy, is the second AVD target the licence
  and recording faults need). Separate demos keep faults of one vendor from masking each other, and
  together they are the healthy stretch: every notification no fault explains is reported;
- a real Prometheus with deploy/prometheus/prometheus.yml (15 s scrape and evaluation) and the
  rule files of alerts/ as shipped, scraping the four demos as job "monitord";
- a real Alertmanager with deploy/alertmanager/alertmanager.yml as shipped (routes, group_wait,
  inhibitions); only the receivers' webhook URLs point at the receiver this script runs.

It prints one row per expected notification: the alert, the receiver, the budget, the time from
the fault's injection to the notification, and whether it arrived within budget; rows expecting
no notification (a bad call for one poll, an event ending on schedule) say whether anything
came. Then every notification no fault explains.

`--time-scale F` divides every timing of the stack by F, consistently: the demo's (via its own
--time-scale: poll intervals, holds, budgets, simulator timelines), Prometheus' scrape and
evaluation interval, every rule's `for:`, range, offset and time threshold (rewritten
mechanically from the shipped files by `scaled_rules`), Alertmanager's group_wait / interval,
and the fault schedule and budgets here. tests/test_e2e.py runs part of this table that way;
the figures of docs/alerts.md come from a run at scale 1.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitord.simulators import avd as avd_sim  # noqa: E402  (after the path above)
from monitord.simulators import huawei_rtc as huawei_sim  # noqa: E402
from monitord.simulators import polyv as polyv_sim  # noqa: E402

ALERTS = ROOT / "alerts"
DEPLOY = ROOT / "deploy"
STARTUP_DEADLINE = 60.0

# ------------------------------------------------------------------------- time scaling

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """Seconds of a Prometheus duration such as 1h30m, 15s, 1d."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """A Prometheus duration, in whole milliseconds (never 0: Prometheus refuses an empty range)."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def scale_duration(text: str, factor: float) -> str:
    return format_duration(parse_duration(text) / factor)


_RANGE = re.compile(r"\[(\w+)(?::(\w*))?\]")
_OFFSET = re.compile(r"\boffset\s+(\w+)")
# Thresholds that are lengths of time: the age of something (`time() - x > N`) and the
# duration metrics (`..._duration_seconds... > N`). Quality thresholds in seconds (jitter,
# delay) are properties of the network, not of the timeline, and stay as they are.
_AGE = re.compile(r"(time\(\)\s*-\s*[^<>]+?\s*[<>]=?\s*)([0-9.]+(?:\s*\*\s*[0-9.]+)?)")
_DURATION_METRIC = re.compile(r"(_duration_seconds(?:\{[^}]*\})?\s*[<>]=?\s*)([0-9.]+(?:\s*\*\s*[0-9.]+)?)")
# Per-second rates grow with the speed of the timeline.
_RATE = re.compile(r"(\brate\((?:[^()]|\([^()]*\))*\)\)?\s*[<>]=?\s*)([0-9.]+)")


def scale_expr(expr: str, factor: float) -> str:
    """The expression with every range, subquery step, offset, age threshold and rate threshold
    scaled to a timeline running `factor` times faster."""
    if factor == 1:
        return expr

    def rng(m: re.Match[str]) -> str:
        step = m.group(2)
        scaled = scale_duration(m.group(1), factor)
        if step is None:
            return f"[{scaled}]"
        return f"[{scaled}:{scale_duration(step, factor) if step else ''}]"

    expr = _RANGE.sub(rng, expr)
    expr = _OFFSET.sub(lambda m: f"offset {scale_duration(m.group(1), factor)}", expr)
    expr = _AGE.sub(lambda m: f"{m.group(1)}({m.group(2)}) / {factor:g}", expr)
    expr = _DURATION_METRIC.sub(lambda m: f"{m.group(1)}({m.group(2)}) / {factor:g}", expr)
    return _RATE.sub(lambda m: f"{m.group(1)}{m.group(2)} * {factor:g}", expr)


def load_rules(src: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(src.read_text(encoding="utf-8"))
    return doc


def scaled_rules(src: Path, factor: float) -> dict[str, Any]:
    """A shipped rule file with every timing divided by `factor` (an identical copy at 1)."""
    doc = load_rules(src)
    if factor == 1:
        return doc
    for group in doc.get("groups", []):
        # A group's own interval (the once-a-minute quality counts, the 5-minute SLO budget) is
        # part of its meaning; the others run at the shipped evaluation interval, 15 s.
        group["interval"] = scale_duration(str(group.get("interval", "15s")), factor)
        for rule in group.get("rules", []):
            rule["expr"] = scale_expr(str(rule["expr"]), factor)
            if "for" in rule:
                rule["for"] = scale_duration(str(rule["for"]), factor)
    return doc


def prometheus_config(metrics_urls: Iterable[str], am_port: int, rules_dir: Path, factor: float) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with this run's addresses; intervals divided by `factor`."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text()))
    glob = config["global"]
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        glob[key] = scale_duration(str(glob[key]), factor)
    config["rule_files"] = [str(rules_dir / "*.rules.yml")]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
    jobs = [j for j in config["scrape_configs"] if j["job_name"] == "monitord"]
    if len(jobs) != 1:
        raise SystemExit("the shipped Prometheus config must have one job named monitord")
    paths = {urllib.parse.urlparse(u).path for u in metrics_urls}
    if len(paths) != 1:
        raise SystemExit(f"demos serve metrics on different paths: {paths}")
    jobs[0]["static_configs"] = [{"targets": [urllib.parse.urlparse(u).netloc for u in metrics_urls]}]
    jobs[0]["metrics_path"] = paths.pop()
    config["scrape_configs"] = jobs
    return config


def alertmanager_config(webhook_url: str, factor: float) -> dict[str, Any]:
    """deploy/alertmanager/alertmanager.yml, every receiver's webhook pointed at `webhook_url`,
    group_wait / group_interval / repeat_interval divided by `factor`."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text()))

    def scale(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                route[key] = scale_duration(str(route[key]), factor)
        for child in route.get("routes", []):
            scale(child)

    scale(config["route"])
    if "resolve_timeout" in config.get("global", {}):
        config["global"]["resolve_timeout"] = scale_duration(config["global"]["resolve_timeout"], factor)
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_url}/{receiver['name']}"
        if any(k.endswith("_configs") and k != "webhook_configs" for k in receiver):
            raise SystemExit(f"receiver {receiver['name']}: only webhook receivers can be redirected")
    return config


# ------------------------------------------------------------------------------ the stack

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Notification:
    at: float          # time.monotonic() of arrival
    receiver: str
    status: str
    labels: dict[str, str]


@dataclass
class Webhook:
    """Every alert of every Alertmanager webhook payload, by receiver (the URL's last segment)."""

    received: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, receiver: str, body: dict[str, Any]) -> None:
        now = time.monotonic()
        with self.lock:
            for alert in body.get("alerts", []):
                self.received.append(Notification(now, receiver, str(alert.get("status")), dict(alert["labels"])))

    def snapshot(self) -> list[Notification]:
        with self.lock:
            return list(self.received)


def serve_webhook(hook: Webhook) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook.add(self.path.rstrip("/").rsplit("/", 1)[-1], json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


@dataclass
class Demo:
    name: str
    proc: subprocess.Popen[bytes]
    simulators: dict[str, str]
    metrics: str
    tmpdir: Path

    @property
    def instance(self) -> str:
        return urllib.parse.urlparse(self.metrics).netloc

    def state_dir(self) -> Path:
        found = sorted(self.tmpdir.glob("monitord-demo-*"))
        if not found:
            raise RuntimeError(f"demo {self.name}: no state directory under {self.tmpdir}")
        return found[0]


@dataclass
class Stack:
    demos: dict[str, Demo]
    prometheus: str
    alertmanager: str
    webhook: Webhook
    factor: float

    def knob(self, demo: str, kind: str, path: str, body: Any) -> None:
        status, answer = http("POST", f"{self.demos[demo].simulators[kind]}{path}", body)
        if status != 200:
            raise RuntimeError(f"{demo} {kind} {path} {body}: HTTP {status} {answer}")

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        status, body = http("GET", f"{self.prometheus}/api/v1/alerts")
        return list(body["data"]["alerts"]) if status == 200 else []

    def alertmanager_alerts(self) -> list[dict[str, Any]]:
        status, body = http("GET", f"{self.alertmanager}/api/v2/alerts")
        return list(body) if status == 200 and isinstance(body, list) else []

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = http("GET", f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return list(body["data"]["result"]) if status == 200 else []


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode(errors="replace"))


def _start_demo(name: str, factor: float, workdir: Path, procs: list[subprocess.Popen[bytes]]) -> Demo:
    tmp = workdir / f"demo-{name}"
    tmp.mkdir()
    cmd = [sys.executable, "-m", "monitord", "demo", "--web.listen-address", "127.0.0.1:0",
           "--simulate.base-port", "0", "--log.format", "json", "--log.level", "warning"]
    if factor != 1:
        cmd += ["--time-scale", f"{factor:g}"]
    # TMPDIR: the demo's state directory lands where the state-file fault can reach it.
    env = {**os.environ, "TMPDIR": str(tmp)}
    with open(workdir / f"demo-{name}.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, env=env)
    procs.append(proc)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    sims: dict[str, str] = {}
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                tail = (workdir / f"demo-{name}.log").read_text()[-3000:]
                raise RuntimeError(f"demo {name} exited: {tail}") from None
            continue
        if match := re.match(r"simulator (\w+): (\S+)", line):
            sims[match.group(1)] = match.group(2)
        elif match := re.match(r"metrics: (\S+)", line):
            demo = Demo(name, proc, sims, match.group(1), tmp)
            # Before Prometheus first scrapes: a showcase state of the demo (a failed upload)
            # pinned away later would already have notified.
            for kind, path, body in PINS:
                if kind in sims:
                    status, answer = http("POST", f"{sims[kind]}{path}", body)
                    if status != 200:
                        raise RuntimeError(f"demo {name}: pin {kind} {body}: HTTP {status} {answer}")
            return demo
    raise RuntimeError(f"demo {name} printed no metrics URL within {STARTUP_DEADLINE:.0f}s")


def _wait_ready(url: str, proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if http("GET", url, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready within {STARTUP_DEADLINE:.0f}s:\n{log.read_text()[-3000:]}")


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(f"none of {', '.join(names)} on PATH")


@dataclass
class Running:
    stack: Stack
    procs: list[subprocess.Popen[bytes]]
    server: ThreadingHTTPServer
    workdir: Path


def start_stack(demos: Iterable[str], factor: float, workdir: Path) -> Running:
    """Start the demos, Alertmanager and Prometheus; on failure, stop what was started."""
    procs: list[subprocess.Popen[bytes]] = []
    hook = Webhook()
    server = serve_webhook(hook)
    try:
        running = {name: _start_demo(name, factor, workdir, procs) for name in demos}
        am_port, prom_port = free_port(), free_port()
        am_config = workdir / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump(alertmanager_config(f"http://127.0.0.1:{server.server_port}/hook", factor)))
        am_log = workdir / "alertmanager.log"
        with open(am_log, "wb") as log:
            procs.append(subprocess.Popen(
                [binary("prometheus-alertmanager", "alertmanager"), f"--config.file={am_config}",
                 f"--storage.path={workdir / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                 "--cluster.listen-address="],
                stdout=subprocess.DEVNULL, stderr=log))
        am_proc = procs[-1]
        rules_dir = workdir / "rules"
        rules_dir.mkdir()
        for path in sorted(ALERTS.glob("*.rules.yml")):
            (rules_dir / path.name).write_text(yaml.safe_dump(scaled_rules(path, factor), sort_keys=False))
        prom_config = workdir / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump(prometheus_config(
            [d.metrics for d in running.values()], am_port, rules_dir, factor)))
        prom_log = workdir / "prometheus.log"
        with open(prom_log, "wb") as log:
            procs.append(subprocess.Popen(
                [binary("prometheus"), f"--config.file={prom_config}", f"--storage.tsdb.path={workdir / 'prom-data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=subprocess.DEVNULL, stderr=log))
        _wait_ready(f"http://127.0.0.1:{am_port}/-/ready", am_proc, "alertmanager", am_log)
        _wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", procs[-1], "prometheus", prom_log)
        stack = Stack(running, f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", hook, factor)
        return Running(stack, procs, server, workdir)
    except BaseException:
        stop(procs, server)
        raise


def stop(procs: list[subprocess.Popen[bytes]], server: ThreadingHTTPServer) -> None:
    """End the processes this script started, by PID (never by name: other stacks may run)."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    server.shutdown()
    server.server_close()


# -------------------------------------------------------------------------------- faults

@dataclass(frozen=True)
class Step:
    """At `at` seconds (production timeline) after the faults start, do something to a demo."""

    at: float
    demo: str
    kind: str              # simulator kind, or "state" for the demo's state directory
    path: str = ""
    body: Any = None


@dataclass(frozen=True)
class Expect:
    """A notification the fault must cause (budget: seconds from the onset step), or, with
    budget None, must not cause."""

    alertname: str
    receiver: str
    labels: dict[str, str]
    budget: float | None


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    demo: str
    steps: tuple[Step, ...]
    onset: int                     # index of the step the timing counts from
    expects: tuple[Expect, ...]
    # Other alerts the fault legitimately causes (consequences, not false pages).
    explains: tuple[tuple[str, dict[str, str]], ...] = ()
    # Alerts that must be inhibited in Alertmanager while this fault lasts: (alertname, labels).
    inhibited: tuple[tuple[str, dict[str, str]], ...] = ()


CALL = 180.0      # call quality and recording events: within 3 minutes
OUTAGE = 720.0    # a vendor's total outage: within 12 minutes
SERVER = 300.0    # a media server offline: within 5 minutes
AUTH = 300.0      # rejected credentials page within 5 minutes
SLOW = 1500.0     # sustained conditions (throttling, staleness): by the end of the run


def held(hold: float, poll: float = 5.0) -> float:
    """Budget of a rule held `hold` seconds: the poll that sees the fault, a scrape, the evaluation
    that starts the hold and the one that ends it (15 s each), group_wait (30 s), and 30 s for a
    loaded machine, rounded up to the minute."""
    return -(-(hold + poll + 15 + 2 * 15 + 30 + 30) // 60) * 60

QUALITY_ALERTS = ("RtcStreamPacketLossHigh", "RtcStreamJitterHigh", "RtcStreamDelayHigh", "RtcVideoFrameRateCollapsed")
SOURCES = ("avd", "endpoint", "huawei_rtc", "polyv", "zego")


def _endpoint(demo: str, at: float, body: dict[str, Any]) -> Step:
    return Step(at, demo, "endpoint", "/_sim/endpoint", body)


def _zego(at: float, task: str, **body: Any) -> Step:
    return Step(at, "quality", "zego", "/_sim/zego", {"task": task, **body})


def _avd(at: float, demo: str, **body: Any) -> Step:
    return Step(at, demo, "avd", "/_sim/avd", body)


def _licence(at: float, demo: str, active: int, licensed: int) -> Step:
    # The live demo's active users follow its room timeline; the licence answer is pinned so the
    # ratio holds for the whole of the rule's hold.
    return _avd(at, demo, patch={"/app/get_licence_info": {"active_usernum": active, "max_users": licensed}})


def _sip_gates(at: float, *up: bool) -> Step:
    """The demo server's two gateways (pbx-main id 1, pbx-backup id 2), each up or down."""
    return _avd(at, "quality", sip_gates=[{**gate, "status": "1" if ok else "0"}
                                          for gate, ok in zip(avd_sim.LIVE_SIP_GATES, up, strict=True)])


AVD_TARGET = {"source": "avd", "target": "avd-server"}


FAULTS: tuple[Fault, ...] = (
    Fault("call-degraded", "a call turns bad and stays bad (loss 15 %, jitter 80 ms, delay 600 ms, 3 fps)",
          "quality", (_endpoint("quality", 60, {"device": "room-101", "in_call": True, "degrade": {
              "loss_percent": 15, "jitter_ms": 80, "delay_ms": 600, "frame_rate": 3}}),), 0,
          tuple(Expect(a, "ticket", {"source": "endpoint", "target": "room-101"}, CALL) for a in QUALITY_ALERTS),
          explains=(("RtcCallMinutesErrorBudgetBurnFast", {"target": "room-101"}),
                    ("RtcCallMinutesErrorBudgetBurnSlow", {"target": "room-101"}))),
    Fault("call-bad-90s", "a call is bad (jitter 45 ms) for 90 s, then ends",
          "quality", (_endpoint("quality", 240, {"device": "room-102", "in_call": True, "degrade": {"jitter_ms": 45}}),
                      _endpoint("quality", 330, {"device": "room-102", "in_call": False, "degrade": {}})), 0,
          (Expect("RtcStreamJitterHigh", "ticket", {"source": "endpoint", "target": "room-102"}, CALL),),
          explains=(("RtcCallMinutesErrorBudgetBurnFast", {"target": "room-102"}),
                    ("RtcCallMinutesErrorBudgetBurnSlow", {"target": "room-102"}))),
    Fault("call-bad-one-poll", "a call is bad for one production poll (15 s)",
          "quality", (_endpoint("quality", 60, {"device": "room-103", "in_call": True}),
                      _endpoint("quality", 300, {"device": "room-103", "degrade": {
                          "loss_percent": 15, "jitter_ms": 80, "delay_ms": 600, "frame_rate": 3}}),
                      _endpoint("quality", 315, {"device": "room-103", "degrade": {}})), 1,
          tuple(Expect(a, "ticket", {"source": "endpoint", "target": "room-103"}, None) for a in QUALITY_ALERTS)),
    Fault("zego-abnormal-1", "a recording task ends abnormally",
          "quality", (_zego(60, "DemoPausedTask03", status="ended_abnormally"),), 0,
          (Expect("ZegoRecordingEndedAbnormally", "ticket", {"source": "zego", "task": "DemoPausedTask03"}, CALL),)),
    Fault("zego-abnormal-2", "a second task ends abnormally two minutes later (every occurrence notifies)",
          "quality", (_zego(180, "DemoSingleRec002", status="ended_abnormally"),), 0,
          (Expect("ZegoRecordingEndedAbnormally", "ticket", {"source": "zego", "task": "DemoSingleRec002"}, CALL),)),
    Fault("zego-upload-after-end", "a task ends normally, a minute later its file upload fails",
          "quality", (_zego(60, "DemoMixedRecord1", status="ended", file_status="uploading"),
                      _zego(120, "DemoMixedRecord1", file_status="upload_failed")), 1,
          # One notification per failed file: the file's user, stream and format are labels.
          (Expect("ZegoRecordingUploadFailed", "ticket", {"source": "zego", "task": "DemoMixedRecord1",
                                                          "user": "mix_out", "format": "mp4"}, CALL),)),
    Fault("polyv-interrupted", "a class channel goes off air inside its expected-live window",
          "quality", (Step(60, "quality", "polyv", "/_sim/polyv", {"channel": "1000002", "live": False}),), 0,
          (Expect("PolyvChannelLiveInterrupted", "ticket", {"source": "polyv", "channel": "1000002"}, CALL + 60),)),
    Fault("polyv-stalled", "a live channel's push stalls (newest point stops advancing)",
          "quality", (Step(60, "quality", "polyv", "/_sim/polyv",
                           {"channel": "2477096", "live": True, "stalled": True}),), 0,
          (Expect("PolyvStreamStalled", "ticket", {"source": "polyv", "channel": "2477096"}, CALL + 120),)),
    Fault("polyv-ended-on-schedule", "a class whose window ended on schedule stays off air",
          "quality", (Step(60, "quality", "polyv", "/_sim/polyv", {"channel": "1000003", "live": False}),), 0,
          (Expect("PolyvChannelLiveInterrupted", "ticket", {"source": "polyv", "channel": "1000003"}, None),)),
    Fault("polyv-unscheduled-off-air", "a channel without a schedule goes off air",
          "quality", (Step(60, "quality", "polyv", "/_sim/polyv", {"channel": "3880533", "live": False}),), 0,
          (Expect("PolyvChannelLiveInterrupted", "ticket", {"source": "polyv", "channel": "3880533"}, None),)),
    Fault("avd-server-offline", "one media server drops out",
          "quality", (Step(60, "quality", "avd", "/_sim/avd", {"offline_servers": ["box2"]}),), 0,
          (Expect("AvdMediaServerOffline", "ticket", {"source": "avd", "server": "box2"}, SERVER),)),
    Fault("avd-no-media-server", "no media server online (inhibits the per-server tickets)",
          "quality", (Step(480, "quality", "avd", "/_sim/avd", {"no_media_server": True}),), 0,
          (Expect("AvdNoMediaServerOnline", "page", {"source": "avd"}, SERVER),
           Expect("AvdMediaServerOffline", "ticket", {"source": "avd", "server": "box1"}, None),
           Expect("AvdMediaServerOffline", "ticket", {"source": "avd", "server": "box3"}, None)),
          inhibited=(("AvdMediaServerOffline", {"source": "avd", "server": "box1"}),)),
    Fault("avd-licence-nearly-full", "an AVD server uses 92 % of its licensed users",
          "stale", (_licence(60, "stale", 460, 500),), 0,
          (Expect("AvdLicenceNearlyExhausted", "ticket", AVD_TARGET, held(600)),)),
    Fault("avd-licence-full", "an AVD server uses every licensed user (the page inhibits the nearly-full ticket)",
          "quality", (_licence(60, "quality", 500, 500),), 0,
          (Expect("AvdLicenceExhausted", "page", AVD_TARGET, held(120)),
           Expect("AvdLicenceNearlyExhausted", "ticket", AVD_TARGET, None)),
          inhibited=(("AvdLicenceNearlyExhausted", AVD_TARGET),)),
    Fault("avd-sip-gateway-down", "a SIP gateway goes down and stays down; the other restarts for 2 minutes",
          "quality", (_sip_gates(60, False, True), _sip_gates(120, False, False), _sip_gates(240, False, True)), 0,
          (Expect("AvdSipGatewayDown", "ticket", {**AVD_TARGET, "gateway": "1", "gateway_name": "pbx-main"}, held(300)),
           Expect("AvdSipGatewayDown", "ticket", {**AVD_TARGET, "gateway": "2"}, None))),
    Fault("avd-recording-stopped", "a watched recording stops",
          "quality", (_avd(60, "quality", record_status={avd_sim.LIVE_RECORD_ID: 4}),), 0,
          (Expect("AvdWatchedRecordingStopped", "ticket", {**AVD_TARGET, "record": avd_sim.LIVE_RECORD_ID},
                  held(120)),)),
    Fault("avd-recording-paused", "a watched recording is paused (not stopped)",
          "stale", (_avd(60, "stale", record_status={avd_sim.LIVE_RECORD_ID: 3}),), 0,
          (Expect("AvdWatchedRecordingStopped", "ticket", {**AVD_TARGET, "record": avd_sim.LIVE_RECORD_ID}, None),)),
    Fault("huawei-join-failures-one-isp", "SparkRTC joins fail for one carrier's users (4 a minute, CUCC)",
          "quality", (Step(60, "quality", "huawei_rtc", "/_sim/huawei_rtc", {"network_join_failures": {
              "app": huawei_sim.APPS[0], "isp": "CUCC", "per_minute": 4}}),), 0,
          # The failed-join window (5 min) is read once per window and a minute's join rate counts
          # once it settled (2 min after it ended): both come on top of the hold.
          (Expect("HuaweiRtcJoinFailuresOnOneNetwork", "ticket", {
              "source": "huawei_rtc", "target": "sparkrtc", "dimension": "isp", "dimension_value": "CUCC"},
              held(600 + 300 + 180, poll=10)),),
          explains=(("RtcJoinSuccessErrorBudgetBurnSlow", {"target": "sparkrtc"}),
                    ("RtcJoinSuccessErrorBudgetBurnFast", {"target": "sparkrtc"}))),
    Fault("huawei-event-spike", "SparkRTC abnormal events spike (each new factor born at its first events)",
          "quality", (Step(60, "quality", "huawei_rtc", "/_sim/huawei_rtc", {"events_per_minute": 30}),), 0,
          (Expect("HuaweiRtcAbnormalEventSpike", "ticket", {"source": "huawei_rtc"}, 900),)),
    Fault("state-file-unwritable", "a target's state file cannot be written",
          "quality", (Step(60, "quality", "state", "zego-recording"),), 0,
          (Expect("MonitordStateFileErrors", "ticket", {"target": "zego-recording", "reason": "write_error"}, CALL),)),
    Fault("vendor-outage", "every vendor answers HTTP 503 to everything",
          "outage", tuple(Step(60, "outage", kind, "/_sim/faults", {"status": 503}) for kind in SOURCES), 0,
          tuple(Expect("MonitordSourceDown", "page", {"source": kind}, OUTAGE) for kind in SOURCES),
          explains=(("MonitordTargetDown", {}), ("MonitordDataStale", {}), ("HuaweiRtcDataStale", {}))),
    Fault("auth-zego", "Zego rejects the signature (100000004)",
          "access", (Step(60, "access", "zego", "/_sim/zego", {"vendor_error": 100000004}),), 0,
          (Expect("MonitordAuthFailing", "page", {"source": "zego"}, AUTH),),
          explains=(("MonitordSourceDown", {"source": "zego"}),)),
    Fault("auth-avd", "AVD rejects the access key (40001)",
          "access", (Step(60, "access", "avd", "/_sim/avd", {"error": {"path": "/room/list", "ret": 40001,
                                                                    "msg": "access key check failed"}}),), 0,
          (Expect("MonitordAuthFailing", "page", {"source": "avd"}, AUTH),),
          explains=(("MonitordSourceDown", {"source": "avd"}),)),
    Fault("auth-polyv", "Polyv rejects one account's signature (secret rotated)",
          "access", (Step(60, "access", "polyv", "/_sim/polyv", {"accounts": {
              polyv_sim.DEFAULT_APP_ID: polyv_sim.DEFAULT_APP_SECRET,
              polyv_sim.SECOND_APP_ID: "rotated-elsewhere"}}),), 0,
          (Expect("MonitordAuthFailing", "page", {"source": "polyv", "target": "polyv-classes"}, AUTH),)),
    Fault("huawei-throttled", "another client spends the SparkRTC account's request budget",
          "access", (Step(60, "access", "huawei_rtc", "/_sim/huawei_rtc", {"budget_per_minute": 4}),), 0,
          (Expect("HuaweiRtcThrottled", "ticket", {"source": "huawei_rtc"}, SLOW),),
          explains=(("MonitordThrottled", {"source": "huawei_rtc"}), ("HuaweiRtcDataStale", {}),
                    ("MonitordTargetDown", {"source": "huawei_rtc"}), ("MonitordSourceDown", {"source": "huawei_rtc"}),
                    ("HuaweiRtcBudgetExhausted", {}), ("HuaweiRtcPublishingLate", {}))),
    Fault("huawei-publishing-late", "SparkRTC answers but publishes no new data",
          "stale", (Step(30, "stale", "huawei_rtc", "/_sim/huawei_rtc", {"publish_delay": 7200}),), 0,
          (Expect("HuaweiRtcPublishingLate", "ticket", {"source": "huawei_rtc", "target": "sparkrtc"}, SLOW),
           Expect("HuaweiRtcPublishingLate", "ticket", {"source": "huawei_rtc", "target": "sparkrtc-iam"}, SLOW))),
)

# Knobs that hold the demos' own timelines in their busy state, so the healthy stretch is the
# same whenever it runs: every Polyv channel stays on air unless a fault takes it off, and the
# demo recording whose file shows a failed upload from the start (a dashboard showcase) is
# uploading instead, so every recording notification is one a fault caused.
PINS = (
    ("polyv", "/_sim/polyv", {"live": True}),
    ("zego", "/_sim/zego", {"task": "DemoSingleRec002", "file_status": "uploading"}),
)
DEMOS = ("quality", "outage", "access", "stale")


def select(names: Iterable[str] | None) -> tuple[Fault, ...]:
    if not names:
        return FAULTS
    wanted = set(names)
    unknown = wanted - {f.name for f in FAULTS}
    if unknown:
        raise SystemExit(f"unknown fault(s): {sorted(unknown)}; known: {[f.name for f in FAULTS]}")
    return tuple(f for f in FAULTS if f.name in wanted)


# ------------------------------------------------------------------------------- running

@dataclass
class Row:
    fault: Fault
    expect: Expect
    instance: str
    onset: float | None = None     # monotonic time of the onset step
    arrived: float | None = None   # monotonic time of the first matching notification

    @property
    def delay(self) -> float | None:
        return None if self.onset is None or self.arrived is None else self.arrived - self.onset

    def ok(self, factor: float, slack: float = 1.0) -> bool:
        """Arrived within its budget (times `slack`), or, for a row expecting nothing, nothing came."""
        if self.expect.budget is None:
            return self.arrived is None
        return self.delay is not None and self.delay <= self.expect.budget * slack / factor


def _matches(n: Notification, alertname: str, labels: dict[str, str], instance: str) -> bool:
    return (n.labels.get("alertname") == alertname and n.labels.get("instance", instance) == instance
            and all(n.labels.get(k) == v for k, v in labels.items()))


def _apply(stack: Stack, step: Step) -> None:
    if step.kind == "state":
        # A directory where the target's state file belongs: the atomic rename onto it fails
        # (even for root), so every save of that target is a write_error.
        for path in stack.demos[step.demo].state_dir().glob(f"{step.path}.*.json"):
            path.unlink()
            path.mkdir()
        return
    stack.knob(step.demo, step.kind, step.path, step.body)


def run(stack: Stack, faults: tuple[Fault, ...], minutes: float, log: Callable[[str], None] = print) -> list[Row]:
    """Apply every fault's steps on schedule, watch the receiver until `minutes` (production
    timeline) have passed since the faults started, and return one row per expectation."""
    factor = stack.factor
    rows = [Row(f, e, stack.demos[f.demo].instance) for f in faults for e in f.expects]
    schedule = sorted(((step.at / factor, i, f, step) for f in faults for i, step in enumerate(f.steps)),
                      key=lambda item: item[0])
    start = time.monotonic()
    end = start + minutes * 60 / factor
    pending = list(schedule)
    while time.monotonic() < end:
        now = time.monotonic()
        while pending and pending[0][0] <= now - start:
            _, index, fault, step = pending.pop(0)
            _apply(stack, step)
            elapsed = (time.monotonic() - start) * factor / 60
            log(f"[{elapsed:5.1f} min] {fault.name}: step {index + 1}/{len(fault.steps)}")
            if index == fault.onset:
                for row in rows:
                    if row.fault is fault:
                        row.onset = time.monotonic()
        for n in stack.webhook.snapshot():
            if n.status != "firing":
                continue
            for row in rows:
                if (row.arrived is None and row.onset is not None and n.at >= row.onset
                        and n.receiver == row.expect.receiver
                        and _matches(n, row.expect.alertname, row.expect.labels, row.instance)):
                    row.arrived = n.at
        if all(r.arrived is not None for r in rows if r.expect.budget is not None) and not pending \
                and time.monotonic() - start > max((s[0] for s in schedule), default=0) + 600 / factor:
            # Every expected notification arrived and the negative rows had 10 minutes to go wrong.
            break
        time.sleep(0.25)
    return rows


# Alerts that are right about what they see but caused by no fault, listed apart from the
# unexplained ones:
# - the matrix's topology: several independent, unsharded demos scraped in one job "monitord"
#   are each the leader of shard 0, which is what MonitordShardPolledTwice reports.
DEMO_DATA = ("MonitordShardPolledTwice",)


def unexplained(stack: Stack, faults: tuple[Fault, ...]) -> list[Notification]:
    """Firing notifications no fault expects or explains (demo-data alerts excluded)."""
    out = []
    for n in stack.webhook.snapshot():
        if n.status != "firing" or n.labels.get("alertname") in DEMO_DATA:
            continue
        explained = False
        for fault in faults:
            instance = stack.demos[fault.demo].instance
            wanted = [(e.alertname, e.labels) for e in fault.expects if e.budget is not None] + list(fault.explains)
            if any(_matches(n, name, labels, instance) for name, labels in wanted):
                explained = True
                break
        if not explained:
            out.append(n)
    return out


def not_inhibited(stack: Stack, faults: tuple[Fault, ...]) -> list[str]:
    """Alerts of `inhibited` that Alertmanager holds but does not mark inhibited."""
    problems = []
    alerts = stack.alertmanager_alerts()
    for fault in faults:
        instance = stack.demos[fault.demo].instance
        for name, labels in fault.inhibited:
            ours = [a for a in alerts if a["labels"].get("alertname") == name
                    and a["labels"].get("instance") == instance
                    and all(a["labels"].get(k) == v for k, v in labels.items())]
            if not ours:
                problems.append(f"{name}{labels}: not active in Alertmanager (cannot show the inhibition)")
            elif not all(a["status"].get("inhibitedBy") for a in ours):
                problems.append(f"{name}{labels}: active but not inhibited")
    return problems


def table(rows: list[Row], factor: float) -> str:
    lines = ["| fault | expected alert | receiver | budget | fault → notification | arrived |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        e = row.expect
        labels = ",".join(f"{k}={v}" for k, v in e.labels.items())
        alert = f"{e.alertname}" + (f"{{{labels}}}" if labels else "")
        if e.budget is None:
            budget, delay = "none expected", "—"
            arrived = "none (ok)" if row.arrived is None else f"UNEXPECTED after {row.delay:.0f} s"
        else:
            budget = f"{e.budget / factor / 60:.1f} min"
            delay = "—" if row.delay is None else f"{row.delay / 60:.1f} min ({row.delay:.0f} s)"
            arrived = ("yes" if row.ok(factor) else "LATE") if row.arrived is not None else "NO"
        lines.append(f"| {row.fault.name} | {alert} | {e.receiver} | {budget} | {delay} | {arrived} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=28.0,
                        help="length of the run after the faults start, production timeline (default 28)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="divide every timing by this factor (default 1: production timings)")
    parser.add_argument("--only", nargs="*", help="run only these faults (names from the table)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = parser.parse_args(argv)
    faults = select(args.only)
    demos = tuple(d for d in DEMOS if any(f.demo == d for f in faults)) if args.only else DEMOS
    workdir = Path(tempfile.mkdtemp(prefix="alert-matrix-"))
    print(f"work directory: {workdir}", flush=True)
    started = start_stack(demos, args.time_scale, workdir)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        stack = started.stack
        # Let Prometheus scrape every demo a few times before the first fault.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(stack.query('up{job="monitord"} == 1')) < len(demos):
            time.sleep(1)
        print(f"stack up: Prometheus {stack.prometheus}, Alertmanager {stack.alertmanager}, "
              f"demos {', '.join(f'{d.name}={d.instance}' for d in stack.demos.values())}", flush=True)
        rows = run(stack, faults, args.minutes, log=lambda s: print(s, flush=True))
        extra = unexplained(stack, faults)
        inhibition = not_inhibited(stack, faults)
    finally:
        stop(started.procs, started.server)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"time scale {args.time_scale:g}; scrape/evaluation {format_duration(15 / args.time_scale)}, "
          f"shipped for:/group_wait divided by {args.time_scale:g}")
    print(table(rows, args.time_scale))
    print()
    demo_data = [n for n in started.stack.webhook.snapshot()
                  if n.status == "firing" and n.labels.get("alertname") in DEMO_DATA]
    print(f"notifications caused by the demo's own data or the matrix's topology ({', '.join(DEMO_DATA)}): "
          f"{len(demo_data)}")
    for n in demo_data:
        print(f"- {n.receiver}: " + ",".join(f"{k}={v}" for k, v in sorted(n.labels.items()) if k != "job"))
    print(f"unexplained notifications: {len(extra)}")
    for n in extra:
        labels = ",".join(f"{k}={v}" for k, v in sorted(n.labels.items()) if k not in ("job",))
        print(f"- {n.receiver}: {labels}")
    for problem in inhibition:
        print(f"inhibition: {problem}")
    failed = [r for r in rows if not r.ok(args.time_scale)]
    return 1 if failed or extra or inhibition else 0


if __name__ == "__main__":
    sys.exit(main())
