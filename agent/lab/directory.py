"""The lab's directory: a throwaway Samba AD DC holding the accounts the lab's AD FS nodes use.

Started by `mfa-agent demo` (and `lab serve --directory`) when Samba is installed and the agent
runs as root (Samba must bind ports 389 and 636). The AD FS service accounts the lab profiles
report are created in it; only those in `IN_GROUP` are members of PhoneFactor Admins, so the
demo shows one node whose service account is missing from the group.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agent.lab.profiles import LabDefinition
from agent.lab.samba import SambaDC

#: Where the lab's domain controller listens (loopback; no setup needed on Linux).
DC_ADDRESS: Final = "127.0.1.5"
#: The environment variable that carries the read-only bind account's password.
LDAP_PASSWORD_ENV: Final = "MFA_LAB_LDAP_PASSWORD"  # noqa: S105 (a variable name)
#: Service accounts (sAMAccountName) put into PhoneFactor Admins; the others are left out.
IN_GROUP: Final = frozenset({"svc-adfs"})
GROUP: Final = "PhoneFactor Admins"
READER: Final = "mfa-reader"
#: The one line the demo prints when it has to run without a directory.
INSTALL_HINT: Final = (
    "directory checks need Samba (as root): apt-get install samba samba-ad-dc "
    "samba-ad-provision winbind krb5-user"
)


def service_accounts(definition: LabDefinition) -> list[str]:
    """The AD FS service accounts the lab's profiles report (``DOMAIN\\name`` or ``…$``)."""
    accounts = []
    for host in definition.hosts:
        adfs = host.facts.get("adfs")
        account = adfs.get("service_account") if isinstance(adfs, Mapping) else None
        if isinstance(account, str) and account not in accounts:
            accounts.append(account)
    return accounts


@dataclass
class LabDirectory:
    """A running lab domain controller and the read-only account the agent binds with."""

    dc: SambaDC
    reader_dn: str
    reader_password: str

    def inventory_vars(self) -> dict[str, Any]:
        """``mfa_directory`` for the lab inventory (the password only as an env lookup)."""
        return {
            "mfa_directory": {
                "urls": [self.dc.ldaps_url],
                "base_dn": self.dc.base_dn,
                "bind_dn": self.reader_dn,
                "bind_password": f"{{{{ lookup('env', '{LDAP_PASSWORD_ENV}') }}}}",
                "ca_file": str(self.dc.ca_file),
                "group": GROUP,
            }
        }

    def stop(self) -> None:
        """Stop the domain controller (by its PID)."""
        self.dc.stop()


def available() -> bool:
    """Whether a lab directory can be started here (Samba installed, running as root)."""
    return SambaDC.available()


def unavailable_reason() -> str:
    """One line saying why the lab's directory cannot start here, and what to do."""
    if shutil.which("samba") is None or shutil.which("samba-tool") is None:
        return INSTALL_HINT
    return (
        "the lab's directory needs root (Samba is installed but must bind ports 389 and 636): "
        "run as root, or pass --no-directory"
    )


def start_directory(state_dir: Path, accounts: Iterable[str]) -> LabDirectory:
    """Provision and start the lab domain, then create the group and the service accounts."""
    dc = SambaDC(state_dir, admin_password=_password(), address=DC_ADDRESS)
    dc.provision()
    dc.start()
    try:
        group = dc.add_group(GROUP)
        members = []
        for account in accounts:
            name = account.split("\\", 1)[-1]
            dn = dc.add_gmsa(name) if name.endswith("$") else dc.add_user(name, _password())
            if name in IN_GROUP:
                members.append(dn)
        dc.add_members(group, members)
        reader_password = _password()
        reader = dc.add_user(READER, reader_password)
    except BaseException:
        dc.stop()
        raise
    return LabDirectory(dc=dc, reader_dn=reader, reader_password=reader_password)


def _password() -> str:
    # AD's complexity rules want several character classes.
    return f"Lab-{secrets.token_urlsafe(18)}-9a"
