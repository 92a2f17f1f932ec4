"""Secret scrubber cost: `python3 benchmarks/scrub.py [--secrets 10000]` prints figures.

Every log line, every failure detail and `once`'s stderr pass through monitord.redact.scrub, and
a large config registers one or more secrets per target.
"""

from __future__ import annotations

import argparse
import secrets
import time
from urllib.parse import quote

from monitord import redact


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secrets", type=int, default=10_000)
    args = parser.parse_args()
    values = [secrets.token_urlsafe(24) + "+/=" for _ in range(args.secrets)]
    started = time.perf_counter()
    for value in values:
        redact.register(value)
    print(f"register {args.secrets} secrets (8 encodings each): {time.perf_counter() - started:.2f} s")
    line = "target room-17 failed: HTTP 503 from https://10.1.2.3/action.cgi: vendor said busy " * 2
    leaked = f"GET /app/get_token?secret_key={quote(values[-1], safe='')} failed"
    for name, text in (("clean log line", line), ("line with a percent-encoded secret", leaked)):
        rounds = 2000
        started = time.perf_counter()
        for _ in range(rounds):
            out = redact.scrub(text)
        per = (time.perf_counter() - started) / rounds * 1e6
        print(f"scrub a {len(text)}-character {name}: {per:.0f} µs ({'redacted' if out != text else 'unchanged'})")


if __name__ == "__main__":
    main()
