"""A hostile SSH host (`hostile_ssh`): what it prints is capped while it is read.

The connector reads a script's stdout and stderr under one cap (`MAX_OUTPUT_BYTES`): a host that
answers every command with 400 MB costs those scripts' facts, and the agent a bounded amount of
memory — measured as the peak RSS of the scan's own process against a host that answers briefly.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest
import yaml
from conftest import REPO, CliRun

from agent.connectors import ssh as ssh_connector
from agent.connectors.common import MAX_OUTPUT_BYTES
from agent.inventory.sshargs import Jump

pytest.register_assert_rewrite("labfixtures")
from hostile_ssh import USER, flood, running_ssh  # noqa: E402
from hostile_wsman import scan_peak_rss  # noqa: E402
from labfixtures import FAST_TIMEOUTS, Report  # noqa: E402

HOST = "hostile-ssh.lab.example"
ADDRESS = "127.0.6.5"
PASSWORD_ENV = "MFA_HOSTILE_SSH_PASSWORD"
MiB = 1024 * 1024


def _brief(channel: paramiko.Channel, command: str) -> None:
    channel.sendall(b"not json\r\n")
    channel.send_exit_status(0)


def _scan(server_answer: object, password: str, tmp_path: Path, name: str) -> tuple[int, Report]:
    with running_ssh(ADDRESS, server_answer,  # type: ignore[arg-type]
                     password=password, state_dir=tmp_path) as server:
        inventory = server.inventory(tmp_path / f"{name}.yaml", PASSWORD_ENV)
        kib, out = scan_peak_rss("scan", "-i", str(inventory), "--format", "json",
                                 *FAST_TIMEOUTS, cwd=REPO)
    return kib, Report.parse(out)


def test_an_ssh_host_sending_400_mb_adds_less_than_100_mb_to_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = f"Sx-{secrets.token_hex(8)}-Pw"
    monkeypatch.setenv(PASSWORD_ENV, password)
    baseline, report = _scan(_brief, password, tmp_path, "brief")
    assert report.error(HOST) is None
    flooded, report = _scan(flood(400 * MiB), password, tmp_path, "flood")
    assert report.error(HOST) is None  # the host was read; its scripts' facts were not
    reasons = {r["reason"] for r in report.results(HOST).values() if r["status"] == "ERROR"}
    assert any(f"printed more than {MAX_OUTPUT_BYTES // MiB} MiB" in reason
               for reason in reasons), reasons
    assert "PASS" not in report.statuses(HOST).values()
    assert flooded - baseline < 100 * 1024, (baseline, flooded)


def test_a_bastion_that_never_answers_after_sign_in_costs_its_host_and_gives_its_place_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., CliRun]
) -> None:
    password = f"Sx-{secrets.token_hex(8)}-Pw"
    monkeypatch.setenv(PASSWORD_ENV, password)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setattr(ssh_connector, "_gates", {})
    with running_ssh("127.0.6.7", _brief, password=password, state_dir=tmp_path,
                     silent=True) as bastion:
        jump = Jump(bastion.address, bastion.port)
        host = {
            "ansible_host": "127.0.6.8", "ansible_port": 22, "ansible_connection": "ssh",
            "ansible_user": USER, "ansible_password": f"{{{{ lookup('env', '{PASSWORD_ENV}') }}}}",
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={bastion.known_hosts} "
                                       f"-J {USER}@{bastion.address}:{bastion.port}",
        }
        inventory = tmp_path / "behind.yaml"
        inventory.write_text(yaml.safe_dump(
            {"all": {"children": {"adfs": {"hosts": {"behind.lab.example": host}}}}}))
        result = run_cli("scan", "-i", str(inventory), "--format", "json",
                         "--connect-timeout", "3", "--host-timeout", "60")
    report = Report.parse(result.out)
    assert report.error("behind.lab.example") == (
        "timed out waiting for the bastion to open a connection to 127.0.6.8:22: no answer "
        "within 3 s")
    assert report.host_error_kind("behind.lab.example") == "timed-out"
    with contextlib.ExitStack() as places:  # every place of that bastion is free again
        for _ in range(ssh_connector.HANDSHAKES_PER_SERVER):
            places.enter_context(
                ssh_connector.sign_in_gate([jump], deadline=time.monotonic(), bastion=True))
