"""The scan history database: schema, location, bad files, concurrent writers, secrets, deltas."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from agent import __version__, factsfile
from agent.errors import InputError
from agent.history import SCHEMA_VERSION, History, default_path, inventory_key
from agent.inventory import load_inventory
from agent.model import Status, Waiver
from agent.report.model import ScanReport
from agent.scan import ScanOptions, finalize, replay
from tests.conftest import REPO, CliRun

LAB = str(REPO / "inventory" / "lab.yaml")
FACTS = str(REPO / "inventory" / "lab.facts.json")
Run = Callable[..., CliRun]


def lab_report() -> ScanReport:
    """The lab replayed in-process: several FAILs, two unreachable hosts."""
    return replay(factsfile.load(FACTS), load_inventory(LAB), ScanOptions()).report


def lab_fails() -> int:
    """How many FAIL results the lab's replay has (derived, not counted by hand)."""
    return sum(1 for r in lab_report().results if r.status is Status.FAIL)


def raw(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Query the database behind History's back (what is really stored)."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def no_traceback(result: CliRun) -> None:
    assert "Traceback" not in result.err + result.out


# -- the database ---------------------------------------------------------------------------


def test_first_open_creates_the_schema_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "history.sqlite3"  # parents are created
    with History.open(path) as history:
        assert history.path == path
        (busy_ms,) = history._db.execute("PRAGMA busy_timeout").fetchone()
        assert busy_ms >= 5_000  # a cron run meeting a manual one waits instead of failing
        assert history.scans() == []
    tables = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"scans", "hosts", "results"} <= tables
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]  # persistent: any connection sees it
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    # Opening again is harmless (the schema statements are idempotent).
    with History.open(path) as again:
        assert again.scans() == []


def test_a_recorded_scan_reads_back_with_hosts_results_and_evidence(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    report = lab_report()
    assert report.inventory_digest  # the lab inventory has a digest to store
    with History.open(path) as history:
        scan_id = history.record(report)

    with History.open(path) as history:
        stored = history.scan(scan_id)
        assert stored is not None
        assert history.scans() == [stored]
        assert stored.inventory_key == str(Path(LAB).resolve()) == inventory_key(report)
        assert stored.inventory == report.inventory
        assert stored.inventory_digest == report.inventory_digest
        assert stored.agent_version == __version__
        assert stored.mode == "replay"
        assert stored.started_at == report.started_at
        assert stored.finished_at == report.finished_at
        assert stored.started_at.utcoffset() is not None
        assert stored.exit_code == int(report.exit_code()) == 1
        assert stored.counts == {str(s): n for s, n in report.counts().items()}
        assert stored.counts["FAIL"] == lab_fails()
        assert history.host_names(scan_id) == sorted(h.name for h in report.hosts)
        assert sorted(
            (r.check_id, r.target, r.status, r.reason) for r in history.results(scan_id)
        ) == sorted((r.check_id, r.target, r.status, r.reason) for r in report.results)
        assert history.previous(stored.inventory_key) == stored
        assert history.previous(stored.inventory_key, before=scan_id) is None
        assert history.previous("some other inventory") is None
        assert history.scan(scan_id + 1) is None

    evidence = {
        (c, t): json.loads(str(e))
        for c, t, e in raw(path, "SELECT check_id, target, evidence FROM results")
    }
    assert len(evidence) == len(report.results)
    for result in report.results:
        assert evidence[result.check_id, result.target] == json.loads(
            json.dumps(dict(result.evidence), default=str)
        )
    assert any(evidence.values())  # real evidence, not just empty objects
    hosts = {
        name: (address, json.loads(str(roles)), connection, error)
        for name, address, roles, connection, error in raw(
            path, "SELECT name, address, roles, connection, error FROM hosts"
        )
    }
    for host in report.hosts:
        assert hosts[host.name] == (host.address, list(host.roles), host.connection, host.error)
    assert hosts["mfa02.lab.example"][3]  # an unreachable host keeps its error


def test_scans_lists_newest_first_and_filters_by_inventory(tmp_path: Path) -> None:
    report = lab_report()
    with History.open(tmp_path / "h.sqlite3") as history:
        first = history.record(report)
        other = history.record(
            ScanReport(**{**_fields(report), "inventory": str(tmp_path / "other.yaml")})
        )
        second = history.record(report)
        assert [s.id for s in history.scans()] == [second, other, first]
        assert [s.id for s in history.scans(limit=2)] == [second, other]
        assert [s.id for s in history.scans(inventory=inventory_key(report))] == [second, first]
        previous = history.previous(inventory_key(report), before=second)
        assert previous is not None
        assert previous.id == first


def _fields(report: ScanReport) -> dict[str, object]:
    return {
        name: getattr(report, name)
        for name in report.__dataclass_fields__
        if not name.startswith("_")
    }


def test_default_path_honours_mfa_agent_db_then_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MFA_AGENT_DB", str(tmp_path / "explicit.db"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_path() == tmp_path / "explicit.db"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MFA_AGENT_DB", "~/my.db")
    assert default_path() == tmp_path / "home" / "my.db"
    monkeypatch.setenv("MFA_AGENT_DB", "")  # set but empty: ignored
    assert default_path() == tmp_path / "xdg" / "mfa-agent" / "history.sqlite3"
    monkeypatch.delenv("MFA_AGENT_DB")
    assert default_path() == tmp_path / "xdg" / "mfa-agent" / "history.sqlite3"
    monkeypatch.setenv("XDG_STATE_HOME", "")  # set but empty: ignored
    assert default_path() == tmp_path / "home" / ".local" / "state" / "mfa-agent" / (
        "history.sqlite3"
    )
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_path() == tmp_path / "home" / ".local" / "state" / "mfa-agent" / (
        "history.sqlite3"
    )


