"""Waivers: accepted risks that turn a FAIL into WAIVED until they expire.

A waivers file (``--waivers FILE``) is YAML::

    waivers:
      - check: portal-in-perimeter          # a check id of the catalogue
        hosts: portal01.corp.example         # a target name or glob (case-insensitive), or
                                             # a list of them; (directory) and (deployment) too
        justification: Moving to the DMZ in the Q1 network change (CHG-1234)
        approver: Jane Doe, CISO
        expires: 2026-12-31                  # last day it applies (UTC)

It is validated before anything is scanned: every problem names file, line and key (exit 3). A
waiver applies through its expiry day in UTC and no longer from the next day; an expired waiver is
reported as expired, and waivers expiring within 14 days are flagged.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Collection, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from agent import strictjson
from agent.errors import InputError, Problem
from agent.inventory.yamlload import (
    MAX_FILE_BYTES,
    Parsed,
    YamlMap,
    YamlSeq,
    kind_of,
    parse_text,
)
from agent.model import Result, Status, Waiver
from agent.report.model import WaiverState, WaiverStateName
from agent.safeio import UnreadableFile, read_regular_file

_KEYS = ("check", "hosts", "justification", "approver", "expires")
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def load_waivers(path: str | Path, known_checks: Collection[str]) -> tuple[Waiver, ...]:
    """Read and validate a waivers file; `InputError` listing every problem otherwise."""
    file = str(path)
    parsed = _read(Path(path))
    # A bad scalar (e.g. 2026-13-01) is a parse problem without a key; it is reported below
    # with its key when the entry is checked, so only problems on other lines are kept.
    parse_problems = list(parsed.problems)
    document = parsed.value
    if document is None and parse_problems:
        raise InputError(parse_problems)
    problems: list[Problem] = []
    entries = document.get("waivers") if isinstance(document, YamlMap) else None
    if not isinstance(document, YamlMap) or not isinstance(entries, YamlSeq):
        line = document.line if isinstance(document, (YamlMap, YamlSeq)) else None
        raise InputError(
            Problem(file, "expected a mapping with a 'waivers:' list", line, "waivers")
        )
    for key in document:
        if key != "waivers":
            problems.append(
                Problem(file, "unknown key (only 'waivers')", document.line_of(key), str(key))
            )
    waivers = []
    for index, entry in enumerate(entries):
        waiver = _entry(file, entries, index, entry, known_checks, problems)
        if waiver is not None:
            waivers.append(waiver)
    covered = {p.line for p in problems}
    problems += [p for p in parse_problems if p.line not in covered]
    if problems:
        raise InputError(sorted(problems, key=lambda p: (p.line or 0, p.key or "")))
    return tuple(waivers)


def _read(path: Path) -> Parsed:
    """Parse the waivers file, a regular file of YAML (or strict JSON, by its .json suffix).

    A FIFO, socket or device is refused before it is opened. YAML bounds nesting and values
    itself; a ``.json`` file must also be strict JSON (no NaN/Infinity, no huge integers).
    """
    file = str(path)
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
    except UnreadableFile as exc:
        return Parsed(None, [Problem(file, f"cannot read file: {exc.reason}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return Parsed(None, [Problem(file, "file is not valid UTF-8 text", line)])
    if path.suffix.lower() == ".json":
        try:
            strictjson.loads(text)
        except strictjson.StrictJsonError as exc:
            return Parsed(None, [Problem(file, exc.message, exc.line)])
        text = text.replace("\t", " ")  # JSON may indent with tabs, YAML may not
    return parse_text(text, file)


def _entry(
    file: str,
    entries: YamlSeq,
    index: int,
    entry: Any,
    known_checks: Collection[str],
    problems: list[Problem],
) -> Waiver | None:
    where = f"waivers[{index}]"
    if not isinstance(entry, YamlMap):
        problems.append(
            Problem(
                file, f"expected a mapping, got {kind_of(entry)}", entries.line_of(index), where
            )
        )
        return None
    before = len(problems)
    for key in entry:
        if key not in _KEYS:
            near = difflib.get_close_matches(str(key), _KEYS, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            problems.append(
                Problem(file, f"unknown key{hint}", entry.line_of(key), f"{where}.{key}")
            )
    for key in _KEYS:
        if key not in entry:
            problems.append(Problem(file, "required key is missing", entry.line, f"{where}.{key}"))
    patterns = _patterns(file, entry, where, problems)
    for key in ("check", "justification", "approver"):
        value = entry.get(key)
        if key not in entry:
            continue
        if not isinstance(value, str):
            message = f"must be a string, not {kind_of(value)}"
        elif not value.strip():
            message = "must not be empty"
        else:
            continue
        problems.append(Problem(file, message, entry.line_of(key), f"{where}.{key}"))
    check = entry.get("check")
    if isinstance(check, str) and check.strip() and check not in known_checks:
        near = difflib.get_close_matches(check, sorted(known_checks), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else "; see 'mfa-agent checks'"
        problems.append(
            Problem(
                file, f"unknown check id '{check}'{hint}", entry.line_of("check"), f"{where}.check"
            )
        )
    expires = _date(entry.get("expires")) if "expires" in entry else None
    if "expires" in entry and expires is None:
        problems.append(
            Problem(
                file,
                "expires must be a date written YYYY-MM-DD (the last day the waiver applies, UTC)",
                entry.line_of("expires"),
                f"{where}.expires",
            )
        )
    if len(problems) > before or expires is None or not patterns:
        return None
    return Waiver(
        check_id=entry["check"].strip(),
        hosts=", ".join(patterns),
        justification=entry["justification"].strip(),
        approver=entry["approver"].strip(),
        expires=expires,
        source=f"{file}:{entry.line}",
        patterns=patterns,
    )


def _patterns(file: str, entry: YamlMap, where: str, problems: list[Problem]) -> tuple[str, ...]:
    """The entry's ``hosts``: one name or glob, or a non-empty list of them."""
    if "hosts" not in entry:
        return ()
    value = entry["hosts"]
    key = f"{where}.hosts"
    if isinstance(value, str):
        if value.strip():
            return (value.strip(),)
        problems.append(Problem(file, "must not be empty", entry.line_of("hosts"), key))
        return ()
    if not isinstance(value, YamlSeq):
        message = f"must be a host name or glob, or a list of them, not {kind_of(value)}"
        problems.append(Problem(file, message, entry.line_of("hosts"), key))
        return ()
    if not value:
        problems.append(Problem(file, "the list must not be empty", entry.line_of("hosts"), key))
        return ()
    patterns = []
    for index, item in enumerate(value):
        if isinstance(item, str) and item.strip():
            patterns.append(item.strip())
            continue
        why = f"must be a string, not {kind_of(item)}"
        why = "must not be empty" if isinstance(item, str) else why
        problems.append(Problem(file, why, value.line_of(index), f"{key}[{index}]"))
    return tuple(patterns) if len(patterns) == len(value) else ()


