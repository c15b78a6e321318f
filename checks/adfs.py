"""Checks on AD FS farm nodes: the Windows build, the AD FS role, the MFA adapter on every node."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Final

from agent.facts import Fleet, HostFacts, guarded
from agent.model import Finding, Guidance, Outcome, Severity, errored, failed, passed
from agent.registry import fleet_check, host_check
from agent.roles import ADFS
from checks import _guidance as g
from checks._support import is_state, named, readable

# -- adfs-os-version ------------------------------------------------------------------------------

WindowsVersion = tuple[int, int, int]

#: The first build the guidance accepts: Windows Server 2012 R2.
MIN_ADFS_BUILD: Final[WindowsVersion] = (6, 3, 9600)

#: Windows Server releases by Win32_OperatingSystem.Version (docs: checks.md, "Windows builds").
SERVER_RELEASES: Final[Mapping[WindowsVersion, str]] = {
    (6, 1, 7600): "Windows Server 2008 R2",
    (6, 1, 7601): "Windows Server 2008 R2 SP1",
    (6, 2, 9200): "Windows Server 2012",
    (6, 3, 9600): "Windows Server 2012 R2",
    (10, 0, 14393): "Windows Server 2016",
    (10, 0, 17763): "Windows Server 2019",
    (10, 0, 20348): "Windows Server 2022",
    (10, 0, 26100): "Windows Server 2025",
}

#: Client releases sharing those version numbers (ProductType 1).
_CLIENT_RELEASES: Final[Mapping[WindowsVersion, str]] = {
    (6, 1, 7600): "Windows 7",
    (6, 1, 7601): "Windows 7 SP1",
    (6, 2, 9200): "Windows 8",
    (6, 3, 9600): "Windows 8.1",
}

PRODUCT_TYPES: Final[Mapping[int, str]] = {
    1: "workstation",
    2: "domain controller",
    3: "server",
}

_VERSION: Final = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)", re.ASCII)


def parse_windows_version(text: str) -> WindowsVersion | None:
    """``"10.0.17763"`` as ``(10, 0, 17763)``; None unless it is exactly major.minor.build."""
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        return None
    major, minor, build = (int(part) for part in match.groups())
    return major, minor, build


def windows_release(version: WindowsVersion, product_type: int) -> str:
    """A readable release name, e.g. ``Windows Server 2012 R2`` or ``Windows 10 (workstation)``."""
    shown = ".".join(str(part) for part in version)
    if product_type == 1:
        if version in _CLIENT_RELEASES:
            return _CLIENT_RELEASES[version]
        if version[:2] == (10, 0):
            return "Windows 11" if version[2] >= 22000 else "Windows 10"
        return f"Windows client {shown}"
    return SERVER_RELEASES.get(version, f"Windows Server build {shown}")


@host_check(
    "adfs-os-version",
    title="AD FS runs on Windows Server 2012 R2 or later",
    severity=Severity.HIGH,
    roles=(ADFS,),
    guidance=Guidance(quote=g.QUOTE_ADFS_OS, source=g.SECTION_ON_PREMISES, notes=g.NOTE_ADFS_OS),
    remediation=(
        "Move the AD FS farm to a supported Windows Server (2016 or later; 2012 R2 left extended "
        "support on 2023-10-10; AD FS never runs on a workstation): build a new server, "
        "Install-WindowsFeature ADFS-Federation -IncludeManagementTools, join it to the farm "
        "with Add-AdfsFarmNode, make it primary on a WID farm (Set-AdfsSyncProperties -Role "
        "PrimaryComputer, then -Role SecondaryComputer -PrimaryComputerName <new> on the others), "
        "move the load balancer to it, remove the old node, and once every node is upgraded run "
        "Invoke-AdfsFarmBehaviorLevelRaise. Install or register the MFA adapter on the new node."
    ),
    references=(
        g.REF_MFA_SERVER_ADFS,
        g.REF_ADFS_REQUIREMENTS,
        g.REF_WIN32_OS,
        g.REF_SERVER_RELEASES,
    ),
    facts=("os",),
)
def adfs_os_version(host: HostFacts) -> Outcome:
    """PASS when ProductType is a server (2 or 3) and Version >= 6.3.9600.

    A version that is not exactly ``major.minor.build`` of ASCII digits, or a ProductType
    outside 1..3, is an ERROR: the build cannot be judged.
    """
    fact = host.fact("os")
    text = fact.text("version")
    product_type = fact.integer("product_type")
    caption = fact.raw("caption")
    version = parse_windows_version(text)
    if version is None:
        return errored(
            f"os.version {text!r} is not a Windows version (major.minor.build)",
            version=text,
            caption=caption,
        )
    if product_type not in PRODUCT_TYPES:
        return errored(
            f"os.product_type {product_type} is not 1 (workstation), 2 (domain controller) or "
            "3 (server)",
            version=text,
            product_type=product_type,
            caption=caption,
        )
    release = windows_release(version, product_type)
    evidence = {
        "release": release,
        "version": text,
        "product_type": product_type,
        "product_type_name": PRODUCT_TYPES[product_type],
        "caption": caption,
    }
    if product_type == 1:
        return failed(
            f"{release} ({text}) is a workstation; the AD FS adapter needs Windows Server 2012 R2 "
            "or later",
            **evidence,
        )
    if version < MIN_ADFS_BUILD:
        return failed(
            f"{release} ({text}) is older than Windows Server 2012 R2 (6.3.9600), the release the "
            "AD FS adapter needs",
            **evidence,
        )
    if version == MIN_ADFS_BUILD:
        return passed(f"{release} ({text}) is the release the guidance names", **evidence)
    return passed(
        f"{release} ({text}) is later than Windows Server 2012 R2: the guidance names only 2012 "
        "R2, but AD FS and its MFA adapters run on later server builds",
        **evidence,
    )


# -- adfs-role-running ----------------------------------------------------------------------------


@host_check(
    "adfs-role-running",
    title="The AD FS role is installed and its service is running",
    severity=Severity.HIGH,
    roles=(ADFS,),
    guidance=Guidance(quote=g.QUOTE_ADFS_OS, source=g.SECTION_ON_PREMISES),
    remediation=(
        "On the node, Get-WindowsFeature ADFS-Federation: if it is not Installed, run "
        "Install-WindowsFeature ADFS-Federation -IncludeManagementTools and join the farm "
        "(Add-AdfsFarmNode). If the service is stopped: Set-Service adfssrv -StartupType "
        "Automatic; Start-Service adfssrv, then read why it stopped with Get-WinEvent -LogName "
        "'AD FS/Admin' -MaxEvents 50 (service account password or lockout, certificates, "
        "configuration database reachability). If the host is not meant to be an AD FS server, "
        "remove it from the inventory's adfs group."
    ),
    references=(g.REF_MFA_SERVER_ADFS, g.REF_ADFS_REQUIREMENTS),
    facts=("adfs",),
)
def adfs_role_running(host: HostFacts) -> Outcome:
    """PASS when the ADFS-Federation feature is Installed and the adfssrv service is Running.

    A null feature state means Get-WindowsFeature could not be run (no ServerManager module, e.g.
    on a client SKU or a stripped Server Core). If adfssrv is Running nonetheless, AD FS is
    evidently installed and running, so this PASSes with a note rather than an ERROR; a feature
    state other than Installed FAILs even when the service runs.
    """
    fact = host.fact("adfs")
    feature = fact.opt_text("feature_install_state")
    service = fact.opt_text("service_status")
    evidence = {"feature_install_state": feature, "service_status": service}
    problems = []
    if service is None:
        problems.append("the adfssrv service does not exist")
    elif not is_state(service, "Running"):
        problems.append(f"the adfssrv service is {service}")
    if feature is not None and not is_state(feature, "Installed"):
        problems.append(f"the ADFS-Federation feature is {feature}")
    if problems:
        return failed(f"AD FS is not running: {'; '.join(problems)}", **evidence)
    if feature is None:
        return passed(
            "the adfssrv service is Running; the ADFS-Federation feature state could not be read "
            "(Get-WindowsFeature unavailable), so the running service stands as proof",
            **evidence,
        )
    return passed(
        "the ADFS-Federation feature is Installed and the adfssrv service is Running", **evidence
    )


# -- adfs-adapter-registered ----------------------------------------------------------------------

#: AD FS authentication providers that are an Azure MFA adapter, by case-folded name.
MFA_ADAPTERS: Final[Mapping[str, str]] = {
    "windowsazuremultifactorauthentication": "MFA Server's AD FS adapter",
    "azuremfaserverauthentication": "MFA Server's AD FS adapter",
    "azuremfaauthentication": "AD FS 2016+ built-in Azure MFA adapter",
}
#: The names MFA Server's adapter registers under, by version (Microsoft's MFA Server upgrade
#: guide): both are the retired MFA Server's.
MFA_SERVER_ADAPTERS: Final = frozenset(
    {"windowsazuremultifactorauthentication", "azuremfaserverauthentication"}
)
RETIRED_ESTATE: Final = (
    "MFA Server's adapter makes this farm part of the retired MFA Server estate (no MFA "
    "requests serviced since 2024-09-30): move to the built-in AzureMfaAuthentication adapter "
    "(AD FS 2016 and later)"
)


def _providers(host: HostFacts) -> list[str]:
    return host.fact("adfs_providers").texts("names")


def mfa_adapters(names: Iterable[str]) -> list[str]:
    """The Azure MFA adapters among registered authentication provider names."""
    return [name for name in names if name.strip().casefold() in MFA_ADAPTERS]


def mfa_server_adapters(names: Iterable[str]) -> list[str]:
    """MFA Server's adapters (either name) among registered authentication provider names."""
    return [name for name in names if name.strip().casefold() in MFA_SERVER_ADAPTERS]


