"""What changed between two scans (`compute_delta`, `mfa-agent diff`), and --quiet for cron."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.history import History, StoredResult, compute_delta
from agent.model import Status
from agent.report.model import DeltaItem
from tests.conftest import REPO, CliRun

LAB = REPO / "inventory" / "lab.yaml"
FACTS = REPO / "inventory" / "lab.facts.json"
Run = Callable[..., CliRun]

P, F, E, S, M, W = (
    Status.PASS,
    Status.FAIL,
    Status.ERROR,
    Status.SKIP,
    Status.MANUAL,
    Status.WAIVED,
)


def no_traceback(result: CliRun) -> None:
    assert "Traceback" not in result.err + result.out


# -- compute_delta --------------------------------------------------------------------------


def results(*rows: tuple[str, str, Status]) -> list[StoredResult]:
    return [StoredResult(check, target, status, "high", "why") for check, target, status in rows]


def test_compute_delta_classifies_every_kind_of_change() -> None:
    old = results(
        ("pass-to-fail", "h1", P),
        ("fail-to-pass", "h1", F),
        ("fail-to-skip", "h1", S),  # overwritten below: a SKIP before is not a FAIL
        ("fail-to-error", "h1", F),
        ("fail-to-fail", "h1", F),
        ("pass-to-error", "h1", P),
        ("error-to-error", "h1", E),
        ("fail-to-absent", "h1", F),
        ("fail-to-manual", "h1", F),
        ("error-to-fail", "h1", E),
        ("waived-to-fail", "h1", W),
        ("deployment", "(deployment)", F),
        ("directory", "(directory)", P),
        ("fail", "gone", F),
        ("pass", "gone", P),
    )
    old[2] = StoredResult("fail-to-skip", "h1", F, "high", "why")
    new = results(
        ("pass-to-fail", "h1", F),
        ("fail-to-pass", "h1", P),
        ("fail-to-skip", "h1", S),
        ("fail-to-error", "h1", E),
        ("fail-to-fail", "h1", F),
        ("pass-to-error", "h1", E),
        ("error-to-error", "h1", E),
        ("absent-to-fail", "h1", F),
        ("absent-to-error", "h1", E),
        ("fail-to-manual", "h1", M),
        ("error-to-fail", "h1", F),
        ("waived-to-fail", "h1", F),
        ("deployment", "(deployment)", P),
        ("directory", "(directory)", F),
        ("fail", "added", F),
        ("error", "added", E),
    )
    when = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    delta = compute_delta(7, when, old, ["h1", "gone"], new, ["h1", "added"])

    def keys(items: tuple[DeltaItem, ...]) -> list[tuple[str, str]]:
        return [(i.check_id, i.target) for i in items]

    assert delta.previous_scan_id == 7
    assert delta.previous_started_at == when
    assert keys(delta.new_failures) == [
        ("absent-to-fail", "h1"),
        ("directory", "(directory)"),
        ("error-to-fail", "h1"),
        ("pass-to-fail", "h1"),
        ("waived-to-fail", "h1"),
    ]
    assert keys(delta.fixed) == [
        ("deployment", "(deployment)"),
        ("fail-to-pass", "h1"),
        ("fail-to-skip", "h1"),
    ]
    assert keys(delta.still_failing) == [("fail-to-fail", "h1")]
    assert keys(delta.new_errors) == [
        ("absent-to-error", "h1"),
        ("fail-to-error", "h1"),
        ("pass-to-error", "h1"),
    ]
    # Results of added and removed hosts are counted under hosts only.
    assert delta.hosts_added == ("added",)
    assert delta.hosts_removed == ("gone",)
    every = delta.new_failures + delta.fixed + delta.still_failing + delta.new_errors
    assert not {"added", "gone"} & {i.target for i in every}
    # Each item says where it came from and where it went.
    by_key = {(i.check_id, i.target): i for i in every}
    assert by_key["absent-to-fail", "h1"] == DeltaItem("absent-to-fail", "h1", None, F)
    assert by_key["fail-to-skip", "h1"] == DeltaItem("fail-to-skip", "h1", F, S)
    assert by_key["fail-to-error", "h1"] == DeltaItem("fail-to-error", "h1", F, E)
    # FAIL→ERROR is not fixed (the agent could not tell), FAIL→absent and FAIL→MANUAL neither.
    assert not {"fail-to-error", "fail-to-absent", "fail-to-manual"} & {
        i.check_id for i in delta.fixed
    }


def test_compute_delta_of_identical_scans_is_only_still_failing() -> None:
    same = results(("a", "h", F), ("b", "h", P), ("c", "h", E))
    delta = compute_delta(1, datetime.now(UTC), same, ["h"], same, ["h"])
    assert delta.still_failing == (DeltaItem("a", "h", F, F),)
    assert delta.new_failures == delta.fixed == delta.new_errors == ()
    assert delta.hosts_added == delta.hosts_removed == ()


# -- mfa-agent diff -------------------------------------------------------------------------


def inventory_without(path: Path, *names: str) -> Path:
    """The lab inventory without some hosts, written to `path`."""
    document = yaml.safe_load(LAB.read_text())
    for group in document["all"]["children"].values():
        for name in names:
            group["hosts"].pop(name, None)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _lab_failures() -> int:
    """How many FAIL results a replay of the lab's recorded facts has (each is still failing when
    the same facts are scanned twice)."""
    from agent import factsfile
    from agent.inventory import load_inventory
    from agent.scan import ScanOptions, replay

    run = replay(factsfile.load(FACTS), load_inventory(LAB), ScanOptions())
    return sum(1 for r in run.report.results if r.status == "FAIL")


def changed_facts(path: Path) -> Path:
    """The lab's facts, changed: adfs01 upgraded to 2012 R2 but lost its MFA adapter, mfa01
    unreachable, and adfs02's clock unreadable."""
    document: dict[str, Any] = json.loads(FACTS.read_text())
    hosts = document["hosts"]
    adfs01 = hosts["adfs01.lab.example"]["facts"]
    adfs01["os"]["value"].update(
        caption="Microsoft Windows Server 2012 R2 Datacenter", version="6.3.9600"
    )
    adfs01["adfs_providers"]["value"]["names"] = ["FormsAuthentication"]
    hosts["mfa01.lab.example"]["error"] = {"kind": "timeout", "message": "timed out"}
    hosts["mfa01.lab.example"]["facts"] = {}
    hosts["adfs02.lab.example"]["facts"]["clock"] = {"error": "w32tm did not answer"}
    path.write_text(json.dumps(document))
    return path


