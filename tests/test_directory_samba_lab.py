"""`agent.lab.samba.SambaDC` itself: the running instance, its guards, its fixture helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sambafixtures import GROUP, SPECIAL_GROUP, SPECIAL_USER, SambaLab, samba_lab

from agent.lab.samba import UF_LOCKOUT, UF_PASSWORD_EXPIRED, SambaDC, SambaError

__all__ = ["samba_lab"]  # a fixture, used by name

pytestmark = [
    pytest.mark.needs_server,
    pytest.mark.filterwarnings("ignore:ssl.match_hostname\\(\\) is deprecated:DeprecationWarning"),
]


def test_the_running_dc_is_found_by_its_pid_file(samba_lab: SambaLab) -> None:
    dc = samba_lab.dc
    pid = dc.pid
    assert pid is not None
    assert int(dc.pid_file.read_text()) == pid
    assert Path(os.readlink(f"/proc/{pid}/exe")).name == "samba"
    assert dc.base_dn == "DC=lab,DC=example"
    assert dc.admin_dn == "CN=Administrator,CN=Users,DC=lab,DC=example"
    assert (dc.ldaps_url, dc.server_name) == (f"ldaps://{dc.address}:636", "dc1.lab.example")
    assert dc.ca_file.is_file()


def test_a_second_start_of_the_same_domain_is_refused(samba_lab: SambaLab) -> None:
    again = SambaDC(samba_lab.dc.state_dir, admin_password="unused")
    with pytest.raises(SambaError, match=r"samba is already running for .* \(PID \d+\)"):
        again.start()
    assert samba_lab.dc.pid is not None


def test_a_domain_is_not_started_where_another_server_listens(
    samba_lab: SambaLab, tmp_path: Path
) -> None:
    address = samba_lab.dc.address
    other = SambaDC(tmp_path / "other", admin_password="unused", address=address)
    other.smb_conf.parent.mkdir(parents=True)
    other.smb_conf.write_text("[global]\n")  # looks provisioned; never started
    with pytest.raises(SambaError) as refused:
        other.start()
    assert str(refused.value) == f"another server already listens on {address}:389, {address}:636"
    other.stop()  # nothing of its own runs: a no-op
    assert samba_lab.dc.pid is not None


def test_a_pid_file_naming_another_process_is_not_ours(tmp_path: Path) -> None:
    dc = SambaDC(tmp_path, admin_password="unused")
    dc.pid_file.write_text(f"{os.getpid()}\n")
    assert dc.pid is None
    dc.stop()  # must not signal this test process
    dc.pid_file.write_text("not a pid\n")
    assert dc.pid is None


def test_only_loopback_addresses() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        SambaDC(Path("/nonexistent"), admin_password="x", address="192.0.2.10")


def test_provisioning_twice_is_refused(samba_lab: SambaLab) -> None:
    with pytest.raises(SambaError, match="already holds a provisioned domain"):
        SambaDC(samba_lab.dc.state_dir, admin_password="unused").provision()


def test_lockout_and_expiry_are_what_the_directory_reports(samba_lab: SambaLab) -> None:
    dc = samba_lab.dc
    assert dc.computed_flags("svc-locked") & UF_LOCKOUT
    assert dc.computed_flags("svc-expired") & UF_PASSWORD_EXPIRED
    assert dc.computed_flags("svc-adfs") & (UF_LOCKOUT | UF_PASSWORD_EXPIRED) == 0
    assert dc.lockout_threshold() == 0  # put back after the lockout


def test_names_with_dn_special_characters_are_escaped(samba_lab: SambaLab) -> None:
    dc = samba_lab.dc
    assert dc.find_dn(SPECIAL_GROUP) == samba_lab.dns[SPECIAL_GROUP]
    assert dc.find_dn(SPECIAL_USER) == "CN=svc (x*) \\\\ special,CN=Users,DC=lab,DC=example"
    assert dc.find_dn(GROUP) == "CN=PhoneFactor Admins,CN=Users,DC=lab,DC=example"
    with pytest.raises(SambaError, match="0 objects"):
        dc.find_dn("svc*")
