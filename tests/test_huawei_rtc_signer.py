"""Our SDK-HMAC-SHA256 signer against the official one (huaweicloudsdkcore), byte for byte."""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta

import pytest
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.sources.huawei_rtc import signer as huawei_signer

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_ascii = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16)
_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/%"), min_size=1, max_size=10
)
_header_name = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_-]{0,12}\Z")
_header_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
_when = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)).map(
    lambda d: d.replace(microsecond=0)
)


def official(method, host, path, query, headers, body, ak, sk, when):
    headers = {**headers, "X-Sdk-Date": when.strftime("%Y%m%dT%H%M%SZ")}
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    Signer(types.SimpleNamespace(ak=ak, sk=sk)).sign(request)
    return request.header_params, request.uri


def ours(method, host, path, query, headers, body, ak, sk, when):
    return huawei_signer.sign(
        method=method,
        host=host,
        resource_path=path,
        query=query,
        headers=headers,
        body=body,
        access_key=ak,
        secret_key=sk,
        when=when,
    )


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "get"]),
    host=st.sampled_from(
        ["rtc-api.myhuaweicloud.com", "127.0.0.1:10531", "iam.cn-north-4.myhuaweicloud.com"]
    ),
    segments=st.lists(_segment, min_size=1, max_size=5),
    trailing=st.booleans(),
    query=st.lists(st.tuples(_text, _text), max_size=6),
    headers=st.dictionaries(_header_name, _header_value, max_size=4),
    content_type=st.sampled_from([None, "application/json", "application/json;charset=UTF-8", "text/plain"]),
    body=st.binary(max_size=40),
    ak=_ascii,
    sk=_ascii,
    when=_when,
)
def test_signature_and_uri_are_byte_identical_to_the_official_signer(
    method, host, segments, trailing, query, headers, content_type, body, ak, sk, when
) -> None:
    path = "/" + "/".join(segments) + ("/" if trailing else "")
    headers = {
        k: v
        for k, v in headers.items()
        if k.lower() not in ("x-sdk-date", "host", "authorization", "content-type", "x-sdk-content-sha256")
    }
    if content_type:
        headers["Content-Type"] = content_type
    want_headers, want_uri = official(method, host, path, query, headers, body, ak, sk, when)
    got_headers, got_uri = ours(method, host, path, query, headers, body, ak, sk, when)
    assert got_headers["Authorization"] == want_headers["Authorization"]
    assert got_uri == want_uri
    assert {k.lower(): v for k, v in got_headers.items()} == {k.lower(): v for k, v in want_headers.items()}


def test_known_vector_for_a_realtime_scale_request() -> None:
    """A fixed request; the expected header comes from the official signer, so a change in either
    (or in the SDK's algorithm) shows up here with a readable diff."""
    when = datetime(2026, 11, 21, 12, 0, 0)
    args = (
        "GET",
        "rtc-api.myhuaweicloud.com",
        "/v1/0a1b2c/rtc/realtime/scale",
        [("app", "5fa682b34a974f7ad24d223b"), ("metric", "OnlineUsers")],
        {"X-Project-Id": "0a1b2c"},
        b"",
        "AKEXAMPLE",
        "SKEXAMPLE",
        when,
    )
    want, want_uri = official(*args)
    got, got_uri = ours(*args)
    assert got["Authorization"] == want["Authorization"]
    assert got["Authorization"].startswith(
        "SDK-HMAC-SHA256 Access=AKEXAMPLE, SignedHeaders=host;x-project-id;x-sdk-date, Signature="
    )
    assert (
        got_uri == want_uri == "/v1/0a1b2c/rtc/realtime/scale?app=5fa682b34a974f7ad24d223b&metric=OnlineUsers"
    )
    other = ours(*args[:-1], when + timedelta(seconds=1))[0]["Authorization"]
    assert other != got["Authorization"], "the date is part of what is signed"


_query_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)


