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
from collections import deque
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, quote_plus

from yarl import URL

REDACTED: Final = "<redacted>"
MIN_LENGTH: Final = 6
# Vendor texts quoted in error details are bounded to this many characters (after scrubbing, so
# a cut never leaves half a secret behind).
MAX_QUOTED: Final = 200

_HEX_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_MARKER_HEAD: Final = REDACTED[:MIN_LENGTH]


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


def _fold(text: str) -> str:
    """Percent-escapes in lower case (`%2B` and `%2b` are the same byte); the length is kept, so
    a position in the folded text is the same position in the original."""
    return _HEX_ESCAPE.sub(lambda m: m.group(0).lower(), text) if "%" in text else text


class _Index:
    """Forms of secrets by their first MIN_LENGTH characters, longest first. A scan looks up the
    text's slice at each position: the cost grows with the text, not with the number of
    secrets (a daemon with 10,000 targets has 10,000 of them; one big regex would take
    seconds to compile and milliseconds per log line)."""

    def __init__(self) -> None:
        self.by_prefix: dict[str, list[str]] = {}

    def add(self, secret: str) -> None:
        if len(secret) < MIN_LENGTH:
            return
        for form in forms(secret):
            folded = _fold(form)
            bucket = self.by_prefix.get(folded[:MIN_LENGTH], [])
            if folded not in bucket:
                # A new list, swapped in: a scrub on another thread never sees one half-sorted.
                self.by_prefix[folded[:MIN_LENGTH]] = sorted([*bucket, folded], key=len, reverse=True)


def _spans(text: str, indexes: list[_Index]) -> list[tuple[int, int]]:
    """Where forms of secrets are in `text`, left to right, never inside an earlier match or a
    REDACTED marker (so a marker is never partly replaced)."""
    tables = [i.by_prefix for i in indexes if i.by_prefix]
    if not tables or len(text) < MIN_LENGTH:
        return []
    folded = _fold(text)
    spans: list[tuple[int, int]] = []
    at, end = 0, len(folded) - MIN_LENGTH + 1
    while at < end:
        key = folded[at:at + MIN_LENGTH]
        if key == _MARKER_HEAD and folded.startswith(REDACTED, at):
            at += len(REDACTED)
            continue
        length = 0
        for table in tables:
            for form in table.get(key, ()):
                if len(form) > length and folded.startswith(form, at):
                    length = len(form)
                    break
        if length:
            spans.append((at, at + length))
            at += length
        else:
            at += 1
    return spans


def _substitute(text: str, indexes: list[_Index]) -> str:
    spans = _spans(text, indexes)
    if not spans:
        return text
    parts: list[str] = []
    last = 0
    for start, stop in spans:
        parts += [text[last:start], REDACTED]
        last = stop
    parts.append(text[last:])
    return "".join(parts)


_registered = _Index()
_lock = threading.Lock()
# Tokens vendors issue at run time: the newest MAX_TOKENS are scrubbed. A server that rejects
# tokens on every poll must not grow the scrubber for as long as the daemon runs; a token that
# old is long out of use and out of any error text.
MAX_TOKENS: Final = 256
_tokens: deque[str] = deque(maxlen=MAX_TOKENS)
_token_index = _Index()


def register(value: str) -> None:
    """Add a secret (config values at load time). Secrets shorter than MIN_LENGTH are ignored
    (see the module's docstring)."""
    with _lock:
        _registered.add(value)


def register_token(value: str) -> None:
    """Add a credential a vendor issued (a session token): kept among the newest MAX_TOKENS."""
    global _token_index
    with _lock:
        if value in _tokens:
            return
        evicting = len(_tokens) == MAX_TOKENS
        _tokens.append(value)
        if evicting:
            _token_index = _index_of(_tokens)  # swapped in whole: scrubs never see it half-built
        else:
            _token_index.add(value)


def _index_of(secrets: Iterable[str]) -> _Index:
    index = _Index()
    for secret in secrets:
        if secret:
            index.add(secret)
    return index


def scrub(text: str) -> str:
    """`text` with every form of every registered secret replaced by REDACTED."""
    return _substitute(text, [_registered, _token_index])


def scrub_with(text: str, extra: Iterable[str]) -> str:
    """Like scrub, also for secrets known only to the caller."""
    return _substitute(text, [_registered, _token_index, _index_of(extra)])


def find(text: str, secrets: Iterable[str]) -> list[str]:
    """The forms of `secrets` present in `text` (for tests that look for leaks)."""
    return [text[a:b] for a, b in _spans(text, [_index_of(secrets)])]


def quote_vendor(text: str, extra: Iterable[str] = (), limit: int = MAX_QUOTED) -> str:
    """A vendor's message, safe to put in an error detail: scrubbed, on one line, then bounded."""
    text = " ".join(scrub_with(text, extra).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
