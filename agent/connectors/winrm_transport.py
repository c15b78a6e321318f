"""pywinrm's HTTP transport, hardened against a hostile host or network.

pywinrm builds a plain ``requests.Session``: it follows redirects (with NTLM it would answer a
new host's challenge), reads whole bodies into memory, takes proxies, netrc and CA bundles from the
environment — and rewrites ``os.environ["no_proxy"]`` on every request, unlocked, which fails
random hosts with KeyError under load — and accepts a plaintext reply on an encrypted session.
`GuardedTransport` is pywinrm's ``Transport`` with its own session:

* ``trust_env = False``, no proxies: the environment is never read or written.
* Every request goes through `GuardedAdapter`, also the ones requests_ntlm sends from its auth
  hook: a request for any origin but the inventory's is refused before connecting, and any 3xx
  reply is an ERROR (``redirect-refused``) naming its Location, so nothing is ever sent elsewhere.
* Bodies are read by the adapter in chunks and refused past `MAX_REPLY_BYTES` (declared length
  first), with ``Accept-Encoding: identity`` and decoded bytes counted.
* `HostLink.abort` (the host deadline) shuts down every socket of the host, also one blocked in
  a read or fed one byte at a time, and refuses any further request.
* On a session with message encryption every reply must be encrypted (``unencrypted-reply``),
  and every body is checked by `agent.connectors.replies.check_reply` before pywinrm parses it.
* A TLS handshake that times out is reported as the connect timeout it is.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any, Final
from urllib.parse import urlsplit

import requests
import requests.auth
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager
from winrm.encryption import Encryption
from winrm.exceptions import WinRMError
from winrm.protocol import Protocol
from winrm.transport import Transport

from agent.connectors.common import MAX_REPLY_BYTES
from agent.connectors.errors import (
    ConnectorError,
    ErrorKind,
    malformed_reply,
    redirect_refused,
    reply_too_large,
    unencrypted_reply,
)
from agent.connectors.replies import check_reply

log = logging.getLogger(__name__)

_CHUNK: Final = 64 * 1024


class HostLink:
    """Everything one host's HTTP traffic is bound to: its origin, its size cap, its abort."""

    def __init__(self, where: str, endpoint: str, max_reply_bytes: int = MAX_REPLY_BYTES) -> None:
        self.where = where
        self.origin = _origin(endpoint)
        self.max_reply_bytes = max_reply_bytes
        self._aborted = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []

    @property
    def aborted(self) -> bool:
        """Whether the host has been given up on."""
        return self._aborted.is_set()

    def track(self, connection: HTTPConnection) -> None:
        """Remember a connection so that `abort` can shut its socket down."""
        with self._lock:
            self._connections.append(connection)

    def abort(self) -> None:
        """Refuse further requests and shut down every socket, waking a blocked read."""
        self._aborted.set()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    # The plain socket's shutdown, also under TLS: ssl.SSLSocket.shutdown would
                    # drop the TLS state that the reading thread is using.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def abort_at(self, deadline: float) -> threading.Timer:
        """Abort when the monotonic clock passes `deadline`, whoever else is watching: the
        host deadline holds even for a caller without a coordinator. Cancel the timer after."""
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.abort)
        timer.daemon = True
        timer.start()
        return timer

    def check_open(self) -> None:
        """Raise if the host was given up on."""
        if self.aborted:
            raise ConnectorError(
                ErrorKind.TIMED_OUT, f"the connection to {self.where} was dropped (host deadline)"
            )


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


class _LinkedHTTPConnection(HTTPConnection):
    link: HostLink | None = None

    def connect(self) -> None:
        """Connect; a connection that completes after an abort is shut down at once."""
        super().connect()
        _after_connect(self)


def _after_connect(conn: _LinkedHTTPConnection | _LinkedHTTPSConnection) -> None:
    if conn.link is not None and conn.link.aborted:
        conn.link.abort()  # shuts this socket down too: nothing is sent on it
        conn.link.check_open()


class _LinkedHTTPSConnection(HTTPSConnection):
    link: HostLink | None = None

    def connect(self) -> None:
        """Connect and handshake; a handshake time-out is the connect timeout that fired."""
        try:
            super().connect()
            _after_connect(self)
        except TimeoutError:
            where = self.link.where if self.link is not None else self.host
            limit = f" within {self.timeout:g} s" if isinstance(self.timeout, float | int) else ""
            raise ConnectorError(
                ErrorKind.TIMED_OUT,
                f"timed out connecting to {where}: no TLS handshake{limit} (--connect-timeout)",
            ) from None


