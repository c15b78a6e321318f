"""One host's facts over the fast WS-Management path: five HTTP requests on one TCP connection.

NTLM with message encryption over http (the lab's and most estates' setting)::

    1. POST, empty body, Authorization: Negotiate <NTLM NEGOTIATE>  → 401 + CHALLENGE
    2. POST, Authorization: Negotiate <NTLM AUTHENTICATE>, body = Create(shell) sealed with the
       new context                                                 → 200, sealed ShellId
    3. POST Command: ONE command line running every fact script the host needs
       (`agent.factscripts.bundle`)                                → 200, sealed CommandId
    4. POST Receive (again while the host answers w:TimedOut or the output is not Done)
                                                                   → 200, sealed output
    5. POST Delete(shell): drops the shell and its command (no Signal needed); its reply is
       waited for, not read

There is no anonymous first request (the negotiate token goes out at once) and no empty POST
to finish the handshake (the AUTHENTICATE request carries the Create, as HTTP authentication
allows). Basic sends its header on every request (4 requests); NTLM over https authenticates the
same way with channel binding (``tls-server-end-point``) and sends SOAP in the clear inside TLS.

What a hostile host cannot do here: redirect anything (3xx is an ERROR naming the Location; no
request ever goes anywhere but the inventory's address), feed a plaintext reply into an encrypted
session (refused), send more than `http.MAX_BODY_BYTES` per reply or `MAX_OUTPUT_BYTES` of output
(refused while reading), declare entities (refused), or outlive the connect, operation and host
deadlines (an asyncio timeout on connecting, the connection's read timer on each reply; the
host deadline is the caller's). Nothing here reads the process
environment (no proxies, no CA bundle variables) but pyspnego's two NTLM variables, read as
pyspnego reads them (`ntlm.WORKSTATION_ENV`, `ntlm.COMPAT_ENV`). A CHALLENGE `ntlm.Initiator`
does not answer (no Windows host sends one) costs a second connection, on which pyspnego signs
in. Failures become the same `ConnectorError`s, with the same messages, as the pywinrm
path (`agent.connectors.winrm`): both are built by `agent.connectors.winrm_errors`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import importlib
import logging
import os
import ssl
import struct
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from agent.connectors.common import (
    MAX_OUTPUT_BYTES,
    MAX_REPLY_BYTES,
    SCRIPT_FAILURES,
    Timeouts,
    script_entries,
)
from agent.connectors.common import too_much_output as script_too_much_output
from agent.connectors.errors import (
    ConnectorError,
    ErrorKind,
    malformed_reply,
    redirect_refused,
    reply_too_large,
    unencrypted_reply,
)
from agent.connectors.replies import EXPECTED, check_reply, describe_quickly
from agent.connectors.winrm_errors import (
    credentials_rejected,
    http_status,
    refuse_insecure,
    socket_error,
    url_host,
    wsman_fault,
)
from agent.connectors.wsman import ntlm, soap
from agent.connectors.wsman.http import (
    MAX_HEAD_BYTES,
    Connection,
    HttpProtocolError,
    Reply,
    ReplyTooLarge,
)
from agent.connectors.wsman.ntlmseal import Sealer
from agent.factscripts import FactScript, bundle, scripts_for
from agent.inventory import Host

log = logging.getLogger(__name__)

ENCRYPTION_PROTOCOL: Final = "application/HTTP-SPNEGO-session-encrypted"
ENCRYPTED_CONTENT_TYPE: Final = (
    f'multipart/encrypted;protocol="{ENCRYPTION_PROTOCOL}";boundary="Encrypted Boundary"'
)
SOAP_CONTENT_TYPE: Final = "application/soap+xml;charset=UTF-8"
_BOUNDARY: Final = b"--Encrypted Boundary"
_OCTET: Final = b"\tContent-Type: application/octet-stream\r\n"
#: Transports and schemes the fast path speaks; everything else goes through pywinrm.
FAST_TRANSPORTS: Final = frozenset({"ntlm", "basic"})


def covers(host: Host) -> bool:
    """Whether the fast path can read this host (else `agent.connectors.winrm` does).

    NTLM and Basic, over http, or over https with certificate validation (the default).
    Kerberos, CredSSP, certificate authentication and ``server_cert_validation: ignore`` keep
    using pywinrm.
    """
    c = host.connection
    return (
        c.kind == "winrm"
        and c.winrm_transport in FAST_TRANSPORTS
        and (c.winrm_scheme == "http" or c.winrm_cert_validation == "validate")
    )


def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """Verification as pywinrm does it: the inventory's CA file, else certifi's bundle."""
    if ca_file is None:
        try:
            import certifi

            ca_file = certifi.where()
        except ImportError:  # pragma: no cover - requests depends on certifi
            ca_file = None
    return ssl.create_default_context(cafile=ca_file)


_contexts: dict[str | None, ssl.SSLContext] = {}

#: Bytes asyncio reads from one TLS connection at a time. Its default (``SSLProtocol.max_size``,
#: 256 KiB) is also a buffer it allocates per connection: with 512 hosts in flight per process
#: those held 128 MiB each (579 MB peak for 1,000 https hosts, measured). Four TLS records.
TLS_READ_BUFFER: Final = 64 * 1024


#: Bytes asked of each ``recv`` on a plain connection. asyncio asks for 256 KiB, a buffer
#: larger than glibc's mmap threshold: every read then maps fresh pages and shrinks them
#: (mmap, mremap, munmap and page faults: 22 µs per 3 KB read against 3.6 µs with 64 KiB,
#: measured; five reads per host). A larger reply just takes more reads.
RECV_SIZE: Final = 64 * 1024


def read_in_small_buffers(transport: asyncio.BaseTransport) -> None:
    """Have a plain TCP transport ask `RECV_SIZE` bytes of each ``recv`` (the client's and the
    lab's); a TLS transport, which reads into a buffer of its own, is left as it is."""
    if hasattr(transport, "max_size"):
        transport.max_size = RECV_SIZE


def _small_tls_buffers() -> None:
    """Lower asyncio's per-connection TLS buffer to `TLS_READ_BUFFER` (this process only)."""
    protocol = getattr(getattr(asyncio, "sslproto", None), "SSLProtocol", None)
    if protocol is not None and getattr(protocol, "max_size", 0) > TLS_READ_BUFFER:
        protocol.max_size = TLS_READ_BUFFER


def _context_for(ca_file: str | None) -> ssl.SSLContext:
    context = _contexts.get(ca_file)
    if context is None:
        context = _contexts[ca_file] = _ssl_context(ca_file)
    return context


def _channel_bindings(certificate: bytes) -> bytes:
    """``tls-server-end-point`` bindings (RFC 5929) of the server's certificate: the
    application data of the channel-bindings structure."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    algorithm = x509.load_der_x509_certificate(certificate).signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        digest = hashlib.sha256(certificate).digest()
    else:
        hasher = hashes.Hash(algorithm)
        hasher.update(certificate)
        digest = hasher.finalize()
    return b"tls-server-end-point:" + digest


@functools.cache
def _credential(user: str, password: str) -> ntlm.Credential:
    """The NTLM credential, hashed once per scan, not once per host."""
    return ntlm.Credential.of(user, password)


class _Pyspnego:
    """pyspnego's NTLM initiator, for what `ntlm.Initiator` does not answer (and whenever
    `ntlm.takes_environment` says no): `Initiator`'s interface, with pyspnego's own wrap and
    unwrap when its context is not one `Sealer` takes. Made after `import_pyspnego`."""

    def __init__(self, credential: ntlm.Credential, user: str, *, spn_host: str,
                 bindings: bytes | None) -> None:
        import spnego
        from spnego.channel_bindings import GssChannelBindings

        self.context = spnego.client(
            # The hash pyspnego would compute (pure-Python MD4 and DES) for every context.
            spnego.NTLMHash(username=user, nt_hash=credential.nt_hash.hex()),
            hostname=spn_host, service="HTTP", protocol="ntlm",
            channel_bindings=(GssChannelBindings(application_data=bindings)
                              if bindings is not None else None),
        )

    def negotiate(self) -> bytes:
        return bytes(self.context.step() or b"")

    def authenticate(self, challenge: bytes) -> bytes:
        return bytes(self.context.step(challenge) or b"")

    def sealer(self) -> Sealer | None:
        return Sealer.take(self.context)


async def import_pyspnego() -> None:
    """Import pyspnego in a worker thread: the first import takes about 0.2 s, which on the event
    loop's thread would stall every host in flight; later ones are a lookup."""
    await asyncio.to_thread(importlib.import_module, "spnego.channel_bindings")


