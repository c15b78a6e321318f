"""The directory facts: the PhoneFactor Admins group and the AD FS service accounts, read over
one `agent.connectors.ldap` connection.

Every value placed in a filter is escaped; member lists are read with paged searches (AD returns
at most 1,000 entries a page) and membership is transitive through LDAP_MATCHING_RULE_IN_CHAIN.
Primary-group membership (a user's ``primaryGroupID`` is the group's RID, and AD lists no
``member`` value for it) counts too, for the group and every group nested in it.
A service account is looked up in this directory's domain only: ``DOMAIN\\name`` of another
domain is not found (with the reason in its facts), and ``name@<the domain's DNS name>`` is found
by sAMAccountName when no account has that userPrincipalName (AD's implicit UPN).
"""


from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core.exceptions import (
    LDAPException,
    LDAPInvalidDnError,
)
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from agent.connectors.errors import ConnectorError, ErrorKind
from agent.connectors.ldap import connect, paged_search
from agent.inventory import DirectorySettings

#: LDAP_MATCHING_RULE_IN_CHAIN: membership through any depth of nested groups.
IN_CHAIN = "1.2.840.113556.1.4.1941"
UF_ACCOUNTDISABLE = 0x2
UF_LOCKOUT = 0x10
UF_PASSWORD_EXPIRED = 0x800000
_BUILTIN_DOMAINS = frozenset({"NT AUTHORITY", "NT SERVICE", "BUILTIN", "."})
_BUILTIN_NAMES = frozenset({"localsystem", "localservice", "networkservice"})


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
