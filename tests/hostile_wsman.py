"""Hostile WS-Management servers for black-box tests of a WinRM transport (any transport).

Each server listens on a 127.x address in this process, speaks just enough HTTP/1.1 by hand to
misbehave exactly (redirects, floods, trickles, forged or malformed replies) and records what
it received. NTLM and message encryption reuse the lab's acceptor (`agent.lab.auth`), and forged
shells answer with the lab's SOAP builders (`agent.lab.soap`) and simulated host
(`agent.lab.simulate`), so a forged reply is exactly what a real host would have sealed.

`Sink` is a listener that must never be contacted: a redirect target that records every
connection and byte it gets. Everything listens on loopback only and is stopped by `stop`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import gzip
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from agent.lab import load_lab, soap
from agent.lab.auth import ENCRYPTED_CONTENT_TYPE, Account, AuthFailed, SecurityContext, UserFile
from agent.lab.certs import LabCertificates
from agent.lab.profiles import HostProfile
from agent.lab.simulate import run_command_line

SOAP_TYPE: Final = "application/soap+xml;charset=UTF-8"
USER: Final = "LAB\\mfa-scan"
#: The environment variable the generated inventories read the password from.
PASSWORD_ENV: Final = "MFA_HOSTILE_PASSWORD"
_MAX_HEAD: Final = 64 * 1024


def healthy_profile() -> HostProfile:
    """The built-in lab's adfs01: every AD FS check PASSes when its facts are believed."""
    return load_lab().host("adfs01.lab.example")


@dataclass
class Request:
    """One HTTP request as received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Sink:
    """A listener that must never be contacted: counts connections and bytes received. It
    never answers and holds every connection open until stopped (a silent host, too)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.connections = 0
        self.received = bytearray()
        self._lock = threading.Lock()
        self._sock = socket.create_server((address, 0))
        self._sock.settimeout(0.2)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="sink")
        self._thread.start()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._sock.getsockname()[1])

    def url(self, path: str = "/wsman") -> str:
        """An http URL on this listener."""
        return f"http://{self.address}:{self.port}{path}"

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        """Record what the client sends; never answer; close only when stopped."""
        conn.settimeout(0.2)
        with conn, contextlib.suppress(OSError):
            while not self._stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                with self._lock:
                    self.received += data

    def stop(self) -> None:
        """Stop listening."""
        self._stopping.set()
        self._sock.close()
        self._thread.join(timeout=5)


