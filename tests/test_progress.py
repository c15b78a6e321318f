"""The progress bar of a live scan: drawn on a terminal, absent otherwise."""

from __future__ import annotations

import io

import pytest

from agent.facts import HostError, HostFacts
from agent.progress import ScanProgress


def test_a_bar_counts_hosts_and_failures_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = io.StringIO()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws on a terminal only
    with ScanProgress(enabled=True) as shown:
        shown.start(2)
        shown.host_done(HostFacts("a.lab.example", frozenset({"adfs"}), "127.0.0.2"))
        shown.host_done(HostFacts("b.lab.example", frozenset({"adfs"}), "127.0.0.3",
                                  error=HostError("connection", "refused")))
        assert shown._progress is not None
        task = shown._progress.tasks[0]
        assert (task.completed, task.total, task.fields["failures"]) == (2, 2, 1)
    assert "scanning" in terminal.getvalue()


def test_no_terminal_no_bar_and_no_output(monkeypatch: pytest.MonkeyPatch) -> None:
    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    with ScanProgress() as shown:
        shown.start(1)
        shown.host_done(HostFacts("a.lab.example", frozenset({"adfs"}), "127.0.0.2"))
        assert shown._progress is None
    assert piped.getvalue() == ""