def scan(run_cli: Run, inventory: Path, facts: Path, *args: str) -> int:
    result = run_cli("scan", "-i", str(inventory), "--replay", str(facts), "-q", *args)
    assert result.code in (0, 1, 2), result.err
    with History.open() as history:
        return history.scans(limit=1)[0].id


def items(document: dict[str, Any], name: str) -> list[tuple[str, str, str | None, str | None]]:
    return [(i["check_id"], i["target"], i["before"], i["after"]) for i in document[name]]


@pytest.fixture
def two_scans(run_cli: Run, tmp_path: Path) -> tuple[int, int, int]:
    """Scan, then a scan of another inventory, then a changed scan of the first inventory."""
    inventory = inventory_without(tmp_path / "inv.yaml", "portal01.lab.example")
    first = scan(run_cli, inventory, FACTS)
    other = scan(run_cli, LAB, FACTS)
    inventory_without(inventory, "sync01.lab.example")  # same path: the same inventory
    second = scan(run_cli, inventory, changed_facts(tmp_path / "changed.facts.json"))
    return first, other, second


EXPECTED = {
    "new_failures": [
        ("adfs-adapter-registered", "adfs01.lab.example", "PASS", "FAIL"),
        # With sync01 gone no host runs Azure AD Connect: a (deployment) result, counted
        # normally even though it appeared because a host was removed.
        ("directory-sync-component", "(deployment)", None, "FAIL"),
    ],
    "fixed": [("adfs-os-version", "adfs01.lab.example", "FAIL", "PASS")],
    "still_failing": [
        ("adfs-adapter-registered", "adfs02.lab.example", "FAIL", "FAIL"),
        ("adfs-mfa-policy", "adfs02.lab.example", "FAIL", "FAIL"),
        # MFA Server's adapter is still installed on adfs01: a retired estate either way
        ("mfa-server-retired", "adfs01.lab.example", "FAIL", "FAIL"),
        ("one-time-bypass", "(deployment)", "FAIL", "FAIL"),
        ("provider-usage-model", "(deployment)", "FAIL", "FAIL"),
    ],
    "new_errors": [
        ("clock-skew", "adfs02.lab.example", "PASS", "ERROR"),
        ("clock-skew", "mfa01.lab.example", "FAIL", "ERROR"),
        ("mfa-server-retired", "mfa01.lab.example", "FAIL", "ERROR"),
        ("mfa-web-services-https", "mfa01.lab.example", "PASS", "ERROR"),
    ],
}


