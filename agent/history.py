"""Scan history in an embedded SQLite database, and the difference between two scans.

Default location: ``$MFA_AGENT_DB``, else ``$XDG_STATE_HOME/mfa-agent/history.sqlite3`` (that is
``~/.local/state/mfa-agent/history.sqlite3``); ``--db`` overrides both. WAL mode and a busy timeout
make overlapping scans (a cron run meeting a manual one) wait for each other instead of failing;
a database still locked after the timeout raises `HistoryUnavailable`, and the scan is then
reported without being recorded. The database must be a regular file (a FIFO would block).
Each scan stores its inventory (path and digest), agent version, start and end, hosts, and every
result with its evidence. Nothing secret reaches a report, so nothing secret reaches the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.errors import InputError, Problem
from agent.model import Status
from agent.report.model import Delta, DeltaItem, ScanReport
from agent.safeio import file_kind

SCHEMA_VERSION = 2
#: How long a scan waits for another one holding the database before giving up on the history.
BUSY_TIMEOUT_SECONDS = 30.0
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    inventory_key TEXT NOT NULL,
    inventory TEXT,
    inventory_digest TEXT,
    facts_source TEXT,
    agent_version TEXT NOT NULL,
    mode TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    counts TEXT NOT NULL,
    warnings TEXT NOT NULL,
    scope TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS scans_by_inventory ON scans (inventory_key, id);
CREATE TABLE IF NOT EXISTS hosts (
    scan_id INTEGER NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    roles TEXT NOT NULL,
    connection TEXT NOT NULL,
    trust_notes TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (scan_id, name)
);
CREATE TABLE IF NOT EXISTS results (
    scan_id INTEGER NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    check_id TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL,
    waiver TEXT,
    PRIMARY KEY (scan_id, check_id, target)
);
"""


def default_path() -> Path:
    """Where the history lives unless --db says otherwise."""
    explicit = os.environ.get("MFA_AGENT_DB")
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(state) / "mfa-agent" / "history.sqlite3"


def inventory_key(report: ScanReport) -> str:
    """What makes two scans "of the same inventory": its absolute path, else the facts file."""
    if report.inventory:
        return str(Path(report.inventory).expanduser().resolve())
    return f"facts:{Path(report.facts_source).resolve()}" if report.facts_source else "(none)"


@dataclass(frozen=True)
class StoredScan:
    """One row of the scans table."""

    id: int
    inventory_key: str
    inventory: str | None
    inventory_digest: str | None
    agent_version: str
    mode: str
    started_at: datetime
    finished_at: datetime
    exit_code: int
    counts: dict[str, int]
    #: How the scan was narrowed (``--limit``, ``--check``, ``--skip-check``); "" for all of it.
    scope: str = ""


@dataclass(frozen=True)
class StoredResult:
    """One stored result (enough to diff and to show)."""

    check_id: str
    target: str
    status: Status
    severity: str
    reason: str


