"""`start_lab` in process: several labs at once, NTLM_USER_FILE isolation, CBT, inventory."""

from __future__ import annotations

import base64
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import spnego
import winrm
import yaml
from spnego.channel_bindings import GssChannelBindings
from winrm.exceptions import InvalidCredentialsError

from agent.errors import InputError
from agent.factscripts import by_name
from agent.lab import Lab, LabError, start_lab

pytestmark = pytest.mark.needs_server

USER = "LAB\\mfa-scan"


def _one_host_lab(directory: Path, address: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "solo.yaml").write_text(yaml.safe_dump({
        "name": "solo.lab.example", "address": address, "roles": ["aad_connect"],
        "facts": {"adsync": {"service_status": "Stopped"}},
    }))
    (directory / "_lab.yaml").write_text("mfa_networks: {internal: [10.0.0.0/8]}\n")
    return directory


@pytest.fixture
def two_labs(tmp_path: Path) -> Iterator[tuple[Lab, Lab]]:
    first = start_lab(password="first-Pw1", state_dir=tmp_path / "a")
    try:
        second = start_lab(_one_host_lab(tmp_path / "p", "127.0.3.7"), password="second-Pw2",
                           user="OTHER\\scanner", state_dir=tmp_path / "b")
    except BaseException:
        first.stop()
        raise
    with first, second:
        yield first, second


def _logon(endpoint: str, user: str, password: str, ca_file: str | None = None) -> bytes:
    adsync = by_name("adsync")
    assert adsync is not None
    protocol = winrm.Protocol(endpoint, transport="ntlm", username=user, password=password,
                              ca_trust_path=ca_file)  # type: ignore[arg-type]
    shell = protocol.open_shell()
    command = protocol.run_command(shell, adsync.command_line())
    out, _, _ = protocol.get_command_output(shell, command)
    protocol.cleanup_command(shell, command)
    protocol.close_shell(shell)
    return out