class _Unanswered(Exception):
    """The host's CHALLENGE is not one `ntlm.Initiator` answers: sign in again with pyspnego."""


class Session:
    """One host's connection, authentication and (for NTLM over http) message encryption."""

    def __init__(self, host: Host, timeouts: Timeouts, *, pyspnego: bool = False) -> None:
        """`pyspnego`: sign in with pyspnego's NTLM (after `_Unanswered`)."""
        self.host = host
        self.where = host.name
        self.timeouts = timeouts
        c = host.connection
        self.transport = c.winrm_transport
        self.https = c.winrm_scheme == "https"
        self.encrypted = self.transport == "ntlm" and not self.https
        self.endpoint = f"{c.winrm_scheme}://{url_host(host.address)}:{c.port}/wsman"
        self.read_timeout = timeouts.operation + 10
        self.connection: Connection | None = None
        self._pyspnego = pyspnego or not ntlm.takes_environment()
        self._context: Any = None
        self._sealer: Sealer | None = None
        self._auth_header: tuple[tuple[str, str], ...] = ()
        password = c.password.reveal() if c.password is not None else None
        if not c.user or password is None:
            raise ConnectorError(
                ErrorKind.CONFIGURATION,
                f"{self.transport} authentication needs ansible_user and ansible_password",
            )
        try:
            c.user.encode("utf-16-le")
        except UnicodeEncodeError:
            raise ConnectorError(
                ErrorKind.CONFIGURATION, "ansible_user holds what cannot be sent (a lone surrogate)"
            ) from None
        self._user = c.user
        self._password = password

    # -- connection --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the TCP (TLS) connection within the connect timeout."""
        c = self.host.connection
        context = _context_for(c.winrm_ca_trust_path) if self.https else None
        if context is not None:
            _small_tls_buffers()
        try:
            async with asyncio.timeout(self.timeouts.connect):
                reader, writer = await asyncio.open_connection(
                    self.host.address, c.port, ssl=context,
                    server_hostname=self.host.address if context else None,
                    limit=MAX_HEAD_BYTES,
                )
        except TimeoutError:
            raise ConnectorError(
                ErrorKind.TIMED_OUT, f"timed out connecting to {self.where} (--connect-timeout)"
            ) from None
        except OSError as exc:
            raise socket_error(exc, where=self.where) from None
        read_in_small_buffers(writer.transport)
        host_header = f"{url_host(self.host.address)}:{c.port}"
        self.connection = Connection(reader, writer, host_header, self.read_timeout)

    def close(self) -> None:
        """Drop the connection."""
        if self.connection is not None:
            self.connection.close()

    # -- one exchange ------------------------------------------------------------------------

    async def _post(self, body: bytes, headers: tuple[tuple[str, str], ...]) -> Reply:
        assert self.connection is not None
        try:
            return await self.connection.post(body, headers)
        except TimeoutError:
            raise socket_error(TimeoutError(), where=self.where,
                               read_timeout=self.read_timeout) from None
        except ReplyTooLarge:
            raise reply_too_large(self.where, MAX_REPLY_BYTES) from None
        except HttpProtocolError as exc:
            raise malformed_reply(self.where, str(exc)) from None
        except OSError as exc:
            raise socket_error(exc, where=self.where) from None

    def _refuse_redirect(self, reply: Reply) -> None:
        if 300 <= reply.status < 400:
            raise redirect_refused(self.where, reply.status, reply.headers.get("location"))

    async def exchange(self, envelope: bytes, mid: str, *, first: bool = False) -> Any:
        """Send one SOAP message and return the parsed reply (`ConnectorError` on failure)."""
        if first and self.transport == "ntlm":
            reply = await self._authenticate(envelope)
        else:
            reply = await self._post(*self._framed(envelope))
        return self._read(reply, mid)

    async def send(self, envelope: bytes) -> None:
        """Send one SOAP message and wait for its reply, which is not read (`ConnectorError`
        only if no reply came)."""
        await self._post(*self._framed(envelope))

    def _framed(self, envelope: bytes) -> tuple[bytes, tuple[tuple[str, str], ...]]:
        if self.encrypted:
            return self._seal(envelope), (("Content-Type", ENCRYPTED_CONTENT_TYPE),
                                          *self._auth_header)
        return envelope, (("Content-Type", SOAP_CONTENT_TYPE), *self._auth_header)

    async def _authenticate(self, envelope: bytes) -> Reply:
        """NTLM: NEGOTIATE (empty body), then AUTHENTICATE carrying the first message."""
        bindings = None
        if self.https:
            assert self.connection is not None
            ssl_object = self.connection.writer.get_extra_info("ssl_object")
            certificate = ssl_object.getpeercert(binary_form=True) if ssl_object else None
            if certificate:
                bindings = _channel_bindings(certificate)
        credential = _credential(self._user, self._password)
        initiator: ntlm.Initiator | _Pyspnego
        if self._pyspnego:
            await import_pyspnego()
            try:
                initiator = _Pyspnego(credential, self._user, spn_host=self.host.address,
                                      bindings=bindings)
            except Exception:  # pyspnego refused its own settings (its message is not shown)
                level = os.environ.get(ntlm.COMPAT_ENV, "")
                raise ConnectorError(
                    ErrorKind.CONFIGURATION,
                    f"pyspnego cannot start NTLM with {ntlm.COMPAT_ENV}={level!r} (0 to 5)",
                ) from None
            self._context = initiator.context
        else:
            initiator = ntlm.Initiator(credential, spn=f"HTTP/{self.host.address}",
                                       bindings=bindings)
        reply = await self._post(b"", (
            ("Authorization", f"Negotiate {base64.b64encode(initiator.negotiate()).decode()}"),))
        self._refuse_redirect(reply)
        challenge = None
        for offer in reply.header_values("www-authenticate"):
            scheme, _, token = offer.strip().partition(" ")
            if scheme.lower() in ("negotiate", "ntlm") and token.strip():
                challenge = token.strip()
        if reply.status != 401 or challenge is None:
            raise self._refused() if reply.status == 401 else self._http_error(reply)
        try:
            authenticate = initiator.authenticate(base64.b64decode(challenge, validate=True))
        except ntlm.Unsupported as exc:
            log.debug("%s: %s; signing in again with pyspnego", self.where, exc)
            raise _Unanswered from None
        except Exception:  # ntlm.Malformed, or whatever pyspnego raises
            raise ConnectorError(
                ErrorKind.MALFORMED_REPLY, f"{self.where} sent an unusable NTLM challenge"
            ) from None
        self._sealer = initiator.sealer()
        body, headers = self._framed(envelope)
        return await self._post(body, (
            *headers, ("Authorization", f"Negotiate {base64.b64encode(authenticate).decode()}")))

    # -- framing -----------------------------------------------------------------------------

    def _seal(self, message: bytes) -> bytes:
        if self._sealer is not None:
            wrapped = self._sealer.seal(message)
        else:
            wrapped = bytes(self._context.wrap(message, encrypt=True).data)
        return (
            _BOUNDARY + b"\r\n\tContent-Type: " + ENCRYPTION_PROTOCOL.encode()
            + b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(message)).encode() + b"\r\n" + _BOUNDARY + b"\r\n" + _OCTET
            + struct.pack("<I", 16) + wrapped + _BOUNDARY + b"--\r\n"
        )

    def _unseal(self, body: bytes) -> bytes:
        start, end = _BOUNDARY + b"\r\n", _BOUNDARY + b"--\r\n"
        header_end = body.find(start, len(start))
        if not body.startswith(start) or not body.endswith(end) or header_end < 0:
            raise self._malformed("an encrypted reply is not multipart/encrypted")
        header = body[len(start):header_end]
        length_text = header.rpartition(b"Length=")[2].strip()
        payload = body[header_end + len(start):-len(end)]
        if not length_text.isdigit() or not payload.startswith(_OCTET):
            raise self._malformed("an encrypted reply has no length or data part")
        payload = payload[len(_OCTET):]
        if len(payload) < 20 or struct.unpack("<I", payload[:4])[0] != 16:
            raise self._malformed("an encrypted reply has a bad signature")
        try:
            if self._sealer is not None:
                message = self._sealer.unseal(payload[4:])
            else:
                message = bytes(self._context.unwrap(payload[4:]).data)
        except Exception:
            raise self._malformed("an encrypted reply failed its signature check") from None
        if len(message) != int(length_text):
            raise self._malformed("an encrypted reply's length does not match")
        return message

    # -- replies -----------------------------------------------------------------------------

    def _malformed(self, what: str) -> ConnectorError:
        return malformed_reply(self.where, what)

    def _refused(self) -> ConnectorError:
        return credentials_rejected(self.where)

    def _http_error(self, reply: Reply) -> ConnectorError:
        return http_status(self.where, reply.status)

    def _read(self, reply: Reply, mid: str) -> Any:
        self._refuse_redirect(reply)
        if reply.status == 401:
            raise self._refused()
        body = reply.body
        if self.encrypted and body:
            content_type = reply.headers.get("content-type", "")
            if not content_type.lower().startswith("multipart/encrypted") or (
                ENCRYPTION_PROTOCOL.lower() not in content_type.lower()
            ):
                if reply.status >= 400:
                    raise ConnectorError(
                        ErrorKind.HTTP_ERROR,
                        f"{self.where} answered HTTP {reply.status} with an unencrypted body on "
                        "an encrypted session (not read)",
                    )
                raise unencrypted_reply(self.where)
            body = self._unseal(body)
        root = self._envelope(body, reply.status,
                              None if self.encrypted else reply.headers.get("content-type"))
        if reply.status != 200:
            found = soap.fault(root) if root is not None else None
            if found is None:
                raise self._http_error(reply)
            if found.wsman_code == soap.TIMED_OUT_CODE:
                return None  # a Receive that timed out on the host: poll again
            raise wsman_fault(self.where, found.reason, found.wsman_code)
        assert root is not None
        try:
            soap.check_relates_to(root, mid)
        except soap.SoapError as exc:
            raise self._malformed(str(exc)) from None
        return root

    def _envelope(self, body: bytes, status: int, content_type: str | None) -> ET.Element | None:
        """The reply's root, refused exactly as `check_reply` refuses it for pywinrm's path, in
        one parse: expat runs again only to name what is wrong with a reply that did not parse.
        None for an error status whose body is no SOAP envelope."""
        problem = describe_quickly(body, content_type)
        if problem is None:
            try:
                return soap.parse(body)
            except soap.SoapError as exc:
                problem = str(exc)
        check_reply(body, where=self.where, status=status, content_type=content_type)
        if status != 200:
            return None
        raise self._malformed(problem)

    def use_basic(self) -> None:
        """Basic: the header goes with every request."""
        token = base64.b64encode(f"{self._user}:{self._password}".encode()).decode()
        self._auth_header = (("Authorization", f"Basic {token}"),)


