"""Checks on the directory: the PhoneFactor Admins group, its members, the AD FS service account.

They read the directory facts gathered over LDAP (see `agent.facts`) and, for the service
account, each AD FS node's ``adfs.service_account``. When the inventory configures no directory
(``mfa_directory``), they are MANUAL: someone must look in Active Directory by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from agent.facts import FactDict, Fleet, HostFacts, guarded
from agent.model import (
    Finding,
    Guidance,
    Outcome,
    Severity,
    errored,
    failed,
    manual,
    passed,
    skipped,
)
from agent.registry import fleet_check
from agent.roles import ADFS, DIRECTORY_TARGET
from checks import _guidance as g
from checks._support import readable

_NOT_CONFIGURED: Final = (
    "no directory is configured in the inventory: configure mfa_directory or verify by hand"
)

_GROUP_REMEDIATION: Final = (
    "Re-run the MFA Server AD FS adapter installation wizard, which creates the group and adds "
    "the AD FS service account, or create it on a domain controller: New-ADGroup -Name "
    "'PhoneFactor Admins' -GroupCategory Security -GroupScope Global. If your group has another "
    "name, set mfa_directory.group in the inventory."
)


def _service_account(host: HostFacts) -> str | None:
    return host.fact("adfs").opt_text("service_account")


def _farm_accounts(fleet: Fleet) -> list[str]:
    """The distinct service accounts the readable AD FS nodes run under."""
    accounts = {readable(partial(_service_account, host)) for host in fleet.with_role(ADFS)}
    return sorted(account for account in accounts if account is not None)


def _group(directory: FactDict) -> FactDict | None:
    return directory.opt_mapping("group")


def _account_entry(host: HostFacts, directory: FactDict) -> tuple[str, FactDict] | Outcome:
    """The node's service account and its directory entry, or the outcome that ends the check.

    No service account (adfssrv reported no StartName) and an account the directory facts hold no
    lookup for are ERRORs: the agent could not tell. An account of another domain than the
    directory read is MANUAL (it was not looked up: that domain must be checked). An account the
    directory does not know FAILs: a nonexistent account can be neither a member nor healthy.
    """
    account = _service_account(host)
    if account is None:
        return errored("the AD FS service account is unknown: adfssrv reported no logon account")
    accounts = directory.mapping("accounts")
    if not accounts.has(account):
        return errored(
            f"the directory facts hold no lookup of the service account {account}",
            service_account=account,
        )
    entry = accounts.mapping(account)
    other = entry.opt_text("other_domain")
    if other is not None and not entry.flag("found"):
        # Not looked up at all: the directory read is another domain's, so it cannot tell.
        return manual(
            f"the AD FS service account {account} belongs to another domain ({other}) than the "
            f"directory read ({_domain(directory).describe()}): check it in its own domain",
            service_account=account,
            other_domain=other,
        )
    if not entry.flag("found"):
        why = entry.opt_text("not_found_reason")
        return failed(
            f"the AD FS service account {account} was not found in the directory"
            + (f": {why}" if why else ""),
            service_account=account,
            found=False,
        )
    return account, entry


# -- phonefactor-admins-exists --------------------------------------------------------------------


def _group_exists_outcome(fleet: Fleet) -> Outcome:
    name = fleet.directory.group_name
    group = _group(fleet.directory.facts())
    if group is None:
        return failed(f"the group {name!r} does not exist in the directory", group_name=name)
    return passed(
        f"the group {name!r} exists",
        group_name=name,
        dn=group.text("dn"),
        sid=group.opt_text("sid"),
    )


@fleet_check(
    "phonefactor-admins-exists",
    title="The PhoneFactor Admins group exists",
    severity=Severity.HIGH,
    roles=(),
    guidance=Guidance(quote=g.QUOTE_PHONEFACTOR_VERIFY, source=g.SECTION_ON_PREMISES),
    remediation=_GROUP_REMEDIATION,
    references=(g.REF_MFA_SERVER_ADFS, g.REF_GUIDE),
)
def phonefactor_admins_exists(fleet: Fleet) -> Iterable[Finding]:
    """On (directory): PASS with the group's DN and SID; a missing group FAILs (it is a fact).

    MANUAL when no directory is configured.
    """
    if not fleet.directory.configured:
        yield Finding(DIRECTORY_TARGET, manual(_NOT_CONFIGURED))
        return
    yield Finding(DIRECTORY_TARGET, guarded(partial(_group_exists_outcome, fleet)))


# -- adfs-service-account-in-phonefactor-admins ---------------------------------------------------


def _membership_outcome(host: HostFacts, fleet: Fleet, farm_accounts: list[str]) -> Outcome:
    name = fleet.directory.group_name
    directory = fleet.directory.facts()
    group = _group(directory)
    evidence: dict[str, Any] = {"group_name": name, "farm_service_accounts": farm_accounts}
    if group is None:
        return failed(
            f"the group {name!r} does not exist, so the AD FS service account is not a member",
            service_account=readable(partial(_service_account, host)),
            **evidence,
        )
    evidence["group_dn"] = group.text("dn")
    resolved = _account_entry(host, directory)
    if isinstance(resolved, Outcome):
        return resolved
    account, entry = resolved
    evidence |= {"service_account": account, "account_dn": entry.opt_text("dn")}
    member = entry.opt_flag("member_of_group")
    mixed = (
        f" (the farm runs under {len(farm_accounts)} different accounts)"
        if len(farm_accounts) > 1
        else ""
    )
    if member is None:
        return errored(f"the membership of {account} in {name!r} was not determined", **evidence)
    if member:
        return passed(f"{account} is a member of {name!r}{mixed}", member_of_group=True, **evidence)
    return failed(
        f"{account} is not a member of {name!r}, directly or nested{mixed}",
        member_of_group=False,
        **evidence,
    )


@fleet_check(
    "adfs-service-account-in-phonefactor-admins",
    title="Each AD FS node's service account is in PhoneFactor Admins",
    severity=Severity.HIGH,
    roles=(ADFS,),
    guidance=Guidance(quote=g.QUOTE_PHONEFACTOR_VERIFY, source=g.SECTION_ON_PREMISES),
    remediation=(
        "On a domain controller, add the node's AD FS service account to the group: "
        "Add-ADGroupMember -Identity 'PhoneFactor Admins' -Members <sAMAccountName> (a gMSA's "
        "name ends in $), then restart adfssrv on every node so its logon token carries the "
        "group. Prefer one service account (ideally a gMSA) for the whole farm. "
        + _GROUP_REMEDIATION
    ),
    references=(g.REF_MFA_SERVER_ADFS, g.REF_GUIDE),
    facts=("adfs",),
)
def adfs_service_account_in_phonefactor_admins(fleet: Fleet) -> Iterable[Finding]:
    """One finding per AD FS node: is its ``adfs.service_account`` a (nested) group member?

    The account string the host reports (``DOMAIN\\name``, ``DOMAIN\\gmsa$`` or a UPN) is looked
    up verbatim in the directory facts' ``accounts``. member_of_group true PASSes, false FAILs,
    null is an ERROR; a missing group or an account not found FAILs; no service account is an
    ERROR (see `_account_entry`). Every finding's evidence lists the farm's service accounts,
    and the reason says when the nodes run under different ones. MANUAL on every node when no
    directory is configured.
    """
    nodes = fleet.with_role(ADFS)
    if not fleet.directory.configured:
        for host in nodes:
            yield Finding(host.name, manual(_NOT_CONFIGURED))
        return
    farm_accounts = _farm_accounts(fleet)
    for host in nodes:
        yield Finding(host.name, guarded(partial(_membership_outcome, host, fleet, farm_accounts)))


# -- service-account-healthy ----------------------------------------------------------------------

#: Account states that stop the service account from signing in, with how a reason names them.
_UNHEALTHY: Final = {
    "disabled": "disabled",
    "locked_out": "locked out",
    "password_expired": "password expired",
}


def _health_outcome(host: HostFacts, fleet: Fleet) -> Outcome:
    resolved = _account_entry(host, fleet.directory.facts())
    if isinstance(resolved, Outcome):
        return resolved
    account, entry = resolved
    states = {key: entry.opt_flag(key) for key in _UNHEALTHY}
    evidence = {"service_account": account, "account_dn": entry.opt_text("dn"), **states}
    bad = [label for key, label in _UNHEALTHY.items() if states[key]]
    unknown = [label for key, label in _UNHEALTHY.items() if states[key] is None]
    if bad:
        return failed(f"the AD FS service account {account} is {', '.join(bad)}", **evidence)
    if unknown:
        return errored(
            f"could not tell whether the AD FS service account {account} is {' or '.join(unknown)}",
            **evidence,
        )
    return passed(
        f"the AD FS service account {account} is enabled, not locked out, password not expired",
        **evidence,
    )


@fleet_check(
    "service-account-healthy",
    title="Each AD FS node's service account can sign in",
    severity=Severity.HIGH,
    roles=(ADFS,),
    guidance=Guidance(
        quote=g.QUOTE_PHONEFACTOR_VERIFY,
        source=g.SECTION_ON_PREMISES,
        notes=g.NOTE_SERVICE_ACCOUNT_HEALTH,
    ),
    remediation=(
        "In Active Directory: Enable-ADAccount <name> if disabled; Unlock-ADAccount <name> if "
        "locked out, after finding the lockout source (event 4740 on the PDC emulator: often an "
        "old password on another AD FS node or a scheduled task); if the password expired, reset "
        "it (Set-ADAccountPassword) and update the logon credentials of the AD FS service "
        "(adfssrv) on every node. Better, move the farm to a group Managed Service Account "
        "(gMSA), whose password Active Directory rotates itself. Restart adfssrv afterwards."
    ),
    references=(g.REF_ADFS_REQUIREMENTS, g.REF_ADFS_TOOLBOX),
    facts=("adfs",),
)
def service_account_healthy(fleet: Fleet) -> Iterable[Finding]:
    """One finding per AD FS node: its service account is not disabled, locked out or expired.

    Any of them true FAILs naming which; all false PASSes; any unknown (null) and none true is an
    ERROR. An account the directory does not know FAILs (see `_account_entry`: it cannot sign
    in). MANUAL on every node when no directory is configured.
    """
    nodes = fleet.with_role(ADFS)
    if not fleet.directory.configured:
        for host in nodes:
            yield Finding(host.name, manual(_NOT_CONFIGURED))
        return
    for host in nodes:
        yield Finding(host.name, guarded(partial(_health_outcome, host, fleet)))


# -- phonefactor-admins-members -------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """The directory's domain as the facts name it (either name may be unknown)."""

    dns: str | None = None
    netbios: str | None = None

    def is_own(self, name: str) -> bool:
        """Whether ``DOMAIN`` of ``DOMAIN\\name`` is this domain; True when it cannot be told."""
        wanted = name.strip().rstrip(".").casefold()
        known = {n.casefold() for n in (self.dns, self.netbios) if n}
        return wanted in known or self.netbios is None

    def describe(self) -> str:
        """``LAB (lab.example)``, or whichever name is known."""
        if self.dns and self.netbios:
            return f"{self.netbios} ({self.dns})"
        return self.netbios or self.dns or "unknown domain"


