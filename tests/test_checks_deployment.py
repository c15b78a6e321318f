"""Declared and attested deployment checks, and directory-sync-component's aad_connect hosts."""

from __future__ import annotations

from typing import Any

import pytest
from checks_helpers import error, fleet_fn, make_host, nets, run_fleet, value

from agent.facts import Declared, Fleet, HostFacts
from agent.model import Outcome, Status
from agent.roles import DEPLOYMENT_TARGET

PROVIDER = fleet_fn("provider-usage-model")
SYNC = fleet_fn("directory-sync-component")
APP_PASSWORDS = fleet_fn("app-passwords-policy")
BYPASS = fleet_fn("one-time-bypass")
TRUSTED_IPS = fleet_fn("trusted-ips")


def on_deployment(fn: Any, deployment: Any) -> Outcome:
    outcomes = run_fleet(fn, Fleet(deployment=deployment))
    assert list(outcomes) == [DEPLOYMENT_TARGET]
    return outcomes[DEPLOYMENT_TARGET]


# -- provider-usage-model -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deployment", "status"),
    [
        ({}, Status.MANUAL),
        ({"licensing": "licenses"}, Status.MANUAL),
        ({"provider": "per_authentication", "licensing": None}, Status.MANUAL),
        ({"licensing": "licenses", "provider": "per_authentication"}, Status.FAIL),
        ({"licensing": "mixed", "provider": "per_authentication"}, Status.FAIL),
        ({"licensing": "Mixed", "provider": "Per_Authentication"}, Status.FAIL),
        ({"licensing": "provider", "provider": "per_authentication"}, Status.PASS),
        ({"licensing": "provider", "provider": "per_user"}, Status.PASS),
        ({"licensing": "mixed", "provider": "per_user"}, Status.PASS),
        ({"licensing": "licenses", "provider": "none"}, Status.PASS),
        ({"licensing": "some", "provider": "per_user"}, Status.ERROR),
        ({"licensing": "none", "provider": "per_user"}, Status.ERROR),  # not an inventory value
        ({"licensing": "licenses", "provider": 3}, Status.ERROR),
        (["licensing"], Status.ERROR),  # not a mapping at all
    ],
)
def test_provider_usage_model(deployment: Any, status: Status) -> None:
    outcome = on_deployment(PROVIDER, deployment)
    assert outcome.status is status, outcome.reason
    if status is Status.FAIL:
        assert outcome.evidence == {
            "licensing": deployment["licensing"].lower(),
            "provider": "per_authentication",
        }


# -- directory-sync-component ---------------------------------------------------------------------


def sync_host(name: str, status: Any = "Running", entry: Any = None) -> HostFacts:
    adsync = entry if entry is not None else value(service_status=status)
    return make_host(name, ["aad_connect"], adsync=adsync)


def test_sync_undeclared_is_manual_on_the_deployment_only() -> None:
    outcomes = run_fleet(SYNC, Fleet(hosts=(sync_host("sync1"),)))
    assert list(outcomes) == [DEPLOYMENT_TARGET]
    assert outcomes[DEPLOYMENT_TARGET].status is Status.MANUAL
    assert outcomes[DEPLOYMENT_TARGET].evidence["aad_connect_hosts"] == ["sync1"]


def test_syncing_judges_each_sync_host() -> None:
    fleet = Fleet(
        hosts=(
            sync_host("sync1", "Running"),
            sync_host("sync2", "Stopped"),
            sync_host("sync3", None),
            sync_host("sync4", entry=error("Get-Service failed")),
            make_host("adfs1", ["adfs"]),
        ),
        deployment={"directory_sync": True},
    )
    outcomes = run_fleet(SYNC, fleet)
    assert {t: o.status for t, o in outcomes.items()} == {
        "sync1": Status.PASS,
        "sync2": Status.FAIL,
        "sync3": Status.FAIL,
        "sync4": Status.ERROR,
    }
    assert "Stopped" in outcomes["sync2"].reason
    assert "does not exist" in outcomes["sync3"].reason


