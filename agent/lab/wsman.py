"""One simulated Windows host's WS-Management endpoint: ``POST /wsman`` over HTTP or HTTPS.

Built the way the team's WinRM notes describe and pywinrm 0.5.0 needs: a `ThreadingHTTPServer` whose
handler speaks HTTP/1.1 with keep-alive (one handler per TCP connection, holding that
connection's NTLM context), ``TCP_NODELAY`` and every response written in one ``write``.

* **Auth.** No or bad credentials → 401 with ``WWW-Authenticate: Negotiate`` and
  ``WWW-Authenticate: Basic realm="WSMAN"``. Basic is checked per request; NTLM/SPNEGO tokens are
  stepped until complete (401 ``Negotiate <token>`` meanwhile) and then authenticate the
  connection (`agent.lab.auth`). Like Windows' default ``AllowUnencrypted=false``, plain SOAP over
  ``http://`` is refused with 401 unless the server is created with ``allow_unencrypted=True``.
* **Encryption.** A ``multipart/encrypted`` request is unsealed with the connection's context and
  its reply sealed the same way.
* **Shell.** Create, Command, Receive, Signal, Send and Delete on the cmd resource; replies relate
  to the request's MessageID; an unknown shell is a ``w:InvalidSelectors`` fault. Commands run on
  the host profile (`agent.lab.simulate`); a slow command makes Receive answer ``w:TimedOut``
  after the request's OperationTimeout, as Windows does, so that clients poll again.
* **Faults** from the profile: wrong password, slow, hang, reset, a WS-Man fault on Create,
  PowerShell errors, garbage output, the command-line limit and split output.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import logging
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from agent.lab import soap
from agent.lab.auth import (
    ENCRYPTED_CONTENT_TYPE,
    Account,
    AuthFailed,
    SealError,
    SecurityContext,
    UserFile,
)
from agent.lab.certs import LabCertificates
from agent.lab.profiles import HostProfile
from agent.lab.simulate import CommandResult, run_command_line

log = logging.getLogger("agent.lab")

SOAP_CONTENT_TYPE: Final = "application/soap+xml;charset=UTF-8"
#: Windows' MaxShellsPerUser default.
MAX_SHELLS: Final = 30
#: Commands one shell may hold before they are cleaned up with Signal.
MAX_COMMANDS_PER_SHELL: Final = 100
#: OperationTimeout when a request carries none (Windows' MaxTimeoutms default).
DEFAULT_OPERATION_TIMEOUT: Final = 60.0
_TLS_HANDSHAKE_TIMEOUT: Final = 10.0


@dataclass
class _Command:
    id: str
    result: CommandResult
    ready_at: float
    sent: int = 0


@dataclass
class _Shell:
    id: str
    commands: dict[str, _Command] = field(default_factory=dict)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    lab: WsmanServer

    def __init__(self, lab: WsmanServer, address: tuple[str, int]) -> None:
        self.lab = lab
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (getfqdn can stall)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.lab.profile.name
        self.server_port = int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Per connection, in its own thread: TCP_NODELAY, the TLS handshake, then the handler."""
        sock: socket.socket = request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wrapped: ssl.SSLSocket | None = None
        context = self.lab.tls_context
        if context is not None:
            sock.settimeout(_TLS_HANDSHAKE_TIMEOUT)
            try:
                wrapped = context.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.debug("%s: TLS handshake failed: %s", self.lab.profile.name, exc)
                return
            wrapped.settimeout(None)
            sock = wrapped
        self.lab.track(sock, add=True)
        try:
            _Handler(sock, client_address, self)
        finally:
            self.lab.track(sock, add=False)
            if wrapped is not None:
                _close(wrapped)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed mid-request is routine here (resets, stops): log it only."""
        log.debug("%s: connection from %s failed", self.lab.profile.name, client_address,
                  exc_info=True)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.security: SecurityContext | None = None

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: %s", self.server.lab.profile.name, format % args)

    # -- HTTP plumbing ---------------------------------------------------------------------------

    def _send(
        self, status: int, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.log_request(status, len(body))

    def _unauthorized(self, token: tuple[str, bytes] | None = None) -> None:
        offers: tuple[tuple[str, str], ...]
        if token is not None:
            scheme, data = token
            offers = (("WWW-Authenticate", f"{scheme} {base64.b64encode(data).decode()}"),)
        else:
            offers = (("WWW-Authenticate", "Negotiate"),
                      ("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._send(401, b"", offers)

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            self._send(411)
            return None
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0 or length > soap.MAX_ENVELOPE_BYTES * 2:
            self.close_connection = True
            self._send(413 if length > 0 else 400)
            return None
        return self.rfile.read(length) if length else b""

    def _reset(self) -> None:
        """Close the connection with a TCP RST (SO_LINGER 0) instead of a FIN."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def do_GET(self) -> None:
        self._send(405, b"", (("Allow", "POST"),))

    def do_POST(self) -> None:
        lab = self.server.lab
        body = self._read_body()
        if body is None:
            return
        faults = lab.profile.faults
        if faults.hang:
            lab.stopping.wait()
            self.close_connection = True
            return
        if faults.reset:
            self._reset()
            return
        if self.path.split("?", 1)[0].lower() != "/wsman":
            self._send(404)
            return
        try:
            authenticated = self._authenticate()
            if authenticated is not None:
                context, final_token = authenticated
                self._answer(context, final_token, body)
        except (OSError, ssl.SSLError):
            raise  # the connection broke: socketserver logs it (debug) and closes it
        except Exception:
            log.exception("%s: internal error answering a request", lab.profile.name)
            self.close_connection = True
            self._send(500)

    # -- authentication --------------------------------------------------------------------------

    def _authenticate(self) -> tuple[SecurityContext | None, tuple[str, bytes] | None] | None:
        """(context or None for Basic, final token) when authenticated; None once answered 401."""
        lab = self.server.lab
        header = self.headers.get("Authorization")
        if not header:
            if self.security is not None and self.security.complete:
                return self.security, None
            self._unauthorized()
            return None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "basic":
            lab.count("basic")
            if not lab.account.check_basic(value):
                self._unauthorized()
                return None
            return None, None
        if scheme.lower() not in {"negotiate", "ntlm"}:
            self._unauthorized()
            return None
        try:
            token = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            self._unauthorized()
            return None
        try:
            if self.security is None or self.security.complete:
                self.security = SecurityContext(lab.user_file, token, lab.channel_binding)
            out = self.security.step(token)
        except AuthFailed as exc:
            log.info("%s: %s", lab.profile.name, exc)
            self.security = None
            self._unauthorized()
            return None
        if not self.security.complete:
            self._unauthorized((scheme, out or b""))
            return None
        lab.count("ntlm_logons")
        if self.security.bindings_verified:
            lab.count("channel_bindings_verified")
        return self.security, ((scheme, out) if out else None)

    # -- the SOAP exchange -----------------------------------------------------------------------

    def _answer(
        self, context: SecurityContext | None, final_token: tuple[str, bytes] | None, body: bytes
    ) -> None:
        lab = self.server.lab
        headers: list[tuple[str, str]] = []
        if final_token is not None:
            scheme, data = final_token
            headers.append(("WWW-Authenticate", f"{scheme} {base64.b64encode(data).decode()}"))
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.lower().startswith("multipart/encrypted")
        if encrypted:
            if context is None:
                self._send(400, b"", tuple(headers))
                return
            try:
                message = context.unseal(body)
            except SealError as exc:
                log.info("%s: %s", lab.profile.name, exc)
                self._send(400, b"", tuple(headers))
                return
            lab.count("encrypted")
        elif not body:
            # pywinrm finishes the NTLM handshake with an empty POST before encrypting.
            self._send(200, b"", tuple(headers))
            return
        elif lab.scheme == "http" and not lab.allow_unencrypted:
            lab.count("refused_plaintext")
            self._unauthorized()
            return
        else:
            message = body
            lab.count("plaintext")
        status, reply = lab.dispatch(message)
        if encrypted and context is not None:
            reply = context.seal(reply)
            headers.append(("Content-Type", ENCRYPTED_CONTENT_TYPE))
        elif reply:
            headers.append(("Content-Type", SOAP_CONTENT_TYPE))
        self._send(status, reply, tuple(headers))


