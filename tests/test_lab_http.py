"""The lab's HTTP layer, spoken to byte by byte over a raw socket: keep-alive, requests sent
back to back answered in order (also behind a request that waits), requests split across
packets, every malformed head answered and the connection closed, a client's FIN answered
before the close, no Nagle delay, and clients that flood a connection while a request waits or
never read their answers held to bounded buffers.
"""

from __future__ import annotations

import base64
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.connectors.wsman import soap
from agent.connectors.wsman.session import RECV_SIZE
from agent.lab import Lab, start_lab
from agent.lab.wsman import MAX_BUFFERED, WsmanServer

pytestmark = pytest.mark.needs_server

PASSWORD = "Http-lab-Pw1"
USER = "LAB\\mfa-scan"


def _lab(directory: Path, *, hang: bool = False, latency: float = 0.0) -> Lab:
    profiles = directory / "profiles"
    profiles.mkdir(parents=True)
    profile = {"name": "solo.lab.example", "address": "127.0.3.9", "roles": ["aad_connect"],
               "facts": {"adsync": {"service_status": "Stopped"}}}
    if hang:
        profile["faults"] = {"hang": True}
    (profiles / "solo.yaml").write_text(yaml.safe_dump(profile))
    return start_lab(profiles, password=PASSWORD, state_dir=directory / "state",
                     allow_unencrypted=True, latency=latency)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with _lab(tmp_path) as running:
        yield running


def _connect(lab: Lab) -> socket.socket:
    host = lab.hosts["solo.lab.example"]
    return socket.create_connection((host.address, host.port), timeout=30)


def _read_response(sock: socket.socket, buffered: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response off `sock` (status, lower-cased headers, body); the rest stays buffered."""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response: {bytes(buffered)!r}")
        buffered += chunk
    end = buffered.index(b"\r\n\r\n")
    lines = buffered[:end].decode("latin-1").split("\r\n")
    del buffered[:end + 4]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(buffered) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        buffered += chunk
    body = bytes(buffered[:length])
    del buffered[:length]
    return int(lines[0].split(" ")[1]), headers, body


def _closed(sock: socket.socket) -> bool:
    """Whether the lab closed the connection (EOF or reset), with nothing more sent."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _create_request(lab: Lab) -> bytes:
    endpoint = lab.hosts["solo.lab.example"].endpoint
    envelope = soap.create(endpoint, soap.message_id(), 20)
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return (f"POST /wsman HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n"
            f"Content-Type: application/soap+xml;charset=UTF-8\r\n"
            f"Content-Length: {len(envelope)}\r\n\r\n").encode() + envelope


GET = b"GET /wsman HTTP/1.1\r\nHost: x\r\n\r\n"
FLOOD_LIMIT = 64 * 1024 * 1024
ELSEWHERE = b"POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"


def test_requests_sent_back_to_back_are_answered_in_order_on_one_connection(lab: Lab) -> None:
    with _connect(lab) as sock:
        sock.sendall(GET + ELSEWHERE + _create_request(lab) + GET)
        buffered = bytearray()
        statuses = [_read_response(sock, buffered)[0] for _ in range(4)]
        assert statuses == [405, 404, 200, 405]
        sock.sendall(GET)  # the connection is still open
        assert _read_response(sock, buffered)[0] == 405


def test_requests_behind_one_that_waits_wait_for_it(tmp_path: Path) -> None:
    with _lab(tmp_path, latency=0.05) as lab, _connect(lab) as sock:
        sock.sendall(ELSEWHERE + GET + ELSEWHERE)
        buffered = bytearray()
        assert [_read_response(sock, buffered)[0] for _ in range(3)] == [404, 405, 404]


def test_a_request_split_into_single_bytes_is_answered_once_whole(lab: Lab) -> None:
    request = _create_request(lab)
    with _connect(lab) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(len(request)):
            sock.send(request[index:index + 1])
        status, headers, body = _read_response(sock, bytearray())
    assert status == 200
    assert headers["content-type"].startswith("application/soap+xml")
    assert soap.shell_id(soap.parse(body))


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"POST /wsman HTTP/1.1\r\nX: " + b"a" * 70_000, 431),
    (b"POST /wsman HTTP/1.1\r\nHost: x\r\n\r\n", 411),
    (b"POST /wsman HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
    (b"POST /wsman HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /wsman\r\n\r\n", 400),
    (b"POST /wsman HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    ("POST /wsman HTTP/1.1\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"), 400),
], ids=["head-too-long", "no-length", "too-long", "negative-length", "no-version", "bad-header",
        "superscript-length"])
