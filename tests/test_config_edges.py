"""Config edges a mutation run showed untested: duration and size units and bounds, URL rules
one at a time, how problems are located and reported, and secret sources."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from monitord import logs
from monitord.config import (
    MAX_DURATION,
    MAX_FILE_BYTES,
    ConfigError,
    Secret,
    TargetConfig,
    load,
    loads,
    parse,
    parse_listen_address,
    secret_placeholders,
)


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


def test_a_secret_written_where_a_variable_name_belongs_is_not_quoted_back(tmp_path: Path) -> None:
    # An operator who pastes the password itself after `password_env:` must not see it echoed
    # on stderr or in a reload answer.
    pasted = "Pa55-w0rd!with spaces"
    config_file = tmp_path / "monitord.yml"
    config_file.write_text("targets:\n  - {name: room, source: endpoint, url: 'http://10.0.0.5', username: u,\n"
                           f"     password_env: '{pasted}'}}\n")
    with pytest.raises(ConfigError) as info:
        load(config_file)
    assert info.value.problems == ["targets[0].password: env must name an environment variable "
                                   "(letters, digits and _; is the secret itself written there?)"]
    assert pasted not in str(info.value)


def test_placeholders_stand_in_for_missing_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONITORD_TEST_NOPE", raising=False)
    with secret_placeholders() as missing:
        config = parse({"targets": [endpoint(password_env="MONITORD_TEST_NOPE"),
                                    endpoint(name="b", password_file=str(tmp_path / "absent"))]})
    assert missing == ["env MONITORD_TEST_NOPE", f"file {tmp_path / 'absent'}"]
    assert config.targets[0].password.get_secret_value() == "placeholder-not-a-secret"


# ------------------------------------------------------------------ gaps of the 2026-12-06 mutation run


def huawei(**extra: Any) -> dict[str, Any]:
    return {"name": "rtc", "source": "huawei_rtc", "project_id": "p", "apps": [{"id": "app"}], **extra}


def test_optional_secret_fields_take_every_secret_spelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Secret | None` fields (Huawei ak/sk, Zego api_token) are secrets like required ones: `_env` and `_file`
    spellings resolve, the value never shows in a repr, and the scrubber knows it."""
    sk = tmp_path / "sk"
    sk.write_text("sk-from-a-file-42\n")
    monkeypatch.setenv("MONITORD_TEST_AK", "ak-from-the-env-42")
    monkeypatch.setenv("MONITORD_TEST_TOKEN", "token-from-the-env-42")
    config = parse({"targets": [
        huawei(ak_env="MONITORD_TEST_AK", sk_file=str(sk)),
        {"name": "z", "source": "zego", "app_id": 1, "server_secret": "server-secret-42",
         "api_token_env": "MONITORD_TEST_TOKEN"},
    ]})
    rtc, zego = config.target("rtc"), config.target("z")
    assert rtc.ak.get_secret_value() == "ak-from-the-env-42" and rtc.sk.get_secret_value() == "sk-from-a-file-42"
    assert zego.api_token.get_secret_value() == "token-from-the-env-42"
    for secret in ("ak-from-the-env-42", "sk-from-a-file-42", "token-from-the-env-42"):
        assert secret not in repr(config)
        assert logs.scrub(f"vendor said {secret}") == f"vendor said {logs.REDACTED}"
    assert any("give only one of ak and ak_env" in p
               for p in problems_of({"targets": [huawei(ak="x", ak_env="MONITORD_TEST_AK", sk="y")]}))


def test_a_model_with_an_optional_secret_gets_the_spellings_when_first_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which fields are secrets is computed once per model class (cached): a class made here is seen for the
    first time, so this proves the `Secret | None` detection itself, not a cache filled by an earlier test."""

    class Local(TargetConfig):
        source: Literal["local"]
        token: Secret | None = None

    class LocalSource:
        Config = Local

    monkeypatch.setenv("MONITORD_TEST_TOKEN", "token-from-the-env-43")
    registry: Any = {"local": LocalSource}
    config = parse({"targets": [{"name": "l", "source": "local", "token_env": "MONITORD_TEST_TOKEN"}]}, registry)
    assert config.target("l").token.get_secret_value() == "token-from-the-env-43"
    monkeypatch.delenv("MONITORD_TEST_NOPE", raising=False)
    with secret_placeholders() as missing:
        parse({"targets": [{"name": "l", "source": "local", "token_env": "MONITORD_TEST_NOPE"}]}, registry)
    assert missing == ["env MONITORD_TEST_NOPE"]


def test_bad_values_in_secret_fields_never_reach_the_messages(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A problem names the key and what is wrong, never the value given: an inline secret of the wrong type,
    next to other problems, appears in no problem, in no ConfigError text and not in check-config's output."""
    from monitord.__main__ import main

    leaks = ["inline-secret-4711", "listed-secret-4711", "mapped-secret-4711", "zego-secret-4711"]
    raw = {"targets": [
        endpoint(password=["listed-secret-4711"], interval="0s"),
        huawei(name="r2", ak={"mapped-secret-4711": 1}, sk="inline-secret-4711", auth="nope"),
        {"name": "z", "source": "zego", "app_id": "1", "server_secret": "zego-secret-4711", "api_token": 5},
    ]}
    found = problems_of(raw)
    assert "targets[0].password: Input should be a valid string" in found
    assert "targets[1].ak: a secret is a string, {file: PATH} or {env: NAME}" in found
    assert "targets[2].api_token: Input should be a valid string" in found
    path = tmp_path / "leaky.yml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert main(["check-config", "--config.file", str(path)]) == 1
    out = capsys.readouterr()
    for leak in leaks:
        assert not any(leak in p for p in found), leak
        assert leak not in str(info.value) and leak not in out.err and leak not in out.out, leak


