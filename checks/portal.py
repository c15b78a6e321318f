"""Checks on User Portal web servers: IIS version, ASP.NET v2.0.50727, perimeter network, TLS;
and on every host of MFA Server's web services: reached over HTTPS only."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from agent.facts import HostFacts, IPNetwork
from agent.model import Guidance, Outcome, Severity, errored, failed, manual, passed, skipped
from agent.registry import host_check
from agent.roles import MFA_SERVER, MOBILE_APP_WS, USER_PORTAL
from checks import _guidance as g
from checks._support import is_state, readable
from checks.adfs import parse_windows_version as parse_version
from checks.common import parse_utc

# -- portal-iis-version ---------------------------------------------------------------------------

#: The guidance's minimum, and the MFA Server install page's.
GUIDANCE_MIN_IIS: Final = 6
INSTALL_PAGE_MIN_IIS: Final = 7


@host_check(
    "portal-iis-version",
    title="The User Portal runs on IIS 6 or greater",
    severity=Severity.MEDIUM,
    roles=(USER_PORTAL,),
    guidance=Guidance(quote=g.QUOTE_IIS, source=g.SECTION_USER_PORTAL, notes=g.NOTE_IIS),
    remediation=(
        "Host the User Portal on IIS 7.0 or later, in practice IIS 10 on Windows Server 2016 or "
        "later: Install-WindowsFeature Web-Server, Web-Asp-Net, Web-Basic-Auth, Web-Metabase "
        "-IncludeManagementTools (Web-Metabase is the IIS 6 Metabase Compatibility the portal "
        "installer needs on IIS 7+), then install the portal with "
        "MultiFactorAuthenticationUserPortalSetup64 and bind a TLS certificate to the site. "
        "IIS 6 and earlier only run on Windows Server 2003 or older, which are out of support."
    ),
    references=(g.REF_USER_PORTAL, g.REF_MFA_SERVER_DEPLOY),
    facts=("iis",),
)
def portal_iis_version(host: HostFacts) -> Outcome:
    """PASS when IIS is installed with major version >= 6.

    IIS 6 PASSes, as the guidance says, but the reason and evidence note that the MFA Server
    install page requires 7.0 or greater. Installed with an unreadable version is an ERROR.
    """
    fact = host.fact("iis")
    installed = fact.flag("installed")
    major = fact.opt_integer("major")
    minor = fact.opt_integer("minor")
    evidence = {
        "installed": installed,
        "major": major,
        "minor": minor,
        "feature_install_state": fact.raw("feature_install_state"),
    }
    if not installed:
        return failed("IIS is not installed", **evidence)
    if major is None:
        return errored(
            "IIS is installed but its version (InetStp MajorVersion) was not read", **evidence
        )
    version = f"{major}.{minor if minor is not None else 0}"
    if major < GUIDANCE_MIN_IIS:
        return failed(
            f"IIS {version} is older than IIS 6, the minimum the guidance allows", **evidence
        )
    if major < INSTALL_PAGE_MIN_IIS:
        return passed(
            f"IIS {version} meets the guidance (IIS 6 or greater), but the MFA Server install page "
            "asks for IIS 7.0 or greater",
            disagreement="MFA Server install page requires IIS 7.0 or greater",
            **evidence,
        )
    return passed(f"IIS {version} meets the guidance (IIS 6 or greater)", **evidence)


# -- portal-aspnet-v2 -----------------------------------------------------------------------------

ASPNET_V2: Final = "2.0.50727"


@host_check(
    "portal-aspnet-v2",
    title="ASP.NET v2.0.50727 is installed and registered with IIS",
    severity=Severity.MEDIUM,
    roles=(USER_PORTAL,),
    guidance=Guidance(quote=g.QUOTE_ASPNET, source=g.SECTION_USER_PORTAL, notes=g.NOTE_ASPNET),
    remediation=(
        "On IIS 7 or later: Install-WindowsFeature NET-Framework-Core, Web-Asp-Net (on Windows "
        "Server 2012 and later add -Source <install media>\\sources\\sxs when the .NET 3.5 "
        "payload was removed; on 2008 R2 use Import-Module ServerManager; Add-WindowsFeature "
        "Web-Asp-Net). On IIS 6: run %WINDIR%\\Microsoft.NET\\Framework64\\v2.0.50727\\"
        "aspnet_regiis.exe -i (Framework instead of Framework64 on 32-bit Windows) and set "
        "ASP.NET v2.0.50727 to Allowed under Web Service Extensions. Then check that "
        "aspnet_regiis.exe -lv lists 2.0.50727.0 as Valid."
    ),
    references=(g.REF_USER_PORTAL,),
    facts=("aspnet_v2",),
)
def portal_aspnet_v2(host: HostFacts) -> Outcome:
    """PASS when ASP.NET 2.0.50727 is installed (registry) and registered with IIS.

    Registered means a line of ``aspnet_regiis -lv`` starts with ``2.0.50727`` and says it is
    ``Valid`` (``2.0.50727.0  Valid  C:\\…\\aspnet_isapi.dll``); on IIS 7+ (a
    non-null ``feature_install_state``) the Web-Asp-Net feature must also be Installed. Every
    missing part is listed. When nothing is known to be missing but ``aspnet_regiis`` could not
    be run (``registered_versions`` null), registration is unknown: ERROR.
    """
    fact = host.fact("aspnet_v2")
    in_registry = fact.flag("registry_installed")
    registered = fact.opt_texts("registered_versions")
    feature = fact.opt_text("feature_install_state")
    evidence: dict[str, Any] = {
        "registry_installed": in_registry,
        "registered_versions": registered,
        "feature_install_state": feature,
        "path": fact.raw("path"),
    }
    missing = []
    if not in_registry:
        missing.append("installation (no HKLM\\SOFTWARE\\Microsoft\\ASP.NET\\2.0.50727.0 key)")
    if registered is not None and not any(
        line.strip().startswith(ASPNET_V2) and "valid" in line.casefold().split()
        for line in registered
    ):
        missing.append(
            "registration with IIS (aspnet_regiis -lv does not list 2.0.50727 as Valid)"
        )
    if feature is not None and not is_state(feature, "Installed"):
        missing.append(f"the IIS feature Web-Asp-Net (it is {feature})")
    if missing:
        return failed(
            f"ASP.NET v{ASPNET_V2} lacks {'; '.join(missing)}", missing=missing, **evidence
        )
    if registered is None:
        return errored(
            f"ASP.NET v{ASPNET_V2} is installed, but aspnet_regiis -lv could not be run, so its "
            "registration with IIS is unknown",
            **evidence,
        )
    return passed(f"ASP.NET v{ASPNET_V2} is installed and registered with IIS", **evidence)


# -- portal-in-perimeter --------------------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _closest(address: IPAddress, networks: Sequence[IPNetwork]) -> IPNetwork | None:
    """The most specific (longest prefix) of `networks` holding `address`."""
    holding = [net for net in networks if address in net]
    return max(holding, key=lambda net: net.prefixlen, default=None)


def place(
    address: IPAddress, perimeter: Sequence[IPNetwork], internal: Sequence[IPNetwork]
) -> tuple[str, IPNetwork | None]:
    """Where an address lies: ``("perimeter" | "internal" | "undeclared", network)``.

    Where a perimeter and an internal network both hold the address, the more specific one wins,
    as in routing (a DMZ ``10.99.0.0/24`` carved out of an internal ``10.0.0.0/8``); on a tie,
    internal wins.
    """
    outer = _closest(address, perimeter)
    inner = _closest(address, internal)
    if inner is not None and (outer is None or inner.prefixlen >= outer.prefixlen):
        return "internal", inner
    if outer is not None:
        return "perimeter", outer
    return "undeclared", None


@host_check(
    "portal-in-perimeter",
    title="The User Portal server sits in a perimeter network",
    severity=Severity.HIGH,
    roles=(USER_PORTAL,),
    guidance=Guidance(quote=g.QUOTE_PERIMETER, source=g.SECTION_USER_PORTAL),
    remediation=(
        "Put the User Portal server on a perimeter (DMZ) segment: give it addresses only in the "
        "perimeter subnets, remove its interfaces and addresses on internal networks, and let it "
        "reach the MFA Server Web Service SDK over HTTPS through the internal firewall instead. "
        "Declare the networks in the inventory (mfa_networks.perimeter and mfa_networks.internal, "
        "IPv4 and IPv6) so this check can verify the placement."
    ),
    references=(g.REF_USER_PORTAL,),
    facts=("ip_addresses",),
)
def portal_in_perimeter(host: HostFacts) -> Outcome:
    """PASS when every address (loopback and link-local left out) is in a perimeter network.

    MANUAL when the inventory declares no perimeter network. An address in an internal network,
    or in no declared network, FAILs (see `place` for overlaps). No address left to judge, or an
    address that does not parse, is an ERROR.
    """
    perimeter = host.declared.perimeter
    internal = host.declared.internal
    declared = {
        "perimeter": [str(net) for net in perimeter],
        "internal": [str(net) for net in internal],
    }
    if not perimeter:
        return manual(
            "no perimeter network is declared: declare mfa_networks.perimeter in the inventory, "
            "or verify the server's placement by hand",
            **declared,
        )
    texts = host.fact("ip_addresses").texts("addresses")
    addresses: list[IPAddress] = []
    unparsable: list[str] = []
    for text in texts:
        try:
            addresses.append(ipaddress.ip_address(text.strip()))
        except ValueError:
            unparsable.append(text)
    if unparsable:
        return errored(
            f"ip_addresses holds what is not an IP address: {', '.join(map(repr, unparsable))}",
            unparsable=unparsable,
            addresses=texts,
        )
    ignored = [str(a) for a in addresses if a.is_loopback or a.is_link_local]
    judged = [a for a in addresses if not (a.is_loopback or a.is_link_local)]
    if not judged:
        return errored(
            "the host reported no address besides loopback and link-local ones",
            addresses=texts,
            ignored=ignored,
            **declared,
        )
    placements = []
    offending = []
    for address in judged:
        where, network = place(address, perimeter, internal)
        placements.append(
            {"address": str(address), "network": str(network) if network else None, "in": where}
        )
        if where == "internal":
            offending.append(f"{address} (internal network {network})")
        elif where == "undeclared":
            offending.append(f"{address} (in no declared perimeter network)")
    evidence = {"placements": placements, "ignored": ignored, **declared}
    if offending:
        return failed(
            f"not in the perimeter: {', '.join(offending)}", offending=offending, **evidence
        )
    return passed(
        f"every address ({', '.join(str(a) for a in judged)}) is in a perimeter network",
        **evidence,
    )


# -- portal-tls-certificate -----------------------------------------------------------------------

#: A certificate expiring within this many days fails.
EXPIRY_DAYS: Final = 30
#: Smallest acceptable key sizes, by key algorithm (case-folded prefix).
MIN_KEY_BITS: Final = {"rsa": 2048, "ecc": 256, "ecdsa": 256}
#: Protocols that must be off, and whether the OS has them off by default from Windows Server 2016.
LEGACY_PROTOCOLS: Final = {"SSL 2.0": True, "SSL 3.0": True, "TLS 1.0": False, "TLS 1.1": False}
#: Windows Server 2016's version: from it on, SSL 2.0 and 3.0 are off without a registry key.
SERVER_2016: Final = (10, 0, 14393)


def _binding_problems(binding: Any, now: datetime) -> list[str]:
    where = f"{binding.text('site')} {binding.text('binding')}"
    if binding.opt_text("subject") is None:
        return [f"{where}: no certificate found for thumbprint {binding.opt_text('thumbprint')}"]
    problems = []
    not_before = parse_utc(binding.opt_text("not_before") or "")
    not_after = parse_utc(binding.opt_text("not_after") or "")
    if not_before is None or not_after is None:
        return [f"{where}: the certificate's validity could not be read"]
    if now < not_before:
        problems.append(f"{where}: the certificate is not valid before {not_before:%Y-%m-%d}")
    elif now > not_after:
        problems.append(f"{where}: the certificate expired on {not_after:%Y-%m-%d}")
    elif not_after - now < timedelta(days=EXPIRY_DAYS):
        problems.append(f"{where}: the certificate expires on {not_after:%Y-%m-%d}, within "
                        f"{EXPIRY_DAYS} days")
    algorithm = (binding.opt_text("key_algorithm") or "").casefold()
    size = binding.opt_integer("key_size")
    minimum = next((bits for prefix, bits in MIN_KEY_BITS.items()
                    if algorithm.startswith(prefix)), None)
    if minimum is not None and size is not None and size < minimum:
        problems.append(f"{where}: a {size}-bit {binding.opt_text('key_algorithm')} key (at least "
                        f"{minimum} bits)")
    return problems


def _legacy_on(schannel: list[Any], version: tuple[int, int, int] | None) -> list[str]:
    """The legacy protocols SCHANNEL leaves on for servers."""
    values = {entry.text("protocol"): entry for entry in schannel}
    on = []
    for protocol, off_from_2016 in LEGACY_PROTOCOLS.items():
        entry = values.get(protocol)
        enabled = entry.opt_integer("enabled") if entry is not None else None
        disabled_by_default = entry.opt_integer("disabled_by_default") if entry else None
        if enabled == 0:
            continue
        if enabled is None and disabled_by_default == 1:
            continue
        if enabled is None and off_from_2016 and version is not None and version >= SERVER_2016:
            continue
        on.append(protocol)
    return on


@host_check(
    "portal-tls-certificate",
    title="The User Portal is served over TLS with a sound certificate, legacy protocols off",
    severity=Severity.HIGH,
    roles=(USER_PORTAL,),
    guidance=Guidance(quote=g.QUOTE_PORTAL_TLS, source=g.SOURCE_USER_PORTAL_PAGE,
                      notes=g.NOTE_PORTAL_TLS),
    remediation=(
        "Bind a certificate from a CA the users' browsers trust, for the portal's host name, "
        "with a 2048-bit (or larger) RSA key: import it into LocalMachine\\My, then in IIS "
        "Manager edit the site's https binding (or New-WebBinding -Protocol https -Port 443 and "
        "(Get-WebBinding -Protocol https).AddSslCertificate(<thumbprint>, 'My')). Renew it "
        "before it is within 30 days of expiry. Turn off SSL 2.0, SSL 3.0, TLS 1.0 and TLS 1.1 "
        "for servers: under HKLM\\SYSTEM\\CurrentControlSet\\Control\\SecurityProviders\\"
        "SCHANNEL\\Protocols\\<protocol>\\Server set Enabled=0 and DisabledByDefault=1 "
        "(DWORD), then restart the server."
    ),
    references=(g.CITED[g.SOURCE_USER_PORTAL_PAGE], g.REF_TLS_REGISTRY),
    facts=("portal_tls", "clock", "os"),
)
def portal_tls_certificate(host: HostFacts) -> Outcome:
    """PASS when the host has an https binding and every one has a certificate found in the store,
    valid now and for more than 30 days (the agent's clock, from the ``clock`` fact), with an
    RSA key of 2048 bits or more (ECC 256), and SSL 2.0/3.0 and TLS 1.0/1.1 are off for servers.

    No https binding FAILs; every problem is listed. An absent SCHANNEL value is the OS default
    (see the notes); without a readable ``os`` version, SSL 2.0/3.0 left at the default FAIL.
    """
    fact = host.fact("portal_tls")
    now = parse_utc(host.fact("clock").opt_text("agent_utc") or "")
    if now is None:
        return errored("the agent's time of the scan (clock.agent_utc) is missing")
    bindings = fact.mappings("bindings")
    version_text = readable(lambda: host.fact("os").text("version"))
    version = parse_version(version_text) if version_text else None
    legacy = _legacy_on(fact.mappings("schannel"), version)
    evidence: dict[str, Any] = {
        "bindings": [{"site": b.text("site"), "binding": b.text("binding"),
                      "subject": b.opt_text("subject"), "not_after": b.opt_text("not_after"),
                      "key": f"{b.opt_text('key_algorithm')} {b.opt_integer('key_size')}"}
                     for b in bindings],
        "legacy_protocols_on": legacy,
    }
    if not bindings:
        return failed("IIS has no https binding: the User Portal is not served over TLS",
                      **evidence)
    problems = [p for b in bindings for p in _binding_problems(b, now)]
    if legacy:
        problems.append(f"SCHANNEL leaves {', '.join(legacy)} on for servers")
    if problems:
        return failed("; ".join(problems), problems=problems, **evidence)
    return passed(
        f"{len(bindings)} https binding(s) with sound certificates; SSL 2.0/3.0 and TLS 1.0/1.1 "
        "off", **evidence)


# -- mfa-web-services-https -----------------------------------------------------------------------


@host_check(
    "mfa-web-services-https",
    title="MFA Server's web services (User Portal, Mobile App Web Service, Web Service SDK) are "
    "reached over HTTPS only",
    severity=Severity.HIGH,
    roles=(USER_PORTAL, MOBILE_APP_WS, MFA_SERVER),
    guidance=Guidance(quote=g.QUOTE_SDK_TLS, source=g.SOURCE_USER_PORTAL_PAGE,
                      notes=g.NOTE_WEB_SERVICES),
    remediation=(
        "Remove the http bindings of the sites that host MFA Server's applications "
        "(Remove-WebBinding -Name '<site>' -Protocol http -Port 80), keeping an https binding with "
        "a trusted certificate; set WEB_SERVICE_SDK_AUTHENTICATION_URL in the User Portal's and "
        "the Mobile App Web Service's web.config to the https address of PfWsSdk.asmx "
        "(https://<server>/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx), and secure the Web Service "
        "SDK's own site with a certificate."
    ),
    references=(g.CITED[g.SOURCE_USER_PORTAL_PAGE], g.REF_MOBILE_APP_WS),
    facts=("mfa_web_apps",),
)
def mfa_web_services_https(host: HostFacts) -> Outcome:
    """PASS when every MFA Server web application ('/MultiFactorAuth*') on the host sits on a site
    without an http binding and any configured Web Service SDK URL is https.

    Each http binding and each http SDK URL is listed in the FAIL. No such application on the
    host: SKIP (nothing of MFA Server's is served here).
    """
    apps = host.fact("mfa_web_apps").mappings("apps")
    shown = [{"site": a.text("site"), "path": a.text("path"),
              "http_bindings": a.texts("http_bindings"), "sdk_url": a.opt_text("sdk_url")}
             for a in apps]
    if not apps:
        return skipped("no MFA Server web application ('/MultiFactorAuth*') in IIS on this host",
                       apps=shown)
    problems = []
    for app in apps:
        name = f"{app.text('path')} ({app.text('site')})"
        for binding in app.texts("http_bindings"):
            problems.append(f"{name} is reachable over http ({binding})")
        url = (app.opt_text("sdk_url") or "").strip()
        if url and not url.casefold().startswith("https://"):
            scheme = url.split(":", 1)[0]
            problems.append(f"{name} reaches the Web Service SDK over {scheme}: {url}")
    if problems:
        return failed("; ".join(problems), problems=problems, apps=shown)
    return passed(f"{len(apps)} MFA Server web application(s), all over HTTPS only", apps=shown)