def test_diff_defaults_to_the_last_two_scans_of_the_same_inventory(
    run_cli: Run, two_scans: tuple[int, int, int]
) -> None:
    first, _other, second = two_scans
    result = run_cli("diff", "--format", "json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["old"]["id"] == first  # not the other inventory's scan in between
    assert document["new"]["id"] == second
    for name, expected in EXPECTED.items():
        assert items(document, name) == expected, name
    # The added host's FAILs are under hosts_added only, not new failures.
    assert document["hosts_added"] == ["portal01.lab.example"]
    assert document["hosts_removed"] == ["sync01.lab.example"]
    assert document["old"]["inventory_key"] == document["new"]["inventory_key"]
    assert document["new"]["counts"]["ERROR"] > document["old"]["counts"]["ERROR"]


def test_diff_text_lists_each_section(run_cli: Run, two_scans: tuple[int, int, int]) -> None:
    first, _other, second = two_scans
    result = run_cli("diff")
    assert result.code == 0
    lines = result.out.splitlines()
    assert f"scan {first} (" in lines[0]
    assert f"scan {second} (" in lines[0]
    for title, count in (
        ("New failures", len(EXPECTED["new_failures"])),
        ("Fixed", len(EXPECTED["fixed"])),
        ("Still failing", len(EXPECTED["still_failing"])),
        ("New errors", len(EXPECTED["new_errors"])),
        ("Hosts added", 1),
        ("Hosts removed", 1),
    ):
        assert f"{title} ({count})" in lines
    assert any("adfs01.lab.example" in ln and "adfs-os-version" in ln and "FAIL → PASS" in ln
               for ln in lines)  # fmt: skip
    assert any("directory-sync-component" in ln and "absent → FAIL" in ln for ln in lines)
    assert "  portal01.lab.example" in lines
    assert "  sync01.lab.example" in lines


def test_diff_old_goes_to_the_latest_scan_of_its_inventory(
    run_cli: Run, two_scans: tuple[int, int, int]
) -> None:
    first, _other, second = two_scans
    document = json.loads(run_cli("diff", str(first), "--format", "json").out)
    assert (document["old"]["id"], document["new"]["id"]) == (first, second)
    assert items(document, "fixed") == EXPECTED["fixed"]


def test_diff_old_new_compares_exactly_those_two(
    run_cli: Run, two_scans: tuple[int, int, int]
) -> None:
    first, other, second = two_scans
    # Backwards: what the changed scan had that the first did not.
    backwards = json.loads(run_cli("diff", str(second), str(first), "--format", "json").out)
    assert (backwards["old"]["id"], backwards["new"]["id"]) == (second, first)
    assert items(backwards, "fixed") == [
        ("adfs-adapter-registered", "adfs01.lab.example", "FAIL", "PASS")
    ]
    assert backwards["hosts_added"] == ["sync01.lab.example"]
    assert backwards["hosts_removed"] == ["portal01.lab.example"]
    # Across inventories, when asked for explicitly.
    across = json.loads(run_cli("diff", str(first), str(other), "--format", "json").out)
    assert (across["old"]["id"], across["new"]["id"]) == (first, other)
    assert across["hosts_added"] == ["portal01.lab.example"]
    assert ("portal-in-perimeter", "portal01.lab.example") not in {
        (c, t) for c, t, _, _ in items(across, "new_failures")
    }


def test_diff_with_an_empty_history_is_exit_3(run_cli: Run) -> None:
    result = run_cli("diff")
    assert result.code == 3
    assert "no scans yet" in result.err
    no_traceback(result)


def test_diff_with_one_scan_is_exit_3_with_a_clear_message(run_cli: Run, tmp_path: Path) -> None:
    only = scan(run_cli, LAB, FACTS)
    # A scan of another inventory does not make a pair.
    scan(run_cli, inventory_without(tmp_path / "other.yaml", "sync01.lab.example"), FACTS)
    for args in (("diff",), ("diff", "--format", "json"), ("diff", str(only))):
        result = run_cli(*args)
        assert result.code == 3, args
        assert "nothing to compare" in result.err, args
        assert result.out == ""
        no_traceback(result)
    assert "only one scan of this inventory" in run_cli("diff").err
    assert f"scan {only} is the latest" in run_cli("diff", str(only)).err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("diff", "99"), "no scan 99 in the history"),
        (("diff", "1", "99"), "no scan 99 in the history"),
        (("diff", "99", "1"), "no scan 99 in the history"),
        (("diff", "0", "1"), "no scan 0 in the history"),
        (("diff", "1", "0"), "no scan 0 in the history"),
        (("diff", "one"), "one"),
    ],
)
def test_diff_of_unknown_scans_is_exit_3(run_cli: Run, args: tuple[str, ...], message: str) -> None:
    scan(run_cli, LAB, FACTS)
    result = run_cli(*args)
    assert result.code == 3
    assert message in result.err
    no_traceback(result)


def test_diff_reads_the_database_given_with_db(run_cli: Run, tmp_path: Path) -> None:
    db = tmp_path / "elsewhere.sqlite3"
    for _ in range(2):
        assert (
            run_cli("scan", "-i", str(LAB), "--replay", str(FACTS), "-q", "--db", str(db)).code == 1
        )
    assert run_cli("diff").code == 3  # the default database is empty
    document = json.loads(run_cli("diff", "--db", str(db), "--format", "json").out)
    assert (document["old"]["id"], document["new"]["id"]) == (1, 2)
    assert len(document["still_failing"]) == _lab_failures()


# -- --quiet, for cron ----------------------------------------------------------------------


def test_quiet_prints_nothing_but_writes_files_and_keeps_the_exit_code(
    run_cli: Run, tmp_path: Path
) -> None:
    loud = run_cli("scan", "-i", str(LAB), "--replay", str(FACTS), "-o", str(tmp_path / "loud"))
    assert "wrote" in loud.err  # what --quiet removes
    out = tmp_path / "out"
    quiet = run_cli(
        "scan", "-i", str(LAB), "--replay", str(FACTS), "-q", "-o", str(out),
        "--save-facts", str(tmp_path / "saved.json"),
    )  # fmt: skip
    assert quiet.code == loud.code == 1
    assert quiet.out == ""
    assert quiet.err == ""
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (tmp_path / "loud").iterdir()
    )
    report = json.loads((out / "mfa-agent-report.json").read_text())
    assert report["summary"]["exit_code"] == 1
    assert (tmp_path / "saved.json").exists()
    errors_only = run_cli(
        "scan", "-i", str(LAB), "--replay", str(FACTS), "-q", "--check", "portal-iis-version"
    )
    assert (errors_only.code, errors_only.out, errors_only.err) == (2, "", "")


