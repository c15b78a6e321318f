"""The LDAP transport: one connection to the directory, and paged searches over it.

Tried against each configured domain controller in turn. LDAPS by default, StartTLS when asked,
certificate validation on; plain LDAP only when `allow_plain` says so. The certificate must name
`server_name` when it is set (the URL host is then not accepted), else the URL host; OpenSSL
checks that name during the handshake, DNS names and IP addresses alike. Referrals are never
chased: only the configured DCs are asked.

Binds are simple (`bind_dn` and `bind_password`, or anonymous) or, with ``auth: kerberos``, SASL
GSSAPI with the caller's Kerberos credential cache for the service principal
``ldap/<server_name or URL host>`` (the optional ``gssapi`` package, imported on first use).
What is read over the connection, and how it becomes facts, is `agent.connectors.directory`.
"""


from __future__ import annotations

import importlib
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import (
    LDAPException,
    LDAPPackageUnavailableError,
    LDAPStartTLSError,
)

from agent.connectors.errors import (
    COULD_NOT_CONNECT,
    OS_ERROR_ROW,
    ConnectorError,
    ErrorKind,
    Row,
    fixed,
    map_exception,
    network_rows,
)
from agent.inventory import DirectorySettings

_PAGED_RESULTS = "1.2.840.113556.1.4.319"
_INVALID_CREDENTIALS = 49
_STRONGER_AUTH_REQUIRED = 8
_CONFIDENTIALITY_REQUIRED = 13
#: OpenSSL's verification codes for a certificate that names neither the host nor the address.
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_KERBEROS_EXTRA = (
    "auth: kerberos needs the Python package gssapi: pip install 'mfa-agent[kerberos]' "
    "(it builds against MIT Kerberos: apt-get install libkrb5-dev, or dnf install krb5-devel)"
)




@dataclass(frozen=True)
class Endpoint:
    """One domain controller from `mfa_directory.urls`."""

    url: str
    host: str
    port: int
    ldaps: bool


def endpoints(settings: DirectorySettings) -> tuple[Endpoint, ...]:
    """The configured URLs, parsed, with default ports."""
    out = []
    for url in settings.urls:
        parts = urlsplit(url)
        ldaps = parts.scheme.lower() == "ldaps"
        port = parts.port or (636 if ldaps else 389)
        out.append(Endpoint(url, parts.hostname or "", port, ldaps))
    return tuple(out)


def _gssapi() -> Any:
    """The gssapi package, imported on first use: only ``auth: kerberos`` needs it."""
    try:
        return importlib.import_module("gssapi")
    except ImportError:
        raise ConnectorError(ErrorKind.MISSING_EXTRA, _KERBEROS_EXTRA) from None


def _tls_context(settings: DirectorySettings) -> ssl.SSLContext:
    """The TLS settings of every connection: the CA to trust, and whether to verify at all."""
    if not settings.validate_certs:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        # With a ca_file only that CA is trusted; without one, the system's trust store.
        return ssl.create_default_context(cafile=settings.ca_file)
    except OSError as exc:  # ssl.SSLError included
        if isinstance(exc, ssl.SSLError):
            why = "it holds no usable PEM certificate"
        else:
            why = exc.strerror or type(exc).__name__
        raise ConnectorError(
            ErrorKind.CONFIGURATION,
            f"cannot use mfa_directory.ca_file {settings.ca_file}: {why}",
        ) from None


class ExpectedNameTls(ldap3.Tls):  # type: ignore[misc]  # ldap3 has no type hints
    """ldap3's `Tls` with one accepted name: the handshake fails unless the certificate names it.

    ldap3's own check accepts the URL host *or* any of its ``valid_names``, after the handshake,
    with ``ssl.match_hostname`` (removed in Python 3.12, where ldap3 2.9.1 then matches no IP
    address SAN). Here the wrapping is done by our `ssl.SSLContext` with ``check_hostname`` on
    and ``server_hostname=expected``, so OpenSSL verifies that one name (a DNS name, or an IP
    address against the IP SANs) during the handshake; ldap3's check is never called. It is also
    the SNI name (Python sends none for an address).
    """

    def __init__(self, context: ssl.SSLContext, expected: str) -> None:
        super().__init__(validate=context.verify_mode, sni=expected)
        self.context = context
        self.expected = expected
        #: The last verification failure: ldap3 re-raises it as a new exception without details.
        self.failure: ssl.SSLCertVerificationError | None = None

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        """Wrap `connection`'s socket (LDAPS at connect, or StartTLS) and verify the server."""
        try:
            connection.socket = self.context.wrap_socket(
                connection.socket,
                server_side=False,
                do_handshake_on_connect=do_handshake,
                server_hostname=self.expected,
            )
        except ssl.SSLCertVerificationError as exc:
            self.failure = exc
            raise