async def gather_facts(host: Host, timeouts: Timeouts) -> dict[str, Any]:
    """Every fact the host's roles need, read over one connection (`ConnectorError` if none)."""
    scripts = scripts_for(host.roles)
    if not scripts:
        return {}
    refuse_insecure(host)
    try:
        return await _read(Session(host, timeouts), scripts)
    except _Unanswered:
        return await _read(Session(host, timeouts, pyspnego=True), scripts)


async def _read(session: Session, scripts: Sequence[FactScript]) -> dict[str, Any]:
    await session.connect()
    try:
        return await _gather(session, scripts)
    finally:
        session.close()


async def _gather(session: Session, scripts: Sequence[FactScript]) -> dict[str, Any]:
    to, timeout = session.endpoint, session.timeouts.operation
    if session.transport == "basic":
        session.use_basic()
    mid = soap.message_id()
    root = await session.exchange(soap.create(to, mid, timeout), mid, first=True)
    try:
        shell = soap.shell_id(root)
    except soap.SoapError:
        raise session._malformed(EXPECTED["open_shell"]) from None
    facts: dict[str, Any] = {}
    for group in bundle.plan(scripts):
        facts.update(await _run_bundle(session, shell, group))
    # Its reply is waited for (the host has then done it) but not read: whatever it says, a
    # failed Delete changes no fact (the host drops the shell after its idle timeout anyway).
    with contextlib.suppress(ConnectorError):
        await session.send(soap.delete(to, soap.message_id(), timeout, shell))
    return facts


