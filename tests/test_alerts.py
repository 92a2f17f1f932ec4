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
