"""The configuration file: strict YAML validated by pydantic, every problem reported at once.

Each source declares its own target model (a subclass of TargetConfig); the file's `targets`
list is validated entry by entry against the model of the entry's `source`, so an error names
`targets[3].password` rather than a discriminated-union path.

Secrets are never required inline: any secret field `x` also accepts `x_file: PATH` or
`x_env: NAME`, or the mapping forms `x: {file: PATH}` / `x: {env: NAME}`.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from monitord import logs, strictyaml

if TYPE_CHECKING:
    from monitord.sources.base import Source

DEFAULT_PORT: Final = 10520
DEFAULT_LISTEN_ADDRESS: Final = f"0.0.0.0:{DEFAULT_PORT}"


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` lists every one as "key.path: message"."""

    def __init__(self, problems: Sequence[str], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(self.problems))


# ---------------------------------------------------------------------------------------- types

_DURATION_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Longer than anything a poll schedule needs, short enough for datetime arithmetic (the scheduler's
# timedelta overflows near 2.7 million years, a YAML float reaches 1e308).
MAX_DURATION: Final = 366 * 86400.0


def _parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 500ms, 5m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"expected a duration like 30s, 500ms, 5m, got {value!r}")
    # `.nan <= 0` is False: test finiteness first, or NaN and infinity pass as "positive".
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration, got {value!r}")
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    if seconds > MAX_DURATION:
        raise ValueError(f"must be at most {MAX_DURATION / 86400:.0f}d, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(_parse_duration)]

_SIZE_RE: Final = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS: Final = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


MAX_SIZE: Final = 1024**3


def _parse_size(value: Any) -> int:
    size = 0
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)) and len(m.group(1)) < 20:
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2) or "B"]
    if not 0 < size <= MAX_SIZE:
        raise ValueError(f"expected a positive size like 4MiB, 512KiB (at most 1GiB), got {str(value)[:40]!r}")
    return size


ByteSize = Annotated[int, BeforeValidator(_parse_size)]


def _check_base_url(value: str) -> str:
    from yarl import URL

    try:
        url = URL(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise ValueError(f"URL scheme must be http or https, got {url.scheme or 'none'!r}")
    if not url.host:
        raise ValueError("URL has no host")
    if url.user or url.password:
        raise ValueError("URL must not carry credentials; use the target's secret fields")
    if url.query_string or url.fragment:
        raise ValueError("URL must not have a query or fragment")
    return str(url).rstrip("/")


BaseURL = Annotated[str, AfterValidator(_check_base_url)]


_HOST_RE: Final = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])?$")


def parse_listen_address(value: str) -> tuple[str, int]:
    """HOST:PORT (HOST may be empty for every address, or a bracketed IPv6 address)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not _HOST_RE.match(host):
        raise ValueError(f"must be HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT} or :{DEFAULT_PORT}, got {value!r}")
    if len(port) > 5 or not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be 0-65535, got {port}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _check_listen_address(value: str) -> str:
    parse_listen_address(value)
    return value


ListenAddress = Annotated[str, AfterValidator(_check_listen_address)]


def _check_state_dir(value: Path) -> Path:
    """A directory the daemon can write, or one it can create: found now, not at the first save."""
    path = value.expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{str(value)!r} exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"directory {str(value)!r} is not writable")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"cannot be created: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot be created: directory {str(parent)!r} is not writable")
    return path


# Strict models take no str for a Path: a YAML path is a string.
FilePath = Annotated[Path, Field(strict=False)]
StateDir = Annotated[Path, Field(strict=False), AfterValidator(_check_state_dir)]


# While set (check-config --secrets.placeholders), a secret whose environment variable or file is
# missing is replaced by a placeholder and its name recorded, so a config can be checked on a
# machine that does not hold the production secrets. Never set by `run` or `once`.
_placeholders: ContextVar[list[str] | None] = ContextVar("secret_placeholders", default=None)


@contextmanager
def secret_placeholders() -> Iterator[list[str]]:
    """Within the block, missing secret sources validate as placeholders; yields the list of
    what was stood in for (`env NAME` / `file PATH`)."""
    missing: list[str] = []
    token = _placeholders.set(missing)
    try:
        yield missing
    finally:
        _placeholders.reset(token)


def _placeholder(what: str, problem: str) -> str:
    missing = _placeholders.get()
    if missing is None:
        raise ValueError(problem)
    missing.append(what)
    return "placeholder-not-a-secret"


class _SecretMarker:
    """Marks a field as a secret, so `x_file` / `x_env` spellings are accepted for it."""


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _resolve_secret(value: Any) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"file"}:
            path = Path(str(value["file"]))
            try:
                text = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                return _placeholder(f"file {path}", f"cannot read secret file {str(path)!r}: {exc.strerror}")
            except UnicodeDecodeError:
                raise ValueError(f"secret file {str(path)!r} is not UTF-8 text") from None
            if not text:
                return _placeholder(f"file {path}", f"secret file {str(path)!r} is empty")
            value = text
        elif set(value) == {"env"}:
            name = str(value["env"])
            if not _ENV_NAME.fullmatch(name):
                # Not quoted: what is written where a variable's name belongs is often the secret.
                raise ValueError("env must name an environment variable (letters, digits and _; "
                                 "is the secret itself written there?)")
            text = os.environ.get(name, "")
            if not text:
                return _placeholder(f"env {name}", f"environment variable {name!r} is not set or empty")
            value = text
        else:
            raise ValueError("a secret is a string, {file: PATH} or {env: NAME}")
    if isinstance(value, str):
        logs.register_secret(value)
    return value


Secret = Annotated[SecretStr, _SecretMarker(), BeforeValidator(_resolve_secret)]


def _optional_secret(annotation: Any) -> bool:
    """`Secret | None`: pydantic keeps the marker inside the union member, not in the field's metadata."""
    return any(isinstance(m, _SecretMarker) for arg in get_args(annotation) for m in getattr(arg, "__metadata__", ()))


