"""The fast WS-Management client against hostile servers (issue 9's rules on the new path).

Each test runs a scripted server on 127.0.0.1 that completes a real NTLM handshake (pyspnego's
acceptor, `agent.lab.auth`) where the case needs one, then misbehaves: a redirect, a plaintext
reply on an encrypted session, a DTD, a 400 MB reply, a reply trickled byte by byte. The client
must name each failure (its `ErrorKind`), send nothing anywhere else, read no more than its cap,
and give up at the host deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.connectors.common import Timeouts
from agent.connectors.errors import ErrorKind
from agent.connectors.wsman.fleet import read_host
from agent.facts import HostFacts
from agent.inventory import Host, load_inventory
from agent.lab.auth import ENCRYPTED_CONTENT_TYPE, Account, SecurityContext, UserFile

pytestmark = pytest.mark.needs_server

PASSWORD = "Hostile-Pw-1"
USER = "LAB\\mfa-scan"


class Conversation:
    """What the server saw of one connection, and its NTLM context once authenticated."""

    def __init__(self, sock: socket.socket, user_file: UserFile) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.user_file = user_file
        self.context: SecurityContext | None = None
        self.requests: list[tuple[dict[str, str], bytes]] = []

    def read(self) -> tuple[dict[str, str], bytes]:
        """One request: headers (lower-case) and body."""
        headers: dict[str, str] = {}
        line = self.file.readline()
        if not line:
            raise EOFError
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.file.read(int(headers.get("content-length", "0")))
        self.requests.append((headers, body))
        return headers, body

    def send(self, status: int, body: bytes = b"", headers: tuple[str, ...] = ()) -> None:
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def handshake(self) -> bytes:
        """NTLM up to the AUTHENTICATE request; the SOAP message it carried (unsealed)."""
        headers, _ = self.read()
        token = base64.b64decode(headers["authorization"].split(" ", 1)[1])
        self.context = SecurityContext(self.user_file, token)
        challenge = self.context.step(token) or b""
        self.send(401, headers=(f"WWW-Authenticate: Negotiate "
                                f"{base64.b64encode(challenge).decode()}",))
        headers, body = self.read()
        token = base64.b64decode(headers["authorization"].split(" ", 1)[1])
        self.context.step(token)
        assert self.context.complete
        return self.context.unseal(body)


Script = Callable[[Conversation], None]


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Script], Host]]:
    """Start a server running `script` on its first connection; the inventory host pointing at
    it. Every connection it accepts is counted in ``accepted``."""
    user_file = UserFile(tmp_path / "ntlm-users", Account(USER, PASSWORD))
    monkeypatch.setenv("MFA_HOSTILE_PASSWORD", PASSWORD)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    conversations: list[Conversation] = []

    def start(script: Script) -> Host:
        def serve() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    sock, _ = listener.accept()
                except TimeoutError:
                    continue
                conversation = Conversation(sock, user_file)
                conversations.append(conversation)
                with contextlib.suppress(OSError, EOFError):
                    script(conversation)
                with contextlib.suppress(OSError):
                    sock.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        port = listener.getsockname()[1]
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(
            "all:\n  vars:\n    ansible_connection: winrm\n    ansible_winrm_transport: ntlm\n"
            "    ansible_winrm_scheme: http\n    ansible_user: 'LAB\\mfa-scan'\n"
            "    ansible_password: \"{{ lookup('env', 'MFA_HOSTILE_PASSWORD') }}\"\n"
            "  children:\n    adfs:\n      hosts:\n        evil.example:\n"
            f"          ansible_host: 127.0.0.1\n          ansible_port: {port}\n"
        )
        return load_inventory(inventory).hosts[0]

    start.conversations = conversations  # type: ignore[attr-defined]
    yield start
    stop.set()
    for thread in threads:
        thread.join(5)
    listener.close()
    user_file.remove()


def _read(host: Host, timeouts: Timeouts | None = None) -> HostFacts:
    return asyncio.run(read_host(host, timeouts or Timeouts(connect=5, operation=20, host=60)))


def test_a_redirect_is_never_followed(hostile: Callable[[Script], Host]) -> None:
    def redirect(c: Conversation) -> None:
        c.read()
        c.send(307, headers=("Location: http://collector.evil.example/wsman",))
        with contextlib.suppress(EOFError, OSError):
            c.read()  # anything more would be recorded

    host = hostile(redirect)
    result = _read(host)
    assert result.error is not None
    assert result.error.kind == ErrorKind.REDIRECT_REFUSED.value
    assert "http://collector.evil.example/wsman" in result.error.message
    conversations = hostile.conversations  # type: ignore[attr-defined]
    assert len(conversations) == 1 and len(conversations[0].requests) == 1
    assert "NTLMSSP\x00\x03" not in base64.b64decode(
        conversations[0].requests[0][0]["authorization"].split(" ", 1)[1]).decode("latin-1")


def test_garbage_for_a_challenge_costs_one_connection(hostile: Callable[[Script], Host]) -> None:
    """Bytes that are no NTLM CHALLENGE are an ERROR at once: no second sign-in."""
    def garbage(c: Conversation) -> None:
        c.read()
        c.send(401, headers=("WWW-Authenticate: Negotiate "
                             f"{base64.b64encode(b'<html>Sign in</html>').decode()}",))
        with contextlib.suppress(EOFError, OSError):
            c.read()  # an AUTHENTICATE would be recorded

    result = _read(hostile(garbage))
    assert result.error is not None
    assert result.error.kind == ErrorKind.MALFORMED_REPLY.value
    assert "unusable NTLM challenge" in result.error.message
    conversations = hostile.conversations  # type: ignore[attr-defined]
    assert len(conversations) == 1 and len(conversations[0].requests) == 1


def test_a_plaintext_reply_on_an_encrypted_session_is_refused(
    hostile: Callable[[Script], Host],
) -> None:
    forged = (b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/>'
              b"</s:Envelope>")

    def plaintext(c: Conversation) -> None:
        assert b"transfer/Create" in c.handshake()
        c.send(200, forged, ("Content-Type: application/soap+xml;charset=UTF-8",))

    result = _read(hostile(plaintext))
    assert result.error is not None
    assert result.error.kind == ErrorKind.UNENCRYPTED_REPLY.value
    assert "unencrypted reply on an encrypted session" in result.error.message
    assert result.facts == {}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le"])
def test_entity_declarations_are_refused_not_expanded(
    hostile: Callable[[Script], Host], encoding: str
) -> None:
    """In UTF-16 too, whose bytes never spell "<!DOCTYPE": replies are read as UTF-8 only."""
    bomb = (f'<?xml version="1.0" encoding="{encoding}"?><!DOCTYPE s [<!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&b;'
            "</s:Body></s:Envelope>").encode(encoding)

    def entities(c: Conversation) -> None:
        c.handshake()
        assert c.context is not None
        c.send(200, c.context.seal(bomb), (f"Content-Type: {ENCRYPTED_CONTENT_TYPE}",))

    result = _read(hostile(entities))
    assert result.error is not None
    assert result.error.kind == ErrorKind.MALFORMED_REPLY.value
    assert "aaaaaaaaaa" not in result.error.message
    if encoding == "utf-8":
        assert "declares a DOCTYPE (entity declarations are refused" in result.error.message


def test_a_huge_reply_is_refused_before_it_is_read(hostile: Callable[[Script], Host]) -> None:
    sent = {"bytes": 0}

    def huge(c: Conversation) -> None:
        c.handshake()
        c.sock.sendall(("HTTP/1.1 200 OK\r\nContent-Length: 419430400\r\n"
                        f"Content-Type: {ENCRYPTED_CONTENT_TYPE}\r\n\r\n").encode())
        chunk = b"A" * 65536
        with contextlib.suppress(OSError):
            for _ in range(6400):  # 400 MiB, if the client kept reading
                c.sock.sendall(chunk)
                sent["bytes"] += len(chunk)

    result = _read(hostile(huge))
    assert result.error is not None
    assert result.error.kind == ErrorKind.REPLY_TOO_LARGE.value
    assert "larger than 4 MiB" in result.error.message
    assert sent["bytes"] < 64 * 1024 * 1024  # the client hung up; it never took it all in


def test_a_chunked_reply_is_capped_while_it_is_read(hostile: Callable[[Script], Host]) -> None:
    def chunked(c: Conversation) -> None:
        c.handshake()
        c.sock.sendall(("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                        f"Content-Type: {ENCRYPTED_CONTENT_TYPE}\r\n\r\n").encode())
        with contextlib.suppress(OSError):
            for _ in range(2000):
                c.sock.sendall(b"10000\r\n" + b"B" * 65536 + b"\r\n")

    result = _read(hostile(chunked))
    assert result.error is not None
    assert result.error.kind == ErrorKind.REPLY_TOO_LARGE.value


def test_a_trickled_reply_cannot_outlive_the_host_deadline(
    hostile: Callable[[Script], Host],
) -> None:
    released = threading.Event()

    def trickle(c: Conversation) -> None:
        c.handshake()
        c.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while not released.wait(0.05):
            c.sock.sendall(b"x")  # always just enough to keep a read timeout from firing

    host = hostile(trickle)
    try:
        result = _read(host, Timeouts(connect=5, operation=60, host=2))
    finally:
        released.set()
    assert result.error is not None
    assert result.error.kind == ErrorKind.TIMED_OUT.value
    assert result.error.message == (
        "timed out: evil.example gave no complete answer within the 2 s host deadline")


def test_proxy_settings_in_the_environment_are_never_used(
    hostile: Callable[[Script], Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)

    def refuse(c: Conversation) -> None:
        c.read()
        c.send(401, headers=("WWW-Authenticate: Negotiate",))

    started = time.monotonic()
    result = _read(hostile(refuse))
    assert result.error is not None
    # The server itself answered (a proxy at port 9 would have been "connection refused").
    assert result.error.kind == ErrorKind.AUTHENTICATION_REFUSED.value
    assert len(hostile.conversations) == 1  # type: ignore[attr-defined]
    assert time.monotonic() - started < 60  # bounded, not timed
