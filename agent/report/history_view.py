"""The history as people and scripts read it: the list of past scans, and what changed.

`mfa-agent history` and `mfa-agent diff` render here; the history database (`agent.history`)
only stores and compares.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from agent.history import StoredScan
    from agent.report.model import Delta


def scan_document(scan: StoredScan) -> dict[str, object]:
    """One past scan as JSON-able data (``history --format json``, ``diff --format json``)."""
    return {
        "id": scan.id,
        "inventory": scan.inventory,
        "inventory_key": scan.inventory_key,
        "inventory_digest": scan.inventory_digest,
        "agent_version": scan.agent_version,
        "mode": scan.mode,
        "started_at": scan.started_at.isoformat(),
        "finished_at": scan.finished_at.isoformat(),
        "exit_code": scan.exit_code,
        "counts": scan.counts,
    }


def render_history(console: Console, scans: Sequence[StoredScan], path: Path) -> None:
    """The table of past scans, newest first (or a line saying there are none)."""
    if not scans:
        console.print(f"no scans recorded in {path}", markup=False)
        return
    table = Table(title=f"scans in {path}")
    for column in ("id", "started (UTC)", "mode", "inventory", "FAIL", "ERROR", "WAIVED", "exit"):
        table.add_column(column)
    for s in scans:
        table.add_row(
            str(s.id),
            s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            s.mode,
            s.inventory or s.inventory_key,
            str(s.counts.get("FAIL", 0)),
            str(s.counts.get("ERROR", 0)),
            str(s.counts.get("WAIVED", 0)),
            str(s.exit_code),
        )
    console.print(table)


def delta_json(old_scan: StoredScan, new_scan: StoredScan, delta: Delta) -> str:
    """``diff --format json``: both scans and the delta's document."""
    from agent.report.json_report import delta_document

    document = {
        "old": scan_document(old_scan),
        "new": scan_document(new_scan),
        **(delta_document(delta) or {}),
    }
    return json.dumps(document, indent=2)


def render_delta(
    console: Console, old_scan: StoredScan, new_scan: StoredScan, delta: Delta
) -> None:
    """What changed from `old_scan` to `new_scan`, group by group."""
    console.print(
        f"scan {old_scan.id} ({old_scan.started_at:%Y-%m-%d %H:%M:%S} UTC) → "
        f"scan {new_scan.id} ({new_scan.started_at:%Y-%m-%d %H:%M:%S} UTC)",
        markup=False,
    )
    console.print(f"inventory: {new_scan.inventory or new_scan.inventory_key}", markup=False)
    if new_scan.scope:
        console.print(f"scope: {new_scan.scope}", markup=False)
    if (old_scan.inventory_key, old_scan.scope) != (new_scan.inventory_key, new_scan.scope):
        console.print(
            "warning: the two scans are of different inventories or scopes "
            f"({old_scan.inventory or old_scan.inventory_key} {old_scan.scope}".rstrip()
            + ")",
            style="yellow",
            markup=False,
        )
    for title, items in (
        ("New failures", delta.new_failures),
        ("Fixed", delta.fixed),
        ("Still failing", delta.still_failing),
        ("New errors", delta.new_errors),
        ("Newly waived", delta.newly_waived),
    ):
        console.print(f"{title} ({len(items)})", style="bold", markup=False)
        for item in items:
            before = item.before.value if item.before else "absent"
            after = item.after.value if item.after else "absent"
            console.print(f"  {item.target}  {item.check_id}  {before} → {after}", markup=False)
    for title, hosts in (
        ("Hosts added", delta.hosts_added),
        ("Hosts removed", delta.hosts_removed),
    ):
        console.print(f"{title} ({len(hosts)})", style="bold", markup=False)
        for host in hosts:
            console.print(f"  {host}", markup=False)
