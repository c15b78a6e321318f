"""Rendering of a resolved inventory for `mfa-agent inventory` (secrets always masked)."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.inventory import Host, Inventory, Secret
from agent.inventory.loader import VAULT_MASK


def _plain(value: Any) -> Any:
    """JSON-able form of a settings value; secrets become their masked description."""
    if isinstance(value, Secret):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple, frozenset, set)):
        items = [_plain(v) for v in value]
        return sorted(items) if isinstance(value, (frozenset, set)) else items
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _user(host: Host) -> str:
    """The user name as shown: masked when it came from a vault."""
    if isinstance(host.vars.get("ansible_user"), str) and host.vars["ansible_user"] == VAULT_MASK:
        return VAULT_MASK
    return host.connection.user or ""


def _yaml(value: Any) -> str:
    """Settings as the YAML they were written in, indented under their heading."""
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=96)
    return "\n".join(f"  {line}" for line in text.rstrip().splitlines())


def inventory_document(inventory: Inventory) -> dict[str, Any]:
    """The resolved inventory as JSON-able data, secrets masked."""
    return {
        "path": str(inventory.path),
        "digest": inventory.digest,
        "hosts": [
            {
                "name": h.name,
                "address": h.address,
                "roles": sorted(h.roles),
                "groups": sorted(h.groups),
                "connection": {**_plain(h.connection), "user": _user(h) or None},
                "trust_notes": list(h.connection.trust_notes()),
                "networks": {
                    "perimeter": [str(n) for n in h.declared.perimeter],
                    "internal": [str(n) for n in h.declared.internal],
                },
                "defined_at": f"{h.location.file}:{h.location.line}",
            }
            for h in inventory.hosts
        ],
        "directory": _plain(inventory.directory),
        "deployment": _plain(inventory.deployment),
        "phonefactor_admins_allowed": _plain(inventory.phonefactor_admins_allowed),
        "role_groups": {role: list(groups) for role, groups in inventory.role_groups.items()},
        "hosts_without_role": [h.name for h in inventory.hosts if not h.roles],
        "warnings": list(inventory.warnings),
        "missing_secrets": [str(p) for p in inventory.missing_secrets()],
    }


def render_inventory(inventory: Inventory, console: Console) -> None:
    """Hosts with roles and connection settings, then directory, deployment and warnings."""
    sources = ", ".join(str(p) for p in inventory.sources) or str(inventory.path)
    table = Table(title=Text(f"{sources} — {len(inventory.hosts)} hosts"))
    for column in ("host", "address", "roles", "connection", "user", "password", "notes"):
        table.add_column(column)
    for h in inventory.hosts:
        c = h.connection
        cells = (
            h.name,
            h.address,
            ", ".join(sorted(h.roles)) or "(no role)",
            c.describe(),
            _user(h),
            str(c.password) if c.password is not None else "",
            "; ".join(c.trust_notes()),
        )
        # Text, not markup: a user name like DOMAIN\[x] must show as written.
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table)
    if inventory.directory is not None:
        console.print(Text("Directory", "bold"))
        settings = _plain(inventory.directory)
        settings.pop("location", None)  # where it is written; the JSON view keeps it
        console.print(_yaml(settings), markup=False, highlight=False)
    else:
        console.print("Directory: not configured (mfa_directory); directory checks will be MANUAL")
    if inventory.deployment:
        console.print(Text("Deployment (declared)", "bold"))
        console.print(_yaml(_plain(inventory.deployment)), markup=False, highlight=False)
    if inventory.phonefactor_admins_allowed is not None:
        allowed = ", ".join(inventory.phonefactor_admins_allowed)
        console.print(f"PhoneFactor Admins allow-list: {allowed}", markup=False)
    for warning in inventory.warnings:
        console.print(Text.assemble(("warning: ", "yellow"), warning))
    without = [h.name for h in inventory.hosts if not h.roles]
    if without:
        more = f", … ({len(without)} in all)" if len(without) > 20 else ""
        shown = ", ".join(without[:20]) + more
        console.print(
            Text.assemble(
                ("warning: ", "yellow"),
                f"{len(without)} of {len(inventory.hosts)} hosts have no MFA role and will not "
                f"be checked ({shown}). {inventory.roles_help()}",
            )
        )