def adapter_installed(host: HostFacts) -> tuple[bool, dict[str, Any]]:
    """Whether MFA Server's AD FS adapter is installed on this node, with what shows it."""
    fact = host.fact("adfs_adapter_install")
    product = fact.opt_text("product")
    assemblies = fact.texts("gac_assemblies")
    shown = {"product": product, "version": fact.opt_text("version"), "gac_assemblies": assemblies}
    return bool(product or assemblies), shown


def _registered_outcome(host: HostFacts, names: list[str], adapters: list[str]) -> Outcome:
    """A node whose farm registers an Azure MFA adapter: MFA Server's must be installed here."""
    described = ", ".join(f"{a} ({MFA_ADAPTERS[a.strip().casefold()]})" for a in adapters)
    server = mfa_server_adapters(adapters)
    cloud = [a for a in adapters if a not in server]
    evidence: dict[str, Any] = {"mfa_adapters": adapters, "registered_providers": names}
    if not server:
        return passed(f"Azure MFA adapter registered: {described}", **evidence)
    installed, shown = adapter_installed(host)
    evidence.update(mfa_server_adapter=server, installed_on_node=shown,
                    retired_mfa_server_estate=True)
    if not installed and not cloud:
        return failed(
            f"{', '.join(server)} (MFA Server's adapter) is registered farm-wide, but the adapter "
            "is not installed on this node (no product entry, no assembly in the GAC): sign-ins "
            f"reaching this node cannot complete MFA; and {RETIRED_ESTATE}",
            **evidence,
        )
    where = "installed on this node" if installed else "not installed on this node"
    return passed(
        f"Azure MFA adapter registered: {described}; MFA Server's adapter is {where}. "
        f"{RETIRED_ESTATE[0].upper()}{RETIRED_ESTATE[1:]}",
        **evidence,
    )