def test_the_duration_limit_is_inclusive() -> None:
    assert parse({"targets": [endpoint(interval="366d")]}).targets[0].interval == MAX_DURATION
    assert problems_of({"targets": [endpoint(interval=MAX_DURATION + 1)]}) == [
        f"targets[0].interval: must be at most 366d, got {MAX_DURATION + 1!r}"]


def test_the_size_limit_is_inclusive_and_a_long_value_is_cut_in_the_message() -> None:
    assert parse({"global": {"max_body_bytes": "1GiB"}, "targets": []}).global_.max_body_bytes == 1024**3
    assert parse({"global": {"max_body_bytes": 1024**3}, "targets": []}).global_.max_body_bytes == 1024**3
    # Digits of pi: other tests register secrets such as "9999..." with the process-wide scrubber.
    long = "314159265358979323846264338327950288419716939937510582097494"
    assert problems_of({"global": {"max_body_bytes": long}, "targets": []}) == [
        "global.max_body_bytes: expected a positive size like 4MiB, 512KiB (at most 1GiB), got " + repr(long[:40])]


def test_url_problems_word_for_word() -> None:
    assert problems_of({"targets": [endpoint(url="http://h/?a=1")]}) == [
        "targets[0].url: URL must not have a query or fragment"]
    assert problems_of({"targets": [endpoint(url="http://[::1")]}) == ["targets[0].url: not a URL: Invalid IPv6 URL"]
    # Only slashes are trimmed, whatever the path ends with.
    assert parse({"targets": [endpoint(url="http://h/apiX/")]}).targets[0].url == "http://h/apiX"


@pytest.mark.parametrize(("value", "parsed"), [
    ("127.0.0.1:80", ("127.0.0.1", 80)), (":80", ("0.0.0.0", 80)), ("[::1]:9", ("::1", 9)),
    ("hostX:1", ("hostX", 1)), (":0", ("0.0.0.0", 0)), (":65535", ("0.0.0.0", 65535)),
])
def test_listen_addresses(value: str, parsed: tuple[str, int]) -> None:
    assert parse_listen_address(value) == parsed
    assert parse({"web": {"listen_address": value}, "targets": []}).web.listen_address == value


@pytest.mark.parametrize(("value", "message"), [
    (":65536", "port must be 0-65535, got 65536"),
    (":000080", "port must be 0-65535, got 000080"),
    ("10520", "must be HOST:PORT, e.g. 127.0.0.1:10520 or :10520, got '10520'"),
    ("h:\u0663", "must be HOST:PORT, e.g. 127.0.0.1:10520 or :10520, got 'h:\u0663'"),
    ("h:x", "must be HOST:PORT, e.g. 127.0.0.1:10520 or :10520, got 'h:x'"),
])
def test_listen_addresses_that_are_refused(value: str, message: str) -> None:
    assert problems_of({"web": {"listen_address": value}, "targets": []}) == [f"web.listen_address: {message}"]


def test_a_source_of_another_type_is_named_by_its_type() -> None:
    assert problems_of({"targets": [endpoint(source=5)]})[0].endswith("; got a int")
    assert problems_of({"targets": [endpoint(source=None)]})[0].endswith("; got a null")


def test_a_long_unknown_source_is_cut_in_the_message() -> None:
    found = problems_of({"targets": [endpoint(source="s" * 100)]})
    assert found[0].startswith(f"targets[0].source: unknown source {'s' * 64!r} (known: ")


def test_a_mapping_field_given_a_scalar_says_so() -> None:
    avd = {"name": "a", "source": "avd", "url": "http://h", "access_key": "k", "secret_key": "s"}
    assert problems_of({"targets": [{**avd, "record_states": 5}]}) == ["targets[0].record_states: must be a mapping"]


