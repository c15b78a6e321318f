"""The allow-list of PhoneFactor Admins in every form the docs show, primary-group membership,
and service accounts of another domain, against the real Samba AD DC (`sambafixtures`).

Fixture domain: NetBIOS ``LAB``, DNS ``lab.example``.
"""

from __future__ import annotations

from collections.abc import Callable

import ldap3
import pytest
from ldap3.utils.conv import escape_filter_chars
from sambafixtures import (
    GROUP,
    PRIMARY_GROUP,
    PRIMARY_NEST,
    SambaLab,
    ldap_settings,
    samba_lab,
)
from test_directory_samba_checks import EXISTS, HEALTHY, MEMBERS, MEMBERSHIP, scan

from agent.connectors.directory import IN_CHAIN
from agent.inventory import DirectorySettings
from agent.model import Status
from agent.roles import DIRECTORY_TARGET

__all__ = ["ldap_settings", "samba_lab"]  # fixtures, used by name

pytestmark = [
    pytest.mark.needs_server,
    pytest.mark.filterwarnings("ignore:ssl.match_hostname\\(\\) is deprecated:DeprecationWarning"),
]

Settings = Callable[..., DirectorySettings]

#: Every member of PhoneFactor Admins (nested ones included), by sAMAccountName.
EVERYONE = (
    "svc-adfs", "gmsa-adfs$", "svc-disabled", "svc-locked", "svc-expired",
    "PFA Nest 1", "PFA Nest 2", "PFA Nest 3", "svc-nested",
)  # fmt: skip


def members_status(settings: DirectorySettings, allowed: tuple[str, ...]) -> tuple[Status, str]:
    results, _ = scan(settings, {"adfs01": "LAB\\svc-adfs"}, allowed=allowed)
    members = results[MEMBERS, DIRECTORY_TARGET]
    return members.status, members.reason


# -- the allow-list ------------------------------------------------------------------------------

ALLOWED_FORMS = {
    "sAMAccountName": "svc-disabled",
    "DOMAIN\\name": "LAB\\svc-disabled",
    "domain in another case": "lab\\SVC-Disabled",
    "DNS domain\\name": "lab.example\\svc-disabled",
    "implicit UPN": "svc-disabled@lab.example",
    "implicit UPN, other case": "SVC-DISABLED@LAB.EXAMPLE",
}


@pytest.mark.parametrize("entry", list(ALLOWED_FORMS.values()), ids=list(ALLOWED_FORMS))
def test_every_documented_form_of_an_allowed_member_matches(
    ldap_settings: Settings, entry: str
) -> None:
    others = tuple(name for name in EVERYONE if name != "svc-disabled")
    assert members_status(ldap_settings(), others)[0] is Status.FAIL
    assert members_status(ldap_settings(), (*others, entry)) == (
        Status.PASS,
        "all 9 member(s) of 'PhoneFactor Admins', nested ones included, are allowed",
    )


def test_a_distinguished_name_matches_as_ad_compares_it(
    ldap_settings: Settings, samba_lab: SambaLab
) -> None:
    others = tuple(name for name in EVERYONE if name != "svc-disabled")
    dn = samba_lab.dns["svc-disabled"]
    spaced = ", ".join(part.upper() for part in dn.split(","))
    for entry in (dn, dn.lower(), spaced):
        assert members_status(ldap_settings(), (*others, entry))[0] is Status.PASS, entry


def test_a_stored_upn_matches(ldap_settings: Settings) -> None:
    others = tuple(name for name in EVERYONE if name != "svc-adfs")
    assert members_status(ldap_settings(), (*others, "SVC-ADFS@lab.example"))[0] is Status.PASS


DENIED_FORMS = {
    "another domain": "OTHER\\svc-disabled",
    "another DNS domain": "other.example\\svc-disabled",
    "UPN of another domain": "svc-disabled@other.example",
    "another account": "LAB\\svc-disabled2",
    "a DN of another object": "CN=svc-disabled,CN=Users,DC=other,DC=example",
    "a prefix": "svc-dis",
    "a glob": "svc-*",
}


@pytest.mark.parametrize("entry", list(DENIED_FORMS.values()), ids=list(DENIED_FORMS))
def test_entries_naming_someone_else_do_not_match(ldap_settings: Settings, entry: str) -> None:
    others = tuple(name for name in EVERYONE if name != "svc-disabled")
    status, reason = members_status(ldap_settings(), (*others, entry))
    assert status is Status.FAIL
    assert reason == "'PhoneFactor Admins' has members outside the allow-list: svc-disabled"


# -- primary-group membership --------------------------------------------------------------------


def test_the_fixture_member_by_primary_group_has_no_member_value(samba_lab: SambaLab) -> None:
    """Without this the tests below would prove nothing: the chain rule does not see it."""
    conn = samba_lab.dc.connection()
    chain = f"(memberOf:{IN_CHAIN}:={escape_filter_chars(samba_lab.dns[PRIMARY_GROUP])})"
    conn.search(samba_lab.dc.base_dn, chain, ldap3.SUBTREE, attributes=["sAMAccountName"])
    entries = [e for e in conn.response if e["type"] == "searchResEntry"]
    found = {str(e["attributes"]["sAMAccountName"][0]) for e in entries}
    assert "svc-primary" not in found and "svc-primary-nested" not in found
    assert {"svc-adfs", PRIMARY_NEST} <= found


def test_primary_group_membership_counts(ldap_settings: Settings, samba_lab: SambaLab) -> None:
    settings = ldap_settings(group=PRIMARY_GROUP)
    nodes = {"adfs01": "LAB\\svc-primary", "adfs02": "LAB\\svc-primary-nested"}
    results, facts = scan(settings, nodes, allowed=("svc-adfs", PRIMARY_NEST))
    for node in nodes:
        assert results[MEMBERSHIP, node].status is Status.PASS, results[MEMBERSHIP, node].reason
    by_name = {m["sam_account_name"]: m for m in facts["members"]}
    assert by_name["svc-primary"]["primary_group"] is True
    assert by_name["svc-primary-nested"]["primary_group"] is True
    assert by_name["svc-adfs"]["primary_group"] is False
    members = results[MEMBERS, DIRECTORY_TARGET]
    assert members.status is Status.FAIL
    assert members.reason.endswith("outside the allow-list: svc-primary, svc-primary-nested")
    assert {"dn": samba_lab.dns["svc-primary"], "sam_account_name": "svc-primary",
            "object_class": "user", "primary_group": True} in members.evidence["extra_members"]


# -- a service account of another domain --------------------------------------------------------


def test_a_service_account_of_another_domain_is_manual_never_fail(ldap_settings: Settings) -> None:
    results, _ = scan(ldap_settings(), {"adfs01": "OTHER\\svc", "adfs02": "LAB\\svc-adfs"})
    for check in (HEALTHY, MEMBERSHIP):
        other = results[check, "adfs01"]
        assert other.status is Status.MANUAL, (check, other.reason)
        assert other.reason == (
            "the AD FS service account OTHER\\svc belongs to another domain (OTHER) than the "
            "directory read (LAB (lab.example)): check it in its own domain"
        )
        assert results[check, "adfs02"].status is Status.PASS
    assert results[EXISTS, DIRECTORY_TARGET].status is Status.PASS
    assert GROUP == "PhoneFactor Admins"
