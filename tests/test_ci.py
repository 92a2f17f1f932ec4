"""CI and the tests end only processes they started, by PID: on a shared machine, a kill by
process name ends other people's Prometheus or monitord too."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
BY_NAME = re.compile(r"\b(pkill|killall|pgrep)\b|\bkill\s+\$\(\s*pidof\b|\bpidof\b")


def test_nothing_is_killed_by_name() -> None:
    files = [ROOT / ".ci" / "run", *sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "benchmarks").rglob("*"))]
    offenders = []
    for path in files:
        if not path.is_file() or path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if BY_NAME.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_ci_keeps_the_debian_services_from_starting() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    install = script.index("apt-get install")
    assert script.index("exit 101") < install, "policy-rc.d in place before the install"
    assert script.index('rm -f "$policy"', install) > install, "and removed after it"
