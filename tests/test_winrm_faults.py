"""End-to-end live scans of misbehaving hosts: every fault switch of the lab, plus a port nothing
listens on and a name that never resolves.

Each fault case is a directory of tests/data/lab-faults with one faulty and one healthy host;
each runs as its own lab process on 127.0.3.x (see `labfixtures`). Every scan asserts the exact
ERROR kind and message of the faulty host and that the healthy host in the same scan is unharmed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun
from expectations import SCRIPT_OF_FACT, check_facts, failing_scripts, profile_statuses

from agent.lab import Faults, load_lab

pytest.register_assert_rewrite("labfixtures")  # before importing it: its helpers assert
from labfixtures import (  # noqa: E402
    FAST_TIMEOUTS,
    FAULT_PROFILES,
    LabProcess,
    Report,
    inventory_variant,
    unused_port,
)

pytest_plugins = ("labfixtures",)

Runner = Callable[..., CliRun]
UseLab = Callable[[LabProcess], str]

FAULTY, HEALTHY = "faulty.lab.example", "healthy.lab.example"
#: What the healthy AD FS host (and a faulty one whose fault does not show) yields, and the fact
#: each of its checks reads first: derived from the profile and the catalogue.
HEALTHY_STATUSES = profile_statuses(FAULT_PROFILES / "hang" / "healthy.yaml")
CHECK_FACTS = check_facts(FAULT_PROFILES / "hang" / "healthy.yaml")
#: Options of the timed-out cases: the host deadline their message names (the slow host takes
#: 30 s a command; the healthy one must finish within it even on a busy machine).
DEADLINE_10S = ("--host-timeout", "10", "--operation-timeout", "1", "--connect-timeout", "2")


def _scan(run_cli: Runner, inventory: Path, *options: str) -> Report:
    result = run_cli("scan", "-i", str(inventory), "--format", "json", *options)
    report = Report.parse(result.out)
    assert result.code == report.exit_code, result.err
    return report


def _assert_healthy(report: Report, host: str = HEALTHY) -> None:
    assert report.error(host) is None, (host, report.error(host))
    assert report.statuses(host) == HEALTHY_STATUSES, host


def _assert_not_scanned(report: Report, host: str, kind: str, message: str) -> None:
    """The host could not be read at all: its error, kind, and every fact check ERROR."""
    assert report.error(host) == message
    assert report.host_error_kind(host) == kind
    assert report.exit_code == 2  # no FAIL anywhere, so the host errors decide the exit code
    for check, result in report.results(host).items():
        if check in CHECK_FACTS:
            assert result["status"] == "ERROR", check
            assert message in result["reason"], check
        else:
            assert result["status"] == "MANUAL", check


# -- faults that make the host unreadable ----------------------------------------------------------


@dataclass(frozen=True)
class HostFault:
    """A fault case whose faulty host cannot be read at all."""

    case: str
    kind: str
    message: str
    options: tuple[str, ...] = FAST_TIMEOUTS


HOST_FAULTS = [
    HostFault("wrong-password", "authentication-refused",
              f"authentication refused by {FAULTY}: the credentials were rejected (HTTP 401)"),
    HostFault("slow-past-deadline", "timed-out",
              f"timed out: {FAULTY} gave no complete answer within the 10 s host deadline",
              DEADLINE_10S),
    HostFault("hang", "timed-out",
              f"timed out: {FAULTY} gave no complete answer within the 10 s host deadline"),
    HostFault("reset", "connection-reset", f"connection reset by {FAULTY}"),
    HostFault("wsman-fault", "wsman-fault",
              f"WS-Management fault from {FAULTY}: Access is denied. (WS-Management code 5)"),
]


@pytest.mark.needs_server
@pytest.mark.parametrize("fault", HOST_FAULTS, ids=lambda f: f.case)
def test_a_host_fault_costs_that_host_only(
    fault: HostFault, fault_labs: dict[str, LabProcess], run_cli: Runner, use_lab: UseLab
) -> None:
    lab = fault_labs[fault.case]
    use_lab(lab)
    report = _scan(run_cli, lab.inventory, *fault.options)
    _assert_not_scanned(report, FAULTY, fault.kind, fault.message)
    _assert_healthy(report)


@dataclass(frozen=True)
class AbsorbedFault:
    """A fault case the client must absorb: the faulty host reads like the healthy one."""

    case: str
    options: tuple[str, ...]
    #: Counter → how many more of it the faulty host saw than the healthy host, at least.
    extra: dict[str, int]


ABSORBED_FAULTS = [
    # Each command takes 1.5 s; OperationTimeout is 1 s; the host deadline is 30 s (generous: it
    # only bounds a failure). Every Receive that outlasts the OperationTimeout is a w:TimedOut
    # fault (HTTP 500) after which the client polls again (the fast path sends one command per
    # host, pywinrm one per script).
    AbsorbedFault("slow-within-deadline",
                  ("--host-timeout", "30", "--operation-timeout", "1", "--connect-timeout", "2"),
                  {"http:500": 1, "requests": 1}),
    AbsorbedFault("slow-within-deadline",
                  ("--host-timeout", "30", "--operation-timeout", "1", "--connect-timeout", "2",
                   "--winrm-client", "pywinrm"),
                  {"http:500": 2, "requests": 2}),
    # Output in pieces of at most 64 bytes: several Receives per command.
    AbsorbedFault("split-output", FAST_TIMEOUTS, {"requests": 4, "http:200": 4}),
]


@pytest.mark.needs_server
@pytest.mark.parametrize("fault", ABSORBED_FAULTS,
                         ids=lambda f: f.case + ("-pywinrm" if "pywinrm" in f.options else ""))
def test_a_fault_the_client_absorbs_changes_no_result(
    fault: AbsorbedFault, fault_labs: dict[str, LabProcess], run_cli: Runner, use_lab: UseLab
) -> None:
    lab = fault_labs[fault.case]
    use_lab(lab)
    before = lab.stats()
    report = _scan(run_cli, lab.inventory, *fault.options)
    after = lab.stats()
    _assert_healthy(report, FAULTY)
    _assert_healthy(report)
    assert report.exit_code == 0

    def seen(host: str, counter: str) -> int:
        return after[host].get(counter, 0) - before[host].get(counter, 0)

    for counter, at_least in fault.extra.items():
        assert seen(FAULTY, counter) - seen(HEALTHY, counter) >= at_least, counter


# -- faults that cost some fact scripts ------------------------------------------------------------


@dataclass(frozen=True)
class ScriptFault:
    """A fault case whose faulty host is read, but some fact scripts fail."""

    case: str
    scripts: frozenset[str]
    #: The error of each failed fact, with ``{script}`` for the script's name.
    message: str
    options: tuple[str, ...] = ()


def _script_fault(case: str, message: str, options: tuple[str, ...] = ()) -> ScriptFault:
    return ScriptFault(
        case, failing_scripts(FAULT_PROFILES / case / "faulty.yaml"), message, options
    )


SCRIPT_FAULTS = [
    _script_fault("powershell-error",
                  f"PowerShell error on {FAULTY} in the {{script}} script (exit 1): Cannot invoke "
                  "method. Method invocation is supported only on core types in this language "
                  "mode."),
    _script_fault("garbage-output",
                  f"unreadable output from {FAULTY}: the {{script}} script did not print JSON"),
    # Only pywinrm's one-script-per-line path: the fast path's one line for every script is
    # shorter (about 2,700 characters) than this host's 5,000-character limit.
    _script_fault("command-line-limit",
                  f"{FAULTY} refused the {{script}} script: the command line is too long",
                  ("--winrm-client", "pywinrm")),
]


@pytest.mark.needs_server
@pytest.mark.parametrize("fault", SCRIPT_FAULTS, ids=lambda f: f.case)
def test_a_script_fault_costs_the_facts_of_that_script_only(
    fault: ScriptFault, fault_labs: dict[str, LabProcess], run_cli: Runner, use_lab: UseLab
) -> None:
    lab = fault_labs[fault.case]
    use_lab(lab)
    report = _scan(run_cli, lab.inventory, *FAST_TIMEOUTS, *fault.options)
    assert report.error(FAULTY) is None  # the host was read; some of its facts were not
    failed = {check for check, fact in CHECK_FACTS.items()
              if SCRIPT_OF_FACT[fact] in fault.scripts}
    assert failed
    for check, result in report.results(FAULTY).items():
        if check in failed:
            fact = CHECK_FACTS[check]
            message = fault.message.format(script=SCRIPT_OF_FACT[fact])
            assert result["status"] == "ERROR", check
            assert result["evidence"] == {"fact": fact}, check
            assert result["reason"].startswith(f"fact '{fact}' unavailable: {message}"), (
                check, result["reason"])
        else:
            assert result["status"] == HEALTHY_STATUSES[check], check
    _assert_healthy(report)
    assert report.exit_code == 2


# -- hosts that cannot be reached ----------------------------------------------------------------


@dataclass
class LoopbackResolver:
    """Name lookups answered in this process without any DNS server: no packet leaves loopback.

    ``*.invalid`` never resolves (RFC 6761); here every name that is not a loopback address
    fails the way the system resolver fails, with `failure` (NXDOMAIN, or no resolver at all),
    and is recorded in `looked_up`. Loopback addresses resolve as usual.
    """

    real: Callable[..., Any]
    failure: tuple[int, str] = (socket.EAI_NONAME, "Name or service not known")
    looked_up: list[str] = field(default_factory=list)

    def getaddrinfo(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        """`socket.getaddrinfo` for loopback addresses; `socket.gaierror` for anything else."""
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.looked_up.append(name)
        try:
            loopback = ipaddress.ip_address(name.strip("[]")).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise socket.gaierror(*self.failure)
        return self.real(host, *args, **kwargs)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> LoopbackResolver:
    """A `LoopbackResolver` in place of `socket.getaddrinfo` for the test."""
    loopback = LoopbackResolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", loopback.getaddrinfo)
    return loopback


@pytest.mark.needs_server
@pytest.mark.parametrize("failure", [
    pytest.param((socket.EAI_NONAME, "Name or service not known"), id="nxdomain"),
    pytest.param((socket.EAI_AGAIN, "Temporary failure in name resolution"), id="no-resolver"),
])
def test_unreachable_hosts_cost_those_hosts_only(
    failure: tuple[int, str], fault_labs: dict[str, LabProcess], run_cli: Runner,
    use_lab: UseLab, resolver: LoopbackResolver, tmp_path: Path,
) -> None:
    resolver.failure = failure
    lab = fault_labs["wrong-password"]  # any lab: only its healthy host is scanned here
    use_lab(lab)
    refused, unresolvable = "refused.lab.example", "unresolvable.lab.example"
    inventory = inventory_variant(lab.inventory, tmp_path / "inventory.yaml", add_hosts={
        refused: {"ansible_host": "127.0.0.1", "ansible_port": unused_port()},
        unresolvable: {"ansible_host": "nonexistent.invalid", "ansible_port": 5985},
    })
    report = _scan(run_cli, inventory, "--limit", f"{HEALTHY},{refused},{unresolvable}",
                   *FAST_TIMEOUTS)
    _assert_not_scanned(report, refused, "connection-refused", f"connection refused by {refused}")
    _assert_not_scanned(report, unresolvable, "name-not-resolved",
                        f"name not resolved: {unresolvable}")
    _assert_healthy(report)
    assert "nonexistent.invalid" in resolver.looked_up
    for name in set(resolver.looked_up) - {"nonexistent.invalid"}:
        assert ipaddress.ip_address(name.strip("[]")).is_loopback, name


# -- the fault profiles themselves ---------------------------------------------------------


def test_each_fault_directory_switches_on_the_fault_it_is_named_after() -> None:
    switched = {
        "wrong-password": "wrong_password", "slow-within-deadline": "slow_seconds",
        "slow-past-deadline": "slow_seconds", "hang": "hang", "reset": "reset",
        "wsman-fault": "wsman_fault", "powershell-error": "powershell_error",
        "garbage-output": "garbage_output", "command-line-limit": "max_command_line",
        "split-output": "split_output_bytes",
    }
    cases = {p.name for p in FAULT_PROFILES.iterdir() if p.is_dir()}
    assert cases == set(switched)
    assert set(switched.values()) == {f.name for f in fields(Faults)}  # every switch has a case
    tested = [f.case for f in HOST_FAULTS] + [f.case for f in ABSORBED_FAULTS] + [
        f.case for f in SCRIPT_FAULTS]
    assert sorted(set(tested)) == sorted(cases)
    healthy = Faults()
    for case, switch in switched.items():
        lab = load_lab(FAULT_PROFILES / case)
        hosts = {h.name: h for h in lab.hosts}
        assert set(hosts) == {FAULTY, HEALTHY}, case
        assert hosts[HEALTHY].faults == healthy, case
        assert hosts[FAULTY].facts == {  # the same host but for its address
            **hosts[HEALTHY].facts, "ip_addresses": hosts[FAULTY].facts["ip_addresses"]}, case
        changed = {f.name for f in fields(Faults)
                   if getattr(hosts[FAULTY].faults, f.name) != getattr(healthy, f.name)}
        assert changed == {switch}, case
        assert all(ipaddress.ip_address(h.address).is_loopback for h in hosts.values())