def _domain(directory: FactDict) -> Domain:
    names = directory.opt_mapping("domain")
    if names is None:
        return Domain()
    return Domain(names.opt_text("dns"), names.opt_text("netbios"))


def _dn_key(dn: str) -> tuple[tuple[str, str], ...]:
    """A DN compared as AD compares it: attribute types and values case-insensitively, spaces
    around ``,`` and ``=`` ignored (escaped commas stay inside their value)."""
    parts: list[str] = []
    current = ""
    escaped = False
    for char in dn:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            current += char
            escaped = True
        elif char in ",;":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    key = []
    for part in parts:
        attribute, _, value = part.partition("=")
        key.append((attribute.strip().casefold(), value.strip().casefold()))
    return tuple(key)


def allows(entry: str, dn: str, sam: str | None, upn: str | None, domain: Domain) -> bool:
    """Whether an allow-list entry names this member, as Active Directory would resolve it.

    ``CN=…,DC=…`` is a distinguished name (no sAMAccountName or UPN holds ``=``);
    ``DOMAIN\\name`` is the sAMAccountName ``name`` in the domain DOMAIN (NetBIOS or DNS name,
    so another domain's account never matches); ``name@suffix`` is a userPrincipalName, or the
    implicit UPN ``sAMAccountName@<the domain's DNS name>``; anything else is a sAMAccountName.
    Every comparison is case-insensitive.
    """
    text = entry.strip()
    name = (sam or "").casefold()
    if "=" in text:
        return _dn_key(text) == _dn_key(dn)
    if "\\" in text:
        prefix, _, account = text.partition("\\")
        return bool(name) and domain.is_own(prefix) and account.strip().casefold() == name
    if "@" in text:
        if upn is not None and upn.casefold() == text.casefold():
            return True
        account, _, suffix = text.rpartition("@")
        own = domain.dns is not None and suffix.rstrip(".").casefold() == domain.dns.casefold()
        return own and bool(name) and account.casefold() == name
    return bool(name) and text.casefold() == name


