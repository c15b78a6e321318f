"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import main

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class CliRun:
    """What one in-process run of the command line produced."""

    code: int
    out: str
    err: str


def pytest_configure(config: pytest.Config) -> None:
    """Before any fixture runs (module- and session-scoped ones too), no test may reach the
    user's own history database: point it at a throwaway file for the whole session."""
    scratch = Path(tempfile.mkdtemp(prefix="mfa-agent-tests-"))
    os.environ["MFA_AGENT_DB"] = str(scratch / "session-history.sqlite3")


@pytest.fixture(autouse=True)
def private_history(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own history database, never the user's."""
    path = tmp_path_factory.mktemp("history") / "history.sqlite3"
    monkeypatch.setenv("MFA_AGENT_DB", str(path))
    return path


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """Run `mfa-agent ARGS…` in-process and return exit code, stdout and stderr."""

    def run(*args: str) -> CliRun:
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        captured = capsys.readouterr()
        code = exited.value.code
        return CliRun(code if isinstance(code, int) else 0, captured.out, captured.err)

    return run


@pytest.fixture
def repo() -> Path:
    """The repository root."""
    return REPO


def require_or_fail(available: bool, what: str) -> None:
    """Skip when a real server's program is missing — except in CI, where that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not installed", pytrace=False)
    pytest.skip(f"{what} is not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """In CI, a skipped test that needs a real server is a failure: nothing is skipped silently."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and item.get_closest_marker("needs_server") is not None:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, but it needs a real server: {report.longrepr}"
    return None
