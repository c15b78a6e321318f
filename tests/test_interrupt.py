"""Ctrl-C during a live scan: what was gathered is still reported and written, exit code 130."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("labfixtures")  # before importing it: its helpers assert
from labfixtures import REPO, LabProcess, clean_environment  # noqa: E402

pytest_plugins = ("labfixtures",)


@pytest.mark.needs_server
def test_interrupt_keeps_partial_results(fault_labs: dict[str, LabProcess], tmp_path: Path) -> None:
    lab = fault_labs["hang"]  # one host that never answers, one healthy host
    out = tmp_path / "out"
    closed_before = _shells_closed(lab)
    scan = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "scan",
            "-i",
            str(lab.inventory),
            "-q",
            "--host-timeout",
            "300",
            "--operation-timeout",
            "2",
            "-o",
            str(out),
            "--format",
            "json",
            "--save-facts",
            str(tmp_path / "facts.json"),
            "--db",
            str(tmp_path / "history.db"),
        ],
        cwd=REPO,
        env=clean_environment(lab.password),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Interrupt once the healthy host is done (it closed its shell: an event, not a guess at
        # how long it takes); the hanging one never answers. The deadline only bounds a failure.
        deadline = time.monotonic() + 120
        while _shells_closed(lab) == closed_before:
            assert scan.poll() is None and time.monotonic() < deadline, "healthy host not done"
            time.sleep(0.05)
        scan.send_signal(signal.SIGINT)
        _, err = scan.communicate(timeout=30)
    finally:
        if scan.poll() is None:
            scan.kill()
    assert scan.returncode == 130, err
    assert "Traceback" not in err
    report = json.loads((out / "mfa-agent-report.json").read_text())
    errors = {h["name"]: h["error"] for h in report["hosts"]}
    assert errors["healthy.lab.example"] is None
    assert "interrupted" in errors["faulty.lab.example"]
    assert any("interrupted" in w for w in report["warnings"])
    healthy = [r for r in report["results"] if r["target"] == "healthy.lab.example"]
    assert healthy
    assert all(r["status"] != "ERROR" for r in healthy)
    assert json.loads((tmp_path / "facts.json").read_text())["hosts"]["healthy.lab.example"][
        "facts"
    ]


def _shells_closed(lab: LabProcess) -> int:
    """How many shells the healthy host has had closed (WS-Management Delete) so far."""
    return lab.stats(timeout=60)["healthy.lab.example"].get("action:Delete", 0)
