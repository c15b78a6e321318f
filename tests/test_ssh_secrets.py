"""The SSH password and the key passphrase appear in no output, report or facts file.

Scans run as their own process with ``--debug`` (every logger, paramiko's too, at DEBUG on the
real stderr), write every report format and the facts file, and both succeed and fail to sign in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("sshfixtures")  # before importing: its helpers assert
from sshfixtures import (  # noqa: E402
    BASTION,
    FAST_SSH_TIMEOUTS,
    JUMP_TARGET,
    PASSPHRASE_LOOKUP,
    PASSWORD_LOOKUP,
    REPO,
    SshLab,
    host_vars,
)

pytest_plugins = ("sshfixtures",)
pytestmark = pytest.mark.needs_server

WRONG_PASSWORD = "Wrong-Ssh-Password-31337"
WRONG_PASSPHRASE = "Wrong-Key-Passphrase-4242"


def _scan_process(inventory: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``python -m agent --debug scan`` writing every format and the facts file."""
    return subprocess.run(
        [sys.executable, "-m", "agent", "--debug", "scan", "-i", str(inventory),
         "-o", str(out / "reports"), "--save-facts", str(out / "facts.json"),
         *FAST_SSH_TIMEOUTS],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=60, check=False,
    )


def _assert_nowhere(secrets: list[str], result: subprocess.CompletedProcess[str],
                    out: Path) -> None:
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert out / "facts.json" in written
    assert len(written) >= 3, written  # the facts file and the report formats
    texts = {"stdout": result.stdout, "stderr": result.stderr}
    texts.update({str(p): p.read_text(errors="replace") for p in written})
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"a secret appears in {where}"


def test_secrets_appear_nowhere_when_signing_in_works(
    ssh: SshLab, tmp_path: Path
) -> None:
    server = ssh.servers[JUMP_TARGET]
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        "by-password": (["adfs"], host_vars(server, known_hosts=ssh.known_hosts,
                                            ansible_password=PASSWORD_LOOKUP)),
        "by-encrypted-key": (["adfs"], host_vars(
            server, known_hosts=ssh.known_hosts,
            ansible_ssh_private_key_file=str(ssh.encrypted_key),
            mfa_ssh_key_passphrase=PASSPHRASE_LOOKUP)),
    })
    result = _scan_process(inventory, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Authentication (password) successful" in result.stderr  # --debug really logged
    _assert_nowhere([ssh.user.password, ssh.passphrase], result, tmp_path / "out")


def test_secrets_appear_nowhere_when_signing_in_fails(
    ssh: SshLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_PASSWORD", WRONG_PASSWORD)
    monkeypatch.setenv("WRONG_PASSPHRASE", WRONG_PASSPHRASE)
    server, bastion = ssh.servers[JUMP_TARGET], ssh.servers[BASTION]
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        "wrong-password": (["adfs"], host_vars(
            server, known_hosts=ssh.known_hosts,
            ansible_password="{{ lookup('env', 'WRONG_PASSWORD') }}")),
        "wrong-passphrase": (["adfs"], host_vars(
            server, known_hosts=ssh.known_hosts,
            ansible_ssh_private_key_file=str(ssh.encrypted_key),
            mfa_ssh_key_passphrase="{{ lookup('env', 'WRONG_PASSPHRASE') }}")),
        # The right password for the target, offered to the bastion, which refuses it.
        "password-to-bastion": (["adfs"], host_vars(
            server, known_hosts=ssh.known_hosts, args=f"-o ProxyJump={bastion.jump}",
            ansible_password=PASSWORD_LOOKUP)),
    })
    result = _scan_process(inventory, tmp_path / "out")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Authentication (password) failed" in result.stderr  # --debug really logged
    facts = (tmp_path / "out" / "facts.json").read_text()
    for host in ("wrong-password", "wrong-passphrase", "password-to-bastion"):
        assert f'"{host}"' in facts
    assert "authentication-refused" in facts and "configuration" in facts
    _assert_nowhere([ssh.user.password, ssh.passphrase, WRONG_PASSWORD, WRONG_PASSPHRASE],
                    result, tmp_path / "out")
