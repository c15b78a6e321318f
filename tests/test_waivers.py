"""Waivers: loading and validating the file, matching, expiry at the edge of a UTC day, and the
effect on results, reports, exit codes and history."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import factsfile
from agent.errors import InputError, Problem
from agent.history import History
from agent.inventory import load_inventory
from agent.model import Result, Status, Waiver
from agent.registry import load_catalogue
from agent.report.model import EXPIRY_WARNING_DAYS, ScanReport, WaiverState
from agent.scan import ScanOptions, finalize, replay
from agent.waivers import apply_waivers, load_waivers, matches
from tests.conftest import REPO, CliRun

LAB = str(REPO / "inventory" / "lab.yaml")
FACTS = str(REPO / "inventory" / "lab.facts.json")
DATA = REPO / "tests" / "data" / "waivers"
KNOWN = tuple(c.meta.id for c in load_catalogue())
Run = Callable[..., CliRun]


def no_traceback(result: CliRun) -> None:
    assert "Traceback" not in result.err + result.out


def waiver(
    check: str = "adfs-os-version",
    hosts: str = "adfs01.lab.example",
    expires: date = date(2026, 12, 31),
) -> Waiver:
    return Waiver(check, hosts, "Upgrade booked (CHG-1)", "Jane Doe, CISO", expires, "w.yaml:2")


def result(
    status: Status = Status.FAIL, check: str = "adfs-os-version", target: str = "adfs01.lab.example"
) -> Result:
    return Result(check, target, status, "why", {"version": "6.2.9200"})


def write_waivers(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"waivers": list(entries)}, sort_keys=False))
    return path


def entry(check: str, hosts: str, expires: date) -> dict[str, Any]:
    return {
        "check": check,
        "hosts": hosts,
        "justification": f"accepted risk for {check}",
        "approver": "Jane Doe, CISO",
        "expires": expires,
    }


def utc_today() -> date:
    return datetime.now(UTC).date()


def lab_report(started_at: datetime | None = None) -> ScanReport:
    report = replay(factsfile.load(FACTS), load_inventory(LAB), ScanOptions()).report
    if started_at is None:
        return report
    return dataclasses.replace(report, started_at=started_at, finished_at=started_at)


def status_of(report: ScanReport, check: str, target: str) -> Result:
    return next(r for r in report.results if (r.check_id, r.target) == (check, target))


# -- loading --------------------------------------------------------------------------------


def test_a_valid_file_loads_every_waiver_with_its_source() -> None:
    path = DATA / "lab.yaml"
    waivers = load_waivers(path, KNOWN)
    assert [w.check_id for w in waivers] == [
        "adfs-os-version",
        "one-time-bypass",
        "provider-usage-model",
        "phonefactor-admins-members",
        "portal-in-perimeter",
    ]
    first = waivers[0]
    assert first.hosts == "ADFS0?.LAB.example"
    assert first.justification == "In-place upgrade to 2012 R2 is booked (CHG-1234)"
    assert first.approver == "Jane Doe, CISO"
    assert first.expires == date(2099, 12, 31)
    assert first.source == f"{path}:4"
    assert waivers[2].expires == date(2099, 12, 31)  # a quoted YYYY-MM-DD is a date too


def test_an_empty_waivers_list_is_valid(tmp_path: Path) -> None:
    assert load_waivers(write_waivers(tmp_path / "w.yaml"), KNOWN) == ()


BASE = (
    "waivers:\n"
    "  - check: adfs-os-version\n"  # line 2
    "    hosts: adfs01.lab.example\n"  # line 3
    "    justification: Upgrade booked\n"  # line 4
    "    approver: Jane Doe\n"  # line 5
    "    expires: 2099-12-31\n"  # line 6
)


def base(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


E0 = "waivers[0]"
NOT_A_DATE = "expires must be a date written YYYY-MM-DD"
MISSING = "required key is missing"
NOT_WAIVERS = "expected a mapping with a 'waivers:' list"

MALFORMED = [
    # (id, text, line, key, message)
    ("syntax", "waivers:\n  - check: [adfs-os-version\n    hosts: x\n", 3, None, "YAML syntax"),
    ("a list", "- check: adfs-os-version\n", 1, "waivers", NOT_WAIVERS),
    ("a string", "just text\n", None, "waivers", NOT_WAIVERS),
    ("no waivers", "waiver:\n  - check: x\n", 1, "waivers", NOT_WAIVERS),
    ("not a list", "waivers:\n  check: x\n", 1, "waivers", NOT_WAIVERS),
    ("extra key", "waivers: []\nnotes: hi\n", 2, "notes", "unknown key (only 'waivers')"),
    ("entry str", "waivers:\n  - adfs-os-version\n", 2, E0, "expected a mapping, got a string"),
    ("no approver", base("    approver: Jane Doe\n", ""), 2, f"{E0}.approver", MISSING),
    ("no expires", base("    expires: 2099-12-31\n", ""), 2, f"{E0}.expires", MISSING),
    ("unknown key", base("approver:", "aprover:"), 5, f"{E0}.aprover", "did you mean 'approver'?"),
    ("unknown check", base("adfs-os-version", "adfs-os-versoin"), 2, f"{E0}.check",
     "unknown check id 'adfs-os-versoin'; did you mean 'adfs-os-version'?"),
    ("empty hosts", base("adfs01.lab.example", '""'), 3, f"{E0}.hosts", "must not be empty"),
    ("blank approver", base("Jane Doe", "'   '"), 5, f"{E0}.approver", "must not be empty"),
    ("null justification", base(" Upgrade booked", ""), 4, f"{E0}.justification",
     "must be a string, not empty (null)"),
    ("hosts empty list", base("adfs01.lab.example", "[]"), 3, f"{E0}.hosts",
     "the list must not be empty"),
    ("hosts list item", base("adfs01.lab.example", "[a, 1]"), 3, f"{E0}.hosts[1]",
     "must be a string, not an integer"),
    ("hosts mapping", base("adfs01.lab.example", "{a: b}"), 3, f"{E0}.hosts",
     "must be a host name or glob, or a list of them, not a mapping"),
    ("duplicate", base("    approver: Jane Doe\n", "    approver: Jane Doe\n    approver: X\n"), 6,
     "approver", "duplicate key (first defined on line 5)"),
    *[
        (f"date {text}", base("2099-12-31", text), 6, f"{E0}.expires", NOT_A_DATE)
        for text in (
            "2026-13-01",  # looks like a YAML date, is not one
            "2026-02-30",
            "31/12/2026",
            "12/31/2026",
            "2026-12-31T10:00:00",  # a timestamp: which time zone's day?
            "2026-12-31 10:00:00",
            "2026-12-31T00:00:00Z",
            "20261231",  # a number
            '"20261231"',  # Python's date.fromisoformat would take these two
            '"2026-W53-1"',
            "2026.5",
            "true",
            "''",
            "[2026-12-31]",
            "next year",
        )
    ],
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED],
)
def test_a_malformed_waivers_file_is_exit_3_naming_file_line_and_key_and_nothing_is_scanned(
    run_cli: Run, tmp_path: Path, text: str, line: int | None, key: str | None, message: str
) -> None:
    path = tmp_path / "waivers.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as raised:
        load_waivers(path, KNOWN)
    problems = raised.value.problems
    assert all(p.file == str(path) for p in problems)
    assert any(p.line == line and p.key == key and message in p.message for p in problems), problems
    db = tmp_path / "history.sqlite3"
    cli = run_cli("scan", "-i", LAB, "--replay", FACTS, "--waivers", str(path), "--db", str(db))
    assert cli.code == 3
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert where in cli.err
    if key is not None:
        assert f"[{key}]" in cli.err
    assert message in cli.err
    assert "Verdict" not in cli.out
    no_traceback(cli)
    # Nothing was scanned: no scan reached the history.
    assert not db.exists() or History.open(db).scans() == []


def test_every_problem_of_a_file_is_reported_in_line_order(run_cli: Run) -> None:
    path = DATA / "malformed.yaml"
    with pytest.raises(InputError) as raised:
        load_waivers(path, KNOWN)
    file = str(path)
    assert raised.value.problems == [
        Problem(
            file,
            "unknown check id 'adfs-os-versoin'; did you mean 'adfs-os-version'?",
            2,
            "waivers[0].check",
        ),
        Problem(file, _DATE_MESSAGE, 6, "waivers[0].expires"),
        Problem(file, "expected a mapping, got a string", 7, "waivers[1]"),
        Problem(file, "required key is missing", 8, "waivers[2].justification"),
        Problem(file, "must not be empty", 9, "waivers[2].hosts"),
        Problem(file, "unknown key; did you mean 'justification'?", 10, "waivers[2].justifcation"),
        Problem(file, _DATE_MESSAGE, 12, "waivers[2].expires"),
        Problem(file, "unknown key (only 'waivers')", 13, "notes"),
    ]
    cli = run_cli("scan", "-i", LAB, "--replay", FACTS, "--waivers", file)
    assert cli.code == 3
    assert cli.err.count(file) == 8
    assert History.open().scans() == []


_DATE_MESSAGE = "expires must be a date written YYYY-MM-DD (the last day the waiver applies, UTC)"


def test_a_missing_or_empty_waivers_file_is_exit_3(run_cli: Run, tmp_path: Path) -> None:
    missing = run_cli("scan", "-i", LAB, "--replay", FACTS, "--waivers", str(tmp_path / "nope"))
    assert missing.code == 3
    assert f"{tmp_path / 'nope'}: cannot read file" in missing.err
    (tmp_path / "empty.yaml").write_text("")
    empty = run_cli("scan", "-i", LAB, "--replay", FACTS, "--waivers", str(tmp_path / "empty.yaml"))
    assert empty.code == 3
    assert "expected a mapping with a 'waivers:' list" in empty.err
    no_traceback(empty)
    assert History.open().scans() == []


_yamlish_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.dates(),
    st.datetimes(),
    st.sampled_from(
        [*KNOWN[:3], "adfs-os-versoin", "2026-12-31", "2026-13-01", "(deployment)", "*", ""]
    ),
)
_yamlish_keys = st.one_of(
    st.sampled_from(["waivers", "check", "hosts", "justification", "approver", "expires", "x"]),
    st.text(max_size=6),
    st.integers(),
)
_yamlish_values = st.recursive(
    _yamlish_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_yamlish_keys, inner, max_size=6)
    ),
    max_leaves=16,
)
_entries = st.fixed_dictionaries(
    {},
    optional={
        "check": st.one_of(st.sampled_from(KNOWN), _yamlish_values),
        "hosts": st.one_of(st.just("adfs*"), _yamlish_values),
        "justification": _yamlish_values,
        "approver": _yamlish_values,
        "expires": st.one_of(st.dates(), _yamlish_values),
        "extra": _yamlish_values,
    },
)
_documents = st.one_of(
    st.builds(lambda e: yaml.safe_dump({"waivers": e}), st.lists(_entries, max_size=4)),
    st.builds(yaml.safe_dump, _yamlish_values),
    st.text(alphabet=st.sampled_from(list("waivers:check- \n\t[]{}'\"#&*!|>?,@%2026-13T"))),
)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=st.one_of(_documents.map(str.encode), st.binary(max_size=80)))
def test_load_waivers_returns_waivers_or_raises_input_error_for_any_document(
    tmp_path: Path, document: bytes
) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(document)
    try:
        waivers = load_waivers(path, KNOWN)
    except InputError as exc:
        assert exc.problems
        assert all(isinstance(p, Problem) and p.file == str(path) for p in exc.problems)
        return
    assert isinstance(waivers, tuple)
    for w in waivers:
        assert isinstance(w, Waiver)
        assert w.check_id in KNOWN
        assert isinstance(w.expires, date) and not isinstance(w.expires, datetime)
        assert w.hosts.strip() and w.justification.strip() and w.approver.strip()


# -- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "target", "expected"),
    [
        ("adfs01.lab.example", "adfs01.lab.example", True),
        ("ADFS01.Lab.Example", "adfs01.lab.example", True),  # case-insensitive
        ("adfs01.lab.example", "ADFS01.LAB.EXAMPLE", True),
        ("adfs*", "adfs02.lab.example", True),
        ("ADFS0?.lab.example", "adfs02.lab.example", True),
        ("adfs0[12].lab.example", "adfs02.lab.example", True),
        ("adfs0[3-9].lab.example", "adfs02.lab.example", False),
        ("*", "portal01.lab.example", True),
        ("adfs01", "adfs01.lab.example", False),  # a name, not a prefix
        ("adfs01.lab.example", "adfs011.lab.example", False),
        ("(deployment)", "(deployment)", True),
        ("(DEPLOYMENT)", "(deployment)", True),
        ("(directory)", "(directory)", True),
        ("(directory)", "(deployment)", False),
        ("adfs*", "(deployment)", False),
    ],
)
def test_matches_names_and_globs_case_insensitively(
    pattern: str, target: str, expected: bool
) -> None:
    assert matches(waiver(hosts=pattern), "adfs-os-version", target) is expected
    assert matches(waiver(hosts=pattern), "adfs-role-running", target) is False  # other check


def test_a_matching_fail_becomes_waived_and_nothing_else_changes() -> None:
    results = [
        result(Status.FAIL),
        result(Status.PASS, target="adfs02.lab.example"),
        result(Status.ERROR, target="adfs03.lab.example"),
        result(Status.FAIL, check="adfs-role-running"),
        result(Status.FAIL, target="portal01.lab.example"),
    ]
    w = waiver(hosts="adfs0*")
    out, states = apply_waivers(results, [w], date(2026, 12, 1))
    assert [r.status for r in out] == [
        Status.WAIVED,
        Status.PASS,
        Status.ERROR,  # an ERROR is not a FAIL: never waived
        Status.FAIL,  # another check
        Status.FAIL,  # another host
    ]
    assert out[0].waiver == w
    assert out[0].evidence == results[0].evidence
    assert all(r.waiver is None for r in out[1:])
    assert out[1:] == tuple(results[1:])
    assert states == (WaiverState(w, "active", 30, (("adfs-os-version", "adfs01.lab.example"),)),)


def test_directory_and_deployment_targets_can_be_waived() -> None:
    results = [
        result(check="phonefactor-admins-members", target="(directory)"),
        result(check="one-time-bypass", target="(deployment)"),
    ]
    waivers = [
        waiver("phonefactor-admins-members", "(directory)"),
        waiver("one-time-bypass", "(Deployment)"),
    ]
    out, states = apply_waivers(results, waivers, date(2026, 12, 31))
    assert [r.status for r in out] == [Status.WAIVED, Status.WAIVED]
    assert [s.waived for s in states] == [
        (("phonefactor-admins-members", "(directory)"),),
        (("one-time-bypass", "(deployment)"),),
    ]


def test_unused_and_active_without_effect_are_told_apart() -> None:
    nothing = waiver(hosts="nohost*.lab.example")
    passing = waiver(hosts="adfs02.lab.example")
    _, states = apply_waivers(
        [result(Status.FAIL), result(Status.PASS, target="adfs02.lab.example")],
        [nothing, passing],
        date(2026, 12, 1),
    )
    assert [(s.state, s.waived) for s in states] == [("unused", ()), ("active", ())]


# -- expiry at the edge of a UTC day --------------------------------------------------------


def test_a_waiver_applies_through_its_expiry_day_and_not_after() -> None:
    w = waiver(expires=date(2026, 12, 31))
    on_the_day, (state,) = apply_waivers([result()], [w], date(2026, 12, 31))
    assert on_the_day[0].status is Status.WAIVED
    assert (state.state, state.days_left, state.expiring_soon) == ("active", 0, True)

    next_day, (state,) = apply_waivers([result()], [w], date(2027, 1, 1))
    assert next_day[0].status is Status.FAIL
    assert next_day[0].waiver is None
    assert next_day[0].evidence["expired_waiver"] == "a waiver expired on 2026-12-31 (w.yaml:2)"
    assert next_day[0].evidence["version"] == "6.2.9200"  # the check's own evidence is kept
    assert (state.state, state.days_left, state.expiring_soon, state.waived) == (
        "expired",
        -1,
        False,
        (),
    )


def test_a_current_waiver_wins_over_an_expired_one_for_the_same_result() -> None:
    old = waiver(expires=date(2026, 6, 30))
    new = waiver(hosts="adfs*", expires=date(2027, 6, 30))
    out, states = apply_waivers([result()], [old, new], date(2026, 12, 1))
    assert out[0].status is Status.WAIVED
    assert out[0].waiver == new
    assert [s.state for s in states] == ["expired", "active"]


@pytest.mark.parametrize(
    ("days_left", "soon"),
    [(-1, False), (0, True), (1, True), (EXPIRY_WARNING_DAYS, True), (15, False), (400, False)],
)
def test_waivers_expiring_within_14_days_are_flagged(days_left: int, soon: bool) -> None:
    assert EXPIRY_WARNING_DAYS == 14
    today = date(2026, 12, 20)
    w = waiver(expires=today + timedelta(days=days_left))
    _, (state,) = apply_waivers([result()], [w], today)
    assert state.days_left == days_left
    assert state.expiring_soon is soon


EXPIRES = date(2026, 12, 31)


@pytest.mark.parametrize(
    ("started_at", "waived"),
    [
        (datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), True),
        (datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC), False),
        # 19:30 in New York on the 31st is already 00:30 UTC on 1 January: expired.
        (datetime(2026, 12, 31, 19, 30, tzinfo=timezone(timedelta(hours=-5))), False),
        # 00:30 in Paris on 1 January is still 23:30 UTC on the 31st: in force.
        (datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), True),
        (datetime(2027, 1, 1, 13, 59, tzinfo=timezone(timedelta(hours=14))), True),
    ],
)
def test_finalize_counts_days_from_the_scan_start_in_utc(
    started_at: datetime, waived: bool
) -> None:
    report = finalize(lab_report(started_at), [waiver(hosts="adfs01*", expires=EXPIRES)])
    adfs01 = status_of(report, "adfs-os-version", "adfs01.lab.example")
    assert adfs01.status is (Status.WAIVED if waived else Status.FAIL)
    (state,) = report.waivers
    assert state.state == ("active" if waived else "expired")
    assert state.days_left == (0 if waived else -1)
    assert ("expired_waiver" in adfs01.evidence) is not waived


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Set the moment `agent.scan` believes a scan starts."""

    def freeze(moment: datetime) -> None:
        class Frozen(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                return moment.astimezone(tz) if tz is not None else moment

        monkeypatch.setattr("agent.scan.datetime", Frozen)

    return freeze


@pytest.mark.parametrize(
    ("started_at", "code", "state"),
    [
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), 2, "active"),
        (datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC), 1, "expired"),
        (datetime(2026, 12, 31, 21, 0, tzinfo=timezone(timedelta(hours=-8))), 1, "expired"),
    ],
)
def test_a_scan_at_the_edge_of_the_expiry_day(
    run_cli: Run,
    tmp_path: Path,
    frozen_clock: Callable[[datetime], None],
    started_at: datetime,
    code: int,
    state: str,
) -> None:
    frozen_clock(started_at)
    path = write_waivers(tmp_path / "w.yaml", entry("adfs-os-version", "adfs01*", EXPIRES))
    cli = run_cli(
        "scan", "-i", LAB, "--replay", FACTS, "--check", "adfs-os-version",
        "--waivers", str(path), "--format", "json",
    )  # fmt: skip
    assert cli.code == code, cli.err
    document = json.loads(cli.out)
    assert document["started_at"].startswith(started_at.astimezone(UTC).date().isoformat())
    assert document["waivers"][0]["state"] == state


