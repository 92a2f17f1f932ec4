"""Config loading: every invalid-*.yml fixture fails with exactly its expected messages, and the
shipped example config loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from monitord.config import ConfigError, load, loads

ROOT = Path(__file__).parent.parent
FIXTURES = sorted((Path(__file__).parent / "fixtures" / "config").glob("invalid-*.yml"))


def expectations(path: Path) -> list[str]:
    # Some fixtures are not UTF-8 on purpose: read them as bytes.
    text = path.read_bytes().decode("utf-8", errors="replace")
    return [line.removeprefix("# expect:").strip() for line in text.splitlines() if line.startswith("# expect:")]


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


@pytest.mark.parametrize("text, message", [
    ("targets: " + "[" * 50_000 + "]" * 50_000, "nested deeper than 64 levels"),
    ("targets: " + "{a: " * 50_000 + "1" + "}" * 50_000, "nested deeper than 64 levels"),
    ("global:\n  max_series_per_target: " + "7" * 5_000, "cannot read this value: Exceeds the limit"),
    ("targets:\n  - ? [a, b]\n    : c", "a list or mapping cannot be a key"),
    ("targets:\n  - ? {a: b}\n    : c", "a list or mapping cannot be a key"),
    ("", "(top level): the file is empty"),
    ("# nothing but a comment\n", "(top level): the file is empty"),
], ids=["deep-lists", "deep-mappings", "5000-digits", "list-key", "mapping-key", "empty", "comment"])
def test_whatever_the_loader_raises_is_a_config_error(text: str, message: str) -> None:
    """Loader exceptions other than YAMLError (RecursionError, ValueError, TypeError) used to
    escape as tracebacks; 50k levels used to crash libyaml's composer outright."""
    with pytest.raises(ConfigError) as info:
        loads(text)
    assert len(info.value.problems) == 1 and message in info.value.problems[0], info.value.problems


def test_strict_types_keep_the_friendly_spellings() -> None:
    config = loads("""
global: {interval: 1m, timeout: 500ms, state_dir: /tmp/monitord-test-state-never-created, jitter: 0}
http: {connect_timeout: 2, read_timeout: 1.5}
targets:
  - {name: a, source: endpoint, url: "https://10.0.0.5", username: admin, password: x, tls: {insecure_skip_verify: true}}
  - {name: b, source: polyv, app_id: abc, app_secret: s, channels: ["no", "2123456"]}
""")
    assert config.global_.interval == 60 and config.global_.timeout == 0.5 and config.global_.jitter == 0
    assert config.http.connect_timeout == 2 and config.http.read_timeout == 1.5
    assert config.target("a").tls.insecure_skip_verify is True
    assert config.target("b").channels == ("no", "2123456")
    assert not Path("/tmp/monitord-test-state-never-created").exists(), "validation creates nothing"


def test_unquoted_no_is_a_string_not_false() -> None:
    # YAML 1.1 reads no/yes/on/off as booleans: a channel called "no" would become False.
    config = loads("targets:\n  - {name: b, source: polyv, app_id: abc, app_secret: s, channels: [no, on]}")
    assert config.target("b").channels == ("no", "on")


def test_merge_keys_may_be_overridden_but_own_keys_not_repeated() -> None:
    config = loads("""
targets:
  - &a {name: a, source: endpoint, username: admin, password: x, url: "https://10.0.0.5", interval: 30s}
  - {<<: *a, name: b, interval: 60s}
""")
    assert config.interval_of(config.target("b")) == 60 and config.target("b").url == "https://10.0.0.5"
    with pytest.raises(ConfigError, match="duplicate key 'name'"):
        loads("targets:\n  - &a {name: a, source: endpoint}\n  - {<<: *a, name: b, name: c}")


def test_state_dir_that_can_be_made_is_accepted(tmp_path: Path) -> None:
    config = loads(f"global: {{state_dir: {tmp_path}/a/b/c}}\ntargets: []")
    assert config.global_.state_dir == tmp_path / "a" / "b" / "c"


def test_an_existing_writable_state_dir_is_accepted(tmp_path: Path) -> None:
    assert loads(f"global: {{state_dir: {tmp_path}}}\ntargets: []").global_.state_dir == tmp_path


