"""AD FS checks: adfs-os-version, adfs-role-running, adfs-adapter-registered, adfs-mfa-policy,
adfs-azure-ad-federation."""

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


INSTALLED = value(product="Multi-Factor Authentication AD FS Adapter", version="8.0.1.1",
                  gac_assemblies=["MultiFactorAuthenticationAdfsAdapter"])
NOT_INSTALLED = value(product=None, version=None, gac_assemblies=[])


def node(name: str, *names: str, entry: Any = None, install: Any = INSTALLED) -> HostFacts:
    providers = entry if entry is not None else value(names=list(names))
    return make_host(name, ["adfs"], adfs_providers=providers, adfs_adapter_install=install)


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


@pytest.mark.parametrize("name", ["WindowsAzureMultiFactorAuthentication",
                                  "AzureMfaServerAuthentication", "azuremfaserverauthentication"])
def test_both_names_of_mfa_server_adapter_are_judged_alike_and_called_retired(name: str) -> None:
    outcome = run_fleet(ADAPTER, Fleet(hosts=(node("a", "FormsAuthentication", name),)))["a"]
    assert outcome.status is Status.PASS
    assert outcome.evidence["mfa_server_adapter"] == [name]
    assert outcome.evidence["retired_mfa_server_estate"] is True
    assert "retired MFA Server estate" in outcome.reason
    assert "AzureMfaAuthentication" in outcome.reason  # the way out


def test_mfa_server_adapter_registered_but_not_installed_on_this_node_fails() -> None:
    fleet = Fleet(hosts=(node("a", "AzureMfaServerAuthentication"),
                         node("b", "AzureMfaServerAuthentication", install=NOT_INSTALLED)))
    outcomes = run_fleet(ADAPTER, fleet)
    assert outcomes["a"].status is Status.PASS
    assert outcomes["b"].status is Status.FAIL
    assert "not installed on this node" in outcomes["b"].reason
    assert outcomes["b"].evidence["installed_on_node"]["gac_assemblies"] == []


def test_the_built_in_adapter_needs_no_installation() -> None:
    fleet = Fleet(hosts=(node("a", "AzureMfaAuthentication", install=NOT_INSTALLED),))
    outcome = run_fleet(ADAPTER, fleet)["a"]
    assert outcome.status is Status.PASS
    assert "retired" not in outcome.reason


def test_an_unreadable_installation_is_an_error_only_where_it_matters() -> None:
    fleet = Fleet(hosts=(node("a", "WindowsAzureMultiFactorAuthentication", install=error()),
                         node("b", "AzureMfaAuthentication", install=error())))
    outcomes = run_fleet(ADAPTER, fleet)
    assert outcomes["a"].status is Status.ERROR
    assert outcomes["a"].evidence["fact"] == "adfs_adapter_install"
    assert outcomes["b"].status is Status.PASS


# -- adfs-mfa-policy, adfs-azure-ad-federation ---------------------------------------------------

POLICY = host_fn("adfs-mfa-policy")
FEDERATION = host_fn("adfs-azure-ad-federation")
RULE = ('c:[Type == "http://schemas.microsoft.com/ws/2012/01/insidecorporatenetwork", Value == '
        '"false"] => issue(Type = "http://schemas.microsoft.com/ws/2008/06/identity/claims/'
        'authenticationmethod", Value = "http://schemas.microsoft.com/claims/multipleauthn");')


def party(name: str = "Microsoft Office 365 Identity Platform", *, enabled: bool = True,
          rules: str | None = None, acp: str | None = None,
          identifiers: tuple[str, ...] = ("urn:federation:MicrosoftOnline",)) -> dict[str, Any]:
    return {"name": name, "enabled": enabled, "identifiers": list(identifiers),
            "additional_rules": rules, "access_control_policy": acp}


def policy(providers: list[str], rule: str | None = None, *parties: dict[str, Any]) -> HostFacts:
    return make_host(adfs_policy=value(additional_providers=providers, additional_rule=rule,
                                       relying_parties=list(parties)))


@pytest.mark.parametrize(("host", "status", "said"), [
    (policy(["AzureMfaAuthentication"], None, party(rules=RULE)), Status.PASS,
     "required by relying party trusts Microsoft Office 365 Identity Platform"),
    (policy(["AzureMfaAuthentication"], RULE.upper()), Status.PASS,
     "the global additional authentication rule"),
    (policy(["WindowsAzureMultiFactorAuthentication"], None,
            party(acp="Permit everyone and require MFA")), Status.PASS, "required by"),
    (policy(["AzureMfaAuthentication"], None, party()), Status.FAIL, "no rule requires it"),
    (policy(["AzureMfaAuthentication"], None, party(rules=RULE, enabled=False)), Status.FAIL,
     "no rule requires it"),
    (policy(["FormsAuthentication"], RULE, party(rules=RULE)), Status.FAIL,
     "no Azure MFA adapter is an additional authentication method"),
])
def test_the_policy_must_select_and_require_the_adapter(
    host: HostFacts, status: Status, said: str
) -> None:
    outcome = run_host(POLICY, host)
    assert outcome.status is status
    assert said in outcome.reason


@pytest.mark.parametrize(("parties", "status", "said"), [
    ((party(),), Status.PASS, "federated with Azure AD"),
    ((party(enabled=False),), Status.FAIL, "disabled"),
    ((party("Claims X", identifiers=("https://x.example/",)),), Status.FAIL, "not federated"),
    ((), Status.FAIL, "not federated"),
    ((party(identifiers=("URN:FEDERATION:MICROSOFTONLINE ",)),), Status.PASS, "federated"),
])
def test_federation_needs_an_enabled_microsoft_online_trust(
    parties: tuple[dict[str, Any], ...], status: Status, said: str
) -> None:
    outcome = run_host(FEDERATION, policy([], None, *parties))
    assert outcome.status is status
    assert said in outcome.reason


@pytest.mark.parametrize("entry", [error(), value(additional_providers="x", additional_rule=None,
                                                  relying_parties=[])])
def test_an_unreadable_or_malformed_policy_is_an_error(entry: Any) -> None:
    for fn in (POLICY, FEDERATION):
        assert run_host(fn, make_host(adfs_policy=entry)).status is Status.ERROR


# -- adfs-extranet-lockout ------------------------------------------------------------------------

LOCKOUT = host_fn("adfs-extranet-lockout")


def lockout(enabled: Any = True, threshold: Any = 5, mode: Any = None) -> HostFacts:
    return make_host(adfs_lockout=value(enabled=enabled, threshold=threshold,
                                        observation_window_minutes=30, mode=mode))


@pytest.mark.parametrize(("host", "status", "said"), [
    (lockout(), Status.PASS, "enforced after 5 bad passwords"),
    (lockout(mode="ADFSSmartLockoutEnforce"), Status.PASS, "enforced"),
    (lockout(enabled=False), Status.FAIL, "disabled"),
    (lockout(mode="AdfsSmartLockoutLogOnly"), Status.FAIL, "only logs"),
    (lockout(threshold=None), Status.ERROR, "no usable threshold"),
    (lockout(threshold=0), Status.ERROR, "no usable threshold"),
    (lockout(enabled="yes"), Status.ERROR, "adfs_lockout"),
    (make_host(adfs_lockout=error("Get-AdfsProperties : access denied")), Status.ERROR,
     "access denied"),
])
def test_extranet_lockout(host: HostFacts, status: Status, said: str) -> None:
    outcome = run_host(LOCKOUT, host)
    assert outcome.status is status
    assert said in outcome.reason