# -- through the command line ---------------------------------------------------------------


def test_a_waived_fail_shows_its_waiver_and_does_not_fail_the_exit_code(
    run_cli: Run, tmp_path: Path
) -> None:
    expires = utc_today() + timedelta(days=100)
    path = write_waivers(tmp_path / "w.yaml", entry("adfs-os-version", "ADFS01.LAB.*", expires))
    args = ("scan", "-i", LAB, "--replay", FACTS, "--check", "adfs-os-version")
    # Without the waiver adfs01's FAIL is the only FAIL of this check.
    assert run_cli(*args, "-q").code == 1
    # With it: no FAIL left, but mfa02 and portal02 could not be scanned, so exit 2 (ERROR).
    waived = run_cli(*args, "--waivers", str(path), "--format", "json")
    assert waived.code == 2
    document = json.loads(waived.out)
    assert document["summary"]["exit_code"] == 2
    assert document["summary"]["counts"]["FAIL"] == 0
    assert document["summary"]["counts"]["WAIVED"] == 1
    (adfs01,) = [r for r in document["results"] if r["target"] == "adfs01.lab.example"]
    assert adfs01["status"] == "WAIVED"
    assert adfs01["waiver"] == {
        "check_id": "adfs-os-version",
        "hosts": "ADFS01.LAB.*",
        "justification": "accepted risk for adfs-os-version",
        "approver": "Jane Doe, CISO",
        "expires": expires.isoformat(),
        "source": f"{path}:2",
    }
    assert adfs01["evidence"]["version"] == "6.2.9200"  # the evidence is still there
    (state,) = document["waivers"]
    assert state["state"] == "active"
    assert state["days_left"] == 100
    assert state["expiring_soon"] is False
    assert state["waived"] == [{"check_id": "adfs-os-version", "target": "adfs01.lab.example"}]
    # Only the AD FS hosts (both reachable): nothing left to fail or error, exit 0.
    clean = run_cli(*args, "--limit", "adfs", "--waivers", str(path), "-q")
    assert clean.code == 0
    with History.open() as history:
        assert [s.exit_code for s in history.scans()] == [0, 2, 1]
        assert history.scans()[1].counts["WAIVED"] == 1