def _members_outcome(fleet: Fleet, allowed: tuple[str, ...]) -> Outcome:
    name = fleet.directory.group_name
    directory = fleet.directory.facts()
    if _group(directory) is None:
        return skipped(
            f"the group {name!r} does not exist, so it has no members to review "
            "(phonefactor-admins-exists reports the missing group)",
            group_name=name,
        )
    domain = _domain(directory)
    members = []
    extra = []
    for member in directory.mappings("members"):
        dn = member.text("dn")
        sam = member.opt_text("sam_account_name")
        row: dict[str, Any] = {
            "dn": dn,
            "sam_account_name": sam,
            "object_class": member.opt_text("object_class"),
        }
        if member.opt_flag("primary_group"):
            row["primary_group"] = True
        members.append(row)
        upn = member.opt_text("user_principal_name")
        if not any(allows(entry, dn, sam, upn, domain) for entry in allowed):
            extra.append(row)
    evidence = {"group_name": name, "allowed_members": list(allowed), "members": members}
    if extra:
        shown = ", ".join(str(row["sam_account_name"] or row["dn"]) for row in extra)
        return failed(
            f"{name!r} has members outside the allow-list: {shown}", extra_members=extra, **evidence
        )
    return passed(
        f"all {len(members)} member(s) of {name!r}, nested ones included, are allowed", **evidence
    )


