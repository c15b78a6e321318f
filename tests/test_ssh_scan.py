"""End-to-end live scans over SSH: real sshd on loopback, the real paramiko connector.

Each simulated host is an OpenSSH server (see `sshfixtures`) whose sessions run the
``powershell`` stand-in: it answers the fact scripts from a host profile through the same
`agent.lab.simulate.run_command_line` as the WS-Management lab. So a profile scanned over SSH must
give exactly the facts and results it gives over WinRM — asserted here against the WinRM lab.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import CliRun

pytest.register_assert_rewrite("labfixtures", "sshfixtures")  # before importing: helpers assert
from labfixtures import (  # noqa: E402
    BUILTIN_STATUSES,
    FAST_TIMEOUTS,
    LabProcess,
    Report,
    inventory_variant,
)
from sshfixtures import (  # noqa: E402
    BASTION,
    FAST_SSH_TIMEOUTS,
    HEALTHY,
    HEALTHY_STATUSES,
    JUMP_TARGET,
    PASSPHRASE_LOOKUP,
    PASSWORD_LOOKUP,
    SshLab,
    SshServer,
    expected_facts,
    fingerprint,
    host_vars,
)

from agent.connectors import ssh as ssh_connector  # noqa: E402
from agent.connectors.common import Timeouts  # noqa: E402
from agent.connectors.errors import ConnectorError, ErrorKind  # noqa: E402
from agent.inventory.sshargs import Jump  # noqa: E402
from agent.lab import builtin_profiles_dir  # noqa: E402

pytest_plugins = ("labfixtures", "sshfixtures")
pytestmark = pytest.mark.needs_server

Runner = Callable[..., CliRun]
UseLab = Callable[[LabProcess], str]


def _scan(run_cli: Runner, inventory: Path, *options: str) -> Report:
    result = run_cli("scan", "-i", str(inventory), "--format", "json", *options)
    report = Report.parse(result.out)
    assert result.code == report.exit_code, result.err
    return report


def _facts(path: Path) -> dict[str, dict[str, Any]]:
    """Host → facts of a facts file."""
    hosts = json.loads(path.read_text())["hosts"]
    return {name: entry["facts"] for name, entry in hosts.items()}


def _without_clock(facts: dict[str, Any]) -> dict[str, Any]:
    clock = facts["clock"]["value"]
    assert set(clock) == {"host_utc", "agent_utc"}, clock
    return {fact: entry for fact, entry in facts.items() if fact != "clock"}


# -- signing in ------------------------------------------------------------------------------------

#: How the scan signs in → (host variables, what sshd logs on success: method and key).
AUTH_METHODS = ["password", "key file", "encrypted key file", "ssh-agent"]


@pytest.mark.parametrize("method", AUTH_METHODS)
def test_a_scan_over_ssh_reads_the_host(
    method: str, ssh: SshLab, run_cli: Runner, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = ssh.servers[JUMP_TARGET]
    auth: dict[str, Any] = {}
    if method == "password":
        auth = {"ansible_password": PASSWORD_LOOKUP}
        accepted = f"Accepted password for {ssh.user.name} "
    elif method == "key file":
        auth = {"ansible_ssh_private_key_file": str(ssh.key)}
        accepted = f"Accepted publickey for {ssh.user.name} "
    elif method == "encrypted key file":
        auth = {"ansible_ssh_private_key_file": str(ssh.encrypted_key),
                "mfa_ssh_key_passphrase": PASSPHRASE_LOOKUP}
        accepted = f"Accepted publickey for {ssh.user.name} "
    else:
        request.getfixturevalue("ssh_agent")  # SSH_AUTH_SOCK: an agent holding the agent key
        accepted = f"Accepted publickey for {ssh.user.name} "
    key = {"key file": ssh.key, "encrypted key file": ssh.encrypted_key,
           "ssh-agent": ssh.agent_key}.get(method)
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        HEALTHY: (["adfs"], host_vars(server, known_hosts=ssh.known_hosts, **auth)),
    })
    logged = len(server.log())

    report = _scan(run_cli, inventory, "--save-facts", str(tmp_path / "facts.json"),
                   *FAST_SSH_TIMEOUTS)

    assert report.error(HEALTHY) is None
    assert report.statuses(HEALTHY) == HEALTHY_STATUSES
    assert report.exit_code == 0
    host = report.hosts[HEALTHY]
    assert host["connection"] == f"ssh/powershell on port {server.port}"
    assert host["address"] == server.address
    assert host["trust_notes"] == []
    facts = _facts(tmp_path / "facts.json")[HEALTHY]
    assert server.profile is not None
    assert _without_clock(facts) == expected_facts(server.profile)
    # sshd saw the method (and, for keys, exactly that key) sign in.
    log = server.log()[logged:]
    assert accepted in log, log
    if key is not None:
        assert fingerprint(key.with_suffix(".pub")) in log.split(accepted, 1)[1].splitlines()[0]


def test_key_file_problems_are_configuration_errors(
    ssh: SshLab, run_cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_PASSPHRASE", "Not-The-Passphrase-4711")
    server = ssh.servers[JUMP_TARGET]
    encrypted, plain = str(ssh.encrypted_key), str(ssh.key)
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        "no-passphrase": (["adfs"], host_vars(server, known_hosts=ssh.known_hosts,
                                              ansible_ssh_private_key_file=encrypted)),
        "wrong-passphrase": (["adfs"], host_vars(
            server, known_hosts=ssh.known_hosts, ansible_ssh_private_key_file=encrypted,
            mfa_ssh_key_passphrase="{{ lookup('env', 'WRONG_PASSPHRASE') }}")),
        # A passphrase for a key without one is ignored, as OpenSSH ignores it.
        HEALTHY: (["adfs"], host_vars(server, known_hosts=ssh.known_hosts,
                                      ansible_ssh_private_key_file=plain,
                                      mfa_ssh_key_passphrase=PASSPHRASE_LOOKUP)),
    })
    report = _scan(run_cli, inventory, *FAST_SSH_TIMEOUTS)
    assert report.error("no-passphrase") == (
        f"the key {encrypted} is encrypted: set mfa_ssh_key_passphrase for this host")
    assert report.host_error_kind("no-passphrase") == "configuration"
    assert report.error("wrong-passphrase") == (
        f"cannot load the key {encrypted}: wrong passphrase or unreadable key")
    assert report.host_error_kind("wrong-passphrase") == "configuration"
    assert report.error(HEALTHY) is None
    assert report.statuses(HEALTHY) == HEALTHY_STATUSES


# -- the same host over WinRM and over SSH ---------------------------------------------------------


def test_winrm_and_ssh_give_the_same_facts_and_results(
    builtin_lab: LabProcess, ssh: SshLab, run_cli: Runner, use_lab: UseLab, tmp_path: Path
) -> None:
    use_lab(builtin_lab)
    hosts = sorted(BUILTIN_STATUSES)  # every built-in host that answers over WinRM
    limit = ("--limit", ",".join(hosts))
    over_winrm = _scan(run_cli, builtin_lab.inventory, *limit, "--save-facts",
                       str(tmp_path / "winrm.json"), *FAST_TIMEOUTS)

    ssh_inventory = inventory_variant(
        builtin_lab.inventory, tmp_path / "ssh.yaml",
        common={"ansible_connection": "ssh", "ansible_user": ssh.user.name,
                "ansible_password": PASSWORD_LOOKUP},
        drop=("ansible_winrm_transport", "ansible_winrm_scheme",
              "ansible_winrm_server_cert_validation", "ansible_winrm_ca_trust_path"),
        host_vars={name: host_vars(ssh.servers[name.split(".")[0]], known_hosts=ssh.known_hosts)
                   for name in hosts},
    )
    over_ssh = _scan(run_cli, ssh_inventory, *limit, "--save-facts", str(tmp_path / "ssh.json"),
                     *FAST_SSH_TIMEOUTS)

    for host in hosts:
        assert over_ssh.hosts[host]["connection"].startswith("ssh/")
        assert over_winrm.hosts[host]["connection"].startswith("winrm/")
        assert over_ssh.error(host) is over_winrm.error(host) is None
        assert over_ssh.statuses(host) == BUILTIN_STATUSES[host]
    winrm_facts, ssh_facts = _facts(tmp_path / "winrm.json"), _facts(tmp_path / "ssh.json")
    assert set(ssh_facts) == set(winrm_facts) == set(hosts)
    for host in hosts:
        assert _without_clock(ssh_facts[host]) == _without_clock(winrm_facts[host]), host
        # and both are the profile's, non-ASCII captions included (©, Cyrillic, Japanese)
        profile = builtin_profiles_dir() / f"{host.split('.')[0]}.yaml"
        assert _without_clock(ssh_facts[host]) == expected_facts(profile), host
    captions = {ssh_facts[h]["os"]["value"]["caption"] for h in hosts}
    assert {"Microsoft Windows Server 2019 Standard ©",
            "Майкрософт Windows Server 2012 R2 Datacenter",
            "Microsoft Windows Server 2012 R2 Datacenter 評価版"} <= captions
    winrm_outcomes, ssh_outcomes = over_winrm.outcomes(), over_ssh.outcomes()
    assert set(ssh_outcomes) == set(winrm_outcomes)
    for (check, target), (status, reason) in winrm_outcomes.items():
        # The measured clock skew differs by the milliseconds between the scans.
        expected = (status,) if check == "clock-skew" else (status, reason)
        assert ssh_outcomes[check, target][:len(expected)] == expected, (check, target)
    assert over_ssh.exit_code == over_winrm.exit_code


# -- through a jump host ---------------------------------------------------------------------------


def test_a_scan_through_a_jump_host(ssh: SshLab, run_cli: Runner, tmp_path: Path) -> None:
    bastion, target = ssh.servers[BASTION], ssh.servers[JUMP_TARGET]
    args = f"-o ProxyJump={bastion.jump}"
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        HEALTHY: (["adfs"], host_vars(target, known_hosts=ssh.known_hosts, args=args,
                                      ansible_ssh_private_key_file=str(ssh.key))),
    })
    logged = len(bastion.log()), len(target.log())
    report = _scan(run_cli, inventory, "--save-facts", str(tmp_path / "facts.json"),
                   *FAST_SSH_TIMEOUTS)
    assert report.error(HEALTHY) is None
    assert report.statuses(HEALTHY) == HEALTHY_STATUSES
    assert target.profile is not None
    assert _without_clock(_facts(tmp_path / "facts.json")[HEALTHY]) == expected_facts(
        target.profile)
    assert f"Accepted publickey for {ssh.bastion_user.name} " in bastion.log()[logged[0]:]
    assert f"Accepted publickey for {ssh.user.name} " in target.log()[logged[1]:]


def test_the_bastion_host_key_is_verified_too(
    ssh: SshLab, run_cli: Runner, tmp_path: Path
) -> None:
    bastion, target = ssh.servers[BASTION], ssh.servers[JUMP_TARGET]
    # The target's key is known, the bastion's is not.
    known = ssh.write_known_hosts(tmp_path / "known_hosts", [target])
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        "behind-bastion": (["adfs"], host_vars(
            target, known_hosts=known, args=f"-o ProxyJump={bastion.jump}",
            ansible_ssh_private_key_file=str(ssh.key))),
        HEALTHY: (["adfs"], host_vars(target, known_hosts=known,
                                      ansible_ssh_private_key_file=str(ssh.key))),
    })
    logged = len(bastion.log())
    report = _scan(run_cli, inventory, *FAST_SSH_TIMEOUTS)
    name = bastion.known_hosts_name
    assert report.error("behind-bastion") == (
        f"host key of {name} is not in known_hosts: ssh-ed25519 {bastion.fingerprint()} — "
        f"verify it, then add it (ssh-keyscan -p {bastion.port} {bastion.address} >> "
        "known_hosts), or opt in with -o StrictHostKeyChecking=accept-new")
    assert report.host_error_kind("behind-bastion") == "host-key-unknown"
    assert "Accepted" not in bastion.log()[logged:]  # nothing was sent to an unverified bastion
    assert report.error(HEALTHY) is None
    assert report.statuses(HEALTHY) == HEALTHY_STATUSES


def _assert_all_read_within_max_startups(report: Report, names: list[str], server: SshServer,
                                         user: str) -> None:
    """Every host read and healthy, each signed in to `server` once, none dropped by sshd."""
    assert {name: report.error(name) for name in names} == dict.fromkeys(names)
    assert all(report.statuses(name) == HEALTHY_STATUSES for name in names)
    log = server.log()
    assert log.count(f"Accepted publickey for {user} ") == len(names)
    assert "MaxStartups" not in log, log


def test_many_hosts_through_one_bastion_stay_within_its_max_startups(
    ssh: SshLab, run_cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sshd drops unauthenticated connections past MaxStartups: here 3, and the agent is held
    to 2 sign-ins with one bastion at a time while 12 hosts behind it are read at once."""
    target = ssh.servers[JUMP_TARGET]
    bastion = ssh.start_bastion("strict-bastion", [target], max_startups="3:100:3")
    monkeypatch.setattr(ssh_connector, "HANDSHAKES_PER_SERVER", 2)
    monkeypatch.setattr(ssh_connector, "_gates", {})
    known = ssh.write_known_hosts(tmp_path / "known_hosts", [target, bastion])
    names = [f"behind-{i}.lab.example" for i in range(12)]
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        name: (["adfs"], host_vars(target, known_hosts=known, args=f"-J {bastion.jump}",
                                   ansible_ssh_private_key_file=str(ssh.key)))
        for name in names
    })
    report = _scan(run_cli, inventory, "--workers", "12", *FAST_SSH_TIMEOUTS)
    _assert_all_read_within_max_startups(report, names, bastion, ssh.bastion_user.name)


