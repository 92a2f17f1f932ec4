"""Every alert rule file in alerts/ is valid for promtool, unit-tested (each alert fires in one
test and stays silent in another), labelled and annotated by the conventions of design §4, and
linked to an existing runbook section. Runs over whatever files are there, so a new source's
rules are covered without touching this file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from monitoring import (
    ALERTS,
    KNOWN_KINDS,
    Alert,
    all_alerts,
    catalog,
    github_anchor,
    load_yaml,
    metric_names,
    named_sources,
    require_binary,
    rule_files,
    rule_test_files,
    runbook_base_url,
    runbook_sections,
)

from monitord.sources import REGISTRY

RULES = rule_files()
TESTS = rule_test_files()
ALERTS_ALL = all_alerts()
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _seconds(text: str) -> int:
    match = DURATION.match(text)
    assert match and text, f"duration {text!r}"
    h, m, s = (int(g or 0) for g in match.groups())
    return h * 3600 + m * 60 + s


def test_there_are_rules_for_the_exporter_and_call_quality() -> None:
    assert {"monitord.rules.yml", "calls.rules.yml"} <= {p.name for p in RULES}
    assert ALERTS_ALL


@pytest.mark.parametrize("path", RULES, ids=[p.name for p in RULES])
def test_promtool_check_rules(path: Path) -> None:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # Lint warnings (e.g. a duplicate rule) are printed even on success.
    assert "WARNING" not in (result.stdout + result.stderr).upper(), result.stdout + result.stderr


@pytest.mark.parametrize("path", TESTS, ids=[p.name for p in TESTS])
def test_promtool_test_rules(path: Path) -> None:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "test", "rules", path.name], capture_output=True, text=True,
                            timeout=120, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_rule_file_has_its_unit_test_file() -> None:
    problems = []
    for rules in RULES:
        name = rules.name.removesuffix(".rules.yml")
        test = ALERTS / "tests" / f"{name}.test.yml"
        if not test.exists():
            problems.append(f"{rules.name}: no {test.relative_to(ALERTS.parent)}")
            continue
        listed = [(test.parent / f).resolve() for f in load_yaml(test).get("rule_files", [])]
        if rules.resolve() not in listed:
            problems.append(f"{test.name} does not load {rules.name}")
    for test in TESTS:
        for f in load_yaml(test).get("rule_files", []):
            if not (test.parent / f).is_file():
                problems.append(f"{test.name}: rule file {f} does not exist")
    assert not problems, "\n".join(problems)


def _unit_cases() -> dict[str, dict[str, int]]:
    """alertname -> {"firing": n, "silent": n} over every promtool unit test file."""
    cases: dict[str, dict[str, int]] = {}
    for path in TESTS:
        for test in load_yaml(path).get("tests", []):
            for case in test.get("alert_rule_test", []):
                kind = "firing" if case.get("exp_alerts") else "silent"
                counts = cases.setdefault(case["alertname"], {"firing": 0, "silent": 0})
                counts[kind] += 1
    return cases


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    cases = _unit_cases()
    problems = []
    for alert in ALERTS_ALL:
        counts = cases.get(alert.name, {"firing": 0, "silent": 0})
        for kind in ("firing", "silent"):
            if not counts[kind]:
                problems.append(f"{alert.file.name}: {alert.name} has no {kind} test case")
    known = {a.name for a in ALERTS_ALL}
    problems += [f"unit tests name unknown alert {name}" for name in sorted(set(cases) - known)]
    assert not problems, "\n".join(problems)


def test_alert_names_are_camel_case_and_unique() -> None:
    seen: dict[str, str] = {}
    problems = []
    for alert in ALERTS_ALL:
        if not re.fullmatch(r"(?:[A-Z][a-z0-9]+)+", alert.name):
            problems.append(f"{alert.name}: not CamelCase")
        if alert.name in seen:
            problems.append(f"{alert.name}: in {seen[alert.name]} and {alert.file.name}")
        seen[alert.name] = alert.file.name
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("alert", ALERTS_ALL, ids=[a.name for a in ALERTS_ALL])
def test_alert_labels_and_annotations(alert: Alert) -> None:
    rule = alert.rule
    labels = rule.get("labels") or {}
    annotations = rule.get("annotations") or {}
    assert labels.get("severity") in SEVERITIES, f"severity {labels.get('severity')!r}"
    summary = annotations.get("summary", "")
    assert summary and "{{" not in summary, "summary: a static sentence (Alertmanager groups by it)"
    description = annotations.get("description", "")
    assert "{{" in description and "$labels" in description, "description: templated with $labels"
    # An explicit, production-sized hold: flapping pages are worse than a minute's delay.
    assert "for" in rule, "no for: (write for: 0m when an alert must fire at once)"
    assert _seconds(str(rule["for"])) <= 3600
    assert set(annotations) <= {"summary", "description", "runbook_url"}, sorted(annotations)


@pytest.mark.parametrize("alert", ALERTS_ALL, ids=[a.name for a in ALERTS_ALL])
def test_runbook_url_points_at_a_runbook_section(alert: Alert) -> None:
    base = runbook_base_url()
    url = (alert.rule.get("annotations") or {}).get("runbook_url")
    assert url == f"{base}#{alert.name.lower()}"
    sections = runbook_sections()
    assert alert.name in sections, f"docs/runbooks.md has no '### {alert.name}'"
    assert github_anchor(alert.name) == alert.name.lower()
    text = sections[alert.name]
    assert "**What to check.**" in text and "**What to do.**" in text, \
        f"the runbook of {alert.name} must say what to check and what to do"


def test_every_runbook_section_belongs_to_an_alert() -> None:
    orphans = set(runbook_sections()) - {a.name for a in ALERTS_ALL}
    assert not orphans, f"runbook sections without an alert: {sorted(orphans)}"


@pytest.mark.parametrize("alert", ALERTS_ALL, ids=[a.name for a in ALERTS_ALL])
def test_alert_uses_metrics_the_code_emits(alert: Alert) -> None:
    expr = str(alert.rule["expr"])
    stem = alert.file.name.removesuffix(".rules.yml")
    kinds = named_sources(expr) | ({stem} if stem in KNOWN_KINDS else set())
    assert kinds <= KNOWN_KINDS, f"unknown source(s) {sorted(kinds - KNOWN_KINDS)}"
    absent = kinds - set(REGISTRY)
    if absent:
        pytest.skip(f"rules of source(s) {sorted(absent)} not in monitord.sources.REGISTRY yet")
    known = catalog()
    unknown = sorted(m for m in metric_names(expr) if m not in known)
    assert not unknown, f"{alert.name}: metrics no registered source emits: {unknown}"


# --------------------------------------------------- counters, as the exporter produces them

_COUNTER_FUNCS = re.compile(r"\b(?:increase|rate|irate|resets)\(\s*([a-zA-Z_:][\w:]*_total)\b")
_VALUE_TOKEN = re.compile(r"^(?P<start>_|stale|-?[0-9.]+(?:e[+-]?\d+)?)(?:(?P<op>[+-])[0-9.e]+)?(?:x(?P<n>\d+))?$")


def first_value(values: str) -> float | None:
    """The first sample of a promtool series notation ('_x3 1+2x10' -> 1.0), None if never set."""
    for token in str(values).split():
        match = _VALUE_TOKEN.match(token)
        assert match, f"series notation {token!r} not understood"
        if match.group("start") not in ("_", "stale"):
            return float(match.group("start"))
    return None


def test_first_value_reads_promtool_notation() -> None:
    assert first_value("_x3 1+6x57") == 1.0
    assert first_value("0 0 0 1x60") == 0.0
    assert first_value("_ _ stale") is None
    assert first_value("-20+60x14") == -20.0


def _counter_alerts() -> dict[str, set[str]]:
    """alertname -> the counters its expression applies increase()/rate()/resets() to."""
    return {a.name: set(_COUNTER_FUNCS.findall(str(a.rule["expr"]))) for a in ALERTS_ALL
            if _COUNTER_FUNCS.search(str(a.rule["expr"]))}


def test_counter_alerts_fire_on_counters_born_at_their_first_event() -> None:
    """A label set not known in advance (a new reason, factor or field; a counter coming back
    after its target was down) is born at its first event: increase() over a window that
    starts before the series sees nothing. Every counter alert must have a firing unit test
    whose input includes such a series (first sample > 0 after no sample), so a rule that
    misses the first events cannot pass."""
    born: dict[str, bool] = dict.fromkeys(_counter_alerts(), False)
    counters = _counter_alerts()
    for path in TESTS:
        for test in load_yaml(path).get("tests", []):
            fired = {c["alertname"] for c in test.get("alert_rule_test", []) if c.get("exp_alerts")}
            for series in test.get("input_series", []):
                name = str(series["series"]).split("{", 1)[0]
                values = str(series["values"])
                start = first_value(values)
                if start is None or start <= 0 or not values.split()[0].startswith("_"):
                    continue
                for alertname in fired & set(counters):
                    if name in counters[alertname]:
                        born[alertname] = True
    missing = sorted(name for name, ok in born.items() if not ok)
    assert not missing, f"counter alerts without a firing test on a counter born at its first event: {missing}"


def test_counter_alerts_count_the_birth_of_a_series() -> None:
    """increase() alone ignores the value a series is born with: every rule that asks "were
    there events" on a counter also counts series unseen before its window."""
    problems = []
    for name, counters in _counter_alerts().items():
        expr = str(next(a for a in ALERTS_ALL if a.name == name).rule["expr"])
        if "resets(" in expr or re.search(r"\brate\(", expr):
            continue  # restarts and sustained rates: a first event alone is not the condition
        for counter in counters:
            if not re.search(rf"{re.escape(counter)}[^\n]*\bunless\s+last_over_time\(\s*{re.escape(counter)}", expr):
                problems.append(f"{name}: {counter} has no 'unless last_over_time(... offset W)' branch")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------- routing

