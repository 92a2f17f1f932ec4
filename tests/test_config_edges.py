"""Config edges a mutation run showed untested: duration and size units and bounds, URL rules
one at a time, how problems are located and reported, and secret sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from monitord.config import ConfigError, load, loads, parse, secret_placeholders


def endpoint(**extra: Any) -> dict[str, Any]:
    target = {"name": "room", "source": "endpoint", "url": "http://10.0.0.5", "username": "u", "password": "p"}
    if {"password_file", "password_env"} & set(extra):
        del target["password"]
    return {**target, **extra}


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    return info.value.problems


@pytest.mark.parametrize(("text", "seconds"), [
    ("5", 5.0), ("1500ms", 1.5), ("0.5s", 0.5), ("2m", 120.0), ("1h", 3600.0), (2, 2.0), (0.25, 0.25),
])
def test_durations_and_their_units(text: Any, seconds: float) -> None:
    config = parse({"targets": [endpoint(interval=text, timeout=0.1)]})
    assert config.targets[0].interval == seconds


@pytest.mark.parametrize("text", ["0s", "0", -1, "-5s", True, "5 parsecs"])
def test_durations_that_are_refused(text: Any) -> None:
    assert any(p.startswith("targets[0].interval:") for p in problems_of({"targets": [endpoint(interval=text)]}))


def test_a_bool_duration_says_what_is_expected() -> None:
    assert "targets[0].interval: expected a duration like 30s, 500ms, 5m" in problems_of(
        {"targets": [endpoint(interval=True)]})[0]


@pytest.mark.parametrize(("size", "bytes_"), [("512", 512), ("1", 1), (1, 1), ("2KiB", 2048), ("1MiB", 2**20)])
def test_sizes_and_their_units(size: Any, bytes_: int) -> None:
    assert parse({"global": {"max_body_bytes": size}, "targets": []}).global_.max_body_bytes == bytes_


@pytest.mark.parametrize("size", [0, "0", True, -1, "4MB"])
def test_sizes_that_are_refused(size: Any) -> None:
    found = problems_of({"global": {"max_body_bytes": size}, "targets": []})
    assert any(p.startswith("global.max_body_bytes: ") and "expected a positive size like 4MiB" in p for p in found)


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://h", "URL scheme must be http or https, got 'ftp'"),
    ("//h/x", "URL scheme must be http or https, got 'none'"),
    ("http://user@h", "URL must not carry credentials"),
    ("http://:pw@h", "URL must not carry credentials"),
    ("http://h/?a=1", "URL must not have a query or fragment"),
    ("http://h/#top", "URL must not have a query or fragment"),
])
def test_url_rules_one_at_a_time(url: str, message: str) -> None:
    assert any(message in p for p in problems_of({"targets": [endpoint(url=url)]}))


@pytest.mark.parametrize(("url", "kept"), [("http://h/api/", "http://h/api"), ("https://h", "https://h"),
                                           ("http://h//", "http://h")])
def test_urls_keep_their_scheme_and_lose_trailing_slashes(url: str, kept: str) -> None:
    assert parse({"targets": [endpoint(url=url)]}).targets[0].url == kept


def test_problems_are_located_and_all_reported() -> None:
    found = problems_of({"targets": [5, endpoint(interval="0s"), "x", endpoint(name="b", source="nope")]})
    assert "targets[0]: must be a mapping" in found
    assert "targets[2]: must be a mapping" in found, "one bad entry does not hide the next"
    assert any(p.startswith("targets[1].interval:") for p in found)
    assert any(p.startswith("targets[3].source: unknown source 'nope'") and "avd, endpoint, huawei_rtc" in p
               for p in found)
    assert problems_of([1]) == ["(top level): must be a mapping"]
    assert problems_of({"targets": {"a": 1}}) == ["targets: must be a list"]


def test_a_timeout_equal_to_the_interval_is_allowed() -> None:
    assert parse({"targets": [endpoint(interval="10s", timeout="10s")]}).targets[0].timeout == 10.0


def test_config_error_names_its_source_and_joins_problems() -> None:
    with pytest.raises(ConfigError) as info:
        loads("targets: [1, 2]", source="my.yml")
    assert info.value.source == "my.yml"
    assert str(info.value) == "my.yml: targets[0]: must be a mapping; targets[1]: must be a mapping"
    assert str(ConfigError(["a", "b"])) == "a; b"
    assert ConfigError(["a"]).source == ""


def test_yaml_errors_say_where(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("targets:\n  - name: a\n   source: b\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.source == str(path)
    assert info.value.problems[0].startswith("(yaml) line 3, column 4: ")
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.yml")
    assert info.value.source == str(tmp_path / "absent.yml")
    assert info.value.problems[0].startswith("cannot read file: ")


def test_a_valid_file_loads_with_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "ok.yml"
    path.write_text(yaml.safe_dump({"targets": [endpoint()]}))
    assert load(path).targets[0].name == "room"


def test_secret_sources_and_their_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    found = problems_of({"targets": [endpoint(password_file=str(empty))]})
    assert any(f"secret file {str(empty)!r} is empty" in p for p in found)
    monkeypatch.delenv("MONITORD_TEST_NOPE", raising=False)
    found = problems_of({"targets": [endpoint(password_env="MONITORD_TEST_NOPE")]})
    assert any("environment variable 'MONITORD_TEST_NOPE' is not set or empty" in p for p in found)
    found = problems_of({"targets": [endpoint(password={"url": "x"})]})
    assert any("a secret is a string, {file: PATH} or {env: NAME}" in p for p in found)
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    assert parse({"targets": [endpoint(password_file=str(secret))]}).targets[0].password.get_secret_value() == "s3cret"


def test_placeholders_stand_in_for_missing_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONITORD_TEST_NOPE", raising=False)
    with secret_placeholders() as missing:
        config = parse({"targets": [endpoint(password_env="MONITORD_TEST_NOPE"),
                                    endpoint(name="b", password_file=str(tmp_path / "absent"))]})
    assert missing == ["env MONITORD_TEST_NOPE", f"file {tmp_path / 'absent'}"]
    assert config.targets[0].password.get_secret_value() == "placeholder-not-a-secret"
