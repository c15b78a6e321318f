"""Checks on what the inventory declares or attests about the deployment (``mfa_deployment``).

These settings live in the tenant or in MFA Server's own data, where no on-premises read reaches,
so the inventory declares them. The keys read here (all optional; absent or null means "not
declared", which gives MANUAL):

.. code-block:: yaml

    mfa_deployment:
      licensing: licenses | provider | mixed   # licences with Azure MFA, a provider only, both
      provider: none | per_user | per_authentication   # the Multi-Factor Auth Provider's model
      directory_sync: true | false         # on-premises AD synchronised to Azure AD
      app_passwords: {allowed: bool, justification: str}
      one_time_bypass_seconds: int         # MFA Server's one-time bypass duration
      trusted_ips: {enabled: bool, ranges: [CIDR, ...]}

Every finding of these checks is on the ``(deployment)`` target, except directory-sync-component,
which also judges each ``aad_connect`` host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import partial
from typing import Final

from agent.facts import FactDict, Fleet, HostFacts, IPNetwork, guarded
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
from agent.roles import AAD_CONNECT, DEPLOYMENT_TARGET
from checks import _guidance as g
from checks._support import is_state, plural, settle

#: The inventory's values (agent/inventory/settings.py): per-user licences that include Azure
#: MFA, a Multi-Factor Auth Provider only, or both.
LICENSING: Final = ("licenses", "provider", "mixed")
PROVIDERS: Final = ("none", "per_user", "per_authentication")

#: The User Portal's default one-time bypass (howto-mfaserver-deploy-userportal): five minutes.
MAX_BYPASS_SECONDS: Final = 300

#: Public trusted ranges wider than these prefixes cover far more than one organisation.
MIN_PUBLIC_PREFIX: Final = {4: 8, 6: 32}


def _declared_choice(deployment: FactDict, key: str, allowed: tuple[str, ...]) -> str | None:
    """A declared enumeration, case-insensitive; None when undeclared; ERROR when unknown."""
    value = deployment.opt_text(key)
    if value is None:
        return None
    folded = value.strip().casefold()
    if folded not in allowed:
        raise ValueError(f"mfa_deployment.{key} is {value!r}, not one of {', '.join(allowed)}")
    return folded


# -- provider-usage-model -------------------------------------------------------------------------


def _provider_outcome(fleet: Fleet) -> Outcome:
    deployment = fleet.deployment_facts()
    try:
        licensing = _declared_choice(deployment, "licensing", LICENSING)
        provider = _declared_choice(deployment, "provider", PROVIDERS)
    except ValueError as exc:
        return errored(str(exc))
    evidence = {"licensing": licensing, "provider": provider}
    if licensing is None or provider is None:
        return manual(
            "declare mfa_deployment.licensing and mfa_deployment.provider in the inventory, or "
            "verify the provider's usage model by hand",
            **evidence,
        )
    if provider == "per_authentication" and licensing in ("licenses", "mixed"):
        return failed(
            f"a per-authentication provider is declared alongside user licences ({licensing}): "
            "licensed users' verifications may be paid twice",
            **evidence,
        )
    return passed(f"provider {provider} with licensing {licensing}", **evidence)


@fleet_check(
    "provider-usage-model",
    title="No per-authentication MFA provider alongside user licences",
    severity=Severity.LOW,
    roles=(),
    guidance=Guidance(quote=g.QUOTE_PER_AUTHENTICATION, source=g.SECTION_LICENSES),
    remediation=(
        "A provider's usage model cannot be changed, and new providers cannot be created since "
        "2018-09-01. Cover every MFA user with a licence (Azure AD Premium, EMS or Azure MFA), "
        "then delete the per-authentication provider (Azure portal > Azure Active Directory > "
        "Security > MFA > Providers). Before deleting it, save its reports, move its custom "
        "settings to the tenant's MFA settings, and reactivate any MFA Server linked to it with "
        "credentials from Security > MFA > Server settings (after deleting caCert, cert, "
        "groupCACert, groupKey, groupName, licenseKey and pkey from the server's Data folder). "
        "Update mfa_deployment.provider in the inventory."
    ),
    references=(g.REF_AUTH_PROVIDER, g.REF_GUIDE),
)
def provider_usage_model(fleet: Fleet) -> Iterable[Finding]:
    """FAIL when provider is per_authentication and licensing is licenses or mixed.

    MANUAL when either is undeclared; an unknown value is an ERROR. A per-authentication provider
    with no licences (licensing: provider) is what the guidance allows, so it PASSes.
    """
    yield Finding(DEPLOYMENT_TARGET, guarded(partial(_provider_outcome, fleet)))


# -- directory-sync-component ---------------------------------------------------------------------


def _sync_host_outcome(host: HostFacts, syncing: bool) -> Outcome:
    status = host.fact("adsync").opt_text("service_status")
    running = is_state(status, "Running")
    evidence = {"service_status": status, "directory_sync": syncing}
    state = "does not exist" if status is None else f"is {status}"
    if syncing:
        if running:
            return passed("the ADSync service is Running", **evidence)
        return failed(f"directory sync is declared but the ADSync service {state}", **evidence)
    if running:
        return failed(
            "the ADSync service is Running although the inventory declares no directory sync: "
            "correct the declaration, or decommission this leftover sync server",
            **evidence,
        )
    return passed(
        f"no directory sync is declared and the ADSync service {state}: Azure AD Connect is not "
        "needed here (remove the host from the aad_connect group if it has no other use)",
        **evidence,
    )


@fleet_check(
    "directory-sync-component",
    title="Azure AD Connect runs where, and only where, directory sync is declared",
    severity=Severity.MEDIUM,
    roles=(AAD_CONNECT,),
    guidance=Guidance(quote=g.QUOTE_AAD_CONNECT, source=g.SECTION_LICENSES),
    remediation=(
        "If you synchronise: on the Azure AD Connect server, Set-Service ADSync -StartupType "
        "Automatic; Start-Service ADSync, then check Get-ADSyncScheduler (SyncCycleEnabled True, "
        "StagingModeEnabled False on the active server) and the last runs in the Synchronization "
        "Service Manager; list the server in the inventory's aad_connect group. If you do not "
        "synchronise, declare mfa_deployment.directory_sync: false and uninstall Azure AD Connect "
        "from leftover servers: they hold highly privileged credentials to the directory and the "
        "tenant."
    ),
    references=(g.REF_AAD_CONNECT, g.REF_GUIDE),
    facts=("adsync",),
)
def directory_sync_component(fleet: Fleet) -> Iterable[Finding]:
    """Judge the declared ``directory_sync`` against the ``aad_connect`` hosts.

    Undeclared: MANUAL on (deployment). Syncing: each aad_connect host PASSes when its ADSync
    service is Running and FAILs otherwise; no aad_connect host at all FAILs on (deployment),
    but when the inventory has one that ``--limit`` left out, (deployment) is a SKIP saying so.
    Not syncing: a PASS on (deployment) saying Azure AD Connect is not needed, and each
    aad_connect host listed anyway PASSes with a note when ADSync is not running, but FAILs when
    it is: the guidance does not forbid a sync server, yet one that is syncing contradicts the
    declaration, and either the inventory or the server is wrong (a forgotten sync server is a
    Tier 0 asset nobody watches).
    """
    sync_hosts = fleet.with_role(AAD_CONNECT)
    syncing = settle(lambda: fleet.deployment_facts().opt_flag("directory_sync"))
    if isinstance(syncing, Outcome):
        yield Finding(DEPLOYMENT_TARGET, syncing)
        return
    names = [host.name for host in sync_hosts]
    if syncing is None:
        yield Finding(
            DEPLOYMENT_TARGET,
            manual(
                "declare mfa_deployment.directory_sync in the inventory (true when on-premises AD "
                "is synchronised to Azure AD)",
                aad_connect_hosts=names,
            ),
        )
        return
    outside = fleet.outside(AAD_CONNECT)
    if syncing and not sync_hosts and outside:
        # The inventory has the sync server; the --limit left it out. Not absent: not judged.
        yield Finding(
            DEPLOYMENT_TARGET,
            skipped(
                f"the inventory's {plural(len(outside), 'aad_connect host')} "
                f"({', '.join(outside[:5])}) outside this scan's --limit: not read, so not judged",
                directory_sync=True,
                aad_connect_outside_limit=list(outside),
            ),
        )
    elif syncing and not sync_hosts:
        yield Finding(
            DEPLOYMENT_TARGET,
            failed(
                "directory sync is declared but the inventory lists no aad_connect host to check",
                directory_sync=True,
                aad_connect_hosts=names,
            ),
        )
    elif not syncing:
        yield Finding(
            DEPLOYMENT_TARGET,
            passed(
                "no directory sync is declared, so Azure AD Connect is not needed"
                + (f" ({plural(len(names), 'aad_connect host')} checked below)" if names else ""),
                directory_sync=False,
                aad_connect_hosts=names,
            ),
        )
    for host in sync_hosts:
        yield Finding(host.name, guarded(partial(_sync_host_outcome, host, syncing)))


# -- app-passwords-policy -------------------------------------------------------------------------


def _app_passwords_outcome(fleet: Fleet) -> Outcome:
    attested = fleet.deployment_facts().opt_mapping("app_passwords")
    allowed = attested.opt_flag("allowed") if attested is not None else None
    if attested is None or allowed is None:
        return manual(
            "app passwords are a tenant setting no on-premises read reaches: attest "
            "mfa_deployment.app_passwords.allowed in the inventory, or verify by hand"
        )
    # one line, whatever YAML block the inventory wrote it in
    justification = " ".join((attested.opt_text("justification") or "").split())
    evidence = {"allowed": allowed, "justification": justification or None}
    if not allowed:
        return passed("users cannot create app passwords (the default)", **evidence)
    if justification:
        return passed(f"app passwords are allowed, justified: {justification}", **evidence)
    return failed(
        "users may create app passwords, which bypass federation and on-premises auditing, and no "
        "justification is recorded",
        **evidence,
    )


@fleet_check(
    "app-passwords-policy",
    title="App passwords stay disallowed unless justified",
    severity=Severity.MEDIUM,
    roles=(),
    guidance=Guidance(quote=g.QUOTE_APP_PASSWORDS, source=g.SECTION_APP_PASSWORDS),
    remediation=(
        "In the MFA service settings (Entra admin center > Users > Per-user multifactor "
        "authentication > Service settings), select 'Do not allow users to create app passwords "
        "to sign in to non-browser apps'. Move the clients that needed app passwords to modern "
        "authentication. If app passwords must stay allowed, record why in the inventory "
        "(mfa_deployment.app_passwords.justification)."
    ),
    references=(g.REF_APP_PASSWORDS, g.REF_MFA_SETTINGS),
)
def app_passwords_policy(fleet: Fleet) -> Iterable[Finding]:
    """MANUAL unless attested; allowed false PASSes; allowed with a justification PASSes noting it.

    Allowed with a missing or blank justification FAILs.
    """
    yield Finding(DEPLOYMENT_TARGET, guarded(partial(_app_passwords_outcome, fleet)))


# -- one-time-bypass ------------------------------------------------------------------------------


def _bypass_outcome(fleet: Fleet) -> Outcome:
    seconds = fleet.deployment_facts().opt_integer("one_time_bypass_seconds")
    if seconds is None:
        return manual(
            "MFA Server keeps the bypass length in its own data file: attest "
            "mfa_deployment.one_time_bypass_seconds in the inventory, or verify by hand"
        )
    evidence = {"one_time_bypass_seconds": seconds, "max_seconds": MAX_BYPASS_SECONDS}
    if seconds < 0:
        return errored(f"one_time_bypass_seconds is {seconds}: not a duration", **evidence)
    if seconds <= MAX_BYPASS_SECONDS:
        return passed(f"a one-time bypass lasts {seconds} s", **evidence)
    return failed(
        f"a one-time bypass lasts {seconds} s, more than {MAX_BYPASS_SECONDS} s", **evidence
    )


@fleet_check(
    "one-time-bypass",
    title="One-time bypasses expire within 5 minutes",
    severity=Severity.MEDIUM,
    roles=(),
    guidance=Guidance(quote=g.QUOTE_BYPASS, source=g.SECTION_SUPPORTABILITY),
    remediation=(
        "Set the default one-time bypass to 300 seconds or less: for cloud MFA in the Entra admin "
        "center (Protection > Multifactor authentication > One-time bypass > Default one-time "
        "bypass seconds); for MFA Server in its console, and in the User Portal settings clear "
        "'Prompt for bypass seconds' so users cannot lengthen it. Then attest the value in "
        "mfa_deployment.one_time_bypass_seconds."
    ),
    references=(g.REF_MFA_SETTINGS, g.REF_USER_PORTAL),
)
def one_time_bypass(fleet: Fleet) -> Iterable[Finding]:
    """MANUAL unless attested; at most 300 s PASSes (0, no bypass at all, too), more FAILs.

    A negative value (the inventory refuses one) is an ERROR.
    """
    yield Finding(DEPLOYMENT_TARGET, guarded(partial(_bypass_outcome, fleet)))


# -- trusted-ips ----------------------------------------------------------------------------------


def too_wide(network: IPNetwork) -> bool:
    """Whether a trusted range is the whole address space or a public block wider than /8 (/32).

    Public means not private (``is_private``); no single organisation's egress needs a public
    IPv4 block wider than /8 or an IPv6 one wider than /32 (a whole provider allocation).
    """
    if network.prefixlen == 0:
        return True
    return not network.is_private and network.prefixlen < MIN_PUBLIC_PREFIX[network.version]


def _trusted_ips_outcome(fleet: Fleet) -> Outcome:
    attested = fleet.deployment_facts().opt_mapping("trusted_ips")
    enabled = attested.opt_flag("enabled") if attested is not None else None
    if attested is None or enabled is None:
        return manual(
            "Trusted IPs are a tenant setting: attest mfa_deployment.trusted_ips in the inventory, "
            "or review them by hand"
        )
    if not enabled:
        return passed("Trusted IPs are not used", enabled=False, ranges=[])
    texts = attested.opt_texts("ranges")
    if texts is None:
        return manual(
            "Trusted IPs are in use but their ranges are not declared: attest "
            "mfa_deployment.trusted_ips.ranges so they can be reviewed",
            enabled=True,
        )
    networks: list[IPNetwork] = []
    unparsable: list[str] = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            unparsable.append(text)
    if unparsable:
        return errored(
            "trusted_ips.ranges holds what is not a CIDR range: "
            + ", ".join(map(repr, unparsable)),
            ranges=texts,
            unparsable=unparsable,
        )
    ranges = [str(net) for net in networks]
    wide = [str(net) for net in networks if too_wide(net)]
    own = own_networks(fleet)
    outside = [str(net) for net in networks if own and not within(net, own)]
    evidence = {"enabled": True, "ranges": ranges, "declared_networks": [str(n) for n in own]}
    if wide or outside:
        reasons = [f"far wider than any organisation's: {', '.join(wide)}"] if wide else []
        if outside:
            reasons.append(f"outside the declared mfa_networks: {', '.join(outside)}")
        return failed(
            "Trusted IPs skip MFA for more than the organisation's own networks ("
            + "; ".join(reasons) + ")",
            too_wide=wide,
            outside_declared=outside,
            **evidence,
        )
    judged = "inside the declared mfa_networks" if own else "no mfa_networks declared to judge by"
    return passed(
        f"Trusted IPs skip MFA from {plural(len(ranges), 'range')}"
        + (f": {', '.join(ranges)}" if ranges else "")
        + f" ({judged})",
        **evidence,
    )


def own_networks(fleet: Fleet) -> list[IPNetwork]:
    """The organisation's networks the inventory declares (mfa_networks, perimeter and internal),
    as the hosts in scope carry them."""
    seen: dict[str, IPNetwork] = {}
    for host in fleet.hosts:
        for net in (*host.declared.perimeter, *host.declared.internal):
            seen.setdefault(str(net), net)
    return list(seen.values())


def within(network: IPNetwork, own: list[IPNetwork]) -> bool:
    """Whether `network` lies inside one of `own` (same IP version)."""
    return any(
        network.version == mine.version and network.subnet_of(mine)  # type: ignore[arg-type]
        for mine in own
    )


@fleet_check(
    "trusted-ips",
    title="Trusted IPs, if used, cover only the organisation's own networks",
    severity=Severity.INFO,
    roles=(),
    guidance=Guidance(
        quote=g.QUOTE_TRUSTED_IPS, source=g.SECTION_SUPPORTABILITY, notes=g.NOTE_TRUSTED_IPS
    ),
    remediation=(
        "List only the organisation's own egress (NAT) ranges as Trusted IPs in the MFA service "
        "settings, never 0.0.0.0/0, ::/0 or a provider-wide block; prefer Conditional Access "
        "named locations to the legacy Trusted IPs. Attest the setting in "
        "mfa_deployment.trusted_ips (enabled, ranges)."
    ),
    references=(g.REF_MFA_SETTINGS,),
)
def trusted_ips(fleet: Fleet) -> Iterable[Finding]:
    """Informational: MANUAL if undeclared, PASS with the ranges as evidence.

    FAILs on a range outside the networks the inventory declares as the organisation's own
    (``mfa_networks``, `own_networks`), and, declared or not, on a range that trusts far more than
    one organisation (see `too_wide`); a range that does not parse is an ERROR.
    """
    yield Finding(DEPLOYMENT_TARGET, guarded(partial(_trusted_ips_outcome, fleet)))
