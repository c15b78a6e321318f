"""The PowerShell fact scripts, the facts they read, and how they travel to a host.

Every host fact is declared once, in `FACTS`: its name, the script that reads it (a
``Read-Fact '<name>'`` block in ``<script>.ps1``), the schema of its value (`agent.factschema`,
validated when facts are gathered or replayed: a value of another shape is an ERROR on that fact),
its documentation and example values, the first of which is what a healthy host reports (the lab's
base hosts start from it, `agent.lab.profiles`). `SCRIPTS` is derived from `FACTS`.

Each script prints one JSON document mapping fact name to ``{"value": ...}`` or
``{"error": "..."}``. A script is the shared prelude, its own body and the epilogue, with comment
lines and indentation removed so that ``powershell -EncodedCommand`` (base64 of UTF-16LE) stays
under cmd.exe's 8,191-character line. The first statement names the script
(``$MfaAgentScript``), which is how the lab simulator recognises it. Inventory text is never
placed in a script.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

from agent.factschema import BOOL, INT, STR, ListOf, Obj, Opt, describe
from agent.roles import AAD_CONNECT, ADFS, ANY_ROLE, MFA_SERVER, MOBILE_APP_WS, USER_PORTAL

#: cmd.exe's maximum command-line length; pywinrm's run_cmd goes through it.
MAX_COMMAND_LINE = 8191
_TAG = re.compile(r"^\$MfaAgentScript = '([a-z]+)/(\d+)'$", re.MULTILINE)
_POWERSHELL = "powershell -NoProfile -NonInteractive -EncodedCommand "
SCRIPT_VERSION = 1


@dataclass(frozen=True)
class Fact:
    """One host fact: where it is read, the shape of its value, what it means."""

    name: str
    #: The script whose ``Read-Fact '<name>'`` block reads it.
    script: str
    schema: Obj
    doc: str
    #: Example values; the first is what a healthy host reports.
    examples: tuple[Mapping[str, Any], ...]
    #: Filled in by the agent rather than read from the profile of a simulated host.
    computed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "examples", tuple(MappingProxyType(e) for e in self.examples))

    @property
    def healthy(self) -> Mapping[str, Any]:
        """What a healthy host reports."""
        return self.examples[0]

    def shape(self) -> str:
        """The value's shape, e.g. ``{"names": [str]}``."""
        return describe(self.schema)


_NO_MFA_SERVER = {"installed": False, "display_name": None, "version": None, "install_path": None}
#: The relying party trust Azure AD's federation creates (Convert-MsolDomainToFederated).
_MICROSOFT_ONLINE = {
    "name": "Microsoft Office 365 Identity Platform",
    "enabled": True,
    "identifiers": ["https://login.microsoftonline.com/extSTS.srf",
                    "urn:federation:MicrosoftOnline"],
    "additional_rules": (
        'c:[Type == "http://schemas.microsoft.com/ws/2012/01/insidecorporatenetwork", '
        'Value == "false"] => issue(Type = "http://schemas.microsoft.com/ws/2008/06/identity/'
        'claims/authenticationmethod", Value = "http://schemas.microsoft.com/claims/multipleauthn");'
    ),
    "access_control_policy": None,
}
#: A healthy User Portal binding: a 2048-bit RSA certificate valid until 2036.
_PORTAL_BINDING = {
    "site": "Default Web Site", "binding": "*:443:", "thumbprint": "3F" * 20,
    "subject": "CN=mfa.lab.example", "issuer": "CN=Lab Issuing CA",
    "not_before": "2026-01-01T00:00:00.0000000Z", "not_after": "2036-01-01T00:00:00.0000000Z",
    "key_algorithm": "RSA", "key_size": 2048,
}
_ASPNET_V2_LINE = (
    "2.0.50727.0\tValid\tC:\\Windows\\Microsoft.NET\\Framework64\\v2.0.50727\\aspnet_isapi.dll"
)

