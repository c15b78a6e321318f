"""The simulated Windows lab, run as a process and driven by the real pywinrm client.

Each lab is started with ``python -m agent.lab.server`` in a temporary state directory and
stopped by PID (SIGTERM, then SIGKILL); the tests talk to it over real HTTP(S) with real Basic or
NTLM authentication and NTLM message encryption. All traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import spnego
import winrm
import yaml
from cryptography import x509
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WSManFaultError

from agent.factscripts import SCRIPTS, by_name, scripts_for
from agent.lab import load_lab

pytestmark = pytest.mark.needs_server

REPO = Path(__file__).resolve().parent.parent
USER = "LAB\\mfa-scan"
START_TIMEOUT = 120.0  # bounds a failure only: a busy machine may take long
STOP_TIMEOUT = 5.0


@dataclass
class RunningLab:
    """A lab process and what it wrote into its state directory."""

    process: subprocess.Popen[bytes]
    state_dir: Path
    ready: dict[str, Any]
    password: str

    def endpoint(self, host: str) -> str:
        return str(self.ready["hosts"][host]["endpoint"])


def _start(state_dir: Path, *args: str, password: str | None = None) -> RunningLab:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("MFA_LAB_PASSWORD", None)
    if password is not None:
        env["MFA_LAB_PASSWORD"] = password
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.lab.server", "--state-dir", str(state_dir), *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    ready_file = state_dir / "ready"
    deadline = time.monotonic() + START_TIMEOUT
    while not ready_file.exists():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the lab exited with {process.returncode}: {err.decode()}")
        if time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"the lab was not ready within {START_TIMEOUT} s")
        time.sleep(0.05)
    ready = json.loads(ready_file.read_text())
    env_line = (state_dir / "lab.env").read_text().strip()
    return RunningLab(process, state_dir, ready, env_line.split("=", 1)[1])


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    process.communicate()
    return process.returncode


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """The built-in lab over http (NTLM + message encryption); the password is generated."""
    running = _start(tmp_path_factory.mktemp("lab-http"), "--scheme", "http")
    yield running
    _stop(running.process)


@pytest.fixture(scope="module")
def https_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """The built-in lab over https with its own CA; the password comes from the environment."""
    running = _start(tmp_path_factory.mktemp("lab-https"), "--scheme", "https",
                     password="Pa55-from-env")
    yield running
    _stop(running.process)


FAULT_HOSTS: dict[str, dict[str, Any]] = {
    "slow": {"faults": {"slow_seconds": 2.5}},
    "reset": {"faults": {"reset": True}},
    "denied": {"faults": {"wsman_fault": True}},
    "pserror": {"faults": {"powershell_error": True}},
    "garbage": {"faults": {"garbage_output": True}},
    "short": {"faults": {"max_command_line": 5000}},
    "split": {"faults": {"split_output_bytes": 64}},
    "errors": {"fact_errors": {"adfs_providers": "Get-AdfsAuthenticationProvider : Access is "
                                                 "denied."}},
}
FAULT_FACTS: dict[str, Any] = {
    "os": {"caption": "Microsoft Windows Server 2019 Datacenter", "version": "10.0.17763",
           "build_number": "17763", "product_type": 3},
    "mfa_server": {"installed": False, "display_name": None, "version": None,
                   "install_path": None},
    "ip_addresses": {"addresses": ["10.10.9.9", "127.0.0.1"]},
    "adfs": {"feature_install_state": "Installed", "service_status": "Running",
             "service_account": "LAB\\svc-adfs"},
}


def write_fault_profiles(directory: Path) -> Path:
    """One host per fault, on 127.0.2.x, all with the adfs role."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, (name, extra) in enumerate(FAULT_HOSTS.items(), start=1):
        profile = {"name": f"{name}.lab.example", "address": f"127.0.2.{index}",
                   "roles": ["adfs"], "facts": FAULT_FACTS, **extra}
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(profile))
    return directory


@pytest.fixture(scope="module")
def fault_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """A lab of misbehaving hosts, over http."""
    profiles = write_fault_profiles(tmp_path_factory.mktemp("fault-profiles"))
    running = _start(tmp_path_factory.mktemp("lab-faults"), "--profiles", str(profiles))
    yield running
    _stop(running.process)


