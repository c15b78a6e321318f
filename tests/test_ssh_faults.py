"""End-to-end live scans over SSH of hosts that cannot be read, or only partly.

Every scan holds the faulty hosts and a healthy one (see `sshfixtures`): each faulty host must get
its exact ERROR kind and readable reason, and the healthy host its results, in the same scan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun
from expectations import failing_scripts

from agent.connectors import ssh as ssh_connector
from agent.factscripts import SCRIPTS

pytest.register_assert_rewrite("labfixtures", "sshfixtures")  # before importing: helpers assert
from labfixtures import Report  # noqa: E402
from sshfixtures import (  # noqa: E402
    CHECK_FACTS,
    FAST_SSH_TIMEOUTS,
    FAULT_PROFILES,
    HEALTHY,
    HEALTHY_STATUSES,
    JUMP_TARGET,
    PASSWORD_LOOKUP,
    SilentListener,
    SshLab,
    descendants,
    free_port,
    host_vars,
)

pytest_plugins = ("sshfixtures",)
pytestmark = pytest.mark.needs_server

Runner = Callable[..., CliRun]
SCRIPT_OF_FACT = {fact: script.name for script in SCRIPTS for fact in script.facts}


def _scan(run_cli: Runner, inventory: Path, *options: str) -> Report:
    result = run_cli("scan", "-i", str(inventory), "--format", "json", *options)
    report = Report.parse(result.out)
    assert result.code == report.exit_code, result.err
    return report


def _healthy(ssh: SshLab, **extra: Any) -> dict[str, Any]:
    """The variables of the healthy host every scan here also reads (key file sign-in)."""
    return host_vars(ssh.servers[JUMP_TARGET], known_hosts=ssh.known_hosts,
                     ansible_ssh_private_key_file=str(ssh.key), **extra)


def _assert_healthy(report: Report, host: str = HEALTHY) -> None:
    assert report.error(host) is None, (host, report.error(host))
    assert report.statuses(host) == HEALTHY_STATUSES, host


def _assert_not_scanned(report: Report, host: str, kind: str, message: str) -> None:
    """The host could not be read at all: its error, kind, and every fact check ERROR."""
    assert report.error(host) == message
    assert report.host_error_kind(host) == kind
    for check, result in report.results(host).items():
        if check in CHECK_FACTS:
            assert result["status"] == "ERROR", check
            assert message in result["reason"], check
        else:
            assert result["status"] == "MANUAL", check


# -- the connection --------------------------------------------------------------------------------


def test_unreachable_hosts_cost_those_hosts_only(
    ssh: SshLab, run_cli: Runner, tmp_path: Path, silent_listener: SilentListener
) -> None:
    closed = ("127.0.9.251", free_port("127.0.9.251"))
    silent = (silent_listener.address, silent_listener.port)
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        "closed": (["adfs"], host_vars(closed, known_hosts=ssh.known_hosts,
                                       ansible_password=PASSWORD_LOOKUP)),
        "silent": (["adfs"], host_vars(silent, known_hosts=ssh.known_hosts,
                                       ansible_password=PASSWORD_LOOKUP)),
        HEALTHY: (["adfs"], _healthy(ssh)),
    })
    report = _scan(run_cli, inventory, *FAST_SSH_TIMEOUTS)
    _assert_not_scanned(report, "closed", "connection-refused",
                        f"connection refused by {closed[0]}:{closed[1]}")
    # It accepts the connection and never sends the SSH banner.
    _assert_not_scanned(report, "silent", "timed-out",
                        f"timed out waiting for {silent[0]}:{silent[1]}: no SSH handshake "
                        "within 2 s")
    assert silent_listener.accepted == 1
    _assert_healthy(report)
    assert report.exit_code == 2


@pytest.mark.parametrize("behind_bastion", [False, True], ids=["host", "bastion"])
def test_a_silent_server_costs_one_connect_timeout_not_one_per_host(
    ssh: SshLab, run_cli: Runner, tmp_path: Path, silent_listener: SilentListener,
    behind_bastion: bool,
) -> None:
    """Twenty inventory hosts are one server (or sit behind one bastion) that accepts
    connections and never speaks SSH. The first sign-ins time out; the hosts waiting for a turn
    with it, and those after, fail at once, naming why: without that they would take the
    connect timeout 8 at a time (60 s here, and the whole scan's workers with them)."""
    silent = (silent_listener.address, silent_listener.port)
    names = [f"alias-{i}.lab.example" for i in range(20)]
    target = ssh.servers[JUMP_TARGET]
    hosts = {
        name: (["adfs"], host_vars(target, known_hosts=ssh.known_hosts,
                                   args=f"-J audit@{silent[0]}:{silent[1]}",
                                   ansible_password=PASSWORD_LOOKUP)
               if behind_bastion else host_vars(silent, known_hosts=ssh.known_hosts,
                                                ansible_password=PASSWORD_LOOKUP))
        for name in names
    }
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {**hosts, HEALTHY: (["adfs"],
                                                                               _healthy(ssh))})
    report = _scan(run_cli, inventory, "--workers", "21", *FAST_SSH_TIMEOUTS)
    server = f"{silent[0]}:{silent[1]}"
    timed_out = f"timed out waiting for {server}: no SSH handshake within 2 s"
    errors = [report.error(name) or "" for name in names]
    assert all(report.host_error_kind(name) == "timed-out" for name in names)
    tried = [e for e in errors if e == timed_out]
    not_tried = [e for e in errors if e.startswith("not tried: ")]
    assert len(tried) + len(not_tried) == len(names), errors
    assert 1 <= len(tried) == silent_listener.accepted <= ssh_connector.HANDSHAKES_PER_SERVER
    what = f"bastion {server}" if behind_bastion else server
    assert not_tried and all(
        e.startswith(f"not tried: {what} did not answer another host of this scan "
                     f"({timed_out}); it is tried again in ") for e in not_tried)
    _assert_healthy(report)


