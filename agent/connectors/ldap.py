"""The LDAP connector: reads the PhoneFactor Admins group and the AD FS service accounts.

One connection per scan, tried against each configured domain controller in turn. LDAPS by default,
StartTLS when asked, certificate validation on; plain LDAP only when `allow_plain` says so. The
certificate must name `server_name` when it is set (the URL host is then not accepted), else the
URL host; OpenSSL checks that name during the handshake, DNS names and IP addresses alike.

Binds are simple (`bind_dn` and `bind_password`, or anonymous) or, with ``auth: kerberos``, SASL
GSSAPI with the caller's Kerberos credential cache for the service principal
``ldap/<server_name or URL host>`` (the optional ``gssapi`` package, imported on first use).

Every value placed in a filter is escaped; member lists are read with paged searches (AD returns
at most 1,000 entries a page) and membership is transitive through LDAP_MATCHING_RULE_IN_CHAIN.
Primary-group membership (a user's ``primaryGroupID`` is the group's RID, and AD lists no
``member`` value for it) counts too, for the group and every group nested in it.
A service account is looked up in this directory's domain only: ``DOMAIN\\name`` of another
domain is not found (with the reason in its facts), and ``name@<the domain's DNS name>`` is found
by sAMAccountName when no account has that userPrincipalName (AD's implicit UPN).
"""

from __future__ import annotations

