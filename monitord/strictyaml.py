"""Strict YAML reading for the config file: libyaml's speed, YAML 1.2 booleans, no duplicate
keys, no lists or mappings as keys, a bounded nesting depth, and every problem, whatever part of
the loader finds it, as one YamlProblem naming its line and column."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Any, Final

import yaml


class YamlProblem(ValueError):
    """The file is not YAML monitord can read; the message says where and why."""


_BOOL_TAG: Final = "tag:yaml.org,2002:bool"


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads yes/no/on/off as booleans, which
    turns a channel named "no" into False and lets `yes` pass for a bool."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_Resolver.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

# A config is a handful of levels deep; libyaml's composer recurses in C and overflows the stack
# (SIGSEGV, not an exception) somewhere below 50k levels, so deeper documents are refused first.
MAX_DEPTH: Final = 64

if yaml.__with_libyaml__:
    from yaml._yaml import CParser
    from yaml.constructor import SafeConstructor

    class _Base(CParser, SafeConstructor, _Resolver):
        """libyaml's scanner, parser and composer: 3-4x faster than PyYAML's."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            _Resolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml
    class _Base(  # type: ignore[no-redef]
        yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
        yaml.constructor.SafeConstructor, _Resolver,
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            _Resolver.__init__(self)


_STARTS: Final = frozenset({yaml.MappingStartEvent, yaml.SequenceStartEvent})
_ENDS: Final = frozenset({yaml.MappingEndEvent, yaml.SequenceEndEvent})


def _check_depth(text: str) -> None:
    """Walk the parser's events (no composing, cheap) and refuse a document nested too deeply."""
    depth = 0
    parser = _Base(text)
    get_event = parser.get_event
    try:
        while (kind := type(event := get_event())) is not yaml.StreamEndEvent:
            if kind in _STARTS:
                depth += 1
                if depth > MAX_DEPTH:
                    mark: Any = getattr(event, "start_mark", None)  # libyaml's Mark has line and column
                    raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            elif kind in _ENDS:
                depth -= 1
    finally:
        parser.dispose()


class _StrictLoader(_Base):
    """Safe loading that rejects duplicate keys (YAML silently keeps the last one, which hides
    typos) and lists or mappings as keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Merge keys (<<) may be overridden by the mapping's own keys; only own keys may not repeat.
        own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        own_keys: set[Any] = set()
        first_own = len(node.value) - own
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable) or isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "a list or mapping cannot be a key", key_node.start_mark)
            if index >= first_own:
                if key in own_keys:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
                own_keys.add(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _explained(constructor: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A scalar constructor whose ValueError (a 5,000-digit integer, a 13th month) becomes a
    YAMLError at the value's line and column."""

    def construct(loader: Any, node: Any) -> Any:
        try:
            return constructor(loader, node)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {str(exc)[:200]}", node.start_mark) from None

    return construct


for _tag, _constructor in (("int", yaml.constructor.SafeConstructor.construct_yaml_int),
                           ("timestamp", yaml.constructor.SafeConstructor.construct_yaml_timestamp)):
    _StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _explained(_constructor))


def read(text: str) -> Any:
    """The one document in `text`, or YamlProblem."""
    try:
        _check_depth(text)
        loader = _StrictLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise YamlProblem(f"line {line}: unacceptable character #x{char:04x}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        if context and not context.startswith("while"):  # "expected a single document", ...
            problem = f"{context}, {problem}"
        raise YamlProblem(f"{where}{problem}") from None
    except RecursionError:
        raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # what the constructor let through
        raise YamlProblem(f"cannot read the file: {type(exc).__name__}: {str(exc)[:200]}") from None
