"""A real Samba AD domain controller on loopback for the directory tests, once per session.

Import the fixtures into a test module (``from sambafixtures import samba_lab, ldap_settings``).
The session fixture provisions a throwaway domain in a temporary directory, starts it, creates
the objects below, and stops it by PID at the end. It listens on a random pair of 127.x.y.z
addresses (the first named in its certificate, the second not). When Samba is not installed
(or we are not root) the tests are skipped locally and FAIL in CI (`conftest.require_or_fail`).

Objects (sAMAccountName; all users enabled with a password unless said otherwise):

- ``mfa-reader``: the low-privilege account the connector binds as (a plain domain user).
- ``PhoneFactor Admins`` ⊃ ``svc-adfs`` (UPN svc-adfs@lab.example), ``gmsa-adfs$`` (a gMSA),
  ``svc-disabled`` (disabled), ``svc-locked`` (locked out by failed binds), ``svc-expired``
  (pwdLastSet 0), and ``PFA Nest 1`` ⊃ ``PFA Nest 2`` ⊃ ``PFA Nest 3`` ⊃ ``svc-nested``.
- ``svc-outsider``: in no group.
- ``Big Admins`` (OU Bulk) ⊃ 700 of the 1,100 users ``bulk00000``… directly, the other 400
  through ``Big Admins Sub``, and ``svc-big``, added last: 1,102 transitive members.
- ``PF Admins (special)``, CN ``PF Admins (*) \\ special, too`` ⊃ ``svc(x)``, CN
  ``svc (x*) \\ special``, UPN ``svc*(x)@lab.example``; and ``svc-adfs``. (A UPN with a
  backslash would read as ``DOMAIN\\name``, as Windows reads a service log-on name.)
- ``PFA Primary`` ⊃ ``svc-primary`` by primary group only (its primaryGroupID is the group's RID,
  so the group lists no ``member`` for it), and ``PFA Primary Nest`` ⊃ ``svc-primary-nested``
  by primary group only; ``PFA Primary`` also holds ``svc-adfs`` (UPN svc-adfs@lab.example).

Kerberos: the DC's machine account gets the ``ldap/`` service principals a Windows DC registers
(``samba_spnupdate`` would add them, but it runs only with the ``dnsupdate`` service, which this
DC does not start), and ``ldap server require strong auth = allow_sasl_over_tls`` is set: Samba's
default refuses a GSSAPI bind without SASL signing or sealing even over TLS, which Windows DCs
accept and ldap3 cannot provide (simple binds on plain LDAP stay refused either way). A test that
needs a ticket uses `kerberos_env`.

The domain is never modified by the tests (the lockout threshold is back to 0, so wrong-password
tests cannot lock anyone out), so the tests may run in any order.
"""

from __future__ import annotations

import importlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ldap3
import pytest
from conftest import require_or_fail

from agent.connectors.directory import rid_of, sid_text
from agent.inventory import DirectorySettings, Secret
from agent.lab.samba import SambaDC, SambaError

REALM = "LAB.EXAMPLE"
DOMAIN = "LAB"
GROUP = "PhoneFactor Admins"
BIG_GROUP = "Big Admins"
SPECIAL_GROUP = "PF Admins (special)"
SPECIAL_GROUP_CN = "PF Admins (*) \\ special, too"
SPECIAL_USER = "svc(x)"
SPECIAL_USER_CN = "svc (x*) \\ special"
SPECIAL_UPN = "svc*(x)@lab.example"
PRIMARY_GROUP = "PFA Primary"
PRIMARY_NEST = "PFA Primary Nest"
BULK_USERS = 1100
BULK_DIRECT = 700
#: Members of Big Admins, nested ones included: the bulk users, Big Admins Sub, svc-big.
BIG_MEMBERS = BULK_USERS + 2
READER = "mfa-reader"
#: The environment variable the tests' DirectorySettings read the bind password from.
PASSWORD_ENV = "MFA_AGENT_TEST_LDAP_PASSWORD"


