"""The configuration file: strict YAML validated by pydantic, every problem reported at once.

Each source declares its own target model (a subclass of TargetConfig); the file's `targets`
list is validated entry by entry against the model of the entry's `source`, so an error names
`targets[3].password` rather than a discriminated-union path.

Secrets are never required inline: any secret field `x` also accepts `x_file: PATH` or
`x_env: NAME`, or the mapping forms `x: {file: PATH}` / `x: {env: NAME}`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, get_args

import yaml
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

from monitord import logs

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

_DURATION_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 500ms, 5m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"expected a duration like 30s, 500ms, 5m, got {value!r}")
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    return seconds


Duration = Annotated[float, BeforeValidator(_parse_duration)]

_SIZE_RE: Final = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS: Final = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def _parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and (m := _SIZE_RE.match(value)):
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2) or "B"]
        if size > 0:
            return size
    raise ValueError(f"expected a positive size like 4MiB, 512KiB, got {value!r}")


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


def _resolve_secret(value: Any) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"file"}:
            path = Path(str(value["file"]))
            try:
                text = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                return _placeholder(f"file {path}", f"cannot read secret file {str(path)!r}: {exc.strerror}")
            if not text:
                return _placeholder(f"file {path}", f"secret file {str(path)!r} is empty")
            value = text
        elif set(value) == {"env"}:
            name = str(value["env"])
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


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _secret_spellings(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        secret_fields = [
            name for name, f in cls.model_fields.items()
            if any(isinstance(m, _SecretMarker) for m in f.metadata) or _optional_secret(f.annotation)
        ]
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
    ca_file: Path | None = Field(None, description="PEM bundle to verify the vendor's certificate with.")
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
        20_000, gt=0, description="Series cap per target; excess is counted, not exposed."
    )
    state_dir: Path | None = Field(
        None, description="Where small persistent state lives (event high-water marks, task lists)."
    )
    time_scale: float = Field(
        1.0, gt=0.0, le=1000.0,
        description="Testing aid, leave at 1 in production: every exporter timing (intervals, timeouts, holds, "
                    "retention, budget windows and pacing) is divided by it. `monitord demo --time-scale` sets it.",
    )


class HTTPClientConfig(StrictModel):
    connect_timeout: Duration = Field(5.0, description="TCP+TLS connect timeout.")
    read_timeout: Duration = Field(10.0, description="Longest silence while reading a response.")
    max_connections: int = Field(100, gt=0, description="Open connections across all targets.")
    max_connections_per_host: int = Field(4, gt=0, description="Open connections to one host.")
    user_agent: str = Field("monitord", description="User-Agent header sent to vendors.")


class WebConfig(StrictModel):
    listen_address: str = Field(
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


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys: YAML silently keeps the last one, which hides typos."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


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
        msg = msg.removeprefix("Value error, ")
        problems.append(f"{_path(loc)}: {logs.scrub(msg)}")
    return problems


def parse(raw: Any, registry: Mapping[str, type[Source[Any]]] | None = None, source: str = "") -> Config:
    """Validate an already-loaded YAML document."""
    if registry is None:
        from monitord.sources import REGISTRY

        registry = REGISTRY
    problems: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(["(top level): must be a mapping"], source)
    raw_targets = raw.get("targets", [])
    if not isinstance(raw_targets, list):
        problems.append("targets: must be a list")
        raw_targets = []
    try:
        config = Config.model_validate({**raw, "targets": ()})
    except ValidationError as exc:
        problems.extend(_messages(exc))
        config = None
    targets = []
    names: dict[str, int] = {}
    for index, entry in enumerate(raw_targets):
        where: list[int | str] = ["targets", index]
        if not isinstance(entry, Mapping):
            problems.append(f"{_path(where)}: must be a mapping")
            continue
        kind = entry.get("source")
        # A list or mapping here is unhashable: test the type first, or `in` raises TypeError.
        if not isinstance(kind, str) or kind not in registry:
            known = ", ".join(sorted(registry))
            problems.append(f"{_path([*where, 'source'])}: unknown source {kind!r} (known: {known})")
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


def load(path: str | os.PathLike[str], registry: Mapping[str, type[Source[Any]]] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read file: {exc}"], str(path)) from None
    return loads(text, registry, str(path))


def loads(text: str, registry: Mapping[str, type[Source[Any]]] | None = None, source: str = "<string>") -> Config:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"(yaml) {where}{problem}"], source) from None
    return parse(raw, registry, source)