def test_authentication_failures_cost_those_hosts_only(
    ssh: SshLab, run_cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_PASSWORD", "Wrong-Password-0815")
    server = ssh.servers[JUMP_TARGET]
    where = f"{server.address}:{server.port}"
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        "wrong-password": (["adfs"], host_vars(
            server, known_hosts=ssh.known_hosts,
            ansible_password="{{ lookup('env', 'WRONG_PASSWORD') }}")),
        # No key file, no ssh-agent (the fixture unset SSH_AUTH_SOCK), no password.
        "no-method": (["adfs"], host_vars(server, known_hosts=ssh.known_hosts)),
        HEALTHY: (["adfs"], _healthy(ssh)),
    })
    report = _scan(run_cli, inventory, *FAST_SSH_TIMEOUTS)
    _assert_not_scanned(report, "wrong-password", "authentication-refused",
                        f"authentication failed for {ssh.user.name} on {where} (tried: password)")
    _assert_not_scanned(report, "no-method", "authentication-refused",
                        f"authentication failed for {ssh.user.name} on {where} "
                        "(tried: no method configured)")
    _assert_healthy(report)


# -- host keys -------------------------------------------------------------------------------------


def test_host_keys_are_verified_against_known_hosts(
    ssh: SshLab, run_cli: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_PASSWORD", "Wrong-Password-0815")
    server = ssh.servers[JUMP_TARGET]  # it has an Ed25519 and an ECDSA host key
    name, fingerprint = server.known_hosts_name, server.fingerprint("ed25519")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    impostor = ssh.impostor_key.with_suffix(".pub").read_text().split()
    changed = ssh.write_known_hosts(tmp_path / "changed_known_hosts", [],
                                    extra=[f"{name} {impostor[0]} {impostor[1]}"])
    ecdsa_only = tmp_path / "ecdsa_known_hosts"
    ecdsa_only.write_text("".join(f"{line}\n" for line in server.known_hosts_lines(["ecdsa"])))
    key = {"ansible_ssh_private_key_file": str(ssh.key)}
    accept_new = "-o StrictHostKeyChecking=accept-new"
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        "unknown": (["adfs"], host_vars(server, known_hosts=empty, **key)),
        "changed": (["adfs"], host_vars(server, known_hosts=changed, **key)),
        "accept-new": (["adfs"], host_vars(server, known_hosts=empty, args=accept_new, **key)),
        "accept-new-changed": (["adfs"], host_vars(server, known_hosts=changed, args=accept_new,
                                                   **key)),
        "accept-new-refused": (["adfs"], host_vars(
            server, known_hosts=empty, args=accept_new,
            ansible_password="{{ lookup('env', 'WRONG_PASSWORD') }}")),
        "no-checking": (["adfs"], host_vars(server, known_hosts=changed,
                                            args="-o StrictHostKeyChecking=no", **key)),
        # known_hosts has only the ECDSA key: that is the type to negotiate, as OpenSSH does.
        "ecdsa-known": (["adfs"], host_vars(server, known_hosts=ecdsa_only, **key)),
        HEALTHY: (["adfs"], _healthy(ssh)),
    })

    report = _scan(run_cli, inventory, *FAST_SSH_TIMEOUTS)

    _assert_not_scanned(
        report, "unknown", "host-key-unknown",
        f"host key of {name} is not in known_hosts: ssh-ed25519 {fingerprint} — verify it, "
        f"then add it (ssh-keyscan -p {server.port} {server.address} >> known_hosts), or opt in "
        "with -o StrictHostKeyChecking=accept-new")
    changed_message = (f"host key of {name} CHANGED: it presents ssh-ed25519 {fingerprint}, "
                       "which known_hosts does not have for it (a reinstalled host, or someone "
                       "in the middle)")
    _assert_not_scanned(report, "changed", "host-key-changed", changed_message)
    # accept-new accepts an unknown key (shown with the opt-in), never a changed one.
    _assert_healthy(report, "accept-new")
    assert report.hosts["accept-new"]["trust_notes"] == [
        "an unknown SSH host key is accepted on first use "
        "(StrictHostKeyChecking=accept-new in ansible_ssh_common_args)",
        f"{name}: accepted new host key ssh-ed25519 {fingerprint}",
    ]
    assert empty.read_text() == ""  # accepted for this scan: known_hosts is not written
    _assert_not_scanned(report, "accept-new-changed", "host-key-changed", changed_message)
    # Signing in failed after the key was accepted: the acceptance is still shown.
    _assert_not_scanned(report, "accept-new-refused", "authentication-refused",
                        f"authentication failed for {ssh.user.name} on {server.address}:"
                        f"{server.port} (tried: password)")
    assert report.hosts["accept-new-refused"]["trust_notes"] == report.hosts["accept-new"][
        "trust_notes"]
    _assert_healthy(report, "no-checking")
    assert report.hosts["no-checking"]["trust_notes"] == [
        "SSH host key checking disabled (ansible_ssh_common_args)"]
    _assert_healthy(report, "ecdsa-known")
    assert report.hosts["ecdsa-known"]["trust_notes"] == []
    _assert_healthy(report)


