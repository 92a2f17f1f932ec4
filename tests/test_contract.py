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
