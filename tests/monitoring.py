"""What the dashboard, alert and end-to-end tests share: where the files are, which metrics the
code can emit, and how a Grafana panel is tied to the sources it shows.

A panel belongs to the sources it names: a `source="<kind>"` (or `source=~"a|b"`) matcher in
one of its queries, or a `source:<kind>` tag on its dashboard. A panel that names no source may
only use metrics that some registered source (or the exporter itself) declares. A panel that
names a source missing from `monitord.sources.REGISTRY` (a source still being built on another
branch) cannot be checked against the code or a running demo; the tests skip exactly those
panels and say why, never the panels of registered sources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from monitord import process, selfmetrics
from monitord.simulators import PORT_OFFSETS
from monitord.sources import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
ALERTS = ROOT / "alerts"
ALERT_TESTS = ALERTS / "tests"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
DEPLOY = ROOT / "deploy"

# Every source kind the project plans; a panel may name one of these before its code is merged.
KNOWN_KINDS = frozenset(PORT_OFFSETS)


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def rule_files() -> list[Path]:
    return sorted(ALERTS.glob("*.rules.yml"))


def rule_test_files() -> list[Path]:
    return sorted(ALERT_TESTS.glob("*.test.yml"))


def load_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a JSON object"
    return data


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------- metric catalog

def catalog() -> dict[str, set[str]]:
    """Sample name (with _total / _info) -> the source kinds that emit it ("monitord" for the
    exporter's own metrics)."""
    owners: dict[str, set[str]] = {}
    tables: list[tuple[str, Any]] = [("monitord", m) for m in (*selfmetrics.ALL, *process.RUNTIME)]
    tables += [(kind, m) for kind, cls in REGISTRY.items() for m in cls.metrics]
    for owner, metric in tables:
        if metric.type == "histogram":
            samples = [f"{metric.name}_{suffix}" for suffix in ("bucket", "count", "sum")]
        else:
            samples = [metric.sample_name]
        for sample in samples:
            owners.setdefault(sample, set()).add(owner)
    # Prometheus' own series for the scrape of monitord.
    for name in ("up", "scrape_duration_seconds", "scrape_samples_scraped"):
        owners.setdefault(name, set()).add("prometheus")
    # Series our own recording rules write (alerts/quality.rules.yml, alerts/slo.rules.yml).
    for name in recorded_names():
        owners.setdefault(name, set()).add("rules")
    return owners


def recording_rules() -> list[dict[str, Any]]:
    return [rule for path in rule_files() for group in load_yaml(path).get("groups", [])
            for rule in group.get("rules", []) if "record" in rule]


def recorded_names() -> set[str]:
    return {str(rule["record"]) for rule in recording_rules()}


# ---------------------------------------------------------------------------------- PromQL bits

_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan", "atan2", "start", "end",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w$:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_SOURCE_MATCHER = re.compile(r'\bsource\s*(=~|=)\s*"([^"]*)"')


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (a lexical scan, enough for dashboard and rule text)."""
    text = _STRING.sub('""', _BRACES.sub("{}", expr))
    text = _BRACKETS.sub("", text)
    text = _GROUPING.sub("", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    names = set()
    for name in _IDENT.findall(text):
        if name.lower() not in _KEYWORDS and not re.fullmatch(r"\d+\w*", name):
            names.add(name)
    return names


def named_sources(expr: str) -> set[str]:
    """Source kinds an expression names in a source matcher (regex alternatives split)."""
    kinds: set[str] = set()
    for op, value in _SOURCE_MATCHER.findall(expr):
        parts = value.split("|") if op == "=~" else [value]
        kinds.update(p for p in parts if re.fullmatch(r"[a-z_][a-z0-9_]*", p))
    return kinds


def rate_ranges(expr: str) -> list[tuple[str, str]]:
    """(function, range) of every rate-like call: rate(x[5m]) -> ("rate", "5m")."""
    return re.findall(r"\b(rate|irate|increase|delta|idelta)\s*\(\s*[^\[\]]*?\[([^\]]*)\]", expr)


# ---------------------------------------------------------------------------------- dashboards

@dataclass
class Panel:
    dashboard: str
    panel: dict[str, Any]
    tag_sources: set[str]

    @property
    def title(self) -> str:
        return str(self.panel.get("title", "?"))

    @property
    def targets(self) -> list[dict[str, Any]]:
        return list(self.panel.get("targets") or [])

    @property
    def exprs(self) -> list[str]:
        return [str(t.get("expr", "")) for t in self.targets if not t.get("hide")]

    @property
    def sources(self) -> set[str]:
        kinds = set(self.tag_sources)
        for expr in self.exprs:
            kinds |= named_sources(expr)
        return kinds

    def absent_sources(self) -> set[str]:
        return self.sources - set(REGISTRY)

    def __str__(self) -> str:
        return f"{self.dashboard}: panel {self.panel.get('id')} {self.title!r}"


def tag_sources(dashboard: dict[str, Any]) -> set[str]:
    return {t.split(":", 1)[1] for t in dashboard.get("tags", []) if isinstance(t, str) and t.startswith("source:")}


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels") or [])


def panels(path: Path) -> list[Panel]:
    dashboard = load_json(path)
    tags = tag_sources(dashboard)
    return [Panel(path.name, p, tags) for p in walk_panels(dashboard.get("panels") or []) if p.get("type") != "row"]


def variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list((dashboard.get("templating") or {}).get("list") or [])


def variable_query(var: dict[str, Any]) -> str:
    query = var.get("query")
    if isinstance(query, dict):
        query = query.get("query", "")
    return str(query or "")


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>[a-zA-Z_]\w*)\s*\)\s*$")


def parse_label_values(query: str) -> tuple[str | None, str] | None:
    match = _LABEL_VALUES.match(query)
    if not match:
        return None
    return match.group("selector"), match.group("label")


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace $name, ${name} and ${name:regex} as Grafana does for a Prometheus query."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", repl, text)


# --------------------------------------------------------------------------------- alert rules

@dataclass
class Alert:
    file: Path
    group: str
    rule: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.rule["alert"])


def alerts(path: Path) -> list[Alert]:
    doc = load_yaml(path) or {}
    return [Alert(path, g.get("name", "?"), r) for g in doc.get("groups", []) for r in g.get("rules", [])
            if "alert" in r]


def all_alerts() -> list[Alert]:
    return [a for path in rule_files() for a in alerts(path)]


def runbook_base_url() -> str:
    """The one place the runbook base URL lives: the `Runbook base URL:` line of docs/runbooks.md."""
    match = re.search(r"^Runbook base URL: <(https?://[^>]+)>", RUNBOOKS.read_text(encoding="utf-8"), re.M)
    assert match, f"{RUNBOOKS} must declare 'Runbook base URL: <https://...>'"
    return match.group(1)


def runbook_sections() -> dict[str, str]:
    """### headings of docs/runbooks.md -> their text (up to the next heading)."""
    sections: dict[str, str] = {}
    current: str | None = None
    for line in RUNBOOKS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            current = line[4:].strip() if line.startswith("### ") else None
            if current is not None:
                sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


# ------------------------------------------------------------------------------ external tools

def require_binary(name: str) -> str:
    """Path of a Prometheus tool; skip the test when missing, but fail in CI, where `.ci/run`
    installs the Debian packages and sets MONITORD_REQUIRE_E2E=1."""
    import os
    import shutil

    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed (Debian packages prometheus / prometheus-alertmanager)"
        if os.environ.get("MONITORD_REQUIRE_E2E") == "1":
            pytest.fail(f"{message}, but MONITORD_REQUIRE_E2E=1")
        pytest.skip(message)
    return path
