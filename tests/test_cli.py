"""The command line end to end on recorded facts: exit codes, formats, outputs, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.registry import load_catalogue
from tests.conftest import REPO, CliRun

LAB = str(REPO / "inventory" / "lab.yaml")
FACTS = str(REPO / "inventory" / "lab.facts.json")
Run = Callable[..., CliRun]


def replay(run_cli: Run, *args: str) -> CliRun:
    return run_cli("scan", "-i", LAB, "--replay", FACTS, *args)


def no_traceback(result: CliRun) -> None:
    assert "Traceback" not in result.err + result.out


def test_lab_replay_fails_with_exit_1_and_explains(run_cli: Run) -> None:
    result = replay(run_cli)
    assert result.code == 1
    assert "adfs-os-version" in result.out
    assert "Windows Server 2012 (6.2.9200)" in result.out
    assert "Remediation" in result.out
    assert "\x1b[" not in result.out  # piped: no colour codes


def test_exit_2_when_only_errors_and_0_when_clean(run_cli: Run) -> None:
    errors_only = replay(run_cli, "--check", "portal-iis-version")
    assert errors_only.code == 2  # portal01 passes, portal02 timed out
    clean = replay(run_cli, "--check", "portal-iis-version", "--limit", "portal01.lab.example")
    assert clean.code == 0


def test_skip_check_and_limit_by_group(run_cli: Run) -> None:
    result = replay(
        run_cli, "--limit", "adfs", "--skip-check", "adfs-os-version", "--format", "json"
    )
    document = json.loads(result.out)
    host_targets = {r["target"] for r in document["results"] if not r["target"].startswith("(")}
    assert host_targets == {"adfs01.lab.example", "adfs02.lab.example"}
    assert "adfs-os-version" not in {r["check_id"] for r in document["results"]}


def test_single_format_goes_to_stdout(run_cli: Run) -> None:
    as_json = replay(run_cli, "--format", "json")
    assert json.loads(as_json.out)["summary"]["exit_code"] == 1
    as_junit = replay(run_cli, "--format", "junit")
    root = ET.fromstring(as_junit.out)  # noqa: S314 (our own output)
    assert root.tag == "testsuites"
    assert int(root.attrib["failures"]) > 0


def test_output_dir_writes_every_format(run_cli: Run, tmp_path: Path) -> None:
    result = replay(run_cli, "-o", str(tmp_path / "out"))
    assert result.code == 1
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "mfa-agent-report.html",
        "mfa-agent-report.json",
        "mfa-agent-report.md",
        "mfa-agent-report.xml",
        "mfa-agent.prom",
    ]
    assert "Verdict" in result.out  # the terminal report is still shown


def test_outputs_that_cannot_be_written_are_refused_before_the_scan(
    run_cli: Run, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = replay(run_cli, "-o", str(blocker), "--save-facts", str(blocker / "f.json"))
    assert result.code == 3
    assert f"{blocker}: [--output-dir] is not a directory" in result.err
    assert "[--save-facts] its directory is a file" in result.err
    assert "Verdict" not in result.out  # nothing was scanned
    no_traceback(result)


def test_a_write_failing_after_the_scan_is_exit_3_and_loses_nothing_else(
    run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.report.writer

    real = agent.report.writer.write_atomic

    def full_disk(path: Path, text: str, mode: int = 0o600) -> None:
        if path.suffix == ".json" and path.parent.name == "out":
            raise OSError(28, "No space left on device")
        real(path, text, mode)

    monkeypatch.setattr(agent.report.writer, "write_atomic", full_disk)
    result = replay(run_cli, "-o", str(tmp_path / "out"), "--save-facts", str(tmp_path / "f.json"))
    assert result.code == 3
    assert "cannot write: No space left on device" in result.err
    assert "Verdict" in result.out  # the report is still shown
    assert (tmp_path / "f.json").exists()  # the other outputs were written
    assert (tmp_path / "out" / "mfa-agent-report.html").exists()
    no_traceback(result)


def test_save_facts_round_trip_gives_the_same_results(run_cli: Run, tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    first = replay(run_cli, "--save-facts", str(saved), "--format", "json")
    second = run_cli("scan", "-i", LAB, "--replay", str(saved), "--format", "json")
    alone = run_cli("scan", "--replay", str(saved), "--format", "json")

    def results(out: str) -> list[tuple[str, str, str, str]]:
        return [
            (r["check_id"], r["target"], r["status"], r["reason"])
            for r in json.loads(out)["results"]
        ]

    assert results(first.out) == results(second.out)
    # Without -i the facts file's own snapshot of the inventory is used; directory checks
    # stay MANUAL because the lab configures no directory.
    assert results(alone.out) == results(first.out)


def test_replay_without_inventory_limits_by_role(run_cli: Run) -> None:
    result = run_cli("scan", "--replay", FACTS, "--limit", "user_portal", "--format", "json")
    targets = {
        r["target"] for r in json.loads(result.out)["results"] if not r["target"].startswith("(")
    }
    assert targets == {"portal01.lab.example", "portal02.lab.example"}


def test_host_missing_from_facts_is_an_error_for_that_host(run_cli: Run, tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "all:\n  children:\n    adfs:\n      hosts:\n"
        "        adfs01.lab.example:\n        newnode.lab.example:\n"
    )
    result = run_cli("scan", "-i", str(inventory), "--replay", FACTS, "--format", "json")
    document = json.loads(result.out)
    errors = {h["name"]: h["error"] for h in document["hosts"]}
    assert errors["adfs01.lab.example"] is None
    assert "no facts recorded" in errors["newnode.lab.example"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("scan",), "give an inventory"),
        (("scan", "-i", "/nonexistent/inv.yaml", "--replay", FACTS), "/nonexistent/inv.yaml"),
        (("scan", "-i", LAB, "--replay", "/nonexistent/facts.json"), "cannot read the facts file"),
        (("scan", "-i", LAB, "--replay", LAB), "not valid JSON"),
        (
            ("scan", "-i", LAB, "--replay", FACTS, "--check", "adfs-os-versoin"),
            "did you mean 'adfs-os-version'",
        ),
        (("scan", "-i", LAB, "--replay", FACTS, "--limit", "nosuchhost"), "nosuchhost"),
        (("scan", "-i", LAB, "--replay", FACTS, "--format", "json", "--format", "junit"), "-o DIR"),
        (("scan", "--bogus-option"), "--bogus-option"),
        (("scan", "-i", LAB, "--replay", FACTS, "--workers", "0"), "--workers"),
        (("nosuchcommand",), "nosuchcommand"),
    ],
)
def test_bad_input_is_exit_3_with_a_clear_message(
    run_cli: Run, args: tuple[str, ...], expected: str
) -> None:
    result = run_cli(*args)
    assert result.code == 3, result.err
    assert expected in result.err
    no_traceback(result)


def test_malformed_inventory_names_file_line_and_key(run_cli: Run, tmp_path: Path) -> None:
    inventory = tmp_path / "bad.yaml"
    inventory.write_text(
        "all:\n  vars:\n    mfa_networks:\n      perimeter: [10.0.0.0/33]\n"
        "  hosts:\n    a.example:\n"
    )
    result = run_cli("scan", "-i", str(inventory), "--replay", FACTS)
    assert result.code == 3
    assert f"{inventory}:4" in result.err
    assert "perimeter" in result.err
    no_traceback(result)


def test_checks_lists_the_catalogue(run_cli: Run) -> None:
    table = run_cli("checks")
    assert table.code == 0
    assert "phonefactor-admins-exists" in table.out
    listed = json.loads(run_cli("checks", "--format", "json").out)
    assert len(listed) == len(load_catalogue())
    assert all(item["guidance"]["quote"] for item in listed)


def test_inventory_command_validates_and_masks(
    run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = str(REPO / "inventory" / "example.yaml")
    monkeypatch.delenv("MFA_AGENT_PASSWORD", raising=False)
    monkeypatch.delenv("MFA_LDAP_PASSWORD", raising=False)
    missing = run_cli("inventory", "-i", example)
    assert missing.code == 3
    assert "MFA_AGENT_PASSWORD" in missing.err
    monkeypatch.setenv("MFA_AGENT_PASSWORD", "Example-Host-Pa55")
    monkeypatch.setenv("MFA_LDAP_PASSWORD", "Example-Ldap-Pa55")
    monkeypatch.setenv("MFA_SSH_KEY_PASSPHRASE", "Example-Key-Pa55")
    ok = run_cli("inventory", "-i", example, "--format", "json")
    assert ok.code == 0
    document = json.loads(ok.out)
    assert any("adfs" in h["roles"] for h in document["hosts"])
    assert "Example-Host-Pa55" not in ok.out + ok.err
    assert "Example-Ldap-Pa55" not in ok.out + ok.err
    assert "Example-Key-Pa55" not in ok.out + ok.err


def test_secrets_never_appear_in_any_output(
    run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inline, from_env = "Inline-S3cret-7f2a", "Env-S3cret-91bc"
    monkeypatch.setenv("CLI_TEST_PASSWORD", from_env)
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "all:\n"
        "  vars:\n"
        "    ansible_user: LAB\\scan\n"
        "    ansible_password: \"{{ lookup('env', 'CLI_TEST_PASSWORD') }}\"\n"
        "  children:\n"
        "    adfs:\n"
        "      hosts:\n"
        "        adfs01.lab.example:\n"
        f"          ansible_password: {inline}\n"
        "        adfs02.lab.example:\n"
    )
    outputs = [
        run_cli("inventory", "-i", str(inventory)),
        run_cli("inventory", "-i", str(inventory), "--format", "json"),
        run_cli(
            "--debug",
            "scan",
            "-i",
            str(inventory),
            "--replay",
            FACTS,
            "-o",
            str(tmp_path / "o"),
            "--save-facts",
            str(tmp_path / "facts.json"),
        ),
        run_cli("scan", "-i", str(inventory), "--replay", FACTS, "--format", "json"),
        run_cli("scan", "-i", str(inventory), "--replay", FACTS, "--format", "junit"),
    ]
    texts = [o.out + o.err for o in outputs]
    texts += [p.read_text() for p in tmp_path.rglob("*") if p.is_file() and p != inventory]
    assert any("inline" in t.lower() for t in texts)  # the inline password is warned about
    for text in texts:
        assert inline not in text
        assert from_env not in text


def test_module_entry_point_and_help_document_exit_codes() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    version = subprocess.run(
        [sys.executable, "-m", "agent", "--version"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert version.returncode == 0
    assert "mfa-agent" in version.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "agent", "scan", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert helped.returncode == 0
    for line in ("0  no FAIL and no ERROR", "1  at least one FAIL", "3  invalid input"):
        assert line in helped.stdout


def test_nothing_left_to_run_is_exit_3(run_cli: Run) -> None:
    result = replay(run_cli, "--check", "clock-skew", "--skip-check", "clock-skew")
    assert result.code == 3
    assert "no check is left to run" in result.err


def test_a_facts_file_of_another_inventory_is_exit_3(run_cli: Run) -> None:
    example = str(REPO / "inventory" / "example.yaml")
    result = run_cli("scan", "-i", example, "--replay", FACTS)
    assert result.code == 3
    assert "none of the inventory's hosts is in this facts file" in result.err
    assert "adfs01.lab.example" in result.err


_QUICK_EXIT = """
import atexit, sys, threading
import agent.cli
atexit.register(print, "exit handler ran")
if sys.argv[1] == "thread":  # running until the test closes stdin, after reading the report
    threading.Thread(target=lambda: (sys.stdin.read(), print("thread finished"))).start()
sys.argv = ["mfa-agent", "scan", "-i", sys.argv[2], "--replay", sys.argv[3], "--format", "json"]
agent.cli.run()
"""


@pytest.mark.parametrize("with_thread", [False, True])
def test_the_console_script_exits_with_the_code_after_its_exit_handlers(
    with_thread: bool,
) -> None:
    """`run` skips the interpreter's teardown, not what a normal exit does: the exit handlers
    run, the whole report reaches a pipe, the exit code is the scan's; a thread still running
    is waited for, as a normal exit does."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    mode = "thread" if with_thread else "plain"
    with subprocess.Popen([sys.executable, "-c", _QUICK_EXIT, mode, LAB, FACTS], env=env,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        report = ""
        for line in child.stdout:
            report += line
            if line == "}\n":  # the report is out: the scan is over, run() is exiting
                break
        child.stdin.close()
        rest = child.stdout.read()
        code = child.wait(timeout=120)
    assert code == 1
    assert json.loads(report)["summary"]["counts"]["FAIL"] == 10
    assert "exit handler ran" in rest
    assert ("thread finished" in rest) is with_thread