# Run in a child: as root (which may write anywhere) it becomes `nobody` for good before it loads
# the config, so the test process never changes its own identity (a process-wide change, even
# for a moment, would reach every thread of the test run). os.access asks about the real user.
# The first load, as root, imports what loading needs while every file is still readable.
_LOAD_AS_NOBODY = """
import json, os, sys
from monitord.config import ConfigError, loads
text = sys.stdin.read()
for attempt in ("warm-up", "measured"):
    if attempt == "measured" and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    try:
        loads(text)
        problems = []
    except ConfigError as exc:
        problems = exc.problems
print(json.dumps({"uid": os.getuid(), "problems": problems}))
"""


def problems_as_unprivileged_user(text: str) -> list[str]:
    child = subprocess.run([sys.executable, "-c", _LOAD_AS_NOBODY], input=text, cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    answer = json.loads(child.stdout)
    assert answer["uid"] != 0
    return answer["problems"]


def test_state_dir_that_is_not_writable_is_rejected() -> None:
    # Not under tmp_path: pytest's base directory is private to its owner, so `nobody` could not
    # even look into it.
    base = Path(tempfile.mkdtemp(prefix="monitord-state-"))
    base.chmod(0o755)
    locked = base / "locked"
    locked.mkdir(mode=0o555)
    try:
        for state_dir, message in ((locked, f"directory {str(locked)!r} is not writable"),
                                   (locked / "sub", f"cannot be created: directory {str(locked)!r} is not writable")):
            problems = problems_as_unprivileged_user(f"global: {{state_dir: {state_dir}}}\ntargets: []")
            assert problems == [f"global.state_dir: {message}"]
    finally:
        locked.chmod(0o755)
        shutil.rmtree(base)


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitord", "check-config", "--config.file", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["invalid-huge-integer", "invalid-deep-nesting", "invalid-list-as-key",
                                  "invalid-not-utf8", "invalid-empty-file", "invalid-nan-interval",
                                  "invalid-listen-port-range", "invalid-state-dir-is-file"])
def test_check_config_exit_code_and_no_traceback(name: str) -> None:
    path = Path(__file__).parent / "fixtures" / "config" / f"{name}.yml"
    proc = check_config(path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for message in expectations(path):
        assert message in proc.stderr


def test_check_config_exit_codes_for_missing_file_and_bad_usage(tmp_path: Path) -> None:
    proc = check_config(tmp_path / "nope.yml")
    assert proc.returncode == 1 and "cannot read file: No such file or directory" in proc.stderr
    proc = check_config(tmp_path)
    assert proc.returncode == 1 and "cannot read file: Is a directory" in proc.stderr
    usage = subprocess.run([sys.executable, "-m", "monitord", "check-config"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert usage.returncode == 2 and "--config.file" in usage.stderr


def test_run_refuses_bad_settings_at_start_without_a_traceback(tmp_path: Path) -> None:
    """These used to pass check-config and then crash `run`."""
    fixtures = Path(__file__).parent / "fixtures" / "config"
    for name in ("invalid-nan-interval", "invalid-listen-port-range", "invalid-state-dir-is-file"):
        proc = subprocess.run([sys.executable, "-m", "monitord", "run", "--config.file", str(fixtures / f"{name}.yml")],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert all(message in proc.stderr for message in expectations(fixtures / f"{name}.yml"))
    ok = tmp_path / "ok.yml"
    ok.write_text("targets: []\n")
    proc = subprocess.run([sys.executable, "-m", "monitord", "run", "--config.file", str(ok),
                           "--web.listen-address", "127.0.0.1:99999"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "--web.listen-address: port must be 0-65535" in proc.stderr, proc.stderr


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yml"
    with path.open("wb") as fh:
        fh.truncate(65 * 1024**2)  # sparse: costs no disk
    with pytest.raises(ConfigError, match="file is larger than 64 MiB"):
        load(path)


def test_a_secret_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"targets\[0\].password: secret file '.*' is not UTF-8 text"):
        loads(f"targets:\n  - {{name: a, source: endpoint, url: 'https://10.0.0.5', username: u, "
              f"password_file: {secret}}}")
