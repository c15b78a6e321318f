"""The LDAP connector: reads the PhoneFactor Admins group and the AD FS service accounts.

One connection per scan, tried against each configured domain controller in turn. LDAPS by default,
StartTLS when asked, certificate validation on; plain LDAP only when `allow_plain` says so. Every
value placed in a filter is escaped; member lists are read with paged searches (AD returns at most
1,000 entries a page) and membership is transitive through LDAP_MATCHING_RULE_IN_CHAIN.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import (
    LDAPCertificateError,
    LDAPException,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars

from agent.connectors.errors import ConnectorError, ErrorKind
from agent.inventory import DirectorySettings

#: LDAP_MATCHING_RULE_IN_CHAIN: membership through any depth of nested groups.
IN_CHAIN = "1.2.840.113556.1.4.1941"
_PAGED_RESULTS = "1.2.840.113556.1.4.319"
UF_ACCOUNTDISABLE = 0x2
UF_LOCKOUT = 0x10
UF_PASSWORD_EXPIRED = 0x800000
_BUILTIN_DOMAINS = frozenset({"NT AUTHORITY", "NT SERVICE", "BUILTIN", "."})
_BUILTIN_NAMES = frozenset({"localsystem", "localservice", "networkservice"})
_INVALID_CREDENTIALS = 49
_STRONGER_AUTH_REQUIRED = 8
_CONFIDENTIALITY_REQUIRED = 13


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


def account_filter(account: str) -> str | None:
    """The LDAP filter that finds a Windows service log-on name, or None for built-in accounts.

    ``DOMAIN\\name`` and ``DOMAIN\\gmsa$`` are found by sAMAccountName, ``name@domain`` by
    userPrincipalName. ``NT AUTHORITY\\…`` and ``LocalSystem`` are not directory accounts.
    """
    raw = account.strip()
    if "\\" in raw:
        domain, name = raw.split("\\", 1)
        if domain.upper() in _BUILTIN_DOMAINS:
            return None
        return f"(sAMAccountName={escape_filter_chars(name)})"
    if "@" in raw:
        return f"(userPrincipalName={escape_filter_chars(raw)})"
    if raw.lower() in _BUILTIN_NAMES or not raw:
        return None
    return f"(sAMAccountName={escape_filter_chars(raw)})"


def _tls(settings: DirectorySettings, endpoint: Endpoint) -> ldap3.Tls:
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED if settings.validate_certs else ssl.CERT_NONE,
        ca_certs_file=settings.ca_file,
        valid_names=[settings.server_name] if settings.server_name else None,
        sni=settings.server_name or endpoint.host,
    )


def _socket_error(
    exc: BaseException, endpoint: Endpoint, settings: DirectorySettings
) -> ConnectorError:
    """Classify an ldap3 connection failure by the types ldap3 merges into its exceptions."""
    where = endpoint.url
    causes: list[BaseException] = [exc]
    # With several addresses per name ldap3 raises one error carrying each attempt's exception.
    if len(exc.args) > 1 and isinstance(exc.args[1], list):
        causes += [item[0] for item in exc.args[1] if isinstance(item, tuple) and item]
    for cause in causes:
        if isinstance(cause, LDAPCertificateError):
            expected = settings.server_name or endpoint.host
            return ConnectorError(
                ErrorKind.TLS_VERIFICATION_FAILED,
                f"TLS verification failed for {where}: the certificate does not name {expected}",
            )
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = getattr(cause, "verify_message", "") or "certificate not trusted"
            return ConnectorError(
                ErrorKind.TLS_VERIFICATION_FAILED, f"TLS verification failed for {where}: {detail}"
            )
        if isinstance(cause, (ssl.SSLError, LDAPStartTLSError)):
            return ConnectorError(ErrorKind.TLS_VERIFICATION_FAILED, f"TLS with {where} failed")
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return ConnectorError(ErrorKind.CONNECTION_REFUSED, f"connection refused by {where}")
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return ConnectorError(ErrorKind.TIMED_OUT, f"timed out connecting to {where}")
        if isinstance(cause, (ConnectionResetError, BrokenPipeError)):
            return ConnectorError(ErrorKind.CONNECTION_RESET, f"connection reset by {where}")
    return ConnectorError(ErrorKind.CONNECTION_FAILED, f"could not connect to {where}")


def _bind_error(conn: ldap3.Connection, endpoint: Endpoint, bind_dn: str | None) -> ConnectorError:
    code = conn.result.get("result") if isinstance(conn.result, dict) else None
    who = bind_dn or "an anonymous bind"
    if code == _INVALID_CREDENTIALS:
        return ConnectorError(
            ErrorKind.AUTHENTICATION_REFUSED,
            f"bind refused by {endpoint.url}: invalid credentials for {who}",
        )
    if code in (_STRONGER_AUTH_REQUIRED, _CONFIDENTIALITY_REQUIRED):
        return ConnectorError(
            ErrorKind.STRONG_AUTH_REQUIRED,
            f"{endpoint.url} requires strong authentication: a simple bind needs an encrypted "
            "connection (use ldaps:// or starttls: true)",
        )
    description = conn.result.get("description", "unknown") if isinstance(conn.result, dict) else ""
    return ConnectorError(
        ErrorKind.AUTHENTICATION_REFUSED, f"bind refused by {endpoint.url}: {description}"
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
    password on every controller only brings the bind account closer to lockout).
    """
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
            return _open(settings, endpoint, password)
        except ConnectorError as exc:
            if exc.kind in (ErrorKind.AUTHENTICATION_REFUSED, ErrorKind.STRONG_AUTH_REQUIRED):
                raise
            last = exc
    assert last is not None  # the inventory guarantees at least one URL
    raise last


