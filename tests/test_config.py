"""Config loading: every invalid-*.yml fixture fails with exactly its expected messages, and the
shipped example config loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitord.config import ConfigError, load, loads

ROOT = Path(__file__).parent.parent
FIXTURES = sorted((Path(__file__).parent / "fixtures" / "config").glob("invalid-*.yml"))


def expectations(path: Path) -> list[str]:
    return [line.removeprefix("# expect:").strip() for line in path.read_text().splitlines()
            if line.startswith("# expect:")]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_invalid_config_is_rejected_naming_key_and_problem(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(ConfigError) as info:
        load(path)
    problems = info.value.problems
    for message in expected:
        assert any(message in p for p in problems), f"{message!r} not in {problems}"
    assert len(problems) == len(expected), f"unexpected extra problems: {problems}"


def example_env() -> dict[str, str]:
    """A value for every environment variable the example config refers to."""
    import re

    text = (ROOT / "deploy" / "config.example.yml").read_text()
    return {name: f"example-{name.lower()}" for name in re.findall(r"^\s*[a-z_]+_env:\s*([A-Z0-9_]+)", text, re.M)}


def test_example_config_loads() -> None:
    env = example_env()
    os.environ.update(env)
    try:
        config = load(ROOT / "deploy" / "config.example.yml")
    finally:
        for key in env:
            os.environ.pop(key, None)
    assert config.targets, "the example shows at least one target of each source"
    from monitord.sources import REGISTRY

    assert {t.source for t in config.targets} == set(REGISTRY), "every source has an example target"


def test_secret_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("MONITORD_TEST_PW", "from-env")
    config = loads(f"""
targets:
  - {{name: a, source: endpoint, url: "https://10.0.0.5", username: u, password_file: {secret}}}
  - {{name: b, source: endpoint, url: "https://10.0.0.6", username: u, password: {{env: MONITORD_TEST_PW}}}}
""")
    assert config.target("a").password.get_secret_value() == "from-a-file"
    assert config.target("b").password.get_secret_value() == "from-env"
    assert "from-a-file" not in repr(config) and "from-env" not in repr(config)


def test_defaults() -> None:
    config = loads("targets: []")
    assert config.global_.interval == 30 and config.global_.timeout == 10
    assert config.web.listen_address.endswith(":10520")


def test_check_config_command_lists_every_problem() -> None:
    bad = Path(__file__).parent / "fixtures" / "config" / "invalid-many-problems.yml"
    proc = subprocess.run([sys.executable, "-m", "monitord", "check-config", "--config.file", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    for message in expectations(bad):
        assert message in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "monitord", "check-config", "--config.file",
                         str(ROOT / "deploy" / "config.example.yml")],
                        cwd=ROOT, capture_output=True, text=True, timeout=60,
                        env={**os.environ, **example_env()})
    assert ok.returncode == 0, ok.stderr
