"""The call-quality model and the SLOs: the generated rule file matches its definition, the
definitions are checked, and every recording rule reads only series that exist (metrics the code
emits, or series an earlier recording rule writes). The numbers themselves are proven by promtool
unit tests (alerts/tests/quality.test.yml, slo.test.yml), run by tests/test_alerts.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from monitoring import ALERTS, catalog, metric_names, recording_rules

from monitord import slo


def test_generated_slo_rules_are_up_to_date() -> None:
    assert slo.main(["--check"]) == 0, "alerts/slo.rules.yml is stale: run python3 -m monitord.slo"


def test_generation_is_deterministic_and_names_every_window() -> None:
    period, slos = slo.load()
    text = slo.render(period, slos)
    assert text == slo.render(*slo.load())
    records = {r["record"] for g in yaml.safe_load(text)["groups"] for r in g["rules"] if "record" in r}
    needed = {f"slo:sli_error:ratio_rate{w}" for c in (*slo.FAST[1], *slo.SLOW[1]) for w in (c.long, c.short)}
    assert needed <= records, "every window an alert reads must be recorded"
    assert f"slo:sli_error:ratio_rate{period}" in records


@pytest.mark.parametrize(("patch", "message"), [
    ({"name": "Call-Minutes"}, "slos[0].name"),
    ({"alert": "rtc_calls"}, "slos[0].alert"),
    ({"objective": 99}, "slos[0].objective"),
    ({"objective": 1.0}, "slos[0].objective"),
    ({"errors": "sum(x)"}, "slos[0].errors: must contain {window}"),
    ({"total": "count(x)"}, "slos[0].total: must contain {window}"),
    ({"severity": {"fast": "page"}}, "slos[0].severity"),
    ({"min_total": -1}, "slos[0].min_total"),
])
def test_bad_definitions_are_refused_naming_the_key(tmp_path: Path, patch: dict[str, object], message: str) -> None:
    good = {"name": "x", "alert": "RtcExample", "objective": 0.99, "by": ["target"],
            "errors": "sum_over_time(a[{window}])", "total": "count_over_time(a[{window}])",
            "severity": {"fast": "critical", "slow": "warning"}}
    path = tmp_path / "slos.yml"
    path.write_text(yaml.safe_dump({"period": "30d", "slos": [good | patch]}))
    with pytest.raises(ValueError, match=re.escape(message)):
        slo.load(path)


def test_min_total_guards_every_clause() -> None:
    _, slos = slo.load()
    call = next(s for s in slos if s.min_total)
    alert = slo._alert(call, slo.FAST, "fast")
    assert alert["expr"].count(">= 30") == len(slo.FAST[1])


def test_recording_rules_read_only_series_that_exist() -> None:
    known = set(catalog())
    problems = []
    for path in sorted(ALERTS.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                unknown = metric_names(str(rule["expr"])) - known
                if unknown:
                    problems.append(f"{path.name}: {rule.get('record') or rule.get('alert')} reads {sorted(unknown)}")
    assert not problems, "\n".join(problems)
    assert recording_rules(), "no recording rules found"