class WsmanServer:
    """The WS-Management endpoint of one simulated host."""

    def __init__(
        self,
        profile: HostProfile,
        *,
        account: Account,
        user_file: UserFile,
        port: int = 0,
        tls: LabCertificates | None = None,
        allow_unencrypted: bool = False,
    ) -> None:
        self.profile = profile
        self.account = account
        self.user_file = user_file
        self.allow_unencrypted = allow_unencrypted
        self.scheme = "https" if tls is not None else "http"
        self.tls_context: ssl.SSLContext | None = None
        self.channel_binding: bytes | None = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(tls.cert_file, tls.key_file)
            self.tls_context = context
            self.channel_binding = tls.channel_binding_hash()
        self.stopping = threading.Event()
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._shells: dict[str, _Shell] = {}
        self._connections: set[socket.socket] = set()
        self._httpd = _HttpServer(self, (profile.address, port))
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """The address it listens on."""
        return self.profile.address

    @property
    def port(self) -> int:
        """The port it listens on (the real one when created with port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def endpoint(self) -> str:
        """The WinRM endpoint URL, e.g. ``http://127.0.1.11:5985/wsman``."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}/wsman"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
            name=f"wsman {self.profile.name}", daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, release waiting requests and close every open connection."""
        self.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            _close(sock)

    def track(self, sock: socket.socket, *, add: bool) -> None:
        """Remember open connections so that `stop` can close them."""
        with self._lock:
            if add:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def count(self, what: str) -> None:
        """Count one event (requests by kind, logons) for tests and diagnostics."""
        with self._lock:
            self.stats[what] += 1

    # -- SOAP dispatch ---------------------------------------------------------------------------

    def dispatch(self, message: bytes) -> tuple[int, bytes]:
        """Answer one SOAP request: (HTTP status, reply envelope)."""
        try:
            request = soap.parse_request(message)
        except soap.SoapError as exc:
            log.info("%s: bad request: %s", self.profile.name, exc)
            return 400, b""
        try:
            return 200, self._operation(request)
        except _FaultReply as reply:
            return 500, soap.fault(request.message_id, reply.fault, self.profile.name)

    def _operation(self, request: soap.Request) -> bytes:
        if request.resource_uri != soap.CMD_RESOURCE_URI:
            raise _FaultReply(soap.unsupported(
                f"the resource {request.resource_uri or '(none)'} is not simulated; "
                "only the cmd shell is"
            ))
        action = request.action
        if action == soap.ACTION_CREATE:
            return self._create(request)
        if action == soap.ACTION_COMMAND:
            return self._command(request)
        if action == soap.ACTION_RECEIVE:
            return self._receive(request)
        if action == soap.ACTION_SIGNAL:
            shell = self._shell(request)
            with self._lock:
                if shell.commands.pop(soap.command_id(request) or "", None) is None:
                    raise _FaultReply(soap.invalid_command(soap.command_id(request)))
            return soap.signal_response(request)
        if action == soap.ACTION_SEND:
            self._shell(request)
            return soap.send_response(request)
        if action == soap.ACTION_DELETE:
            with self._lock:
                if self._shells.pop(request.shell_id or "", None) is None:
                    raise _FaultReply(soap.invalid_shell(request.shell_id))
            return soap.delete_response(request)
        raise _FaultReply(soap.unsupported(f"the action {action} is not supported"))

    def _shell(self, request: soap.Request) -> _Shell:
        with self._lock:
            shell = self._shells.get(request.shell_id or "")
        if shell is None:
            raise _FaultReply(soap.invalid_shell(request.shell_id))
        return shell

    def _create(self, request: soap.Request) -> bytes:
        if self.profile.faults.wsman_fault:
            raise _FaultReply(soap.ACCESS_DENIED)
        with self._lock:
            if len(self._shells) >= MAX_SHELLS:
                raise _FaultReply(soap.Fault(
                    "s:Receiver", "w:QuotaLimit",
                    f"The WS-Management service cannot process the request. This user is allowed "
                    f"a maximum number of {MAX_SHELLS} concurrent shells, which has been exceeded.",
                    2150859173,
                ))
            shell = _Shell(soap.new_id())
            self._shells[shell.id] = shell
        return soap.create_response(request, shell.id, self.endpoint)

    def _command(self, request: soap.Request) -> bytes:
        shell = self._shell(request)
        line = soap.command_line(request)
        if line is None:
            raise _FaultReply(soap.Fault("s:Sender", "w:InvalidParameter",
                                         "The Command request has no CommandLine.", 87))
        result = run_command_line(self.profile, line, dt.datetime.now(dt.UTC))
        command = _Command(soap.new_id(), result,
                           time.monotonic() + self.profile.faults.slow_seconds)
        with self._lock:
            if len(shell.commands) >= MAX_COMMANDS_PER_SHELL:
                raise _FaultReply(soap.Fault(
                    "s:Receiver", "w:QuotaLimit",
                    "The shell has too many commands that were not cleaned up with Signal.",
                ))
            shell.commands[command.id] = command
        return soap.command_response(request, command.id)

    def _receive(self, request: soap.Request) -> bytes:
        shell = self._shell(request)
        wanted = soap.command_id(request)
        with self._lock:
            command = shell.commands.get(wanted or "")
        if command is None:
            raise _FaultReply(soap.invalid_command(wanted))
        remaining = command.ready_at - time.monotonic()
        if remaining > 0:
            timeout = request.operation_timeout or DEFAULT_OPERATION_TIMEOUT
            if remaining > timeout:
                self.stopping.wait(timeout)
                raise _FaultReply(soap.TIMED_OUT)
            if self.stopping.wait(remaining):
                raise _FaultReply(soap.TIMED_OUT)
        result = command.result
        chunk = self.profile.faults.split_output_bytes or max(1, len(result.stdout))
        with self._lock:
            piece = result.stdout[command.sent:command.sent + chunk]
            command.sent += len(piece)
            done = command.sent >= len(result.stdout)
        return soap.receive_response(
            request, command.id, stdout=piece,
            stderr=result.stderr if done else b"",
            exit_code=result.exit_code if done else None,
        )


class _FaultReply(Exception):
    def __init__(self, fault: soap.Fault) -> None:
        super().__init__(fault.reason)
        self.fault = fault
