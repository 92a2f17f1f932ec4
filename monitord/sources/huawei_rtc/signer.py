"""Huawei Cloud API Gateway signing, SDK-HMAC-SHA256 (the AK/SK authentication of
Huawei Cloud "SparkRTC API Reference > 如何调用API > 认证鉴权").

Why our own module and not `huaweicloudsdkcore.signer.signer.Signer` at run time: the SDK drags
in requests, pymongo, simplejson, pyasn1 and more for ~60 lines of hashing, and its Signer works
on its own SdkRequest type, so we would still have to rebuild the exact URI it signed. We keep
the SDK as a test-only dependency instead: tests/test_huawei_rtc_signer.py proves with hypothesis
that this module produces byte-identical Authorization headers and request URIs on many inputs.

The canonical request, as the SDK builds it:

    METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders \\n hex(sha256(body))

CanonicalURI: the path, unquoted, each segment quoted with only "~" safe, always ending in "/".
CanonicalQuery: (key, value) pairs sorted, each quoted with only "~" safe, joined by "&" (and the
same string is the query we send, so the gateway sees exactly what we signed).
CanonicalHeaders: every header we send whose name has no "_", lower-cased, value stripped.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final
from urllib.parse import quote, unquote

ALGORITHM: Final = "SDK-HMAC-SHA256"
DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256: Final = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _quote(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(resource_path: str) -> str:
    path = "/".join(_quote(segment) for segment in unquote(resource_path).split("/"))
    return path if path.endswith("/") else path + "/"


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query))


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    return sorted(k.lower() for k in headers if "_" not in k)


def canonical_request(
    method: str, resource_path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str], body: bytes
) -> tuple[str, list[str]]:
    lowered = {k.lower(): str(v).strip() for k, v in headers.items()}
    names = signed_header_names(headers)
    header_block = "".join(f"{name}:{lowered[name]}\n" for name in names)
    payload = lowered.get("x-sdk-content-sha256") if body else None
    body_hash = payload or (hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256)
    text = "\n".join(
        (
            method.upper(),
            canonical_uri(resource_path),
            canonical_query(query),
            header_block,
            ";".join(names),
            body_hash,
        )
    )
    return text, names


def string_to_sign(canonical: str, when: datetime) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{when.strftime(DATE_FORMAT)}\n{digest}"


def signature(secret_key: str, text: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(
    *,
    method: str,
    host: str,
    resource_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    when: datetime,
) -> tuple[dict[str, str], str]:
    """The headers to send (given ones + X-Sdk-Date, Host, Authorization) and the request URI
    (path + canonical query) to send them with. `when` is UTC."""
    out = dict(headers)
    content_type = next((v for k, v in out.items() if k.lower() == "content-type"), None)
    if content_type and not content_type.startswith(("application/json", "application/bson")):
        out["X-Sdk-Content-Sha256"] = "UNSIGNED-PAYLOAD"
    if not any(k.lower() == "x-sdk-date" for k in out):
        out["X-Sdk-Date"] = when.strftime(DATE_FORMAT)
    else:
        when = datetime.strptime(next(v for k, v in out.items() if k.lower() == "x-sdk-date"), DATE_FORMAT)
    if not any(k.lower() == "host" for k in out):
        out["Host"] = host
    canonical, names = canonical_request(method, resource_path, query, out, body)
    sig = signature(secret_key, string_to_sign(canonical, when))
    out = {k: str(v).strip() for k, v in out.items()}
    out["Authorization"] = (
        f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(names)}, Signature={sig}"
    )
    q = canonical_query(query)
    return out, f"{resource_path}?{q}" if q else resource_path
