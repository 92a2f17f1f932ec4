"""SLOs as code: alerts/slo/slos.yml -> alerts/slo.rules.yml (recording rules and burn-rate alerts).

The alerting follows the Google SRE workbook, chapter "Alerting on SLOs", section "Multiwindow,
Multi-Burn-Rate Alerts": an alert needs both a long window (the budget really is burning) and a
short one (it is still burning now, so the alert resets soon after a fix). One small definition
per SLO keeps the dozen rules each needs from drifting apart by hand.

Run `python3 -m monitord.slo` to regenerate, `python3 -m monitord.slo --check` to compare.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "alerts" / "slo" / "slos.yml"
RULES = ROOT / "alerts" / "slo.rules.yml"
RUNBOOK_BASE = "https://github.com/monitord/monitord/blob/main/docs/runbooks.md"


@dataclass(frozen=True)
class BurnCondition:
    """Alert when the error ratio exceeds burn_rate x budget on both windows."""
    burn_rate: float
    long: str
    short: str


# (alert suffix, conditions, for:) — the workbook's recommended parameters for a 30-day period.
FAST = ("ErrorBudgetBurnFast", (BurnCondition(14.4, "1h", "5m"), BurnCondition(6, "6h", "30m")), "2m")
SLOW = ("ErrorBudgetBurnSlow", (BurnCondition(1, "3d", "6h"),), "15m")
WINDOWS = ("5m", "30m", "1h", "6h", "3d")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ALERT = re.compile(r"^(?:[A-Z][a-z0-9]+)+$")
_WINDOW = re.compile(r"^\d+[smhdw]$")


@dataclass(frozen=True)
class Slo:
    name: str
    alert: str
    objective: float
    description: str
    by: tuple[str, ...]
    errors: str
    total: str
    severity: dict[str, str]
    # Fewer units than this in the long window (minutes of calls, say) never alert: one bad
    # minute at the start of a call is a 100 % error ratio, but not a burning budget.
    min_total: float = 0

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 10)


def load(path: Path = DEFINITIONS) -> tuple[str, list[Slo]]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    period = str(raw.get("period", "30d"))
    if not _WINDOW.match(period):
        raise ValueError(f"period: {period!r} is not a duration like 30d")
    slos = []
    for i, entry in enumerate(raw.get("slos") or []):
        where = f"slos[{i}]"
        name = str(entry.get("name", ""))
        if not _NAME.match(name):
            raise ValueError(f"{where}.name: {name!r} must be snake_case")
        alert = str(entry.get("alert", ""))
        if not _ALERT.match(alert):
            raise ValueError(f"{where}.alert: {alert!r} must be CamelCase")
        objective = entry.get("objective")
        if not isinstance(objective, float) or not 0 < objective < 1:
            raise ValueError(f"{where}.objective: must be a number between 0 and 1, got {objective!r}")
        for key in ("errors", "total"):
            if "{window}" not in str(entry.get(key, "")):
                raise ValueError(f"{where}.{key}: must contain {{window}}")
        severity = dict(entry.get("severity") or {})
        if set(severity) != {"fast", "slow"} or not set(severity.values()) <= {"critical", "warning"}:
            raise ValueError(f"{where}.severity: give fast and slow, each critical or warning")
        min_total = entry.get("min_total", 0)
        if not isinstance(min_total, int | float) or isinstance(min_total, bool) or min_total < 0:
            raise ValueError(f"{where}.min_total: must be a number >= 0, got {min_total!r}")
        slos.append(Slo(name, alert, objective, " ".join(str(entry.get("description", "")).split()),
                        tuple(entry.get("by") or ()), " ".join(str(entry["errors"]).split()),
                        " ".join(str(entry["total"]).split()), severity, float(min_total)))
    if len({s.name for s in slos}) != len(slos):
        raise ValueError("slos: names must be unique")
    return period, slos


def _ratio(slo: Slo, window: str) -> str:
    by = ", ".join(slo.by)
    errors = slo.errors.replace("{window}", window)
    total = slo.total.replace("{window}", window)
    return f"sum by ({by}) ({errors})\n  /\nsum by ({by}) ({total})"


def _selector(slo: Slo, window: str) -> str:
    return f'slo:sli_error:ratio_rate{window}{{slo="{slo.name}"}}'


def _alert(slo: Slo, kind: tuple[str, tuple[BurnCondition, ...], str], speed: str) -> dict[str, Any]:
    suffix, conditions, hold = kind
    by = ", ".join(slo.by)
    clauses = []
    for c in conditions:
        clause = (f"({_selector(slo, c.long)} > ({c.burn_rate:g} * {slo.budget:g})\n"
                  f" and {_selector(slo, c.short)} > ({c.burn_rate:g} * {slo.budget:g})")
        if slo.min_total:
            total = slo.total.replace("{window}", c.long)
            clause += f"\n and on ({by}) sum by ({by}) ({total}) >= {slo.min_total:g}"
        clauses.append(clause + ")")
    name = f"{slo.alert}{suffix}"
    where = " ".join(f"{label} {{{{ $labels.{label} }}}}" for label in slo.by if label != "source")
    windows = " / ".join(f"{c.long}+{c.short} at {c.burn_rate:g}x" for c in conditions)
    return {
        "alert": name,
        "expr": "\nor\n".join(clauses),
        "for": hold,
        "labels": {"severity": slo.severity[speed], "slo": slo.name},
        "annotations": {
            "summary": f"The {slo.name} SLO ({slo.objective:.2%} objective) burns its error budget "
                       f"{'fast' if speed == 'fast' else 'steadily'}.",
            "description": f"{where}: error ratio {{{{ $value | humanizePercentage }}}} over the long window "
                           f"({windows} of a {slo.budget:.2%} budget).",
            "runbook_url": f"{RUNBOOK_BASE}#{name.lower()}",
        },
    }


def rules(period: str, slos: list[Slo]) -> dict[str, Any]:
    groups = []
    for slo in slos:
        records: list[dict[str, Any]] = [
            {"record": f"slo:sli_error:ratio_rate{w}", "expr": _ratio(slo, w), "labels": {"slo": slo.name}}
            for w in WINDOWS
        ]
        groups.append({"name": f"slo-{slo.name}", "rules": [
            *records, _alert(slo, FAST, "fast"), _alert(slo, SLOW, "slow")]})
        # The period's ratio reads a month of samples: every 5 minutes is often enough for a
        # "budget left" panel.
        by = ", ".join(slo.by)
        groups.append({"name": f"slo-{slo.name}-budget", "interval": "5m", "rules": [
            {"record": f"slo:sli_error:ratio_rate{period}", "expr": _ratio(slo, period), "labels": {"slo": slo.name}},
            {"record": "slo:error_budget_remaining:ratio",
             "expr": f"1 - {_selector(slo, period)} / {slo.budget:g}",
             "labels": {"slo": slo.name}},
            {"record": "slo:objective:ratio",
             "expr": f"{slo.objective:g} + 0 * count by ({by}) ({_selector(slo, period)})",
             "labels": {"slo": slo.name}},
        ]})
    return {"groups": groups}


class _Literal(str):
    """A multi-line PromQL expression, written as a YAML block so the rule file stays readable."""


class _Dumper(yaml.SafeDumper):
    pass


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


_Dumper.add_representer(_Literal, _literal)


def render(period: str, slos: list[Slo]) -> str:
    data = rules(period, slos)
    for group in data["groups"]:
        for rule in group["rules"]:
            if "\n" in rule["expr"]:
                rule["expr"] = _Literal(rule["expr"] + "\n")
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    header = ("# GENERATED by `python3 -m monitord.slo` from alerts/slo/slos.yml: edit that file, not this one.\n"
              "# Error ratios per window, error budget left, and multiwindow multi-burn-rate alerts.\n")
    return header + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m monitord.slo", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if alerts/slo.rules.yml is out of date")
    args = parser.parse_args(argv)
    text = render(*load())
    if args.check:
        current = RULES.read_text(encoding="utf-8") if RULES.exists() else ""
        if current != text:
            print(f"{RULES} is out of date: run python3 -m monitord.slo", file=sys.stderr)
            return 1
        return 0
    RULES.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
