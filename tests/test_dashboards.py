"""Lint of every Grafana dashboard in dashboards/ (design §4). Runs over whatever JSON files are
there, so a new source's dashboard is checked without touching this file. Whether each panel's
query returns data from a real Prometheus is proven in test_e2e.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from monitoring import (
    KNOWN_KINDS,
    Panel,
    catalog,
    dashboard_files,
    load_json,
    metric_names,
    panels,
    parse_label_values,
    rate_ranges,
    tag_sources,
    variable_query,
    variables,
)

from monitord import process, selfmetrics
from monitord.metrics import MetricDef
from monitord.sources import REGISTRY

DATASOURCE_REF = "${datasource}"
FILES = dashboard_files()


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_there_are_dashboards_for_the_exporter_the_overview_and_every_registered_source() -> None:
    names = {p.stem for p in FILES}
    assert {"monitord", "overview"} <= names
    tagged = set().union(*(tag_sources(load_json(p)) for p in FILES))
    missing = set(REGISTRY) - tagged
    assert not missing, f"no dashboard tagged source:<kind> for {sorted(missing)}"


def test_uids_are_fixed_unique_and_titles_unique() -> None:
    uids: dict[str, str] = {}
    titles: dict[str, str] = {}
    for path in FILES:
        dash = load_json(path)
        uid = dash.get("uid")
        assert isinstance(uid, str) and re.fullmatch(r"[a-z0-9-]{1,40}", uid), f"{path.name}: uid {uid!r}"
        assert uid not in uids, f"{path.name} and {uids.get(uid)} share uid {uid}"
        uids[uid] = path.name
        title = dash.get("title")
        assert isinstance(title, str) and title, f"{path.name}: no title"
        assert title not in titles, f"{path.name} and {titles.get(title)} share title {title!r}"
        titles[title] = path.name
        # Exported-for-sharing dashboards carry these; file provisioning breaks on them.
        assert "__inputs" not in dash and "__requires" not in dash, f"{path.name}: export-for-sharing leftovers"
        assert dash.get("id") in (None, 0), f"{path.name}: a database id makes provisioning fight the UI"


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_datasource_variable_is_used_by_every_panel_and_query(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "${DS_" not in text, f"{path.name}: ${{DS_...}} placeholders break file provisioning"
    dash = load_json(path)
    ds_vars = [v for v in variables(dash) if v.get("name") == "datasource"]
    assert len(ds_vars) == 1, f"{path.name}: exactly one variable named datasource"
    assert ds_vars[0].get("type") == "datasource" and ds_vars[0].get("query") == "prometheus"
    problems = []
    for panel in panels(path):
        if panel.panel.get("datasource") != {"type": "prometheus", "uid": DATASOURCE_REF}:
            problems.append(f"{panel}: panel datasource {panel.panel.get('datasource')!r}")
        if not panel.targets:
            problems.append(f"{panel}: no queries")
        for target in panel.targets:
            if target.get("datasource") != {"type": "prometheus", "uid": DATASOURCE_REF}:
                problems.append(f"{panel} {target.get('refId')}: query datasource {target.get('datasource')!r}")
    for var in variables(dash):
        if var.get("type") == "query" and var.get("datasource") != {"type": "prometheus", "uid": DATASOURCE_REF}:
            problems.append(f"variable {var.get('name')}: datasource {var.get('datasource')!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_every_panel_has_a_unit_and_a_description(path: Path) -> None:
    problems = []
    for panel in panels(path):
        unit = ((panel.panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if not isinstance(unit, str) or not unit:
            problems.append(f"{panel}: no unit in fieldConfig.defaults")
        description = panel.panel.get("description")
        if not isinstance(description, str) or len(description.strip()) < 10:
            problems.append(f"{panel}: no description")
    assert not problems, "\n".join(problems)


def _window_problems(panel: Panel) -> list[str]:
    """A range follows the graph's step ($__rate_interval), except an instant increase() over the
    dashboard's time range ($__range): one total for the selected range, in a stat or table."""
    problems = []
    for target in panel.targets:
        if target.get("hide"):
            continue
        for func, window in rate_ranges(str(target.get("expr", ""))):
            if window == "$__rate_interval":
                continue
            if window == "$__range" and func == "increase" and target.get("instant"):
                continue
            problems.append(f"{panel} {target.get('refId')}: {func}(...[{window}]) should use [$__rate_interval]"
                            " (or be an instant increase over [$__range])")
    return problems


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_every_rate_uses_rate_interval(path: Path) -> None:
    problems = [problem for panel in panels(path) for problem in _window_problems(panel)]
    assert not problems, "\n".join(problems)


