"""The shape of a fact's value: a small schema language, its validation and its description.

A fact declaration (`agent.factscripts.FACTS`) states its value's shape with these types::

    Obj({"caption": STR, "version": STR, "product_type": INT, "path": Opt(STR),
         "names": ListOf(STR)})

`Obj` is a JSON object; its keys are all required, except those whose type is `Opt` (null or
absent: absence is a fact, not an error). Keys not declared are refused: a script that emits a key
nothing declares is a script that drifted from its declaration. `validate` returns the first
mismatch as ``(path, expected, got)``; `describe` renders the shape for documentation.

Every fact of every host is validated before a check reads it (a 1,000-host scan validates
6,000 values), so `fits` first answers yes or no with a checker built once per schema, and the
walk that says where and how a value departs runs only for a value that does not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

#: ``(path, expected, got)``: where a value departs from its schema, and how.
Mismatch = tuple[str, str, Any]


@dataclass(frozen=True)
class Scalar:
    """A JSON string, integer (not a boolean) or boolean."""

    name: str

    def check(self, value: Any) -> bool:
        """Whether `value` is this scalar."""
        if self.name == "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        if self.name == "boolean":
            return isinstance(value, bool)
        return isinstance(value, str)

    def describe(self) -> str:
        """The type's name."""
        return {"integer": "int", "boolean": "bool", "string": "str"}[self.name]


@dataclass(frozen=True)
class Opt:
    """A value of `inner` type, or null (or, inside an `Obj`, absent)."""

    inner: Schema

    def describe(self) -> str:
        """``str|null``."""
        return f"{describe(self.inner)}|null"


@dataclass(frozen=True)
class ListOf:
    """A JSON array whose items are all of `item` type."""

    item: Schema

    def describe(self) -> str:
        """``[str]``."""
        return f"[{describe(self.item)}]"


@dataclass(frozen=True)
class Obj:
    """A JSON object with exactly these keys (`Opt` ones may be left out)."""

    fields: Mapping[str, Schema]

    def describe(self) -> str:
        """``{"key": type, ...}``."""
        inner = ", ".join(f'"{k}": {describe(v)}' for k, v in self.fields.items())
        return "{" + inner + "}"


Schema = Scalar | Opt | ListOf | Obj

STR = Scalar("string")
INT = Scalar("integer")
BOOL = Scalar("boolean")


def describe(schema: Schema) -> str:
    """The shape in a compact JSON-like notation, e.g. ``{"names": [str]}``."""
    return schema.describe()


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def validate(schema: Schema, value: Any, path: str = "") -> Mismatch | None:
    """The first place where `value` departs from `schema`, or None when it fits."""
    return None if fits(schema, value) else _mismatch(schema, value, path)


Checker = Callable[[Any], bool]
#: id(schema) -> (schema, its checker): the schema is kept so that its id is never reused.
_CHECKERS: dict[int, tuple[Schema, Checker]] = {}
_ABSENT: Any = object()


def fits(schema: Schema, value: Any) -> bool:
    """Whether `value` fits `schema` (what `validate` finds no mismatch in)."""
    known = _CHECKERS.get(id(schema))
    if known is None or known[0] is not schema:
        known = _CHECKERS[id(schema)] = (schema, _checker(schema))
    return known[1](value)


def is_object(value: Any) -> bool:
    """Whether `value` is a mapping with string keys (a JSON object)."""
    # A dict first: what JSON gives, without the Mapping ABC's slower test.
    return ((type(value) is dict or isinstance(value, Mapping))
            and all(map(isinstance, value, repeat(str))))


#: `Scalar.check` of each scalar, without looking its name up on every value.
_SCALAR_CHECKERS: dict[str, Checker] = {
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "string": lambda value: isinstance(value, str),
}


def _checker(schema: Schema) -> Checker:
    if isinstance(schema, Opt):
        inner = _checker(schema.inner)
        return lambda value: value is None or inner(value)
    if isinstance(schema, Scalar):
        return _SCALAR_CHECKERS.get(schema.name, schema.check)
    if isinstance(schema, ListOf):
        if schema.item == STR:  # the common list: its items tested in C, not a call each
            return lambda value: isinstance(value, list) and all(map(isinstance, value,
                                                                     repeat(str)))
        item = _checker(schema.item)
        return lambda value: isinstance(value, list) and all(map(item, value))
    allowed = frozenset(schema.fields)
    required = frozenset(k for k, f in schema.fields.items() if not isinstance(f, Opt))
    fields = tuple((key, _checker(field)) for key, field in schema.fields.items())

    def check(value: Any) -> bool:
        if not is_object(value) or not allowed.issuperset(value) or not required.issubset(value):
            return False
        for key, field in fields:
            item = value.get(key, _ABSENT)
            if item is not _ABSENT and not field(item):
                return False
        return True

    return check


def _mismatch(schema: Schema, value: Any, path: str) -> Mismatch | None:
    if isinstance(schema, Opt):
        return None if value is None else _mismatch(schema.inner, value, path)
    if isinstance(schema, Scalar):
        return None if schema.check(value) else (path, schema.name, value)
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return (path, f"list of {describe(schema.item)}", value)
        for index, item in enumerate(value):
            found = _mismatch(schema.item, item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    if not is_object(value):
        return (path, "mapping", value)
    for key, field in schema.fields.items():
        if key not in value:
            if isinstance(field, Opt):
                continue
            return (_where(path, key), f"{describe(field)} (the key is missing)", None)
        found = _mismatch(field, value[key], _where(path, key))
        if found is not None:
            return found
    extra = sorted(set(value) - set(schema.fields))
    if extra:
        return (_where(path, extra[0]), "no such key (undeclared)", value[extra[0]])
    return None
