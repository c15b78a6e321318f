"""`fits` (the quick yes/no every fact of every host goes through) agrees with the walk that
reports where a value departs from its schema, on every declared fact and on random schemas."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.factschema import BOOL, INT, STR, ListOf, Obj, Opt, Schema, _mismatch, fits, validate
from agent.factscripts import FACTS

names = st.sampled_from(["a", "b", "c", "value", "names"])
schemas: st.SearchStrategy[Schema] = st.recursive(
    st.sampled_from([STR, INT, BOOL]),
    lambda inner: st.one_of(
        inner.map(Opt),
        inner.map(ListOf),
        st.dictionaries(names, inner, max_size=4).map(Obj),
    ),
    max_leaves=8,
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=3)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(names, st.integers()), inner, max_size=4),
    ),
    max_leaves=10,
)


def fitting(schema: Schema) -> st.SearchStrategy[Any]:
    """Values that fit `schema` (with optional keys sometimes left out)."""
    if isinstance(schema, Opt):
        return st.one_of(st.none(), fitting(schema.inner))
    if isinstance(schema, ListOf):
        return st.lists(fitting(schema.item), max_size=3)
    if isinstance(schema, Obj):
        required = {k: fitting(f) for k, f in schema.fields.items() if not isinstance(f, Opt)}
        optional = {k: fitting(f) for k, f in schema.fields.items() if isinstance(f, Opt)}
        return st.fixed_dictionaries(required, optional=optional)
    return {"string": st.text(max_size=3), "integer": st.integers(),
            "boolean": st.booleans()}[schema.name]


def mutated(value: Any, data: st.DataObject) -> Any:
    """`value` with one part replaced, added or removed somewhere inside it (or not)."""
    choice = data.draw(st.integers(0, 3))
    if isinstance(value, dict) and value and choice:
        key = data.draw(st.sampled_from(sorted(value)))
        copy = dict(value)
        if choice == 1:
            del copy[key]
        elif choice == 2:
            copy[key] = mutated(copy[key], data)
        else:
            copy[data.draw(st.one_of(names, st.integers()))] = data.draw(json_values)
        return copy
    if isinstance(value, list) and value and choice:
        index = data.draw(st.integers(0, len(value) - 1))
        return [*value[:index], mutated(value[index], data), *value[index + 1:]]
    return data.draw(json_values) if choice else value


@settings(max_examples=500, deadline=None)
@given(schemas, st.data())
def test_fits_agrees_with_the_walk(schema: Schema, data: st.DataObject) -> None:
    value = mutated(data.draw(fitting(schema)), data)
    assert fits(schema, value) == (_mismatch(schema, value, "") is None)
    assert validate(schema, value) == _mismatch(schema, value, "")


@pytest.mark.parametrize("schema", [f.schema for f in FACTS], ids=[f.name for f in FACTS])
def test_every_declared_fact_fits_or_not_as_the_walk_says(schema: Schema) -> None:
    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        value = mutated(data.draw(fitting(schema)), data)
        assert fits(schema, value) == (_mismatch(schema, value, "") is None)

    check()