def _linked(conn: Any, link: HostLink | None) -> Any:
    if link is not None and isinstance(conn, _LinkedHTTPConnection | _LinkedHTTPSConnection):
        conn.link = link
        link.track(conn)
    return conn


class _LinkedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _LinkedHTTPConnection
    link: HostLink | None = None

    def _new_conn(self) -> Any:
        return _linked(super()._new_conn(), self.link)


class _LinkedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _LinkedHTTPSConnection
    link: HostLink | None = None

    def _new_conn(self) -> Any:
        return _linked(super()._new_conn(), self.link)


class _LinkedPoolManager(PoolManager):
    def __init__(self, link: HostLink, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.link = link
        self.pool_classes_by_scheme = {"http": _LinkedHTTPPool, "https": _LinkedHTTPSPool}

    def _new_pool(self, scheme: str, host: str, port: int, request_context: Any = None) -> Any:
        pool = super()._new_pool(scheme, host, port, request_context)
        if isinstance(pool, _LinkedHTTPPool | _LinkedHTTPSPool):
            pool.link = self.link
        return pool


class GuardedAdapter(HTTPAdapter):
    """Sends only to the link's origin, refuses redirects, reads bodies under the size cap."""

    def __init__(self, link: HostLink) -> None:
        self.link = link
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        """A pool manager whose connections the link tracks (requests calls this itself)."""
        self.poolmanager = _LinkedPoolManager(
            self.link, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        """Send one request to the inventory's origin; the response with its body read."""
        self.link.check_open()
        if _origin(request.url or "") != self.link.origin:
            raise ConnectorError(
                ErrorKind.REDIRECT_REFUSED,
                f"refused to send a request for {self.link.where} anywhere but its own address",
            )
        response: requests.Response = super().send(request, *args, **kwargs)
        if 300 <= response.status_code < 400:
            location = response.headers.get("Location")
            response.close()
            raise redirect_refused(self.link.where, response.status_code, location)
        sock = _socket_of(response)
        response._content = self._read_body(response)  # requests' own body cache
        _keep_socket_visible(response, sock)
        return response

    def _read_body(self, response: requests.Response) -> bytes:
        cap = self.link.max_reply_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.strip().isdigit() and int(declared) > cap:
            response.close()
            raise reply_too_large(self.link.where, cap)
        body = bytearray()
        for chunk in response.iter_content(_CHUNK):
            self.link.check_open()
            body += chunk
            if len(body) > cap:
                response.close()
                raise reply_too_large(self.link.where, cap)
        return bytes(body)


class _SocketCarrier:
    """Stands in for urllib3's finished body stream: auth hooks still find the socket there
    (``_fp.fp.raw._sock``), urllib3 sees a closed stream."""

    closed = True

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.fp = self.raw = self

    def isclosed(self) -> bool:
        """The body was read to its end."""
        return True

    def close(self) -> None:
        """Nothing to close: the connection went back to its pool."""


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The connection's socket, found where requests_ntlm and requests_kerberos look for it."""
    try:
        sock = response.raw._fp.fp.raw._sock
    except AttributeError:
        return None
    return sock if isinstance(sock, socket.socket) else None


def _keep_socket_visible(response: requests.Response, sock: socket.socket | None) -> None:
    """requests_ntlm and requests_kerberos read the TLS peer certificate for channel binding
    from ``response.raw._fp.fp.raw._sock`` — gone once the body is read. Put it back."""
    if sock is not None and getattr(getattr(response.raw, "_fp", None), "fp", 0) is None:
        response.raw._fp = _SocketCarrier(sock)


class GuardedTransport(Transport):
    """pywinrm's `Transport` with the session described in the module docstring."""

    link: HostLink

    @classmethod
    def adopt(cls, transport: Transport, link: HostLink) -> GuardedTransport:
        """This class with the settings pywinrm's `Protocol` gave `transport` (no session yet)."""
        guarded = cls.__new__(cls)
        guarded.__dict__.update(transport.__dict__)
        guarded.link = link
        guarded.session = None
        return guarded

    def build_session(self) -> requests.Session:
        """The session: no environment, the guarded adapter, pywinrm's auth and encryption."""
        if self.session is not None:
            return self.session
        session = requests.Session()
        session.trust_env = False  # no proxy, netrc or CA bundle from the environment
        session.proxies = {}
        session.max_redirects = 0
        adapter = GuardedAdapter(self.link)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = self.server_cert_validation == "validate"
        if session.verify and self.ca_trust_path not in (None, "legacy_requests"):
            session.verify = str(self.ca_trust_path)
        encryption_available = self._authenticate(session)
        session.headers.update(self.default_headers)
        session.headers["Accept-Encoding"] = "identity"
        self.session = session
        if self.message_encryption == "always" and not encryption_available:
            raise WinRMError(
                f"message encryption is set to 'always' but {self.auth_method} cannot encrypt"
            )
        if encryption_available and (
            self.message_encryption == "always"
            or (self.message_encryption == "auto" and not self.endpoint.lower().startswith("https"))
        ):
            self.setup_encryption(session)
        return session

    def _authenticate(self, session: requests.Session) -> bool:
        """Set up `session.auth` as pywinrm does; whether the method can encrypt messages."""
        method = self.auth_method
        if method == "kerberos":
            from winrm.vendor.requests_kerberos import REQUIRED, HTTPKerberosAuth

            auth = HTTPKerberosAuth(  # type: ignore[no-untyped-call]
                mutual_authentication=REQUIRED,
                delegate=self.kerberos_delegation,
                force_preemptive=True,
                principal=self.username,
                hostname_override=self.kerberos_hostname_override,
                sanitize_mutual_error_response=False,
                service=self.service,
                send_cbt=self.send_cbt,
            )
            session.auth = auth
            return bool(getattr(auth, "winrm_encryption_available", False))
        if method in ("certificate", "ssl") and (self.cert_pem or self.cert_key_pem):
            session.cert = (self.cert_pem or "", self.cert_key_pem or "")
            session.headers["Authorization"] = (
                "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
            )
            return False
        if method == "ntlm":
            from requests_ntlm import HttpNtlmAuth

            session.auth = HttpNtlmAuth(self.username, self.password, send_cbt=self.send_cbt)
            return hasattr(session.auth, "session_security")
        if method in ("basic", "plaintext", "ssl"):
            session.auth = requests.auth.HTTPBasicAuth(self.username or "", self.password or "")
            return False
        if method == "credssp":
            from requests_credssp import HttpCredSSPAuth  # type: ignore[import-not-found]

            session.auth = HttpCredSSPAuth(
                username=self.username,
                password=self.password,
                disable_tlsv1_2=self.credssp_disable_tlsv1_2,
                auth_mechanism=self.credssp_auth_mechanism,
                minimum_version=self.credssp_minimum_version,
            )
            return True
        raise WinRMError(f"unsupported auth method: {method}")

    def _get_message_response_text(self, response: requests.Response) -> bytes:
        """The reply's SOAP text, decrypted if the session encrypts, checked before parsing."""
        where = self.link.where
        content_type = response.headers.get("Content-Type")
        encryption: Encryption | None = self.encryption
        if encryption is None:
            body = response.content
        else:
            marker = f'protocol="{encryption.protocol_string.decode()}"'
            if marker.lower() not in (content_type or "").lower():
                if response.status_code >= 400:
                    raise ConnectorError(
                        ErrorKind.HTTP_ERROR,
                        f"{where} answered HTTP {response.status_code} with an unencrypted body "
                        "on an encrypted session (not read)",
                    )
                raise unencrypted_reply(where)
            try:
                body = encryption.parse_encrypted_response(response)
            except Exception:
                log.debug("decrypting a reply from %s failed", where, exc_info=True)
                raise malformed_reply(
                    where, "an encrypted reply that cannot be decrypted"
                ) from None
            content_type = None  # the sealed message is SOAP by construction
        check_reply(body, where=where, status=response.status_code, content_type=content_type)
        return body


def guard(protocol: Protocol, link: HostLink) -> Protocol:
    """`protocol` sending through a `GuardedTransport` bound to `link`."""
    protocol.transport = GuardedTransport.adopt(protocol.transport, link)
    return protocol