AM_CONFIG = ALERTS.parent / "deploy" / "alertmanager" / "alertmanager.yml"
RECEIVER_OF = {"critical": "page", "warning": "ticket", "info": "null"}


@pytest.mark.parametrize("alert", ALERTS_ALL, ids=[a.name for a in ALERTS_ALL])
def test_alert_routes_to_the_receiver_of_its_severity(alert: Alert) -> None:
    amtool = require_binary("amtool")
    severity = (alert.rule.get("labels") or {})["severity"]
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}", f"--verify.receivers={RECEIVER_OF[severity]}",
         f"alertname={alert.name}", f"severity={severity}", "source=x", "target=y", "task=t"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_recording_task_is_its_own_alertmanager_group() -> None:
    """Two tasks failing minutes apart must both notify after group_wait: in one group the
    second would wait for group_interval (5 minutes), over the 3-minute budget."""
    config = load_yaml(AM_CONFIG)
    zego = [a.name for a in ALERTS_ALL if a.file.name == "zego.rules.yml" and a.name.startswith("ZegoRecording")
            and (a.rule.get("labels") or {}).get("severity") != "info"]
    assert zego
    routes = [r for r in config["route"]["routes"] if any("ZegoRecording" in m for m in r.get("matchers", []))]
    assert routes and "task" in routes[0]["group_by"], routes
    for name in zego:
        assert re.fullmatch(r"ZegoRecording.+", name)
    # It must come before the catch-all warning route (Alertmanager takes the first match).
    order = [r.get("matchers") for r in config["route"]["routes"]]
    assert order.index(routes[0]["matchers"]) < order.index(['severity="warning"'])


