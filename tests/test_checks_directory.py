"""Directory checks: the PhoneFactor Admins group, its members, and the AD FS service account."""

from __future__ import annotations

from typing import Any

import pytest
from checks_helpers import GROUP, account, directory, error, fleet_fn, make_host, run_fleet, value

from agent.facts import DirectoryView, Fleet, HostFacts
from agent.model import Status
from agent.roles import DIRECTORY_TARGET

EXISTS = fleet_fn("phonefactor-admins-exists")
MEMBERSHIP = fleet_fn("adfs-service-account-in-phonefactor-admins")
HEALTHY = fleet_fn("service-account-healthy")
MEMBERS = fleet_fn("phonefactor-admins-members")


def adfs_node(name: str, service_account: Any = "LAB\\svc-adfs", entry: Any = None) -> HostFacts:
    fact = (
        entry
        if entry is not None
        else value(
            feature_install_state="Installed",
            service_status="Running",
            service_account=service_account,
        )
    )
    return make_host(name, ["adfs"], adfs=fact)


# -- phonefactor-admins-exists --------------------------------------------------------------------


def test_group_exists_passes_with_dn_and_sid() -> None:
    outcome = run_fleet(EXISTS, Fleet(directory=directory(group=GROUP)))[DIRECTORY_TARGET]
    assert outcome.status is Status.PASS
    assert outcome.evidence["dn"] == GROUP["dn"]
    assert outcome.evidence["sid"] == GROUP["sid"]


def test_missing_group_is_a_failure_not_an_error() -> None:
    outcome = run_fleet(EXISTS, Fleet(directory=directory(group=None)))[DIRECTORY_TARGET]
    assert outcome.status is Status.FAIL
    assert "'PhoneFactor Admins' does not exist" in outcome.reason


def test_no_directory_configured_is_manual() -> None:
    outcome = run_fleet(EXISTS, Fleet())[DIRECTORY_TARGET]
    assert outcome.status is Status.MANUAL
    assert "configure mfa_directory or verify by hand" in outcome.reason


@pytest.mark.parametrize(
    "view",
    [
        DirectoryView(configured=True, entry=None),  # not gathered
        DirectoryView(configured=True, entry=error("LDAP bind refused")),
        directory(group={"dn": 5}),
        directory(entry={"value": {"group": "CN=PhoneFactor Admins"}}),
    ],
)
def test_unreadable_directory_is_an_error(view: DirectoryView) -> None:
    assert run_fleet(EXISTS, Fleet(directory=view))[DIRECTORY_TARGET].status is Status.ERROR


# -- adfs-service-account-in-phonefactor-admins ---------------------------------------------------


def test_membership_per_node() -> None:
    fleet = Fleet(
        hosts=(
            adfs_node("a", "LAB\\svc-adfs"),
            adfs_node("b", "LAB\\gmsa-adfs$"),
            adfs_node("c", "svc-adfs@lab.example"),
            adfs_node("d", "LAB\\gone"),
            adfs_node("e", None),
            adfs_node("f", entry=error("Get-WmiObject failed")),
            adfs_node("g", "LAB\\never-looked-up"),
            adfs_node("h", "LAB\\unknown-membership"),
            make_host("portal", ["user_portal"]),
        ),
        directory=directory(
            group=GROUP,
            accounts={
                "LAB\\svc-adfs": account(member=True),
                "LAB\\gmsa-adfs$": account(member=False, sam="gmsa-adfs$"),
                "svc-adfs@lab.example": account(member=True),
                "LAB\\gone": account(found=False),
                "LAB\\unknown-membership": account(member=None),
            },
        ),
    )
    outcomes = run_fleet(MEMBERSHIP, fleet)
    assert {t: o.status for t, o in outcomes.items()} == {
        "a": Status.PASS,
        "b": Status.FAIL,
        "c": Status.PASS,
        "d": Status.FAIL,
        "e": Status.ERROR,
        "f": Status.ERROR,
        "g": Status.ERROR,
        "h": Status.ERROR,
    }
    assert "not a member" in outcomes["b"].reason
    assert outcomes["b"].evidence["service_account"] == "LAB\\gmsa-adfs$"
    assert outcomes["b"].evidence["member_of_group"] is False
    assert "not found in the directory" in outcomes["d"].reason
    assert "no lookup" in outcomes["g"].reason
    assert outcomes["f"].evidence["fact"] == "adfs"


