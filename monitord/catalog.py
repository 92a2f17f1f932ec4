"""The metric catalog, generated from the metric tables in code (README and docs/metrics.md are
checked against it by a test, so the documentation cannot drift)."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from monitord import selfmetrics
from monitord.config import GlobalConfig, HTTPClientConfig, WebConfig, _optional_secret
from monitord.metrics import MetricDef, check_catalog
from monitord.sources import REGISTRY


def entries() -> list[tuple[str, MetricDef]]:
    """(where, metric) for every metric: "monitord" for self-metrics, else the source kind.
    A name shared by several sources appears once per source, with that source's labels."""
    rows: list[tuple[str, MetricDef]] = [("monitord", m) for m in selfmetrics.ALL]
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


_FRIENDLY = (("dict[str", "mapping"), ("_parse_duration", "duration"), ("_parse_size", "size"),
             ("_check_base_url", "URL"),
             ("Literal", "name"), ("Path", "path"), ("tuple[int", "list of int"), ("tuple[str", "list of str"),
             ("bool", "bool"), ("int", "int"), ("float", "number"), ("str", "string"))


def _type_name(field: FieldInfo) -> str:
    text = repr(field.annotation) + repr(field.metadata)
    return next((name for marker, name in _FRIENDLY if marker in text), "value")


def _model_rows(prefix: str, model: type[BaseModel]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            rows.extend(_model_rows(key + ".", field.annotation))
            continue
        secret = (any(type(m).__name__ == "_SecretMarker" for m in field.metadata)
                  or _optional_secret(field.annotation))
        kind = "secret" if secret else _type_name(field)
        if field.is_required():
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            default = f"`{value}`" if value not in (None, (), [], {}) else "-"
        description = (field.description or ("The source kind, as written." if name == "source" else ""))
        description = description.replace("|", "\\|")
        if secret:
            description += f" Also `{name}_file` / `{name}_env`."
        rows.append(f"| `{key}` | {kind} | {default} | {description} |")
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
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent / "README.md"
    readme.write_text(render_readme(readme.read_text()))
    print(f"updated {readme}")
