"""Checks that apply to every host with a role: MFA Server's retirement and the host clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from agent.facts import HostFacts
from agent.model import Guidance, Outcome, Severity, errored, failed, passed
from agent.registry import host_check
from agent.roles import ADFS, ANY_ROLE
from checks import _guidance as g
from checks._support import readable
from checks.adfs import RETIRED_ESTATE, adapter_installed, mfa_server_adapters

# -- mfa-server-retired ---------------------------------------------------------------------------


@host_check(
    "mfa-server-retired",
    title="MFA Server is not installed (it stopped servicing MFA requests on 2024-09-30)",
    severity=Severity.CRITICAL,
    roles=(ANY_ROLE,),
    guidance=Guidance(
        quote=g.QUOTE_RETIREMENT, source=g.SOURCE_RETIREMENT, notes=g.NOTE_RETIREMENT
    ),
    remediation=(
        "Migrate off MFA Server, then uninstall it. "
        "1) In the MFA Server console, list what it protects (AD FS adapter, RADIUS, IIS, LDAP, "
        "Windows authentication, User Portal, Mobile App Web Service). "
        "2) Move users and their methods to Microsoft Entra (cloud) MFA with the MFA Server "
        "Migration Utility (MultiFactorAuthMigrationUtilUI.exe in the MFA Server install folder) "
        "and staged rollout. "
        "3) Replace each integration: AD FS 2016 or later uses the built-in Azure MFA adapter "
        "(on every node New-AdfsAzureMfaTenantCertificate -TenantID <tenant id>, add the "
        "certificates to the Azure MFA service principal, then Set-AdfsAzureMfaTenant -TenantId "
        "<tenant id> -ClientId 981f26a1-7f43-403b-a875-f8b09b8cd720 and restart adfssrv on every "
        "node) or hand MFA to Entra ID with Conditional Access; RADIUS, VPN and RD Gateway use the "
        "NPS extension for Azure MFA. "
        "4) Run Unregister-MultiFactorAuthenticationAdfsAdapter.ps1 on the AD FS farm, then "
        "uninstall Multi-Factor Authentication Server, the User Portal, the Mobile App Web Service "
        "and the Web Service SDK from Programs and Features on every host."
    ),
    references=(
        g.REF_MFA_SERVER_DEPLOY,
        g.REF_MFA_SERVER_MIGRATE,
        g.REF_MFA_SERVER_MIGRATION_UTILITY,
        g.REF_ADFS_AZURE_MFA,
        g.REF_NPS_EXTENSION,
    ),
    facts=("mfa_server", "adfs_providers", "adfs_adapter_install"),
)
def mfa_server_retired(host: HostFacts) -> Outcome:
    """FAIL when the ``mfa_server`` fact says MFA Server is installed, with what was found
    (its version in the evidence).

    Any trace counts, the MFA Server AD FS adapter included: everything it talks to is retired. On
    an AD FS node, the farm registering MFA Server's adapter (under either of its names) or the
    adapter installed on the node FAILs too: the farm is part of the retired estate. Those two
    reads are taken when they can be read; the AD FS checks report them missing.
    """
    fact = host.fact("mfa_server")
    if not fact.flag("installed"):
        if host.has_role(ADFS):
            adapters = readable(lambda: mfa_server_adapters(host.fact("adfs_providers").texts(
                "names")))
            node = readable(lambda: adapter_installed(host))
            installed, on_node = node if node is not None else (False, None)
            if adapters or installed:
                return failed(
                    "this AD FS node's farm uses MFA Server's adapter "
                    f"({', '.join(adapters) if adapters else 'installed on this node'}): "
                    f"{RETIRED_ESTATE}",
                    installed=False,
                    mfa_server_adapter=adapters or [],
                    adapter_on_node=on_node,
                )
        return passed("MFA Server is not installed", installed=False)
    name = fact.opt_text("display_name")
    version = fact.opt_text("version")
    path = fact.opt_text("install_path")
    details = [f"version {version}" if version else "", f"at {path}" if path else ""]
    shown = " ".join(d for d in details if d)
    # Without a display name, only MFA Server's PhoneFactor registry key was found (e.g. an
    # AD FS node with the MFA Server adapter): say so rather than name a product not listed.
    found = f"{name} is installed" if name else "MFA Server components are present"
    return failed(
        f"{found}{f' ({shown})' if shown else ''}; MFA Server stopped servicing MFA requests on "
        "2024-09-30",
        installed=True,
        display_name=name,
        version=version,
        install_path=path,
    )


# -- clock-skew -----------------------------------------------------------------------------------

#: A date *and* a time: a bare date is not a clock reading.
_TIMESTAMP: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}", re.ASCII)


def parse_utc(text: str) -> datetime | None:
    """An ISO-8601 timestamp as an aware UTC datetime, or None when it is not one.

    A timestamp without an offset is taken as UTC: the fact's fields are named ``*_utc``.
    PowerShell's round-trip format (``2024-05-01T10:00:00.1234567Z``, 7 fraction digits) parses.
    """
    if not _TIMESTAMP.match(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


@host_check(
    "clock-skew",
    title="Host clock agrees with the agent's clock",
    severity=Severity.MEDIUM,
    roles=(ANY_ROLE,),
    guidance=Guidance(
        quote=g.QUOTE_ADFS_FIRST_STEP, source=g.SECTION_ON_PREMISES, notes=g.NOTE_CLOCK
    ),
    remediation=(
        "Make the host follow the domain time hierarchy: w32tm /config /syncfromflags:domhier "
        "/update, then Restart-Service w32time and w32tm /resync /force; confirm with w32tm "
        "/query /status and w32tm /stripchart /computer:<domain controller> /samples:5 /dataonly. "
        "On the PDC emulator of the forest root domain, set a reliable external source: w32tm "
        '/config /manualpeerlist:"<ntp servers>" /syncfromflags:manual /reliable:yes /update. '
        "On virtual machines, stop hypervisor time synchronisation from fighting w32time. The "
        "skew is measured against the agent's clock: check that one too."
    ),
    references=(g.REF_CLOCK_TOLERANCE, g.REF_W32TM),
    facts=("clock",),
)
def clock_skew(host: HostFacts) -> Outcome:
    """PASS when ``|host_utc - agent_utc|`` is within the inventory's ``clock_skew_max_seconds``.

    The two timestamps are read together by the fact script, so their difference is the skew
    (plus the read's latency, well under a second). An unparsable timestamp is an ERROR.
    """
    fact = host.fact("clock")
    host_text = fact.text("host_utc")
    agent_text = fact.text("agent_utc")
    host_time = parse_utc(host_text)
    agent_time = parse_utc(agent_text)
    if host_time is None or agent_time is None:
        bad = [
            name
            for name, moment in (("host_utc", host_time), ("agent_utc", agent_time))
            if moment is None
        ]
        return errored(
            f"clock.{' and clock.'.join(bad)} is not an ISO-8601 date and time",
            host_utc=host_text,
            agent_utc=agent_text,
        )
    skew = (host_time - agent_time).total_seconds()
    limit = host.declared.clock_skew_max_seconds
    direction = "ahead of" if skew >= 0 else "behind"
    evidence = {
        "host_utc": host_text,
        "agent_utc": agent_text,
        "skew_seconds": round(skew, 3),
        "max_seconds": limit,
    }
    summary = f"host clock is {abs(skew):.1f} s {direction} the agent's"
    if abs(skew) <= limit:
        return passed(f"{summary} (limit {limit} s)", **evidence)
    return failed(f"{summary}, more than the {limit} s allowed", **evidence)
