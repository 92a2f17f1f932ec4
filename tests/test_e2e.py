"""End to end on real binaries: `monitord demo` -> Prometheus (the shipped scrape config and every
rule file in alerts/) -> Alertmanager (the shipped routing tree and inhibitions) -> a webhook
receiver run by this test.

1. Every panel of every dashboard in dashboards/, with its template variables filled in as
   Grafana fills them on load ("All" = the alternation of every value of a label_values query),
   returns data. Panels of a source that is not in monitord.sources.REGISTRY yet are skipped with
   that reason; an empty answer for a registered source is a failure.
2. A fault injected through a simulator knob produces the matching alert at the receiver its
   severity routes to: degraded endpoint calls -> the four call-quality warnings at "ticket";
   one vendor knob per source-specific alert in VENDOR_FAULTS (skipped for sources that are not
   registered);
   every simulator of the demo answering 503 -> MonitordSourceDown of every registered source
   at "page", with its MonitordTargetDown warnings inhibited.

What is shortened, on temporary copies only: scrape and rule evaluation every second, every
rule's `for:` cut to 1s (`promtool test rules` covers the real holds in alerts/tests/), and the
Alertmanager's group_wait / group_interval cut to 1s. The routes, matchers, inhibitions and
receivers are the shipped ones; only the receivers' URLs point at this test's webhook.

Needs /usr/bin/prometheus and /usr/bin/prometheus-alertmanager: skipped without them, except
under MONITORD_REQUIRE_E2E=1 (set by .ci/run), where their absence is a failure.
"""

from __future__ import annotations

import copy
import json
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring import (
    DEPLOY,
    ROOT,
    Panel,
    dashboard_files,
    load_json,
    panels,
    parse_label_values,
    rule_files,
    substitute,
    variable_query,
    variables,
)

from monitord.sources import REGISTRY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# What Grafana puts in for its built-in variables, given the provisioned datasource's
# timeInterval of 15s (deploy/grafana/provisioning/datasources/): $__rate_interval is
# max(4 x scrape interval, $__interval + scrape interval).
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600"}
STARTUP_DEADLINE = 30.0   # binaries up and ready
DATA_DEADLINE = 60.0      # every panel has data, counted from the stack's start
ALERT_DEADLINE = 60.0     # an injected fault reaches the webhook
# A source may serve cached data between vendor calls (Huawei refreshes per-minute data once a
# minute): its polls fail only when it next calls the vendor.
OUTAGE_DEADLINE = 90.0
SHORT_HOLD = "1s"


# ------------------------------------------------------------------------------ the stack

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Webhook:
    """Alertmanager's webhook payloads, by receiver (the last path segment)."""

    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, receiver: str) -> list[dict[str, Any]]:
        with self.lock:
            return [a for r, body in self.received if r == receiver for a in body.get("alerts", [])]

    def firing(self, receiver: str, alertname: str, **labels: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts(receiver)
                if a.get("status") == "firing" and a["labels"].get("alertname") == alertname
                and all(a["labels"].get(k) == v for k, v in labels.items())]


