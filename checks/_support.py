"""Small helpers shared by the check modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from agent.facts import FactShapeError, FactUnavailable, guarded
from agent.model import Outcome, passed

T = TypeVar("T")


def settle(read: Callable[[], T]) -> T | Outcome:
    """The value `read` returns, or the ERROR outcome `guarded` makes of a missing or bad fact.

    For fleet checks that must read something before they know their targets.
    """
    values: list[T] = []

    def run() -> Outcome:
        values.append(read())
        return passed("read")

    outcome = guarded(run)
    return values[0] if values else outcome


def readable(read: Callable[[], T]) -> T | None:
    """The value `read` returns, or None when a fact is missing or malformed.

    Only for evidence about *other* targets (e.g. which farm nodes have an adapter): a target's own
    facts are read inside `guarded` so that their absence is an ERROR for that target.
    """
    try:
        return read()
    except (FactUnavailable, FactShapeError):
        return None


def is_state(value: str | None, expected: str) -> bool:
    """Whether a PowerShell state string (service status, InstallState) is `expected`, any case."""
    return value is not None and value.strip().casefold() == expected.casefold()


def plural(count: int, noun: str) -> str:
    """``1 node``, ``2 nodes``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


#: How many names of *other* targets evidence lists before it only counts the rest.
MAX_NAMED: int = 10


def named(names: list[str]) -> list[str]:
    """At most `MAX_NAMED` names, then ``… and N more``: evidence about a whole farm must not
    grow with the square of its size."""
    if len(names) <= MAX_NAMED:
        return names
    return [*names[:MAX_NAMED], f"… and {len(names) - MAX_NAMED} more"]
