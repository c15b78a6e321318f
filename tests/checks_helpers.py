"""Builders for the check tests: hosts, fleets, directory views; running checks like the engine.

No files, no network: every fact is built here as the plain JSON the fact scripts would emit.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agent.facts import (
    Declared,
    DirectoryView,
    FactShapeError,
    FactUnavailable,
    Fleet,
    HostError,
    HostFacts,
    IPNetwork,
)
from agent.model import Finding, Outcome, errored
from agent.registry import Check, FleetCheckFn, HostCheckFn, load_catalogue

REPO = Path(__file__).resolve().parent.parent
#: The guidance the checks quote, vendored with its attribution (docs/guidance/README.md).
GUIDANCE_FILE = (
    REPO / "docs" / "guidance" / "multi-factor-authentication-security-best-practices.md"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def value(**fields: Any) -> dict[str, Any]:
    """A fact entry whose read worked."""
    return {"value": fields}


def error(message: str = "the read failed") -> dict[str, Any]:
    """A fact entry whose read failed."""
    return {"error": message}


def nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    """Networks from CIDR strings."""
    return tuple(ipaddress.ip_network(c) for c in cidrs)


def make_host(
    name: str = "node1",
    roles: Iterable[str] = ("adfs",),
    *,
    declared: Declared | None = None,
    unreachable: bool = False,
    **facts: Any,
) -> HostFacts:
    """A host with the given raw fact entries (use `value` and `error` to build them)."""
    return HostFacts(
        name=name,
        roles=frozenset(roles),
        address=f"{name}.lab.example",
        declared=declared or Declared(),
        facts=facts,
        error=HostError("unreachable", "connection refused") if unreachable else None,
    )


def run_host(fn: HostCheckFn, host: HostFacts) -> Outcome:
    """Run a host check as the engine does: a missing or malformed fact becomes an ERROR.

    Anything else the check raises propagates, so a test sees it as a bug.
    """
    try:
        return fn(host)
    except FactUnavailable as exc:
        return errored(str(exc), fact=exc.fact)
    except FactShapeError as exc:
        return errored(str(exc), fact=exc.fact, path=exc.path)


def run_fleet(fn: FleetCheckFn, fleet: Fleet) -> dict[str, Outcome]:
    """Run a fleet check; its outcomes by target (each target must appear once)."""
    findings = list(fn(fleet))
    assert all(isinstance(f, Finding) for f in findings)
    targets = [f.target for f in findings]
    assert len(targets) == len(set(targets)), f"a target appears twice: {targets}"
    return {f.target: f.outcome for f in findings}


def directory(
    *,
    group: Mapping[str, Any] | None = None,
    members: list[dict[str, Any]] | None = None,
    accounts: Mapping[str, Mapping[str, Any]] | None = None,
    allowed: tuple[str, ...] | None = None,
    entry: Mapping[str, Any] | None = None,
    configured: bool = True,
) -> DirectoryView:
    """A configured directory view with the given facts (``entry`` overrides them)."""
    facts = {"group": group, "members": members or [], "accounts": dict(accounts or {})}
    return DirectoryView(
        configured=configured,
        allowed_members=allowed,
        entry={"value": facts} if entry is None else entry,
    )


GROUP = {"dn": "CN=PhoneFactor Admins,CN=Users,DC=lab,DC=example", "sid": "S-1-5-21-1-2-3-1105"}


def account(
    *,
    found: bool = True,
    member: bool | None = True,
    disabled: bool | None = False,
    locked_out: bool | None = False,
    password_expired: bool | None = False,
    sam: str | None = "svc-adfs",
) -> dict[str, Any]:
    """One entry of the directory facts' ``accounts``."""
    return {
        "found": found,
        "dn": f"CN={sam},CN=Users,DC=lab,DC=example" if found and sam else None,
        "sam_account_name": sam if found else None,
        "member_of_group": member if found else None,
        "disabled": disabled if found else None,
        "locked_out": locked_out if found else None,
        "password_expired": password_expired if found else None,
    }


def catalogue() -> dict[str, Check]:
    """The registered checks by id."""
    return {c.meta.id: c for c in load_catalogue()}


def host_fn(check_id: str) -> HostCheckFn:
    """The function of a registered host check."""
    fn = catalogue()[check_id].host_fn
    assert fn is not None, f"{check_id} is not a host check"
    return fn


def fleet_fn(check_id: str) -> FleetCheckFn:
    """The function of a registered fleet check."""
    fn = catalogue()[check_id].fleet_fn
    assert fn is not None, f"{check_id} is not a fleet check"
    return fn
