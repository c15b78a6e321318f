"""Property tests: whatever JSON the fact scripts, the directory or the inventory hand over, every
check returns outcomes (ERROR at worst) and never raises, and its evidence is JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from checks_helpers import catalogue, nets, run_fleet, run_host
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.facts import Declared, DirectoryView, Fleet, HostError, HostFacts
from agent.factschema import Opt
from agent.factscripts import FACTS
from agent.model import Outcome, Status
from agent.roles import ROLES

#: Hand-picked odd values per fact key, on top of the declared examples, that reach the edges of
#: what checks parse (a bad version, a negative IIS major, an unparsable address or time).
ODD_VALUES: dict[str, dict[str, list[Any]]] = {
    "os": {"version": ["6.1.7601", "10.0", "x.y.z"], "product_type": [0, 2]},
    "iis": {"major": [5, 6, 7, -1]},
    "ip_addresses": {"addresses": [["fe80::1%3", "192.0.2.1"], [], ["x"]]},
    "clock": {"host_utc": ["2024-05-01T10:09:00.1234567Z", "nope"],
              "agent_utc": ["0001-01-01T00:00:00+14:00"]},
}


def _fact_keys() -> dict[str, dict[str, list[Any]]]:
    """Every declared fact with its keys and plausible values: those of its examples (and null
    where the schema allows it) plus `ODD_VALUES`, derived from agent.factscripts.FACTS."""
    keys: dict[str, dict[str, list[Any]]] = {}
    for declared in FACTS:
        values: dict[str, list[Any]] = {}
        for key, schema in declared.schema.fields.items():
            seen = [dict(e)[key] for e in declared.examples if key in e]
            if isinstance(schema, Opt):
                seen.append(None)
            seen += ODD_VALUES.get(declared.name, {}).get(key, [])
            values[key] = seen
        keys[declared.name] = values
    return keys


FACT_KEYS = _fact_keys()

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` nine times in ten, `odd` otherwise: deep paths get reached, odd shapes still come."""
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else usual)


def _field(plausible: list[Any]) -> st.SearchStrategy[Any]:
    return mostly(st.sampled_from(plausible), json_values)


def _fact_value(keys: dict[str, list[Any]]) -> st.SearchStrategy[Any]:
    complete = st.fixed_dictionaries({k: _field(v) for k, v in keys.items()})
    partial = st.fixed_dictionaries({}, optional={k: _field(v) for k, v in keys.items()})
    return mostly(complete, partial)


def _entry(keys: dict[str, list[Any]]) -> st.SearchStrategy[Any]:
    odd = st.one_of(st.builds(lambda m: {"error": m}, json_values), json_values)
    return mostly(_fact_value(keys).map(lambda v: {"value": v}), odd)


facts_strategy = mostly(
    st.fixed_dictionaries({name: _entry(keys) for name, keys in FACT_KEYS.items()}),
    st.fixed_dictionaries({}, optional={name: _entry(keys) for name, keys in FACT_KEYS.items()}),
)
networks = st.sampled_from(
    [nets(), nets("192.0.2.0/24"), nets("10.0.0.0/8", "2001:db8::/32"), nets("0.0.0.0/0")]
)
declared_strategy = st.builds(
    Declared,
    perimeter=networks,
    internal=networks,
    clock_skew_max_seconds=st.integers(min_value=0, max_value=10**6),
)


@st.composite
def hosts(draw: st.DrawFn, name: str = "h") -> HostFacts:
    unreachable = draw(st.integers(0, 9)) == 0
    return HostFacts(
        name=name,
        roles=frozenset(draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=3))),
        address=f"{name}.lab.example",
        declared=draw(declared_strategy),
        facts=draw(facts_strategy),
        error=HostError("unreachable", "refused") if unreachable else None,
    )


ACCOUNT_KEYS: dict[str, list[Any]] = {
    "found": [True, False],
    "dn": ["CN=svc,DC=lab"],
    "sam_account_name": ["svc-adfs", None],
    "member_of_group": [True, False, None],
    "disabled": [True, False, None],
    "locked_out": [False, None],
    "password_expired": [False, True],
}
directory_value = st.fixed_dictionaries(
    {
        "group": _field([{"dn": "CN=PhoneFactor Admins,DC=lab", "sid": None}, None]),
        "members": _field([[{"dn": "CN=a", "sam_account_name": "a", "object_class": "user"}]]),
        "accounts": mostly(
            st.dictionaries(
                st.sampled_from(["LAB\\svc-adfs", "svc@lab.example"]), _fact_value(ACCOUNT_KEYS)
            ),
            json_values,
        ),
    }
)
directories = st.builds(
    DirectoryView,
    configured=st.booleans(),
    allowed_members=st.one_of(st.none(), st.just(("svc-adfs", "CN=a"))),
    entry=mostly(
        directory_value.map(lambda v: {"value": v}),
        st.sampled_from([None, {"error": "LDAP down"}]),
    ),
)
deployments = mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "licensing": _field(["licenses", "provider", "mixed", "other"]),
            "provider": _field(["per_user", "per_authentication", "none"]),
            "directory_sync": _field([True, False]),
            "app_passwords": _field([{"allowed": True, "justification": "x"}, {"allowed": False}]),
            "one_time_bypass_seconds": _field([0, 300, 900, -1]),
            "trusted_ips": _field(
                [
                    {"enabled": True, "ranges": ["203.0.113.0/24", "2001:db8::/48"]},
                    {"enabled": True, "ranges": ["0.0.0.0/0"]},
                    {"enabled": True, "ranges": ["x"]},
                    {"enabled": False},
                ]
            ),
        },
    ),
    json_values,
)


@st.composite
def fleets(draw: st.DrawFn) -> Fleet:
    count = draw(st.integers(0, 4))
    return Fleet(
        hosts=tuple(draw(hosts(name=f"h{i}")) for i in range(count)),
        directory=draw(directories),
        deployment=draw(deployments),
    )


def _assert_sound(outcome: Outcome) -> None:
    assert isinstance(outcome, Outcome)
    assert isinstance(outcome.status, Status)
    assert isinstance(outcome.reason, str)
    assert outcome.reason
    json.dumps(dict(outcome.evidence), allow_nan=False)


HOST_CHECKS = sorted(i for i, c in catalogue().items() if c.host_fn is not None)
FLEET_CHECKS = sorted(i for i, c in catalogue().items() if c.fleet_fn is not None)
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("check_id", HOST_CHECKS)
@PROPERTY_SETTINGS
@given(host=hosts())
def test_host_checks_return_an_outcome_for_any_facts(check_id: str, host: HostFacts) -> None:
    fn = catalogue()[check_id].host_fn
    assert fn is not None
    _assert_sound(run_host(fn, host))


@pytest.mark.parametrize("check_id", FLEET_CHECKS)
@PROPERTY_SETTINGS
@given(fleet=fleets())
def test_fleet_checks_never_raise(check_id: str, fleet: Fleet) -> None:
    fn = catalogue()[check_id].fleet_fn
    assert fn is not None
    for outcome in run_fleet(fn, fleet).values():
        _assert_sound(outcome)
