"""One simulated Windows host's WS-Management endpoint: ``POST /wsman`` over HTTP or HTTPS.

Every host of every lab in a process is served by ONE asyncio event loop in one thread
(`agent.lab.eventloop`): no thread per host or per connection, so one process serves 10,000
hosts, and a host that waits (``--latency``, a slow command, a hang) costs a timer, not a thread
or CPU. Each connection is an `asyncio.Protocol` that answers a request in the callback bringing
its last byte (no task or stream per connection). Built the way the team's WinRM notes describe
and pywinrm 0.5.0 needs: HTTP/1.1 with keep-alive (the connection holds its NTLM context),
requests sent back to back answered in order, ``TCP_NODELAY`` and every response written in one
``write``.

* **Auth.** No or bad credentials → 401 with ``WWW-Authenticate: Negotiate`` and
  ``WWW-Authenticate: Basic realm="WSMAN"``. Basic is checked per request; NTLM/SPNEGO tokens are
  stepped until complete (401 ``Negotiate <token>`` meanwhile) and then authenticate the
  connection (`agent.lab.auth`). Like Windows' default ``AllowUnencrypted=false``, plain SOAP over
  ``http://`` is refused with 401 unless the server is created with ``allow_unencrypted=True``.
  As on Windows, the request that completes the NTLM handshake may already carry an encrypted
  SOAP message (sealed with the new context): it is answered at once.
* **Encryption.** A ``multipart/encrypted`` request is unsealed with the connection's context and
  its reply sealed the same way.
* **Shell.** Create, Command, Receive, Signal, Send and Delete on the cmd resource; replies relate
  to the request's MessageID; an unknown shell is a ``w:InvalidSelectors`` fault. Commands run on
  the host profile (`agent.lab.simulate`); a slow command makes Receive answer ``w:TimedOut``
  after the request's OperationTimeout, as Windows does, so that clients poll again. Delete also
  drops the shell's commands (no Signal needed first).
* **Latency.** ``latency`` seconds are added to every answer with a timer (a WAN or busy host).
* **Faults** from the profile: wrong password, slow, hang, reset, a WS-Man fault on Create,
  PowerShell errors, garbage output, the command-line limit and split output.
* **Counters** (`stats`): ``requests``, ``body:<content type>``, ``http:<status>``, ``ntlm_logons``,
  ``encrypted``, ``plaintext``, … for tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import email.utils
import logging
import socket
import ssl
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

from agent.connectors.wsman.session import read_in_small_buffers
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
from agent.lab.eventloop import shared_loop
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
#: Longest request head (request line and headers) the lab reads.
_MAX_HEAD: Final = 64 * 1024
#: Most bytes a connection buffers while a request waits (reading pauses above): the largest
#: request there can be.
MAX_BUFFERED: Final = _MAX_HEAD + 4 + soap.MAX_ENVELOPE_BYTES * 2
SERVER_NAME: Final = "Microsoft-HTTPAPI/2.0"


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


class _Request:
    """One HTTP request as read off the connection: its head first, `body` once all arrived."""

    __slots__ = ("body", "closes", "headers", "length", "method", "path", "version")

    def __init__(self, method: str, path: str, version: str, headers: dict[str, str],
                 length: int, closes: bool) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers
        #: The body's length (Content-Length).
        self.length = length
        #: HTTP/1.0 or ``Connection: close``: the connection ends with this request's answer.
        self.closes = closes
        self.body = b""


class _Hung:
    """`_Connection._waiting` for a request that is never answered (a hung host)."""


_HUNG: Final = _Hung()


class _Wait(Exception):
    """An answer that must wait `seconds` (a command still running): then `fault` is the answer,
    or, when None, the request is taken again."""

    def __init__(self, seconds: float, fault: soap.Fault | None) -> None:
        super().__init__(f"wait {seconds:.3f} s")
        self.seconds = seconds
        self.fault = fault


class _Connection(asyncio.Protocol):
    """One TCP connection: its requests in turn, its NTLM context.

    A protocol rather than a stream and a task: a request is parsed and answered in the callback
    that brings its last byte, which saves a task wake-up and a stream read per request (about
    a tenth of the lab's CPU). A request that must wait (``latency``, a slow command) waits on a
    timer; the requests behind it wait in the buffer and are answered in order, as HTTP/1.1
    wants. Memory is bounded both ways: no request is taken while the client leaves the answers
    unread (asyncio's write high-water mark), and reading pauses once the buffer holds more than
    one largest request. A client's FIN still gets what it asked for answered, then the close.
    """

    def __init__(self, lab: WsmanServer) -> None:
        self.lab = lab
        self.transport: asyncio.Transport | None = None
        self.security: SecurityContext | None = None
        self.close_connection = False
        self._buffer = bytearray()
        #: The request whose head is read and whose body is still arriving.
        self._head: _Request | None = None
        #: The timer of a request answered later, `_HUNG`, or None when nothing waits.
        self._waiting: asyncio.TimerHandle | _Hung | None = None
        self._paused = False
        self._write_paused = False
        #: The client sent its FIN: close once what it sent is answered.
        self._eof = False
        #: How far the buffer has been searched for the end of a head (a head trickled in byte
        #: by byte is not searched again from its start each time).
        self._scanned = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet taken as a request."""
        return len(self._buffer)

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.lab.connections.add(self)
        sock: socket.socket | None = transport.get_extra_info("socket")
        if sock is not None:
            # asyncio sets it only on sockets it creates, not on those a listener accepts; without
            # it two answers written back to back wait out Nagle and a delayed ACK (40 ms).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        read_in_small_buffers(transport)  # as the client reads: see its `RECV_SIZE`

    def connection_lost(self, exc: Exception | None) -> None:
        self.lab.connections.discard(self)
        if isinstance(self._waiting, asyncio.TimerHandle):
            self._waiting.cancel()
        self._waiting = _HUNG  # nothing more is answered on this connection
        self._buffer.clear()

    def data_received(self, data: bytes) -> None:
        if self.close_connection:
            return  # the request that ends the connection is taken: what follows is not read
        self._buffer += data
        self._proceed()

    def eof_received(self) -> bool:
        self._eof = True
        self._proceed()
        # Kept open to write the answers still due (over TLS asyncio closes it all the same).
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._proceed()

    # -- HTTP plumbing ---------------------------------------------------------------------------

    def _proceed(self) -> None:
        """Answer the complete requests in the buffer, in order, until one has to wait or the
        client stops reading; then mind the flow, and close after a FIN once all is answered."""
        try:
            while (self._waiting is None and not self.close_connection
                   and not self._write_paused):
                request = self._take_request()
                if request is None:
                    break
                self._start(request)
        except Exception:
            self._internal_error()
        transport = self.transport
        assert transport is not None
        if self._paused or len(self._buffer) > MAX_BUFFERED:
            self._flow()
        if (self._eof and self._waiting is None and not self._write_paused
                and not transport.is_closing()):
            transport.close()

    def _flow(self) -> None:
        """Stop reading while the buffer holds more than a request can be, read again after."""
        assert self.transport is not None
        held = len(self._buffer)
        if not self._paused and held > MAX_BUFFERED:
            self._paused = True
            self.transport.pause_reading()
        elif self._paused and held <= MAX_BUFFERED and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()

    def _take_request(self) -> _Request | None:
        """The next whole request off the buffer (None: not all here yet, or answered 4xx)."""
        buffer = self._buffer
        head = self._head
        if head is None:
            end = buffer.find(b"\r\n\r\n", self._scanned, _MAX_HEAD + 4)
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    self.close_connection = True
                    self._send(431)
                self._scanned = max(0, len(buffer) - 3)
                return None
            self._scanned = 0
            head = self._parse_head(buffer[:end].decode("latin-1"))
            del buffer[:end + 4]
            if head is None:
                return None
            self._head = head
        if len(buffer) < head.length:
            return None
        head.body = bytes(buffer[:head.length])
        del buffer[:head.length]
        self._head = None
        if head.closes:
            self.close_connection = True  # answered with Connection: close, then closed
        return head

    def _parse_head(self, text: str) -> _Request | None:
        """The request line and headers (None once answered 400, 411 or 413)."""
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self.close_connection = True
            self._send(400)
            return None
        method, path, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self.close_connection = True
                self._send(400)
                return None
            headers.setdefault(name.strip().lower(), value.strip())
        closes = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
        length = 0
        if method == "POST":
            length_text = headers.get("content-length")
            if length_text is None:
                self.close_connection = True
                self._send(411)
                return None
            # isascii: "²" is a digit to isdigit, not to int.
            length = int(length_text) if length_text.isascii() and length_text.isdigit() else -1
            if length < 0 or length > soap.MAX_ENVELOPE_BYTES * 2:
                self.close_connection = True
                self._send(413 if length > 0 else 400)
                return None
        return _Request(method, path, version, headers, length, closes)

    def _send(self, status: int, body: bytes = b"",
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        transport = self.transport
        assert transport is not None
        if transport.is_closing():
            return
        head = (f"HTTP/1.1 {status} {_PHRASES[status]}\r\nServer: {SERVER_NAME}\r\n"
                f"Date: {_http_date()}\r\nContent-Length: {len(body)}\r\n")
        head += "".join(f"{name}: {value}\r\n" for name, value in headers)
        if self.close_connection:
            head += "Connection: close\r\n"
        transport.write(head.encode("latin-1") + b"\r\n" + body)
        self.lab.count(f"http:{status}")
        if self.close_connection:
            transport.close()

    def _unauthorized(self, token: tuple[str, bytes] | None = None) -> None:
        offers: tuple[tuple[str, str], ...]
        if token is not None:
            scheme, data = token
            offers = (("WWW-Authenticate", f"{scheme} {base64.b64encode(data).decode()}"),)
        else:
            offers = (("WWW-Authenticate", "Negotiate"),
                      ("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._send(401, b"", offers)

    def _reset(self) -> None:
        """Close the connection with a TCP RST (SO_LINGER 0) instead of a FIN."""
        assert self.transport is not None
        self.close_connection = True
        sock: socket.socket | None = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _later(self, seconds: float, then: Callable[..., None], *args: Any) -> None:
        """Run ``then(*args)`` after `seconds`, holding the requests behind until it answers."""
        self._waiting = asyncio.get_running_loop().call_later(
            seconds, self._resume, then, args)

    def _resume(self, then: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._waiting = None
        try:
            then(*args)
        except Exception:
            self._internal_error()
        self._proceed()

    def _internal_error(self) -> None:
        """An exception answering a request is the lab's own bug: 500, connection closed."""
        log.exception("%s: internal error answering a request", self.lab.profile.name)
        self._waiting = None
        self.close_connection = True
        self._send(500)

    def _start(self, request: _Request) -> None:
        lab = self.lab
        lab.count("requests")
        if request.body:
            content_type = request.headers.get("content-type", "").split(";", 1)[0]
            lab.count(f"body:{content_type.strip().lower() or 'none'}")
        if lab.latency > 0:
            self._later(lab.latency, self._handle, request)
        else:
            self._handle(request)  # within `_proceed`, which answers an exception with 500

    def _handle(self, request: _Request) -> None:
        lab = self.lab
        if request.method != "POST":
            self._send(405, b"", (("Allow", "POST"),))
            return
        faults = lab.profile.faults
        if faults.hang:
            self._waiting = _HUNG
            return
        if faults.reset:
            self._reset()
            return
        if request.path.split("?", 1)[0].lower() != "/wsman":
            self._send(404)
            return
        authenticated = self._authenticate(request)
        if authenticated is not None:
            context, final_token = authenticated
            self._answer(request, context, final_token)

    # -- authentication --------------------------------------------------------------------------

    def _authenticate(
        self, request: _Request
    ) -> tuple[SecurityContext | None, tuple[str, bytes] | None] | None:
        """(context or None for Basic, final token) when authenticated; None once answered 401."""
        lab = self.lab
        header = request.headers.get("authorization")
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
                self.security = SecurityContext(lab.user_file, token, lab.channel_binding,
                                                computer=lab.computer)
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
        self, request: _Request, context: SecurityContext | None,
        final_token: tuple[str, bytes] | None,
    ) -> None:
        lab = self.lab
        body = request.body
        headers: list[tuple[str, str]] = []
        if final_token is not None:
            scheme, data = final_token
            headers.append(("WWW-Authenticate", f"{scheme} {base64.b64encode(data).decode()}"))
        content_type = request.headers.get("content-type", "")
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
        try:
            soap_request = soap.parse_request(message)
        except soap.SoapError as exc:
            log.info("%s: bad request: %s", lab.profile.name, exc)
            self._send(400, b"", tuple(headers))
            return
        # ``action:Delete`` once a client closed its shell: an event tests can wait on.
        lab.count("action:" + soap_request.action.rsplit("/", 1)[-1])
        self._operate(soap_request, context if encrypted else None, headers)

    def _operate(self, request: soap.Request, sealing: SecurityContext | None,
                 headers: list[tuple[str, str]]) -> None:
        """Carry out the operation and send its reply, sealed with `sealing` when given."""
        try:
            status, reply = 200, self.lab.operation(request)
        except _FaultReply as fault:
            status, reply = 500, self.lab.fault_reply(request, fault.fault)
        except _Wait as wait:
            self._later(wait.seconds, self._waited, wait, request, sealing, headers)
            return
        self._reply(status, reply, sealing, headers)

    def _waited(self, wait: _Wait, request: soap.Request, sealing: SecurityContext | None,
                headers: list[tuple[str, str]]) -> None:
        if wait.fault is None:
            self._operate(request, sealing, headers)
        else:
            self._reply(500, self.lab.fault_reply(request, wait.fault), sealing, headers)

    def _reply(self, status: int, reply: bytes, sealing: SecurityContext | None,
               headers: list[tuple[str, str]]) -> None:
        if sealing is not None:
            reply = sealing.seal(reply)
            headers.append(("Content-Type", ENCRYPTED_CONTENT_TYPE))
        elif reply:
            headers.append(("Content-Type", SOAP_CONTENT_TYPE))
        self._send(status, reply, tuple(headers))


_date_cache: tuple[int, str] = (0, "")
#: Reason phrases by status code (an ``HTTPStatus`` lookup per reply costs more than the reply).
_PHRASES: Final = {int(status): status.phrase for status in HTTPStatus}


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class WsmanServer:
    """The WS-Management endpoint of one simulated host.

    The listening socket is bound when it is created (an address in use is an `OSError` here);
    `start` begins serving on the shared event loop, `stop` closes the listener and every
    connection and releases waiting requests.
    """

    def __init__(
        self,
        profile: HostProfile,
        *,
        account: Account,
        user_file: UserFile,
        port: int = 0,
        tls: LabCertificates | None = None,
        allow_unencrypted: bool = False,
        latency: float = 0.0,
    ) -> None:
        self.profile = profile
        self.account = account
        self.user_file = user_file
        self.allow_unencrypted = allow_unencrypted
        self.latency = latency
        self.scheme = "https" if tls is not None else "http"
        self.tls_context: ssl.SSLContext | None = None
        self.channel_binding: bytes | None = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(tls.cert_file, tls.key_file)
            self.tls_context = context
            self.channel_binding = tls.channel_binding_hash()
        #: Written on the event loop's thread only; read with `stats_snapshot`.
        self.stats: Counter[str] = Counter()
        self._shells: dict[str, _Shell] = {}
        #: The open connections (aborted by `stop`).
        self.connections: set[_Connection] = set()
        self._loop = shared_loop()
        family = socket.AF_INET6 if ":" in profile.address else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((profile.address, port))
            self._socket.listen(128)
            self._socket.setblocking(False)
        except OSError:
            self._socket.close()
            raise
        self._port = int(self._socket.getsockname()[1])
        self._server: asyncio.Server | None = None
        self._stopped = False

    @property
    def address(self) -> str:
        """The address it listens on."""
        return self.profile.address

    @property
    def computer(self) -> str:
        """The host's NetBIOS name, as its NTLM CHALLENGE gives it."""
        return self.profile.name.split(".", 1)[0].upper()[:15]

    @property
    def port(self) -> int:
        """The port it listens on (the real one when created with port 0)."""
        return self._port

    @property
    def endpoint(self) -> str:
        """The WinRM endpoint URL, e.g. ``http://127.0.1.11:5985/wsman``."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}/wsman"

    def start(self) -> None:
        """Serve on the shared event loop."""
        self._loop.run(self.start_serving())

    async def start_serving(self) -> None:
        """`start`, from the event loop itself (to start many hosts in one call)."""
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self), sock=self._socket, ssl=self.tls_context,
            ssl_handshake_timeout=_TLS_HANDSHAKE_TIMEOUT if self.tls_context else None,
        )

    def stop(self) -> None:
        """Stop serving, release waiting requests and close every open connection."""
        if self._stopped:
            return
        self._loop.run(self.stop_serving())

    async def stop_serving(self) -> None:
        """`stop`, from the event loop itself."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.close()
        else:
            self._socket.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        self.connections.clear()

    def count(self, what: str) -> None:
        """Count one event (requests by kind, logons) for tests and diagnostics."""
        self.stats[what] += 1

    def stats_snapshot(self) -> dict[str, int]:
        """A copy of the counters, safe from any thread: only the loop's thread writes them,
        and copying a dict is one step under the GIL."""
        return dict(self.stats)

    # -- SOAP dispatch ---------------------------------------------------------------------------

    def fault_reply(self, request: soap.Request, fault: soap.Fault) -> bytes:
        """The fault envelope answering `request`."""
        return soap.fault(request.message_id, fault, self.profile.name)

    def operation(self, request: soap.Request) -> bytes:
        """The reply envelope to one request; `_FaultReply` for a fault, `_Wait` when the
        answer must wait (a command still running)."""
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
            if shell.commands.pop(request.command_id or "", None) is None:
                raise _FaultReply(soap.invalid_command(request.command_id))
            return soap.signal_response(request)
        if action == soap.ACTION_SEND:
            self._shell(request)
            return soap.send_response(request)
        if action == soap.ACTION_DELETE:
            if self._shells.pop(request.shell_id or "", None) is None:
                raise _FaultReply(soap.invalid_shell(request.shell_id))
            return soap.delete_response(request)
        raise _FaultReply(soap.unsupported(f"the action {action} is not supported"))

    def _shell(self, request: soap.Request) -> _Shell:
        shell = self._shells.get(request.shell_id or "")
        if shell is None:
            raise _FaultReply(soap.invalid_shell(request.shell_id))
        return shell

    def _create(self, request: soap.Request) -> bytes:
        if self.profile.faults.wsman_fault:
            raise _FaultReply(soap.ACCESS_DENIED)
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
        line = request.command_line
        if line is None:
            raise _FaultReply(soap.Fault("s:Sender", "w:InvalidParameter",
                                         "The Command request has no CommandLine.", 87))
        result = run_command_line(self.profile, line, dt.datetime.now(dt.UTC))
        command = _Command(soap.new_id(), result,
                           time.monotonic() + self.profile.faults.slow_seconds)
        if len(shell.commands) >= MAX_COMMANDS_PER_SHELL:
            raise _FaultReply(soap.Fault(
                "s:Receiver", "w:QuotaLimit",
                "The shell has too many commands that were not cleaned up with Signal.",
            ))
        shell.commands[command.id] = command
        return soap.command_response(request, command.id)

    def _receive(self, request: soap.Request) -> bytes:
        shell = self._shell(request)
        wanted = request.command_id
        command = shell.commands.get(wanted or "")
        if command is None:
            raise _FaultReply(soap.invalid_command(wanted))
        remaining = command.ready_at - time.monotonic()
        if remaining > 0:
            timeout = request.operation_timeout or DEFAULT_OPERATION_TIMEOUT
            # Windows answers w:TimedOut after OperationTimeout; the client polls again.
            raise _Wait(timeout, soap.TIMED_OUT) if remaining > timeout else _Wait(remaining, None)
        result = command.result
        chunk = self.profile.faults.split_output_bytes or max(1, len(result.stdout))
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
