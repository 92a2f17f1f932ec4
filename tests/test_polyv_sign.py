"""The Polyv request signature: the vendor's worked example, and agreement with the simulator's
independently written verifier on generated inputs."""

from __future__ import annotations

import hashlib

from hypothesis import assume, given
from hypothesis import strategies as st

from monitord.simulators.polyv import expected_sign
from monitord.sources.polyv import sign

# The worked example of Polyv's public "签名生成规则" page. The API page ("查询频道的直播推流信息")
# itself only shows a signed URL without the appSecret, which cannot be checked.
VENDOR_EXAMPLE_PARAMS = {
    "channelIds": "2477096,2272655",
    "startDay": "2022-05-20",
    "endDay": "2022-06-18",
    "appId": "g4rqgmmjuo",
    "timestamp": 1660270926732,
    "page": None,
    "size": None,
}
VENDOR_EXAMPLE_SECRET = "fsq2k5weced1h8vui657xtdva66whf0g"
VENDOR_EXAMPLE_SIGN = "0D2BDA2FD04D93A2B8832B91FD973C4D"
# Step 4 of the vendor's example: the string that is hashed.
VENDOR_EXAMPLE_PLAINTEXT = (
    "fsq2k5weced1h8vui657xtdva66whf0g"
    "appIdg4rqgmmjuochannelIds2477096,2272655endDay2022-06-18startDay2022-05-20timestamp1660270926732"
    "fsq2k5weced1h8vui657xtdva66whf0g"
)


def test_vendor_worked_example_md5() -> None:
    assert sign(VENDOR_EXAMPLE_PARAMS, VENDOR_EXAMPLE_SECRET) == VENDOR_EXAMPLE_SIGN


def test_vendor_example_null_parameters_are_left_out() -> None:
    without_nulls = {k: v for k, v in VENDOR_EXAMPLE_PARAMS.items() if v is not None}
    assert sign(without_nulls, VENDOR_EXAMPLE_SECRET) == VENDOR_EXAMPLE_SIGN
    assert sign({**without_nulls, "page": "", "size": "  "}, VENDOR_EXAMPLE_SECRET) == VENDOR_EXAMPLE_SIGN


def test_sha256_uses_the_same_construction() -> None:
    params = {**VENDOR_EXAMPLE_PARAMS, "signatureMethod": "SHA256"}
    plaintext = VENDOR_EXAMPLE_PLAINTEXT.replace("startDay", "signatureMethodSHA256startDay")
    assert "signatureMethodSHA256" in plaintext
    expected = hashlib.sha256(plaintext.encode()).hexdigest().upper()
    assert sign(params, VENDOR_EXAMPLE_SECRET, "SHA256") == expected
    assert len(sign(params, VENDOR_EXAMPLE_SECRET, "SHA256")) == 64


def test_a_sign_already_in_the_parameters_is_not_signed() -> None:
    stale = {**VENDOR_EXAMPLE_PARAMS, "sign": "0" * 32}
    assert sign(stale, VENDOR_EXAMPLE_SECRET) == VENDOR_EXAMPLE_SIGN


def test_the_simulator_verifier_accepts_the_vendor_example() -> None:
    query = {k: str(v) for k, v in VENDOR_EXAMPLE_PARAMS.items() if v is not None}
    assert expected_sign(query, VENDOR_EXAMPLE_SECRET) == VENDOR_EXAMPLE_SIGN


keys = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
values = st.text(max_size=24)
secrets = st.text(min_size=1, max_size=40)


@given(params=st.dictionaries(keys, values, max_size=8), secret=secrets, sha256=st.booleans())
def test_signer_and_simulator_verifier_agree(params: dict[str, str], secret: str, sha256: bool) -> None:
    if sha256:
        params = {**params, "signatureMethod": "SHA256"}
    else:
        params.pop("signatureMethod", None)
    method = "SHA256" if sha256 else "MD5"
    assert sign(params, secret, method) == expected_sign(params, secret)


@given(params=st.dictionaries(keys, values.filter(lambda v: v.strip() != ""), min_size=1, max_size=8),
       secret=secrets, data=st.data())
def test_changing_any_signed_value_changes_the_sign(params: dict[str, str], secret: str,
                                                    data: st.DataObject) -> None:
    params.pop("sign", None)
    params.pop("signatureMethod", None)
    assume(params)
    key = data.draw(st.sampled_from(sorted(params)))
    new_value = data.draw(values.filter(lambda v: v.strip() != "" and v != params[key]))
    tampered = {**params, key: new_value}
    assert expected_sign(tampered, secret) != sign(params, secret)


@given(params=st.dictionaries(keys, values, max_size=8), secret=secrets, other=secrets)
def test_a_different_secret_is_rejected(params: dict[str, str], secret: str, other: str) -> None:
    params.pop("signatureMethod", None)
    assume(other != secret)
    assert expected_sign(params, other) != sign(params, secret)
