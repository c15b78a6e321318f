"""Optional WinRM transports: a clear install hint when their extra is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.connectors.common import Timeouts
from agent.connectors.errors import ConnectorError, ErrorKind
from agent.connectors.winrm import build_protocol, transport_available
from agent.inventory import load_inventory


def host_with(tmp_path: Path, transport: str):  # type: ignore[no-untyped-def]
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "all:\n  children:\n    adfs:\n      hosts:\n        adfs01.corp.example:\n"
        f"          ansible_winrm_transport: {transport}\n"
        "          ansible_user: CORP\\\\audit\n"
        "          ansible_password: \"{{ lookup('env', 'EXTRAS_TEST_PASSWORD') }}\"\n"
    )
    return load_inventory(inventory).hosts[0]


@pytest.mark.parametrize(
    ("transport", "flag"), [("kerberos", "HAVE_KERBEROS"), ("credssp", "HAVE_CREDSSP")]
)
def test_missing_extra_is_an_error_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str, flag: str
) -> None:
    monkeypatch.setenv("EXTRAS_TEST_PASSWORD", "x")
    monkeypatch.setattr(f"winrm.transport.{flag}", False)
    with pytest.raises(ConnectorError) as caught:
        build_protocol(host_with(tmp_path, transport), Timeouts())
    assert caught.value.kind is ErrorKind.MISSING_EXTRA
    assert f"pip install 'mfa-agent[{transport}]'" in caught.value.message


def test_an_installed_extra_builds_the_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRAS_TEST_PASSWORD", "x")
    monkeypatch.setattr("winrm.transport.HAVE_KERBEROS", True)
    assert transport_available("kerberos")
    protocol = build_protocol(host_with(tmp_path, "kerberos"), Timeouts())
    assert protocol.transport.auth_method == "kerberos"
    assert transport_available("ntlm")
