"""The one failure type a poll raises, with a small fixed set of reasons.

`reason` becomes the `reason` label of monitord_poll_errors_total, so it must stay a short closed
set: vendor codes and messages go in `detail` (logged once per transition), never in a label.
"""

from __future__ import annotations

from typing import Final

REASONS: Final = (
    "timeout",        # the poll deadline or a read timeout passed
    "connect",        # DNS, refused, reset, disconnected
    "tls",            # certificate or handshake failure
    "http_4xx",       # the request is wrong (no retry)
    "http_5xx",       # the vendor failed (retried with backoff)
    "auth",           # credentials, signature, token or session rejected
    "throttled",      # the vendor's rate limit or ban
    "bad_response",   # HTML, garbage, truncated JSON, missing fields
    "too_large",      # body above global.max_body_bytes
    "vendor_error",   # a well-formed error answer from the vendor
    "not_found",      # the thing polled does not exist (task, room, channel)
    "internal",       # a bug in monitord: logged with its traceback
)

RETRYABLE: Final = frozenset({"timeout", "connect", "http_5xx"})


class PollError(Exception):
    def __init__(self, reason: str, detail: str, vendor_code: str | int | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown poll error reason {reason!r}")
        self.reason = reason
        self.detail = detail
        self.vendor_code = vendor_code
        super().__init__(f"{reason}: {detail}" + (f" (vendor code {vendor_code})" if vendor_code is not None else ""))

    @property
    def retryable(self) -> bool:
        return self.reason in RETRYABLE