def test_the_cli_uses_the_default_path_unless_db_is_given(
    run_cli: Run, private_history: Path, tmp_path: Path
) -> None:
    assert run_cli("scan", "-i", LAB, "--replay", FACTS, "-q").code == 1
    elsewhere = tmp_path / "elsewhere.sqlite3"
    assert run_cli("scan", "-i", LAB, "--replay", FACTS, "-q", "--db", str(elsewhere)).code == 1
    assert run_cli("scan", "-i", LAB, "--replay", FACTS, "-q", "--db", str(elsewhere)).code == 1
    with History.open() as history:  # $MFA_AGENT_DB, set by the autouse fixture
        assert history.path == private_history
        assert len(history.scans()) == 1
    with History.open(elsewhere) as history:
        assert len(history.scans()) == 2
    listed = run_cli("history", "--format", "json")
    assert listed.code == 0
    assert len(json.loads(listed.out)) == 1
    listed = run_cli("history", "--db", str(elsewhere), "--format", "json", "-i", LAB)
    document = json.loads(listed.out)
    assert [s["id"] for s in document] == [2, 1]
    assert document[0]["inventory_key"] == str(Path(LAB).resolve())
    assert document[0]["inventory_digest"]
    assert document[0]["agent_version"] == __version__
    assert document[0]["exit_code"] == 1
    assert document[0]["counts"]["FAIL"] == lab_fails()


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _not_sqlite(path: Path) -> Path:
    path.write_bytes(b"this is a text file, not an SQLite database\n" * 100)
    return path


def _under_a_file(path: Path) -> Path:
    path.write_text("a plain file")
    return path / "history.sqlite3"