def test_syncing_without_a_sync_host_fails_on_the_deployment() -> None:
    outcomes = run_fleet(SYNC, Fleet(deployment={"directory_sync": True}))
    assert outcomes[DEPLOYMENT_TARGET].status is Status.FAIL
    assert "no aad_connect host" in outcomes[DEPLOYMENT_TARGET].reason


def test_not_syncing_needs_no_sync_host() -> None:
    outcomes = run_fleet(SYNC, Fleet(deployment={"directory_sync": False}))
    assert list(outcomes) == [DEPLOYMENT_TARGET]
    assert outcomes[DEPLOYMENT_TARGET].status is Status.PASS
    assert "not needed" in outcomes[DEPLOYMENT_TARGET].reason


def test_not_syncing_with_sync_hosts_flags_a_running_one() -> None:
    fleet = Fleet(
        hosts=(sync_host("sync1", "Running"), sync_host("sync2", "Stopped"), sync_host("s3", None)),
        deployment={"directory_sync": False},
    )
    outcomes = run_fleet(SYNC, fleet)
    assert outcomes[DEPLOYMENT_TARGET].status is Status.PASS
    assert outcomes["sync1"].status is Status.FAIL
    assert "leftover" in outcomes["sync1"].reason
    assert outcomes["sync2"].status is Status.PASS
    assert outcomes["s3"].status is Status.PASS


@pytest.mark.parametrize("deployment", [{"directory_sync": "yes"}, {"directory_sync": 1}, [1]])
def test_sync_declaration_of_the_wrong_shape_is_an_error(deployment: Any) -> None:
    outcomes = run_fleet(SYNC, Fleet(hosts=(sync_host("sync1"),), deployment=deployment))
    assert list(outcomes) == [DEPLOYMENT_TARGET]
    assert outcomes[DEPLOYMENT_TARGET].status is Status.ERROR


# -- app-passwords-policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attested", "status"),
    [
        (None, Status.MANUAL),
        ({}, Status.MANUAL),
        ({"allowed": None}, Status.MANUAL),
        ({"allowed": False}, Status.PASS),
        (
            {"allowed": True, "justification": "legacy Outlook 2010 clients, until 2025-06"},
            Status.PASS,
        ),
        ({"allowed": True, "justification": "   "}, Status.FAIL),
        ({"allowed": True, "justification": None}, Status.FAIL),
        ({"allowed": True}, Status.FAIL),
        ({"allowed": "no"}, Status.ERROR),
        ({"allowed": True, "justification": ["x"]}, Status.ERROR),
        ("allowed", Status.ERROR),
    ],
)
def test_app_passwords(attested: Any, status: Status) -> None:
    deployment = {} if attested is None else {"app_passwords": attested}
    outcome = on_deployment(APP_PASSWORDS, deployment)
    assert outcome.status is status, outcome.reason


def test_justified_app_passwords_pass_noting_why() -> None:
    outcome = on_deployment(
        APP_PASSWORDS, {"app_passwords": {"allowed": True, "justification": "  legacy scanners "}}
    )
    assert "legacy scanners" in outcome.reason
    assert outcome.evidence == {"allowed": True, "justification": "legacy scanners"}


# -- one-time-bypass ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "status"),
    [
        (None, Status.MANUAL),
        (0, Status.PASS),  # no bypass at all
        (60, Status.PASS),
        (300, Status.PASS),
        (301, Status.FAIL),
        (1800, Status.FAIL),
        (-5, Status.ERROR),
        ("300", Status.ERROR),
        (300.0, Status.ERROR),
        (True, Status.ERROR),
    ],
)
def test_one_time_bypass(seconds: Any, status: Status) -> None:
    outcome = on_deployment(BYPASS, {"one_time_bypass_seconds": seconds})
    assert outcome.status is status, outcome.reason
    if status in (Status.PASS, Status.FAIL):
        assert outcome.evidence == {"one_time_bypass_seconds": seconds, "max_seconds": 300}
    assert on_deployment(BYPASS, {}).status is Status.MANUAL


