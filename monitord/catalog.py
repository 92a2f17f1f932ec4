"""The metric catalog, generated from the metric tables in code (README and docs/metrics.md are
checked against it by a test, so the documentation cannot drift)."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from monitord import process, selfmetrics
from monitord.config import (
    GlobalConfig,
    HTTPClientConfig,
    WebConfig,
    _check_base_url,
    _optional_secret,
    _parse_duration,
    _parse_size,
    _SecretMarker,
)
from monitord.metrics import MetricDef, check_catalog
from monitord.sources import REGISTRY


def entries() -> list[tuple[str, MetricDef]]:
    """(where, metric) for every metric: "monitord" for self-metrics, else the source kind.
    A name shared by several sources appears once per source, with that source's labels."""
    rows: list[tuple[str, MetricDef]] = [("monitord", m) for m in (*selfmetrics.ALL, *process.RUNTIME)]
    for kind in sorted(REGISTRY):
        rows.extend((kind, m) for m in REGISTRY[kind].metrics)
    check_catalog(m for _, m in rows)
    return rows


def markdown() -> str:
    lines = [
        "| metric | type | source | labels | help |",
        "|---|---|---|---|---|",
    ]
    for where, m in entries():
        labels = ", ".join(m.all_labels) or "-"
        lines.append(f"| `{m.sample_name}` | {m.type} | {where} | {labels} | {m.help} |")
    return "\n".join(lines) + "\n"


def _unwrap(annotation: Any, metadata: tuple[Any, ...] = ()) -> tuple[Any, tuple[Any, ...], bool]:
    """(bare type, its Annotated metadata, whether None is allowed) of a field annotation."""
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            optional = optional or len(members) < len(get_args(annotation))
            if len(members) != 1:
                return annotation, metadata, optional
            annotation = members[0]
        elif origin is Annotated:
            base, *extra = get_args(annotation)
            annotation, metadata = base, (*metadata, *extra)
        else:
            return annotation, metadata, optional


def _kind(annotation: Any, metadata: tuple[Any, ...] = ()) -> str:
    """What the config file writes for this type: duration, size, secret, one of `a`, `b`, list of ..."""
    bare, meta, _ = _unwrap(annotation, metadata)
    for m in meta:
        if isinstance(m, _SecretMarker):
            return "secret"
        func = getattr(m, "func", None)
        if func is _parse_duration:
            return "duration"
        if func is _parse_size:
            return "size"
        if func is _check_base_url:
            return "URL"
    origin = get_origin(bare)
    if origin is dict:
        return "mapping"
    if origin is Literal:
        return "one of " + ", ".join(f"`{v}`" for v in get_args(bare))
    if origin in (tuple, list):
        item = get_args(bare)[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            return "list of mappings"
        return "list of " + _kind(item).removeprefix("one of ")
    for python_type, name in ((bool, "bool"), (int, "int"), (float, "number"), (str, "string"), (Path, "path")):
        if bare is python_type:
            return name
    return "mapping" if isinstance(bare, type) and issubclass(bare, BaseModel) else "value"


def format_duration(seconds: float) -> str:
    """A duration as the config writes it: 30s, 500ms, 5m, 24h."""
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    millis = seconds * 1000
    return f"{int(millis)}ms" if millis.is_integer() else f"{seconds:g}s"


def format_size(size: int) -> str:
    """A byte size as the config writes it: 4MiB, 512KiB, 100B."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def _scalar(value: Any, kind: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind.endswith("duration"):
        return format_duration(float(value))
    if kind.endswith("size"):
        return format_size(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_default(value: Any, kind: str) -> str:
    """The default in the config's own syntax (YAML flow style for lists and mappings), or '-'
    for none."""
    if value is None:
        return "-"
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(_scalar(v, kind) for v in value) + "]`"
    if isinstance(value, dict):
        return "`{" + ", ".join(f"{_scalar(k, kind)}: {_scalar(v, kind)}" for k, v in value.items()) + "}`"
    return f"`{_scalar(value, kind)}`"


def _model_rows(prefix: str, model: type[BaseModel]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        bare, _, _ = _unwrap(field.annotation, tuple(field.metadata))
        if isinstance(bare, type) and issubclass(bare, BaseModel):
            rows.extend(_model_rows(key + ".", bare))
            continue
        secret = (any(isinstance(m, _SecretMarker) for m in field.metadata) or _optional_secret(field.annotation))
        kind = "secret" if secret else _kind(field.annotation, tuple(field.metadata))
        if field.is_required():
            default = "required"
        else:
            default = format_default(field.get_default(call_default_factory=True), kind)
        description = (field.description or ("The source kind, as written." if name == "source" else ""))
        description = description.replace("|", "\\|")
        if secret:
            description += f" Also `{name}_file` / `{name}_env`."
        rows.append(f"| `{key}` | {kind} | {default} | {description} |")
        if get_origin(bare) in (tuple, list):
            item = get_args(bare)[0]
            if isinstance(item, type) and issubclass(item, BaseModel):
                rows.extend(_model_rows(key + "[].", item))
    return rows


def config_markdown() -> str:
    """Every config key with its type, default and description, from the pydantic models."""
    head = ["| key | type | default | description |", "|---|---|---|---|"]
    parts = ["#### Daemon (`global`, `http`, `web`)\n", *head]
    for section, model in (("global", GlobalConfig), ("http", HTTPClientConfig), ("web", WebConfig)):
        parts.extend(_model_rows(section + ".", model))
    for kind in sorted(REGISTRY):
        cls = REGISTRY[kind]
        parts += ["", f"#### Targets of `source: {kind}` ({cls.description})\n", *head]
        parts.extend(_model_rows("", cls.Config))
    return "\n".join(parts) + "\n"


MARKERS = {
    "config": ("<!-- generated:config-reference -->", "<!-- end:config-reference -->", config_markdown),
    "metrics": ("<!-- generated:metric-catalog -->", "<!-- end:metric-catalog -->", markdown),
}


def render_readme(text: str) -> str:
    """README text with its generated sections replaced by what the code says now."""
    for start, end, generate in MARKERS.values():
        head, sep, rest = text.partition(start)
        if not sep:
            raise ValueError(f"README has no {start} marker")
        _, sep2, tail = rest.partition(end)
        if not sep2:
            raise ValueError(f"README has no {end} marker")
        text = f"{head}{start}\n{generate()}{end}{tail}"
    return text


if __name__ == "__main__":
    readme = Path(__file__).resolve().parent.parent / "README.md"
    readme.write_text(render_readme(readme.read_text()))
    print(f"updated {readme}")
