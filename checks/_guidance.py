"""The guidance the checks enforce, written once: quoted sentences, sources, notes, references.

Quotes are verbatim. Those from the guidance document are the rendered text of
``docs/guidance/multi-factor-authentication-security-best-practices.md`` (vendored, CC BY 4.0; a
Markdown link ``[text](url)`` reads as ``text``), typos included: a report reader must find the
sentence where we say it is. A check whose sentence comes from another Microsoft document has a
source made with `cite`, which records the document's address: the tests verify guide quotes
against the vendored text and require a cited document among the check's references.
"""

from __future__ import annotations

from typing import Final

#: Source string → address of the Microsoft document it names (sources made with `cite`).
CITED: Final[dict[str, str]] = {}


def cite(source: str, url: str) -> str:
    """A source naming a Microsoft document other than the guidance, recorded with its address."""
    CITED[source] = url
    return source

#: The document every check but `mfa-server-retired` answers to (Microsoft, 2018).
GUIDE_TITLE: Final = (
    "Security guidance for using Azure Multi-Factor Authentication with Azure AD accounts"
)


def guide_section(section: str) -> str:
    """The source string for a section of the guidance document."""
    return f"{GUIDE_TITLE} (Microsoft, 2018), section '{section}'"


# -- Sections of the guidance ---------------------------------------------------------------------

SECTION_LICENSES: Final = guide_section("Deploy Azure MFA in the cloud > Licenses")
SECTION_SUPPORTABILITY: Final = guide_section("Deploy Azure MFA in the cloud > Supportability")
SECTION_ON_PREMISES: Final = guide_section("Best Practices for an on-premises deployment")
SECTION_USER_PORTAL: Final = guide_section(
    "Best Practices for an on-premises deployment > User Portal"
)
SECTION_APP_PASSWORDS: Final = guide_section(
    "Best Practices for an on-premises deployment > App Passwords"
)

#: Where the retirement sentence comes from (it is not in the 2018 guidance).
SOURCE_RETIREMENT: Final = cite(
    "Microsoft's MFA Server deprecation notice (September 2022), on every Azure Multi-Factor "
    "Authentication Server page of Microsoft Learn, e.g. 'Configure Azure Multi-Factor "
    "Authentication Server for high availability'",
    "https://learn.microsoft.com/en-us/entra/identity/authentication/howto-mfaserver-deploy",
)

#: The AD FS page on extranet lockout (Microsoft Learn).
SOURCE_EXTRANET_LOCKOUT: Final = cite(
    "Microsoft, 'AD FS Extranet Lockout and Extranet Smart Lockout'",
    "https://learn.microsoft.com/en-us/windows-server/identity/ad-fs/operations/"
    "configure-ad-fs-extranet-smart-lockout-protection",
)

#: The User Portal page: its requirements for a portal on its own server.
SOURCE_USER_PORTAL_PAGE: Final = cite(
    "Microsoft, 'User portal for the Azure Multi-Factor Authentication Server', section 'Deploy "
    "the user portal on a separate server'",
    "https://learn.microsoft.com/en-us/entra/identity/authentication/"
    "howto-mfaserver-deploy-userportal",
)

# -- Quoted sentences -----------------------------------------------------------------------------

QUOTE_RETIREMENT: Final = (
    "Beginning September 30, 2024, Azure Multi-Factor Authentication Server deployments will no "
    "longer service multifactor authentication (MFA) requests, which could cause authentications "
    "to fail for your organization."
)
QUOTE_ADFS_OS: Final = (
    "However, the Multi-Factor Authentication Adapter for AD FS must be installed on a Windows "
    "Server 2012 R2 running AD FS."
)
QUOTE_ADFS_ADAPTER: Final = (
    "You can install the server on a different computer, as long as it is a supported version, "
    "and install the AD FS adapter separately on your AD FS federation server."
)
QUOTE_ADFS_FIRST_STEP: Final = (
    "If you are securing Azure AD resources using Active Directory Federation Services (AD FS), "
    "then the first verification step is performed on-premises using AD FS."
)
QUOTE_ADFS_TWO_STEPS: Final = (
    f"{QUOTE_ADFS_FIRST_STEP} The second step is performed on-premises by honoring the claim."
)
QUOTE_ADFS_FEDERATED: Final = (
    "Azure Multi-Factor Authentication Server can secure cloud resources and on-premises "
    "resources by using federation. You must have AD FS and have it federated with your Azure AD "
    "tenant."
)
QUOTE_PHONEFACTOR_VERIFY: Final = (
    "Verify that the PhoneFactor Admins group was created on your domain controller, and that the "
    "AD FS service account is a member of this group."
)
QUOTE_PHONEFACTOR_CREATED: Final = (
    "The Multi-Factor Authentication AD FS Adapter installation wizard creates a security group "
    "called PhoneFactor Admins in your Active Directory, and then adds your AD FS service account "
    "to this group."
)
QUOTE_EXTRANET_LOCKOUT: Final = (
    "Extranet Smart Lockout (ESL) protects your users from experiencing extranet account lockout "
    "from malicious activity."
)
QUOTE_PORTAL_TLS: Final = "Secure the user portal with a TLS/SSL certificate."
QUOTE_SDK_TLS: Final = (
    "Ensure that the user portal can connect to the Azure AD Multi-Factor Authentication Web "
    "Service SDK over TLS/SSL."
)
QUOTE_IIS: Final = "Use IIS 6 or greater"
QUOTE_ASPNET: Final = "Install and register ASP.NET v2.0.507207"
QUOTE_PERIMETER: Final = "Ensure that this server can be deployed in a perimeter network"
QUOTE_PER_AUTHENTICATION: Final = (
    "Do not create a per-authentication Multi-Factor Auth Provider. If you do, you could end up "
    "paying for verification requests from users that already have licenses."
)
QUOTE_AAD_CONNECT: Final = (
    "Azure AD Connect is only required if you are synchronizing your on-premises Active Directory "
    "environment with an Azure AD directory."
)
QUOTE_APP_PASSWORDS: Final = "By default, users cannot create app passwords."
QUOTE_BYPASS: Final = "The bypass is temporary and expires after a specified number of seconds."
QUOTE_TRUSTED_IPS: Final = (
    "Consider the Trusted IPs capability in Azure MFA as a way to minimize two-step verification."
)

