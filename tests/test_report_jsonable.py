"""`jsonable`'s fast path gives exactly what its plain definition gives, for any value.

The definition below is the one the report was built with before the fast path (isinstance
checks in order, every value walked); hypothesis draws values of every kind a check's evidence
or a host's facts can hold, including the ones the fast path must hand over.
"""

from __future__ import annotations

import enum
import json
import math
import re
import types
from collections.abc import Iterable, Mapping, Set
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model import Status
from agent.report._text import jsonable

_SURROGATE = re.compile("[\ud800-\udfff]")


def defined(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {defined(str(k)): defined(v) for k, v in value.items()}
    if isinstance(value, Set):
        return sorted((defined(v) for v in value), key=str)
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        return [defined(v) for v in value]
    return defined(str(value))


class Level(enum.IntEnum):
    LOW = 1


class Named(str):
    """A str subclass (as a StrEnum's members are)."""


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(),
    st.text(alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010)),
    st.sampled_from([Status.FAIL, Level.LOW, Named("x\udc80"), b"bytes", bytearray(b"ba"),
                     datetime(2026, 1, 1, tzinfo=UTC), float("nan"), -math.inf, object]),
)
keys = st.one_of(st.text(), st.integers(), st.booleans(), st.none(), st.floats(),
                 st.sampled_from([Status.PASS, "ключ", "\ud800"]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.frozensets(st.one_of(st.text(), st.integers()), max_size=4),
        st.dictionaries(keys, inner, max_size=4),
        st.dictionaries(st.text(), inner, max_size=4).map(types.MappingProxyType),
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_the_fast_path_is_the_definition(value: Any) -> None:
    fast, plain = jsonable(value), defined(value)
    assert json.dumps(fast, sort_keys=False) == json.dumps(plain, sort_keys=False)
    assert type(fast) is type(plain)
    json.dumps(fast, ensure_ascii=False, allow_nan=False).encode("utf-8")  # never fails