def test_farm_accounts_appear_in_the_evidence() -> None:
    fleet = Fleet(
        hosts=(adfs_node("a", "LAB\\svc-adfs"), adfs_node("b", "LAB\\svc-adfs2")),
        directory=directory(
            group=GROUP,
            accounts={"LAB\\svc-adfs": account(), "LAB\\svc-adfs2": account(sam="svc-adfs2")},
        ),
    )
    outcomes = run_fleet(MEMBERSHIP, fleet)
    for outcome in outcomes.values():
        assert outcome.status is Status.PASS
        assert outcome.evidence["farm_service_accounts"] == ["LAB\\svc-adfs", "LAB\\svc-adfs2"]
        assert "2 different accounts" in outcome.reason
    same = Fleet(
        hosts=(adfs_node("a"), adfs_node("b")),
        directory=directory(group=GROUP, accounts={"LAB\\svc-adfs": account()}),
    )
    for outcome in run_fleet(MEMBERSHIP, same).values():
        assert outcome.evidence["farm_service_accounts"] == ["LAB\\svc-adfs"]
        assert "different" not in outcome.reason


def test_missing_group_fails_every_node() -> None:
    fleet = Fleet(
        hosts=(adfs_node("a"), adfs_node("b", None)),
        directory=directory(group=None, accounts={"LAB\\svc-adfs": account(member=False)}),
    )
    outcomes = run_fleet(MEMBERSHIP, fleet)
    assert [o.status for o in outcomes.values()] == [Status.FAIL, Status.FAIL]
    assert "does not exist" in outcomes["a"].reason


def test_membership_without_directory_is_manual_per_node() -> None:
    outcomes = run_fleet(MEMBERSHIP, Fleet(hosts=(adfs_node("a"), adfs_node("b"))))
    assert {t: o.status for t, o in outcomes.items()} == {"a": Status.MANUAL, "b": Status.MANUAL}


def test_membership_with_unreadable_directory_is_an_error_per_node() -> None:
    view = DirectoryView(configured=True, entry=error("LDAP timeout"))
    outcomes = run_fleet(MEMBERSHIP, Fleet(hosts=(adfs_node("a"),), directory=view))
    assert outcomes["a"].status is Status.ERROR


# -- service-account-healthy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "status", "said"),
    [
        (account(), Status.PASS, "is enabled, not locked out"),
        (account(disabled=True), Status.FAIL, "is disabled"),
        (
            account(locked_out=True, password_expired=True),
            Status.FAIL,
            "locked out, password expired",
        ),
        (account(disabled=True, locked_out=None), Status.FAIL, "is disabled"),  # certain anyway
        (account(locked_out=None), Status.ERROR, "locked out"),
        (account(found=False), Status.FAIL, "not found"),
        (account() | {"disabled": "no"}, Status.ERROR, "disabled"),
    ],
)
def test_service_account_health(entry: dict[str, Any], status: Status, said: str) -> None:
    fleet = Fleet(
        hosts=(adfs_node("a"),),
        directory=directory(group=GROUP, accounts={"LAB\\svc-adfs": entry}),
    )
    outcome = run_fleet(HEALTHY, fleet)["a"]
    assert outcome.status is status
    assert said in outcome.reason