# -- Disagreements and provenance notes -----------------------------------------------------------

NOTE_ADFS_OS: Final = (
    "Microsoft's documents disagree: the guidance names only Windows Server 2012 R2; the AD FS "
    "page ('Configure Azure Multi-Factor Authentication Server to work with AD FS in Windows "
    "Server') says 'Windows Server 2012 R2 or Windows Server 2016', and later server builds "
    "(2019, 2022, 2025) run AD FS and its Azure MFA adapters too. This check passes 2012 R2 "
    "(6.3.9600) and every later server build, and says so when the build is not the one the "
    "guidance names."
)
NOTE_IIS: Final = (
    "Microsoft's documents disagree: the guidance says 'IIS 6 or greater'; the MFA Server install "
    "page says IIS 7.0 or greater for the User Portal and the Web Service SDK. IIS 6 passes here, "
    "as the guidance says, and the result records the disagreement."
)
NOTE_ASPNET: Final = (
    "The guidance's 'ASP.NET v2.0.507207' is a typo for v2.0.50727: the User Portal page says "
    "'ensure ASP.NET v2.0.50727 is installed, registered, and set to Allowed'. This check looks "
    "for 2.0.50727."
)
NOTE_RETIREMENT: Final = (
    "Microsoft stopped offering MFA Server to new customers on 2019-07-01; from 2024-09-30 it no "
    "longer services MFA requests, so an installed MFA Server is critical whatever else passes."
)
NOTE_ADAPTER_NAMES: Final = (
    "MFA Server's AD FS adapter registers as WindowsAzureMultiFactorAuthentication or "
    "AzureMfaServerAuthentication depending on its version (Microsoft's MFA Server upgrade "
    "guide); both are judged alike. An AD FS farm still using it is part of the retired MFA "
    "Server estate (no MFA requests serviced since 2024-09-30): the way out is the built-in "
    "AzureMfaAuthentication adapter of AD FS 2016 and later. Registration is farm-wide "
    "configuration; MFA Server's adapter must also be installed on every node (its assembly in "
    "the GAC), which is read per node."
)
NOTE_MFA_POLICY: Final = (
    "The guidance's second step happens only when AD FS asks for it: an MFA adapter must be an "
    "additional authentication method of the global policy, and a rule (global, per relying "
    "party, or an access control policy) must require multiple authentication "
    "(http://schemas.microsoft.com/claims/multipleauthn). Registration alone protects nothing."
)
NOTE_TRUSTED_IPS: Final = (
    "'The company's local intranet': a trusted range must lie inside the networks the inventory "
    "declares as the organisation's own (mfa_networks, perimeter or internal); without declared "
    "networks only ranges wider than any organisation's (/0, public blocks wider than /8 or /32) "
    "fail."
)
NOTE_PORTAL_TLS: Final = (
    "Quoted from the azure-docs revision of the User Portal page (howto-mfaserver-deploy-"
    "userportal.md, 2023); later revisions rename the product. 'No certificate warnings' is "
    "judged as: a certificate bound and found, valid now and for the next 30 days, an RSA key "
    "of 2048 bits or more (ECC 256 or more), and SSL 2.0, SSL 3.0, TLS 1.0 and TLS 1.1 off in "
    "SCHANNEL (an absent key is the OS default: SSL 2.0/3.0 off on Windows Server 2016 and "
    "later, TLS 1.0/1.1 on everywhere)."
)
NOTE_WEB_SERVICES: Final = (
    "Quoted from the azure-docs revision of the User Portal page (2023); the Mobile App Web "
    "Service page asks the same of its connection to the Web Service SDK. Judged on every "
    "MFA Server web application found in IIS ('/MultiFactorAuth*'): its site has no http "
    "binding, and a configured WEB_SERVICE_SDK_AUTHENTICATION_URL is https."
)
NOTE_CLOCK: Final = (
    "The guidance has no sentence on time; this check is a prerequisite of the sentence quoted. "
    "AD FS and the domain authenticate with Kerberos, which rejects clocks more than 5 minutes "
    "apart by default ('Maximum tolerance for computer clock synchronization'), and OATH codes "
    "are time-based."
)
NOTE_SERVICE_ACCOUNT_HEALTH: Final = (
    "The guidance asks only for membership; a member that is disabled, locked out or has an "
    "expired password cannot sign in, so AD FS (and its adapter) stops. Modelled on ADFSToolbox's "
    "service account test (TestServiceAccountProperties)."
)
NOTE_MEMBERS: Final = (
    "Hardening of our own, not a guidance requirement: the group exists to hold the AD FS service "
    "account (and the Web Service SDK account), and its members can administer MFA through the "
    "Web Service SDK, so any other member is a privilege to justify."
)

