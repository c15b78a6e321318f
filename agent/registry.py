"""The check registry: a decorator per scope that records a check function with its metadata.

Checks live in the `checks` package and register themselves on import; `load_catalogue()`
imports that package and returns the catalogue sorted by id. Each check declares the host facts it
reads (``facts=``, names from `agent.factscripts.FACTS`): the tests derive from these declarations
which facts a scenario needs and what a check becomes when one is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from agent.facts import Fleet, HostFacts
from agent.factscripts import fact as declared_fact
from agent.model import CheckMeta, Finding, Guidance, Outcome, Scope, Severity

HostCheckFn = Callable[[HostFacts], Outcome]
FleetCheckFn = Callable[[Fleet], Iterable[Finding]]
F = TypeVar("F", HostCheckFn, FleetCheckFn)


@dataclass(frozen=True)
class Check:
    """A registered check: its metadata and the pure function that evaluates it."""

    meta: CheckMeta
    host_fn: HostCheckFn | None = None
    fleet_fn: FleetCheckFn | None = None
    #: The host facts the check reads (declared in `agent.factscripts.FACTS`).
    facts: tuple[str, ...] = ()


_REGISTRY: dict[str, Check] = {}


def _register(check: Check) -> None:
    if check.meta.id in _REGISTRY:
        raise ValueError(f"check id registered twice: {check.meta.id}")
    undeclared = [name for name in check.facts if declared_fact(name) is None]
    if undeclared:
        raise ValueError(f"check {check.meta.id} reads undeclared facts: {undeclared}")
    _REGISTRY[check.meta.id] = check


def _meta(
    id: str,
    *,
    title: str,
    severity: Severity,
    roles: tuple[str, ...],
    scope: Scope,
    guidance: Guidance,
    remediation: str,
    references: tuple[str, ...],
) -> CheckMeta:
    return CheckMeta(
        id=id,
        title=title,
        severity=severity,
        roles=roles,
        scope=scope,
        guidance=guidance,
        remediation=remediation,
        references=references,
    )


def host_check(
    id: str,
    *,
    title: str,
    severity: Severity,
    roles: tuple[str, ...],
    guidance: Guidance,
    remediation: str,
    references: tuple[str, ...] = (),
    facts: tuple[str, ...] = (),
) -> Callable[[HostCheckFn], HostCheckFn]:
    """Register a per-host check: `fn(host) -> Outcome`, run on every host with one of `roles`.

    `facts` names the host facts `fn` reads.
    """

    def decorate(fn: HostCheckFn) -> HostCheckFn:
        meta = _meta(
            id,
            title=title,
            severity=severity,
            roles=roles,
            scope=Scope.HOST,
            guidance=guidance,
            remediation=remediation,
            references=references,
        )
        _register(Check(meta=meta, host_fn=fn, facts=facts))
        return fn

    return decorate


def fleet_check(
    id: str,
    *,
    title: str,
    severity: Severity,
    roles: tuple[str, ...],
    guidance: Guidance,
    remediation: str,
    references: tuple[str, ...] = (),
    facts: tuple[str, ...] = (),
) -> Callable[[FleetCheckFn], FleetCheckFn]:
    """Register a fleet check: `fn(fleet) -> Iterable[Finding]`, one finding per target.

    `facts` names the host facts `fn` reads (of the hosts with one of `roles`).
    """

    def decorate(fn: FleetCheckFn) -> FleetCheckFn:
        meta = _meta(
            id,
            title=title,
            severity=severity,
            roles=roles,
            scope=Scope.FLEET,
            guidance=guidance,
            remediation=remediation,
            references=references,
        )
        _register(Check(meta=meta, fleet_fn=fn, facts=facts))
        return fn

    return decorate


def load_catalogue() -> tuple[Check, ...]:
    """Import the `checks` package (which registers every check) and return them by id."""
    importlib.import_module("checks")
    return tuple(_REGISTRY[k] for k in sorted(_REGISTRY))
