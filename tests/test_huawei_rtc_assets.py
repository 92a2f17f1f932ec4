"""The huawei_rtc dashboard and alert rules against the metrics the source really exposes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import parse_exposition, promtool

from monitord.simulators import huawei_rtc as sim

ROOT = Path(__file__).parent.parent
DASHBOARD = ROOT / "dashboards" / "huawei_rtc.json"
RULES = ROOT / "alerts" / "huawei_rtc.rules.yml"
RULE_TESTS = ROOT / "alerts" / "huawei_rtc.rules.test.yml"
PROMQL_WORDS = {"time", "sum", "max", "min", "by", "rate", "increase", "label_values", "humanizePercentage"}


def _exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # selectors
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\((?:[a-z_]+,\s*)*[a-z_]+\)\s*\(", "(", expr)  # by (a, b) (
    return {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if w not in PROMQL_WORDS}


def test_dashboard_follows_the_conventions() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "monitord-huawei-rtc"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    text = DASHBOARD.read_text()
    assert "DS_PROMETHEUS" not in text
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["description"] and panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            if "rate(" in t["expr"] or "increase(" in t["expr"]:
                assert "[$__rate_interval]" in t["expr"], t["expr"]


async def test_every_dashboard_and_alert_metric_is_exposed(start_sim, make_daemon, clock) -> None:
    """Poll the simulator with every feature on, then check each metric name a panel or rule
    uses is in the exposition, with the labels the panel selects or groups by."""
    from aiohttp.test_utils import TestClient, TestServer

    from monitord.web import build_app

    url, _ = await start_sim(sim, clock=clock, budget_per_minute=100)
    target = {
        "name": "rtc",
        "source": "huawei_rtc",
        "endpoint": url,
        "project_id": sim.PROJECT_ID,
        "ak": sim.ACCESS_KEY,
        "sk": sim.SECRET_KEY,
        "apps": [{"id": sim.APPS[0]}],
        "interval": "60s",
        "timeout": "10s",
        "budget_per_minute": 100,
        "dimensions": ["region"],
        "assume_budget_spent_at_start": False,
        "callback_secret": "assets-secret",
    }
    daemon = make_daemon([target], clock=clock)
    client = TestClient(TestServer(build_app(daemon), host="127.0.0.1"))
    await client.start_server()
    try:
        event = {"event_type": "RECORD_FILE_COMPLETE", "app_id": sim.APPS[0], "record_duration": 60}
        r = await client.post("/api/v1/targets/rtc/record-events?secret=assets-secret", json=event)
        assert r.status == 200
        assert (await daemon.poll_all_once())["rtc"].ok
    finally:
        await client.close()
    series = parse_exposition(daemon.store.render().decode())
    exposed: dict[str, set[str]] = {}
    for name, labels in series:
        exposed.setdefault(name, set()).update(k for k, _ in labels)
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    for expr in [*_exprs(), *(r["expr"] for r in rules)]:
        names = _metric_names(expr)
        assert names, expr
        for name in names:
            assert name in exposed, f"{name} (in {expr!r}) is not exposed"
            used = set(re.findall(r"([a-z_]+)\s*=~?\s*\"", expr)) | set(
                w for group in re.findall(r"by \(([^)]*)\)", expr) for w in re.split(r",\s*", group)
            )
            assert used <= exposed[name] | {"__name__"}, f"{expr!r}: labels {used - exposed[name]} missing"


def test_every_alert_links_a_runbook_heading_and_has_tests() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"][0]["alert_rule_test"]
    headings = {
        line[3:].strip().lower()
        for line in (ROOT / "docs" / "runbooks.md").read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in rules:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        assert rule["annotations"]["runbook_url"].split("#", 1)[1] in headings
        cases = [t for t in tests if t["alertname"] == rule["alert"]]
        assert any(t["exp_alerts"] for t in cases) and any(not t["exp_alerts"] for t in cases), rule["alert"]


async def test_rules_pass_promtool_check_and_unit_tests() -> None:
    tool = promtool()
    if tool is None:
        pytest.skip("promtool not installed")
    for args in (["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]):
        result = await asyncio.to_thread(
            subprocess.run, [tool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