import importlib
import socket
import ssl
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import (
    LDAPException,
    LDAPInvalidDnError,
    LDAPPackageUnavailableError,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

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


@dataclass(frozen=True)
class DomainNames:
    """This directory's domain as a service log-on name may spell it: ``LAB`` or ``lab.example``.

    `dns` comes from the base DN's ``DC=`` components; `netbios` from the domain's crossRef
    object (None when it could not be read: then no ``DOMAIN\\name`` is judged foreign).
    """

    dns: str | None
    netbios: str | None = None

    def is_own(self, domain: str) -> bool:
        """Whether ``DOMAIN`` of ``DOMAIN\\name`` is this domain (True when that cannot be told)."""
        wanted = domain.strip().rstrip(".").casefold()
        known = {name.casefold() for name in (self.netbios, self.dns) if name}
        return wanted in known or self.netbios is None

    def describe(self) -> str:
        """``LAB (lab.example)``, or whichever of the two is known."""
        if self.netbios and self.dns:
            return f"{self.netbios} ({self.dns})"
        return self.netbios or self.dns or "unknown"


@dataclass(frozen=True)
class AccountLookup:
    """How a service log-on name is looked up: filters tried in turn, the first match wins.

    No filters means the name is not looked up at all; `reason` then says why, for the facts,
    and `other_domain` names the domain when the account belongs to another one.
    """

    filters: tuple[str, ...]
    reason: str | None = None
    other_domain: str | None = None


def domain_of(base_dn: str) -> tuple[str | None, str | None]:
    """The DNS name and the DN of the domain that holds `base_dn`: its trailing ``DC=`` parts.

    ``OU=Svc,DC=lab,DC=example`` → ``("lab.example", "DC=lab,DC=example")``; (None, None) when
    the DN ends in no ``DC=`` component or cannot be parsed.
    """
    try:
        parts = parse_dn(base_dn, strip=True)
    except LDAPInvalidDnError:
        return None, None
    labels: list[str] = []
    for attribute, value, _ in reversed(parts):
        if attribute.lower() != "dc" or not value:
            break
        labels.insert(0, value)
    if not labels:
        return None, None
    return ".".join(labels).lower(), ",".join(f"DC={label}" for label in labels)


def account_lookup(account: str, names: DomainNames | None = None) -> AccountLookup:
    """How to find a Windows service log-on name in this directory (`names`: its domain).

    ``DOMAIN\\name`` and ``DOMAIN\\gmsa$`` are found by sAMAccountName, unless DOMAIN is another
    domain than this directory's (by NetBIOS or DNS name): then not at all. ``name@suffix`` is
    found by userPrincipalName, then — when the suffix is this domain's DNS name — by
    sAMAccountName, as AD accepts ``sAMAccountName@<DNS domain>`` as an implicit UPN. A bare
    name is a sAMAccountName. ``NT AUTHORITY\\…``, ``.\\…`` and ``LocalSystem`` are not
    directory accounts. Every value placed in a filter is escaped.
    """
    raw = account.strip()
    if "\\" in raw:
        domain, name = raw.split("\\", 1)
        if domain.upper() in _BUILTIN_DOMAINS:
            return AccountLookup((), "a built-in or local Windows account, not a directory account")
        if not name:
            return AccountLookup((), "the account name is empty")
        if names is not None and not names.is_own(domain):
            return AccountLookup(
                (),
                f"the account belongs to another domain, {domain}: this directory is the domain "
                f"{names.describe()}",
                other_domain=domain,
            )
        return AccountLookup((_sam_filter(name),))
    if "@" in raw:
        name, _, suffix = raw.rpartition("@")
        if not name or not suffix:
            return AccountLookup((), "the account name is empty")
        filters = [f"(userPrincipalName={escape_filter_chars(raw)})"]
        own = names.dns if names is not None else None
        if own is not None and suffix.rstrip(".").casefold() == own.casefold():
            filters.append(_sam_filter(name))
        return AccountLookup(tuple(filters))
    if not raw:
        return AccountLookup((), "the account name is empty")
    if raw.lower() in _BUILTIN_NAMES:
        return AccountLookup((), "a built-in Windows account, not a directory account")
    return AccountLookup((_sam_filter(raw),))


def _sam_filter(name: str) -> str:
    return f"(sAMAccountName={escape_filter_chars(name)})"


def account_filter(account: str) -> str | None:
    """The first filter `account_lookup` tries for `account` (no domain known), or None."""
    filters = account_lookup(account).filters
    return filters[0] if filters else None


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
_CA_HINT = " (trust its CA with mfa_directory.ca_file)"


def _socket_error(exc: BaseException, endpoint: Endpoint, tls: ExpectedNameTls) -> ConnectorError:
    """Classify an ldap3 connection failure by the types ldap3 merges into its exceptions."""
    where = endpoint.url
    if tls.failure is not None:
        return _certificate_error(tls.failure, endpoint, tls.expected)
    causes: list[BaseException] = [exc]
    # With several addresses per name ldap3 raises one error carrying each attempt's exception.
    if len(exc.args) > 1 and isinstance(exc.args[1], list):
        causes += [item[0] for item in exc.args[1] if isinstance(item, tuple) and item]
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = getattr(cause, "verify_message", "") or "certificate not trusted"
            return ConnectorError(
                ErrorKind.TLS_VERIFICATION_FAILED,
                f"TLS verification failed for {where}: {detail}{_CA_HINT}",
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


def rid_of(sid: str | None) -> int | None:
    """The relative identifier of a ``S-1-5-21-…-RID`` SID: its last sub-authority."""
    if sid is None:
        return None
    last = sid.rsplit("-", 1)[-1]
    return int(last) if last.isdigit() and sid.count("-") >= 3 else None


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
    """The directory facts (shape in `agent.facts`) for the group and these service accounts.

    Each account's facts also carry ``not_found_reason`` (str|null): why an account that is
    not found was not looked up (another domain, a built-in account), null otherwise.
    """
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
    # Members and service accounts may live anywhere in the domain (CN=Managed Service Accounts,
    # other OUs): searched from the domain root, or a narrow base_dn would hide them.
    domain_root = domain_of(base)[1] or base
    group_filter = (
        f"(&(objectCategory=group)(sAMAccountName={escape_filter_chars(settings.group)}))"
    )
    groups = list(paged_search(conn, base, group_filter, ["objectSid"], page_size))
    group: dict[str, Any] | None = None
    members: list[dict[str, Any]] = []
    if groups:
        dn = groups[0]["dn"]
        group = {"dn": dn, "sid": sid_text(_first(groups[0]["attributes"].get("objectSid")))}
        members = _members(conn, domain_root, dn, group["sid"], page_size)
    member_dns = {member["dn"].lower() for member in members}
    names = read_domain_names(conn, base)
    return {
        "group": group,
        "members": members,
        "domain": {"dns": names.dns, "netbios": names.netbios},
        "accounts": {
            a: _account(
                conn, domain_root, a, None if group is None else member_dns, page_size, names
            )
            for a in accounts
        },
    }


_MEMBER_ATTRIBUTES = ("sAMAccountName", "objectClass", "userPrincipalName", "objectSid")


def _member(entry: dict[str, Any], primary: bool) -> dict[str, Any]:
    attributes = entry["attributes"]
    classes = attributes.get("objectClass") or []
    return {
        "dn": entry["dn"],
        "sam_account_name": _text(attributes.get("sAMAccountName")),
        "object_class": classes[-1] if isinstance(classes, list) and classes else None,
        "user_principal_name": _text(attributes.get("userPrincipalName")),
        "primary_group": primary,
    }


def _members(
    conn: ldap3.Connection, domain_root: str, group_dn: str, group_sid: str | None, page_size: int
) -> list[dict[str, Any]]:
    """Every transitive member of the group: through ``member`` (nested groups resolved) and
    through ``primaryGroupID`` of the group or of any group nested in it."""
    chain = f"(memberOf:{IN_CHAIN}:={escape_filter_chars(group_dn)})"
    members: dict[str, dict[str, Any]] = {}
    rids = {rid_of(group_sid)}
    for entry in paged_search(conn, domain_root, chain, _MEMBER_ATTRIBUTES, page_size):
        members[entry["dn"].lower()] = _member(entry, primary=False)
        classes = entry["attributes"].get("objectClass") or []
        if "group" in classes:
            rids.add(rid_of(sid_text(_first(entry["attributes"].get("objectSid")))))
    for rid in sorted(r for r in rids if r is not None):
        primary = f"(primaryGroupID={rid})"
        for entry in paged_search(conn, domain_root, primary, _MEMBER_ATTRIBUTES, page_size):
            members.setdefault(entry["dn"].lower(), _member(entry, primary=True))
    return list(members.values())


def _search_one(
    conn: ldap3.Connection, base: str, scope: str, search_filter: str, attribute: str
) -> str | None:
    """The first value of `attribute` in the first entry a small search returns, or None."""
    ok = conn.search(base, search_filter, search_scope=scope, attributes=[attribute])
    if not ok:
        return None
    for entry in conn.response or []:
        if entry.get("type") == "searchResEntry":
            return _text(entry["attributes"].get(attribute))
    return None


def read_domain_names(conn: ldap3.Connection, base_dn: str) -> DomainNames:
    """The names of the domain holding `base_dn`: DNS from its ``DC=`` parts, NetBIOS from AD.

    The NetBIOS name is the ``nETBIOSName`` of the crossRef object in ``CN=Partitions`` of the
    configuration naming context (named by the rootDSE) whose ``nCName`` is the domain's DN.
    Read once per scan; when it cannot be read, `DomainNames.netbios` is None.
    """
    dns, domain_dn = domain_of(base_dn)
    if domain_dn is None:
        return DomainNames(dns)
    config = _search_one(conn, "", ldap3.BASE, "(objectClass=*)", "configurationNamingContext")
    if config is None:
        return DomainNames(dns)
    cross_ref = f"(&(objectClass=crossRef)(nCName={escape_filter_chars(domain_dn)}))"
    partitions = f"CN=Partitions,{config}"
    netbios = _search_one(conn, partitions, ldap3.LEVEL, cross_ref, "nETBIOSName")
    return DomainNames(dns, netbios)


def _account(
    conn: ldap3.Connection,
    base: str,
    account: str,
    member_dns: set[str] | None,
    page_size: int,
    names: DomainNames,
) -> dict[str, Any]:
    lookup = account_lookup(account, names)
    missing: dict[str, Any] = {
        "found": False,
        "dn": None,
        "sam_account_name": None,
        "member_of_group": None,
        "disabled": None,
        "locked_out": None,
        "password_expired": None,
        "not_found_reason": lookup.reason,
        "other_domain": lookup.other_domain,
    }
    attributes = ["sAMAccountName", "userAccountControl"]
    found: list[dict[str, Any]] = []
    for search_filter in lookup.filters:
        found = list(paged_search(conn, base, search_filter, attributes, page_size))
        if found:
            break
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
        "not_found_reason": None,
        "other_domain": None,
    }
