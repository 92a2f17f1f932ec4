"""The secret scrubber: every text that leaves the process passes through `scrub`.

Code never writes a secret on purpose. The scrubber exists because vendors quote requests back
in their error texts, and libraries put URLs and bodies in exceptions: a secret then arrives
raw, percent-encoded (a query string: `secret_key=a%2Bb`, with upper- or lower-case hex),
form-encoded (`a+b` for a space), JSON-escaped (`\\u00fc`, `\\"`) or repr-escaped. Every one of
those forms of every registered secret is replaced by REDACTED, in one pass, so a replacement is
never scanned again: a secret that happens to be part of the marker ("dact") cannot mangle it.

Minimum length: secrets shorter than MIN_LENGTH (6) characters are not scrubbed. A secret of one
to five characters ("a", "admin", "12345") occurs by chance in ordinary words, numbers and URLs,
and scrubbing it would garble every message while protecting little (so short a secret is
guessable anyway). Such secrets rely on the code never quoting them; use longer ones.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, quote_plus

from yarl import URL

REDACTED: Final = "<redacted>"
MIN_LENGTH: Final = 6
# Vendor texts quoted in error details are bounded to this many characters (after scrubbing, so
# a cut never leaves half a secret behind).
MAX_QUOTED: Final = 200

_HEX_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def forms(secret: str) -> set[str]:
    """The ways `secret` can be written in a URL, a form body, a JSON document or a repr."""
    query = URL.build(scheme="http", host="h", query={"k": secret}).raw_query_string[2:]
    out = {
        secret,
        quote(secret, safe=""),
        quote(secret, safe="/"),
        quote_plus(secret, safe=""),
        query,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    }
    return {f for f in out if f}


def _regex_of(form: str) -> str:
    """A literal pattern for one form; percent-escapes match either case of their hex digits."""
    parts: list[str] = []
    pos = 0
    for m in _HEX_ESCAPE.finditer(form):
        parts.append(re.escape(form[pos:m.start()]))
        parts.append("%" + "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in m.group(1)))
        pos = m.end()
    parts.append(re.escape(form[pos:]))
    return "".join(parts)


def compile_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One alternation of every form of every secret, longest first, the marker itself first of
    all (matched and kept, so it is never partly replaced)."""
    all_forms = {f for s in secrets if len(s) >= MIN_LENGTH for f in forms(s)}
    if not all_forms:
        return None
    ordered = sorted(all_forms, key=lambda f: (-len(f), f))
    return re.compile("|".join([re.escape(REDACTED), *(_regex_of(f) for f in ordered)]))


def _substitute(pattern: re.Pattern[str] | None, text: str) -> str:
    if pattern is None:
        return text
    return pattern.sub(REDACTED, text)


def register(value: str) -> None:
    """Add a secret (config values at load time; tokens when a vendor issues them)."""
    global _pattern
    if len(value) < MIN_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        _pattern = compile_pattern(_secrets)


def scrub(text: str) -> str:
    """`text` with every form of every registered secret replaced by REDACTED."""
    return _substitute(_pattern, text)


def scrub_with(text: str, extra: Iterable[str]) -> str:
    """Like scrub, also for secrets known only to the caller."""
    return _substitute(compile_pattern([s for s in extra if s]), scrub(text))


def quote_vendor(text: str, extra: Iterable[str] = (), limit: int = MAX_QUOTED) -> str:
    """A vendor's message, safe to put in an error detail: scrubbed, on one line, then bounded."""
    text = " ".join(scrub_with(text, extra).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