def _date(value: Any) -> date | None:
    if isinstance(value, datetime):  # a timestamp is not a day: ambiguous, refuse it
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        # date.fromisoformat also takes 20261231 and 2026-W53-1; only YYYY-MM-DD is documented.
        if not _ISO_DAY.fullmatch(value.strip()):
            return None
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def matches(waiver: Waiver, check_id: str, target: str) -> bool:
    """Whether a waiver covers a check's result on a target (names or globs, case-insensitive)."""
    if waiver.check_id != check_id:
        return False
    name = target.lower()
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in waiver.host_patterns())


def apply_waivers(
    results: Sequence[Result], waivers: Sequence[Waiver], today: date
) -> tuple[tuple[Result, ...], tuple[WaiverState, ...]]:
    """FAILs covered by a waiver in force become WAIVED; returns results and each waiver's state.

    `today` is the scan's start date in UTC: a waiver expiring today still applies.
    """
    waived: dict[int, list[tuple[str, str]]] = {i: [] for i in range(len(waivers))}
    touched: set[int] = set()
    out: list[Result] = []
    for result in results:
        candidates = [
            i for i, w in enumerate(waivers) if matches(w, result.check_id, result.target)
        ]
        touched.update(candidates)
        in_force = [i for i in candidates if waivers[i].expires >= today]
        if result.status is Status.FAIL and in_force:
            index = in_force[0]
            waived[index].append((result.check_id, result.target))
            out.append(dataclasses.replace(result, status=Status.WAIVED, waiver=waivers[index]))
        elif result.status is Status.FAIL and candidates:
            expired = waivers[candidates[0]]
            note = f"a waiver expired on {expired.expires.isoformat()} ({expired.source})"
            out.append(
                dataclasses.replace(result, evidence={**result.evidence, "expired_waiver": note})
            )
        else:
            out.append(result)
    states = []
    for i, waiver in enumerate(waivers):
        days_left = (waiver.expires - today).days
        state: WaiverStateName = "active"
        if days_left < 0:
            state = "expired"
        elif i not in touched:
            state = "unused"
        states.append(WaiverState(waiver, state, days_left, tuple(waived[i])))
    return tuple(out), tuple(states)