def _open(
    settings: DirectorySettings, endpoint: Endpoint, password: str | None
) -> ldap3.Connection:
    server = ldap3.Server(
        endpoint.host,
        port=endpoint.port,
        use_ssl=endpoint.ldaps,
        tls=_tls(settings, endpoint),
        get_info=ldap3.NONE,
        connect_timeout=settings.timeout_seconds,
    )
    conn = ldap3.Connection(
        server,
        user=settings.bind_dn,
        password=password,
        authentication=ldap3.SIMPLE if settings.bind_dn else ldap3.ANONYMOUS,
        auto_bind=ldap3.AUTO_BIND_NONE,
        receive_timeout=settings.timeout_seconds,
        read_only=True,
        raise_exceptions=False,
    )
    try:
        conn.open(read_server_info=False)
        # ldap3 reports some StartTLS failures by returning False: never bind in the clear then.
        if settings.starttls and not endpoint.ldaps and not conn.start_tls(read_server_info=False):
            conn.unbind()
            raise ConnectorError(
                ErrorKind.TLS_VERIFICATION_FAILED,
                f"StartTLS with {endpoint.url} failed: the connection is not encrypted",
            )
        if not conn.bind():
            error = _bind_error(conn, endpoint, settings.bind_dn)
            conn.unbind()
            raise error
    except ConnectorError:
        raise
    except (LDAPException, OSError) as exc:
        raise _socket_error(exc, endpoint, settings) from None
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


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _text(value: Any) -> str | None:
    value = _first(value)
    return None if value is None or value == [] else str(value)