# -- the remote side -------------------------------------------------------------------------------


#: Fault server → (the scripts that fail, their message with {host} and {script}).
SCRIPT_FAULTS = {
    "powershell-error": (failing_scripts(FAULT_PROFILES / "powershell-error" / "faulty.yaml"),
                         "PowerShell error on {host} in the {script} script (exit 1): Cannot "
                         "invoke method. Method invocation is supported only on core types in "
                         "this language mode."),
    "garbage-output": (failing_scripts(FAULT_PROFILES / "garbage-output" / "faulty.yaml"),
                       "unreadable output from {host}: the {script} script did not print JSON"),
    "command-line-limit": (failing_scripts(FAULT_PROFILES / "command-line-limit" / "faulty.yaml"),
                           "{host} refused the {script} script: the command line is too long"),
}


def test_remote_failures_cost_those_hosts_or_scripts_only(
    ssh: SshLab, run_cli: Runner, tmp_path: Path
) -> None:
    key = {"ansible_ssh_private_key_file": str(ssh.key)}
    hosts = {case: (["adfs"], host_vars(ssh.servers[case], known_hosts=ssh.known_hosts, **key))
             for case in SCRIPT_FAULTS}
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        **hosts,
        "no-powershell": (["adfs"], host_vars(ssh.servers["no-powershell"],
                                              known_hosts=ssh.known_hosts, **key)),
        HEALTHY: (["adfs"], _healthy(ssh)),
    })
    report = _scan(run_cli, inventory, *FAST_SSH_TIMEOUTS)

    _assert_not_scanned(report, "no-powershell", "powershell-missing",
                        "PowerShell is not available on no-powershell (exit 127): the remote "
                        "shell found no 'powershell' program")
    for host, (scripts, template) in SCRIPT_FAULTS.items():
        assert report.error(host) is None  # the host was read; some of its facts were not
        for check, result in report.results(host).items():
            fact = CHECK_FACTS.get(check)
            if fact is not None and SCRIPT_OF_FACT[fact] in scripts:
                message = template.format(host=host, script=SCRIPT_OF_FACT[fact])
                assert result["status"] == "ERROR", (host, check)
                assert result["evidence"] == {"fact": fact}, (host, check)
                assert result["reason"].startswith(f"fact '{fact}' unavailable: {message}"), (
                    host, check, result["reason"])
            else:
                assert result["status"] == HEALTHY_STATUSES[check], (host, check)
    _assert_healthy(report)
    assert report.exit_code == 2


def test_a_slow_host_costs_its_deadline_and_leaves_nothing_running(
    ssh: SshLab, run_cli: Runner, tmp_path: Path
) -> None:
    server = ssh.servers["slow-past-deadline"]  # each command takes 30 s
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        "slow": (["adfs"], host_vars(server, known_hosts=ssh.known_hosts,
                                     ansible_ssh_private_key_file=str(ssh.key))),
        HEALTHY: (["adfs"], _healthy(ssh)),
    })
    started = time.monotonic()
    # 10 s: the healthy host must finish within it even on a busy machine.
    report = _scan(run_cli, inventory, "--host-timeout", "10", "--operation-timeout", "1",
                   "--connect-timeout", "2")
    assert time.monotonic() - started < 40  # the deadline, not the slow host's 30 s a command
    _assert_not_scanned(report, "slow", "timed-out",
                        "timed out: slow gave no complete answer within the 10 s host deadline")
    _assert_healthy(report)
    # The connection was dropped at the deadline: the stand-in noticed and its session ended
    # (a generous bound on noticing, not a window).
    deadline = time.monotonic() + 30
    while descendants(server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descendants(server.pid) == []
