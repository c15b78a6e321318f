"""Facts are declared once (agent.factscripts.FACTS): the declarations hold, values are validated
against them when read (gathered or replayed), and checks read exactly the facts they declare."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from checks_helpers import GROUP, account, catalogue, directory, nets

from agent import factsfile
from agent.engine import evaluate
from agent.facts import Declared, Fleet, HostFacts
from agent.factschema import INT, STR, ListOf, Obj, Opt, validate
from agent.factscripts import FACTS, SCRIPTS, by_name, fact
from agent.model import Status
from agent.roles import ROLES


def test_fact_names_are_unique_and_each_belongs_to_a_script() -> None:
    names = [f.name for f in FACTS]
    assert len(names) == len(set(names))
    for declared in FACTS:
        script = by_name(declared.script)
        assert script is not None, f"{declared.name}: no script {declared.script!r}"
        assert declared.name in script.facts
    assert sorted(f for s in SCRIPTS for f in s.facts) == sorted(names)


@pytest.mark.parametrize("declared", FACTS, ids=lambda f: f.name)
def test_every_example_fits_its_schema_and_is_documented(declared: Any) -> None:
    assert declared.doc.strip()
    assert declared.examples, "the first example is what a healthy host reports"
    for example in declared.examples:
        assert validate(declared.schema, dict(example)) is None, example


@pytest.mark.parametrize(("value", "where"), [
    ({"a": "x"}, "n"),  # a required key missing
    ({"a": 1, "n": 1}, "a"),  # wrong type
    ({"a": "x", "n": 1, "zz": 0}, "zz"),  # a key nothing declares
    ({"a": "x", "n": 1, "l": ["ok", 2]}, "l[1]"),  # a wrong list item
    ({"a": "x", "n": True}, "n"),  # a boolean is not an integer
])
def test_validation_names_the_path_that_departs(value: dict[str, Any], where: str) -> None:
    schema = Obj({"a": STR, "n": INT, "l": Opt(ListOf(STR))})
    mismatch = validate(schema, value)
    assert mismatch is not None
    assert mismatch[0] == where


def test_optional_keys_may_be_null_or_absent() -> None:
    schema = Obj({"a": STR, "l": Opt(ListOf(STR))})
    assert validate(schema, {"a": "x"}) is None
    assert validate(schema, {"a": "x", "l": None}) is None


def _minimal(facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "mfa-agent/facts", "version": 1, "agent_version": "0.1.0",
        "collected_at": "2026-01-01T00:00:00Z", "inventory": None, "deployment": {},
        "directory": {"configured": False, "group_name": "PhoneFactor Admins",
                      "allowed_members": None, "entry": None},
        "hosts": {"h1": {"address": "127.0.0.1", "roles": ["adfs"],
                         "declared": {"perimeter": [], "internal": [],
                                      "clock_skew_max_seconds": 300},
                         "error": None, "facts": facts}},
    }


def test_a_replayed_value_of_the_wrong_shape_is_an_error_on_that_fact() -> None:
    healthy = {f.name: {"value": dict(f.healthy)} for f in FACTS}
    wrong = {**healthy["os"]["value"], "product_type": "3"}
    recorded = factsfile.parse(_minimal({**healthy, "os": {"value": wrong}}))
    results = evaluate(catalogue().values(), Fleet(hosts=recorded.hosts))
    by_check = {r.check_id: r for r in results if r.target == "h1"}
    os_checks = {c.meta.id for c in catalogue().values() if c.facts[:1] == ("os",)}
    assert os_checks
    for check_id in os_checks:
        outcome = by_check[check_id]
        assert outcome.status is Status.ERROR
        assert outcome.evidence["fact"] == "os"
        assert outcome.evidence["path"] == "product_type"
    # the other facts of that host are still judged
    assert by_check["adfs-role-running"].status is Status.PASS


# -- checks read what they declare ---------------------------------------------------------------


@dataclass(frozen=True)
class RecordingHost(HostFacts):
    """A host that notes every fact a check asks it for."""

    read: list[str] = field(default_factory=list)

    def fact(self, name: str) -> Any:
        self.read.append(name)
        return super().fact(name)


def _healthy_fleet(variant: int = 0) -> tuple[Fleet, list[RecordingHost]]:
    """One host per role, each fact its `variant`-th example (its last when it has fewer)."""
    facts = {f.name: {"value": dict(f.examples[min(variant, len(f.examples) - 1)])}
             for f in FACTS}
    hosts = [RecordingHost(name=f"{role}1", roles=frozenset({role}), address="127.0.0.1",
                           declared=DECLARED, facts=facts) for role in ROLES]
    view = directory(group=GROUP, accounts={
        str(FACTS_BY_NAME["adfs"]["service_account"]): account()}, allowed=("svc-adfs",))
    fleet = Fleet(hosts=tuple(hosts), directory=view,
                  deployment={"licensing": "licenses", "provider": "per_user",
                              "directory_sync": True})
    return fleet, hosts


FACTS_BY_NAME = {f.name: f.healthy for f in FACTS}
DECLARED = Declared(perimeter=nets("198.51.100.0/24"), internal=nets("10.0.0.0/8"))


@pytest.mark.parametrize("check_id", sorted(catalogue()))
def test_a_check_reads_exactly_the_facts_it_declares(check_id: str) -> None:
    """Over the declared examples, a check reads only what it declares, and all of it."""
    check = catalogue()[check_id]
    read: set[str] = set()
    for variant in range(max(len(f.examples) for f in FACTS)):
        fleet, hosts = _healthy_fleet(variant)
        evaluate([check], fleet)
        read.update(name for host in hosts for name in host.read)
        assert read <= set(check.facts), variant
    assert read == set(check.facts)


@pytest.mark.parametrize("check_id", sorted(c.meta.id for c in catalogue().values() if c.facts))
def test_without_its_first_declared_fact_a_check_errs_on_it(check_id: str) -> None:
    """The first fact a check declares is the one it cannot do without (others may serve as
    evidence only, read when they can be)."""
    check = catalogue()[check_id]
    for missing in check.facts[:1]:
        facts = {f.name: {"value": dict(f.healthy)} for f in FACTS if f.name != missing}
        hosts = tuple(HostFacts(name=f"{r}1", roles=frozenset({r}), address="127.0.0.1",
                                declared=DECLARED, facts=facts) for r in ROLES)
        view = directory(group=GROUP, accounts={
            str(FACTS_BY_NAME["adfs"]["service_account"]): account()}, allowed=("svc-adfs",))
        fleet = Fleet(hosts=hosts, directory=view, deployment={"directory_sync": True})
        errors = [r for r in evaluate([check], fleet)
                  if r.status is Status.ERROR and r.evidence.get("fact") == missing]
        assert errors, f"{check_id} without {missing}"


def test_registering_a_check_on_an_undeclared_fact_fails() -> None:
    from agent.model import Guidance, Severity, passed
    from agent.registry import host_check

    with pytest.raises(ValueError, match="undeclared facts"):
        host_check("test-undeclared", title="t", severity=Severity.LOW, roles=("adfs",),
                   guidance=Guidance("q", "s"), remediation="r",
                   facts=("shoe_size",))(lambda host: passed("ok"))
    assert fact("shoe_size") is None
