"""The directory checks over facts read from a real Samba AD DC by the LDAP connector.

Each test builds `DirectorySettings` (LDAPS, bound as the low-privilege ``mfa-reader``), reads the
directory with `read_directory`, and evaluates the four directory checks of the real catalogue
over a fleet whose AD FS nodes report the service accounts under test. Fixture objects:
`sambafixtures`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ldap3
import pytest
from pytest_mock import MockerFixture
from sambafixtures import (
    BIG_GROUP,
    BIG_MEMBERS,
    GROUP,
    SPECIAL_GROUP,
    SPECIAL_UPN,
    SPECIAL_USER,
    SambaLab,
    ldap_settings,
    samba_lab,
)

from agent.connectors import directory as directory_connector
from agent.connectors.directory import IN_CHAIN, DomainNames, read_directory, read_domain_names
from agent.connectors.ldap import connect
from agent.engine import evaluate
from agent.facts import DirectoryView, Fleet, HostFacts
from agent.inventory import DirectorySettings, Secret
from agent.model import Result, Status
from agent.registry import Check, load_catalogue
from agent.roles import ADFS, DIRECTORY_TARGET

__all__ = ["ldap_settings", "samba_lab"]  # fixtures, used by name

pytestmark = [
    pytest.mark.needs_server,
    # ldap3 2.9.1 verifies host names with ssl.match_hostname, deprecated since Python 3.7.
    pytest.mark.filterwarnings("ignore:ssl.match_hostname\\(\\) is deprecated:DeprecationWarning"),
]

Settings = Callable[..., DirectorySettings]
EXISTS = "phonefactor-admins-exists"
MEMBERSHIP = "adfs-service-account-in-phonefactor-admins"
HEALTHY = "service-account-healthy"
MEMBERS = "phonefactor-admins-members"
DIRECTORY_CHECKS: tuple[Check, ...] = tuple(
    check
    for check in load_catalogue()
    if check.fleet_fn is not None and check.fleet_fn.__module__ == "checks.directory"
)


def test_the_catalogue_has_the_four_directory_checks() -> None:
    assert sorted(c.meta.id for c in DIRECTORY_CHECKS) == sorted(
        [EXISTS, MEMBERSHIP, HEALTHY, MEMBERS]
    )


def adfs_node(name: str, service_account: str) -> HostFacts:
    """An AD FS node whose adfssrv runs as `service_account`."""
    adfs = {
        "feature_install_state": "Installed",
        "service_status": "Running",
        "service_account": service_account,
    }
    return HostFacts(name, frozenset({ADFS}), "127.0.0.1", facts={"adfs": {"value": adfs}})


def scan(
    settings: DirectorySettings,
    accounts: Mapping[str, str],
    *,
    allowed: tuple[str, ...] | None = None,
    page_size: int = 1000,
) -> tuple[dict[tuple[str, str], Result], dict[str, Any]]:
    """Read the directory for these nodes' accounts, evaluate the directory checks.

    Returns the results by (check id, target) and the directory facts.
    """
    facts = read_directory(settings, accounts.values(), page_size=page_size)
    fleet = Fleet(
        hosts=tuple(adfs_node(node, account) for node, account in accounts.items()),
        directory=DirectoryView(
            configured=True,
            group_name=settings.group,
            allowed_members=allowed,
            entry={"value": facts},
        ),
    )
    results = evaluate(DIRECTORY_CHECKS, fleet)
    return {(r.check_id, r.target): r for r in results}, facts


# -- the group -------------------------------------------------------------------------------------


def test_group_exists_passes_with_its_dn_and_sid(
    ldap_settings: Settings, samba_lab: SambaLab
) -> None:
    results, _ = scan(ldap_settings(), {"adfs01": "LAB\\svc-adfs"})
    exists = results[EXISTS, DIRECTORY_TARGET]
    assert exists.status is Status.PASS
    assert exists.evidence["dn"] == samba_lab.dns[GROUP]
    assert str(exists.evidence["sid"]).startswith("S-1-5-21-")


def test_missing_group_fails_the_existence_check_and_is_not_an_error(
    ldap_settings: Settings,
) -> None:
    results, facts = scan(ldap_settings(group="No Such Group"), {"adfs01": "LAB\\svc-adfs"})
    assert facts["group"] is None
    assert facts["accounts"]["LAB\\svc-adfs"]["found"] is True
    assert facts["accounts"]["LAB\\svc-adfs"]["member_of_group"] is None
    exists = results[EXISTS, DIRECTORY_TARGET]
    assert exists.status is Status.FAIL
    assert exists.reason == "the group 'No Such Group' does not exist in the directory"
    membership = results[MEMBERSHIP, "adfs01"]
    assert membership.status is Status.FAIL
    assert "does not exist, so the AD FS service account is not a member" in membership.reason
    assert results[HEALTHY, "adfs01"].status is Status.PASS
    assert results[MEMBERS, DIRECTORY_TARGET].status is Status.SKIP


# -- one AD FS node per service account --------------------------------------------------------

MISSING = {
    "LAB\\nobody",
    "NT AUTHORITY\\NETWORK SERVICE",
    "OTHERDOM\\svc-adfs",
    "svc-nested@other.example",
}
CASES = [
    # node's service account, membership status, health status, words in the deciding reason
    ("LAB\\svc-adfs", Status.PASS, Status.PASS, "is a member of 'PhoneFactor Admins'"),
    ("svc-adfs@lab.example", Status.PASS, Status.PASS, "is a member of 'PhoneFactor Admins'"),
    ("LAB\\svc-nested", Status.PASS, Status.PASS, "is a member of 'PhoneFactor Admins'"),
    ("LAB\\gmsa-adfs$", Status.PASS, Status.PASS, "is a member of 'PhoneFactor Admins'"),
    (
        "LAB\\svc-outsider",
        Status.FAIL,
        Status.PASS,
        "LAB\\svc-outsider is not a member of 'PhoneFactor Admins', directly or nested",
    ),
    (
        "LAB\\svc-disabled",
        Status.PASS,
        Status.FAIL,
        "the AD FS service account LAB\\svc-disabled is disabled",
    ),
    (
        "LAB\\svc-locked",
        Status.PASS,
        Status.FAIL,
        "the AD FS service account LAB\\svc-locked is locked out",
    ),
    (
        "LAB\\svc-expired",
        Status.PASS,
        Status.FAIL,
        "the AD FS service account LAB\\svc-expired is password expired",
    ),
    (
        "LAB\\nobody",
        Status.FAIL,
        Status.FAIL,
        "the AD FS service account LAB\\nobody was not found in the directory",
    ),
    (
        "NT AUTHORITY\\NETWORK SERVICE",
        Status.FAIL,
        Status.FAIL,
        "was not found in the directory",
    ),
    # The domain part counts: LAB's svc-adfs is not OTHERDOM's (which this directory cannot
    # judge: MANUAL, never FAIL); the DNS name is LAB too.
    (
        "OTHERDOM\\svc-adfs",
        Status.MANUAL,
        Status.MANUAL,
        "the AD FS service account OTHERDOM\\svc-adfs belongs to another domain (OTHERDOM)",
    ),
    ("lab.example\\svc-adfs", Status.PASS, Status.PASS, "is a member of 'PhoneFactor Admins'"),
    # Implicit UPNs: sAMAccountName@<the domain's DNS name>, with no userPrincipalName stored.
    (
        "svc-nested@lab.example",
        Status.PASS,
        Status.PASS,
        "svc-nested@lab.example is a member of 'PhoneFactor Admins'",
    ),
    (
        "svc-outsider@LAB.EXAMPLE",
        Status.FAIL,
        Status.PASS,
        "svc-outsider@LAB.EXAMPLE is not a member of 'PhoneFactor Admins'",
    ),
    ("svc-nested@other.example", Status.FAIL, Status.FAIL, "was not found in the directory"),
]


Scan = tuple[dict[tuple[str, str], Result], dict[str, Any]]


@pytest.fixture(scope="module")
def cases_scan(samba_lab: SambaLab) -> Scan:
    """One read and one evaluation for every case: node ``node<i>`` runs as ``CASES[i][0]``.

    Samba resolves LDAP_MATCHING_RULE_IN_CHAIN by scanning the whole domain (about 0.5 s with the
    1,100 bulk users), so the cases share a read; each account is still looked up on its own.
    """
    settings = samba_lab.settings(bind_password=Secret.inline(samba_lab.reader_password))
    return scan(settings, {f"node{i}": case[0] for i, case in enumerate(CASES)})


@pytest.mark.parametrize(
    ("index", "account", "membership", "health", "words"),
    [(i, *case) for i, case in enumerate(CASES)],
    ids=[c[0] for c in CASES],
)
def test_service_account(
    cases_scan: Scan, index: int, account: str, membership: Status, health: Status, words: str
) -> None:
    results, facts = cases_scan
    node = f"node{index}"
    got = (results[MEMBERSHIP, node], results[HEALTHY, node])
    assert (got[0].status, got[1].status) == (membership, health), [r.reason for r in got]
    deciding = got[1] if health in (Status.FAIL, Status.MANUAL) else got[0]
    assert words in deciding.reason
    assert got[0].evidence["service_account"] == account
    assert results[EXISTS, DIRECTORY_TARGET].status is Status.PASS
    assert facts["accounts"][account]["found"] is (account not in MISSING)


def test_account_facts_read_from_the_directory(
    ldap_settings: Settings, samba_lab: SambaLab
) -> None:
    accounts = ["LAB\\svc-adfs", "LAB\\gmsa-adfs$", "LAB\\svc-locked", "LAB\\svc-expired"]
    facts = read_directory(ldap_settings(), accounts)
    entry = facts["accounts"]
    assert entry["LAB\\svc-adfs"] == {
        "found": True,
        "dn": samba_lab.dns["svc-adfs"],
        "sam_account_name": "svc-adfs",
        "member_of_group": True,
        "disabled": False,
        "locked_out": False,
        "password_expired": False,
        "not_found_reason": None,
        "other_domain": None,
    }
    assert entry["LAB\\gmsa-adfs$"]["dn"] == samba_lab.dns["gmsa-adfs$"]
    assert entry["LAB\\gmsa-adfs$"]["sam_account_name"] == "gmsa-adfs$"
    assert "CN=Managed Service Accounts" in entry["LAB\\gmsa-adfs$"]["dn"]
    assert (entry["LAB\\svc-locked"]["locked_out"], entry["LAB\\svc-locked"]["disabled"]) == (
        True,
        False,
    )
    assert entry["LAB\\svc-expired"]["password_expired"] is True
    members = {m["sam_account_name"]: m for m in facts["members"]}
    assert set(members) == {
        "svc-adfs", "gmsa-adfs$", "svc-disabled", "svc-locked", "svc-expired",
        "PFA Nest 1", "PFA Nest 2", "PFA Nest 3", "svc-nested",
    }  # fmt: skip
    assert members["gmsa-adfs$"]["object_class"] == "msDS-GroupManagedServiceAccount"
    assert members["PFA Nest 3"]["object_class"] == "group"
    assert members["svc-nested"]["object_class"] == "user"


def test_the_directorys_own_domain_names_are_read_once_from_the_configuration(
    ldap_settings: Settings, samba_lab: SambaLab, mocker: MockerFixture
) -> None:
    settings = ldap_settings()
    conn = connect(settings)
    try:
        assert read_domain_names(conn, settings.base_dn) == DomainNames("lab.example", "LAB")
        # A base DN below the domain's root is still in the domain.
        below = f"OU=Bulk,{settings.base_dn}"
        assert read_domain_names(conn, below) == DomainNames("lab.example", "LAB")
    finally:
        conn.unbind()
    names = mocker.spy(directory_connector, "read_domain_names")
    read_directory(settings, ["LAB\\svc-adfs", "OTHERDOM\\svc-adfs", "svc-adfs@lab.example"])
    assert names.call_count == 1


def test_an_account_of_another_domain_is_not_this_directorys(
    cases_scan: Scan, samba_lab: SambaLab
) -> None:
    _, facts = cases_scan
    other = facts["accounts"]["OTHERDOM\\svc-adfs"]
    assert (other["found"], other["dn"], other["member_of_group"]) == (False, None, None)
    assert other["not_found_reason"] == (
        "the account belongs to another domain, OTHERDOM: this directory is the domain "
        "LAB (lab.example)"
    )
    same = facts["accounts"]["lab.example\\svc-adfs"]
    assert (same["dn"], same["not_found_reason"]) == (samba_lab.dns["svc-adfs"], None)
    builtin = facts["accounts"]["NT AUTHORITY\\NETWORK SERVICE"]
    assert builtin["not_found_reason"].startswith("a built-in or local Windows account")
    assert facts["accounts"]["LAB\\nobody"]["not_found_reason"] is None


def test_an_implicit_upn_is_found_by_sam_account_name(
    cases_scan: Scan, samba_lab: SambaLab
) -> None:
    _, facts = cases_scan
    implicit = facts["accounts"]["svc-nested@lab.example"]
    assert (implicit["dn"], implicit["sam_account_name"]) == (
        samba_lab.dns["svc-nested"],
        "svc-nested",
    )
    assert implicit["member_of_group"] is True
    assert facts["accounts"]["svc-outsider@LAB.EXAMPLE"]["dn"] == samba_lab.dns["svc-outsider"]
    # The suffix of another domain gets no implicit UPN.
    assert facts["accounts"]["svc-nested@other.example"]["not_found_reason"] is None


def test_the_implicit_upn_has_no_stored_userprincipalname(samba_lab: SambaLab) -> None:
    conn = samba_lab.dc.connection()
    conn.search(samba_lab.dns["svc-nested"], "(objectClass=*)", ldap3.BASE, attributes=["*"])
    assert "userPrincipalName" not in conn.response[0]["attributes"]


def test_every_node_is_judged_on_its_own_account(ldap_settings: Settings) -> None:
    nodes = {"adfs01": "LAB\\svc-adfs", "adfs02": "LAB\\svc-outsider", "adfs03": "LAB\\gmsa-adfs$"}
    results, _ = scan(ldap_settings(), nodes)
    statuses = {node: results[MEMBERSHIP, node].status for node in nodes}
    assert statuses == {"adfs01": Status.PASS, "adfs02": Status.FAIL, "adfs03": Status.PASS}
    assert "(the farm runs under 3 different accounts)" in results[MEMBERSHIP, "adfs01"].reason


def test_members_outside_the_allow_list_fail(ldap_settings: Settings) -> None:
    everyone = (
        "svc-adfs", "gmsa-adfs$", "svc-locked", "svc-expired",
        "PFA Nest 1", "PFA Nest 2", "PFA Nest 3", "svc-nested",
    )  # fmt: skip
    results, _ = scan(ldap_settings(), {"adfs01": "LAB\\svc-adfs"}, allowed=everyone)
    members = results[MEMBERS, DIRECTORY_TARGET]
    assert members.status is Status.FAIL
    assert members.reason == "'PhoneFactor Admins' has members outside the allow-list: svc-disabled"
    results, _ = scan(
        ldap_settings(), {"adfs01": "LAB\\svc-adfs"}, allowed=(*everyone, "svc-disabled")
    )
    assert results[MEMBERS, DIRECTORY_TARGET].status is Status.PASS


# -- more than 1,000 members: paging -----------------------------------------------------------


def test_service_account_among_the_last_of_1102_members_with_paging(
    ldap_settings: Settings, samba_lab: SambaLab, mocker: MockerFixture
) -> None:
    search = mocker.spy(ldap3.Connection, "search")
    settings = ldap_settings(group=BIG_GROUP)
    results, facts = scan(settings, {"adfs01": "LAB\\svc-big"}, page_size=200)

    assert results[MEMBERSHIP, "adfs01"].status is Status.PASS
    assert results[EXISTS, DIRECTORY_TARGET].status is Status.PASS
    assert len(facts["members"]) == BIG_MEMBERS
    assert len({m["dn"] for m in facts["members"]}) == BIG_MEMBERS
    assert samba_lab.dns["svc-big"] in {m["dn"] for m in facts["members"]}
    # The transitive-membership search went page by page: ceil(1102 / 200) = 6 requests of 200,
    # each after the first carrying the cookie the previous page returned.
    chain = [c for c in search.call_args_list if f":{IN_CHAIN}:=" in c.args[2]]
    assert len(chain) == 6
    assert all(c.kwargs["paged_size"] == 200 for c in chain)
    assert chain[0].kwargs["paged_cookie"] is None
    assert all(c.kwargs["paged_cookie"] for c in chain[1:])


# -- names with LDAP filter and DN special characters ------------------------------------------


def test_group_and_accounts_with_special_characters_are_found(
    ldap_settings: Settings, samba_lab: SambaLab
) -> None:
    nodes = {"adfs01": f"LAB\\{SPECIAL_USER}", "adfs02": SPECIAL_UPN, "adfs03": "LAB\\svc-adfs"}
    results, facts = scan(ldap_settings(group=SPECIAL_GROUP), nodes)
    group_dn = samba_lab.dns[SPECIAL_GROUP]
    assert group_dn.startswith("CN=PF Admins (*) \\\\ special\\, too,")
    assert facts["group"]["dn"] == group_dn
    assert results[EXISTS, DIRECTORY_TARGET].evidence["dn"] == group_dn
    for node in nodes:
        assert results[MEMBERSHIP, node].status is Status.PASS, results[MEMBERSHIP, node].reason
    user = facts["accounts"][SPECIAL_UPN]
    assert (user["dn"], user["sam_account_name"]) == (samba_lab.dns[SPECIAL_USER], SPECIAL_USER)
    assert facts["accounts"][f"LAB\\{SPECIAL_USER}"]["dn"] == samba_lab.dns[SPECIAL_USER]
    assert sorted(m["sam_account_name"] for m in facts["members"]) == ["svc(x)", "svc-adfs"]


INJECTIONS = [
    "LAB\\svc*",
    "LAB\\*",
    "svc*@lab.example",
    "*@lab.example",
    "LAB\\svc-adfs)(sAMAccountName=*",
    "LAB\\*)(|(objectClass=*",
    "LAB\\svc-adf\\2a",
]


@pytest.fixture(scope="module")
def injections_scan(samba_lab: SambaLab) -> Scan:
    settings = samba_lab.settings(bind_password=Secret.inline(samba_lab.reader_password))
    return scan(settings, {f"node{i}": account for i, account in enumerate(INJECTIONS)})


@pytest.mark.parametrize(("index", "account"), list(enumerate(INJECTIONS)), ids=INJECTIONS)
def test_filter_metacharacters_in_an_account_match_nothing(
    injections_scan: Scan, index: int, account: str
) -> None:
    """Unescaped, each of these would match svc-adfs (or everyone); escaped, they match no one."""
    results, facts = injections_scan
    assert facts["accounts"][account]["found"] is False
    assert results[MEMBERSHIP, f"node{index}"].status is Status.FAIL
    assert "was not found in the directory" in results[MEMBERSHIP, f"node{index}"].reason


@pytest.mark.parametrize("group", ["PhoneFactor*", "*", "PhoneFactor Admins)(cn=*"])
def test_filter_metacharacters_in_the_group_name_match_no_group(
    ldap_settings: Settings, group: str
) -> None:
    results, facts = scan(ldap_settings(group=group), {"adfs01": "LAB\\svc-adfs"})
    assert facts["group"] is None
    assert facts["members"] == []
    assert results[EXISTS, DIRECTORY_TARGET].status is Status.FAIL