@fleet_check(
    "phonefactor-admins-members",
    title="PhoneFactor Admins holds only allowed members",
    severity=Severity.HIGH,
    roles=(),
    guidance=Guidance(
        quote=g.QUOTE_PHONEFACTOR_CREATED, source=g.SECTION_ON_PREMISES, notes=g.NOTE_MEMBERS
    ),
    remediation=(
        "Review each extra member. Remove those with no need to administer MFA: "
        "Remove-ADGroupMember -Identity 'PhoneFactor Admins' -Members <name>, and for members "
        "reached through a nested group remove the nesting; a member by primary group needs "
        "another primary group first (Set-ADUser <name> -Replace @{primaryGroupID=513}). Add "
        "the legitimate ones (AD FS service accounts, the Web Service SDK account of the User "
        "Portal) to the inventory's mfa_phonefactor_admins_allowed, as DOMAIN\\name, UPN, "
        "sAMAccountName or distinguished name."
    ),
    references=(g.REF_MFA_SERVER_ADFS, g.REF_USER_PORTAL),
)
def phonefactor_admins_members(fleet: Fleet) -> Iterable[Finding]:
    """On (directory): every transitive member must be in the inventory's allow-list.

    Members include those by primary group. A member matches an allow-list entry written as
    ``DOMAIN\\name``, UPN, sAMAccountName or DN, as AD compares them (see `allows`). SKIP when no
    allow-list is declared; SKIP too when
    the group does not exist (phonefactor-admins-exists FAILs for that; reporting it twice would
    double-count one problem). MANUAL when an allow-list is declared but no directory is.
    """
    allowed = fleet.directory.allowed_members
    if allowed is None:
        yield Finding(
            DIRECTORY_TARGET,
            skipped("no allow-list is declared (mfa_phonefactor_admins_allowed in the inventory)"),
        )
        return
    if not fleet.directory.configured:
        yield Finding(DIRECTORY_TARGET, manual(_NOT_CONFIGURED, allowed_members=list(allowed)))
        return
    yield Finding(DIRECTORY_TARGET, guarded(partial(_members_outcome, fleet, allowed)))
