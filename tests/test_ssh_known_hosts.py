"""known_hosts is parsed once per version of the file, not once per host.

paramiko parses every key of a known_hosts file (0.5 ms a line) and an estate's file names every
host: parsed per host, a 1,000-host scan with a 2,000-line file spent 1.1 s of CPU per host.
"""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.connectors import ssh
from agent.connectors.errors import ConnectorError, ErrorKind
from agent.inventory.sshargs import parse_ssh_args


def _line(name: str) -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return f"{name} {key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()}\n"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files paramiko parsed, in order (the cache emptied first)."""
    seen: list[str] = []
    original = paramiko.HostKeys.load

    def load(self: paramiko.HostKeys, filename: str) -> None:
        seen.append(filename)
        original(self, filename)

    monkeypatch.setattr(paramiko.HostKeys, "load", load)
    monkeypatch.setattr(ssh, "_known_hosts", {})
    return seen


def _check(path: Path) -> ssh.HostKeyCheck:
    return ssh.HostKeyCheck.load(parse_ssh_args(f"-o UserKnownHostsFile={path}"))


def test_one_file_is_parsed_once_for_every_host(tmp_path: Path, parses: list[str]) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("".join(_line(f"[10.0.0.{i}]:22") for i in range(50)))
    checks = [_check(path) for _ in range(20)]
    assert len(parses) == 1
    assert all(check.known is checks[0].known for check in checks)
    assert checks[5].known.lookup("[10.0.0.7]:22") is not None


def test_a_changed_file_is_parsed_again(tmp_path: Path, parses: list[str]) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(_line("[10.0.0.1]:22"))
    assert _check(path).known.lookup("[10.0.0.2]:22") is None
    stamp = path.stat().st_mtime_ns
    with path.open("a") as more:  # a long-running worker's file gains a host
        more.write(_line("[10.0.0.2]:22"))
    os.utime(path, ns=(stamp, stamp))  # even within the clock's resolution: the size changed
    assert _check(path).known.lookup("[10.0.0.2]:22") is not None
    replaced = tmp_path / "replacement"
    replaced.write_text(_line("[10.0.0.3]:22"))
    replaced.replace(path)  # written elsewhere and renamed over it: another inode
    assert _check(path).known.lookup("[10.0.0.3]:22") is not None
    assert len(parses) == 3


def test_an_unreadable_file_is_a_configuration_error(tmp_path: Path, parses: list[str]) -> None:
    path = tmp_path / "known_hosts"
    path.mkdir()
    with pytest.raises(ConnectorError) as refused:
        _check(path)
    assert refused.value.kind is ErrorKind.CONFIGURATION
    assert f"cannot read known hosts file {path}" in refused.value.message
