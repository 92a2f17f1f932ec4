"""The HTTP surface locked the Prometheus way: --web.config.file (exporter-toolkit format) with
real TLS certificates and real bcrypt hashes, applied to every route; /-/reload only with
--web.enable-lifecycle; slow clients cut off by the header and body read timeouts.

Servers run through `serve()` on 127.0.0.1 with a free port and are spoken to over real sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from cryptography import x509
from test_endpoint import target
from webtls import CA

from monitord.app import Daemon, serve
from monitord.config import ConfigError, parse
from monitord.simulators import endpoint as sim
from monitord.web import Surface
from monitord.webconfig import WebConfigWatcher, WebSecurity, load_web_config
from monitord.webguard import REJECTION_REASONS, Timeouts

ROOT = Path(__file__).parent.parent
PASSWORD = "correct horse battery staple"
# Every route the daemon serves, and one it does not: all are behind the same lock.
ROUTES = [("GET", "/"), ("GET", "/metrics"), ("GET", "/-/healthy"), ("GET", "/-/ready"),
          ("POST", "/-/reload"), ("GET", "/-/reload"), ("POST", "/api/v1/targets/room/callback"),
          ("GET", "/no/such/route")]


def bcrypt_hash(password: str, prefix: str = "$2y$") -> str:
    # Cost 4 keeps the test quick; the format is the one htpasswd -B writes ($2y$), which the
    # toolkit documents, so the Go-style prefix is what the file carries.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return prefix + hashed[4:]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA(tmp_path)


def write_web_config(path: Path, doc: Any) -> Path:
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


@pytest.fixture
async def daemon(start_sim: Any, tmp_path: Path) -> Daemon:
    url, _ = await start_sim(sim, scenario="fixed")
    d = Daemon(parse({"global": {"state_dir": str(tmp_path / "state")}, "targets": [target(url)]}))
    d.start(schedule=False)
    return d


@contextlib.asynccontextmanager
async def running(daemon: Daemon, surface: Surface) -> AsyncIterator[str]:
    stop = asyncio.Event()
    urls: list[str] = []
    up = asyncio.Event()

    def started(url: str) -> None:
        urls.append(url)
        up.set()

    task = asyncio.create_task(serve(daemon, "127.0.0.1:0", started=started, stop=stop, surface=surface))
    waiter = asyncio.create_task(up.wait())
    await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what made serve() fail
    assert urls, "server did not start"
    try:
        yield urls[0]
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def client_ssl(ca: CA, cert: Any = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.path))
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


def rejected(daemon: Daemon) -> dict[str, float]:
    text = daemon.store.render().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("monitord_http_requests_rejected_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


async def fetch(url: str, method: str = "GET", ssl_ctx: Any = None, **kw: Any) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as s, s.request(method, url, ssl=ssl_ctx, **kw) as r:
        return r.status, dict(r.headers), await r.text()


# --------------------------------------------------------------------------- TLS + basic auth


async def test_tls_and_basic_auth_lock_every_route(daemon: Daemon, ca: CA, tmp_path: Path) -> None:
    server = ca.server()
    path = write_web_config(tmp_path / "web.yml", {
        "tls_server_config": {"cert_file": server.cert.name, "key_file": server.key.name},
        "basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD)},
        "http_server_config": {"headers": {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}},
    })
    security = load_web_config(path)  # relative cert names are read next to the file
    assert security.tls and list(security.users) == ["prometheus"]
    async with running(daemon, Surface(security=lambda: security)) as url:
        assert url.startswith("https://127.0.0.1:")
        assert rejected(daemon) == dict.fromkeys(REJECTION_REASONS, 0), "every reason exists at 0"
        ctx = client_ssl(ca)
        for method, route in ROUTES:
            status, headers, _ = await fetch(url + route, method, ctx)
            assert status == 401, (method, route)
            assert headers["WWW-Authenticate"] == "Basic"
            assert headers["X-Frame-Options"] == "deny", "configured headers are on refusals too"
            status, _, _ = await fetch(url + route, method, ctx, headers=basic("prometheus", "wrong"))
            assert status == 401, (method, route)
            status, _, _ = await fetch(url + route, method, ctx, headers=basic("nobody", PASSWORD))
            assert status == 401, (method, route)

        assert rejected(daemon)["unauthorized"] == 3 * len(ROUTES)
        good = basic("prometheus", PASSWORD)
        status, headers, body = await fetch(url + "/metrics", "GET", ctx, headers=good)
        assert status == 200 and "monitord_build_info" in body
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert (await fetch(url + "/-/healthy", "GET", ctx, headers=good))[0] == 200
        assert (await fetch(url + "/", "GET", ctx, headers=good))[0] == 200
        assert (await fetch(url + "/-/reload", "POST", ctx, headers=good))[0] == 403
        assert (await fetch(url + "/api/v1/targets/nope/x", "POST", ctx, headers=good))[0] == 404

        # Not verifiable without the CA, and no plain HTTP on the TLS port.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await fetch(url + "/metrics", "GET", ssl.create_default_context(), headers=good)
        with pytest.raises(aiohttp.ClientError):
            await fetch(url.replace("https://", "http://") + "/metrics", headers=good)


async def test_basic_auth_without_tls_and_hash_prefixes(daemon: Daemon, tmp_path: Path) -> None:
    users = {"a": bcrypt_hash("pw-a", "$2y$"), "b": bcrypt_hash("pw-b", "$2b$"), "c": bcrypt_hash("pw-c", "$2a$")}
    security = load_web_config(write_web_config(tmp_path / "web.yml", {"basic_auth_users": users}))
    assert not security.tls
    async with running(daemon, Surface(security=lambda: security)) as url:
        assert url.startswith("http://")
        for user in users:
            assert (await fetch(url + "/metrics", headers=basic(user, f"pw-{user}")))[0] == 200, user
            assert (await fetch(url + "/metrics", headers=basic(user, "pw-x")))[0] == 401, user
            # Verdicts are cached by a digest of user, hash and password: the second answer
            # must be the same as the first, for right and wrong passwords alike.
            assert (await fetch(url + "/metrics", headers=basic(user, f"pw-{user}")))[0] == 200, user
            assert (await fetch(url + "/metrics", headers=basic(user, "pw-x")))[0] == 401, user
        for header in ("Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), ""):
            assert (await fetch(url + "/metrics", headers={"Authorization": header}))[0] == 401, header


async def test_client_certificates_are_required_and_their_sans_checked(daemon: Daemon, ca: CA,
                                                                        tmp_path: Path) -> None:
    server = ca.server()
    stranger = CA(tmp_path, "stranger CA")
    path = write_web_config(tmp_path / "web.yml", {"tls_server_config": {
        "cert_file": str(server.cert), "key_file": str(server.key), "client_ca_file": str(ca.path),
        "client_auth_type": "RequireAndVerifyClientCert", "client_allowed_sans": ["scraper.test"],
        "min_version": "TLS12",
    }})
    security = load_web_config(path)
    async with running(daemon, Surface(security=lambda: security)) as url:
        allowed = ca.client("scraper", "scraper.test")
        assert (await fetch(url + "/metrics", "GET", client_ssl(ca, allowed)))[0] == 200
        other_san = ca.client("other", "intruder.test")
        status, _, body = await fetch(url + "/metrics", "GET", client_ssl(ca, other_san))
        assert status == 403 and "not allowed" in body
        assert rejected(daemon)["client_certificate"] == 1
        with pytest.raises(aiohttp.ClientError):
            await fetch(url + "/metrics", "GET", client_ssl(ca))  # no client certificate
        with pytest.raises(aiohttp.ClientError):
            await fetch(url + "/metrics", "GET", client_ssl(ca, stranger.client("s", "scraper.test")))


async def test_min_version_refuses_older_clients(daemon: Daemon, ca: CA, tmp_path: Path) -> None:
    server = ca.server()
    security = load_web_config(write_web_config(tmp_path / "web.yml", {"tls_server_config": {
        "cert_file": str(server.cert), "key_file": str(server.key), "min_version": "TLS13"}}))
    async with running(daemon, Surface(security=lambda: security)) as url:
        old = client_ssl(ca)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(aiohttp.ClientError):
            await fetch(url + "/-/healthy", "GET", old)
        assert (await fetch(url + "/-/healthy", "GET", client_ssl(ca)))[0] == 200


async def test_rotated_certificate_is_picked_up_without_restart(daemon: Daemon, ca: CA, tmp_path: Path) -> None:
    first, second = ca.server("first"), ca.server("second")
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    live_cert.write_bytes(first.cert.read_bytes())
    live_key.write_bytes(first.key.read_bytes())
    path = write_web_config(tmp_path / "web.yml", {"tls_server_config": {"cert_file": "live.crt",
                                                                         "key_file": "live.key"}})
    errors: list[ConfigError] = []
    watcher = WebConfigWatcher(path, load_web_config(path), on_error=errors.append, min_interval=0.0)

    async def served_serial(url: str) -> int:
        host, port = url.removeprefix("https://").split(":")
        _, writer = await asyncio.open_connection(host, int(port), ssl=client_ssl(ca))
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return x509.load_der_x509_certificate(der).serial_number

    serial_1, serial_2 = (x509.load_pem_x509_certificate(p.cert.read_bytes()).serial_number for p in (first, second))
    async with running(daemon, Surface(security=watcher.get)) as url:
        assert await served_serial(url) == serial_1
        live_cert.write_bytes(second.cert.read_bytes())
        live_key.write_bytes(second.key.read_bytes())
        assert await served_serial(url) == serial_2, "a new connection gets the rotated certificate"

        # A broken edit keeps the working config and says so once.
        path.write_text("tls_server_config: {cert_file: live.crt}\n")
        assert await served_serial(url) == serial_2
        assert (await fetch(url + "/-/healthy", "GET", client_ssl(ca)))[0] == 200
        assert len(errors) == 1 and "missing one of key or key_file" in errors[0].problems[0]
        assert await served_serial(url) == serial_2
        assert len(errors) == 1, "one report per change, not per request"


# ------------------------------------------------------------------------------- lifecycle


async def test_reload_needs_the_lifecycle_flag_and_post(daemon: Daemon) -> None:
    async with running(daemon, Surface()) as url:
        status, _, body = await fetch(url + "/-/reload", "POST")
        assert status == 403 and body == "Lifecycle API is not enabled.\n"
        assert (await fetch(url + "/-/reload", "GET"))[0] == 405
        assert rejected(daemon)["lifecycle_disabled"] == 1
    await daemon.close()


async def test_reload_works_with_the_lifecycle_flag(start_sim: Any, tmp_path: Path) -> None:
    url, _ = await start_sim(sim, scenario="fixed")
    config = tmp_path / "monitord.yml"
    config.write_text(yaml.safe_dump({"global": {"state_dir": str(tmp_path / "s")}, "targets": [target(url)]}))
    from monitord.config import load

    daemon = Daemon(load(config), config_path=config)
    daemon.start(schedule=False)
    async with running(daemon, Surface(enable_lifecycle=True)) as base:
        status, headers, body = await fetch(base + "/-/reload", "POST")
        assert (status, body) == (200, "Reloaded.\n")
        status, headers, _ = await fetch(base + "/-/reload", "GET")
        assert status == 405 and headers["Allow"] == "POST"


# ------------------------------------------------------------------------------ slow clients


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _closed_within(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bytes,
                         gap: float, limit: float) -> tuple[bool, bytes, float]:
    """Send `trickle` one byte per `gap` seconds; return (closed by the server, what it answered, when)."""
    start = time.monotonic()
    answer = b""
    for byte in trickle:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except (ConnectionError, OSError):
            return True, answer, time.monotonic() - start
        with contextlib.suppress(TimeoutError):
            chunk = await asyncio.wait_for(reader.read(65536), gap)
            answer += chunk
            if not chunk:
                return True, answer, time.monotonic() - start
        if time.monotonic() - start > limit:
            break
    return False, answer, time.monotonic() - start


async def test_slowloris_headers_are_cut_off_while_others_are_served(daemon: Daemon) -> None:
    surface = Surface(timeouts=Timeouts(header=1.0, body=30.0))
    async with running(daemon, surface) as url:
        reader, writer = await _open(url)
        headers = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 400 + b"\r\n\r\n"
        task = asyncio.create_task(_closed_within(reader, writer, headers, gap=0.25, limit=60.0))
        # Meanwhile an honest client is served.
        assert (await fetch(url + "/-/healthy"))[0] == 200
        closed, answer, after = await task
        writer.close()
        assert closed and answer == b"", "cut off without an answer"
        assert after < 30, f"closed only after {after:.1f}s"

        # A connection that sends nothing at all is closed too.
        reader, writer = await _open(url)
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        assert not surface.guards, "closed connections leave no guard behind"
        assert rejected(daemon)["header_timeout"] == 2


async def test_idle_keep_alive_is_not_a_slow_request(daemon: Daemon) -> None:
    async with running(daemon, Surface(timeouts=Timeouts(header=0.5, body=30.0))) as url:
        reader, writer = await _open(url)
        for _ in range(2):
            writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            assert await asyncio.wait_for(reader.readexactly(length), 30) == b"Healthy.\n"
            await asyncio.sleep(1.5)  # three header timeouts of idleness: the same connection serves on
        writer.close()


async def test_slow_body_gets_408(daemon: Daemon) -> None:
    async with running(daemon, Surface(timeouts=Timeouts(header=5.0, body=1.0))) as url:
        reader, writer = await _open(url)
        writer.write(b"POST /api/v1/targets/room/callback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"a\":")
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 60)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert time.monotonic() - started < 30
        assert rejected(daemon)["body_timeout"] == 1


# ------------------------------------------------------------------------- config problems

BAD_WEB_CONFIGS: list[tuple[str, Callable[[Path, Any], Any], str]] = [
    ("unknown top-level key", lambda d, ca: {"tls_config": {}}, "tls_config: unknown key"),
    ("rate limit", lambda d, ca: {"rate_limit": {"interval": "1s", "burst": 2}}, "rate_limit: not supported"),
    ("top level list", lambda d, ca: "- a\n- b\n", "expected a mapping at the top"),
    ("broken YAML", lambda d, ca: "basic_auth_users: {a: [\n", "not valid YAML"),
    ("deep nesting", lambda d, ca: "[" * 50_000, "not"),
    ("plain-text password", lambda d, ca: {"basic_auth_users": {"alice": "hunter2-plaintext"}},
     "basic_auth_users.alice: not a bcrypt hash"),
    ("users not a mapping", lambda d, ca: {"basic_auth_users": ["alice"]}, "basic_auth_users: expected a mapping"),
    ("user with colon", lambda d, ca: {"basic_auth_users": {"a:b": bcrypt_hash("x")}}, "without ':'"),
    ("header not allowed", lambda d, ca: {"http_server_config": {"headers": {"Server": "x"}}},
     "headers.Server: this header can not be configured"),
    ("header value", lambda d, ca: {"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
     "headers.X-Frame-Options: expected one of deny, sameorigin"),
    ("http2 not bool", lambda d, ca: {"http_server_config": {"http2": "yes"}}, "http2: expected true or false"),
    ("cert without key", lambda d, ca: {"tls_server_config": {"cert_file": str(ca.server().cert)}},
     "missing one of key or key_file"),
    ("key without cert", lambda d, ca: {"tls_server_config": {"key_file": str(ca.server().key)}},
     "missing one of cert or cert_file"),
    ("missing files", lambda d, ca: {"tls_server_config": {"cert_file": "nope.crt", "key_file": "nope.key"}},
     "cannot load the certificate and key: No such file"),
    ("not PEM", lambda d, ca: {"tls_server_config": {"cert": "hello", "key": "world"}},
     "cannot load the certificate and key"),
    ("key of another cert", lambda d, ca: {"tls_server_config": {"cert_file": str(ca.server("x").cert),
                                                                 "key_file": str(ca.server("y").key)}},
     "cannot load the certificate and key"),
    ("inline and file", lambda d, ca: {"tls_server_config": {"cert": "x", "cert_file": "y", "key_file": "z"}},
     "give cert or cert_file, not both"),
    ("CA without auth type", lambda d, ca: {"tls_server_config": {**_pair(ca), "client_ca_file": str(ca.path)}},
     "client CA is configured without a client_auth_type"),
    ("auth type without CA", lambda d, ca: {"tls_server_config": {
        **_pair(ca), "client_auth_type": "RequireAndVerifyClientCert"}}, "needs client_ca_file"),
    ("unverified auth type", lambda d, ca: {"tls_server_config": {
        **_pair(ca), "client_auth_type": "RequireAnyClientCert", "client_ca_file": str(ca.path)}},
     "RequireAnyClientCert accepts unverified certificates"),
    ("unknown auth type", lambda d, ca: {"tls_server_config": {**_pair(ca), "client_auth_type": "Always"}},
     "unknown value 'Always'"),
    ("SANs without verification", lambda d, ca: {"tls_server_config": {
        **_pair(ca), "client_auth_type": "VerifyClientCertIfGiven", "client_ca_file": str(ca.path),
        "client_allowed_sans": ["a"]}}, "client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert"),
    ("bad TLS version", lambda d, ca: {"tls_server_config": {**_pair(ca), "min_version": "SSL3"}},
     "min_version: unknown TLS version 'SSL3'"),
    ("min above max", lambda d, ca: {"tls_server_config": {**_pair(ca), "min_version": "TLS13",
                                                          "max_version": "TLS12"}},
     "min_version is higher than max_version"),
    ("Go cipher names", lambda d, ca: {"tls_server_config": {**_pair(ca), "cipher_suites": ["TLS_AES_128_GCM_SHA256"]}},
     "cipher_suites: not supported"),
    ("unknown TLS key", lambda d, ca: {"tls_server_config": {**_pair(ca), "certfile": "x"}},
     "tls_server_config.certfile: unknown key"),
    ("number as file name", lambda d, ca: {"tls_server_config": {"cert_file": 5, "key_file": "x"}},
     "tls_server_config.cert_file: expected a string"),
]


def _pair(ca: CA) -> dict[str, str]:
    server = ca.server("pair")
    return {"cert_file": str(server.cert), "key_file": str(server.key)}


@pytest.mark.parametrize(("case", "make", "message"), BAD_WEB_CONFIGS, ids=[c[0] for c in BAD_WEB_CONFIGS])
def test_bad_web_config_is_a_clear_error(case: str, make: Callable[[Path, Any], Any], message: str,
                                         tmp_path: Path, ca: CA) -> None:
    path = write_web_config(tmp_path / "web.yml", make(tmp_path, ca))
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert any(message in p for p in info.value.problems), info.value.problems
    assert "hunter2-plaintext" not in str(info.value), "a pasted password is not echoed"


def test_unreadable_web_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the web config file"):
        load_web_config(tmp_path / "absent.yml")
    (tmp_path / "bytes.yml").write_bytes(b"basic_auth_users: {a: \xff\xfe}\n")
    with pytest.raises(ConfigError, match="cannot read the web config file"):
        load_web_config(tmp_path / "bytes.yml")


def test_empty_web_config_means_plain_http_without_auth(tmp_path: Path) -> None:
    assert load_web_config(write_web_config(tmp_path / "web.yml", "")) == WebSecurity()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitord", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_cli_checks_the_web_config_and_refuses_to_start_with_a_bad_one(tmp_path: Path) -> None:
    config = tmp_path / "monitord.yml"
    config.write_text(yaml.safe_dump({"targets": [target("http://127.0.0.1:9")]}))
    bad = write_web_config(tmp_path / "web.yml", {"basic_auth_users": {"alice": "hunter2-plaintext"}})
    checked = _cli("check-config", "--config.file", str(config), "--web.config.file", str(bad))
    assert checked.returncode == 1
    assert "basic_auth_users.alice: not a bcrypt hash" in checked.stderr
    assert "hunter2" not in checked.stdout + checked.stderr
    started = _cli("run", "--config.file", str(config), "--web.config.file", str(bad),
                   "--web.listen-address", "127.0.0.1:0")
    assert started.returncode == 1 and "basic_auth_users.alice: not a bcrypt hash" in started.stderr
    assert "Traceback" not in started.stderr

    good = write_web_config(tmp_path / "good.yml", {"basic_auth_users": {"alice": bcrypt_hash("x")}})
    checked = _cli("check-config", "--config.file", str(config), "--web.config.file", str(good))
    assert checked.returncode == 0, checked.stderr
    assert "good.yml: OK, TLS off, 1 basic-auth user(s)" in checked.stdout
    bad_flag = _cli("run", "--config.file", str(config), "--web.read-header-timeout", "soon")
    assert bad_flag.returncode == 2 and "--web.read-header-timeout" in bad_flag.stderr