def test_a_bad_entry_does_not_hide_the_entries_after_it() -> None:
    later = endpoint(name="later", interval="0s")
    for bad in ({"name": "x"}, endpoint(name="x", source="nope"), endpoint()):
        found = problems_of({"targets": [endpoint(), bad, later]})
        assert any(p.startswith("targets[2].interval: ") for p in found), (bad, found)


def test_targets_are_checked_even_when_the_top_level_keys_are_not() -> None:
    found = problems_of({"global": {"interval": "0s"}, "targets": [endpoint(interval="5s", timeout="6s")]})
    assert found == ["global.interval: must be greater than 0"]


def test_where_a_problem_comes_from(tmp_path: Path) -> None:
    for raw, problem in ((None, "(top level): the file is empty; it needs at least a `targets:` list"),
                         ([1], "(top level): must be a mapping")):
        with pytest.raises(ConfigError) as info:
            parse(raw)
        assert info.value.source == "" and str(info.value) == problem
        with pytest.raises(ConfigError) as info:
            parse(raw, source="x.yml")
        assert info.value.source == "x.yml" and info.value.problems == [problem]
    with pytest.raises(ConfigError) as info:
        loads("targets: [1]")
    assert info.value.source == "<string>"


def test_load_and_loads_use_the_registry_they_are_given(tmp_path: Path) -> None:
    from monitord.sources import REGISTRY

    only_endpoint = {"endpoint": REGISTRY["endpoint"]}
    text = yaml.safe_dump({"targets": [endpoint(), {"name": "p", "source": "polyv"}]})
    path = tmp_path / "c.yml"
    path.write_text(text)
    for call in (lambda: loads(text, only_endpoint), lambda: load(path, only_endpoint)):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.problems == ["targets[1].source: unknown source 'polyv' (known: endpoint)"]


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.yml")
    assert info.value.problems == ["cannot read file: No such file or directory"]
    huge = tmp_path / "huge.yml"
    with huge.open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ConfigError) as info:
        load(huge)
    assert info.value.source == str(huge) and info.value.problems == ["file is larger than 64 MiB"]
    latin1 = tmp_path / "latin1.yml"
    latin1.write_bytes(b"\n# caf\xe9\ntargets: []\n")
    with pytest.raises(ConfigError) as info:
        load(latin1)
    assert info.value.source == str(latin1)
    assert info.value.problems == ["(yaml) line 2: not UTF-8 text (byte 0xe9 at offset 6)"]


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    head = b"targets: []\n#"
    with path.open("wb") as fh:
        fh.write(head + b"x" * (MAX_FILE_BYTES - len(head) - 1) + b"\n")
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load(path).targets == ()


def test_a_stream_is_refused_once_past_the_limit_without_waiting_for_its_end(tmp_path: Path) -> None:
    """Only the limit plus one byte is read: a pipe that never ends (or a file that grows) cannot make the
    loader read without bound."""
    fifo = tmp_path / "config.yml"
    os.mkfifo(fifo)
    done = threading.Event()
    waited_out: list[bool] = []

    def writer() -> None:
        with contextlib.suppress(BrokenPipeError), fifo.open("wb") as fh:
            for _ in range(MAX_FILE_BYTES // 2**20 + 1):
                fh.write(b"#" * 2**20)
            # Keep the pipe open (no end of file) until the loader has answered; the deadline only
            # ends the test if a loader reads to the end of the stream.
            waited_out.append(not done.wait(120))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with pytest.raises(ConfigError, match="file is larger than 64 MiB"):
            load(fifo)
    finally:
        done.set()
        thread.join()
    assert waited_out in ([], [False]), "the loader waited for the end of the stream"


def test_a_secret_file_problem_names_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(b"\xff\xfe")
    assert problems_of({"targets": [endpoint(password_file=str(secret))]}) == [
        f"targets[0].password: secret file {str(secret)!r} is not UTF-8 text"]
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with secret_placeholders() as missing:
        parse({"targets": [endpoint(password_file=str(empty))]})
    assert missing == [f"file {empty}"]


def test_looking_up_targets_and_their_scaled_timings() -> None:
    config = parse({"global": {"time_scale": 4, "interval": "40s", "timeout": "8s"},
                    "targets": [endpoint(), endpoint(name="own", interval="20s", timeout="2s")]})
    assert config.interval_of(config.target("room")) == 10 and config.timeout_of(config.target("room")) == 2
    assert config.interval_of(config.target("own")) == 5 and config.timeout_of(config.target("own")) == 0.5
    with pytest.raises(KeyError) as info:
        config.target("nope")
    assert info.value.args == ("nope",)