@dataclass
class SambaLab:
    """The running domain controller, the reader account, and how long setting it up took."""

    dc: SambaDC
    #: Another address of the DC, which its certificate does not name.
    alias: str
    reader_dn: str
    reader_password: str
    #: sAMAccountName → DN of every fixture account and group (bulk users excepted).
    dns: dict[str, str] = field(default_factory=dict)
    #: Seconds per setup phase: provision, start, objects, bulk users, total.
    timings: dict[str, float] = field(default_factory=dict)

    def settings(self, **changes: Any) -> DirectorySettings:
        """LDAPS to the DC as the reader, password from `PASSWORD_ENV`; `changes` override."""
        base = DirectorySettings(
            urls=(self.dc.ldaps_url,),
            base_dn=self.dc.base_dn,
            bind_dn=self.reader_dn,
            bind_password=Secret.from_env(PASSWORD_ENV),
            ca_file=str(self.dc.ca_file),
            group=GROUP,
            timeout_seconds=30,  # bounds a failure only: Samba on a busy machine is slow
        )
        return replace(base, **changes)


def _populate(dc: SambaDC, lab: SambaLab) -> None:
    dns = lab.dns
    dns[GROUP] = dc.add_group(GROUP)
    dns["svc-adfs"] = dc.add_user("svc-adfs", upn="svc-adfs@lab.example")
    dns["gmsa-adfs$"] = dc.add_gmsa("gmsa-adfs")
    dns["svc-disabled"] = dc.add_user("svc-disabled", enabled=False)
    for name in ("svc-locked", "svc-expired", "svc-nested", "svc-outsider", "svc-big"):
        dns[name] = dc.add_user(name)
    dc.lock_out("svc-locked")
    dc.expire_password("svc-expired")
    for level in (1, 2, 3):
        dns[f"PFA Nest {level}"] = dc.add_group(f"PFA Nest {level}")
    dc.add_members(dns["PFA Nest 3"], [dns["svc-nested"]])
    dc.add_members(dns["PFA Nest 2"], [dns["PFA Nest 3"]])
    dc.add_members(dns["PFA Nest 1"], [dns["PFA Nest 2"]])
    direct = ["svc-adfs", "gmsa-adfs$", "svc-disabled", "svc-locked", "svc-expired", "PFA Nest 1"]
    dc.add_members(dns[GROUP], [dns[name] for name in direct])

    dns[SPECIAL_GROUP] = dc.add_group(SPECIAL_GROUP, cn=SPECIAL_GROUP_CN)
    dns[SPECIAL_USER] = dc.add_user(SPECIAL_USER, cn=SPECIAL_USER_CN, upn=SPECIAL_UPN)
    dc.add_members(dns[SPECIAL_GROUP], [dns[SPECIAL_USER], dns["svc-adfs"]])

    dns[PRIMARY_GROUP] = dc.add_group(PRIMARY_GROUP)
    dns[PRIMARY_NEST] = dc.add_group(PRIMARY_NEST)
    dns["svc-primary"] = dc.add_user("svc-primary")
    dns["svc-primary-nested"] = dc.add_user("svc-primary-nested")
    dc.add_members(dns[PRIMARY_GROUP], [dns[PRIMARY_NEST], dns["svc-adfs"]])
    _set_primary_group(dc, dns["svc-primary"], dns[PRIMARY_GROUP])
    _set_primary_group(dc, dns["svc-primary-nested"], dns[PRIMARY_NEST])


def _set_primary_group(dc: SambaDC, user_dn: str, group_dn: str) -> None:
    """Make the group the user's primary group, as AD requires: member first, then the RID.

    AD (and Samba) then drop the group's ``member`` value for the user: the membership is only
    the user's primaryGroupID.
    """
    dc.add_members(group_dn, [user_dn])
    conn = dc.connection()
    conn.search(group_dn, "(objectClass=*)", ldap3.BASE, attributes=["objectSid"])
    value = conn.response[0]["attributes"]["objectSid"]
    rid = rid_of(sid_text(value[0] if isinstance(value, list) else value))
    conn.modify(user_dn, {"primaryGroupID": [(ldap3.MODIFY_REPLACE, [str(rid)])]})
    if conn.result.get("result") != 0:
        raise SambaError(f"setting the primary group of {user_dn} failed: {conn.result}")


