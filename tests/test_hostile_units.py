"""What a hostile endpoint could ask of the SSH and LDAP connectors, and errors for --debug.

LDAP referrals are never chased (a referral names another server, where ldap3 would bind with the
same credentials); over SSH nothing is forwarded, even with an ssh-agent available; and an
unexpected error's traceback is logged (at debug level, what ``--debug`` shows) wherever a
connector catches it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import ldap3
import paramiko
import pytest
from conftest import CliRun
from pytest_mock import MockerFixture

from agent.connectors import ldap as ldap_connector
from agent.connectors import ssh as ssh_connector
from agent.connectors.winrm import classify
from agent.inventory import DirectorySettings, Secret

pytest.register_assert_rewrite("labfixtures", "sshfixtures")
from labfixtures import Report  # noqa: E402
from sshfixtures import FAST_SSH_TIMEOUTS, HEALTHY, JUMP_TARGET, SshLab, host_vars  # noqa: E402

pytest_plugins = ("sshfixtures",)

Runner = Callable[..., CliRun]


def test_ldap_referrals_are_not_chased() -> None:
    settings = DirectorySettings(
        urls=("ldaps://dc1.lab.example",),
        base_dn="DC=lab,DC=example",
        bind_dn="CN=reader,CN=Users,DC=lab,DC=example",
        bind_password=Secret.inline("Never-Sent-1"),
    )
    endpoint = ldap_connector.endpoints(settings)[0]
    conn = ldap_connector._connection(
        settings, ldap3.Server(endpoint.host, port=endpoint.port), endpoint, "Never-Sent-1"
    )
    assert conn.auto_referrals is False


@pytest.mark.needs_server
def test_ssh_never_asks_for_forwarding(
    ssh: SshLab, run_cli: Runner, tmp_path: Path, mocker: MockerFixture,
    request: pytest.FixtureRequest,
) -> None:
    """With an ssh-agent holding the key the scan signs in with, nothing is forwarded."""
    request.getfixturevalue("ssh_agent")
    asks = [
        mocker.spy(paramiko.Channel, "request_forward_agent"),
        mocker.spy(paramiko.Channel, "request_x11"),
        mocker.spy(paramiko.Transport, "request_port_forward"),
        mocker.spy(paramiko.Transport, "open_forward_agent_channel"),
    ]
    inventory = ssh.inventory(tmp_path / "inventory.yaml", {
        HEALTHY: (["adfs"], host_vars(ssh.servers[JUMP_TARGET], known_hosts=ssh.known_hosts)),
    })
    result = run_cli("scan", "-i", str(inventory), "--format", "json", *FAST_SSH_TIMEOUTS)
    report = Report.parse(result.out)
    assert report.error(HEALTHY) is None  # signed in with the agent's key
    assert [spy.call_count for spy in asks] == [0, 0, 0, 0]


def _traceback_logged(records: list[logging.LogRecord], kind: type[BaseException]) -> bool:
    return any(r.exc_info is not None and r.exc_info[0] is kind for r in records)


def test_an_unexpected_winrm_error_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        error = classify(exc, where="h.lab.example")
    assert error.message == "unexpected RuntimeError talking to h.lab.example"
    assert _traceback_logged(caplog.records, RuntimeError)


def test_an_unexpected_ssh_error_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        error = ssh_connector._connect_error(exc, "h.lab.example:22")
    assert error.message == "could not connect to h.lab.example:22"
    assert _traceback_logged(caplog.records, RuntimeError)
