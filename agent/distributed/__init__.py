"""Scans across network zones: hosts read by Celery workers, one report on the coordinator.

A host's zone is its ``mfa_zone`` inventory variable (default ``default``); each zone is a Celery
queue on a Redis broker. ``mfa-agent worker --zone Z`` consumes zone Z's queue; ``mfa-agent scan
--broker URL`` sends one task per host to its zone's queue, gathers the facts the workers return
and evaluates, reports and records exactly as a local scan does.

Modules: `payload` (what a task carries and returns: plain JSON, never a secret), `app` (the
Celery application and its hardened settings), `worker` (the task and ``mfa-agent worker``),
`dispatch` (the coordinator's gather step and its fault handling).

Celery is an optional extra (``pip install 'mfa-agent[celery]'``): nothing here imports it until a
broker is actually used, so the embedded single-process scan needs no broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from agent.inventory import Inventory

#: The zone of a host without ``mfa_zone``.
DEFAULT_ZONE: Final = "default"
#: Variable naming a host's zone.
ZONE_VARIABLE: Final = "mfa_zone"


def zones_note(inventory: Inventory) -> str | None:
    """For a scan without a broker: the zones the inventory names, noted as not enforced."""
    zones = sorted(
        {str(h.vars.get(ZONE_VARIABLE)) for h in inventory.hosts if ZONE_VARIABLE in h.vars}
        - {DEFAULT_ZONE}
    )
    if not zones:
        return None
    return (
        f"zones ({ZONE_VARIABLE}: {', '.join(zones)}) are not enforced without --broker: "
        "every host was read from this machine"
    )
