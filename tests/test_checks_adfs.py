"""AD FS checks: adfs-os-version, adfs-role-running, adfs-adapter-registered."""

from __future__ import annotations

from typing import Any

import pytest
from checks_helpers import error, fleet_fn, host_fn, make_host, run_fleet, run_host, value

from agent.facts import Fleet, HostFacts
from agent.model import Status

OS_VERSION = host_fn("adfs-os-version")
ROLE_RUNNING = host_fn("adfs-role-running")
ADAPTER = fleet_fn("adfs-adapter-registered")


def os_fact(version: Any, product_type: Any = 3, caption: Any = "Microsoft Windows Server") -> Any:
    return value(caption=caption, version=version, build_number="0", product_type=product_type)


# -- adfs-os-version ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "product_type", "status", "release"),
    [
        ("6.1.7601", 3, Status.FAIL, "Windows Server 2008 R2 SP1"),
        ("6.2.9200", 3, Status.FAIL, "Windows Server 2012"),
        ("6.3.9600", 3, Status.PASS, "Windows Server 2012 R2"),
        ("10.0.14393", 3, Status.PASS, "Windows Server 2016"),
        ("10.0.17763", 2, Status.PASS, "Windows Server 2019"),  # a domain controller
        ("10.0.20348", 3, Status.PASS, "Windows Server 2022"),
        ("10.0.26100", 3, Status.PASS, "Windows Server 2025"),
        ("10.0.16299", 3, Status.PASS, "Windows Server build 10.0.16299"),  # semi-annual
        ("6.3.9600", 1, Status.FAIL, "Windows 8.1"),
        ("10.0.19045", 1, Status.FAIL, "Windows 10"),
        ("10.0.22631", 1, Status.FAIL, "Windows 11"),
        ("6.1.7601", 1, Status.FAIL, "Windows 7 SP1"),
    ],
)
def test_os_version(version: str, product_type: int, status: Status, release: str) -> None:
    outcome = run_host(OS_VERSION, make_host(os=os_fact(version, product_type)))
    assert outcome.status is status, outcome.reason
    assert outcome.evidence["release"] == release
    assert outcome.evidence["version"] == version
    assert outcome.evidence["product_type"] == product_type
    assert release in outcome.reason


def test_workstation_reason_says_so() -> None:
    outcome = run_host(OS_VERSION, make_host(os=os_fact("10.0.19045", 1)))
    assert "workstation" in outcome.reason
    assert outcome.evidence["product_type_name"] == "workstation"


def test_later_builds_note_the_disagreement() -> None:
    later = run_host(OS_VERSION, make_host(os=os_fact("10.0.20348")))
    named = run_host(OS_VERSION, make_host(os=os_fact("6.3.9600")))
    assert "names only 2012 R2" in later.reason
    assert "the release the guidance names" in named.reason


@pytest.mark.parametrize(
    "entry",
    [
        os_fact("10.0"),
        os_fact("10.0.17763.1"),
        os_fact("ten"),
        os_fact(""),
        os_fact("١٠.٠.١٧٧٦٣"),  # Arabic-Indic digits: int() would take them, we do not
        os_fact(10),  # an int, not a string
        os_fact(None),
        os_fact("10.0.17763", "3"),  # product_type a string
        os_fact("10.0.17763", True),  # a boolean is not an integer
        os_fact("10.0.17763", 7),  # no such ProductType
        error("Get-WmiObject: RPC server unavailable"),
        value(),
    ],
)
def test_malformed_os_fact_is_an_error(entry: Any) -> None:
    outcome = run_host(OS_VERSION, make_host(os=entry))
    assert outcome.status is Status.ERROR, outcome.reason


# -- adfs-role-running ----------------------------------------------------------------------------


def adfs(feature: Any, service: Any, account: Any = "LAB\\svc-adfs") -> Any:
    return value(feature_install_state=feature, service_status=service, service_account=account)


@pytest.mark.parametrize(
    ("feature", "service", "status", "said"),
    [
        ("Installed", "Running", Status.PASS, "Installed and the adfssrv service is Running"),
        ("installed", "running", Status.PASS, "is Running"),  # PowerShell casing varies
        ("Installed", "Stopped", Status.FAIL, "the adfssrv service is Stopped"),
        ("Installed", None, Status.FAIL, "the adfssrv service does not exist"),
        ("Available", "Running", Status.FAIL, "the ADFS-Federation feature is Available"),
        ("Available", None, Status.FAIL, "does not exist; the ADFS-Federation feature is"),
        (None, "Running", Status.PASS, "could not be read"),
        (None, "Stopped", Status.FAIL, "the adfssrv service is Stopped"),
        (None, None, Status.FAIL, "does not exist"),
    ],
)
def test_role_running(feature: Any, service: Any, status: Status, said: str) -> None:
    outcome = run_host(ROLE_RUNNING, make_host(adfs=adfs(feature, service)))
    assert outcome.status is status
    assert said in outcome.reason
    assert dict(outcome.evidence) == {"feature_install_state": feature, "service_status": service}


