"""Static checks as tests: `ruff check` and strict `mypy` must pass on the code base.

Both run as subprocesses of the interpreter running the tests, from the repository root, so they
read its pyproject.toml. A tool that is not installed skips its test, except under
MONITORD_REQUIRE_E2E=1 (set by .ci/run), where that is a failure. mypy keeps its cache in the
default .mypy_cache (git-ignored), which makes a second run take well under a second.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600


def require(module: str, distribution: str | None = None) -> None:
    """Skip (or, in CI, fail) unless `module` is importable and `distribution` is installed."""
    missing = None
    if importlib.util.find_spec(module) is None:
        missing = module
    elif distribution is not None:
        try:
            importlib.metadata.distribution(distribution)
        except importlib.metadata.PackageNotFoundError:
            missing = distribution
    if missing is None:
        return
    message = f"{missing} not installed (pip install -e '.[test]')"
    if os.environ.get("MONITORD_REQUIRE_E2E") == "1":
        pytest.fail(f"{message}, but MONITORD_REQUIRE_E2E=1")
    pytest.skip(message)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


@pytest.mark.timeout(TIMEOUT + 30)
def test_ruff_is_clean() -> None:
    require("ruff")
    proc = run("ruff", "check", "monitord", "tests", "benchmarks", "tools", "examples")
    assert proc.returncode == 0, f"ruff check failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.timeout(TIMEOUT + 30)
def test_mypy_is_clean() -> None:
    # Without the PyYAML stubs yaml is untyped and strict mode reports Any leaking out of it.
    require("mypy", "types-PyYAML")
    proc = run("mypy", "monitord", "examples")
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout}\n{proc.stderr}"