# -- trusted-ips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attested", "status"),
    [
        (None, Status.MANUAL),
        ({"ranges": ["203.0.113.0/24"]}, Status.MANUAL),  # enabled not attested
        ({"enabled": False}, Status.PASS),
        ({"enabled": True, "ranges": ["203.0.113.0/24", "2001:db8:1::/48"]}, Status.PASS),
        ({"enabled": True, "ranges": ["10.0.0.0/8", "172.16.0.0/12"]}, Status.PASS),
        ({"enabled": True, "ranges": ["51.0.0.0/8"]}, Status.PASS),  # /8 itself is allowed
        ({"enabled": True, "ranges": []}, Status.PASS),
        ({"enabled": True, "ranges": ["203.0.113.0/24", "0.0.0.0/0"]}, Status.FAIL),
        ({"enabled": True, "ranges": ["::/0"]}, Status.FAIL),
        ({"enabled": True, "ranges": ["8.0.0.0/7"]}, Status.FAIL),
        ({"enabled": True, "ranges": ["2000::/3"]}, Status.FAIL),
        ({"enabled": True, "ranges": ["not-a-range"]}, Status.ERROR),
        ({"enabled": True}, Status.MANUAL),  # in use, ranges not attested
        ({"enabled": True, "ranges": "203.0.113.0/24"}, Status.ERROR),
    ],
)
def test_trusted_ips(attested: Any, status: Status) -> None:
    deployment = {} if attested is None else {"trusted_ips": attested}
    outcome = on_deployment(TRUSTED_IPS, deployment)
    assert outcome.status is status, outcome.reason


def test_trusted_ips_evidence() -> None:
    ok = on_deployment(
        TRUSTED_IPS,
        {"trusted_ips": {"enabled": True, "ranges": ["203.0.113.7/24", "2001:db8::/48"]}},
    )
    assert ok.evidence == {"enabled": True, "ranges": ["203.0.113.0/24", "2001:db8::/48"],
                           "declared_networks": []}
    wide = on_deployment(
        TRUSTED_IPS, {"trusted_ips": {"enabled": True, "ranges": ["192.0.2.0/24", "0.0.0.0/0"]}}
    )
    assert wide.evidence["too_wide"] == ["0.0.0.0/0"]
    assert "0.0.0.0/0" in wide.reason


@pytest.mark.parametrize(("ranges", "status", "outside"), [
    (["198.51.100.0/25", "10.10.0.0/16"], Status.PASS, []),
    (["2001:db8:100::/64"], Status.PASS, []),
    (["203.0.113.0/24"], Status.FAIL, ["203.0.113.0/24"]),  # someone else's network
    (["10.0.0.0/8"], Status.FAIL, ["10.0.0.0/8"]),  # wider than the declared internal network
    (["198.51.100.0/24", "2001:db8:99::/48"], Status.FAIL, ["2001:db8:99::/48"]),
])
def test_trusted_ips_are_judged_against_the_declared_networks(
    ranges: list[str], status: Status, outside: list[str]
) -> None:
    declared = Declared(perimeter=nets("198.51.100.0/24", "2001:db8:100::/48"),
                        internal=nets("10.10.0.0/16"))
    fleet = Fleet(hosts=(make_host("a", ["adfs"], declared=declared),),
                  deployment={"trusted_ips": {"enabled": True, "ranges": ranges}})
    outcome = run_fleet(TRUSTED_IPS, fleet)[DEPLOYMENT_TARGET]
    assert outcome.status is status, outcome.reason
    assert outcome.evidence["declared_networks"] == [
        "198.51.100.0/24", "2001:db8:100::/48", "10.10.0.0/16"]
    if outside:
        assert outcome.evidence["outside_declared"] == outside
        assert "outside the declared mfa_networks" in outcome.reason