def _certificate_error(
    failure: ssl.SSLCertVerificationError, endpoint: Endpoint, expected: str
) -> ConnectorError:
    if failure.verify_code in _NAME_MISMATCH:
        detail = f"the certificate does not name {expected}"
    else:
        detail = (failure.verify_message or "certificate not trusted") + _CA_HINT
    return ConnectorError(
        ErrorKind.TLS_VERIFICATION_FAILED, f"TLS verification failed for {endpoint.url}: {detail}"
    )


#: What to set when a directory's certificate chain is not trusted.
_CA_SETTING = "mfa_directory.ca_file"
_CA_HINT = f" (trust its CA with {_CA_SETTING})"


#: What ldap3 and the sockets under it raise on connecting, as errors (`agent.connectors.errors`).
_ROWS: tuple[Row, ...] = (
    Row((LDAPStartTLSError,), fixed(ErrorKind.TLS_VERIFICATION_FAILED, "TLS with {where} failed")),
    *network_rows(_CA_SETTING,
                  fixed(ErrorKind.TIMED_OUT, "timed out connecting to {where}")),
    OS_ERROR_ROW,
)


def _socket_error(exc: BaseException, endpoint: Endpoint, tls: ExpectedNameTls) -> ConnectorError:
    """Classify an ldap3 connection failure (the causes ldap3 merges into its exceptions too)."""
    if tls.failure is not None:
        return _certificate_error(tls.failure, endpoint, tls.expected)
    return map_exception(exc, _ROWS, endpoint.url, COULD_NOT_CONNECT)


def _bind_error(
    conn: ldap3.Connection, endpoint: Endpoint, settings: DirectorySettings, encrypted: bool
) -> ConnectorError:
    code = conn.result.get("result") if isinstance(conn.result, dict) else None
    kerberos = settings.auth == "kerberos"
    if kerberos:
        who = "the Kerberos principal of the credential cache"
    else:
        who = settings.bind_dn or "an anonymous bind"
    if code == _INVALID_CREDENTIALS:
        return ConnectorError(
            ErrorKind.AUTHENTICATION_REFUSED,
            f"bind refused by {endpoint.url}: invalid credentials for {who}",
        )
    if code in (_STRONGER_AUTH_REQUIRED, _CONFIDENTIALITY_REQUIRED):
        if not kerberos:
            why = "a simple bind needs an encrypted connection (use ldaps:// or starttls: true)"
        elif not encrypted:
            why = (
                "a Kerberos bind needs an encrypted connection, as mfa-agent does not sign or "
                "seal LDAP itself (use ldaps:// or starttls: true)"
            )
        else:
            why = (
                "it wants LDAP signing or sealing of a Kerberos bind even over TLS, which "
                "mfa-agent does not do (Windows DCs accept a Kerberos bind over TLS; a Samba DC "
                "needs 'ldap server require strong auth = allow_sasl_over_tls')"
            )
        return ConnectorError(
            ErrorKind.STRONG_AUTH_REQUIRED,
            f"{endpoint.url} requires strong authentication: {why}",
        )
    description = conn.result.get("description", "unknown") if isinstance(conn.result, dict) else ""
    return ConnectorError(
        ErrorKind.AUTHENTICATION_REFUSED, f"bind refused by {endpoint.url}: {description}"
    )


def _kerberos_error(exc: Any, gssapi: Any, endpoint: Endpoint, host: str) -> ConnectorError:
    """A readable reason for a GSSAPI failure: the Kerberos library's own (minor) message."""
    try:
        messages = exc.get_all_statuses(exc.min_code, False) if exc.min_code else []
        messages = messages or exc.get_all_statuses(exc.maj_code, True)
        detail = "; ".join(str(m) for m in messages if m)
    except Exception:  # a GSSError from an unexpected gssapi version: keep its own text
        detail = ""
    detail = detail or str(exc)
    no_ticket = (
        gssapi.exceptions.MissingCredentialsError,
        gssapi.exceptions.ExpiredCredentialsError,
    )
    if isinstance(exc, no_ticket):
        hint = ": get a ticket with kinit first (or point KRB5CCNAME at a credential cache)"
    else:
        hint = ""
    return ConnectorError(
        ErrorKind.AUTHENTICATION_REFUSED,
        f"Kerberos bind to {endpoint.url} (service ldap/{host}) failed: {detail}{hint}",
    )


def _resolve(endpoint: Endpoint) -> None:
    try:
        socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ConnectorError(
            ErrorKind.NAME_NOT_RESOLVED, f"name not resolved: {endpoint.host}"
        ) from None