def test_a_malformed_request_is_answered_and_the_connection_closed(
    lab: Lab, request_bytes: bytes, status: int
) -> None:
    with _connect(lab) as sock:
        sock.sendall(request_bytes)
        got, headers, _ = _read_response(sock, bytearray())
        assert (got, headers.get("connection")) == (status, "close")
        assert _closed(sock)


def test_a_last_request_whose_body_spans_many_reads_is_answered(lab: Lab) -> None:
    body = b"x" * 900_000  # more than one read of the lab's (256 KiB)
    with _connect(lab) as sock:
        sock.sendall(b"POST /other HTTP/1.1\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        status, headers, _ = _read_response(sock, bytearray())
        assert (status, headers.get("connection")) == (404, "close")
        assert _closed(sock)


def test_a_client_that_stops_sending_gets_its_answers_then_the_close(tmp_path: Path) -> None:
    with _lab(tmp_path, latency=0.05) as lab, _connect(lab) as sock:
        sock.sendall(GET + ELSEWHERE)
        sock.shutdown(socket.SHUT_WR)
        buffered = bytearray()
        assert [_read_response(sock, buffered)[0] for _ in range(2)] == [405, 404]
        assert _closed(sock)


def test_answers_are_sent_without_waiting_for_nagle(lab: Lab) -> None:
    """Two answers written back to back would otherwise wait out a delayed ACK (40 ms); and
    requests are read in buffers glibc does not map and unmap on every read."""
    with _connect(lab) as sock:
        sock.sendall(GET)
        _read_response(sock, bytearray())
        (connection,) = lab.server("solo.lab.example").connections
        assert connection.transport is not None
        server_side = connection.transport.get_extra_info("socket")
        assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert getattr(connection.transport, "max_size", None) == RECV_SIZE < 128 * 1024


def test_a_client_that_never_reads_its_answers_is_held_bounded(lab: Lab) -> None:
    server: WsmanServer = lab.server("solo.lab.example")
    with _connect(lab) as sock:
        sent = 0
        chunk = GET * (65536 // len(GET))
        sock.settimeout(2)  # until the lab stops reading and a send blocks for 2 s
        with contextlib.suppress(TimeoutError):
            while sent < FLOOD_LIMIT:
                sent += sock.send(chunk)
        (connection,) = server.connections
        assert connection.transport is not None
        assert sent < FLOOD_LIMIT, "the lab read all it was sent"
        assert connection.buffered <= MAX_BUFFERED + 256 * 1024
        # asyncio's write high-water mark (64 KiB) and the one answer that crossed it
        assert connection.transport.get_write_buffer_size() <= 128 * 1024
        answered = server.stats_snapshot().get("http:405", 0)
        assert 0 < answered < sent // len(GET)


@pytest.mark.parametrize("request_bytes", [
    b"GET /wsman HTTP/1.0\r\n\r\n",
    b"GET /wsman HTTP/1.1\r\nConnection: close\r\n\r\n",
])
def test_http_1_0_and_connection_close_end_the_connection(lab: Lab, request_bytes: bytes) -> None:
    with _connect(lab) as sock:
        sock.sendall(request_bytes + GET)
        buffered = bytearray()
        status, headers, _ = _read_response(sock, buffered)
        assert (status, headers.get("connection")) == (405, "close")
        assert not buffered  # the request behind it was not answered
        assert _closed(sock)


def test_requests_behind_a_hung_one_wait_and_a_flood_of_them_is_held_bounded(
    tmp_path: Path,
) -> None:
    with _lab(tmp_path, hang=True) as lab, _connect(lab) as sock:
        server: WsmanServer = lab.server("solo.lab.example")
        sock.sendall(ELSEWHERE)  # a POST: the hung host never answers it
        sent = 0
        chunk = GET * (65536 // len(GET))
        # Send until the kernel's buffers and the lab's are full and a send blocks for 2 s.
        sock.settimeout(2)
        with contextlib.suppress(TimeoutError):
            while sent < FLOOD_LIMIT:
                sent += sock.send(chunk)
        (connection,) = server.connections
        assert sent < FLOOD_LIMIT, "the lab read all it was sent"
        # One read (asyncio reads up to 256 KiB at a time) may go past the bound.
        assert connection.buffered <= MAX_BUFFERED + 256 * 1024
        assert connection.buffered > MAX_BUFFERED // 2
        assert server.stats_snapshot().get("http:405", 0) == 0