def test_the_lab_waivers_file_waives_what_it_names(run_cli: Run) -> None:
    result = run_cli(
        "scan", "-i", LAB, "--replay", FACTS, "--waivers", str(DATA / "lab.yaml"),
        "--format", "json",
    )  # fmt: skip
    assert result.code == 1  # other FAILs remain
    document = json.loads(result.out)
    waived = {(r["check_id"], r["target"]) for r in document["results"] if r["status"] == "WAIVED"}
    assert waived == {
        ("adfs-os-version", "adfs01.lab.example"),
        ("one-time-bypass", "(deployment)"),
        ("provider-usage-model", "(deployment)"),
    }
    unwaived = run_cli("scan", "-i", LAB, "--replay", FACTS, "--format", "json", "--no-history")
    fails = json.loads(unwaived.out)["summary"]["counts"]["FAIL"]
    assert document["summary"]["counts"]["FAIL"] == fails - len(waived)
    states = [(s["waiver"]["check_id"], s["state"]) for s in document["waivers"]]
    assert states == [
        ("adfs-os-version", "active"),
        ("one-time-bypass", "active"),
        ("provider-usage-model", "active"),
        ("phonefactor-admins-members", "active"),  # matched a SKIP: in force, waived nothing
        ("portal-in-perimeter", "unused"),  # its pattern matches no host
    ]
    assert document["waivers"][3]["waived"] == []