def test_range_windows_are_allowed_only_for_instant_increases() -> None:
    def panel(expr: str, instant: bool) -> Panel:
        return Panel("x.json", {"id": 1, "targets": [{"refId": "A", "expr": expr, "instant": instant}]}, set())

    assert not _window_problems(panel("sum(increase(a_total[$__range]))", instant=True))
    assert _window_problems(panel("sum(increase(a_total[$__range]))", instant=False))
    assert _window_problems(panel("sum(rate(a_total[$__range]))", instant=True))
    assert _window_problems(panel("sum(increase(a_total[5m]))", instant=True))


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_variables_come_from_label_values_and_are_used(path: Path) -> None:
    dash = load_json(path)
    text_of_queries = "\n".join(
        [expr for p in panels(path) for expr in p.exprs] + [variable_query(v) for v in variables(dash)]
    )
    problems = []
    for var in variables(dash):
        name = var.get("name")
        if var.get("type") == "datasource":
            continue
        if var.get("type") != "query":
            problems.append(f"variable {name}: type {var.get('type')!r} (use a label_values query)")
            continue
        parsed = parse_label_values(variable_query(var))
        if parsed is None:
            problems.append(f"variable {name}: {variable_query(var)!r} is not label_values(...)")
            continue
        selector, _label = parsed
        if selector is None:
            problems.append(f"variable {name}: label_values without a metric scans every series")
        if not re.search(rf"\$(\{{)?{re.escape(str(name))}\b", text_of_queries):
            problems.append(f"variable {name}: no query uses it")
        if var.get("includeAll") and var.get("allValue") not in (None, ""):
            problems.append(f"variable {name}: a custom allValue hides which values 'All' means")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_panels_name_only_known_sources(path: Path) -> None:
    problems = [f"{p}: names unknown source(s) {sorted(p.sources - KNOWN_KINDS)}"
                for p in panels(path) if p.sources - KNOWN_KINDS]
    assert not problems, "\n".join(problems)


def _check_metrics(panel: Panel, known: dict[str, set[str]]) -> list[str]:
    problems = []
    for expr in panel.exprs:
        for name in sorted(metric_names(expr)):
            owners = known.get(name)
            if owners is None:
                problems.append(f"{panel}: metric {name} is not emitted by monitord or any registered source")
            elif panel.sources and not (owners & (panel.sources | {"monitord", "prometheus"})):
                problems.append(f"{panel}: {name} comes from {sorted(owners)}, not from {sorted(panel.sources)}")
    return problems


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_panels_use_metrics_the_code_emits(path: Path) -> None:
    """Every metric a panel queries is in a metric table of the code. Panels of a source that is
    not registered yet (built on another branch) cannot be checked here and are listed in the
    skip reason; if no panel of this dashboard could be checked, the test is skipped."""
    known = catalog()
    problems: list[str] = []
    unchecked: list[str] = []
    checked = 0
    for panel in panels(path):
        absent = panel.absent_sources()
        if absent:
            unchecked.append(f"{panel} ({', '.join(sorted(absent))})")
            continue
        checked += 1
        problems += _check_metrics(panel, known)
    assert not problems, "\n".join(problems)
    if not checked:
        kinds = sorted({k for p in panels(path) for k in p.absent_sources()})
        pytest.skip(f"all {len(unchecked)} panels are of source(s) {kinds}, not in monitord.sources.REGISTRY yet")


# Metrics no panel shows, each with why. Keyed by family name (MetricDef.name).
EXEMPT: dict[str, str] = {
    "process_virtual_memory_bytes": "address space reserved, not memory used: Resident memory is the panel",
    "python_info": "the Python version is already in monitord_build_info (Build table)",
}


def exposed_metrics() -> list[tuple[str, MetricDef]]:
    """(owner, definition) of everything monitord can expose: its own metrics and every
    registered source's table."""
    tables: list[tuple[str, MetricDef]] = [("monitord", m) for m in (*selfmetrics.ALL, *process.RUNTIME)]
    return tables + [(kind, m) for kind, cls in REGISTRY.items() for m in cls.metrics]


def sample_names(metric: MetricDef) -> set[str]:
    if metric.type == "histogram":
        return {f"{metric.name}_{suffix}" for suffix in ("bucket", "count", "sum")}
    return {metric.sample_name}


def coverage_problems(metrics: list[tuple[str, MetricDef]], shown: set[str], exempt: dict[str, str]) -> list[str]:
    problems = []
    for owner, metric in metrics:
        on_panel = bool(sample_names(metric) & shown)
        if metric.name in exempt:
            if on_panel:
                problems.append(f"{owner} {metric.name} is on a dashboard now: drop it from EXEMPT")
        elif not on_panel:
            problems.append(f"{owner} {metric.name} ({metric.type}) is on no dashboard panel: add one, or an EXEMPT "
                            "entry saying why not")
    defined = {metric.name for _, metric in metrics}
    problems += [f"EXEMPT names {name}, which nothing defines" for name in sorted(set(exempt) - defined)]
    return problems