def test_a_host_that_waits_past_its_deadline_for_the_bastion_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ssh_connector, "_gates", {})
    chain = [Jump("192.0.2.1", 22, "audit")]
    later = time.monotonic() + 60
    with contextlib.ExitStack() as places:
        for _ in range(ssh_connector.HANDSHAKES_PER_SERVER):
            places.enter_context(
                ssh_connector.sign_in_gate(chain, deadline=later, bastion=True))
        with pytest.raises(ConnectorError) as waited, \
                ssh_connector.sign_in_gate(chain, deadline=time.monotonic(), bastion=True):
            pass
        # Another chain to a bastion of the same name is another bastion.
        with ssh_connector.sign_in_gate([Jump("192.0.2.9", 22, None), *chain],
                                        deadline=time.monotonic(), bastion=True):
            pass
    assert waited.value.kind is ErrorKind.TIMED_OUT
    assert waited.value.message == (
        "timed out waiting for a turn to sign in to bastion 192.0.2.1:22 (at most 8 sign-ins "
        "with one bastion at a time)")
    with ssh_connector.sign_in_gate(chain, deadline=time.monotonic(), bastion=True):
        pass  # every place was given back
    assert ssh_connector._gates == {}  # and nothing is kept for a server nobody waits for


def test_a_server_remembered_as_silent_is_refused_until_its_time_is_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ssh_connector, "_gates", {})
    chain = [Jump("192.0.2.1", 22, "audit")]
    why = "timed out waiting for 192.0.2.1:22: no SSH handshake within 2 s"
    with ssh_connector.sign_in_gate(chain, deadline=time.monotonic() + 60, bastion=False) as gate:
        gate.mark_silent(why, 60)
    assert list(ssh_connector._gates) == [(("192.0.2.1", 22),)]  # kept for the mark alone
    for bastion in (False, True):
        with pytest.raises(ConnectorError) as refused, ssh_connector.sign_in_gate(
                chain, deadline=time.monotonic() + 60, bastion=bastion):
            pass
        what = "bastion 192.0.2.1:22" if bastion else "192.0.2.1:22"
        assert refused.value.kind is ErrorKind.TIMED_OUT
        assert refused.value.message == (
            f"not tried: {what} did not answer another host of this scan ({why}); it is tried "
            "again in 60 s")
    assert gate.silent is not None
    gate.silent = (why, time.monotonic() - 1)  # its time is up
    with ssh_connector.sign_in_gate(chain, deadline=time.monotonic() + 60, bastion=False):
        pass  # tried again
    assert gate.silent is None and ssh_connector._gates == {}