def _populate_big(dc: SambaDC, lab: SambaLab) -> None:
    dns = lab.dns
    dns[BIG_GROUP] = dc.add_group(BIG_GROUP, ou="Bulk")
    dns["Big Admins Sub"] = dc.add_group("Big Admins Sub", ou="Bulk")
    bulk = dc.add_users_bulk("bulk", BULK_USERS, ou="Bulk")
    dc.add_members(dns["Big Admins Sub"], bulk[BULK_DIRECT:])
    dc.add_members(dns[BIG_GROUP], [*bulk[:BULK_DIRECT], dns["Big Admins Sub"]])
    dc.add_members(dns[BIG_GROUP], [dns["svc-big"]])  # the service account comes last


def _free_addresses() -> tuple[str, str]:
    """Two neighbouring loopback addresses with nothing listening on the DC's ports.

    Random in 127.64.0.0/10, so that test sessions running at the same time (or a directory
    server on 127.0.0.1) do not collide.
    """
    for _ in range(20):
        prefix = f"127.{64 + secrets.randbelow(64)}.{secrets.randbelow(256)}"
        last = 1 + secrets.randbelow(253)
        pair = (f"{prefix}.{last}", f"{prefix}.{last + 1}")
        if not any(_listening(a, port) for a in pair for port in (88, 389, 636, 3268)):
            return pair
    raise RuntimeError("no free loopback address pair found for the Samba AD DC")


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


def _start_lab(state_dir: Path) -> SambaLab:
    started = time.monotonic()
    address, alias = _free_addresses()
    dc = SambaDC(
        state_dir,
        admin_password=f"Adm1n-{secrets.token_urlsafe(12)}",
        realm=REALM,
        domain=DOMAIN,
        address=address,
        extra_addresses=[alias],
    )
    lab = SambaLab(dc, alias, reader_dn="", reader_password=f"Rd1-{secrets.token_urlsafe(12)}")
    mark = started
    dc.provision()
    _allow_sasl_over_tls(dc)
    lab.timings["provision"] = (now := time.monotonic()) - mark
    mark = now
    dc.start()
    lab.timings["start"] = (now := time.monotonic()) - mark
    mark = now
    try:
        _register_ldap_principals(dc)
        lab.reader_dn = dc.add_user(READER, lab.reader_password)
        _populate(dc, lab)
        lab.timings["objects"] = (now := time.monotonic()) - mark
        mark = now
        _populate_big(dc, lab)
        lab.timings["bulk users"] = (now := time.monotonic()) - mark
    except BaseException:
        dc.stop()
        raise
    lab.timings["total"] = time.monotonic() - started
    return lab


def _allow_sasl_over_tls(dc: SambaDC) -> None:
    """Accept SASL binds without signing or sealing over TLS, as Windows DCs do.

    Written into ``[global]`` of the provisioned smb.conf (provisioning does not keep it).
    """
    conf = dc.smb_conf.read_text()
    line = "\tldap server require strong auth = allow_sasl_over_tls\n"
    dc.smb_conf.write_text(conf.replace("[global]\n", f"[global]\n{line}", 1))


def _register_ldap_principals(dc: SambaDC) -> None:
    """The ``ldap/`` service principal names a Windows DC registers, on the DC's account."""
    fqdn, short = dc.server_name, dc.host_name.upper()
    spns = [
        f"ldap/{fqdn}",
        f"ldap/{short}",
        f"ldap/{fqdn}/{dc.dns_domain}",
        f"ldap/{fqdn}/{DOMAIN}",
    ]
    conn = dc.connection()
    change = {"servicePrincipalName": [(ldap3.MODIFY_ADD, spns)]}
    if not conn.modify(dc.find_dn(f"{short}$"), change):
        raise SambaError(f"registering {', '.join(spns)} failed: {conn.result.get('description')}")


