"""End to end on real binaries, every timing scaled by one factor: `monitord demo --time-scale F`
(the exporter's and the simulators' intervals, holds, retention, budgets and timelines) ->
Prometheus (the shipped scrape config with scrape and evaluation every 15/F s, every rule file of
alerts/ with each `for:`, range, offset, age threshold and rate threshold divided by F, rewritten
mechanically from the shipped files by benchmarks/alert_matrix.scaled_rules) -> Alertmanager (the
shipped routes, inhibitions and receivers, group_wait / group_interval / repeat_interval divided
by F) -> a webhook receiver. The fault table is the one benchmarks/alert_matrix.py runs at
production timings (its figures are in docs/alerts.md); this test runs the part of it that fits
in CI, at F = E2E_SCALE.

1. Every panel of every dashboard in dashboards/, with its template variables filled in as
   Grafana fills them on load, returns data (panels of a source not in
   monitord.sources.REGISTRY are skipped with that reason).
2. Every fault of E2E_FAULTS reaches the receiver its alert routes to within twice its scaled
   budget; rows expecting nothing get nothing; inhibited alerts are marked inhibited by
   Alertmanager; and no notification arrives that no fault explains.

How this fails on each defect issue 9 found with production timings:
- SparkRTC answering 503 while budget pacing makes polls without vendor requests count as
  successes: monitord_target_up flaps, MonitordSourceDown (for: 7m, scaled) never completes
  its hold, and the vendor-outage row for huawei_rtc gets no page.
- A Zego task that ended abnormally published for one poll and then dropped: the state lives
  for one 15/F s poll, shorter than a scrape plus an evaluation; when a scrape catches it, the
  alert resolves before group_wait and Alertmanager never notifies a firing alert, so the
  zego-abnormal rows get nothing. A second task failing within group_interval of the first
  (zego-abnormal-2) must notify too, and an upload failing after its task ended
  (zego-upload-after-end) must be seen at all.
- Counters born at a non-zero value: the state-file row makes the demo's state file unwritable;
  a `monitord_state_errors_total` born at 1 under an increase()-only rule never fires.
- A bad call shorter than five minutes (call-bad-90s, jitter 45 ms for 90 s, then the call ends)
  gets no ticket from `for: 5m` rules or a 100 ms jitter threshold.
- Noise: a Polyv channel whose class ended on schedule, or one without a schedule, going off
  air must raise nothing (polyv-ended-on-schedule, polyv-unscheduled-off-air), and "no AVD media server online" must inhibit the per-server
  tickets (avd-no-media-server's rows for box1 / box3 expect nothing and the inhibition is
  checked in Alertmanager's API); likewise a full AVD licence pages and inhibits the "nearly
  full" ticket (avd-licence-full), a SIP gateway restarting for 2 minutes raises nothing while
  one that stays down tickets (avd-sip-gateway-down), and a watched recording that stops
  tickets (avd-recording-stopped).
- Scaling Prometheus and Alertmanager but not the exporter (the old test) would make every
  exporter timing F times too slow for the rules: the held states, the hold of up, the budget
  pacing and the simulators' timelines all come from the same factor here.

Needs /usr/bin/prometheus and /usr/bin/prometheus-alertmanager: skipped without them, except
under MONITORD_REQUIRE_E2E=1 (set by .ci/run), where their absence is a failure.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monitoring import (
    Panel,
    dashboard_files,
    load_json,
    panels,
    parse_label_values,
    require_binary,
    substitute,
    variable_query,
    variables,
)

from benchmarks import alert_matrix as matrix
from monitord.sources import REGISTRY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

E2E_SCALE = 10.0
# Production minutes the fault run may take (scaled: 15 * 60 / E2E_SCALE seconds).
E2E_MINUTES = 15.0
# Arrival within twice the scaled budget: at F = 10 one second of CPU contention on a loaded CI
# machine is ten seconds of production time. The production budgets are the matrix's to prove.
SLACK = 2.0
E2E_FAULTS = (
    "call-degraded", "call-bad-90s", "call-bad-one-poll",
    "zego-abnormal-1", "zego-abnormal-2", "zego-upload-after-end",
    "polyv-interrupted", "polyv-stalled", "polyv-ended-on-schedule", "polyv-unscheduled-off-air",
    "avd-server-offline", "avd-no-media-server",
    "avd-licence-full", "avd-sip-gateway-down", "avd-recording-stopped",
    "state-file-unwritable", "vendor-outage",
)

# The SparkRTC simulator divides its request budget's minute by the time scale but keeps the
# vendor's per-minute data grid at 60 s, so at F = 10 every published minute looks ten times
# later than it is and this rule (a vendor-data age threshold, scaled like every other) fires
# in every demo. It is proven at production timings by the matrix (docs/alerts.md).
UNSCALED_VENDOR_TIMELINES = frozenset({"HuaweiRtcPublishingLate"})

# What Grafana puts in for its built-in variables, given the provisioned datasource's
# timeInterval of 15s (deploy/grafana/provisioning/datasources/): $__rate_interval is
# max(4 x scrape interval, $__interval + scrape interval).
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600"}
DATA_DEADLINE = 90.0      # every panel has data, counted from the stack's start


# ------------------------------------------------------------------------------ the stack

class Stack:
    """The running matrix stack, with the queries the dashboard test sends like Grafana."""

    def __init__(self, running: matrix.Running) -> None:
        self.running = running
        self.matrix = running.stack
        self.prometheus = running.stack.prometheus
        self.started = time.monotonic()

    def query(self, expr: str, instant: bool) -> tuple[str, list[Any]]:
        """(error or "", result) of a PromQL query, as Grafana would send it."""
        now = time.time()
        if instant:
            params = {"query": expr, "time": f"{now:.3f}"}
            path = "query"
        else:
            params = {"query": expr, "start": f"{now - 60:.3f}", "end": f"{now:.3f}", "step": "5"}
            path = "query_range"
        status, body = matrix.http("GET", f"{self.prometheus}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            return f"HTTP {status}: {body}", []
        return "", body["data"]["result"]

    def label_values(self, selector: str | None, label: str) -> list[str]:
        now = time.time()
        if selector is None:
            status, body = matrix.http("GET", f"{self.prometheus}/api/v1/label/{label}/values")
            return sorted(body["data"]) if status == 200 else []
        params = urllib.parse.urlencode({"match[]": selector, "start": f"{now - 300:.3f}", "end": f"{now:.3f}"})
        status, body = matrix.http("GET", f"{self.prometheus}/api/v1/series?{params}")
        assert status == 200, f"label_values({selector}, {label}): HTTP {status}: {body}"
        return sorted({s[label] for s in body["data"] if label in s})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    faults = matrix.select(E2E_FAULTS)
    demos = tuple(d for d in matrix.DEMOS if any(f.demo == d for f in faults))
    running = matrix.start_stack(demos, E2E_SCALE, tmp_path_factory.mktemp("e2e"))
    try:
        yield Stack(running)
    finally:
        matrix.stop(running.procs, running.server)


# Simulator knobs that hold the demos' timelines in their busy state, so that what the panels
# show does not depend on the wall clock: endpoint rooms leave their calls one minute in five,
# Polyv channels go off air five minutes in thirty.
PIN_DEMO = {
    "endpoint": ("/_sim/endpoint", {"in_call": True}),
    "polyv": ("/_sim/polyv", {"live": True}),
}


@pytest.fixture(scope="module")
def demo_in_calls(stack: Stack) -> Stack:
    for demo in stack.matrix.demos:
        for kind, (path, body) in PIN_DEMO.items():
            if kind in stack.matrix.demos[demo].simulators:
                stack.matrix.knob(demo, kind, path, body)
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

def _durations(expr: str) -> list[float]:
    found = re.findall(r"\[(\w+)(?::(\w*))?\]|offset\s+(\w+)", expr)
    return sorted(matrix.parse_duration(d) for match in found for d in match if d)


def test_scaled_rules_keep_the_shipped_rules_and_scale_every_timing() -> None:
    """The rewrite is mechanical: at factor 1 the shipped file, at F every duration / F."""
    assert matrix.scale_expr(
        "(x unless last_over_time(x[1d] offset 15m)) or increase(x[15m]) > 0 and time() - y > 900 "
        "and rate(z[15m]) > 0.05 and w[5m:30s]", 10) == (
        "(x unless last_over_time(x[8640s] offset 90s)) or increase(x[90s]) > 0 "
        "and time() - y > (900) / 10 and rate(z[90s]) > 0.05 * 10 and w[30s:3s]")
    for rule_file in sorted(matrix.ALERTS.glob("*.rules.yml")):
        shipped = matrix.load_rules(rule_file)
        assert matrix.scaled_rules(rule_file, 1) == shipped
        fast = matrix.scaled_rules(rule_file, E2E_SCALE)
        for group, fast_group in zip(shipped["groups"], fast["groups"], strict=True):
            assert matrix.parse_duration(str(fast_group["interval"])) == pytest.approx(
                matrix.parse_duration(str(group.get("interval", "15s"))) / E2E_SCALE, abs=0.001), group["name"]
            for rule, fast_rule in zip(group["rules"], fast_group["rules"], strict=True):
                name = rule.get("alert", rule.get("record"))
                if "for" in rule:
                    assert matrix.parse_duration(str(fast_rule["for"])) == pytest.approx(
                        matrix.parse_duration(str(rule["for"])) / E2E_SCALE, abs=0.001), name
                assert _durations(str(fast_rule["expr"])) == pytest.approx(
                    [d / E2E_SCALE for d in _durations(str(rule["expr"]))], abs=0.001), name


def test_faults_reach_their_receivers_with_every_timing_scaled(stack: Stack) -> None:
    faults = matrix.select(E2E_FAULTS)
    rows = matrix.run(stack.matrix, faults, E2E_MINUTES, log=lambda line: None)
    table = matrix.table(rows, E2E_SCALE)
    late = [f"{r.fault.name}: {r.expect.alertname}{r.expect.labels} at {r.expect.receiver}"
            for r in rows if not r.ok(E2E_SCALE, SLACK)]
    assert not late, "rows not delivered in time (or delivered although none expected):\n" + "\n".join(late) \
        + "\n\n" + table
    extra = [n for n in matrix.unexplained(stack.matrix, faults)
             if n.labels.get("alertname") not in UNSCALED_VENDOR_TIMELINES]
    assert not extra, "notifications no fault explains:\n" + "\n".join(
        f"{n.receiver}: {n.labels}" for n in extra) + "\n\n" + table
    problems = matrix.not_inhibited(stack.matrix, faults)
    assert not problems, "\n".join(problems)
