"""``scan --sweep`` against the lab over real WinRM: a Windows host the inventory gives no role
(a forgotten MFA Server) has its base facts read, so mfa-server-retired finds it; hosts mfa-agent
cannot reach (not Windows over WinRM/SSH) are listed as not swept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import CliRun

pytest.register_assert_rewrite("labfixtures")
from labfixtures import FAST_TIMEOUTS, LabProcess, Report  # noqa: E402

pytest_plugins = ("labfixtures",)
pytestmark = pytest.mark.needs_server

Runner = Callable[..., CliRun]


def _forgotten_mfa_server(lab: LabProcess, dest: Path) -> Path:
    """The lab inventory with mfa01 moved out of every role group, and a Linux box added."""
    data = yaml.safe_load(lab.inventory.read_text())
    children = data["all"]["children"]
    entry = children["mfa_server"]["hosts"].pop("mfa01.lab.example")
    children["forgotten"] = {
        "hosts": {
            "mfa01.lab.example": entry,
            "linuxbox.lab.example": {"ansible_connection": "local"},
        }
    }
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def test_sweep_finds_a_forgotten_mfa_server(
    builtin_lab: LabProcess,
    run_cli: Runner,
    use_lab: Callable[[LabProcess], str],
    tmp_path: Path,
) -> None:
    use_lab(builtin_lab)
    inventory = _forgotten_mfa_server(builtin_lab, tmp_path / "inventory.yaml")
    args = ("scan", "-i", str(inventory), "--limit", "forgotten", "--format", "json",
            "--no-history", *FAST_TIMEOUTS)

    without = run_cli(*args)
    assert without.code == 3  # no host with a role in scope: nothing would be checked
    assert "no host selected by --limit forgotten has an MFA role" in without.err

    swept = run_cli(*args, "--sweep")
    report = Report.parse(swept.out)
    assert report.statuses("mfa01.lab.example")["mfa-server-retired"] == "FAIL"
    assert report.hosts["mfa01.lab.example"]["roles"] == ["sweep"]
    warnings = report.document["warnings"]
    assert any("not swept" in w and "linuxbox.lab.example (ansible_connection: local)" in w
               for w in warnings), warnings
    assert report.exit_code == 1