def _adapter_outcome(
    host: HostFacts, farm_size: int, with_adapter_all: Sequence[str], unread_all: Sequence[str]
) -> Outcome:
    names = _providers(host)
    adapters = mfa_adapters(names)
    if adapters:
        return _registered_outcome(host, names, adapters)
    # The farm-wide lists are built once (a fleet check over thousands of nodes stays linear).
    with_adapter = [name for name in with_adapter_all if name != host.name]
    unread = [name for name in unread_all if name != host.name]
    others = farm_size > 1
    evidence = {
        "registered_providers": names,
        "farm_nodes_with_adapter": named(with_adapter),
        "farm_nodes_unread": named(unread),
    }
    if with_adapter:
        return failed(
            "no Azure MFA adapter is registered on this node, but other farm nodes have one "
            f"({', '.join(named(with_adapter))}): the farm is inconsistent; registration is "
            "farm-wide, so this node reads another configuration (another farm, or a "
            "configuration database it cannot reach)",
            **evidence,
        )
    elsewhere = ", nor on any other farm node that could be read" if others else ""
    return failed(
        "no Azure MFA adapter (AzureMfaAuthentication, or MFA Server's "
        "WindowsAzureMultiFactorAuthentication / AzureMfaServerAuthentication) is registered on "
        f"this node{elsewhere}",
        **evidence,
    )