async def _run_bundle(
    session: Session, shell: str, scripts: tuple[FactScript, ...]
) -> dict[str, Any]:
    to, timeout, where = session.endpoint, session.timeouts.operation, session.where
    sent = datetime.now(UTC)
    mid = soap.message_id()
    root = await session.exchange(
        soap.command(to, mid, timeout, shell, bundle.command_line(scripts)), mid)
    try:
        command = soap.command_id(root)
    except soap.SoapError:
        raise session._malformed(EXPECTED["run_command"]) from None
    stdout, stderr = bytearray(), bytearray()
    while True:
        mid = soap.message_id()
        root = await session.exchange(soap.receive(to, mid, timeout, shell, command), mid)
        if root is None:
            continue  # w:TimedOut: the command still runs (the host deadline bounds this)
        try:
            out, err, code = soap.output(root, command)
        except soap.SoapError:
            raise session._malformed(EXPECTED["get_command_output"]) from None
        stdout += out
        stderr += err
        if len(stdout) + len(stderr) > MAX_OUTPUT_BYTES:
            return {fact: {"error": script_too_much_output(where, s).message}
                    for s in scripts for fact in s.facts}
        if code is not None:
            break
    read_at = sent + (datetime.now(UTC) - sent) / 2
    outcomes = bundle.split_results(scripts, bytes(stdout), bytes(stderr), code)
    facts: dict[str, Any] = {}
    for script in scripts:
        outcome = outcomes[script.name]
        try:
            facts.update(script_entries(script, where, outcome.stdout, outcome.stderr,
                                        outcome.exit_code, read_at))
        except ConnectorError as exc:
            if exc.kind not in SCRIPT_FAILURES:
                raise
            facts.update({fact: {"error": exc.message} for fact in script.facts})
    return facts


__all__ = ["Session", "covers", "gather_facts"]
