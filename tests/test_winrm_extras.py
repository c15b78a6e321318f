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


def test_the_inventory_warns_of_hosts_the_scan_will_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRAS_TEST_PASSWORD", "x")
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "all:\n  vars:\n    ansible_winrm_scheme: http\n    ansible_winrm_transport: basic\n"
        "  children:\n    adfs:\n      hosts:\n        refused.corp.example:\n"
        "        allowed.corp.example:\n          mfa_allow_insecure_transport: true\n"
    )
    loaded = load_inventory(inventory)
    assert [w for w in loaded.warnings if "will be refused" in w] == [
        "refused.corp.example: will be refused when scanned: basic over plain http would send "
        "credentials unencrypted; use https, or ntlm/kerberos (message encryption), or set "
        "mfa_allow_insecure_transport: true for this host"
    ]
    refused, allowed = loaded.hosts
    with pytest.raises(ConnectorError) as caught:
        build_protocol(refused, Timeouts())
    assert caught.value.kind is ErrorKind.INSECURE_TRANSPORT_REFUSED
    assert allowed.connection.insecure_refusal() is None
