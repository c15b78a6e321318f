"""The history under contention: a database another process keeps locked, and two scans
creating a fresh history folder at the same moment.

Every lock here is held by a real second SQLite connection for the whole of the scan, so the
short busy timeout only decides how soon the (certain) failure is reported, never the result.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent import history as history_module
from agent.history import History, HistoryUnavailable
from tests.conftest import REPO, CliRun

LAB = str(REPO / "inventory" / "lab.yaml")
FACTS = str(REPO / "inventory" / "lab.facts.json")
Run = Callable[..., CliRun]


@pytest.fixture
def quick_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock below is never released during the scan: waiting 30 s would only slow the test."""
    monkeypatch.setattr(history_module, "BUSY_TIMEOUT_SECONDS", 0.3)


def exclusive_lock(path: Path) -> sqlite3.Connection:
    """A second connection holding an exclusive lock on `path` until it is closed."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


@pytest.fixture
def recorded_db(tmp_path: Path, run_cli: Run) -> Path:
    """A history holding one scan of the lab (so the next one has something to diff against)."""
    db = tmp_path / "history.sqlite3"
    first = run_cli("scan", "-i", LAB, "--replay", FACTS, "--db", str(db), "-q")
    assert first.code == 1, first.err
    return db


@pytest.fixture
def locked(recorded_db: Path) -> Iterator[Path]:
    holder = exclusive_lock(recorded_db)
    try:
        yield recorded_db
    finally:
        holder.close()


def assert_reported_but_not_recorded(run: CliRun, out: Path, db: Path) -> None:
    assert run.code == 3, run.err
    assert "Verdict" in run.out or "FAIL" in run.out  # the terminal report was still printed
    written = sorted(p.name for p in out.iterdir())
    assert {"mfa-agent-report.json", "mfa-agent-report.html"} <= set(written), written
    assert "the scan was not recorded in the history" in run.err
    assert "locked by another process (waited 0.3 s)" in run.err and str(db) in run.err
    assert "Traceback" not in run.err
    assert "not recorded in the history" in (out / "mfa-agent-report.json").read_text()


@pytest.mark.usefixtures("quick_busy_timeout")
def test_a_history_locked_past_the_timeout_still_reports_and_exits_3(
    locked: Path, tmp_path: Path, run_cli: Run
) -> None:
    out = tmp_path / "out"
    run = run_cli("scan", "-i", LAB, "--replay", FACTS, "--db", str(locked), "-o", str(out))
    assert_reported_but_not_recorded(run, out, locked)


def test_the_locked_scan_is_not_in_the_history(
    quick_busy_timeout: None, recorded_db: Path, tmp_path: Path, run_cli: Run
) -> None:
    holder = exclusive_lock(recorded_db)
    try:
        run = run_cli("scan", "-i", LAB, "--replay", FACTS, "--db", str(recorded_db), "-q")
    finally:
        holder.close()
    assert run.code == 3
    with History.open(recorded_db) as history:
        assert len(history.scans()) == 1


@pytest.mark.usefixtures("quick_busy_timeout")
def test_a_new_history_locked_while_opening_still_reports_and_exits_3(
    tmp_path: Path, run_cli: Run
) -> None:
    # A database still in rollback-journal mode: the lock also stops the switch to WAL.
    db = tmp_path / "fresh.sqlite3"
    sqlite3.connect(db).close()
    holder = exclusive_lock(db)
    try:
        out = tmp_path / "out"
        run = run_cli("scan", "-i", LAB, "--replay", FACTS, "--db", str(db), "-o", str(out))
    finally:
        holder.close()
    assert_reported_but_not_recorded(run, out, db)


def test_record_raises_history_unavailable_when_locked(recorded_db: Path) -> None:
    with History.open(recorded_db, busy_timeout=0.2) as history:
        previous = history.scans()
        holder = exclusive_lock(recorded_db)
        try:
            locked = r"locked by another process \(waited 0.2 s\)"
            with pytest.raises(HistoryUnavailable, match=locked):
                history.record(_a_report(recorded_db))
        finally:
            holder.close()
        assert history.scans() == previous


def _a_report(db: Path) -> object:
    from agent import factsfile
    from agent.scan import ScanOptions, replay

    return replay(factsfile.load(FACTS), None, ScanOptions()).report


# -- two scans creating a fresh history folder ----------------------------------------------------


def test_a_folder_created_by_another_scan_meanwhile_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other scan wins the race: the folder appears just before this one creates it."""
    folder = tmp_path / "state" / "mfa-agent"
    original = Path.mkdir
    raced = threading.Event()

    def other_scan_first(self: Path, *args: object, **kwargs: object) -> None:
        if self == folder and not raced.is_set():
            raced.set()
            folder.parent.mkdir(parents=True)
            os.mkdir(folder, 0o700)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", other_scan_first)
    with History.open(folder / "history.sqlite3") as history:
        assert history.scans() == []
    assert raced.is_set()


@pytest.mark.parametrize("round_", range(10))
def test_scans_creating_a_fresh_history_folder_together_all_succeed(
    round_: int, tmp_path: Path
) -> None:
    db = tmp_path / "state" / "mfa-agent" / "history.sqlite3"
    racers = 6
    start = threading.Barrier(racers)
    errors: list[BaseException] = []

    def scan() -> None:
        start.wait()
        try:
            with History.open(db) as history:
                history.scans()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scan) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert db.parent.stat().st_mode & 0o777 == 0o700
