"""A cheap fake of many Huawei conference endpoints, for load benchmarks (benchmarks/scale.py).

The simulator in monitord/simulators/endpoint.py is built for correctness (aiohttp, a hashed
timeline per device); at thousands of polls a second it would cost more CPU than the daemon it
feeds. This server speaks the same contract (SessionID cookie, then an acCSRFToken for
user/password, then every call with both; double-encoded `data`) with a hand-rolled HTTP/1.1
keep-alive parser and call-status answers rendered once at start-up from the simulator's own
payload builder, so the daemon under test sees the same streams, values and string forms.

    python3 benchmarks/fakevendor.py          # prints "PORT <n>" once listening on 127.0.0.1
"""

from __future__ import annotations

import asyncio
import json
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitord.simulators import endpoint as sim
from monitord.simulators.base import Clock

VARIANTS = 64
# A moment at which every variant device is in a call (phase < CALL_LENGTH for offset 0 devices is
# not guaranteed, so variants are picked among devices that are).
_T0 = 1_700_000_000.0


def _payloads() -> list[bytes]:
    fake = sim.EndpointSim(clock=Clock())
    out: list[bytes] = []
    n = 0
    while len(out) < VARIANTS:
        device = f"variant-{n}"
        n += 1
        phase = (_T0 + sim._unit(device, "offset") * sim.CALL_PERIOD) % sim.CALL_PERIOD
        if phase >= sim.CALL_LENGTH:
            continue
        data = fake._live_payload(device, _T0, phase)
        out.append(json.dumps({"success": 1, "data": json.dumps(data, ensure_ascii=False)}).encode())
    return out


CALL_ANSWERS = _payloads()
OK = b'{"success": 1}'
ERROR_SESSION = json.dumps({"success": 0, "error": sim.ERROR_SESSION_INVALID}).encode()
ERROR_LOGIN = json.dumps({"success": 0, "error": sim.ERROR_BAD_LOGIN}).encode()
TOKEN = "0123456789abcdef0123456789abcdef"
CERT_OK = json.dumps({"success": 1, "data": json.dumps({"acCSRFToken": TOKEN})}).encode()
STATS = {"requests": 0, "logins": 0, "calls": 0}


def _response(body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


class Endpoint(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            cookie = ""
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                lname = name.lower()
                if lname == "content-length":
                    length = int(value)
                elif lname == "cookie":
                    cookie = value.strip()
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4: end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            assert self.transport is not None
            self.transport.write(self.answer(head.split(" ", 2)[1], cookie, body))

    def answer(self, target: str, cookie: str, body: bytes) -> bytes:
        STATS["requests"] += 1
        path, _, query = target.partition("?")
        action = query.partition("ActionID=")[2].partition("&")[0]
        device = path.split("/")[2] if path.startswith("/d/") else "default"
        if action == "WEB_RequestSessionIDAPI":
            return _response(OK, f"Set-Cookie: SessionID=s-{device}; Path=/; HttpOnly\r\n".encode())
        if cookie != f"SessionID=s-{device}":
            return _response(ERROR_SESSION)
        if action == "WEB_RequestCertificateAPI":
            login = json.loads(body or b"{}")
            if login.get("user") != sim.DEFAULT_USER or login.get("password") != sim.DEFAULT_PASSWORD:
                return _response(ERROR_LOGIN)
            STATS["logins"] += 1
            return _response(CERT_OK)
        if TOKEN.encode() not in body:
            return _response(ERROR_SESSION)
        if action == "WEB_GetMultiCallStatusInfoAPI":
            STATS["calls"] += 1
            # crc32, not hash(): the same device gets the same streams in every run.
            return _response(CALL_ANSWERS[zlib.crc32(device.encode()) % VARIANTS])
        return _response(OK)  # WEB_LogoutAPI


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Endpoint, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    # Ends when the parent closes our stdin (or kills us by PID).
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    server.close()
    print(json.dumps(STATS), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