def test_every_metric_is_on_a_dashboard_or_exempt() -> None:
    shown = {name for path in FILES for panel in panels(path) for expr in panel.exprs for name in metric_names(expr)}
    problems = coverage_problems(exposed_metrics(), shown, EXEMPT)
    assert not problems, "\n".join(problems)
    assert all(len(reason) >= 10 for reason in EXEMPT.values()), "every exemption needs a reason"


def test_coverage_check_catches_a_metric_without_a_panel() -> None:
    new = MetricDef("rtc_new_thing", "counter", "Something new.")
    histogram = MetricDef("rtc_new_seconds", "histogram", "Something timed.", unit="seconds")
    assert coverage_problems([("zego", new)], set(), {})
    assert not coverage_problems([("zego", new)], {"rtc_new_thing_total"}, {})
    assert not coverage_problems([("zego", new)], set(), {"rtc_new_thing": "only in alerts"})
    assert coverage_problems([("zego", new)], {"rtc_new_thing_total"}, {"rtc_new_thing": "only in alerts"})
    assert not coverage_problems([("zego", histogram)], {"rtc_new_seconds_bucket"}, {})
    assert coverage_problems([], set(), {"rtc_gone": "was removed"})


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_variable_selectors_use_known_metrics(path: Path) -> None:
    dash = load_json(path)
    known = catalog()
    absent_tags = tag_sources(dash) - set(REGISTRY)
    if absent_tags:
        pytest.skip(f"dashboard of source(s) {sorted(absent_tags)} not in monitord.sources.REGISTRY yet")
    problems = []
    for var in variables(dash):
        parsed = parse_label_values(variable_query(var)) if var.get("type") == "query" else None
        if parsed and parsed[0]:
            problems += [f"variable {var.get('name')}: unknown metric {m}"
                         for m in metric_names(parsed[0]) if m not in known]
    assert not problems, "\n".join(problems)


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    problems = []
    for path in FILES:
        seen: set[Any] = set()
        cells: dict[tuple[int, int], Any] = {}
        for panel in _all_panels(path):
            pid = panel.get("id")
            if pid in seen:
                problems.append(f"{path.name}: duplicate panel id {pid}")
            seen.add(pid)
            pos = panel.get("gridPos") or {}
            for x in range(pos.get("x", 0), pos.get("x", 0) + pos.get("w", 0)):
                for y in range(pos.get("y", 0), pos.get("y", 0) + pos.get("h", 0)):
                    if (x, y) in cells:
                        problems.append(f"{path.name}: panels {cells[(x, y)]} and {pid} overlap at {x},{y}")
                        break
                    cells[(x, y)] = pid
            if pos.get("x", 0) + pos.get("w", 0) > 24:
                problems.append(f"{path.name}: panel {pid} is wider than the grid")
    assert not problems, "\n".join(sorted(set(problems)))


def _all_panels(path: Path) -> list[dict[str, Any]]:
    from monitoring import walk_panels

    return list(walk_panels(load_json(path).get("panels") or []))


def test_metric_name_scanner() -> None:
    """The lexical scan the metric check relies on."""
    expr = ('sum by (source, target) (rate(monitord_polls_total{source=~"$source", target="a b"}'
            '[$__rate_interval])) / on (target) group_left (x) max(up) unless foo_bar offset 5m or vector(0)')
    assert metric_names(expr) == {"monitord_polls_total", "up", "foo_bar"}
    assert metric_names('topk(10, rtc_stream_loss_ratio{source="x"}) * 8') == {"rtc_stream_loss_ratio"}
    assert rate_ranges("rate(a[5m]) + increase(b{c=\"d\"}[$__rate_interval])") == [
        ("rate", "5m"), ("increase", "$__rate_interval")]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """Every panel and variable query parses, also those of sources not registered yet (which
    the end-to-end test cannot run): each becomes a recording rule for `promtool check rules`,
    with Grafana's variables replaced as Grafana would (a regex for multi-value variables)."""
    import subprocess

    import yaml
    from monitoring import require_binary, substitute

    promtool = require_binary("promtool")
    values = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600"}
    rules = []
    for path in FILES:
        dash = load_json(path)
        fill = {**values, **{str(v["name"]): ".+" for v in variables(dash)}}
        for panel in panels(path):
            for target in panel.targets:
                rules.append({"record": f"dashboard:{path.stem}:{panel.panel.get('id')}:{target.get('refId')}",
                              "expr": substitute(str(target["expr"]), fill)})
        for var in variables(dash):
            parsed = parse_label_values(variable_query(var)) if var.get("type") == "query" else None
            if parsed and parsed[0]:
                rules.append({"record": f"variable:{path.stem}:{var['name']}", "expr": substitute(parsed[0], fill)})
    file = tmp_path / "dashboards.rules.yml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout
