"""The engine: check selection, role applicability, and turning trouble into ERROR results."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from agent.engine import FLEET_TARGET, HostResults, applies, evaluate, select_checks
from agent.errors import InputError
from agent.facts import Fleet, HostError, HostFacts
from agent.model import (
    CheckMeta,
    Finding,
    Guidance,
    Outcome,
    Scope,
    Severity,
    Status,
    failed,
    passed,
)
from agent.registry import Check
from agent.roles import ANY_ROLE, DEPLOYMENT_TARGET, DIRECTORY_TARGET


def meta(check_id: str, roles: tuple[str, ...] = ("adfs",), scope: Scope = Scope.HOST) -> CheckMeta:
    return CheckMeta(
        id=check_id,
        title=check_id,
        severity=Severity.HIGH,
        roles=roles,
        scope=scope,
        guidance=Guidance("quote", "source"),
        remediation="fix it",
    )


def os_version(host: HostFacts) -> Outcome:
    version = host.fact("os").text("version")
    return passed("ok", version=version) if version >= "6.3" else failed("old", version=version)



def os_value(version: object) -> dict[str, object]:
    """An ``os`` fact entry of the declared shape (agent.factscripts.FACTS)."""
    return {"value": {"caption": "Windows Server", "version": version, "build_number": "1",
                      "product_type": 3}}

ADFS = HostFacts(
    "adfs01", frozenset({"adfs"}), "10.0.0.1", facts={"os": os_value("6.3.9600")}
)
OLD = HostFacts(
    "adfs02", frozenset({"adfs"}), "10.0.0.2", facts={"os": os_value("6.2.9200")}
)
PORTAL = HostFacts("portal", frozenset({"user_portal"}), "10.0.0.3")
NOROLE = HostFacts("jump", frozenset(), "10.0.0.4")
CHECK = Check(meta("os"), host_fn=os_version)


def statuses(results: Iterable[object]) -> dict[tuple[str, str], Status]:
    return {(r.check_id, r.target): r.status for r in results}  # type: ignore[attr-defined]


def test_host_check_runs_on_hosts_of_its_roles_only() -> None:
    results = evaluate([CHECK], Fleet(hosts=(ADFS, OLD, PORTAL, NOROLE)))
    assert statuses(results) == {("os", "adfs01"): Status.PASS, ("os", "adfs02"): Status.FAIL}
    assert results[1].evidence["version"] == "6.2.9200"


def test_any_role_means_every_host_with_a_role() -> None:
    any_check = Check(meta("any", roles=(ANY_ROLE,)), host_fn=lambda h: passed("ok"))
    assert applies(any_check, PORTAL) and applies(any_check, ADFS)
    assert not applies(any_check, NOROLE)


def test_missing_fact_read_error_and_bad_shape_are_errors_not_crashes() -> None:
    hosts = (
        HostFacts("a", frozenset({"adfs"}), "x"),
        HostFacts("b", frozenset({"adfs"}), "x", facts={"os": {"error": "WMI access denied"}}),
        HostFacts("c", frozenset({"adfs"}), "x", facts={"os": os_value(6)}),
        HostFacts("d", frozenset({"adfs"}), "x", facts={"os": {"value": [1]}}),
    )
    results = {r.target: r for r in evaluate([CHECK], Fleet(hosts=hosts))}
    assert {r.status for r in results.values()} == {Status.ERROR}
    assert "not collected" in results["a"].reason
    assert "WMI access denied" in results["b"].reason
    assert "os" in results["c"].reason and "version" in results["c"].reason
    assert results["d"].evidence["fact"] == "os"


def test_unreachable_host_is_one_error_per_check_with_its_reason() -> None:
    down = HostFacts(
        "adfs03", frozenset({"adfs"}), "x", error=HostError("timeout", "timed out after 60 s")
    )
    results = evaluate([CHECK], Fleet(hosts=(ADFS, down)))
    assert statuses(results)[("os", "adfs03")] is Status.ERROR
    assert results[1].reason == "host not scanned: timed out after 60 s"
    assert results[1].evidence["host_error"] == "timeout"
    assert statuses(results)[("os", "adfs01")] is Status.PASS


def test_a_crashing_check_is_an_error_and_the_scan_goes_on() -> None:
    def boom(host: HostFacts) -> Outcome:
        raise ZeroDivisionError

    def fleet_boom(fleet: Fleet) -> Iterable[Finding]:
        raise KeyError("x")

    results = evaluate(
        [
            Check(meta("boom"), host_fn=boom),
            Check(meta("fleet", scope=Scope.FLEET), fleet_fn=fleet_boom),
            CHECK,
        ],
        Fleet(hosts=(ADFS,)),
    )
    by = statuses(results)
    assert by[("boom", "adfs01")] is Status.ERROR
    assert by[("fleet", FLEET_TARGET)] is Status.ERROR
    assert by[("os", "adfs01")] is Status.PASS


def test_results_are_ordered_hosts_then_directory_then_deployment() -> None:
    def fleet_fn(fleet: Fleet) -> Iterable[Finding]:
        yield Finding(DEPLOYMENT_TARGET, passed("d"))
        yield Finding(DIRECTORY_TARGET, passed("d"))
        yield Finding("adfs02", passed("h"))

    results = evaluate(
        [Check(meta("fleet", scope=Scope.FLEET), fleet_fn=fleet_fn), CHECK],
        Fleet(hosts=(OLD, ADFS)),
    )
    assert [(r.target, r.check_id) for r in results] == [
        ("adfs02", "fleet"),
        ("adfs02", "os"),
        ("adfs01", "os"),
        (DIRECTORY_TARGET, "fleet"),
        (DEPLOYMENT_TARGET, "fleet"),
    ]


def test_host_checks_evaluated_as_hosts_arrive_are_taken_up_and_nothing_runs_twice() -> None:
    calls: list[str] = []

    def counted(host: HostFacts) -> Outcome:
        calls.append(host.name)
        return os_version(host)

    def fleet_fn(fleet: Fleet) -> Iterable[Finding]:
        yield Finding("adfs01", failed("fleet-wide", hosts=len(fleet.hosts)))

    checks = [Check(meta("os"), host_fn=counted),
              Check(meta("fleet", scope=Scope.FLEET), fleet_fn=fleet_fn)]
    fleet = Fleet(hosts=(OLD, ADFS, PORTAL))
    expected = evaluate(checks, fleet)
    calls.clear()
    ready = HostResults(checks)
    for host in fleet.hosts:
        ready.add(host)
    assert calls == ["adfs02", "adfs01"]  # evaluated when added: PORTAL has no adfs role
    assert evaluate(checks, fleet, ready) == expected
    assert calls == ["adfs02", "adfs01"]  # and not again


def test_a_host_replaced_after_it_was_evaluated_is_evaluated_again() -> None:
    """The scan replaced the facts of a host it had already evaluated (e.g. Ctrl-C marked it):
    the results are those of the facts in the report, never of the ones replaced."""
    ready = HostResults([CHECK])
    ready.add(ADFS)
    unreachable = HostFacts("adfs01", frozenset({"adfs"}), "10.0.0.1",
                            error=HostError("interrupted", "scan interrupted"))
    (result,) = evaluate([CHECK], Fleet(hosts=(unreachable,)), ready)
    assert result.status is Status.ERROR
    assert evaluate([CHECK], Fleet(hosts=(ADFS,)), ready)[0].status is Status.PASS


def test_select_checks_include_skip_and_unknown_ids() -> None:
    catalogue = [Check(meta(i), host_fn=os_version) for i in ("a-one", "b-two", "c-three")]
    assert [c.meta.id for c in select_checks(catalogue)] == ["a-one", "b-two", "c-three"]
    assert [c.meta.id for c in select_checks(catalogue, include=["b-two"])] == ["b-two"]
    assert [c.meta.id for c in select_checks(catalogue, skip=["b-two"])] == ["a-one", "c-three"]
    with pytest.raises(InputError) as caught:
        select_checks(catalogue, include=["b-twoo"], skip=["zzz"])
    messages = [str(p) for p in caught.value.problems]
    assert "did you mean 'b-two'" in messages[0] and "--check" in messages[0]
    assert "--skip-check" in messages[1]
