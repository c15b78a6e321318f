"""Rendering of the check catalogue for `mfa-agent checks`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from agent.registry import Check


def catalogue_document(catalogue: Sequence[Check]) -> list[dict[str, Any]]:
    """The catalogue as JSON-able data."""
    return [
        {
            "id": c.meta.id,
            "title": c.meta.title,
            "severity": str(c.meta.severity),
            "roles": list(c.meta.roles),
            "scope": c.meta.scope.value,
            "guidance": {
                "quote": c.meta.guidance.quote,
                "source": c.meta.guidance.source,
                "notes": c.meta.guidance.notes,
            },
            "remediation": c.meta.remediation,
            "references": list(c.meta.references),
        }
        for c in catalogue
    ]


def render_catalogue(catalogue: Sequence[Check], console: Console) -> None:
    """A table of every check: id, severity, roles, title and the guidance it enforces."""
    table = Table(title=f"mfa-agent check catalogue ({len(catalogue)} checks)", show_lines=True)
    table.add_column("id", no_wrap=True)
    table.add_column("severity")
    table.add_column("roles")
    table.add_column("title")
    table.add_column("guidance enforced")
    for c in catalogue:
        table.add_row(
            c.meta.id,
            str(c.meta.severity),
            ", ".join(c.meta.roles),
            c.meta.title,
            f"“{c.meta.guidance.quote}” — {c.meta.guidance.source}",
        )
    console.print(table)