def test_health_evidence_and_isolation() -> None:
    fleet = Fleet(
        hosts=(adfs_node("a"), adfs_node("b", None), adfs_node("c", "LAB\\other")),
        directory=directory(accounts={"LAB\\svc-adfs": account(password_expired=True)}),
    )
    outcomes = run_fleet(HEALTHY, fleet)
    assert outcomes["a"].status is Status.FAIL
    assert outcomes["a"].evidence["password_expired"] is True
    assert outcomes["a"].evidence["disabled"] is False
    assert outcomes["b"].status is Status.ERROR
    assert outcomes["c"].status is Status.ERROR  # no lookup of LAB\other in the facts


def test_health_without_directory_is_manual() -> None:
    outcomes = run_fleet(HEALTHY, Fleet(hosts=(adfs_node("a"),)))
    assert outcomes["a"].status is Status.MANUAL


# -- phonefactor-admins-members -------------------------------------------------------------------

SVC: dict[str, Any] = {
    "dn": "CN=svc-adfs,CN=Users,DC=lab,DC=example",
    "sam_account_name": "svc-adfs",
}
SDK: dict[str, Any] = {
    "dn": "CN=svc-sdk,OU=Service,DC=lab,DC=example",
    "sam_account_name": "svc-sdk",
}
ALICE: dict[str, Any] = {"dn": "CN=Alice,OU=Staff,DC=lab,DC=example", "sam_account_name": "alice"}
NESTED: dict[str, Any] = {"dn": "CN=Helpdesk,OU=Groups,DC=lab,DC=example", "sam_account_name": None}


def members_of(*rows: dict[str, Any], allowed: tuple[str, ...] | None) -> Any:
    members = [row | {"object_class": "user"} for row in rows]
    fleet = Fleet(directory=directory(group=GROUP, members=members, allowed=allowed))
    return run_fleet(MEMBERS, fleet)[DIRECTORY_TARGET]


def test_no_allow_list_skips() -> None:
    outcome = members_of(SVC, ALICE, allowed=None)
    assert outcome.status is Status.SKIP
    assert run_fleet(MEMBERS, Fleet())[DIRECTORY_TARGET].status is Status.SKIP


def test_allow_list_without_directory_is_manual() -> None:
    fleet = Fleet(directory=DirectoryView(configured=False, allowed_members=("svc-adfs",)))
    assert run_fleet(MEMBERS, fleet)[DIRECTORY_TARGET].status is Status.MANUAL


def test_every_member_allowed_passes_matching_name_or_dn_in_any_case() -> None:
    outcome = members_of(SVC, SDK, NESTED, allowed=("SVC-ADFS", SDK["dn"].upper(), NESTED["dn"]))
    assert outcome.status is Status.PASS
    assert len(outcome.evidence["members"]) == 3


def test_extra_members_fail_and_are_listed() -> None:
    outcome = members_of(SVC, ALICE, NESTED, allowed=("svc-adfs",))
    assert outcome.status is Status.FAIL
    assert [row["dn"] for row in outcome.evidence["extra_members"]] == [ALICE["dn"], NESTED["dn"]]
    assert "alice" in outcome.reason
    assert NESTED["dn"] in outcome.reason


def test_an_empty_group_passes() -> None:
    assert members_of(allowed=("svc-adfs",)).status is Status.PASS


def test_missing_group_skips_the_member_review() -> None:
    fleet = Fleet(directory=directory(group=None, allowed=("svc-adfs",)))
    outcome = run_fleet(MEMBERS, fleet)[DIRECTORY_TARGET]
    assert outcome.status is Status.SKIP
    assert "phonefactor-admins-exists" in outcome.reason


@pytest.mark.parametrize(
    "view",
    [
        DirectoryView(configured=True, allowed_members=("a",), entry=error("LDAP timeout")),
        directory(group=GROUP, members=[{"dn": None}], allowed=("a",)),
        directory(group=GROUP, entry={"value": {"group": GROUP, "members": "x"}}, allowed=("a",)),
    ],
)
def test_unreadable_members_are_an_error(view: DirectoryView) -> None:
    assert run_fleet(MEMBERS, Fleet(directory=view))[DIRECTORY_TARGET].status is Status.ERROR