def test_quiet_still_writes_an_explicit_stdout_format(run_cli: Run) -> None:
    result = run_cli("scan", "-i", str(LAB), "--replay", str(FACTS), "-q", "--format", "json")
    assert result.code == 1
    assert json.loads(result.out)["summary"]["exit_code"] == 1


def test_quiet_still_reports_errors_on_stderr(run_cli: Run, tmp_path: Path) -> None:
    bad_input = run_cli("scan", "-i", str(LAB), "--replay", str(tmp_path / "missing.json"), "-q")
    assert bad_input.code == 3
    assert "cannot read the facts file" in bad_input.err
    assert bad_input.out == ""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    unwritable = run_cli(
        "scan", "-i", str(LAB), "--replay", str(FACTS), "-q", "-o", str(blocker / "sub")
    )
    assert unwritable.code == 3
    assert "cannot be created" in unwritable.err  # refused before the scan
    assert unwritable.out == ""
    no_traceback(unwritable)


def test_a_narrowed_scan_is_compared_only_with_scans_narrowed_alike(
    run_cli: Run, tmp_path: Path
) -> None:
    full = scan(run_cli, LAB, FACTS)
    narrowed = run_cli("scan", "-i", LAB, "--replay", FACTS, "--limit", "adfs", "--format", "json")
    document = json.loads(narrowed.out)
    # Compared with the full scan, every host it left out would look removed.
    assert document["delta"] is None
    again = scan(run_cli, LAB, FACTS)
    result = run_cli("diff", "--format", "json")
    assert result.code == 0, result.err
    assert (json.loads(result.out)["old"]["id"], json.loads(result.out)["new"]["id"]) == (
        full,
        again,
    )
    assert json.loads(result.out)["hosts_removed"] == []


# -- waivers in the delta -------------------------------------------------------------------


def test_a_fail_that_becomes_waived_is_in_the_delta_and_so_is_the_way_back() -> None:
    old = results(
        ("fail-to-waived", "h", F), ("waived-to-fail", "h", W), ("waived-to-pass", "h", W)
    )
    new = results(
        ("fail-to-waived", "h", W), ("waived-to-fail", "h", F), ("waived-to-pass", "h", P)
    )
    delta = compute_delta(1, datetime.now(UTC), old, ["h"], new, ["h"])
    assert delta.newly_waived == (DeltaItem("fail-to-waived", "h", F, W),)
    assert delta.new_failures == (DeltaItem("waived-to-fail", "h", W, F),)
    assert delta.fixed == (DeltaItem("waived-to-pass", "h", W, P),)
    assert ("Newly waived", delta.newly_waived) in delta.changes()
    still = compute_delta(1, datetime.now(UTC), new, ["h"], new, ["h"])
    assert still.newly_waived == ()


def test_diff_shows_findings_that_went_fail_to_waived_and_back(
    run_cli: Run, tmp_path: Path
) -> None:
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(
        "waivers:\n  - check: adfs-adapter-registered\n    hosts: adfs02.lab.example\n"
        "    justification: Adapter rollout in CHG-7\n    approver: Jane Doe\n"
        "    expires: 2999-12-31\n"
    )
    scan(run_cli, LAB, FACTS)
    scan(run_cli, LAB, FACTS, "--waivers", str(waivers))
    waived = json.loads(run_cli("diff", "--format", "json").out)
    change = ("adfs-adapter-registered", "adfs02.lab.example", "FAIL", "WAIVED")
    assert items(waived, "newly_waived") == [change]
    text = run_cli("diff")
    assert "Newly waived (1)" in text.out
    assert "adfs02.lab.example  adfs-adapter-registered  FAIL → WAIVED" in text.out
    scan(run_cli, LAB, FACTS)  # the waiver is gone: the finding fails again
    back = json.loads(run_cli("diff", "--format", "json").out)
    assert items(back, "newly_waived") == []
    assert ("adfs-adapter-registered", "adfs02.lab.example", "WAIVED", "FAIL") in items(
        back, "new_failures"
    )