class HistoryUnavailable(InputError):
    """The history database could not be used just now (locked past the busy timeout, or a
    write failed): the scan's results still stand, only the history step is lost.

    `reason` says why in words for a person.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(Problem(str(path), f"cannot use the history database: {reason}"))


def _unavailable(path: Path, exc: sqlite3.Error, timeout: float) -> HistoryUnavailable:
    if getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES:
        return HistoryUnavailable(
            path, f"the database is locked by another process (waited {timeout:g} s)"
        )
    return HistoryUnavailable(path, str(exc))


def _check_path(path: Path) -> None:
    """Refuse a database that is not a regular file, or a folder that is not a directory."""
    for where, want_dir in ((path.parent, True), (path, False)):
        try:
            mode = os.stat(where).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            why = f"cannot use the history database: {where}: {exc.strerror}"
            raise InputError(Problem(str(path), why)) from None
        if want_dir and not stat.S_ISDIR(mode):
            why = f"its folder {where} is not a directory"
        elif not want_dir and not stat.S_ISREG(mode):
            why = f"it is {file_kind(mode)}, not a regular file"
        else:
            continue
        raise InputError(Problem(str(path), f"cannot use the history database: {why}"))


class History:
    """The history database. One per process and thread; open it with `History.open`."""

    def __init__(
        self, connection: sqlite3.Connection, path: Path, busy_timeout: float | None = None
    ) -> None:
        self._db = connection
        self.path = path
        self._timeout = BUSY_TIMEOUT_SECONDS if busy_timeout is None else busy_timeout

    @classmethod
    def open(cls, path: Path | None = None, busy_timeout: float | None = None) -> History:
        """Open (creating if needed) the database.

        `InputError` if it cannot be used; `HistoryUnavailable` (an `InputError`) if it stays
        locked by another process past `busy_timeout` seconds (default `BUSY_TIMEOUT_SECONDS`).
        """
        path = path or default_path()
        timeout = BUSY_TIMEOUT_SECONDS if busy_timeout is None else busy_timeout
        _check_path(path)
        try:
            # Evidence describes security weaknesses: the database is the owner's only, like the
            # report files (SQLite gives its -wal and -shm files the database file's mode).
            # exist_ok: two scans creating a fresh folder at the same moment both succeed.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
            os.close(os.open(path, flags, 0o600))
            _check_path(path)  # still a regular file once created (nothing swapped in)
            db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise InputError(
                Problem(str(path), f"cannot use the history database: {exc}")
            ) from None
        try:
            db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            _enable_wal(db, timeout)
            db.execute("PRAGMA foreign_keys = ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise InputError(
                    Problem(
                        str(path), f"history database version {version} is newer than this agent"
                    )
                )
            if version < SCHEMA_VERSION:
                # executescript commits by itself; every statement is idempotent, so two
                # processes creating the database at once both succeed.
                db.executescript(_SCHEMA)
                if version == 1:  # version 1 had no scope: its scans covered everything
                    with contextlib.suppress(sqlite3.OperationalError):  # added by a racer
                        db.execute("ALTER TABLE scans ADD COLUMN scope TEXT NOT NULL DEFAULT ''")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            db.close()
            if getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES:
                raise _unavailable(path, exc, timeout) from None
            raise InputError(
                Problem(str(path), f"cannot use the history database: {exc}")
            ) from None
        except BaseException:
            db.close()
            raise
        return cls(db, path, timeout)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, report: ScanReport) -> int:
        """Store a finished scan with every host and result; its new scan id.

        `HistoryUnavailable` when the database stays locked or the write fails (nothing stored).
        """
        try:
            return self._record(report)
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc, self._timeout) from None

    def _record(self, report: ScanReport) -> int:
        counts = {str(k): v for k, v in report.counts().items()}
        with _transaction(self._db):
            cursor = self._db.execute(
                "INSERT INTO scans (inventory_key, inventory, inventory_digest, facts_source,"
                " agent_version, mode, started_at, finished_at, exit_code, counts, warnings,"
                " scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    inventory_key(report),
                    report.inventory,
                    report.inventory_digest,
                    report.facts_source,
                    report.agent_version,
                    report.mode,
                    _iso(report.started_at),
                    _iso(report.finished_at),
                    int(report.exit_code()),
                    json.dumps(counts),
                    json.dumps(list(report.warnings)),
                    report.scope,
                ),
            )
            scan_id = cursor.lastrowid
            assert scan_id is not None
            self._db.executemany(
                "INSERT INTO hosts VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        scan_id,
                        h.name,
                        h.address,
                        json.dumps(list(h.roles)),
                        h.connection,
                        json.dumps(list(h.trust_notes)),
                        h.error,
                    )
                    for h in report.hosts
                ],
            )
            self._db.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        scan_id,
                        r.check_id,
                        r.target,
                        r.status.value,
                        report.check(r.check_id).severity.value,
                        r.reason,
                        json.dumps(dict(r.evidence), default=str),
                        None
                        if r.waiver is None
                        else f"{r.waiver.source} (expires {r.waiver.expires})",
                    )
                    for r in report.results
                ],
            )
        return scan_id

    def _rows(self, query: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        """Every row of a query; `HistoryUnavailable` when the database cannot answer."""
        try:
            return list(self._db.execute(query, args).fetchall())
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc, self._timeout) from None

    def scans(self, inventory: str | None = None, limit: int = 20) -> list[StoredScan]:
        """The most recent scans, newest first, optionally of one inventory key only."""
        query = "SELECT * FROM scans"
        args: tuple[object, ...] = ()
        if inventory is not None:
            query += " WHERE inventory_key = ?"
            args = (inventory,)
        rows = self._rows(query + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [_scan(row) for row in rows]

    def scan(self, scan_id: int) -> StoredScan | None:
        """One scan by id."""
        rows = self._rows("SELECT * FROM scans WHERE id = ?", (scan_id,))
        return _scan(rows[0]) if rows else None

    def previous(self, key: str, scope: str = "", before: int | None = None) -> StoredScan | None:
        """The latest scan of the same inventory and scope, before scan `before` if given.

        A scan narrowed with --limit or --check is only compared with scans narrowed alike:
        otherwise every host it left out would look removed, and then added back.
        """
        query = "SELECT * FROM scans WHERE inventory_key = ? AND scope = ?"
        args: tuple[object, ...] = (key, scope)
        if before is not None:
            query += " AND id < ?"
            args += (before,)
        rows = self._rows(query + " ORDER BY id DESC LIMIT 1", args)
        return _scan(rows[0]) if rows else None

    def results(self, scan_id: int) -> list[StoredResult]:
        """Every result of a scan."""
        rows = self._rows(
            "SELECT check_id, target, status, severity, reason FROM results WHERE scan_id = ?"
            " ORDER BY target, check_id",
            (scan_id,),
        )
        return [
            StoredResult(str(r[0]), str(r[1]), Status(str(r[2])), str(r[3]), str(r[4]))
            for r in rows
        ]

    def host_names(self, scan_id: int) -> list[str]:
        """The hosts of a scan."""
        rows = self._rows("SELECT name FROM hosts WHERE scan_id = ? ORDER BY name", (scan_id,))
        return [str(r[0]) for r in rows]

    def delta(
        self, old: StoredScan, new_results: Sequence[StoredResult], new_hosts: Sequence[str]
    ) -> Delta:
        """What changed from scan `old` to the given results and hosts."""
        return compute_delta(
            old.id,
            old.started_at,
            self.results(old.id),
            self.host_names(old.id),
            new_results,
            new_hosts,
        )


def _enable_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL mode, waiting while another connection is creating the database.

    The switch needs an exclusive lock and SQLite returns SQLITE_BUSY at once, without calling
    the busy handler, when another connection holds a lock it cannot wait on (two scans opening
    a new database together), so the busy timeout is honoured here.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _scan(row: tuple[object, ...]) -> StoredScan:
    return StoredScan(
        id=int(str(row[0])),
        inventory_key=str(row[1]),
        inventory=None if row[2] is None else str(row[2]),
        inventory_digest=None if row[3] is None else str(row[3]),
        agent_version=str(row[5]),
        mode=str(row[6]),
        started_at=datetime.fromisoformat(str(row[7])),
        finished_at=datetime.fromisoformat(str(row[8])),
        exit_code=int(str(row[9])),
        counts=json.loads(str(row[10])),
        scope=str(row[12]),
    )


def stored_results(report: ScanReport) -> list[StoredResult]:
    """A report's results in the stored form (for diffing against history)."""
    return [
        StoredResult(
            r.check_id, r.target, r.status, report.check(r.check_id).severity.value, r.reason
        )
        for r in report.results
    ]


