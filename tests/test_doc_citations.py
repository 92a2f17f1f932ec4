"""The repository cites vendor documentation by its public title and section (e.g. Huawei Cloud
"SparkRTC API Reference > 数据统计 > 查询用户列表"), never by files that are not in it: the design
notes' contract sections, the collected vendor documents and their numbers mean nothing to a
reader of this repository.

Files that still do are listed in ALLOWED for their owners to fix; the list only shrinks (a
listed file that is clean fails too: take it off with the fix).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SELF = "tests/test_doc_citations.py"

# Written so that this file does not match itself.
PATTERNS = [
    re.compile(r"\.\./" r"shared\b"),
    re.compile(r"\bshared/" r"(specs|seeds)\b"),
    re.compile(r"\bspecs/" r"sources\.md\b"),
    re.compile(r"\bseeds" r"/"),
    re.compile(r"\bseed" r"\s*0\d\d\b", re.IGNORECASE),
    re.compile(r"\bspec" r"\s*§", re.IGNORECASE),
    re.compile(r"\bseed" r"(?:'s)?\s+(?:table|chapter|example|error table)\b", re.IGNORECASE),
    re.compile(r"\bthe " r"seed(?:'s)?\b", re.IGNORECASE),
    re.compile(r"\bseed" r"'s\b", re.IGNORECASE),
]

# Owned by the source owners (sources, simulators, their docs and tests; the Huawei signer moves
# under its source): they cite the vendor's public documents instead and take the file off.
ALLOWED = {
    "docs/sources/huawei_rtc.md",
    "monitord/huawei_signer.py",
    "monitord/simulators/huawei_rtc.py",
    "monitord/sources/huawei_rtc.py",
}


def offending(text: str) -> list[str]:
    return [m.group(0) for p in PATTERNS for m in p.finditer(text)]


def repository_files() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    out = {}
    for name in names:
        path = ROOT / name
        if name == SELF or not path.is_file():
            continue
        try:
            out[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images
    return out


def test_no_file_cites_documents_outside_the_repository() -> None:
    files = repository_files()
    assert "README.md" in files and "monitord/app.py" in files
    found = {name: sorted(set(hits)) for name, text in files.items() if (hits := offending(text))}
    new = {name: hits for name, hits in found.items() if name not in ALLOWED}
    assert not new, f"cite the vendor's public documentation by title and section instead: {new}"
    fixed = sorted(name for name in ALLOWED if name in files and name not in found)
    assert not fixed, f"{fixed} cite properly now: take them off ALLOWED in {SELF}"


@pytest.mark.parametrize(("text", "bad"), [
    ("see ../" "shared/specs/sources.md", True),
    ("(spec " "§2, seed " "003 chapters 13)", True),
    ("Seed " "001's example task", True),
    ("the " "seed's get_statistic example", True),
    ("python3 benchmarks/chaos_soak.py --seed 1", False),
    ("rng = random.Random(args.seed)", False),
    ('Huawei Cloud "SparkRTC API Reference > 数据统计 > 查询用户列表"', False),
])
def test_the_check_can_fail(text: str, bad: bool) -> None:
    assert bool(offending(text)) is bad