@pytest.mark.parametrize("make", [_directory, _not_sqlite, _under_a_file])
def test_an_unusable_database_path_is_input_error_exit_3(
    run_cli: Run, tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    path = make(tmp_path / "db")
    with pytest.raises(InputError) as raised:
        History.open(path)
    assert str(path) in str(raised.value)
    assert "history database" in str(raised.value)
    for args in (
        ("scan", "-i", LAB, "--replay", FACTS, "-q", "--db", str(path)),
        ("history", "--db", str(path)),
        ("diff", "--db", str(path)),
    ):
        result = run_cli(*args)
        assert result.code == 3, (args, result.err)
        assert str(path) in result.err
        assert "history database" in result.err
        no_traceback(result)


def test_a_database_from_a_newer_agent_is_refused_clearly(run_cli: Run, tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(InputError, match="newer than this agent"):
        History.open(path)
    result = run_cli("scan", "-i", LAB, "--replay", FACTS, "--db", str(path))
    assert result.code == 3
    assert f"version {SCHEMA_VERSION + 1} is newer than this agent" in result.err
    assert str(path) in result.err
    assert "Verdict" not in result.out  # refused before scanning
    no_traceback(result)
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]  # left alone


# -- writers at the same time ---------------------------------------------------------------


def test_two_processes_scanning_at_once_all_record(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"  # does not exist yet: the first round creates it
    command = [
        sys.executable, "-m", "agent", "scan", "-i", LAB, "--replay", FACTS, "-q",
        "--db", str(path),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    outcomes = []
    for _ in range(5):
        started = [
            subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outcomes += [(p.wait(timeout=60), *p.communicate()) for p in started]
    for code, out, err in outcomes:
        assert code == 1, err  # the lab fails; never 3 ("database is locked") or 4
        assert out == ""
        assert err == ""
    with History.open(path) as history:
        scans = history.scans(limit=100)
        assert len({s.id for s in scans}) == len(scans) == 10
        expected = {(r.check_id, r.target, r.status) for r in lab_report().results}
        for scan in scans:
            assert scan.exit_code == 1
            assert {(r.check_id, r.target, r.status) for r in history.results(scan.id)} == (
                expected
            )
            assert len(history.host_names(scan.id)) == 7
    assert raw(path, "SELECT COUNT(*) FROM results") == [(10 * len(expected),)]


def test_two_threads_with_their_own_connections_record_at_once(tmp_path: Path) -> None:
    path = tmp_path / "threads.sqlite3"
    report = lab_report()
    start = threading.Barrier(2)
    ids: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with History.open(path) as history:
                start.wait(timeout=60)
                for _ in range(10):
                    ids.append(history.record(report))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(set(ids)) == 20
    with History.open(path) as history:
        assert sorted(s.id for s in history.scans(limit=100)) == sorted(ids)
    assert raw(path, "SELECT COUNT(*) FROM results") == [(20 * len(report.results),)]
    assert raw(path, "SELECT COUNT(*) FROM hosts") == [(20 * len(report.hosts),)]


def test_connections_creating_a_new_database_together_do_not_fail(tmp_path: Path) -> None:
    """Switching a new database to WAL returns SQLITE_BUSY without waiting when another
    connection is doing the same; the open must wait rather than report "database is locked"."""
    failures: list[str] = []
    for round_ in range(40):
        path = tmp_path / f"new-{round_}.sqlite3"
        start = threading.Barrier(8)

        def opener(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait(timeout=60)
            try:
                History.open(path).close()
            except InputError as exc:
                failures.append(str(exc))

        threads = [threading.Thread(target=opener) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []


# -- secrets --------------------------------------------------------------------------------


def test_secrets_never_reach_the_database_files(
    run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inline, from_env = "Inline-Hist0ry-S3cret-5d1e", "Env-Hist0ry-S3cret-a8c4"
    monkeypatch.setenv("HISTORY_TEST_PASSWORD", from_env)
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "all:\n"
        "  vars:\n"
        "    ansible_user: LAB\\scan\n"
        "    ansible_password: \"{{ lookup('env', 'HISTORY_TEST_PASSWORD') }}\"\n"
        "  children:\n"
        "    adfs:\n"
        "      hosts:\n"
        "        adfs01.lab.example:\n"
        f"          ansible_password: {inline}\n"
        "        adfs02.lab.example:\n"
        "    mfa_server:\n"
        "      hosts:\n"
        "        mfa02.lab.example:\n"
    )
    db = tmp_path / "secret-test.sqlite3"
    for _ in range(2):  # the second one also computes a delta
        result = run_cli("scan", "-i", str(inventory), "--replay", FACTS, "-q", "--db", str(db))
        assert result.code == 1
    files = [p for p in tmp_path.iterdir() if p.name.startswith(db.name)]
    assert db in files
    stored = b"".join(p.read_bytes() for p in files)
    assert b"adfs-os-version" in stored  # the scan really is in these bytes
    for secret in (inline, from_env):
        assert secret.encode() not in stored
        assert secret.encode("utf-16-le") not in stored


# -- a scan's report shows what changed -----------------------------------------------------


def fixed_adfs01_facts(tmp_path: Path) -> Path:
    document = json.loads(Path(FACTS).read_text())
    os_fact = document["hosts"]["adfs01.lab.example"]["facts"]["os"]["value"]
    os_fact.update(
        caption="Microsoft Windows Server 2012 R2 Datacenter",
        version="6.3.9600",
        build_number="9600",
    )
    path = tmp_path / "fixed.facts.json"
    path.write_text(json.dumps(document))
    return path


def test_the_second_scan_report_carries_the_delta_from_the_first(
    run_cli: Run, tmp_path: Path
) -> None:
    first = json.loads(run_cli("scan", "-i", LAB, "--replay", FACTS, "--format", "json").out)
    assert first["delta"] is None  # nothing to compare with yet
    assert isinstance(first["scan_id"], int)
    second_run = run_cli(
        "scan", "-i", LAB, "--replay", str(fixed_adfs01_facts(tmp_path)), "--format", "json"
    )
    assert second_run.code == 1
    second = json.loads(second_run.out)
    assert second["scan_id"] == first["scan_id"] + 1
    delta = second["delta"]
    assert delta["previous_scan_id"] == first["scan_id"]
    assert delta["previous_started_at"] == first["started_at"]
    assert delta["fixed"] == [
        {
            "check_id": "adfs-os-version",
            "target": "adfs01.lab.example",
            "before": "FAIL",
            "after": "PASS",
        }
    ]
    assert delta["new_failures"] == []
    assert delta["new_errors"] == []
    assert delta["hosts_added"] == delta["hosts_removed"] == []
    still = {(i["check_id"], i["target"]) for i in delta["still_failing"]}
    assert ("adfs-os-version", "adfs01.lab.example") not in still
    assert len(still) == lab_fails() - 1
    assert all(i["before"] == i["after"] == "FAIL" for i in delta["still_failing"])


def test_no_history_shows_no_delta_and_records_nothing(
    run_cli: Run, tmp_path: Path, private_history: Path
) -> None:
    assert run_cli("scan", "-i", LAB, "--replay", FACTS, "-q").code == 1
    result = run_cli("scan", "-i", LAB, "--replay", FACTS, "--no-history", "--format", "json")
    assert result.code == 1
    document = json.loads(result.out)
    assert document["delta"] is None
    assert document["scan_id"] is None
    with History.open() as history:
        assert len(history.scans()) == 1
    untouched = tmp_path / "never.sqlite3"
    quiet = run_cli(
        "scan", "-i", LAB, "--replay", FACTS, "-q", "--no-history", "--db", str(untouched)
    )
    assert quiet.code == 1
    assert not untouched.exists()


def test_waived_results_are_stored_as_waived(tmp_path: Path) -> None:
    report = lab_report()
    next_year = report.started_at.astimezone(UTC).date() + timedelta(days=365)
    waiver = Waiver(
        "adfs-os-version", "adfs01.lab.example", "upgrade booked", "CISO", next_year, "w.yaml:2"
    )
    with History.open(tmp_path / "h.sqlite3") as history:
        final = finalize(report, [waiver], history)
        assert final.scan_id is not None
        stored = history.scan(final.scan_id)
        assert stored is not None
        assert stored.counts["WAIVED"] == 1
        assert stored.counts["FAIL"] == lab_fails() - 1
        statuses = {(r.check_id, r.target): r.status for r in history.results(final.scan_id)}
    assert statuses["adfs-os-version", "adfs01.lab.example"] is Status.WAIVED
    (note,) = raw(tmp_path / "h.sqlite3", "SELECT waiver FROM results WHERE status = 'WAIVED'")
    assert "w.yaml:2" in str(note[0])


def test_a_version_1_database_gains_the_scope_column(tmp_path: Path) -> None:

    path = tmp_path / "v1.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE scans (id INTEGER PRIMARY KEY AUTOINCREMENT, inventory_key TEXT NOT NULL,"
        " inventory TEXT, inventory_digest TEXT, facts_source TEXT, agent_version TEXT NOT NULL,"
        " mode TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT NOT NULL,"
        " exit_code INTEGER NOT NULL, counts TEXT NOT NULL, warnings TEXT NOT NULL);"
        "INSERT INTO scans VALUES (1, 'k', NULL, NULL, NULL, '0.1.0', 'replay',"
        " '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:01+00:00', 1, '{}', '[]');"
        "PRAGMA user_version = 1;"
    )
    old.close()
    with History.open(path) as history:
        kept = history.scan(1)
        assert kept is not None
        assert kept.scope == ""
        assert history.previous("k") == kept