FACTS: Final[tuple[Fact, ...]] = (
    Fact(
        "os", "base",
        Obj({"caption": STR, "version": STR, "build_number": STR, "product_type": INT}),
        "Win32_OperatingSystem: Caption, Version (major.minor.build), BuildNumber, ProductType "
        "(1 workstation, 2 domain controller, 3 server).",
        (
            {"caption": "Microsoft Windows Server 2016 Datacenter", "version": "10.0.14393",
             "build_number": "14393", "product_type": 3},
            {"caption": "Microsoft Windows Server 2012 Datacenter", "version": "6.2.9200",
             "build_number": "9200", "product_type": 3},
            {"caption": "Microsoft Windows 10 Pro", "version": "10.0.19045",
             "build_number": "19045", "product_type": 1},
        ),
    ),
    Fact(
        "mfa_server", "base",
        Obj({"installed": BOOL, "display_name": Opt(STR), "version": Opt(STR),
             "install_path": Opt(STR)}),
        "MFA Server presence: the uninstall entry whose DisplayName is like "
        "'*Multi-Factor Authentication Server*' (64- and 32-bit views), or the PhoneFactor "
        "InstallPath key; its DisplayVersion.",
        (
            _NO_MFA_SERVER,
            {"installed": True, "display_name": "Multi-Factor Authentication Server",
             "version": "8.0.1.1",
             "install_path": "C:\\Program Files\\Multi-Factor Authentication Server"},
        ),
    ),
    Fact(
        "ip_addresses", "base",
        Obj({"addresses": ListOf(STR)}),
        "Every address of the host, loopback and link-local included (Get-NetIPAddress, or "
        "Win32_NetworkAdapterConfiguration where that cmdlet is missing).",
        (
            {"addresses": ["198.51.100.10", "127.0.0.1", "::1"]},
            {"addresses": ["10.10.1.11", "2001:db8:10::12", "fe80::1c2b:3ff:fe4d:5e6f"]},
        ),
    ),
    Fact(
        "clock", "base",
        Obj({"host_utc": STR, "agent_utc": Opt(STR)}),
        "The host's UTC time (ISO-8601) and the agent's own, stamped by the agent when the "
        "script's output arrives.",
        ({"host_utc": "2026-11-30T10:00:00.0000000Z", "agent_utc": "2026-11-30T10:00:00+00:00"},),
        computed=True,
    ),
    Fact(
        "adfs", "adfs",
        Obj({"feature_install_state": Opt(STR), "service_status": Opt(STR),
             "service_account": Opt(STR)}),
        "The AD FS role: Get-WindowsFeature ADFS-Federation InstallState (null where the cmdlet "
        "is missing), the adfssrv service's State and StartName (its service account).",
        (
            {"feature_install_state": "Installed", "service_status": "Running",
             "service_account": "LAB\\gmsa-adfs$"},
            {"feature_install_state": "Available", "service_status": None,
             "service_account": None},
        ),
    ),
    Fact(
        "adfs_providers", "adfs",
        Obj({"names": ListOf(STR)}),
        "Names of the registered authentication providers (Get-AdfsAuthenticationProvider): "
        "farm-wide configuration, the same on every node.",
        (
            {"names": ["FormsAuthentication", "CertificateAuthentication",
                       "AzureMfaAuthentication"]},
            {"names": ["FormsAuthentication", "WindowsAzureMultiFactorAuthentication"]},
            {"names": ["FormsAuthentication", "CertificateAuthentication"]},
        ),
    ),
    Fact(
        "adfs_adapter_install", "adfs",
        Obj({"product": Opt(STR), "version": Opt(STR), "gac_assemblies": ListOf(STR)}),
        "MFA Server's AD FS adapter installed on this node (installation is per node; its "
        "registration, adfs_providers, is farm-wide): the uninstall entry like "
        "'*Multi-Factor Authentication*AD FS*' (DisplayName, DisplayVersion) and the "
        "'*MultiFactorAuthentication*' assemblies in %WINDIR%\\Microsoft.NET\\assembly\\GAC_MSIL.",
        (
            {"product": None, "version": None, "gac_assemblies": []},
            {"product": "Multi-Factor Authentication AD FS Adapter", "version": "8.0.1.1",
             "gac_assemblies": ["MultiFactorAuthenticationAdfsAdapter"]},
        ),
    ),
    Fact(
        "adfs_policy", "adfspolicy",
        Obj({
            "additional_providers": ListOf(STR),
            "additional_rule": Opt(STR),
            "relying_parties": ListOf(Obj({
                "name": STR, "enabled": BOOL, "identifiers": ListOf(STR),
                "additional_rules": Opt(STR), "access_control_policy": Opt(STR),
            })),
        }),
        "The farm's authentication policy: the global policy's AdditionalAuthenticationProvider "
        "(Get-AdfsGlobalAuthenticationPolicy), the global additional authentication rule "
        "(Get-AdfsAdditionalAuthenticationRule), and per relying party trust "
        "(Get-AdfsRelyingPartyTrust) its Name, Enabled, Identifier, "
        "AdditionalAuthenticationRules and AccessControlPolicyName.",
        (
            {"additional_providers": ["AzureMfaAuthentication"], "additional_rule": None,
             "relying_parties": [_MICROSOFT_ONLINE]},
            {"additional_providers": [], "additional_rule": None, "relying_parties": []},
        ),
    ),
    Fact(
        "adfs_lockout", "adfspolicy",
        Obj({"enabled": BOOL, "threshold": Opt(INT), "observation_window_minutes": Opt(INT),
             "mode": Opt(STR)}),
        "Extranet lockout (Get-AdfsProperties): ExtranetLockoutEnabled, "
        "ExtranetLockoutThreshold, ExtranetObservationWindow in minutes, and on AD FS 2016+ "
        "ExtranetLockoutMode (smart lockout: ADFSSmartLockoutLogOnly / ADFSSmartLockoutEnforce).",
        (
            {"enabled": True, "threshold": 5, "observation_window_minutes": 30,
             "mode": "ADFSSmartLockoutEnforce"},
            {"enabled": False, "threshold": None, "observation_window_minutes": None,
             "mode": None},
            {"enabled": True, "threshold": 5, "observation_window_minutes": 30,
             "mode": "ADFSSmartLockoutLogOnly"},
        ),
    ),
    Fact(
        "iis", "portal",
        Obj({"installed": BOOL, "major": Opt(INT), "minor": Opt(INT),
             "feature_install_state": Opt(STR)}),
        "IIS: HKLM\\SOFTWARE\\Microsoft\\InetStp MajorVersion and MinorVersion; "
        "Get-WindowsFeature Web-Server InstallState.",
        (
            {"installed": True, "major": 10, "minor": 0, "feature_install_state": "Installed"},
            {"installed": False, "major": None, "minor": None, "feature_install_state": None},
        ),
    ),
    Fact(
        "aspnet_v2", "portal",
        Obj({"registry_installed": BOOL, "path": Opt(STR), "dll_full_path": Opt(STR),
             "registered_versions": Opt(ListOf(STR)), "feature_install_state": Opt(STR)}),
        "ASP.NET v2.0.50727: the HKLM\\SOFTWARE\\Microsoft\\ASP.NET\\2.0.50727.0 key (Path, "
        "DllFullPath), the lines of aspnet_regiis -lv (null when it could not run), "
        "Get-WindowsFeature Web-Asp-Net InstallState.",
        (
            {"registry_installed": True,
             "path": "C:\\Windows\\Microsoft.NET\\Framework64\\v2.0.50727",
             "dll_full_path":
                 "C:\\Windows\\Microsoft.NET\\Framework64\\v2.0.50727\\aspnet_isapi.dll",
             "registered_versions": [_ASPNET_V2_LINE], "feature_install_state": "Installed"},
            {"registry_installed": False, "path": None, "dll_full_path": None,
             "registered_versions": None, "feature_install_state": "Available"},
        ),
    ),
    Fact(
        "portal_tls", "portaltls",
        Obj({
            "bindings": ListOf(Obj({
                "site": STR, "binding": STR, "thumbprint": Opt(STR), "subject": Opt(STR),
                "issuer": Opt(STR), "not_before": Opt(STR), "not_after": Opt(STR),
                "key_algorithm": Opt(STR), "key_size": Opt(INT),
            })),
            "schannel": ListOf(Obj({
                "protocol": STR, "enabled": Opt(INT), "disabled_by_default": Opt(INT),
            })),
        }),
        "The User Portal's TLS: every IIS https binding (Get-WebBinding -Protocol https) with "
        "its certificate from Cert:\\LocalMachine\\<store> (subject, issuer, validity in UTC, "
        "key algorithm and size; nulls when the certificate is not found), and the SCHANNEL "
        "Server values Enabled and DisabledByDefault of SSL 2.0, SSL 3.0, TLS 1.0 and TLS 1.1 "
        "(null when the key or value is absent: the OS default).",
        (
            {"bindings": [_PORTAL_BINDING], "schannel": [
                {"protocol": p, "enabled": 0, "disabled_by_default": 1}
                for p in ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1")]},
            {"bindings": [], "schannel": [
                {"protocol": p, "enabled": None, "disabled_by_default": None}
                for p in ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1")]},
        ),
    ),
    Fact(
        "mfa_web_apps", "webapps",
        Obj({"apps": ListOf(Obj({
            "site": STR, "path": STR, "http_bindings": ListOf(STR),
            "https_bindings": ListOf(STR), "use_web_service_sdk": Opt(STR),
            "sdk_url": Opt(STR),
        }))}),
        "MFA Server's IIS applications ('/MultiFactorAuth*': User Portal, Mobile App Web "
        "Service, Web Service SDK): site, path, the site's http and https bindings, and from "
        "web.config only USE_WEB_SERVICE_SDK and WEB_SERVICE_SDK_AUTHENTICATION_URL (never the "
        "SDK account's password).",
        (
            {"apps": [{"site": "Default Web Site", "path": "/MultiFactorAuth",
                       "http_bindings": [], "https_bindings": ["*:443:"],
                       "use_web_service_sdk": "true",
                       "sdk_url": "https://mfa01.lab.example/MultiFactorAuthWebServiceSdk/"
                                  "PfWsSdk.asmx"}]},
            {"apps": [{"site": "Default Web Site", "path": "/MultiFactorAuthMobileAppWebService",
                       "http_bindings": ["*:80:"], "https_bindings": [],
                       "use_web_service_sdk": None,
                       "sdk_url": "http://mfa01.lab.example/MultiFactorAuthWebServiceSdk/"
                                  "PfWsSdk.asmx"}]},
            {"apps": []},
        ),
    ),
    Fact(
        "adsync", "adsync",
        Obj({"service_status": Opt(STR)}),
        "The Azure AD Connect sync service ADSync's State (null when it does not exist).",
        ({"service_status": "Running"}, {"service_status": "Stopped"}, {"service_status": None}),
    ),
)

_BY_NAME: Final[Mapping[str, Fact]] = MappingProxyType({f.name: f for f in FACTS})

#: Which roles run which script (a script's facts come from `FACTS`).
_SCRIPT_ROLES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("base", (ANY_ROLE,)),
    ("adfs", (ADFS,)),
    ("adfspolicy", (ADFS,)),
    ("portal", (USER_PORTAL,)),
    ("portaltls", (USER_PORTAL,)),
    ("webapps", (USER_PORTAL, MOBILE_APP_WS, MFA_SERVER)),
    ("adsync", (AAD_CONNECT,)),
)


def fact(name: str) -> Fact | None:
    """The declaration of the host fact of that name, if any."""
    return _BY_NAME.get(name)


@dataclass(frozen=True)
class FactScript:
    """One fact script: which facts it emits and which roles need it."""

    name: str
    facts: tuple[str, ...]
    roles: tuple[str, ...]

    def text(self) -> str:
        """The script as sent: tag, prelude, body and epilogue, minified."""
        return _assemble(self.name)

    def command_line(self) -> str:
        """The command line that runs it (what pywinrm's `run_command` sends)."""
        return encode_command(self.text())


SCRIPTS: Final[tuple[FactScript, ...]] = tuple(
    FactScript(name, tuple(f.name for f in FACTS if f.script == name), roles)
    for name, roles in _SCRIPT_ROLES
)


@cache
def scripts_for(roles: frozenset[str]) -> tuple[FactScript, ...]:
    """The scripts a host with these roles runs (none for a host without a role)."""
    if not roles:
        return ()
    return tuple(s for s in SCRIPTS if ANY_ROLE in s.roles or roles.intersection(s.roles))


def by_name(name: str) -> FactScript | None:
    """The script of that name, if any."""
    return next((s for s in SCRIPTS if s.name == name), None)


def _minify(source: str) -> str:
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("#"))


@cache
def _assemble(name: str) -> str:
    files = resources.files(__name__)
    parts = [
        f"$MfaAgentScript = '{name}/{SCRIPT_VERSION}'",
        _minify(files.joinpath("_prelude.ps1").read_text(encoding="utf-8")),
        _minify(files.joinpath(f"{name}.ps1").read_text(encoding="utf-8")),
        _minify(files.joinpath("_epilogue.ps1").read_text(encoding="utf-8")),
    ]
    return "\n".join(parts)


def encode_command(script: str) -> str:
    """``powershell … -EncodedCommand <base64 of UTF-16LE>``, as pywinrm's run_ps builds it."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return _POWERSHELL + encoded


def decode_command(command_line: str) -> str | None:
    """The script inside an ``-EncodedCommand`` command line, or None if it is not one."""
    parts = command_line.split()
    for i, part in enumerate(parts[:-1]):
        if part.lower() in {"-encodedcommand", "-enc", "-e", "-ec"}:
            try:
                return base64.b64decode(parts[i + 1], validate=True).decode("utf-16-le")
            except (ValueError, UnicodeDecodeError):
                return None
    return None


def script_tag(script: str) -> tuple[str, int] | None:
    """The (name, version) a script declares in its first statement, if any."""
    match = _TAG.search(script)
    return (match.group(1), int(match.group(2))) if match else None