# --------------------------------------------------------------------------------------- models


@functools.cache
def _secret_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    return tuple(
        name for name, f in cls.model_fields.items()
        if any(isinstance(m, _SecretMarker) for m in f.metadata) or _optional_secret(f.annotation)
    )


class StrictModel(BaseModel):
    # strict: "100" is not an int and "yes" not a bool (YAML 1.1 would have read yes as true).
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True,
                              allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _secret_spellings(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        secret_fields = _secret_fields(cls)
        if not secret_fields:
            return data
        data = dict(data)
        for name in secret_fields:
            for suffix in ("file", "env"):
                key = f"{name}_{suffix}"
                if key in data:
                    if name in data:
                        raise ValueError(f"give only one of {name} and {key}")
                    data[name] = {suffix: data.pop(key)}
        return data


class TLSConfig(StrictModel):
    ca_file: FilePath | None = Field(None, description="PEM bundle to verify the vendor's certificate with.")
    insecure_skip_verify: bool = Field(
        False, description="Turn certificate verification off for this target only (logged once)."
    )

    @model_validator(mode="after")
    def _ca_readable(self) -> TLSConfig:
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {str(self.ca_file)!r} does not exist")
        return self


TargetName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")]


class TargetConfig(StrictModel):
    """Keys every target has. Sources subclass this and narrow `source` to their own name."""

    name: TargetName = Field(description="Unique name; the `target` label of every series.")
    source: str = Field(description="Which kind of vendor system this is.")
    interval: Duration | None = Field(None, description="Poll interval (default: global.interval).")
    timeout: Duration | None = Field(None, description="Deadline of one whole poll (default: global.timeout).")
    tls: TLSConfig = Field(default_factory=TLSConfig)


class GlobalConfig(StrictModel):
    interval: Duration = Field(30.0, description="Default poll interval.")
    timeout: Duration = Field(10.0, description="Default per-poll deadline; must not exceed the interval.")
    jitter: float = Field(0.1, ge=0.0, le=0.5, description="Random spread of each poll, as a fraction of the interval.")
    max_body_bytes: ByteSize = Field(4 * 1024**2, description="Largest vendor response body read.")
    max_series_per_target: int = Field(
        20_000, gt=0, le=10_000_000, description="Series cap per target; excess is counted, not exposed."
    )
    state_dir: StateDir | None = Field(
        None, description="Where small persistent state lives (event high-water marks, task lists); "
        "a writable directory, created if missing."
    )
    time_scale: float = Field(
        1.0, gt=0.0, le=1000.0,
        description="Testing aid, leave at 1 in production: every exporter timing (intervals, timeouts, holds, "
                    "retention, budget windows and pacing) is divided by it. `monitord demo --time-scale` sets it.",
    )


class HTTPClientConfig(StrictModel):
    connect_timeout: Duration = Field(5.0, description="TCP+TLS connect timeout.")
    read_timeout: Duration = Field(10.0, description="Longest silence while reading a response.")
    max_connections: int = Field(100, gt=0, le=100_000, description="Open connections across all targets.")
    max_connections_per_host: int = Field(4, gt=0, le=10_000, description="Open connections to one host.")
    user_agent: str = Field("monitord", pattern=r"^[\x20-\x7e]{1,200}$",
                            description="User-Agent header sent to vendors.")


class WebConfig(StrictModel):
    listen_address: ListenAddress = Field(
        DEFAULT_LISTEN_ADDRESS, description="HOST:PORT of /metrics (flag --web.listen-address wins)."
    )


class Config(StrictModel):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    http: HTTPClientConfig = Field(default_factory=HTTPClientConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    targets: tuple[Any, ...] = Field(default_factory=tuple)

    def target(self, name: str) -> TargetConfig:
        for t in self.targets:
            # `targets` is tuple[Any, ...] so each entry keeps its source's own model; parse() only
            # ever puts TargetConfig subclasses there.
            if isinstance(t, TargetConfig) and t.name == name:
                return t
        raise KeyError(name)

    def interval_of(self, target: TargetConfig) -> float:
        return (target.interval or self.global_.interval) / self.global_.time_scale

    def timeout_of(self, target: TargetConfig) -> float:
        return (target.timeout or self.global_.timeout) / self.global_.time_scale


# -------------------------------------------------------------------------------------- loading


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _messages(exc: ValidationError, prefix: Sequence[int | str] = ()) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [*prefix, *err["loc"]]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "missing required key"
        elif err["type"] == "tuple_type":
            msg = "must be a list"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            msg = "must be a mapping"
        elif err["type"] == "path_type":
            msg = "must be a path (a string)"
        msg = msg.removeprefix("Value error, ")
        problems.append(f"{_path(loc)}: {logs.scrub(msg)}")
    return problems


def _tuples(value: Any) -> Any:
    """YAML sequences as tuples: the models are frozen, and strict validation takes no list for a tuple."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def parse(raw: Any, registry: Mapping[str, type[Source[Any]]] | None = None, source: str = "") -> Config:
    """Validate an already-loaded YAML document."""
    if registry is None:
        from monitord.sources import REGISTRY

        registry = REGISTRY
    problems: list[str] = []
    if raw is None:
        raise ConfigError(["(top level): the file is empty; it needs at least a `targets:` list"], source)
    if not isinstance(raw, Mapping):
        raise ConfigError(["(top level): must be a mapping"], source)
    raw = _tuples(raw)
    raw_targets = raw.get("targets", ())
    if not isinstance(raw_targets, tuple):
        problems.append("targets: must be a list")
        raw_targets = ()
    try:
        config = Config.model_validate({**raw, "targets": ()})
    except ValidationError as exc:
        problems.extend(_messages(exc))
        config = None
    targets = []
    names: dict[str, int] = {}
    known = ", ".join(sorted(registry))
    for index, entry in enumerate(raw_targets):
        where: list[int | str] = ["targets", index]
        if not isinstance(entry, Mapping):
            problems.append(f"{_path(where)}: must be a mapping")
            continue
        kind = entry.get("source")
        if "source" not in entry:
            problems.append(f"{_path([*where, 'source'])}: missing required key: which vendor system this "
                            f"target is (one of: {known})")
            continue
        # A list or mapping here is unhashable: test the type first, or `in` raises TypeError.
        if not isinstance(kind, str):
            problems.append(f"{_path([*where, 'source'])}: must be a string, one of: {known}; got a {_kind(kind)}")
            continue
        if kind not in registry:
            problems.append(f"{_path([*where, 'source'])}: unknown source {kind[:64]!r} (known: {known})")
            continue
        try:
            target = registry[kind].Config.model_validate(entry)
        except ValidationError as exc:
            problems.extend(_messages(exc, where))
            continue
        if target.name in names:
            problems.append(
                f"{_path([*where, 'name'])}: duplicate target name {target.name!r} (also targets[{names[target.name]}])"
            )
            continue
        names[target.name] = index
        targets.append(target)
    if config is not None:
        for target in targets:
            timeout = target.timeout or config.global_.timeout
            interval = target.interval or config.global_.interval
            if timeout > interval:
                problems.append(
                    f"targets[{names[target.name]}].timeout: {timeout}s exceeds the interval "
                    f"{interval}s; two polls of one target would overlap"
                )
    if problems:
        raise ConfigError(problems, source)
    assert config is not None
    return config.model_copy(update={"targets": tuple(targets)})


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    return "null" if value is None else type(value).__name__


# 10,000 targets take about 1.2 MB.
MAX_FILE_BYTES: Final = 64 * 1024**2


def load(path: str | os.PathLike[str], registry: Mapping[str, type[Source[Any]]] | None = None) -> Config:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"cannot read file: {exc.strerror or exc}"], str(path)) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([f"file is larger than {MAX_FILE_BYTES // 1024**2} MiB"], str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"(yaml) line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"],
                          str(path)) from None
    return loads(text, registry, str(path))


def loads(text: str, registry: Mapping[str, type[Source[Any]]] | None = None, source: str = "<string>") -> Config:
    try:
        raw = strictyaml.read(text)
    except strictyaml.YamlProblem as exc:
        raise ConfigError([f"(yaml) {exc}"], source) from None
    return parse(raw, registry, source)