def ntlm(lab: RunningLab, host: str, **kwargs: Any) -> winrm.Protocol:
    options: dict[str, Any] = {"read_timeout_sec": 10, "operation_timeout_sec": 5,
                               "ca_trust_path": None}
    options.update(kwargs)
    password = options.pop("password", lab.password)
    endpoint = options.pop("endpoint", lab.endpoint(host))
    return winrm.Protocol(endpoint, transport="ntlm", username=USER, password=password,
                          **options)


def run(protocol: winrm.Protocol, shell: str, command: str) -> tuple[bytes, bytes, int]:
    command_id = protocol.run_command(shell, command)
    try:
        return protocol.get_command_output(shell, command_id)
    finally:
        protocol.cleanup_command(shell, command_id)


def expected_entries(host: str, script: str) -> dict[str, Any]:
    profile = load_lab().host(host)
    fact_script = by_name(script)
    assert fact_script is not None
    entries: dict[str, Any] = {}
    for fact in fact_script.facts:
        if fact in profile.fact_errors:
            entries[fact] = {"error": profile.fact_errors[fact]}
        elif fact in profile.facts:
            entries[fact] = {"value": profile.facts[fact]}
    return entries


REACHABLE = ["adfs01.lab.example", "adfs02.lab.example", "mfa01.lab.example",
             "portal01.lab.example", "sync01.lab.example"]


@pytest.mark.parametrize("host", REACHABLE)
def test_fact_scripts_answer_the_profile_over_ntlm_encryption(lab: RunningLab, host: str) -> None:
    profile = load_lab().host(host)
    protocol = ntlm(lab, host)
    shell = protocol.open_shell()
    try:
        for script in scripts_for(frozenset(profile.roles)):
            out, err, code = run(protocol, shell, script.command_line())
            assert (code, err) == (0, b"")
            document = json.loads(out)
            assert set(document) == set(script.facts)
            clock = document.pop("clock", None)
            assert document == expected_entries(host, script.name)
            if clock is not None:
                host_utc = datetime.fromisoformat(clock["value"]["host_utc"])
                expected = datetime.now(UTC) + timedelta(seconds=profile.clock_skew_seconds)
                assert abs((host_utc - expected).total_seconds()) < 5
    finally:
        protocol.close_shell(shell)


def test_a_fact_the_profile_lacks_is_an_error_entry(lab: RunningLab) -> None:
    portal = by_name("portal")
    assert portal is not None
    protocol = ntlm(lab, "adfs01.lab.example")
    shell = protocol.open_shell()
    out, _, code = run(protocol, shell, portal.command_line())
    protocol.close_shell(shell)
    assert code == 0
    document = json.loads(out)
    assert "not found" in document["iis"]["error"]
    assert "not found" in document["aspnet_v2"]["error"]