@fleet_check(
    "adfs-adapter-registered",
    title="An Azure MFA adapter is registered on every AD FS node",
    severity=Severity.HIGH,
    roles=(ADFS,),
    guidance=Guidance(
        quote=g.QUOTE_ADFS_ADAPTER, source=g.SECTION_ON_PREMISES, notes=g.NOTE_ADAPTER_NAMES
    ),
    remediation=(
        "MFA Server is retired, so on AD FS 2016 or later use the built-in adapter: on every node "
        "run New-AdfsAzureMfaTenantCertificate -TenantID <tenant id> and add each certificate to "
        "the Azure MFA service principal (app id 981f26a1-7f43-403b-a875-f8b09b8cd720) in the "
        "tenant; then run Set-AdfsAzureMfaTenant -TenantId <tenant id> -ClientId "
        "981f26a1-7f43-403b-a875-f8b09b8cd720, restart adfssrv on every node, and check that "
        "Get-AdfsAuthenticationProvider lists AzureMfaAuthentication. While MFA Server is still "
        "in use, install MultiFactorAuthenticationAdfsAdapterSetup64.msi on every node and run "
        "Register-MultiFactorAuthenticationAdfsAdapter.ps1 (it registers "
        "WindowsAzureMultiFactorAuthentication or, in later versions, "
        "AzureMfaServerAuthentication), then restart adfssrv; registration is farm-wide, the "
        "installation is needed on every node. Select the adapter as an additional "
        "authentication method in the global authentication policy."
    ),
    references=(
        g.REF_MFA_SERVER_ADFS,
        g.REF_ADFS_AZURE_MFA,
        g.REF_GET_ADFS_PROVIDER,
        g.REF_MFA_SERVER_UPGRADE,
    ),
    facts=("adfs_providers", "adfs_adapter_install"),
)
def adfs_adapter_registered(fleet: Fleet) -> Iterable[Finding]:
    """One finding per AD FS node: PASS when its providers include an Azure MFA adapter.

    ``WindowsAzureMultiFactorAuthentication`` and ``AzureMfaServerAuthentication`` (MFA Server's
    adapter, by version) and ``AzureMfaAuthentication`` (the built-in cloud adapter) count, matched
    case-insensitively. Registration is farm-wide; MFA Server's adapter must also be installed on
    the node (``adfs_adapter_install``): registered but not installed, with no cloud adapter
    beside it, FAILs. A PASS on MFA Server's adapter says the farm is part of the retired MFA
    Server estate, with the way out. A node without an adapter FAILs and its evidence names the
    other farm nodes that do have one (sign-ins reaching that node skip MFA) and those whose
    providers could not be read.
    """
    nodes = fleet.with_role(ADFS)
    farm = {host.name: readable(partial(_providers, host)) for host in nodes}
    adapters = {
        name: None if names is None else mfa_adapters(names) for name, names in farm.items()
    }
    with_adapter = sorted(name for name, found in adapters.items() if found)
    unread = sorted(name for name, found in adapters.items() if found is None)
    for host in nodes:
        outcome = partial(_adapter_outcome, host, len(nodes), with_adapter, unread)
        yield Finding(host.name, guarded(outcome))


# -- adfs-mfa-policy ------------------------------------------------------------------------------

#: The claim value by which AD FS rules ask for the additional (second) authentication.
MULTIPLE_AUTHN: Final = "http://schemas.microsoft.com/claims/multipleauthn"


def _requires_mfa(rule: str | None, access_policy: str | None) -> bool:
    """Whether a rule issues the multipleauthn claim, or an access control policy names MFA."""
    if rule and MULTIPLE_AUTHN in rule.casefold():
        return True
    return bool(access_policy and "mfa" in access_policy.casefold().replace("-", ""))


