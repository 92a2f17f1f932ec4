"""TLS against a real HTTPS simulator with a self-signed certificate: verification is on by
default, a target's CA file makes it pass, and only an explicit per-target switch turns it off."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from test_endpoint import target

from monitord.simulators import endpoint as sim


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.fixture
async def https_url(certificate: tuple[Path, Path]) -> AsyncIterator[str]:
    cert, key = certificate
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    runner = web.AppRunner(sim.create_app(scenario="fixed"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_self_signed_certificate_is_refused_by_default(https_url: str, make_daemon) -> None:
    daemon = make_daemon([target(https_url)])
    assert (await daemon.poll_all_once())["room"].reason == "tls"


async def test_the_targets_ca_file_verifies_it(https_url: str, make_daemon, certificate) -> None:
    daemon = make_daemon([target(https_url, tls={"ca_file": str(certificate[0])})])
    assert (await daemon.poll_all_once())["room"].ok


async def test_only_an_explicit_switch_turns_verification_off(https_url: str, make_daemon) -> None:
    daemon = make_daemon([target(https_url, name="strict"),
                          target(https_url, name="lax", tls={"insecure_skip_verify": True})])
    outcomes = await daemon.poll_all_once()
    assert outcomes["lax"].ok
    assert outcomes["strict"].reason == "tls", "one target's switch does not loosen another's"