@dataclass(frozen=True)
class KerberosEnv:
    """A Kerberos client set up for the lab realm: krb5.conf, a credential cache, the principal."""

    config: Path
    ccache: Path
    principal: str

    def environ(self) -> dict[str, str]:
        """The variables that point the Kerberos library at this configuration and cache."""
        return {"KRB5_CONFIG": str(self.config), "KRB5CCNAME": f"FILE:{self.ccache}"}

    def tickets(self) -> str:
        """``klist`` of the cache: the service principals it holds tickets for."""
        env = {**os.environ, **self.environ()}
        return subprocess.run(
            ["klist"], env=env, capture_output=True, text=True, timeout=10, check=False
        ).stdout


def kerberos_available() -> bool:
    """Whether Kerberos binds can be tested: the gssapi package and MIT's kinit are installed."""
    try:
        importlib.import_module("gssapi")
    except ImportError:
        return False
    return shutil.which("kinit") is not None


def kinit(lab: SambaLab, directory: Path) -> KerberosEnv:
    """A krb5.conf naming the lab DC as the realm's KDC, and the reader's TGT in a new cache.

    Nothing is looked up in DNS (no KDC or realm discovery, no host name canonicalisation), so
    every Kerberos packet goes to the DC's loopback address. The password goes to kinit on stdin.
    """
    config = directory / "krb5.conf"
    config.write_text(
        "[libdefaults]\n"
        f"    default_realm = {REALM}\n"
        "    dns_lookup_kdc = false\n"
        "    dns_lookup_realm = false\n"
        "    dns_canonicalize_hostname = false\n"
        "    rdns = false\n"
        "[realms]\n"
        f"    {REALM} = {{\n        kdc = {lab.dc.address}:88\n    }}\n"
        "[domain_realm]\n"
        f"    .{lab.dc.dns_domain} = {REALM}\n"
        f"    {lab.dc.dns_domain} = {REALM}\n",
        encoding="utf-8",
    )
    env = KerberosEnv(config, directory / "ccache", f"{READER}@{REALM}")
    done = subprocess.run(
        ["kinit", env.principal],
        input=f"{lab.reader_password}\n",
        env={**os.environ, **env.environ()},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kinit {env.principal} failed: {done.stderr.strip()}")
    return env


_SHARED: dict[str, Any] = {}


@pytest.fixture(scope="session")
def samba_lab(
    tmp_path_factory: pytest.TempPathFactory,
    record_testsuite_property: Callable[[str, object], None],
) -> Iterator[SambaLab]:
    """The session's Samba AD DC with its fixture objects (see the module docstring).

    Started once even when several test modules import this fixture (each import is its own
    fixture definition); stopped when the last of them finishes.
    """
    require_or_fail(SambaDC.available(), "Samba AD DC")
    if "error" in _SHARED:
        pytest.fail(f"the Samba AD DC could not be set up: {_SHARED['error']}", pytrace=False)
    if "lab" not in _SHARED:
        try:
            _SHARED["lab"] = _start_lab(tmp_path_factory.mktemp("samba") / "dc")
        except Exception as exc:
            _SHARED["error"] = exc
            raise
        lab = _SHARED["lab"]
        shown = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in lab.timings.items())
        print(f"\nSamba AD DC set up: {shown}", file=sys.stderr)
        for name, seconds in lab.timings.items():
            record_testsuite_property(f"samba_setup_{name.replace(' ', '_')}_s", f"{seconds:.2f}")
        _SHARED["users"] = 0
    _SHARED["users"] += 1
    try:
        yield _SHARED["lab"]
    finally:
        _SHARED["users"] -= 1
        if _SHARED["users"] == 0:
            _SHARED.pop("lab").dc.stop()


@pytest.fixture
def kerberos_env(
    samba_lab: SambaLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> KerberosEnv:
    """The reader's ticket (kinit) in a cache of this test; KRB5_CONFIG/KRB5CCNAME point at it."""
    require_or_fail(
        kerberos_available(), "a Kerberos client (gssapi of mfa-agent[kerberos], kinit)"
    )
    env = kinit(samba_lab, tmp_path)
    for name, value in env.environ().items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def ldap_settings(
    samba_lab: SambaLab, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DirectorySettings]:
    """`SambaLab.settings` with the reader's password in the environment for this test."""
    monkeypatch.setenv(PASSWORD_ENV, samba_lab.reader_password)
    return samba_lab.settings