def test_no_media_server_inhibits_the_per_server_offline_alerts() -> None:
    config = load_yaml(AM_CONFIG)
    rules = [r for r in config["inhibit_rules"] if 'alertname="AvdNoMediaServerOnline"' in r["source_matchers"]]
    assert rules and rules[0]["target_matchers"] == ['alertname="AvdMediaServerOffline"']
    assert set(rules[0]["equal"]) == {"instance", "source", "target"}


# --------------------------------------------------------------------------- docs/alerts.md

ALERTS_DOC = ALERTS.parent / "docs" / "alerts.md"


def test_every_alert_has_its_purpose_in_docs_alerts_md() -> None:
    rows = re.findall(r"^\| (\w+) \| (critical|warning|info)[^|]*\| (\w+) \|", ALERTS_DOC.read_text(encoding="utf-8"),
                      re.MULTILINE)
    documented = {name: (severity, hold) for name, severity, hold in rows}
    problems = []
    for alert in ALERTS_ALL:
        if alert.name not in documented:
            problems.append(f"{alert.name}: no row in docs/alerts.md")
            continue
        severity, hold = documented[alert.name]
        if severity != alert.rule["labels"]["severity"] or _seconds(hold) != _seconds(str(alert.rule["for"])):
            problems.append(f"{alert.name}: docs/alerts.md says {severity} {hold}, the rule {alert.rule['labels']['severity']}"
                            f" {alert.rule['for']}")
    problems += [f"docs/alerts.md lists unknown alert {n}" for n in sorted(set(documented) - {a.name for a in ALERTS_ALL})]
    assert not problems, "\n".join(problems)


def test_docs_alerts_md_shows_a_matrix_run_of_every_fault() -> None:
    from benchmarks import alert_matrix

    text = ALERTS_DOC.read_text(encoding="utf-8")
    results = text.split("## Fault matrix", 1)[-1]
    shown = set(re.findall(r"^\| ([a-z0-9-]+) \|", results, re.MULTILINE))
    missing = sorted({f.name for f in alert_matrix.FAULTS} - shown)
    assert not missing, f"faults of benchmarks/alert_matrix.py without a row in docs/alerts.md: {missing}"