def _serve_webhook(hook: Webhook) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with hook.lock:
                hook.received.append((self.path.rstrip("/").rsplit("/", 1)[-1], json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _http(method: str, url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def _wait_ready(url: str, proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if _http("GET", url, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{name} not ready within {STARTUP_DEADLINE}s:\n{log.read_text()[-3000:]}")


def shortened_rules(src: Path, dst: Path) -> None:
    doc = yaml.safe_load(src.read_text(encoding="utf-8"))
    for group in doc.get("groups", []):
        group["interval"] = "1s"
        for rule in group.get("rules", []):
            if "alert" in rule:
                rule["for"] = SHORT_HOLD
    dst.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def prometheus_config(metrics_url: str, am_port: int, rules_dir: Path) -> dict[str, Any]:
    """The shipped config with addresses and intervals of this test; the monitord job keeps its name."""
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config = copy.deepcopy(shipped)
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules_dir / "*.rules.yml")]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
    jobs = [j for j in config["scrape_configs"] if j["job_name"] == "monitord"]
    assert len(jobs) == 1, "the shipped Prometheus config must have one job named monitord"
    parsed = urllib.parse.urlsplit(metrics_url)
    jobs[0]["static_configs"] = [{"targets": [parsed.netloc]}]
    jobs[0]["metrics_path"] = parsed.path
    config["scrape_configs"] = jobs
    return config


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The shipped config, every receiver's webhook pointed at this test, waits cut to 1s."""
    config = copy.deepcopy(yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text()))

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route or route is config["route"]:
                route[key] = "1s"
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_url}/{receiver['name']}"
        assert not any(k.endswith("_configs") and k != "webhook_configs" for k in receiver), \
            f"receiver {receiver['name']}: the test can only redirect webhooks"
    return config


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    metrics: str
    simulators: dict[str, str]
    webhook: Webhook
    started: float

    def query(self, expr: str, instant: bool) -> tuple[str, list[Any]]:
        """(error or "", result) of a PromQL query, as Grafana would send it."""
        now = time.time()
        if instant:
            params = {"query": expr, "time": f"{now:.3f}"}
            path = "query"
        else:
            params = {"query": expr, "start": f"{now - 60:.3f}", "end": f"{now:.3f}", "step": "5"}
            path = "query_range"
        status, body = _http("GET", f"{self.prometheus}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            return f"HTTP {status}: {body}", []
        return "", body["data"]["result"]

    def label_values(self, selector: str | None, label: str) -> list[str]:
        now = time.time()
        if selector is None:
            status, body = _http("GET", f"{self.prometheus}/api/v1/label/{label}/values")
            return sorted(body["data"]) if status == 200 else []
        params = urllib.parse.urlencode({"match[]": selector, "start": f"{now - 300:.3f}", "end": f"{now:.3f}"})
        status, body = _http("GET", f"{self.prometheus}/api/v1/series?{params}")
        assert status == 200, f"label_values({selector}, {label}): HTTP {status}: {body}"
        return sorted({s[label] for s in body["data"] if label in s})

    def firing_in_prometheus(self, alertname: str) -> bool:
        status, body = _http("GET", f"{self.prometheus}/api/v1/alerts")
        return status == 200 and any(a["labels"].get("alertname") == alertname and a["state"] == "firing"
                                     for a in body["data"]["alerts"])


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode(errors="replace"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from monitoring import require_binary

    prometheus = require_binary("prometheus")
    alertmanager = require_binary("prometheus-alertmanager") if shutil.which("prometheus-alertmanager") \
        else require_binary("alertmanager")
    tmp = tmp_path_factory.mktemp("e2e")
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def log_file(name: str) -> Any:
        handle = open(tmp / name, "wb")  # closed in the finally below
        logs.append(handle)
        return handle

    hook = Webhook()
    server = _serve_webhook(hook)
    started = time.monotonic()
    try:
        demo = subprocess.Popen(
            [sys.executable, "-m", "monitord", "demo", "--web.listen-address", "127.0.0.1:0",
             "--simulate.base-port", "0", "--log.format", "json", "--log.level", "warning"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log_file("demo.log"),
        )
        procs.append(demo)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_read_lines, args=(demo.stdout, lines), daemon=True).start()
        sims: dict[str, str] = {}
        metrics = ""
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not metrics and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if demo.poll() is not None:
                    pytest.fail(f"monitord demo exited: {(tmp / 'demo.log').read_text()[-3000:]}")
                continue
            if match := re.match(r"simulator (\w+): (\S+)", line):
                sims[match.group(1)] = match.group(2)
            elif match := re.match(r"metrics: (\S+)", line):
                metrics = match.group(1)
        assert metrics, f"monitord demo printed no metrics URL: {(tmp / 'demo.log').read_text()[-3000:]}"

        am_port, prom_port = _free_port(), _free_port()
        am_config = tmp / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump(alertmanager_config(f"http://127.0.0.1:{server.server_port}/hook")))
        am_log = tmp / "alertmanager.log"
        procs.append(subprocess.Popen(
            [alertmanager, f"--config.file={am_config}", f"--storage.path={tmp / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=log_file(am_log.name),
        ))
        rules_dir = tmp / "rules"
        rules_dir.mkdir()
        for path in rule_files():
            shortened_rules(path, rules_dir / path.name)
        prom_config = tmp / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump(prometheus_config(metrics, am_port, rules_dir)))
        prom_log = tmp / "prometheus.log"
        procs.append(subprocess.Popen(
            [prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp / 'prom-data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=log_file(prom_log.name),
        ))
        _wait_ready(f"http://127.0.0.1:{am_port}/-/ready", procs[1], "alertmanager", am_log)
        _wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", procs[2], "prometheus", prom_log)
        yield Stack(f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", metrics, sims, hook, started)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        server.shutdown()
        server.server_close()
        for handle in logs:
            handle.close()


def _sim(stack: Stack, kind: str, path: str, body: Any) -> None:
    status, answer = _http("POST", f"{stack.simulators[kind]}{path}", body)
    assert status == 200, f"{kind} {path}: HTTP {status} {answer}"


# Simulator knobs that hold the demo's timelines in their busy state, so that what the panels
# show does not depend on the wall clock: endpoint rooms leave their calls one minute in five,
# Polyv channels go off air five minutes in thirty.
PIN_DEMO = {
    "endpoint": ("/_sim/endpoint", {"in_call": True}),
    "polyv": ("/_sim/polyv", {"live": True}),
}


@pytest.fixture(scope="module")
def demo_in_calls(stack: Stack) -> Stack:
    for kind, (path, body) in PIN_DEMO.items():
        if kind in stack.simulators:
            _sim(stack, kind, path, body)
    return stack


# --------------------------------------------------------------------------- 1. dashboards

def _panel_params() -> list[Any]:
    params = []
    for path in dashboard_files():
        for panel in panels(path):
            params.append(pytest.param(path, panel, id=f"{path.stem}:{panel.panel.get('id')}:{panel.title}"))
    return params


_variable_cache: dict[str, dict[str, str]] = {}


def grafana_regex_escape(value: str) -> str:
    """How Grafana's Prometheus datasource escapes a multi-value variable's values: regex
    metacharacters get a backslash, doubled because it sits inside a PromQL string."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)


def _fill_variables(stack: Stack, path: Path) -> dict[str, str]:
    """Values of the dashboard's variables, in order, each query seeing the earlier ones."""
    if path.name in _variable_cache:
        return _variable_cache[path.name]
    values = dict(GRAFANA_BUILTINS)
    for var in variables(load_json(path)):
        name = str(var["name"])
        if var.get("type") == "datasource":
            continue
        parsed = parse_label_values(variable_query(var))
        assert parsed is not None, f"variable {name}: not a label_values query"
        selector, label = parsed
        found = stack.label_values(substitute(selector, values) if selector else None, label)
        if not found:
            return {}  # not yet: the caller retries until its deadline
        if var.get("includeAll"):
            escaped = [grafana_regex_escape(v) for v in found]
            values[name] = "(" + "|".join(escaped) + ")" if len(escaped) > 1 else escaped[0]
        else:
            values[name] = found[0]
    _variable_cache[path.name] = values
    return values


@pytest.mark.parametrize(("path", "panel"), _panel_params())
def test_dashboard_panel_returns_data(demo_in_calls: Stack, path: Path, panel: Panel) -> None:
    stack = demo_in_calls
    absent = panel.absent_sources()
    if absent:
        pytest.skip(f"source(s) {', '.join(sorted(absent))} not in monitord.sources.REGISTRY "
                    f"(registered: {', '.join(sorted(REGISTRY))}): nothing in the demo to show")
    problems: list[str] = []
    while True:
        values = _fill_variables(stack, path)
        problems = []
        if not values:
            problems.append("a template variable has no values yet")
        else:
            for target in panel.targets:
                if target.get("hide"):
                    continue
                expr = substitute(str(target["expr"]), values)
                error, result = stack.query(expr, instant=bool(target.get("instant")))
                if error:
                    pytest.fail(f"{panel} {target.get('refId')}: {expr}\n{error}")
                if not result:
                    problems.append(f"{target.get('refId')}: {expr} returned no data")
        if not problems or time.monotonic() - stack.started > DATA_DEADLINE:
            break
        time.sleep(1.0)
    assert not problems, f"{panel}:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------ 2. alerts

def _wait_for(what: str, check: Any, deadline: float = ALERT_DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"within {deadline:.0f}s: {what}")


CALL_QUALITY = ("RtcStreamPacketLossHigh", "RtcStreamJitterHigh", "RtcStreamDelayHigh", "RtcVideoFrameRateCollapsed")


def test_degraded_calls_reach_the_ticket_receiver(demo_in_calls: Stack) -> None:
    stack = demo_in_calls
    if "endpoint" not in stack.simulators:
        pytest.skip("the endpoint simulator is not in the demo")
    # Healthy demo calls are below every threshold: what arrives below is caused by the knob.
    firing_before = [name for name in CALL_QUALITY if stack.firing_in_prometheus(name)]
    assert not firing_before, f"firing before the fault was injected: {firing_before}"
    _sim(stack, "endpoint", "/_sim/endpoint",
         {"degrade": {"loss_percent": 15, "jitter_ms": 150, "delay_ms": 400, "frame_rate": 3}})
    for name in CALL_QUALITY:
        alerts = _wait_for(f"{name} at the ticket receiver",
                           lambda name=name: stack.webhook.firing("ticket", name, source="endpoint"))
        alert = alerts[0]
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["runbook_url"].endswith(f"#{name.lower()}")
        assert alert["labels"]["target"] in alert["annotations"]["description"]
    assert not any(a["labels"]["alertname"] in CALL_QUALITY for a in stack.webhook.alerts("page")), \
        "warnings must not page"
    _sim(stack, "endpoint", "/_sim/endpoint", {"degrade": {}})


@dataclass(frozen=True)
class VendorFault:
    """A simulator knob and the alert it must raise, at the receiver its severity routes to."""

    kind: str
    knob: str
    body: dict[str, Any]
    alertname: str
    receiver: str
    labels: dict[str, str]
    undo: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.alertname}"


VENDOR_FAULTS = (
    VendorFault("polyv", "/_sim/polyv", {"channel": "3880533", "live": False}, "PolyvChannelLiveInterrupted",
                "ticket", {"channel": "3880533"}, undo={"channel": "3880533", "live": True}),
    VendorFault("zego", "/_sim/zego", {"task": "DemoPausedTask03", "status": "ended_abnormally"},
                "ZegoRecordingEndedAbnormally", "ticket", {"task": "DemoPausedTask03"}),
    VendorFault("zego", "/_sim/zego", {"task": "DemoMixedRecord1", "file_status": "upload_failed"},
                "ZegoRecordingUploadFailed", "ticket", {"task": "DemoMixedRecord1"}),
    VendorFault("avd", "/_sim/avd", {"offline_servers": ["box2"]}, "AvdMediaServerOffline", "ticket",
                {"server": "box2"}, undo={"offline_servers": []}),
    VendorFault("avd", "/_sim/avd", {"no_media_server": True}, "AvdNoMediaServerOnline", "page", {},
                undo={"no_media_server": False}),
)


@pytest.mark.parametrize("fault", VENDOR_FAULTS, ids=[f.id for f in VENDOR_FAULTS])
def test_vendor_fault_reaches_its_receiver(demo_in_calls: Stack, fault: VendorFault) -> None:
    stack = demo_in_calls
    if fault.kind not in REGISTRY or fault.kind not in stack.simulators:
        pytest.skip(f"source {fault.kind} not in monitord.sources.REGISTRY / the demo")
    labels = {"source": fault.kind, **fault.labels}

    def firing_in_prometheus() -> bool:
        status, body = _http("GET", f"{stack.prometheus}/api/v1/alerts")
        return status == 200 and any(
            a["state"] == "firing" and a["labels"].get("alertname") == fault.alertname
            and all(a["labels"].get(k) == v for k, v in labels.items()) for a in body["data"]["alerts"])

    assert not firing_in_prometheus(), f"{fault.alertname}{labels} fires before the fault is injected"
    _sim(stack, fault.kind, fault.knob, fault.body)
    try:
        alerts = _wait_for(f"{fault.alertname}{labels} at the {fault.receiver} receiver",
                           lambda: stack.webhook.firing(fault.receiver, fault.alertname, **labels))
        annotations = alerts[0]["annotations"]
        assert annotations["runbook_url"].endswith(f"#{fault.alertname.lower()}")
        assert "{{" not in annotations["description"] and "<no value>" not in annotations["description"]
    finally:
        if fault.undo is not None:
            _sim(stack, fault.kind, fault.knob, fault.undo)


def test_unreachable_vendors_page_and_inhibit_their_target_alerts(demo_in_calls: Stack) -> None:
    """Every simulator of the demo answers 503: each registered source's MonitordSourceDown
    pages, and its per-target MonitordTargetDown warnings are inhibited by it."""
    stack = demo_in_calls
    kinds = sorted(set(stack.simulators) & set(REGISTRY))
    assert kinds, "the demo runs no simulator of a registered source"
    for kind in kinds:
        _sim(stack, kind, "/_sim/faults", {"status": 503})
    try:
        for kind in kinds:
            alerts = _wait_for(f"MonitordSourceDown{{source={kind}}} at the page receiver",
                               lambda kind=kind: stack.webhook.firing("page", "MonitordSourceDown", source=kind),
                               deadline=OUTAGE_DEADLINE)
            assert alerts[0]["labels"]["severity"] == "critical"

        def target_down_inhibited(kind: str) -> bool:
            params = urllib.parse.urlencode({"filter": 'alertname="MonitordTargetDown"'})
            status, body = _http("GET", f"{stack.alertmanager}/api/v2/alerts?{params}")
            ours = [a for a in body if a["labels"].get("source") == kind] if status == 200 else []
            return bool(ours) and all(a["status"]["inhibitedBy"] for a in ours)

        for kind in kinds:
            _wait_for(f"every MonitordTargetDown of source {kind} inhibited by MonitordSourceDown",
                      lambda kind=kind: target_down_inhibited(kind))
    finally:
        for kind in kinds:
            _http("DELETE", f"{stack.simulators[kind]}/_sim/faults")
