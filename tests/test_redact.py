"""The secret scrubber: every encoding, one pass, short secrets left alone."""

from __future__ import annotations

import json
import re
import string
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from monitord import redact

R = redact.REDACTED


def scrub(text: str, *secrets: str) -> str:
    return redact.scrub_with(text, secrets)


def test_every_encoding_of_a_secret_is_redacted() -> None:
    secret = "Can+ary/Secret=1&x yü\"q"
    encoded = [
        secret,
        quote(secret, safe=""),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(secret, safe="")),  # lower-case hex
        quote_plus(secret),
        URL.build(scheme="http", host="h", query={"secret_key": secret}).raw_query_string.split("=", 1)[1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    ]
    for form in encoded:
        text = f"GET /app/get_token?secret_key={form}&x=1 failed"
        assert scrub(text, secret) == f"GET /app/get_token?secret_key={R}&x=1 failed", form


def test_lower_case_hex_does_not_match_other_text() -> None:
    # Only the hex digits of an escape are case-free; the letters of the secret are not.
    assert scrub("ABCDEF%2b", "abcdef+") == "ABCDEF%2b"


def test_a_short_secret_is_not_scrubbed_and_does_not_mangle_anything() -> None:
    text = "a token was rejected: HTTP 401 from https://example.com/api (admin)"
    assert scrub(text, "a") == text
    assert scrub(text, "admin") == text  # 5 characters: below redact.MIN_LENGTH
    assert scrub(f"{R} and {R}", "a", "r", "<") == f"{R} and {R}"


def test_the_marker_is_never_redacted_again() -> None:
    # "dacted" is long enough to be scrubbed, and is part of the marker itself.
    assert scrub("x dacted y", "dacted") == f"x {R} y"
    assert scrub(f"already {R} here", "dacted", "redacted>") == f"already {R} here"
    assert scrub("key=secret-value1", "secret-value1", "<redacted>") == f"key={R}"


def test_overlapping_secrets_are_replaced_by_the_longest() -> None:
    assert scrub("pw=hunter22-extra", "hunter22", "hunter22-extra") == f"pw={R}"


def test_quoted_vendor_text_is_scrubbed_before_it_is_cut() -> None:
    secret = "S3cret-Value-0123456789"
    text = "x" * (redact.MAX_QUOTED - 10) + secret
    quoted = redact.quote_vendor(text, [secret])
    assert len(quoted) <= redact.MAX_QUOTED
    assert secret[:8] not in quoted, "a cut must not leave the start of a secret behind"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(secret=st.text(min_size=redact.MIN_LENGTH, max_size=30),
       prefix=st.text(max_size=40), suffix=st.text(max_size=40))
def test_no_form_of_any_secret_survives(secret: str, prefix: str, suffix: str) -> None:
    for form in redact.forms(secret):
        out = scrub(prefix + form + suffix, secret)
        assert form not in out or form in (prefix + suffix) or form in R


@settings(max_examples=200, deadline=None, derandomize=True)
@given(secret=st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=5),
       text=st.text(max_size=80))
def test_short_secrets_leave_text_unchanged(secret: str, text: str) -> None:
    assert scrub(text, secret) == text


def test_library_log_records_are_scrubbed_too(captured_logs) -> None:
    """aiohttp and asyncio log through the standard library; those lines reach stderr as well."""
    import logging

    secret = "Library-Canary-4711"
    redact.register(secret)
    try:
        raise ValueError(f"GET /x?secret_key={quote(secret, safe='')}")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request for %s", secret)
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    event = next(e for e in lines if e.get("logger") == "aiohttp.server")
    assert event["event"] == f"Error handling request for {R}"
    assert secret not in captured_logs.getvalue() and quote(secret, safe="") not in captured_logs.getvalue()
    assert f"secret_key={R}" in event["exception"]


def test_vendor_tokens_are_scrubbed_and_only_the_newest_are_kept() -> None:
    tokens = [f"vendor-token-{i:04d}-xyz" for i in range(redact.MAX_TOKENS + 10)]
    for token in tokens:
        redact.register_token(token)
    assert redact.scrub(f"token={tokens[-1]}") == f"token={R}"
    assert redact.scrub(f"token={tokens[10]}") == f"token={R}"
    assert redact.scrub(f"token={tokens[0]}") == f"token={tokens[0]}", "the oldest left the scrubber"