def test_many_inventory_hosts_on_one_sshd_stay_within_its_max_startups(
    ssh: SshLab, run_cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve inventory hosts that are one sshd (MaxStartups 3), read at once: the agent holds
    itself to 2 sign-ins with it at a time."""
    profile = ssh.servers[JUMP_TARGET].profile
    assert profile is not None
    server = ssh.start_host("strict-host", profile, max_startups="3:100:3")
    monkeypatch.setattr(ssh_connector, "HANDSHAKES_PER_SERVER", 2)
    monkeypatch.setattr(ssh_connector, "_gates", {})
    known = ssh.write_known_hosts(tmp_path / "known_hosts", [server])
    names = [f"alias-{i}.lab.example" for i in range(12)]
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        name: (["adfs"], host_vars(server, known_hosts=known,
                                   ansible_ssh_private_key_file=str(ssh.key)))
        for name in names
    })
    report = _scan(run_cli, inventory, "--workers", "12", *FAST_SSH_TIMEOUTS)
    _assert_all_read_within_max_startups(report, names, server, ssh.user.name)


def test_a_host_that_waits_past_its_deadline_for_its_server_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ssh_connector, "_gates", {})
    chain = [Jump("192.0.2.1", 22, "audit")]
    with contextlib.ExitStack() as places:
        for _ in range(ssh_connector.HANDSHAKES_PER_SERVER):
            places.enter_context(ssh_connector.sign_in_gate(
                chain, deadline=time.monotonic() + 60, bastion=False))
        with pytest.raises(ConnectorError) as waited, \
                ssh_connector.sign_in_gate(chain, deadline=time.monotonic(), bastion=False):
            pass
    assert waited.value.kind is ErrorKind.TIMED_OUT
    assert waited.value.message == (
        "timed out waiting for a turn to sign in to 192.0.2.1:22 (at most 8 sign-ins with one "
        "SSH server at a time)")


def test_hosts_waiting_for_their_own_server_hold_no_bastion_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Aliases of one host X behind bastion B wait for X's places without holding B's: a host
    Y behind B signs in while X's sign-ins hang (places are taken deepest first)."""
    monkeypatch.setattr(ssh_connector, "HANDSHAKES_PER_SERVER", 2)
    monkeypatch.setattr(ssh_connector, "_gates", {})
    hung = threading.Event()
    entered = threading.Semaphore(0)

    def handshake(self: Any, sock: Any, hop: Jump, keys: Any, where: str) -> Any:
        if hop.host == "x.example":
            entered.release()
            hung.wait()
        return SimpleNamespace(hop=hop)

    monkeypatch.setattr(ssh_connector.SSHConnector, "_socket",
                        lambda self, previous, hop: SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(ssh_connector.SSHConnector, "_handshake", handshake)
    bastion = SimpleNamespace(jumps=[Jump("bastion.example", 22, None)])
    timeouts = Timeouts(connect=5, operation=5, host=600)

    def open_host(address: str, done: list[str]) -> None:
        host = SimpleNamespace(name=address, address=address, connection=SimpleNamespace(
            port=22, user="audit", ssh_private_key_file=None))
        connector = ssh_connector.SSHConnector(host, timeouts)  # type: ignore[arg-type]
        try:
            connector._open(bastion, None, time.monotonic() + 600)  # type: ignore[arg-type]
            done.append(address)
        finally:
            connector.abort()

    finished: list[str] = []
    aliases = [threading.Thread(target=open_host, args=("x.example", finished), daemon=True)
               for _ in range(6)]
    for thread in aliases:
        thread.start()
    for _ in range(2):
        assert entered.acquire(timeout=60)  # both of X's places are in a hung sign-in
    other = threading.Thread(target=open_host, args=("y.example", finished), daemon=True)
    other.start()
    other.join(timeout=60)
    assert finished == ["y.example"]
    hung.set()
    for thread in aliases:
        thread.join(timeout=60)
    assert sorted(finished) == ["x.example"] * 6 + ["y.example"]
    assert ssh_connector._gates == {}


def test_a_bastion_reaches_only_what_it_permits(
    ssh: SshLab, run_cli: Runner, tmp_path: Path
) -> None:
    bastion, other = ssh.servers[BASTION], ssh.servers["mfa01"]  # not in its PermitOpen
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        "not-permitted": (["adfs"], host_vars(
            other, known_hosts=ssh.known_hosts, args=f"-J {bastion.jump}",
            ansible_ssh_private_key_file=str(ssh.key))),
        HEALTHY: (["adfs"], host_vars(ssh.servers[JUMP_TARGET], known_hosts=ssh.known_hosts,
                                      ansible_ssh_private_key_file=str(ssh.key))),
    })
    report = _scan(run_cli, inventory, *FAST_SSH_TIMEOUTS)
    error = report.error("not-permitted")
    assert error is not None
    assert error.startswith(
        f"the bastion could not open a connection to {other.address}:{other.port} via "
        f"{bastion.jump}: "), error
    assert report.host_error_kind("not-permitted") == "connection-refused"
    assert report.error(HEALTHY) is None
    assert report.statuses(HEALTHY) == HEALTHY_STATUSES