@settings(max_examples=150, deadline=None)
@given(
    query=st.lists(st.tuples(_query_text.filter(bool), _query_text), max_size=5),
    when=_when,
    flip=st.integers(min_value=0, max_value=63),
)
def test_simulator_verifier_accepts_exactly_what_the_signer_signed(query, when, flip) -> None:
    """The simulator recomputes the signature from the request as it arrives (raw path and
    query), with its own code: whatever we sign it accepts, and one changed hex digit of the
    signature is refused."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from monitord.simulators import huawei_rtc as sim
    from monitord.simulators.base import Clock

    rtc = sim.RtcSim(clock=Clock(when.replace(tzinfo=UTC).timestamp()))
    headers, uri = huawei_signer.sign(
        method="GET",
        host="127.0.0.1:10531",
        resource_path="/v1/p/rtc/realtime/scale",
        query=query,
        headers={"X-Project-Id": "p"},
        body=b"",
        access_key=sim.ACCESS_KEY,
        secret_key=sim.SECRET_KEY,
        when=when,
    )
    assert rtc.verify(make_mocked_request("GET", uri, headers=headers), b"") == "ak:" + sim.ACCESS_KEY
    auth = headers["Authorization"]
    position = len(auth) - 1 - flip
    wrong = auth[:position] + ("0" if auth[position] != "0" else "1") + auth[position + 1 :]
    with pytest.raises(web.HTTPUnauthorized):
        rtc.verify(make_mocked_request("GET", uri, headers={**headers, "Authorization": wrong}), b"")


WHEN = datetime(2026, 11, 21, 12, 0, 0)
ARGS = ("GET", "rtc-api.myhuaweicloud.com", "/v1/p/rtc/realtime/scale", [("app", "a")], {"X-Project-Id": "p"},
        b"", "AKEXAMPLE", "SKEXAMPLE")


@pytest.mark.parametrize("name", ["X-Sdk-Date", "x-sdk-date", "X-SDK-DATE"])
def test_a_date_header_given_by_the_caller_is_the_date_signed(name: str) -> None:
    method, host, path, query, headers, body, ak, sk = ARGS
    given_date = WHEN - timedelta(hours=3)
    want, _ = official(method, host, path, query, headers, body, ak, sk, given_date)
    got, _ = ours(method, host, path, query, {**headers, name: given_date.strftime("%Y%m%dT%H%M%SZ")}, body,
                  ak, sk, WHEN)
    assert got["Authorization"] == want["Authorization"], "the header's date wins over `when`"
    assert [k for k in got if k.lower() == "x-sdk-date"] == [name], "the caller's header is kept, not doubled"


@pytest.mark.parametrize("name", ["Host", "host", "HOST"])
def test_a_host_header_given_by_the_caller_is_the_host_signed(name: str) -> None:
    method, host, path, query, headers, body, ak, sk = ARGS
    want, _ = official(method, "proxy.example:8443", path, query, headers, body, ak, sk, WHEN)
    got, _ = ours(method, host, path, query, {**headers, name: "proxy.example:8443"}, body, ak, sk, WHEN)
    assert got["Authorization"] == want["Authorization"]
    assert [k for k in got if k.lower() == "host"] == [name]


@pytest.mark.parametrize("content_type", ["application/bson", "application/json; charset=utf-8", "text/plain",
                                          "application/octet-stream"])
def test_which_bodies_are_signed_matches_the_official_signer(content_type: str) -> None:
    method, host, path, query, headers, _, ak, sk = ARGS
    headers = {**headers, "Content-Type": content_type}
    want, _ = official("POST", host, path, query, headers, b"{}", ak, sk, WHEN)
    got, _ = ours("POST", host, path, query, headers, b"{}", ak, sk, WHEN)
    assert got["Authorization"] == want["Authorization"]
    assert {k.lower(): v for k, v in got.items()} == {k.lower(): v for k, v in want.items()}