class Capture:
    """A TCP relay on 127.0.0.1 that records every byte in both directions."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sent = bytearray()
        self.received = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, self.sent),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.received),
                             daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray) -> None:
        try:
            while data := source.recv(65536):
                record.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def test_ntlm_over_http_encrypts_every_message(lab: RunningLab) -> None:
    host = lab.ready["hosts"]["adfs01.lab.example"]
    capture = Capture((host["address"], host["port"]))
    try:
        protocol = ntlm(lab, "adfs01.lab.example",
                        endpoint=f"http://127.0.0.1:{capture.port}/wsman")
        shell = protocol.open_shell()
        base = by_name("base")
        assert base is not None
        out, _, code = run(protocol, shell, base.command_line())
        protocol.close_shell(shell)
    finally:
        capture.close()
    assert code == 0
    assert b"Microsoft Windows Server 2012" in out
    sent, received = bytes(capture.sent), bytes(capture.received)
    for wire in (sent, received):
        assert b"Content-Type: multipart/encrypted;" in wire
        assert b'protocol="application/HTTP-SPNEGO-session-encrypted"' in wire
        for plaintext in (b"Envelope", b"ShellId", b"CommandId", b"Windows Server"):
            assert plaintext not in wire
    assert base.command_line().encode()[-40:] not in sent
    assert sent.count(b"Authorization: Negotiate ") == 2  # NTLM type 1 and 3, then none


def test_basic_over_http_is_refused_like_allow_unencrypted_false(lab: RunningLab) -> None:
    protocol = winrm.Protocol(lab.endpoint("adfs01.lab.example"), transport="basic",
                              username=USER, password=lab.password, ca_trust_path=None)
    with pytest.raises(InvalidCredentialsError):
        protocol.open_shell()


@pytest.mark.parametrize(("host", "bad_password"), [
    ("mfa02.lab.example", False),
    ("adfs01.lab.example", True),
])
def test_wrong_password_is_invalid_credentials(lab: RunningLab, host: str,
                                               bad_password: bool) -> None:
    password = "not-the-password" if bad_password else lab.password
    with pytest.raises(InvalidCredentialsError):
        ntlm(lab, host, password=password).open_shell()


def test_a_hung_host_times_out_on_read(lab: RunningLab) -> None:
    protocol = ntlm(lab, "portal02.lab.example", read_timeout_sec=2, operation_timeout_sec=1)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        protocol.open_shell()
    # It waited for the read timeout (2 s), and then stopped (the upper bound only bounds a hang).
    assert 1.5 < time.monotonic() - started < 30


def test_unknown_shell_is_an_invalid_selectors_fault(lab: RunningLab) -> None:
    protocol = ntlm(lab, "sync01.lab.example")
    with pytest.raises(WSManFaultError) as raised:
        protocol.run_command("0BAD5E11-0000-0000-0000-000000000000", "ipconfig")
    assert raised.value.fault_subcode == "w:InvalidSelectors"
    assert raised.value.wsman_fault_code == 2150858843


def test_an_unrecognised_command_fails_like_powershell(lab: RunningLab) -> None:
    session = winrm.Session(lab.endpoint("sync01.lab.example"), auth=(USER, lab.password),
                            transport="ntlm", ca_trust_path=None)
    result = session.run_ps("Get-Nothing -Name x")
    assert result.status_code == 1
    assert result.std_out == b""
    assert result.std_err.startswith(b"Get-Nothing : The term 'Get-Nothing' is not recognized "
                                     b"as the name of a cmdlet")
    # run_ps (a fresh shell and connection per call) also runs the agent's scripts.
    adsync = by_name("adsync")
    assert adsync is not None
    result = session.run_ps(adsync.text())
    assert result.status_code == 0
    assert json.loads(result.std_out) == {"adsync": {"value": {"service_status": "Running"}}}


def test_the_inventory_names_every_host_and_never_the_password(lab: RunningLab) -> None:
    inventory_path = Path(lab.ready["inventory"])
    inventory = yaml.safe_load(inventory_path.read_text())
    reference = yaml.safe_load((REPO / "inventory" / "lab.yaml").read_text())
    common = inventory["all"]["vars"]
    assert common["ansible_password"] == "{{ lookup('env', 'MFA_LAB_PASSWORD') }}"
    assert common["ansible_user"] == USER
    assert common["ansible_winrm_transport"] == "ntlm"
    assert common["ansible_winrm_scheme"] == "http"
    for key in ("mfa_networks", "mfa_deployment"):
        assert common[key] == reference["all"]["vars"][key]
    assert set(inventory["all"]["children"]) == set(reference["all"]["children"])
    for group, body in reference["all"]["children"].items():
        hosts = inventory["all"]["children"][group]["hosts"]
        assert set(hosts) == set(body["hosts"])
        for name, host_vars in hosts.items():
            assert host_vars["ansible_host"] == body["hosts"][name]["ansible_host"]
            assert host_vars["ansible_port"] == lab.ready["hosts"][name]["port"]
    env_file = lab.state_dir / "lab.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert len(lab.password) >= 16
    for path in lab.state_dir.iterdir():
        if path.is_file() and path.name != "lab.env" and not path.name.startswith("ntlm-users"):
            assert lab.password not in path.read_text(errors="replace"), path.name


# -- faults --


def test_a_slow_command_finishes_after_operation_timeouts(fault_lab: RunningLab) -> None:
    base = by_name("base")
    assert base is not None
    protocol = ntlm(fault_lab, "slow.lab.example", read_timeout_sec=2, operation_timeout_sec=1)
    shell = protocol.open_shell()
    started = time.monotonic()
    command = protocol.run_command(shell, base.command_line())
    with pytest.raises(WinRMOperationTimeoutError):
        protocol.get_command_output_raw(shell, command)
    out, _, code = protocol.get_command_output(shell, command)  # retries silently
    elapsed = time.monotonic() - started
    protocol.cleanup_command(shell, command)
    protocol.close_shell(shell)
    assert code == 0
    assert json.loads(out)["os"]["value"] == FAULT_FACTS["os"]
    assert 2.4 < elapsed < 30  # the 2.5 s command was waited for; the upper bound bounds a hang


def test_a_reset_connection_is_a_connection_error(fault_lab: RunningLab) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        ntlm(fault_lab, "reset.lab.example").open_shell()


def test_a_wsman_fault_on_create(fault_lab: RunningLab) -> None:
    with pytest.raises(WSManFaultError) as raised:
        ntlm(fault_lab, "denied.lab.example").open_shell()
    fault = raised.value
    assert (fault.code, fault.fault_subcode, fault.wsman_fault_code) == (500, "w:AccessDenied", 5)
    assert fault.reason == "Access is denied."


def test_a_powershell_error_is_clixml_on_stderr(fault_lab: RunningLab) -> None:
    base = by_name("base")
    assert base is not None
    protocol = ntlm(fault_lab, "pserror.lab.example")
    shell = protocol.open_shell()
    out, err, code = run(protocol, shell, base.command_line())
    protocol.close_shell(shell)
    assert (out, code) == (b"", 1)
    assert err.startswith(b"#< CLIXML\r\n<Objs ")
    cleaned = winrm.Session("http://127.0.0.1/wsman", auth=("u", "p"))._clean_error_msg(err)
    assert cleaned.startswith(b"Cannot invoke method.")


def test_garbage_output_is_not_json(fault_lab: RunningLab) -> None:
    base = by_name("base")
    assert base is not None
    protocol = ntlm(fault_lab, "garbage.lab.example")
    shell = protocol.open_shell()
    out, _, code = run(protocol, shell, base.command_line())
    protocol.close_shell(shell)
    assert code == 0
    assert b"Name" in out
    with pytest.raises(ValueError):  # noqa: PT011 - json's error is a ValueError
        json.loads(out)


def test_a_command_line_over_the_limit_is_too_long(fault_lab: RunningLab) -> None:
    protocol = ntlm(fault_lab, "short.lab.example")
    shell = protocol.open_shell()
    results = {s.name: run(protocol, shell, s.command_line()) for s in SCRIPTS}
    protocol.close_shell(shell)
    for script in SCRIPTS:
        out, err, code = results[script.name]
        if len(script.command_line()) > 5000:
            assert (out, err, code) == (b"", b"The command line is too long.\r\n", 1)
        else:
            assert code == 0
            assert json.loads(out)


def test_split_output_arrives_over_several_receives(fault_lab: RunningLab) -> None:
    base = by_name("base")
    assert base is not None
    protocol = ntlm(fault_lab, "split.lab.example")
    shell = protocol.open_shell()
    command = protocol.run_command(shell, base.command_line())
    pieces: list[bytes] = []
    done = False
    while not done:
        out, _, code, done = protocol.get_command_output_raw(shell, command)
        pieces.append(out)
    protocol.cleanup_command(shell, command)
    protocol.close_shell(shell)
    assert len(pieces) > 3
    assert all(len(p) <= 64 for p in pieces)
    assert code == 0
    assert json.loads(b"".join(pieces))["os"]["value"] == FAULT_FACTS["os"]


def test_fact_errors_are_reported_per_fact(fault_lab: RunningLab) -> None:
    adfs = by_name("adfs")
    assert adfs is not None
    protocol = ntlm(fault_lab, "errors.lab.example")
    shell = protocol.open_shell()
    out, _, code = run(protocol, shell, adfs.command_line())
    protocol.close_shell(shell)
    assert code == 0
    document = json.loads(out)
    assert set(document) == set(adfs.facts)
    assert document["adfs"] == {"value": FAULT_FACTS["adfs"]}
    assert document["adfs_providers"] == {
        "error": "Get-AdfsAuthenticationProvider : Access is denied."}
    # a fact the profile has no value for is a read error of that fact alone
    assert all("not found on this host" in document[f]["error"]
               for f in adfs.facts if f not in {"adfs", "adfs_providers"})


# -- https --


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_https_with_the_lab_ca(https_lab: RunningLab, transport: str) -> None:
    assert https_lab.password == "Pa55-from-env"
    ca_file = https_lab.ready["ca_file"]
    inventory = yaml.safe_load(Path(https_lab.ready["inventory"]).read_text())
    assert inventory["all"]["vars"]["ansible_winrm_ca_trust_path"] == ca_file
    assert inventory["all"]["vars"]["ansible_winrm_scheme"] == "https"
    endpoint = https_lab.endpoint("sync01.lab.example")
    assert endpoint.startswith("https://127.0.1.41:")
    protocol = winrm.Protocol(endpoint, transport=transport, username=USER,
                              password=https_lab.password, ca_trust_path=ca_file,
                              server_cert_validation="validate")
    shell = protocol.open_shell()
    adsync = by_name("adsync")
    assert adsync is not None
    out, _, code = run(protocol, shell, adsync.command_line())
    protocol.close_shell(shell)
    assert code == 0
    assert json.loads(out) == {"adsync": {"value": {"service_status": "Running"}}}


def test_each_https_host_presents_a_certificate_naming_itself(https_lab: RunningLab) -> None:
    """As real hosts do: its name and its address, verified by either, and no other host's."""
    context = ssl.create_default_context(cafile=https_lab.ready["ca_file"])
    names = sorted(https_lab.ready["hosts"])
    for name in names[:3]:
        host = https_lab.ready["hosts"][name]
        for server_name in (host["address"], name):
            # The name resolves nowhere: connect to the address, verify the certificate as `name`.
            with socket.create_connection((host["address"], host["port"]), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
        assert der is not None
        sans = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [name]
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == [host["address"]]
    other = https_lab.ready["hosts"][names[1]]
    with socket.create_connection((other["address"], other["port"]), timeout=10) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(raw, server_hostname=names[0])


def test_https_is_refused_without_the_lab_ca(https_lab: RunningLab) -> None:
    protocol = winrm.Protocol(https_lab.endpoint("sync01.lab.example"), transport="basic",
                              username=USER, password=https_lab.password, ca_trust_path=None,
                              server_cert_validation="validate")
    with pytest.raises(requests.exceptions.SSLError):
        protocol.open_shell()


def test_spnego_negotiate_tokens_are_accepted(https_lab: RunningLab) -> None:
    endpoint = https_lab.endpoint("adfs02.lab.example")
    client = spnego.client(USER, https_lab.password, protocol="negotiate",
                           options=spnego.NegotiateOptions.use_negotiate)
    create = winrm.Protocol(endpoint, username=USER, password="x")
    with requests.Session() as http:
        body = _create_shell_body(create)
        token = client.step()
        assert token is not None
        assert token[:1] == b"\x60"
        while True:
            response = http.post(endpoint, data=body, verify=https_lab.ready["ca_file"], headers={
                "Authorization": "Negotiate " + base64.b64encode(token).decode(),
                "Content-Type": "application/soap+xml;charset=UTF-8",
            })
            if response.status_code != 401:
                break
            challenge = response.headers["WWW-Authenticate"].split(" ", 1)[1]
            token = client.step(base64.b64decode(challenge))
            assert token is not None
        assert response.status_code == 200, response.status_code
        final = response.headers.get("WWW-Authenticate")
        if final:
            client.step(base64.b64decode(final.split(" ", 1)[1]))
        assert client.complete
        assert b'Name="ShellId"' in response.content


def _create_shell_body(protocol: winrm.Protocol) -> bytes:
    captured: list[bytes] = []

    def keep(message: str) -> bytes:
        captured.append(message.encode())
        raise RuntimeError("captured")

    protocol.send_message = keep  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        protocol.open_shell()
    return captured[0]


# -- the process --


def test_the_process_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "one.yaml").write_text(yaml.safe_dump(
        {"name": "one.lab.example", "address": "127.0.2.200", "roles": ["adfs"]}))
    state = tmp_path / "state"
    running = _start(state, "--profiles", str(profiles), password="Given-Pw")
    assert running.password == "Given-Pw"
    assert any(p.name.startswith("ntlm-users") for p in state.iterdir())
    assert _stop(running.process) == 0
    assert not (state / "ready").exists()
    assert not any(p.name.startswith("ntlm-users") for p in state.iterdir())


def test_invalid_profiles_exit_with_code_3(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "bad.yaml").write_text("name: bad.lab.example\naddress: 10.0.0.1\ncolour: red\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "agent.lab.server", "--state-dir", str(tmp_path / "s"),
         "--profiles", str(profiles)],
        cwd=REPO, env=env, capture_output=True, timeout=20, check=False,
    )
    assert result.returncode == 3
    assert b"bad.yaml:3: [colour] unknown key 'colour'" in result.stderr
    assert b"loopback" in result.stderr