@host_check(
    "adfs-mfa-policy",
    title="AD FS's authentication policy requires the MFA adapter",
    severity=Severity.HIGH,
    roles=(ADFS,),
    guidance=Guidance(
        quote=g.QUOTE_ADFS_TWO_STEPS, source=g.SECTION_ON_PREMISES, notes=g.NOTE_MFA_POLICY
    ),
    remediation=(
        "Make the MFA adapter an additional authentication method of the global policy "
        "(AD FS Management > Authentication Policies > Edit Global Multi-factor Authentication, "
        "or Set-AdfsGlobalAuthenticationPolicy -AdditionalAuthenticationProvider "
        "AzureMfaAuthentication), then require it: for Azure AD, on the 'Microsoft Office 365 "
        "Identity Platform' trust, Set-AdfsRelyingPartyTrust -TargetName 'Microsoft Office 365 "
        "Identity Platform' -AdditionalAuthenticationRules 'c:[Type == \"http://schemas."
        "microsoft.com/ws/2012/01/insidecorporatenetwork\", Value == \"false\"] => issue(Type = "
        "\"http://schemas.microsoft.com/ws/2008/06/identity/claims/authenticationmethod\", Value "
        "= \"http://schemas.microsoft.com/claims/multipleauthn\");' (AD FS 2012 R2), or on AD FS "
        "2016+ assign an access control policy such as 'Permit everyone and require MFA' "
        "(Set-AdfsRelyingPartyTrust -AccessControlPolicyName)."
    ),
    references=(g.REF_ADFS_AZURE_MFA, g.REF_ADFS_ACCESS_POLICIES, g.REF_ADFS_ADDITIONAL_RULE),
    facts=("adfs_policy",),
)
def adfs_mfa_policy(host: HostFacts) -> Outcome:
    """PASS when an Azure MFA adapter is an additional provider of the global policy *and* a rule
    requires it: the global additional rule, or an enabled relying party trust's additional rules,
    issue the multipleauthn claim, or its access control policy names MFA.

    An adapter selected but required nowhere FAILs (registered is not enforced), as does a global
    policy without an MFA adapter. The policy is farm-wide: each node reports what it reads.
    """
    fact = host.fact("adfs_policy")
    providers = fact.texts("additional_providers")
    selected = mfa_adapters(providers)
    global_rule = fact.opt_text("additional_rule")
    requiring = [
        party.text("name")
        for party in fact.mappings("relying_parties")
        if party.flag("enabled")
        and _requires_mfa(
            party.opt_text("additional_rules"), party.opt_text("access_control_policy")
        )
    ]
    globally = _requires_mfa(global_rule, None)
    evidence = {
        "additional_providers": providers,
        "mfa_adapters_selected": selected,
        "global_rule_requires_mfa": globally,
        "relying_parties_requiring_mfa": named(requiring),
    }
    if not selected:
        return failed(
            "no Azure MFA adapter is an additional authentication method of the global "
            "authentication policy, so AD FS never performs the second step",
            **evidence,
        )
    if not globally and not requiring:
        return failed(
            f"{', '.join(selected)} is selected in the global policy, but no rule requires it "
            "(neither the global additional authentication rule nor any enabled relying party "
            "trust asks for multiple authentication)",
            **evidence,
        )
    where = ["the global additional authentication rule"] if globally else []
    if requiring:
        where.append(f"relying party trusts {', '.join(named(requiring))}")
    return passed(f"{', '.join(selected)} is required by {' and '.join(where)}", **evidence)


# -- adfs-azure-ad-federation ---------------------------------------------------------------------

#: The identifier of the relying party trust that federates AD FS with Azure AD (Microsoft Online).
MICROSOFT_ONLINE: Final = "urn:federation:microsoftonline"


