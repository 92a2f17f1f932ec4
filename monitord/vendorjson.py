"""JSON from outside (vendor answers, callbacks) decoded with bounds.

`json.loads` recurses once per nesting level: a body of 100,000 `[` raises RecursionError, which
is not a ValueError and escapes every `except ValueError`. And a document that does load may
still be nested deep enough to exhaust the stack of whatever walks it next (repr, json.dumps,
a state file). No vendor answer we read is nested more than a handful of levels, so anything
deeper than MAX_DEPTH is refused as a whole, like any other body that is not the vendor's JSON.

`NaN`, `Infinity` and `-Infinity` are not JSON (RFC 8259) although Python accepts them: they are
refused too. A number too large for a float (`1e400`) is valid JSON and decodes to inf; the
field parsers (monitord.normalize) read it as an invalid value of that one field.
"""

from __future__ import annotations

import json
from typing import Any, Final

MAX_DEPTH: Final = 64


class JSONError(ValueError):
    """The text is not JSON, or not JSON we accept (too deep, non-standard constants)."""


def _no_constants(name: str) -> Any:
    raise JSONError(f"{name} is not JSON")


def loads(data: bytes | bytearray | str) -> Any:
    """Decode JSON text; JSONError (a ValueError) for anything that is not bounded, standard JSON,
    including bytes that are not UTF-8."""
    try:
        value = json.loads(data, parse_constant=_no_constants)
    except RecursionError:
        raise JSONError(f"nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise JSONError("not UTF-8") from None
    except JSONError:
        raise
    except ValueError as exc:
        raise JSONError(str(exc)) from None
    if too_deep(value):
        raise JSONError(f"nested deeper than {MAX_DEPTH} levels")
    return value


_CONTAINERS: Final = (dict, list)


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists/objects nest deeper than `limit`. Level by level, iteratively (safe on any
    depth); `json.loads` makes exact dicts and lists, so a class check is enough and keeps a
    4 MiB answer to tens of milliseconds."""
    level: list[Any] = [value] if value.__class__ in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            children = item.values() if item.__class__ is dict else item
            below += [child for child in children if child.__class__ in _CONTAINERS]
        level = below
    return False