def connect(settings: DirectorySettings) -> ldap3.Connection:
    """A bound connection to the first domain controller that answers.

    Unreachable controllers are skipped; a refused bind stops at once (trying the same wrong
    password on every controller only brings the bind account closer to lockout, and a missing
    Kerberos ticket is missing for every controller).
    """
    if settings.auth == "kerberos":
        _gssapi()  # before any connection: a missing extra is not a per-controller problem
    context = _tls_context(settings)
    password = settings.bind_password.reveal() if settings.bind_password is not None else None
    last: ConnectorError | None = None
    for endpoint in endpoints(settings):
        if not endpoint.ldaps and not settings.starttls and not settings.allow_plain:
            raise ConnectorError(
                ErrorKind.INSECURE_TRANSPORT_REFUSED,
                f"{endpoint.url} is plain LDAP: use ldaps://, starttls: true, or allow_plain: true",
            )
        try:
            _resolve(endpoint)
            return _open(settings, endpoint, password, context)
        except ConnectorError as exc:
            if exc.kind in (
                ErrorKind.AUTHENTICATION_REFUSED,
                ErrorKind.STRONG_AUTH_REQUIRED,
                ErrorKind.MISSING_EXTRA,
            ):
                raise
            last = exc
    assert last is not None  # the inventory guarantees at least one URL
    raise last


def _connection(
    settings: DirectorySettings, server: ldap3.Server, endpoint: Endpoint, password: str | None
) -> ldap3.Connection:
    """An unbound connection that binds the way `settings.auth` says."""
    common: dict[str, Any] = {
        "auto_bind": ldap3.AUTO_BIND_NONE,
        "receive_timeout": settings.timeout_seconds,
        "read_only": True,
        "raise_exceptions": False,
        # A referral names another server: ldap3 would connect and bind there with the same
        # credentials. Never chased; the configured DCs are the only servers asked.
        "auto_referrals": False,
    }
    if settings.auth == "kerberos":
        # ldap3 asks for a ticket to ldap/<sasl_credentials[0]>: the name given, never reverse DNS.
        return ldap3.Connection(
            server,
            authentication=ldap3.SASL,
            sasl_mechanism=ldap3.KERBEROS,
            sasl_credentials=(_principal_host(settings, endpoint),),
            **common,
        )
    return ldap3.Connection(
        server,
        user=settings.bind_dn,
        password=password,
        authentication=ldap3.SIMPLE if settings.bind_dn else ldap3.ANONYMOUS,
        **common,
    )


def _principal_host(settings: DirectorySettings, endpoint: Endpoint) -> str:
    """The host of the Kerberos service principal ``ldap/<host>``: server_name, else the URL's."""
    return settings.server_name or endpoint.host


def _open(
    settings: DirectorySettings,
    endpoint: Endpoint,
    password: str | None,
    context: ssl.SSLContext,
) -> ldap3.Connection:
    tls = ExpectedNameTls(context, settings.server_name or endpoint.host)
    server = ldap3.Server(
        endpoint.host,
        port=endpoint.port,
        use_ssl=endpoint.ldaps,
        tls=tls,
        get_info=ldap3.NONE,
        connect_timeout=settings.timeout_seconds,
    )
    conn = _connection(settings, server, endpoint, password)
    gssapi = _gssapi() if settings.auth == "kerberos" else None
    gss_errors: tuple[type[BaseException], ...] = (
        (gssapi.exceptions.GSSError,) if gssapi is not None else ()
    )
    try:
        conn.open(read_server_info=False)
        # ldap3 reports some StartTLS failures by returning False: never bind in the clear then.
        starttls = settings.starttls and not endpoint.ldaps
        if starttls and not conn.start_tls(read_server_info=False):
            conn.unbind()
            raise ConnectorError(
                ErrorKind.TLS_VERIFICATION_FAILED,
                f"StartTLS with {endpoint.url} failed: the connection is not encrypted",
            )
        if not conn.bind():
            error = _bind_error(conn, endpoint, settings, endpoint.ldaps or starttls)
            conn.unbind()
            raise error
    except ConnectorError:
        raise
    except gss_errors as exc:
        conn.unbind()
        raise _kerberos_error(exc, gssapi, endpoint, _principal_host(settings, endpoint)) from None
    except LDAPPackageUnavailableError as exc:  # e.g. cryptography, for Kerberos channel binding
        conn.unbind()
        raise ConnectorError(ErrorKind.MISSING_EXTRA, f"{exc}: {_KERBEROS_EXTRA}") from None
    except (LDAPException, OSError) as exc:
        raise _socket_error(exc, endpoint, tls) from None
    return conn


def paged_search(
    conn: ldap3.Connection,
    base: str,
    search_filter: str,
    attributes: Sequence[str],
    page_size: int = 1000,
) -> Iterator[dict[str, Any]]:
    """Every entry of a subtree search, one page at a time (AD stops at 1,000 without paging)."""
    cookie: bytes | None = None
    while True:
        ok = conn.search(
            base,
            search_filter,
            search_scope=ldap3.SUBTREE,
            attributes=list(attributes),
            paged_size=page_size,
            paged_cookie=cookie,
        )
        if not ok and conn.result.get("result") not in (0, None):
            raise ConnectorError(
                ErrorKind.DIRECTORY_ERROR,
                f"search {search_filter} under {base} failed: {conn.result.get('description')}",
            )
        for entry in conn.response or []:
            if entry.get("type") == "searchResEntry":
                yield entry
        controls = conn.result.get("controls") or {}
        cookie = controls.get(_PAGED_RESULTS, {}).get("value", {}).get("cookie")
        if not cookie:
            return
