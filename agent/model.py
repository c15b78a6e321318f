"""The result model: statuses, severities, check metadata, outcomes and results.

Every reporter renders these and nothing else; checks produce `Outcome`s and the engine turns
them into `Result`s bound to a target (a host name, `(directory)` or `(deployment)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Status(StrEnum):
    """What a check concluded about one target."""

    PASS = "PASS"  #: compliant  # noqa: S105 (a status, not a password)
    FAIL = "FAIL"  #: not compliant
    ERROR = "ERROR"  #: could not tell: fact missing or failed, host unreachable
    SKIP = "SKIP"  #: does not apply
    MANUAL = "MANUAL"  #: needs an attestation the agent cannot read
    WAIVED = "WAIVED"  #: a FAIL accepted by a current waiver (does not fail the exit code)


#: Display and sorting order of statuses, worst first.
STATUS_ORDER: tuple[Status, ...] = (
    Status.FAIL,
    Status.ERROR,
    Status.WAIVED,
    Status.MANUAL,
    Status.SKIP,
    Status.PASS,
)


class Severity(StrEnum):
    """How much a FAIL of a check matters."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for critical … 4 for info, for sorting."""
        return list(Severity).index(self)


class Scope(StrEnum):
    """How a check is evaluated."""

    HOST = "host"  #: a pure function of one host's facts, run on each host of its roles
    FLEET = "fleet"  #: a pure function of every host's facts, the directory and the deployment


@dataclass(frozen=True)
class Guidance:
    """The guidance sentence a check enforces, quoted verbatim, and where it comes from."""

    quote: str
    source: str
    #: Known disagreements between Microsoft's documents, recorded instead of chosen silently.
    notes: str = ""


@dataclass(frozen=True)
class CheckMeta:
    """Everything a report needs to say about a check besides its result."""

    id: str
    title: str
    severity: Severity
    #: Roles the check applies to; `agent.roles.ANY_ROLE` for every host with a role.
    roles: tuple[str, ...]
    scope: Scope
    guidance: Guidance
    remediation: str
    references: tuple[str, ...] = ()


def _freeze(evidence: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(evidence))


@dataclass(frozen=True)
class Outcome:
    """What a check function returns: a status, a one-line reason and the deciding evidence.

    Evidence values must be JSON-serialisable (str, int, float, bool, None, lists, dicts).
    """

    status: Status
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", _freeze(self.evidence))


def passed(reason: str, **evidence: Any) -> Outcome:
    """A PASS outcome."""
    return Outcome(Status.PASS, reason, evidence)


def failed(reason: str, **evidence: Any) -> Outcome:
    """A FAIL outcome."""
    return Outcome(Status.FAIL, reason, evidence)


def errored(reason: str, **evidence: Any) -> Outcome:
    """An ERROR outcome: the agent could not tell."""
    return Outcome(Status.ERROR, reason, evidence)


def skipped(reason: str, **evidence: Any) -> Outcome:
    """A SKIP outcome: the check does not apply."""
    return Outcome(Status.SKIP, reason, evidence)


def manual(reason: str, **evidence: Any) -> Outcome:
    """A MANUAL outcome: needs an attestation the agent cannot read."""
    return Outcome(Status.MANUAL, reason, evidence)


@dataclass(frozen=True)
class Finding:
    """A fleet check's outcome for one target."""

    target: str
    outcome: Outcome


@dataclass(frozen=True)
class Waiver:
    """An accepted risk: FAILs of `check_id` on targets matching `hosts` become WAIVED until
    `expires` (the last day it applies, UTC)."""

    check_id: str
    #: A host name, group-free glob (``adfs*.corp.example``), or ``(directory)``/``(deployment)``;
    #: for a waiver written with a list of them, the list joined with ", " (as reports show it).
    hosts: str
    justification: str
    approver: str
    expires: date
    #: Where it is written, ``file:line``.
    source: str = ""
    #: The names or globs it covers; empty means just `hosts`.
    patterns: tuple[str, ...] = ()

    def host_patterns(self) -> tuple[str, ...]:
        """The names or globs the waiver covers."""
        return self.patterns or (self.hosts,)


@dataclass(frozen=True)
class Result:
    """One check's conclusion about one target, with its evidence."""

    check_id: str
    target: str
    status: Status
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    #: The waiver that made a FAIL WAIVED, if any.
    waiver: Waiver | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", _freeze(self.evidence))