# -- References -----------------------------------------------------------------------------------

_LEARN: Final = "https://learn.microsoft.com/en-us"
REF_GUIDE: Final = (
    "https://docs.microsoft.com/en-us/azure/active-directory/authentication/"
    "multi-factor-authentication-security-best-practices"
)
REF_MFA_SERVER_DEPLOY: Final = f"{_LEARN}/entra/identity/authentication/howto-mfaserver-deploy"
REF_MFA_SERVER_MIGRATE: Final = (
    f"{_LEARN}/entra/identity/authentication/how-to-migrate-mfa-server-to-mfa-user-authentication"
)
REF_MFA_SERVER_MIGRATION_UTILITY: Final = (
    f"{_LEARN}/entra/identity/authentication/how-to-mfa-server-migration-utility"
)
REF_MFA_SERVER_ADFS: Final = (
    f"{_LEARN}/entra/identity/authentication/howto-mfaserver-adfs-windows-server"
)
REF_ADFS_AZURE_MFA: Final = (
    f"{_LEARN}/windows-server/identity/ad-fs/operations/configure-ad-fs-and-azure-mfa"
)
REF_ADFS_REQUIREMENTS: Final = f"{_LEARN}/windows-server/identity/ad-fs/overview/ad-fs-requirements"
REF_GET_ADFS_PROVIDER: Final = f"{_LEARN}/powershell/module/adfs/get-adfsauthenticationprovider"
REF_NPS_EXTENSION: Final = f"{_LEARN}/entra/identity/authentication/howto-mfa-nps-extension"
REF_USER_PORTAL: Final = f"{_LEARN}/entra/identity/authentication/howto-mfaserver-deploy-userportal"
REF_WIN32_OS: Final = f"{_LEARN}/windows/win32/cimwin32prov/win32-operatingsystem"
REF_SERVER_RELEASES: Final = f"{_LEARN}/windows/release-health/windows-server-release-info"
REF_AUTH_PROVIDER: Final = f"{_LEARN}/entra/identity/authentication/concept-mfa-authprovider"
REF_AAD_CONNECT: Final = f"{_LEARN}/entra/identity/hybrid/connect/whatis-azure-ad-connect"
REF_MFA_SETTINGS: Final = f"{_LEARN}/entra/identity/authentication/howto-mfa-mfasettings"
REF_APP_PASSWORDS: Final = f"{_LEARN}/entra/identity/authentication/howto-mfa-app-passwords"
REF_CLOCK_TOLERANCE: Final = (
    f"{_LEARN}/previous-versions/windows/it-pro/windows-10/security/threat-protection/"
    "security-policy-settings/maximum-tolerance-for-computer-clock-synchronization"
)
REF_W32TM: Final = (
    f"{_LEARN}/windows-server/networking/windows-time-service/"
    "windows-time-service-tools-and-settings"
)
REF_ADFS_TOOLBOX: Final = "https://github.com/microsoft/adfsToolbox"
REF_MFA_SERVER_UPGRADE: Final = (
    f"{_LEARN}/entra/identity/authentication/howto-mfaserver-deploy-upgrade"
)
REF_ADFS_ACCESS_POLICIES: Final = (
    f"{_LEARN}/windows-server/identity/ad-fs/operations/access-control-policies-in-ad-fs"
)
REF_ADFS_ADDITIONAL_RULE: Final = (
    f"{_LEARN}/powershell/module/adfs/set-adfsadditionalauthenticationrule"
)
REF_AAD_FEDERATION: Final = (
    f"{_LEARN}/entra/identity/hybrid/connect/how-to-connect-fed-management"
)
REF_TLS_REGISTRY: Final = f"{_LEARN}/windows-server/security/tls/tls-registry-settings"
REF_MOBILE_APP_WS: Final = (
    f"{_LEARN}/entra/identity/authentication/howto-mfaserver-deploy-mobileapp"
)
REF_RELYING_PARTY: Final = f"{_LEARN}/powershell/module/adfs/get-adfsrelyingpartytrust"