def test_two_labs_in_one_process_keep_their_own_accounts(
    two_labs: tuple[Lab, Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NTLM_USER_FILE", "/nonexistent/caller-setting")
    first, second = two_labs
    sync01 = first.hosts["sync01.lab.example"].endpoint
    solo = second.hosts["solo.lab.example"].endpoint
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                assert b'"Running"' in _logon(sync01, USER, "first-Pw1")
                assert b'"Stopped"' in _logon(solo, "OTHER\\scanner", "second-Pw2")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with pytest.raises(InvalidCredentialsError):
        _logon(sync01, USER, "second-Pw2")
    with pytest.raises(InvalidCredentialsError):
        _logon(solo, "OTHER\\scanner", "first-Pw1")
    assert os.environ["NTLM_USER_FILE"] == "/nonexistent/caller-setting"
    stats = first.server("sync01.lab.example").stats
    assert stats["encrypted"] >= 12 * 5
    assert stats["plaintext"] == 0


def test_lab_stop_removes_credential_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lab = start_lab(_one_host_lab(tmp_path / "p", "127.0.3.8"), password="pw-1", state_dir=state)
    files = [p for p in state.iterdir() if p.name.startswith("ntlm-users")]
    assert files
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in files)
    lab.stop()
    lab.stop()
    assert not any(p.name.startswith("ntlm-users") for p in state.iterdir())
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(lab.hosts["solo.lab.example"].endpoint, timeout=2)


def test_write_inventory(tmp_path: Path) -> None:
    with start_lab(_one_host_lab(tmp_path / "p", "127.0.3.9"), password="pw-2", port=0,
                   scheme="https", state_dir=tmp_path / "s") as lab:
        path = lab.write_inventory(tmp_path / "inv.yaml", password_env="MY_PW")
        text = path.read_text()
        with pytest.raises(ValueError, match="not an environment variable name"):
            lab.write_inventory(tmp_path / "x.yaml", password_env="A') }}{{ x")
        host = lab.hosts["solo.lab.example"]
    assert "pw-2" not in text
    inventory = yaml.safe_load(text)
    assert inventory == {"all": {
        "vars": {
            "ansible_user": USER,
            "ansible_password": "{{ lookup('env', 'MY_PW') }}",
            "ansible_connection": "winrm",
            "ansible_winrm_transport": "ntlm",
            "ansible_winrm_scheme": "https",
            "ansible_winrm_server_cert_validation": "validate",
            "ansible_winrm_ca_trust_path": str(lab.ca_file),
            "mfa_networks": {"internal": ["10.0.0.0/8"]},
        },
        "children": {"aad_connect": {"hosts": {"solo.lab.example": {
            "ansible_host": "127.0.3.9", "ansible_port": host.port}}}},
    }}


def test_basic_over_http_only_when_unencrypted_is_allowed(tmp_path: Path) -> None:
    with start_lab(_one_host_lab(tmp_path / "p", "127.0.3.10"), password="pw-3",
                   state_dir=tmp_path / "s", allow_unencrypted=True) as lab:
        endpoint = lab.hosts["solo.lab.example"].endpoint
        protocol = winrm.Protocol(endpoint, transport="basic", username=USER, password="pw-3",
                                  ca_trust_path=None)
        protocol.close_shell(protocol.open_shell())
        assert lab.server("solo.lab.example").stats["plaintext"] == 2


def test_a_busy_port_is_a_lab_error_and_nothing_keeps_running(tmp_path: Path) -> None:
    profiles = _one_host_lab(tmp_path / "p", "127.0.3.12")
    (profiles / "early.yaml").write_text(yaml.safe_dump(
        {"name": "early.lab.example", "address": "127.0.3.11", "roles": ["adfs"]}))
    with socket.create_server(("127.0.3.12", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(LabError, match=r"solo.lab.example: cannot listen on 127.0.3.12"):
            start_lab(profiles, password="pw", port=port, state_dir=tmp_path / "s")
    with socket.create_server(("127.0.3.11", port)):
        pass  # early.lab.example's server was stopped again
    assert not any(p.name.startswith("ntlm-users") for p in (tmp_path / "s").iterdir())


@pytest.mark.parametrize(("password", "message"), [
    ("", "may not be empty"),
    ("a:b", "may not contain ':'"),
])
def test_unusable_passwords(tmp_path: Path, password: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        start_lab(password=password, state_dir=tmp_path)


def _ntlm_handshake(endpoint: str, ca_file: str, bindings: GssChannelBindings | None) -> int:
    client = spnego.client(USER, "pw-4", protocol="ntlm", channel_bindings=bindings,
                           options=spnego.NegotiateOptions.use_ntlm)
    with requests.Session() as http:
        token = client.step()
        while True:
            assert token is not None
            response = http.post(endpoint, verify=ca_file, headers={
                "Authorization": "Negotiate " + base64.b64encode(token).decode()})
            if response.status_code != 401 or "WWW-Authenticate" not in response.headers:
                return response.status_code
            offers = [o.strip() for o in response.headers["WWW-Authenticate"].split(",")]
            challenge = next((o for o in offers if o.startswith("Negotiate ")), None)
            if challenge is None:  # refused: the bare offers again
                return response.status_code
            token = client.step(base64.b64decode(challenge.split(" ", 1)[1]))


def test_ntlm_over_https_checks_channel_bindings_relaxed(tmp_path: Path) -> None:
    with start_lab(_one_host_lab(tmp_path / "p", "127.0.3.13"), password="pw-4",
                   scheme="https", state_dir=tmp_path / "s") as lab:
        endpoint = lab.hosts["solo.lab.example"].endpoint
        ca_file = str(lab.ca_file)
        wrong = GssChannelBindings(application_data=b"tls-server-end-point:" + b"\x00" * 32)
        assert _ntlm_handshake(endpoint, ca_file, wrong) == 401
        assert _ntlm_handshake(endpoint, ca_file, None) == 200
        assert lab.server("solo.lab.example").stats["channel_bindings_verified"] == 0
        # pywinrm (requests_ntlm) sends the real bindings, and they are checked.
        assert b'"Stopped"' in _logon(endpoint, USER, "pw-4", ca_file)
        assert lab.server("solo.lab.example").stats["channel_bindings_verified"] == 1