@pytest.mark.parametrize("entry", [adfs(1, "Running"), adfs("Installed", ["Running"]), error()])
def test_role_running_bad_fact_is_an_error(entry: Any) -> None:
    assert run_host(ROLE_RUNNING, make_host(adfs=entry)).status is Status.ERROR


# -- adfs-adapter-registered ----------------------------------------------------------------------


def node(name: str, *names: str, entry: Any = None) -> HostFacts:
    providers = entry if entry is not None else value(names=list(names))
    return make_host(name, ["adfs"], adfs_providers=providers)


def test_every_node_with_an_adapter_passes() -> None:
    fleet = Fleet(
        hosts=(
            node("a", "FormsAuthentication", "WindowsAzureMultiFactorAuthentication"),
            node("b", "AzureMfaAuthentication"),
            node("c", "azuremfaauthentication"),  # names compare case-insensitively
        )
    )
    outcomes = run_fleet(ADAPTER, fleet)
    assert list(outcomes) == ["a", "b", "c"]
    assert all(o.status is Status.PASS for o in outcomes.values())
    assert outcomes["a"].evidence["mfa_adapters"] == ["WindowsAzureMultiFactorAuthentication"]
    assert outcomes["a"].evidence["registered_providers"] == [
        "FormsAuthentication",
        "WindowsAzureMultiFactorAuthentication",
    ]


def test_a_node_without_an_adapter_fails_naming_the_nodes_that_have_one() -> None:
    fleet = Fleet(
        hosts=(
            node("a", "WindowsAzureMultiFactorAuthentication"),
            node("b", "FormsAuthentication", "CertificateAuthentication"),
            node("c", "AzureMfaAuthentication"),
            node("d", entry=error("Get-AdfsAuthenticationProvider is not available")),
            make_host("portal", ["user_portal"]),  # not an AD FS node: no finding
        )
    )
    outcomes = run_fleet(ADAPTER, fleet)
    assert set(outcomes) == {"a", "b", "c", "d"}
    assert outcomes["a"].status is Status.PASS
    assert outcomes["c"].status is Status.PASS
    failing = outcomes["b"]
    assert failing.status is Status.FAIL
    assert "inconsistent" in failing.reason
    assert failing.evidence["farm_nodes_with_adapter"] == ["a", "c"]
    assert failing.evidence["farm_nodes_unread"] == ["d"]
    assert failing.evidence["registered_providers"] == [
        "FormsAuthentication",
        "CertificateAuthentication",
    ]
    # the unreadable node is an ERROR for that node only
    assert outcomes["d"].status is Status.ERROR
    assert outcomes["d"].evidence["fact"] == "adfs_providers"


def test_no_adapter_anywhere_fails_every_node() -> None:
    fleet = Fleet(hosts=(node("a", "FormsAuthentication"), node("b")))
    outcomes = run_fleet(ADAPTER, fleet)
    assert [o.status for o in outcomes.values()] == [Status.FAIL, Status.FAIL]
    assert outcomes["b"].evidence["farm_nodes_with_adapter"] == []
    assert "nor on any other farm node" in outcomes["b"].reason


@pytest.mark.parametrize(
    "entry", [value(names="WindowsAzureMultiFactorAuthentication"), value(names=[1]), value()]
)
def test_malformed_providers_are_an_error_for_that_node(entry: Any) -> None:
    fleet = Fleet(hosts=(node("a", entry=entry), node("b", "AzureMfaAuthentication")))
    outcomes = run_fleet(ADAPTER, fleet)
    assert outcomes["a"].status is Status.ERROR
    assert outcomes["b"].status is Status.PASS


def test_unreachable_node_is_an_error_and_no_adfs_nodes_no_findings() -> None:
    down = make_host("a", ["adfs"], unreachable=True)
    assert run_fleet(ADAPTER, Fleet(hosts=(down,)))["a"].status is Status.ERROR
    assert run_fleet(ADAPTER, Fleet(hosts=(make_host("p", ["user_portal"]),))) == {}
