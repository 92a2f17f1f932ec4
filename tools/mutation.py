"""Mutation testing, one module group at a time (not part of CI: it takes CPU-minutes).

    python3 tools/mutation.py normalize            # one group (or: vendor, signers, ...)
    python3 tools/mutation.py all                  # every group, one after the other

Each group mutates only its modules and runs only the test files that exercise them, so a run
stays affordable on a small machine. mutmut works on a copy of the checkout (in a temporary
directory, removed afterwards) configured through a generated setup.cfg, so the repository itself
carries no mutmut state. Prints, per group: mutants, killed, survived, timeouts, the score, and
every survivor with its diff, which is what to read when writing the next test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EP = "monitord.sources.endpoint.xǁEndpointSourceǁ"


@dataclass(frozen=True)
class Group:
    modules: list[str]  # files mutmut generates mutants for
    tests: list[str]  # the test files that exercise them (the only ones run)
    # Mutant-name globs to run and count; empty: all of the modules' mutants. Scopes the signing
    # code of a source, or its login, without paying for the rest of the file.
    only: list[str] = field(default_factory=list)


GROUPS: dict[str, Group] = {
    "normalize": Group(["monitord/normalize.py"], ["tests/test_normalize.py", "tests/test_normalize_edges.py"]),
    "exposition": Group(["monitord/exposition.py"], ["tests/test_exposition.py"]),
    "config": Group(["monitord/config.py"], ["tests/test_config.py", "tests/test_config_edges.py"]),
    "signers": Group(
        ["monitord/sources/huawei_rtc/signer.py", "monitord/sources/polyv.py", "monitord/sources/zego.py"],
        ["tests/test_huawei_rtc_signer.py", "tests/test_polyv_sign.py", "tests/test_zego_sim.py"],
        ["monitord.sources.huawei_rtc.signer.*", "monitord.sources.polyv.x_sign__mutmut_*",
         "monitord.sources.zego.x_sign__mutmut_*"],
    ),
    "endpoint-login": Group(
        ["monitord/sources/endpoint.py"], ["tests/test_endpoint.py", "tests/test_endpoint_login.py"],
        [f"{EP}_login__mutmut_*", f"{EP}poll__mutmut_*", f"{EP}_post__mutmut_*", f"{EP}_call_status__mutmut_*",
         "monitord.sources.endpoint.x__envelope__mutmut_*", "monitord.sources.endpoint.x__error_code__mutmut_*",
         "monitord.sources.endpoint.x__decode_data__mutmut_*"],
    ),
    # The timers and the grid (TargetRuntime's poll bookkeeping is exercised by every source's
    # tests, which make a run of its mutants take hours).
    "scheduler": Group(["monitord/scheduler.py"],
                       ["tests/test_schedule.py", "tests/test_scheduler_timers.py", "tests/test_scheduling.py",
                        "tests/test_runtime_metrics.py"],
                       ["monitord.scheduler.xǁSchedulerǁ*", "monitord.scheduler.xǁGridTriggerǁ*",
                        "monitord.scheduler.xǁ_Timerǁ*", "monitord.scheduler.x_fire_tick__mutmut_*",
                        "monitord.scheduler.x_first_poll_window__mutmut_*"]),
    "snapshot": Group(["monitord/snapshot.py"],
                      ["tests/test_snapshot.py", "tests/test_snapshot_builder.py", "tests/test_exposition.py",
                       "tests/test_bad_input.py",
                       "tests/test_runtime_metrics.py"]),
    "vendor": Group(
        [f"monitord/vendor/{m}.py" for m in ("auth", "caller", "client", "deadline", "fanout", "pacing", "persist",
                                             "retry", "scope")],
        ["tests/test_vendor_caller.py", "tests/test_vendor_pacing.py", "tests/test_vendor_scope.py"],
    ),
}


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _strip_mutmut_table(pyproject: Path) -> None:
    # mutmut prefers [tool.mutmut] in pyproject.toml over setup.cfg; the group's setup.cfg must win.
    text = pyproject.read_text()
    if "[tool.mutmut]" in text:
        raise SystemExit("pyproject.toml has a [tool.mutmut] table; this script configures mutmut itself")


def run_group(name: str, children: int, only: list[str]) -> tuple[int, int, int]:
    group = GROUPS[name]
    if only:
        # A re-run of chosen mutants (say, the survivors of the last run after new tests):
        # only those are run and counted.
        group = Group(group.modules, group.tests, only)
    modules, tests = group.modules, group.tests
    with tempfile.TemporaryDirectory(prefix=f"mutmut-{name}-") as tmp:
        work = Path(tmp)
        _copy_checkout(work)
        _strip_mutmut_table(work / "pyproject.toml")
        (work / "setup.cfg").write_text(
            "[mutmut]\n"
            "source_paths=monitord\n"
            f"only_mutate={chr(10).join('    ' + m for m in modules)}\n"
            # -s: the daemon's logger keeps the stream it was configured with; pytest's capture
            # stream of the stats run is closed before the mutant runs.
            "pytest_add_cli_args=\n    -p\n    no:cacheprovider\n    -s\n"
            f"pytest_add_cli_args_test_selection={chr(10).join('    ' + t for t in tests)}\n"
            # What tests read besides code (the example config, docs, rules, dashboards).
            "also_copy=\n    deploy/\n    docs/\n    alerts/\n    dashboards/\n    examples/\n    README.md\n"
        )
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *group.only],
                       cwd=work, env=env, check=False)
        listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env,
                                 capture_output=True, text=True, check=False).stdout
        return _report(name, group.only, listing, work, env)


def _in_scope(only: list[str], mutant: str) -> bool:
    return not only or any(fnmatch(mutant, pattern) for pattern in only)


def _report(group: str, only: list[str], listing: str, work: Path, env: dict[str, str]) -> tuple[int, int, int]:
    statuses: dict[str, str] = {}
    for line in listing.splitlines():
        mutant, sep, status = line.strip().rpartition(": ")
        if sep and mutant and _in_scope(only, mutant):
            statuses[mutant] = status.strip()
    killed = sum(1 for s in statuses.values() if s in ("killed", "timeout", "segfault"))
    survived = sorted(m for m, s in statuses.items() if s == "survived")
    other = {m: s for m, s in statuses.items() if s not in ("killed", "timeout", "segfault", "survived")}
    total = killed + len(survived)
    score = 100.0 * killed / total if total else 0.0
    print(f"\n== {group}: {total} mutants, {killed} killed, {len(survived)} survived"
          f"{f', {len(other)} not run/other' if other else ''}; score {score:.1f} %")
    for mutant in survived:
        diff = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=work, env=env,
                              capture_output=True, text=True, check=False).stdout
        print(f"-- survived: {mutant}\n{diff}")
    for mutant, status in sorted(other.items()):
        print(f"-- {status}: {mutant}")
    return total, killed, len(survived)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("group", choices=[*GROUPS, "all"])
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant runs (default 1)")
    parser.add_argument("--only", nargs="+", default=[], metavar="GLOB",
                        help="run and count only these mutant names (e.g. the survivors of the last run)")
    args = parser.parse_args()
    if shutil.which("git") is None:
        raise SystemExit("git is needed to copy the checkout")
    groups = list(GROUPS) if args.group == "all" else [args.group]
    summary = [(g, *run_group(g, args.max_children, args.only)) for g in groups]
    print("\n| module group | mutants | killed | survived | score |\n| --- | ---: | ---: | ---: | ---: |")
    for group, total, killed, survived in summary:
        print(f"| {group} | {total} | {killed} | {survived} | {100.0 * killed / total if total else 0:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
