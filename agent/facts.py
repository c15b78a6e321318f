"""Facts as checks see them: read-only views over plain JSON data, with typed accessors.

A host's facts are a mapping from fact name to an *entry*: ``{"value": ...}`` when the read
worked, ``{"error": "message"}`` when it did not. A host that could not be reached at all carries
a `HostError` instead. Checks never touch the raw data: they ask `HostFacts.fact(name)` and the
typed accessors of `FactDict`, which raise `FactUnavailable` or `FactShapeError`; the engine turns
both into an ERROR result, so a missing or malformed fact can never crash a scan.

Host facts are declared once, in `agent.factscripts.FACTS`: name, script, the schema of the value
and its documentation (``null`` means "absent on that host", which is a fact, not an error). A
declared fact's value is validated against its schema whenever a check reads it, so a value of the
wrong shape, gathered or replayed, is an ERROR on that fact naming the path that departs.

Directory facts (one set per inventory, gathered over LDAP):
``{"group": {"dn": str, "sid": str|null} | null,
   "members": [{"dn": str, "sam_account_name": str|null, "object_class": str|null,
                "user_principal_name": str|null, "primary_group": bool}],
   "domain": {"dns": str|null, "netbios": str|null},
   "accounts": {<service account as the host reports it>: {"found": bool, "dn": str|null,
                "sam_account_name": str|null, "member_of_group": bool|null,
                "disabled": bool|null, "locked_out": bool|null, "password_expired": bool|null,
                "not_found_reason": str|null, "other_domain": str|null}}}``
(``not_found_reason``, optional: why an account was not looked up or not found, e.g. a
built-in account or one of another domain; ``other_domain``, optional: that other domain.
``domain``, ``user_principal_name`` and ``primary_group`` are optional too: facts files written
before them stay readable.)
``members`` are transitive (nested groups resolved), primary-group members included
(``primary_group`` true: the member's primaryGroupID is the RID of the group or of a nested one).

Deployment facts are what the inventory declares in ``mfa_deployment``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.factschema import is_object, validate
from agent.factscripts import fact as declared_fact
from agent.model import Outcome, errored

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FactUnavailable(Exception):
    """A fact the check needs was not gathered, or its read failed."""

    def __init__(self, fact: str, reason: str, host_error: str | None = None) -> None:
        self.fact = fact
        self.reason = reason
        #: The kind of host-level error when the whole host could not be read.
        self.host_error = host_error
        super().__init__(f"fact '{fact}' unavailable: {reason}")


class FactShapeError(Exception):
    """A fact was gathered but does not have the documented shape."""

    def __init__(self, fact: str, path: str, expected: str, got: Any) -> None:
        self.fact = fact
        self.path = path
        shown = type(got).__name__ if got is not None else "null"
        super().__init__(
            f"fact '{fact}' has an unexpected shape at '{path}': expected {expected}, got {shown}"
        )


def _typename(value: Any) -> str:
    return type(value).__name__


class FactDict:
    """A read-only mapping fact with typed accessors that raise `FactShapeError` on mismatch."""

    def __init__(self, fact: str, data: Mapping[str, Any], path: str = "") -> None:
        self.fact = fact
        self._data = data
        self._path = path

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def has(self, key: str) -> bool:
        """Whether the key is present (its value may still be null)."""
        return key in self._data

    def raw(self, key: str) -> Any:
        """The value as stored, or None when absent; for evidence only."""
        return self._data.get(key)

    def _get(self, key: str, ok: Callable[[Any], bool], expected: str, nullable: bool) -> Any:
        value = self._data.get(key)
        if value is None:
            if nullable:
                return None
            raise FactShapeError(self.fact, self._where(key), expected, value)
        if not ok(value):
            raise FactShapeError(self.fact, self._where(key), expected, value)
        return value

    def text(self, key: str) -> str:
        """A required string."""
        value: str = self._get(key, lambda v: isinstance(v, str), "string", False)
        return value

    def opt_text(self, key: str) -> str | None:
        """A string or null/absent."""
        value: str | None = self._get(key, lambda v: isinstance(v, str), "string or null", True)
        return value

    def integer(self, key: str) -> int:
        """A required integer (booleans are not integers here)."""
        value: int = self._get(key, _is_int, "integer", False)
        return value

    def opt_integer(self, key: str) -> int | None:
        """An integer or null/absent."""
        value: int | None = self._get(key, _is_int, "integer or null", True)
        return value

    def flag(self, key: str) -> bool:
        """A required boolean."""
        value: bool = self._get(key, lambda v: isinstance(v, bool), "boolean", False)
        return value

    def opt_flag(self, key: str) -> bool | None:
        """A boolean or null/absent."""
        value: bool | None = self._get(key, lambda v: isinstance(v, bool), "boolean or null", True)
        return value

    def texts(self, key: str) -> list[str]:
        """A required list of strings."""
        value: list[str] = self._get(key, _is_str_list, "list of strings", False)
        return value

    def opt_texts(self, key: str) -> list[str] | None:
        """A list of strings or null/absent."""
        value: list[str] | None = self._get(key, _is_str_list, "list of strings or null", True)
        return value

    def mapping(self, key: str) -> FactDict:
        """A required nested mapping."""
        value = self._get(key, is_object, "mapping", False)
        return FactDict(self.fact, value, self._where(key))

    def opt_mapping(self, key: str) -> FactDict | None:
        """A nested mapping or null/absent."""
        value = self._get(key, is_object, "mapping or null", True)
        return None if value is None else FactDict(self.fact, value, self._where(key))

    def mappings(self, key: str) -> list[FactDict]:
        """A required list of mappings."""
        value = self._get(
            key,
            lambda v: isinstance(v, list) and all(is_object(i) for i in v),
            "list of mappings",
            False,
        )
        return [FactDict(self.fact, v, f"{self._where(key)}[{i}]") for i, v in enumerate(value)]

    def mapping_of(self, key: str) -> dict[str, FactDict]:
        """A required mapping of string keys to mappings."""
        value = self._get(
            key,
            lambda v: is_object(v) and all(is_object(i) for i in v.values()),
            "mapping of mappings",
            False,
        )
        return {k: FactDict(self.fact, v, f"{self._where(key)}[{k!r}]") for k, v in value.items()}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, str) for i in value)


def read_entry(fact: str, entry: Any) -> FactDict:
    """Turn one raw fact entry (``{"value": {...}}`` or ``{"error": "..."}``) into a `FactDict`."""
    if entry is None:
        raise FactUnavailable(fact, "not collected")
    if not isinstance(entry, Mapping):
        raise FactShapeError(fact, "", "an entry {value} or {error}", entry)
    if "error" in entry:
        message = entry["error"]
        raise FactUnavailable(fact, message if isinstance(message, str) else repr(message))
    if "value" not in entry:
        raise FactShapeError(fact, "", "an entry {value} or {error}", entry)
    value = entry["value"]
    if not is_object(value):
        raise FactShapeError(fact, "value", "mapping", value)
    declaration = declared_fact(fact)
    if declaration is not None:
        mismatch = validate(declaration.schema, value)
        if mismatch is not None:
            path, expected, got = mismatch
            raise FactShapeError(fact, path, expected, got)
    return FactDict(fact, value)


@dataclass(frozen=True)
class HostError:
    """Why no facts could be gathered from a host at all (unreachable, refused login, timeout)."""

    kind: str
    message: str


@dataclass(frozen=True)
class Declared:
    """Per-host settings declared in the inventory that checks compare facts against."""

    perimeter: tuple[IPNetwork, ...] = ()
    internal: tuple[IPNetwork, ...] = ()
    clock_skew_max_seconds: int = 300


@dataclass(frozen=True)
class HostFacts:
    """One host as checks see it: who it is, what the inventory declares, what was gathered."""

    name: str
    roles: frozenset[str]
    address: str
    declared: Declared = field(default_factory=Declared)
    facts: Mapping[str, Any] = field(default_factory=dict)
    error: HostError | None = None
    #: Facts already read and validated: several checks read the same fact of a host.
    _read: dict[str, FactDict] = field(default_factory=dict, init=False, repr=False,
                                       compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))

    def fact(self, name: str) -> FactDict:
        """The named fact, or `FactUnavailable` (host unreachable, not collected, read failed)."""
        if self.error is not None:
            raise FactUnavailable(
                name, f"host not scanned: {self.error.message}", host_error=self.error.kind
            )
        read = self._read.get(name)
        if read is None:
            read = self._read[name] = read_entry(name, self.facts.get(name))
        return read

    def has_role(self, role: str) -> bool:
        """Whether the host has `role`."""
        return role in self.roles


@dataclass(frozen=True)
class DirectoryView:
    """The directory as checks see it: its settings and, if gathered, its facts."""

    configured: bool = False
    group_name: str = "PhoneFactor Admins"
    #: Allowed members of the group (names or DNs); None when no allow-list is declared.
    allowed_members: tuple[str, ...] | None = None
    #: Raw entry ``{"value": ...}`` / ``{"error": ...}``, None when not gathered.
    entry: Mapping[str, Any] | None = None

    def facts(self) -> FactDict:
        """The directory facts, or `FactUnavailable`."""
        if not self.configured:
            raise FactUnavailable("directory", "no mfa_directory is configured in the inventory")
        return read_entry("directory", self.entry)


@dataclass(frozen=True)
class Fleet:
    """Everything a fleet check may read: every host in scope, the directory, the deployment."""

    hosts: tuple[HostFacts, ...] = ()
    directory: DirectoryView = field(default_factory=DirectoryView)
    #: What the inventory declares in mfa_deployment (keys absent when not declared).
    deployment: Mapping[str, Any] = field(default_factory=dict)
    #: Role → inventory hosts that have it but lie outside this scan's --limit (not read).
    outside_scope: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def with_role(self, role: str) -> tuple[HostFacts, ...]:
        """Hosts that have `role`, in inventory order."""
        return tuple(h for h in self.hosts if role in h.roles)

    def outside(self, role: str) -> tuple[str, ...]:
        """Inventory hosts with `role` that the scan's --limit left out."""
        return tuple(self.outside_scope.get(role, ()))

    def deployment_facts(self) -> FactDict:
        """The declared deployment as a `FactDict` (validated lazily like any fact)."""
        if not is_object(self.deployment):
            raise FactShapeError("deployment", "", "mapping", self.deployment)
        return FactDict("deployment", self.deployment)


def guarded(evaluate: Callable[[], Outcome]) -> Outcome:
    """Run one evaluation, turning an unavailable or malformed fact into an ERROR outcome.

    Fleet checks call this per target, so one node's missing fact does not hide the others.
    """
    try:
        return evaluate()
    except FactUnavailable as exc:
        if exc.host_error is not None:
            return errored(str(exc), fact=exc.fact, host_error=exc.host_error)
        return errored(str(exc), fact=exc.fact)
    except FactShapeError as exc:
        return errored(str(exc), fact=exc.fact, path=exc.path)