@host_check(
    "adfs-azure-ad-federation",
    title="AD FS is federated with Azure AD (the Microsoft Online relying party trust)",
    severity=Severity.HIGH,
    roles=(ADFS,),
    guidance=Guidance(quote=g.QUOTE_ADFS_FEDERATED, source=g.SECTION_ON_PREMISES),
    remediation=(
        "Federate the Azure AD domain with this farm: with Azure AD Connect (Configure > "
        "Federation with AD FS), or Convert-MsolDomainToFederated / Update-MgDomainFederation "
        "for the domain, which creates the 'Microsoft Office 365 Identity Platform' relying "
        "party trust (identifier urn:federation:MicrosoftOnline). If the trust exists but is "
        "disabled: Enable-AdfsRelyingPartyTrust -TargetName 'Microsoft Office 365 Identity "
        "Platform'."
    ),
    references=(g.REF_AAD_FEDERATION, g.REF_RELYING_PARTY),
    facts=("adfs_policy",),
)
def adfs_azure_ad_federation(host: HostFacts) -> Outcome:
    """PASS when an enabled relying party trust has the identifier urn:federation:MicrosoftOnline.

    A disabled one FAILs (federation is off), none at all FAILs.
    """
    parties = host.fact("adfs_policy").mappings("relying_parties")
    online = [
        p for p in parties
        if any(i.strip().casefold() == MICROSOFT_ONLINE for i in p.texts("identifiers"))
    ]
    evidence = {
        "microsoft_online_trusts": [
            {"name": p.text("name"), "enabled": p.flag("enabled")} for p in online
        ],
        "relying_party_count": len(parties),
    }
    enabled = [p.text("name") for p in online if p.flag("enabled")]
    if enabled:
        return passed(f"federated with Azure AD through {', '.join(enabled)}", **evidence)
    if online:
        return failed(
            "the Microsoft Online relying party trust exists but is disabled: AD FS does not "
            "sign users in to Azure AD",
            **evidence,
        )
    return failed(
        "no relying party trust for Azure AD (identifier urn:federation:MicrosoftOnline): this "
        "farm is not federated with the tenant",
        **evidence,
    )


# -- adfs-extranet-lockout ------------------------------------------------------------------------

#: Smart lockout that only logs (AD FS 2016+ audit mode).
LOG_ONLY: Final = "adfssmartlockoutlogonly"


@host_check(
    "adfs-extranet-lockout",
    title="AD FS extranet lockout is on and enforced",
    severity=Severity.MEDIUM,
    roles=(ADFS,),
    guidance=Guidance(quote=g.QUOTE_EXTRANET_LOCKOUT, source=g.SOURCE_EXTRANET_LOCKOUT),
    remediation=(
        "Turn extranet lockout on with a threshold below the domain's account lockout threshold: "
        "Set-AdfsProperties -EnableExtranetLockout $true -ExtranetLockoutThreshold 5 "
        "-ExtranetObservationWindow (New-TimeSpan -Minutes 30). On AD FS 2016 (March 2018 "
        "update) and later prefer smart lockout: Update-AdfsArtifactDatabasePermission, then "
        "Set-AdfsProperties -ExtranetLockoutMode AdfsSmartLockoutLogOnly to learn familiar "
        "locations, and after a few days -ExtranetLockoutMode AdfsSmartLockoutEnforce."
    ),
    references=(g.CITED[g.SOURCE_EXTRANET_LOCKOUT],),
    facts=("adfs_lockout",),
)
def adfs_extranet_lockout(host: HostFacts) -> Outcome:
    """PASS when extranet lockout is enabled and not in smart lockout's log-only mode.

    Disabled FAILs (password guessing through the proxy locks accounts out in AD); log-only
    smart lockout FAILs (nothing is locked out); enabled with no threshold read is an ERROR.
    """
    fact = host.fact("adfs_lockout")
    enabled = fact.flag("enabled")
    threshold = fact.opt_integer("threshold")
    mode = fact.opt_text("mode")
    evidence = {"enabled": enabled, "threshold": threshold, "mode": mode,
                "observation_window_minutes": fact.opt_integer("observation_window_minutes")}
    if not enabled:
        return failed("extranet lockout is disabled", **evidence)
    if mode is not None and mode.strip().casefold() == LOG_ONLY:
        return failed("smart lockout only logs (ADFSSmartLockoutLogOnly): nothing is locked out",
                      **evidence)
    if threshold is None or threshold < 1:
        return errored(f"extranet lockout is enabled with no usable threshold ({threshold})",
                       **evidence)
    return passed(f"extranet lockout is enforced after {threshold} bad passwords", **evidence)
