"""End-to-end live scans of the built-in lab: real pywinrm over real HTTP, NTLM with encryption.

The lab runs as its own process on 127.0.1.x (see `labfixtures`) and is stopped by PID; scans
run in-process through `run_cli`, or as a process where a hard timeout or real stderr matters.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import CliRun

from agent.factscripts import scripts_for
from agent.lab import load_lab
from agent.report import FILENAMES

pytest.register_assert_rewrite("labfixtures")  # before importing it: its helpers assert
from labfixtures import (  # noqa: E402
    BUILTIN_HOST_ERRORS,
    BUILTIN_STATUSES,
    FAST_TIMEOUTS,
    FAULT_PROFILES,
    REPO,
    WITHOUT_HUNG_HOST,
    LabProcess,
    Relay,
    Report,
    assert_builtin_results,
    inventory_variant,
    run_agent,
    running_lab,
)

pytest_plugins = ("labfixtures",)
pytestmark = pytest.mark.needs_server

Runner = Callable[..., CliRun]
UseLab = Callable[[LabProcess], str]


def test_a_live_scan_of_the_builtin_lab(
    builtin_lab: LabProcess, run_cli: Runner, use_lab: UseLab
) -> None:
    use_lab(builtin_lab)
    before = builtin_lab.stats()
    result = run_cli("scan", "-i", str(builtin_lab.inventory), "--format", "json",
                     *FAST_TIMEOUTS)
    after = builtin_lab.stats()

    assert result.code == 1, result.err
    report = Report.parse(result.out)
    assert report.exit_code == 1
    assert report.document["mode"] == "live"
    assert list(report.hosts) == builtin_lab.hosts
    assert_builtin_results(report)
    assert report.error("mfa02.lab.example") == (
        "authentication refused by mfa02.lab.example: the credentials were rejected (HTTP 401)"
    )
    assert report.error("portal02.lab.example") == (
        "timed out: portal02.lab.example gave no complete answer within the 10 s host deadline"
    )
    for result_ in report.document["results"]:
        if result_["target"] in BUILTIN_HOST_ERRORS and "host_error" in result_["evidence"]:
            error = report.error(result_["target"])
            assert result_["reason"] == f"host not scanned: {error}"

    # Message encryption was really on: every SOAP body the lab received from a host that let the
    # agent in was multipart/encrypted and unsealed; nothing came in plain text.
    profiles = {p.name: p for p in load_lab().hosts}
    for host in BUILTIN_STATUSES:
        delta = {k: after[host].get(k, 0) - before[host].get(k, 0) for k in after[host]}
        assert scripts_for(frozenset(profiles[host].roles))
        # The fast path: NTLM negotiate (no body), then authenticate + Create, ONE Command for
        # every script, Receive, Delete: five requests, four sealed bodies per host.
        assert delta["requests"] == 5, (host, delta)
        assert delta["body:multipart/encrypted"] == 4, (host, delta)
        assert delta["encrypted"] == delta["body:multipart/encrypted"], (host, delta)
        assert delta.get("body:application/soap+xml", 0) == 0, (host, delta)
        assert delta.get("plaintext", 0) == delta.get("refused_plaintext", 0) == 0, (host, delta)
        assert delta["ntlm_logons"] == 1, (host, delta)  # one connection, one logon per host
    assert after["mfa02.lab.example"].get("ntlm_logons", 0) == 0
    assert after["mfa02.lab.example"].get("encrypted", 0) == 0


def test_the_wire_carries_only_sealed_messages(
    builtin_lab: LabProcess, run_cli: Runner, use_lab: UseLab, tmp_path: Path
) -> None:
    password = use_lab(builtin_lab)
    relay = Relay(builtin_lab.address("adfs01.lab.example"))
    try:
        inventory = inventory_variant(
            builtin_lab.inventory, tmp_path / "inventory.yaml",
            host_vars={"adfs01.lab.example": {"ansible_host": "127.0.0.1",
                                              "ansible_port": relay.port}},
        )
        result = run_cli("scan", "-i", str(inventory), "--limit", "adfs01.lab.example",
                         "--format", "json", *FAST_TIMEOUTS)
    finally:
        relay.close()
    assert result.code == 1, result.err
    assert_builtin_results(Report.parse(result.out), ["adfs01.lab.example"])
    sent, received = bytes(relay.sent), bytes(relay.received)
    for wire in (sent, received):
        assert b"Content-Type: multipart/encrypted;" in wire
        assert b'protocol="application/HTTP-SPNEGO-session-encrypted"' in wire
        for plaintext in (b"Envelope", b"ShellId", b"CommandId", b"Windows Server", b"adfssrv"):
            assert plaintext not in wire, plaintext
    assert b"Content-Type: application/soap+xml" not in received
    assert password.encode() not in sent
    assert sent.count(b"Authorization: Negotiate ") == 2  # NTLM type 1 and 3, then none


# -- the host deadline and the pool --------------------------------------------------------------


@dataclass(frozen=True)
class TimedScan:
    """A live scan of the built-in lab, run as a process: its report, facts file and wall time."""

    report: Report
    facts: Path
    inventory: Path
    seconds: float


@pytest.fixture(scope="module")
def timed_scan(builtin_lab: LabProcess, tmp_path_factory: pytest.TempPathFactory) -> TimedScan:
    """``mfa-agent scan`` of the whole built-in lab (hung host included), host deadline 10 s
    (long enough for every healthy host on a busy machine)."""
    out = tmp_path_factory.mktemp("timed-scan")
    started = time.monotonic()
    result = run_agent("scan", "-i", str(builtin_lab.inventory), "--save-facts",
                       str(out / "facts.json"), "-o", str(out / "reports"), "--format", "json",
                       "--host-timeout", "10", "--operation-timeout", "1", "--connect-timeout", "2",
                       password=builtin_lab.password, timeout=120)
    seconds = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    report = Report.parse((out / "reports" / FILENAMES["json"]).read_text())
    return TimedScan(report, out / "facts.json", builtin_lab.inventory, seconds)


def test_a_hung_host_costs_the_host_deadline_not_more(timed_scan: TimedScan) -> None:
    # The deadline plus a margin for a busy machine: without the deadline it never ends.
    assert timed_scan.seconds < 40, f"the scan took {timed_scan.seconds:.1f} s"
    assert timed_scan.report.error("portal02.lab.example") == (
        "timed out: portal02.lab.example gave no complete answer within the 10 s host deadline"
    )
    assert_builtin_results(timed_scan.report)


def _pool_profiles(directory: Path, hung: int, healthy: int) -> list[str]:
    """Profiles of `hung` hanging hosts (first in inventory order) and `healthy` good ones."""
    directory.mkdir()
    templates = {
        "hang": yaml.safe_load((FAULT_PROFILES / "hang" / "faulty.yaml").read_text()),
        "ok": yaml.safe_load((FAULT_PROFILES / "hang" / "healthy.yaml").read_text()),
    }
    names: list[str] = []
    for index, kind in enumerate(["hang"] * hung + ["ok"] * healthy, start=1):
        name = f"{kind}{index}.lab.example"
        profile = {**templates[kind], "name": name, "address": f"127.0.4.{index}"}
        (directory / f"{index:02d}-{kind}.yaml").write_text(yaml.safe_dump(profile))
        names.append(name)
    return names


def test_the_pool_keeps_its_size_when_hosts_hang(tmp_path: Path) -> None:
    names = _pool_profiles(tmp_path / "profiles", hung=3, healthy=3)
    with running_lab(tmp_path / "lab", "--profiles", str(tmp_path / "profiles")) as lab:
        started = time.monotonic()
        result = run_agent("scan", "-i", str(lab.inventory), "--workers", "2", "--format", "json",
                           "--host-timeout", "8", "--operation-timeout", "1",
                           "--connect-timeout", "2", password=lab.password, timeout=180)
        seconds = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    report = Report.parse(result.stdout)
    assert list(report.hosts) == names
    for name in names:
        if name.startswith("hang"):
            assert report.error(name) == (
                f"timed out: {name} gave no complete answer within the 8 s host deadline"
            )
        else:
            assert report.error(name) is None, (name, report.error(name))
            assert report.statuses(name)["adfs-os-version"] == "PASS"
    # Two workers, three hung hosts first: the two hung hosts expire at 8 s, their replacements
    # take the third (until 16 s) and the healthy hosts. Without replacements it never ends.
    assert seconds < 90, f"the scan took {seconds:.1f} s"


# -- secrets -------------------------------------------------------------------------------------


def _secret_forms(password: str, user: str = "LAB\\mfa-scan") -> list[str]:
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [password, basic]


def _assert_nowhere(forms: list[str], where: dict[str, str]) -> None:
    for name, text in where.items():
        for form in forms:
            assert form not in text, f"the password (as {form[:6]}…) is in {name}"


@pytest.mark.parametrize("transport", ["ntlm-http", "basic-https"])
def test_the_password_appears_in_no_output(
    request: pytest.FixtureRequest, run_cli: Runner, use_lab: UseLab,
    caplog: pytest.LogCaptureFixture, tmp_path: Path, transport: str,
) -> None:
    if transport == "ntlm-http":
        lab: LabProcess = request.getfixturevalue("builtin_lab")
        inventory = lab.inventory
    else:
        lab = request.getfixturevalue("builtin_https_lab")
        inventory = inventory_variant(lab.inventory, tmp_path / "basic.yaml",
                                      common={"ansible_winrm_transport": "basic"})
    password = use_lab(lab)
    forms = _secret_forms(password)
    # The scan, in-process with every logger at DEBUG, and again as a process with --debug.
    caplog.set_level(logging.DEBUG)
    args = ["scan", "-i", str(inventory), "--limit", WITHOUT_HUNG_HOST, *FAST_TIMEOUTS]
    inproc = run_cli("--debug", *args, "--save-facts", str(tmp_path / "facts-1.json"),
                     "-o", str(tmp_path / "reports-1"))
    proc = run_agent("--debug", *args, "--save-facts", str(tmp_path / "facts-2.json"),
                     "-o", str(tmp_path / "reports-2"), password=password)
    assert inproc.code == proc.returncode == 1, (inproc.err, proc.stderr)
    # It did fail a logon (mfa02 has another password), and debug logging was really on.
    assert "authentication refused by mfa02.lab.example" in inproc.out
    assert "authentication refused by mfa02.lab.example" in proc.stdout
    assert " DEBUG " in proc.stderr
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    # No NTLM message either (base64 "NTLMSSP"): a challenge and its response are a crackable
    # hash of the password, whatever --debug shows.
    assert "TlRMTVNTUAA" not in proc.stderr + inproc.err + caplog.text

    outputs = {"stdout": inproc.out + proc.stdout, "stderr": inproc.err + proc.stderr,
               "log records": caplog.text + "\n".join(
                   f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)}
    files = [tmp_path / "facts-1.json", tmp_path / "facts-2.json", lab.inventory, inventory,
             *(tmp_path / "reports-1").iterdir(), *(tmp_path / "reports-2").iterdir()]
    assert len(files) > 6
    outputs |= {str(path): path.read_text() for path in files}
    _assert_nowhere(forms, outputs)


# -- replay ----------------------------------------------------------------------------------------


def _comparable(report: Report) -> dict[tuple[str, str], tuple[str, ...]]:
    """(check, target) → (status, reason, evidence); only the status for the clock check."""
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for r in report.document["results"]:
        key = (r["check_id"], r["target"])
        if r["check_id"] == "clock-skew":
            out[key] = (r["status"],)
        else:
            out[key] = (r["status"], r["reason"], repr(sorted(r["evidence"].items())))
    return out


def test_replaying_the_saved_facts_gives_the_live_results(
    timed_scan: TimedScan, run_cli: Runner
) -> None:
    result = run_cli("scan", "-i", str(timed_scan.inventory), "--replay", str(timed_scan.facts),
                     "--format", "json")
    assert result.code == 1, result.err
    replayed = Report.parse(result.out)
    assert replayed.document["mode"] == "replay"
    assert _comparable(replayed) == _comparable(timed_scan.report)
    assert {h: replayed.error(h) for h in replayed.hosts} == {
        h: timed_scan.report.error(h) for h in timed_scan.report.hosts
    }


def _replay_committed(run_cli: Runner) -> Report:
    result = run_cli("scan", "-i", str(REPO / "inventory" / "lab.yaml"), "--replay",
                     str(REPO / "inventory" / "lab.facts.json"), "--format", "json")
    assert result.code == 1, result.err
    return Report.parse(result.out)


def test_the_committed_lab_facts_give_the_live_statuses(
    timed_scan: TimedScan, run_cli: Runner
) -> None:
    committed = _replay_committed(run_cli)
    live = {k: v[0] for k, v in timed_scan.report.outcomes().items()}
    assert {k: v[0] for k, v in committed.outcomes().items()} == live


_DEADLINE = re.compile(r"\b\d+(\.\d+)? s host deadline")


def test_the_committed_lab_facts_give_the_live_reasons(
    timed_scan: TimedScan, run_cli: Runner
) -> None:
    def normalised(report: Report) -> dict[tuple[str, str], tuple[str, ...]]:
        return {k: tuple(_DEADLINE.sub("N s host deadline", part) for part in v)
                for k, v in _comparable(report).items()}

    assert normalised(_replay_committed(run_cli)) == normalised(timed_scan.report)


# -- demo ------------------------------------------------------------------------------------------


def test_the_demo_scans_the_lab_from_any_directory(
    run_cli: Runner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, use_lab: UseLab
) -> None:
    # use_lab only for its environment (no proxies); the demo makes its own password.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MFA_LAB_PASSWORD", raising=False)
    # The directory part of the demo is covered in test_demo.py.
    result = run_cli("demo", "--no-directory", "--format", "json")
    assert result.code == 1, result.err
    report = Report.parse(result.out)
    assert report.document["mode"] == "live"
    assert list(report.hosts) == [h.name for h in load_lab().hosts]
    assert_builtin_results(report)
    assert list(tmp_path.iterdir()) == []