def compute_delta(
    old_id: int,
    old_started: datetime,
    old: Sequence[StoredResult],
    old_hosts: Sequence[str],
    new: Sequence[StoredResult],
    new_hosts: Sequence[str],
) -> Delta:
    """Diff two scans' results by (check, target).

    new failure: FAIL now, not FAIL before (or absent; WAIVED before is a waiver that ended) ·
    fixed: FAIL or WAIVED before, PASS or SKIP now · still failing: FAIL both times · new error:
    ERROR now, not ERROR before · newly waived: FAIL before, WAIVED now. A result whose host was
    added or removed counts under hosts added/removed only.
    """
    before = {(r.check_id, r.target): r.status for r in old}
    after = {(r.check_id, r.target): r.status for r in new}
    added = sorted(set(new_hosts) - set(old_hosts))
    removed = sorted(set(old_hosts) - set(new_hosts))
    moved = set(added) | set(removed)

    def items(keys: Sequence[tuple[str, str]]) -> tuple[DeltaItem, ...]:
        return tuple(
            DeltaItem(c, t, before.get((c, t)), after.get((c, t)))
            for c, t in sorted(keys)
            if t not in moved
        )

    return Delta(
        previous_scan_id=old_id,
        previous_started_at=old_started,
        new_failures=items(
            [k for k, s in after.items() if s is Status.FAIL and before.get(k) is not Status.FAIL]
        ),
        fixed=items(
            [
                k
                for k, s in before.items()
                if s in (Status.FAIL, Status.WAIVED) and after.get(k) in (Status.PASS, Status.SKIP)
            ]
        ),
        still_failing=items(
            [k for k, s in after.items() if s is Status.FAIL and before.get(k) is Status.FAIL]
        ),
        new_errors=items(
            [k for k, s in after.items() if s is Status.ERROR and before.get(k) is not Status.ERROR]
        ),
        newly_waived=items(
            [k for k, s in after.items() if s is Status.WAIVED and before.get(k) is Status.FAIL]
        ),
        hosts_added=tuple(added),
        hosts_removed=tuple(removed),
    )
