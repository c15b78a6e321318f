"""The engine: selects checks and evaluates them over facts, producing results.

It knows nothing of connectors or reporters. Checks are pure; the engine is where an unavailable
or malformed fact, or a bug in a check, becomes an ERROR result for that target only.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Sequence

from agent.errors import InputError, Problem
from agent.facts import FactShapeError, FactUnavailable, Fleet, HostFacts
from agent.model import Finding, Outcome, Result, errored
from agent.registry import Check
from agent.roles import ANY_ROLE, DEPLOYMENT_TARGET, DIRECTORY_TARGET

log = logging.getLogger(__name__)

#: Target of a fleet check that crashed before naming any target.
FLEET_TARGET = "(fleet)"


def select_checks(
    catalogue: Sequence[Check], include: Sequence[str] = (), skip: Sequence[str] = ()
) -> tuple[Check, ...]:
    """The checks to run: all, or only `include`, minus `skip`. Unknown ids are an input error."""
    known = {c.meta.id for c in catalogue}
    problems = []
    for option, ids in (("--check", include), ("--skip-check", skip)):
        for check_id in ids:
            if check_id not in known:
                near = difflib.get_close_matches(check_id, sorted(known), n=1)
                hint = f"; did you mean '{near[0]}'?" if near else "; see 'mfa-agent checks'"
                problems.append(
                    Problem("<arguments>", f"unknown check id '{check_id}'{hint}", key=option)
                )
    if problems:
        raise InputError(problems)
    chosen = [c for c in catalogue if not include or c.meta.id in include]
    left = tuple(c for c in chosen if c.meta.id not in skip)
    if catalogue and not left:
        raise InputError(
            Problem("<arguments>", "no check is left to run after --check and --skip-check")
        )
    return left


def applies(check: Check, host: HostFacts) -> bool:
    """Whether a host check applies to a host (by role)."""
    roles = check.meta.roles
    if ANY_ROLE in roles:
        return bool(host.roles)
    return any(role in host.roles for role in roles)


def _result(check_id: str, target: str, outcome: Outcome) -> Result:
    return Result(check_id, target, outcome.status, outcome.reason, outcome.evidence)


def _run_host_check(check: Check, host: HostFacts) -> Outcome:
    assert check.host_fn is not None
    if host.error is not None:
        return errored(f"host not scanned: {host.error.message}", host_error=host.error.kind)
    try:
        return check.host_fn(host)
    except FactUnavailable as exc:
        return errored(str(exc), fact=exc.fact)
    except FactShapeError as exc:
        return errored(str(exc), fact=exc.fact, path=exc.path)
    except Exception as exc:  # a bug in one check must not end the scan
        log.error("check %s crashed on %s", check.meta.id, host.name)
        log.debug("traceback", exc_info=True)
        return errored(f"internal error in check {check.meta.id}: {type(exc).__name__}")


def _run_fleet_check(check: Check, fleet: Fleet) -> list[Finding]:
    assert check.fleet_fn is not None
    try:
        return list(check.fleet_fn(fleet))
    except (FactUnavailable, FactShapeError) as exc:
        return [Finding(FLEET_TARGET, errored(str(exc)))]
    except Exception as exc:  # a bug in one check must not end the scan
        log.error("fleet check %s crashed", check.meta.id)
        log.debug("traceback", exc_info=True)
        return [
            Finding(
                FLEET_TARGET,
                errored(f"internal error in check {check.meta.id}: {type(exc).__name__}"),
            )
        ]


def host_results(checks: Iterable[Check], host: HostFacts) -> list[Result]:
    """The results of the host checks among `checks` that apply to `host`."""
    return _results(
        [check for check in checks if check.host_fn is not None and applies(check, host)], host)


def _results(applying: Iterable[Check], host: HostFacts) -> list[Result]:
    """The results of host checks already chosen for `host`."""
    return [_result(check.meta.id, host.name, _run_host_check(check, host)) for check in applying]


class HostResults:
    """Host checks evaluated as each host's facts arrive, for `evaluate` to take up.

    A live scan adds each host when it is read, so the checks of the hosts already read run
    while the others are still being read instead of all after the last one. A host's results
    are used only for that very `HostFacts` object: a host replaced afterwards (interrupted,
    timed out) is evaluated again by `evaluate`.
    """

    def __init__(self, checks: Iterable[Check]) -> None:
        self._checks = tuple(c for c in checks if c.host_fn is not None)
        self._by_name: dict[str, tuple[HostFacts, list[Result]]] = {}
        #: The checks that apply to each set of roles (a fleet has few).
        self._applying: dict[frozenset[str], tuple[Check, ...]] = {}

    def add(self, host: HostFacts) -> None:
        """Evaluate the host checks on `host` now."""
        applying = self._applying.get(host.roles)
        if applying is None:
            applying = self._applying[host.roles] = tuple(
                c for c in self._checks if applies(c, host))
        self._by_name[host.name] = (host, _results(applying, host))

    def of(self, host: HostFacts) -> list[Result] | None:
        """The results added for this `host` object, or None."""
        kept = self._by_name.get(host.name)
        return kept[1] if kept is not None and kept[0] is host else None


def evaluate(
    checks: Iterable[Check], fleet: Fleet, ready: HostResults | None = None
) -> tuple[Result, ...]:
    """Evaluate every check over the fleet; results ordered by target, then check id.

    `ready` holds host checks already evaluated on some of the fleet's hosts (a live scan's).
    """
    checks = tuple(checks)
    results: list[Result] = []
    for host in fleet.hosts:
        known = ready.of(host) if ready is not None else None
        results += known if known is not None else host_results(checks, host)
    for check in checks:
        if check.host_fn is None:
            for finding in _run_fleet_check(check, fleet):
                results.append(_result(check.meta.id, finding.target, finding.outcome))
    order = {h.name: i for i, h in enumerate(fleet.hosts)}
    tail = {DIRECTORY_TARGET: len(order), DEPLOYMENT_TARGET: len(order) + 1}

    def key(r: Result) -> tuple[int, str, str]:
        return (order.get(r.target, tail.get(r.target, len(order) + 2)), r.target, r.check_id)

    return tuple(sorted(results, key=key))