class Connection:
    """One client connection of a `HostileServer`: read requests, write answers."""

    def __init__(self, server: HostileServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.security: SecurityContext | None = None
        self._buffer = b""

    def read_request(self) -> Request | None:
        """The next request, or None when the client closed the connection."""
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > _MAX_HEAD:
                return None
            data = self.sock.recv(65536)
            if not data:
                return None
            self._buffer += data
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = ([*lines[0].split(" "), "", ""])[:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(rest) < length:
            data = self.sock.recv(65536)
            if not data:
                return None
            rest += data
        self._buffer = rest[length:]
        return Request(method, path, headers, rest[:length])

    def send(
        self, status: int, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """One complete response with a Content-Length."""
        lines = [f"HTTP/1.1 {status} Hostile", f"Content-Length: {len(body)}",
                 *(f"{name}: {value}" for name, value in headers)]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def send_head_chunked(self, status: int, content_type: str = SOAP_TYPE) -> None:
        """The head of a chunked response (the body follows with `send_chunk`)."""
        self.sock.sendall(
            f"HTTP/1.1 {status} Hostile\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode("latin-1")
        )

    def send_chunk(self, data: bytes) -> None:
        """One chunk of a chunked body."""
        self.sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def authenticate(self, request: Request) -> bool:
        """Step NTLM as a Windows host would; True once this connection is authenticated.

        Until then it answers 401 itself (with the challenge, or offering Negotiate).
        """
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if not header:
            if self.security is not None and self.security.complete:
                return True
            self.send(401, headers=(("WWW-Authenticate", "Negotiate"),))
            return False
        try:
            token = base64.b64decode(value.strip(), validate=True)
            if self.security is None or self.security.complete:
                self.security = SecurityContext(self.server.user_file, token)
            out = self.security.step(token)
        except (AuthFailed, binascii.Error, ValueError):
            self.security = None
            self.send(401, headers=(("WWW-Authenticate", "Negotiate"),))
            return False
        if not self.security.complete:
            encoded = base64.b64encode(out or b"").decode()
            self.send(401, headers=(("WWW-Authenticate", f"{scheme} {encoded}"),))
            return False
        self.server.logons += 1
        return True

    def message(self, request: Request) -> bytes:
        """The SOAP message of a request: unsealed when it is encrypted."""
        if request.headers.get("content-type", "").startswith("multipart/encrypted"):
            assert self.security is not None
            return self.security.unseal(request.body)
        return request.body

    def send_sealed(self, status: int, message: bytes) -> None:
        """Answer with `message` sealed by this connection's context (as Windows does)."""
        assert self.security is not None
        self.send(status, self.security.seal(message), (("Content-Type", ENCRYPTED_CONTENT_TYPE),))


#: What a hostile server does with one request on one connection; False closes it.
Behaviour = Callable[[Connection, Request], bool]


class HostileServer:
    """A WS-Management endpoint on `address` whose `behaviour` answers every request."""

    def __init__(
        self, address: str, behaviour: Behaviour, *, password: str, state_dir: Path,
        tls: LabCertificates | None = None,
    ) -> None:
        self.address = address
        self.tls = tls
        self._tls_context: ssl.SSLContext | None = None
        if tls is not None:
            self._tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls_context.load_cert_chain(tls.cert_file, tls.key_file)
        self.behaviour = behaviour
        self.password = password
        self.account = Account(USER, password)
        self.user_file = UserFile(state_dir / f"ntlm-{address}.txt", self.account)
        self.requests: list[Request] = []
        self.logons = 0
        #: Set when a client went away (its socket shut down or closed) while being answered.
        self.hung_up = threading.Event()
        self.bytes_sent = 0
        self._sock = socket.create_server((address, 0))
        self._sock.settimeout(0.2)
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="hostile")
        self._thread.start()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._sock.getsockname()[1])

    @property
    def stopping(self) -> threading.Event:
        """Set when the server stops (behaviours that stream wait on it)."""
        return self._stopping

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._open.add(sock)
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        if self._tls_context is not None:
            sock.settimeout(10)
            try:
                sock = self._tls_context.wrap_socket(sock, server_side=True)
            except OSError:
                sock.close()
                return
            sock.settimeout(None)
        conn = Connection(self, sock)
        try:
            while not self._stopping.is_set():
                request = conn.read_request()
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                if not self.behaviour(conn, request):
                    return
        except OSError:
            self.hung_up.set()
        finally:
            with self._lock:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def stop(self) -> None:
        """Stop listening, close every connection, remove the credential file."""
        self._stopping.set()
        self._sock.close()
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self.user_file.remove()

    def inventory(self, path: Path, **host_vars: Any) -> Path:
        """An inventory of one AD FS host, this server, over NTLM on http (encrypted), or on
        https trusting the server's CA when it has TLS."""
        if self.tls is not None:
            host_vars = {"ansible_winrm_scheme": "https",
                         "ansible_winrm_ca_trust_path": str(self.tls.ca_file), **host_vars}
        return write_inventory(path, self.address, self.port, **host_vars)


def write_inventory(path: Path, address: str, port: int, **host_vars: Any) -> Path:
    """An inventory of one AD FS host at address:port, over NTLM on http unless `host_vars`
    say otherwise; the password is read from `PASSWORD_ENV`."""
    host: dict[str, Any] = {"ansible_host": address, "ansible_port": port, **host_vars}
    data = {"all": {
        "vars": {
            "ansible_user": USER,
            "ansible_password": f"{{{{ lookup('env', '{PASSWORD_ENV}') }}}}",
            "ansible_connection": "winrm",
            "ansible_winrm_transport": "ntlm",
            "ansible_winrm_scheme": "http",
        },
        "children": {"adfs": {"hosts": {"hostile.lab.example": host}}},
    }}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.contextmanager
def running(
    address: str, behaviour: Behaviour, *, password: str, state_dir: Path,
    tls: LabCertificates | None = None,
) -> Iterator[HostileServer]:
    """A `HostileServer`, stopped afterwards."""
    server = HostileServer(address, behaviour, password=password, state_dir=state_dir, tls=tls)
    try:
        yield server
    finally:
        server.stop()


# -- forged shells -------------------------------------------------------------------------------


@dataclass
class ForgedShell:
    """Answers every shell operation the way a healthy host would (the lab's replies)."""

    profile: HostProfile = field(default_factory=healthy_profile)
    _pending: dict[str, bytes] = field(default_factory=dict)

    def answer(self, message: bytes) -> bytes:
        """The reply envelope to a request envelope."""
        request = soap.parse_request(message)
        action = request.action
        if action == soap.ACTION_CREATE:
            return soap.create_response(request, soap.new_id(), "http://hostile/wsman")
        if action == soap.ACTION_COMMAND:
            result = run_command_line(self.profile, request.command_line or "",
                                      dt.datetime.now(dt.UTC))
            command = soap.new_id()
            self._pending[command] = result.stdout
            return soap.command_response(request, command)
        if action == soap.ACTION_RECEIVE:
            command = request.command_id or ""
            return soap.receive_response(request, command,
                                         stdout=self._pending.pop(command, b""),
                                         stderr=b"", exit_code=0)
        if action == soap.ACTION_SIGNAL:
            return soap.signal_response(request)
        return soap.delete_response(request)


# -- behaviours ----------------------------------------------------------------------------------


def redirecting(status: int, location: str, *, after_logon: bool) -> Behaviour:
    """Redirect every request (`after_logon`: only once NTLM has authenticated it)."""

    def behave(conn: Connection, request: Request) -> bool:
        if after_logon and not conn.authenticate(request):
            return True
        conn.send(status, b"", (("Location", location),))
        return True

    return behave


def plaintext_forger() -> Behaviour:
    """Complete NTLM, then answer every encrypted request with a forged plaintext reply."""
    shell = ForgedShell()

    def behave(conn: Connection, request: Request) -> bool:
        if not conn.authenticate(request):
            return True
        if not request.body:
            conn.send(200)  # pywinrm's empty POST that finishes the handshake
            return True
        conn.send(200, shell.answer(conn.message(request)), (("Content-Type", SOAP_TYPE),))
        return True

    return behave


#: A scripted reply: (HTTP status, body, sealed?, Content-Type when not sealed).
Scripted = tuple[int, bytes, bool, str]


def scripted(replies: Callable[[str, bytes], Scripted | None]) -> Behaviour:
    """Complete NTLM, then answer each SOAP request with `replies(action, message)`, or as a
    healthy host when it returns None."""
    shell = ForgedShell()

    def behave(conn: Connection, request: Request) -> bool:
        if not conn.authenticate(request):
            return True
        if not request.body:
            conn.send(200)
            return True
        message = conn.message(request)
        action = soap.parse_request(message).action
        reply = replies(action, message)
        if reply is None:
            conn.send_sealed(200, shell.answer(message))
            return True
        status, body, sealed, content_type = reply
        if sealed:
            conn.send_sealed(status, body)
        else:
            conn.send(status, body, (("Content-Type", content_type),))
        return True

    return behave


def flooding(total: int, chunk: int = 1024 * 1024) -> Behaviour:
    """Answer the first request with a chunked body of `total` bytes (no Content-Length)."""

    def behave(conn: Connection, request: Request) -> bool:
        conn.send_head_chunked(200)
        block = b"<" + b"A" * (chunk - 1)
        sent = 0
        while sent < total and not conn.server.stopping.is_set():
            conn.send_chunk(block)
            sent += len(block)
            conn.server.bytes_sent = sent
        conn.send_chunk(b"")
        return False

    return behave


def declaring(total: int) -> Behaviour:
    """Answer the first request declaring a Content-Length of `total` bytes, then send them."""

    def behave(conn: Connection, request: Request) -> bool:
        conn.sock.sendall(
            f"HTTP/1.1 200 Hostile\r\nContent-Type: {SOAP_TYPE}\r\n"
            f"Content-Length: {total}\r\n\r\n".encode("latin-1")
        )
        block = b"A" * (1024 * 1024)
        sent = 0
        while sent < total and not conn.server.stopping.is_set():
            conn.sock.sendall(block[: total - sent])
            sent += min(len(block), total - sent)
            conn.server.bytes_sent = sent
        return False

    return behave


def gzip_bomb(total: int) -> Behaviour:
    """Answer the first request with `total` bytes of SOAP-looking text, gzip-compressed (a few
    hundred KiB on the wire), although the client asked for no encoding."""
    payload = gzip.compress(b"<" + b" " * (total - 1), compresslevel=9)

    def behave(conn: Connection, request: Request) -> bool:
        conn.send(200, payload, (("Content-Type", SOAP_TYPE), ("Content-Encoding", "gzip")))
        conn.server.bytes_sent = len(payload)
        return False

    return behave


def trickling(interval: float = 1.0) -> Behaviour:
    """Answer the first request with a chunked body of one byte every `interval` seconds,
    forever: each read gets data, so no read timeout ever fires."""

    def behave(conn: Connection, request: Request) -> bool:
        conn.send_head_chunked(200)
        while not conn.server.stopping.is_set():
            readable, _, _ = select.select([conn.sock], [], [], interval)
            if readable and not conn.sock.recv(1):
                conn.server.hung_up.set()  # the client shut its side: it gave up on us
                return False
            conn.send_chunk(b" ")
            conn.server.bytes_sent += 1
        return False

    return behave


# -- measuring a scan ----------------------------------------------------------------------------

_PEAK_RSS = """
import resource, sys
from agent.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code if isinstance(code, int) else 0)
"""
#: Environment variables that could send test traffic through a proxy, or offer agent keys.
_CLEARED = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
            "SSH_AUTH_SOCK")


def scan_peak_rss(*args: str, cwd: Path) -> tuple[int, str]:
    """Run ``mfa-agent ARGS`` as its own process: (its peak RSS in KiB, its stdout)."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=300, check=False,
    )
    return int(done.stderr.strip().splitlines()[-1]), done.stdout
