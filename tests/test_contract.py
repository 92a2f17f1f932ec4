"""What every source must ship, checked by walking the registry, plus the generated docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord import catalog, simulators
from monitord.config import parse
from monitord.sources import REGISTRY

ROOT = Path(__file__).parent.parent
KINDS = sorted(REGISTRY)


def test_every_source_has_a_simulator_and_every_simulator_a_source() -> None:
    assert set(simulators.SIMULATORS) == set(REGISTRY)
    assert set(REGISTRY) <= set(simulators.PORT_OFFSETS)


@pytest.mark.parametrize("kind", KINDS)
def test_source_ships_everything(kind: str) -> None:
    cls = REGISTRY[kind]
    assert cls.kind == kind and cls.description and cls.metrics
    module = simulators.SIMULATORS[kind]
    assert callable(module.create_app) and callable(module.demo_targets)
    demo = parse({"targets": module.demo_targets("http://127.0.0.1:1")})
    assert demo.targets and {t.source for t in demo.targets} == {kind}
    missing = [p for p in (
        ROOT / "dashboards" / f"{kind}.json",
        ROOT / "alerts" / f"{kind}.rules.yml",
        ROOT / "docs" / "sources" / f"{kind}.md",
    ) if not p.exists()]
    assert not missing, f"{kind} lacks {missing}"
    assert list((ROOT / "tests" / "golden").glob(f"{kind}_*.prom")), f"{kind} has no golden exposition"
    assert f"| `{kind}` |" in (ROOT / "README.md").read_text(), f"README's source table lacks {kind}"
    assert f"source: {kind}" in (ROOT / "deploy" / "config.example.yml").read_text()


@pytest.mark.parametrize("kind", KINDS)
def test_metric_names_follow_conventions(kind: str) -> None:
    for m in REGISTRY[kind].metrics:
        assert m.name.startswith(("rtc_", "monitord_")), m.name
        assert m.help.endswith("."), f"{m.name}: help is a sentence"
        assert "source" in m.all_labels and "target" in m.all_labels


def test_catalog_is_consistent() -> None:
    catalog.entries()  # raises when one name means two things


def test_readme_generated_sections_are_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert catalog.render_readme(readme) == readme, "run: python3 -m monitord.catalog"


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```sh\n")[1:3]
    commands = [b.split("\n```")[0].strip() for b in blocks]
    assert commands[0].endswith("monitord demo")
    assert commands[1].endswith("python3 -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci, ".ci/run must run exactly the README's test command"


# Non-literal `field` arguments, per source, and why the declaration still covers them.
_DYNAMIC_FIELDS = {
    # PLATFORMS' key spellings, the track status of each MEDIA_KINDS list, _RECORDING_FIELDS' values
    "avd": {"key", "f'participates[].{key}[].status'", "_RECORDING_FIELDS.get(name, name)"},
    "polyv": {"problem"},  # one of data/time/timestamp, declared
    # PARSE_FIELDS lists every realtime API with each of its metrics and its time, and every event label
    "huawei_rtc": {"f'{api}.{call.metric}'", "f'{api}.time'", "f'abnormal_events.{bad}'"},
    "zego": {"key"},  # RecordBeginTimestamp / RecordEndTimestamp, both declared
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_parse_error_field_a_source_reports_is_declared(kind: str) -> None:
    """monitord_parse_errors_total{field} exists at 0 only for declared fields: every field the
    source's code can count must be among them (walks the module's `add(metric, value, field)`
    calls, `parse_errors[...]` counts and state sets)."""
    import ast
    import inspect

    cls = REGISTRY[kind]
    tree = ast.parse(inspect.getsource(inspect.getmodule(cls)))  # type: ignore[arg-type]
    literal: set[str] = set()
    dynamic: set[str] = set()
    for node in ast.walk(tree):
        arg: ast.expr | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add" \
                and len(node.args) >= 3:
            arg = node.args[2]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("parse_errors"):
            arg = node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "state_set":
            literal.add(next(m.name for m in cls.metrics if ast.unparse(node.args[0]).endswith(_const(m))))
        if arg is None:
            continue
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            literal.add(arg.value)
        else:
            dynamic.add(ast.unparse(arg))
    declared = set(cls.PARSE_FIELDS)
    assert literal <= declared, f"undeclared parse-error fields of {kind}: {sorted(literal - declared)}"
    assert dynamic <= _DYNAMIC_FIELDS.get(kind, set()), f"{kind}: unexplained field expressions {dynamic}"


def _const(metric: object) -> str:
    """The module constant a metric is bound to, found by its value."""
    import sys

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("monitord.sources."):
            for name, val in vars(module).items():
                if val is metric:
                    return name
    return "\0"
