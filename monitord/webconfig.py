"""`--web.config.file`: TLS and basic authentication for every HTTP route, in the format of the
Prometheus exporter-toolkit ("Web configuration", docs/web-configuration.md), so one file can
serve monitord and the node_exporter next to it.

    tls_server_config:
      cert_file: server.crt            # or cert: <PEM text>
      key_file: server.key             # or key: <PEM text>
      client_ca_file: ca.crt           # or client_ca: <PEM text>
      client_auth_type: RequireAndVerifyClientCert
      client_allowed_sans: [scraper.example]
      min_version: TLS12               # TLS10 TLS11 TLS12 TLS13
      max_version: TLS13
    http_server_config:
      headers: {X-Frame-Options: deny, X-Content-Type-Options: nosniff}
    basic_auth_users:
      prometheus: $2y$10$...           # bcrypt hash: htpasswd -nBC 10 "" | tr -d ':\\n'

Relative file names are read relative to the web config file, as the toolkit does. What Python's
ssl module cannot do the toolkit's way (Go cipher-suite and curve names, requesting a client
certificate without verifying it) is refused with a message rather than silently ignored.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from monitord.config import ConfigError

_TLS_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# The toolkit's client_auth_type values, as Python's ssl can honour them. Go's RequestClientCert
# and RequireAnyClientCert take a certificate without verifying it: Python cannot, and accepting
# the value while verifying anyway (or not asking) would be a lie about the policy.
_CLIENT_AUTH: Final = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH: Final = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# The headers the toolkit lets an operator set, with the values it accepts (None: any string).
_HEADERS: Final[dict[str, tuple[str, ...] | None]] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
_TLS_KEYS: Final = frozenset({
    "cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type",
    "client_allowed_sans", "min_version", "max_version", "prefer_server_cipher_suites",
    "cipher_suites", "curve_preferences",
})
# Go's $2a$/$2b$/$2y$ bcrypt, cost 4..31, 22 characters of salt and 31 of hash.
_BCRYPT_RE: Final = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")


@dataclass(frozen=True)
class WebSecurity:
    """What a web config file asks for. The empty default is plain HTTP without authentication."""

    ssl_context: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    client_allowed_sans: tuple[str, ...] = ()
    # Files whose change means the config must be read again (certificate rotation).
    watched: tuple[Path, ...] = ()

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def load_web_config(path: str | os.PathLike[str]) -> WebSecurity:
    """Read and check a web config file, certificates and keys included; ConfigError lists every
    problem. Never raises anything else, whatever the file holds."""
    where = os.fspath(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read the web config file: {_os_reason(exc)}"], where) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}".splitlines()[0]], where) from None
    except (ValueError, RecursionError, TypeError) as exc:
        raise ConfigError([f"not a usable YAML document: {type(exc).__name__}"], where) from None
    return parse_web_config(raw, base=Path(path).parent, source=where)


def parse_web_config(raw: Any, base: Path, source: str = "<web config>") -> WebSecurity:
    problems = _Problems()
    if raw is None:
        return WebSecurity()  # an empty file configures nothing, as in the toolkit
    if not isinstance(raw, dict):
        raise ConfigError([f"expected a mapping at the top, got {type(raw).__name__}"], source)
    for key in raw:
        if key not in ("tls_server_config", "http_server_config", "basic_auth_users"):
            if key == "rate_limit":
                problems.add("rate_limit", "not supported by monitord (put a reverse proxy in front to rate-limit)")
            else:
                problems.add(str(key), "unknown key")
    users = _users(raw.get("basic_auth_users"), problems)
    headers = _headers(raw.get("http_server_config"), problems)
    context, sans, watched = _tls(raw.get("tls_server_config"), base, problems)
    if problems.items:
        raise ConfigError(problems.items, source)
    return WebSecurity(ssl_context=context, users=users, headers=headers, client_allowed_sans=sans,
                       watched=watched)


def _users(raw: Any, problems: _Problems) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add("basic_auth_users", "expected a mapping of user name to bcrypt hash")
        return {}
    users: dict[str, bytes] = {}
    for user, hashed in raw.items():
        if not isinstance(user, str) or not user or ":" in user:
            problems.add("basic_auth_users", f"user name {user!r} must be a non-empty string without ':'")
        elif not isinstance(hashed, str) or not _BCRYPT_RE.match(hashed):
            # The value itself is not echoed: it may be a plain-text password pasted by mistake.
            problems.add(f"basic_auth_users.{user}",
                         "not a bcrypt hash ($2y$10$ followed by 53 characters, as `htpasswd -nBC 10 \"\"` prints)")
        else:
            users[user] = hashed.encode("ascii")
    return users


def _headers(raw: Any, problems: _Problems) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add("http_server_config", "expected a mapping")
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key == "http2":
            # aiohttp serves HTTP/1.1 only; either value is accepted so a shared file still loads.
            if not isinstance(value, bool):
                problems.add("http_server_config.http2", "expected true or false")
        elif key == "headers":
            if value is None:
                continue
            if not isinstance(value, dict):
                problems.add("http_server_config.headers", "expected a mapping of header name to value")
                continue
            for name, text in value.items():
                allowed = _HEADERS.get(name, ())
                if name not in _HEADERS:
                    problems.add(f"http_server_config.headers.{name}",
                                 f"this header can not be configured (one of {', '.join(_HEADERS)})")
                elif not isinstance(text, str):
                    problems.add(f"http_server_config.headers.{name}", "expected a string")
                elif allowed is not None and text not in allowed:
                    problems.add(f"http_server_config.headers.{name}", f"expected one of {', '.join(allowed)}")
                elif text:
                    out[name] = text
        else:
            problems.add(f"http_server_config.{key}", "unknown key")
    return out


def _tls(raw: Any, base: Path, problems: _Problems
         ) -> tuple[ssl.SSLContext | None, tuple[str, ...], tuple[Path, ...]]:
    none: tuple[ssl.SSLContext | None, tuple[str, ...], tuple[Path, ...]] = (None, (), ())
    if raw is None:
        return none
    at = "tls_server_config"
    if not isinstance(raw, dict):
        problems.add(at, "expected a mapping")
        return none
    before = len(problems.items)
    for key in raw:
        if key not in _TLS_KEYS:
            problems.add(f"{at}.{key}", "unknown key")
    for key in ("cipher_suites", "curve_preferences"):
        if raw.get(key):
            problems.add(f"{at}.{key}", "not supported by monitord (Python's TLS uses OpenSSL's defaults)")
    strings = {k: raw.get(k) for k in ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file",
                                        "client_auth_type", "min_version", "max_version")}
    for key, value in strings.items():
        if value is not None and not isinstance(value, str):
            problems.add(f"{at}.{key}", "expected a string")
    if len(problems.items) > before:
        return none

    def text(key: str) -> str:
        return str(strings[key] or "")

    cert, cert_file, key, key_file = text("cert"), text("cert_file"), text("key"), text("key_file")
    ca, ca_file, auth_type = text("client_ca"), text("client_ca_file"), text("client_auth_type")
    if not any((cert, cert_file, key, key_file, ca, ca_file, auth_type)):
        return none  # the toolkit's "TLS config is not present": plain HTTP
    for inline, filed, name in ((cert, cert_file, "cert"), (key, key_file, "key"), (ca, ca_file, "client_ca")):
        if inline and filed:
            problems.add(at, f"give {name} or {name}_file, not both")
    if not cert and not cert_file:
        problems.add(at, "missing one of cert or cert_file")
    if not key and not key_file:
        problems.add(at, "missing one of key or key_file")
    if auth_type in _UNVERIFIED_CLIENT_AUTH:
        problems.add(f"{at}.client_auth_type", f"{auth_type} accepts unverified certificates, which monitord does "
                     "not support: use VerifyClientCertIfGiven or RequireAndVerifyClientCert")
    elif auth_type and auth_type not in _CLIENT_AUTH:
        problems.add(f"{at}.client_auth_type", f"unknown value {auth_type!r} (one of {', '.join(_CLIENT_AUTH)})")
    verify = _CLIENT_AUTH.get(auth_type or "NoClientCert", ssl.CERT_NONE)
    if (ca or ca_file) and verify == ssl.CERT_NONE:
        problems.add(at, "a client CA is configured without a client_auth_type that verifies client certificates")
    if verify != ssl.CERT_NONE and not (ca or ca_file):
        problems.add(at, f"client_auth_type {auth_type} needs client_ca_file (or client_ca) to verify against")
    sans = raw.get("client_allowed_sans")
    if sans is not None and (not isinstance(sans, list) or not all(isinstance(s, str) and s for s in sans)):
        problems.add(f"{at}.client_allowed_sans", "expected a list of strings")
        sans = None
    if sans is not None and verify != ssl.CERT_REQUIRED:
        problems.add(f"{at}.client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert")
    versions = []
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = text(key) or default
        if name not in _TLS_VERSIONS:
            problems.add(f"{at}.{key}", f"unknown TLS version {name!r} (one of {', '.join(_TLS_VERSIONS)})")
        versions.append(_TLS_VERSIONS.get(name, ssl.TLSVersion.TLSv1_2))
    if versions[0] > versions[1]:
        problems.add(at, "min_version is higher than max_version")
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        problems.add(f"{at}.prefer_server_cipher_suites", "expected true or false")
    if len(problems.items) > before:
        return none

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = versions[0], versions[1]
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    watched: list[Path] = []
    try:
        with _pem_file(cert, cert_file, base, watched) as cert_path, \
                _pem_file(key, key_file, base, watched) as key_path:
            context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError, ValueError) as exc:
        problems.add(at, f"cannot load the certificate and key: {_os_reason(exc)}")
        return none
    if verify != ssl.CERT_NONE:
        try:
            if ca_file:
                ca_path = _resolve(ca_file, base)
                watched.append(ca_path)
                context.load_verify_locations(cafile=ca_path)
            else:
                context.load_verify_locations(cadata=ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            problems.add(f"{at}.client_ca", f"cannot load the client CA: {_os_reason(exc)}")
            return none
        context.verify_mode = verify
    return context, tuple(sans or ()), tuple(watched)


def _resolve(name: str, base: Path) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base / path


@contextlib.contextmanager
def _pem_file(inline: str, filed: str, base: Path, watched: list[Path]) -> Iterator[Path]:
    """A path to hand to ssl: the configured file, or the inline PEM written to a private
    temporary file that is removed at once (ssl loads keys from files only)."""
    if filed:
        path = _resolve(filed, base)
        watched.append(path)
        yield path
        return
    fd, name = tempfile.mkstemp(prefix="monitord-web-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(inline)
        yield Path(name)
    finally:
        os.unlink(name)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return type(exc).__name__ if not str(exc) else str(exc).splitlines()[0]


class WebConfigWatcher:
    """Keeps a loaded web config current: when the file or a certificate it names changes, it is
    read again (certificate rotation without a restart, as the toolkit reads its file on every
    request). A bad new version keeps the previous one and is reported once per change."""

    def __init__(self, path: Path, initial: WebSecurity, on_error: Callable[[ConfigError], None],
                 min_interval: float = 1.0, clock: Callable[[], float] | None = None) -> None:
        import time

        self.path = path
        self.current = initial
        self._on_error = on_error
        self._min_interval = min_interval
        self._clock = clock or time.monotonic
        self._checked = self._clock()
        self._stamp = self._stamps()

    def _stamps(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for path in (self.path, *self.current.watched):
            try:
                st = path.stat()
                out.append((str(path), st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((str(path), -1, -1))
        return tuple(out)

    def get(self) -> WebSecurity:
        now = self._clock()
        if now - self._checked < self._min_interval:
            return self.current
        self._checked = now
        stamp = self._stamps()
        if stamp == self._stamp:
            return self.current
        self._stamp = stamp
        try:
            new = load_web_config(self.path)
            if new.tls != self.current.tls:
                raise ConfigError(["TLS cannot be switched on or off while running: restart monitord"],
                                  str(self.path))
        except ConfigError as exc:
            self._on_error(exc)
        else:
            self.current = new
            self._stamp = self._stamps()
        return self.current