def test_an_expired_waiver_no_longer_applies(run_cli: Run, tmp_path: Path) -> None:
    yesterday = utc_today() - timedelta(days=1)
    path = write_waivers(tmp_path / "w.yaml", entry("adfs-os-version", "adfs01*", yesterday))
    cli = run_cli(
        "scan", "-i", LAB, "--replay", FACTS, "--check", "adfs-os-version",
        "--waivers", str(path), "--format", "json",
    )  # fmt: skip
    assert cli.code == 1
    document = json.loads(cli.out)
    (adfs01,) = [r for r in document["results"] if r["target"] == "adfs01.lab.example"]
    assert adfs01["status"] == "FAIL"
    assert adfs01["waiver"] is None
    assert adfs01["evidence"]["expired_waiver"] == (
        f"a waiver expired on {yesterday.isoformat()} ({path}:2)"
    )
    (state,) = document["waivers"]
    assert (state["state"], state["days_left"], state["expiring_soon"]) == ("expired", -1, False)


def test_the_json_report_flags_waivers_expiring_soon(run_cli: Run, tmp_path: Path) -> None:
    today = utc_today()
    path = write_waivers(
        tmp_path / "w.yaml",
        entry("adfs-os-version", "adfs01.lab.example", today + timedelta(days=14)),
        entry("adfs-adapter-registered", "adfs02.lab.example", today + timedelta(days=15)),
        entry("portal-in-perimeter", "nothing.lab.example", today + timedelta(days=3)),
    )
    cli = run_cli("scan", "-i", LAB, "--replay", FACTS, "--waivers", str(path), "--format", "json")
    document = json.loads(cli.out)
    assert [(s["days_left"], s["state"], s["expiring_soon"]) for s in document["waivers"]] == [
        (14, "active", True),
        (15, "active", False),
        (3, "unused", True),
    ]


