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

The domain is never modified by the tests (the lockout threshold is back to 0, so wrong-password
tests cannot lock anyone out), so the tests may run in any order.
"""

from __future__ import annotations

import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from conftest import require_or_fail

from agent.inventory import DirectorySettings, Secret
from agent.lab.samba import SambaDC

REALM = "LAB.EXAMPLE"
DOMAIN = "LAB"
GROUP = "PhoneFactor Admins"
BIG_GROUP = "Big Admins"
SPECIAL_GROUP = "PF Admins (special)"
SPECIAL_GROUP_CN = "PF Admins (*) \\ special, too"
SPECIAL_USER = "svc(x)"
SPECIAL_USER_CN = "svc (x*) \\ special"
SPECIAL_UPN = "svc*(x)@lab.example"
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
            timeout_seconds=5,
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
    lab.timings["provision"] = (now := time.monotonic()) - mark
    mark = now
    dc.start()
    lab.timings["start"] = (now := time.monotonic()) - mark
    mark = now
    try:
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
def ldap_settings(
    samba_lab: SambaLab, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DirectorySettings]:
    """`SambaLab.settings` with the reader's password in the environment for this test."""
    monkeypatch.setenv(PASSWORD_ENV, samba_lab.reader_password)
    return samba_lab.settings