def sid_text(value: Any) -> str | None:
    """A binary objectSid in its S-1-… string form (text values are passed through)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, bytes) or len(value) < 8:
        return None
    count = value[1]
    if len(value) < 8 + 4 * count:
        return None
    authority = int.from_bytes(value[2:8], "big")
    subs = [int.from_bytes(value[8 + 4 * i : 12 + 4 * i], "little") for i in range(count)]
    return "-".join(["S", str(value[0]), str(authority), *map(str, subs)])


def _int(value: Any) -> int | None:
    value = _first(value)
    if value is None or value == []:
        return None
    if hasattr(value, "timestamp"):  # ldap3 turns lockoutTime into a datetime
        return 0 if value.timestamp() <= 0 else 1
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_directory(
    settings: DirectorySettings, service_accounts: Iterable[str], page_size: int = 1000
) -> dict[str, Any]:
    """The directory facts (shape in `agent.facts`) for the group and these service accounts."""
    conn = connect(settings)
    try:
        return _read(conn, settings, sorted(set(service_accounts)), page_size)
    except LDAPException as exc:
        raise ConnectorError(
            ErrorKind.DIRECTORY_ERROR, f"directory read failed: {type(exc).__name__}"
        ) from None
    finally:
        conn.unbind()


def _read(
    conn: ldap3.Connection, settings: DirectorySettings, accounts: list[str], page_size: int
) -> dict[str, Any]:
    base = settings.base_dn
    group_filter = (
        f"(&(objectCategory=group)(sAMAccountName={escape_filter_chars(settings.group)}))"
    )
    groups = list(paged_search(conn, base, group_filter, ["objectSid"], page_size))
    group: dict[str, Any] | None = None
    members: list[dict[str, Any]] = []
    member_dns: set[str] = set()
    if groups:
        dn = groups[0]["dn"]
        group = {"dn": dn, "sid": sid_text(_first(groups[0]["attributes"].get("objectSid")))}
        chain = f"(memberOf:{IN_CHAIN}:={escape_filter_chars(dn)})"
        for entry in paged_search(conn, base, chain, ["sAMAccountName", "objectClass"], page_size):
            classes = entry["attributes"].get("objectClass") or []
            members.append(
                {
                    "dn": entry["dn"],
                    "sam_account_name": _text(entry["attributes"].get("sAMAccountName")),
                    "object_class": classes[-1] if isinstance(classes, list) and classes else None,
                }
            )
            member_dns.add(entry["dn"].lower())
    return {
        "group": group,
        "members": members,
        "accounts": {
            a: _account(conn, base, a, None if group is None else member_dns, page_size)
            for a in accounts
        },
    }


def _account(
    conn: ldap3.Connection, base: str, account: str, member_dns: set[str] | None, page_size: int
) -> dict[str, Any]:
    missing = {
        "found": False,
        "dn": None,
        "sam_account_name": None,
        "member_of_group": None,
        "disabled": None,
        "locked_out": None,
        "password_expired": None,
    }
    search_filter = account_filter(account)
    if search_filter is None:
        return missing
    found = list(
        paged_search(conn, base, search_filter, ["sAMAccountName", "userAccountControl"], page_size)
    )
    if not found:
        return missing
    dn = found[0]["dn"]
    uac = _int(found[0]["attributes"].get("userAccountControl")) or 0
    # Constructed attributes are only returned by a base-scope search of the object itself.
    conn.search(
        dn,
        "(objectClass=*)",
        search_scope=ldap3.BASE,
        attributes=["msDS-User-Account-Control-Computed", "lockoutTime"],
    )
    computed: int | None = None
    lockout: int | None = None
    for entry in conn.response or []:
        if entry.get("type") == "searchResEntry":
            computed = _int(entry["attributes"].get("msDS-User-Account-Control-Computed"))
            lockout = _int(entry["attributes"].get("lockoutTime"))
    if computed is not None:
        locked: bool | None = bool(computed & UF_LOCKOUT)
        expired: bool | None = bool(computed & UF_PASSWORD_EXPIRED)
    else:
        locked = None if lockout is None else lockout > 0
        expired = None
    return {
        "found": True,
        "dn": dn,
        "sam_account_name": _text(found[0]["attributes"].get("sAMAccountName")),
        "member_of_group": None if member_dns is None else dn.lower() in member_dns,
        "disabled": bool(uac & UF_ACCOUNTDISABLE),
        "locked_out": locked,
        "password_expired": expired,
    }