def test_hosts_may_be_a_list_of_names_and_globs(tmp_path: Path) -> None:
    path = tmp_path / "waivers.yaml"
    path.write_text(
        "waivers:\n  - check: adfs-os-version\n    hosts:\n      - adfs01.lab.example\n"
        "      - ADFS9*.lab.example\n    justification: j\n    approver: a\n"
        "    expires: 2099-12-31\n"
    )
    (loaded,) = load_waivers(path, KNOWN)
    assert loaded.host_patterns() == ("adfs01.lab.example", "ADFS9*.lab.example")
    assert loaded.hosts == "adfs01.lab.example, ADFS9*.lab.example"
    assert matches(loaded, "adfs-os-version", "adfs01.lab.example")
    assert matches(loaded, "adfs-os-version", "adfs92.lab.example")
    assert not matches(loaded, "adfs-os-version", "adfs02.lab.example")
    assert not matches(loaded, "adfs-os-version", "adfs01.lab.example, ADFS9*.lab.example")
    results, states = apply_waivers(
        [result(target="adfs01.lab.example"), result(target="adfs93.lab.example"),
         result(target="adfs02.lab.example")],
        [loaded],
        date(2026, 1, 1),
    )
    assert [r.status for r in results] == [Status.WAIVED, Status.WAIVED, Status.FAIL]
    assert states[0].waived == (
        ("adfs-os-version", "adfs01.lab.example"),
        ("adfs-os-version", "adfs93.lab.example"),
    )
