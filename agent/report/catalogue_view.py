"""Rendering of the check catalogue for `mfa-agent checks`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

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


#: Below this width a table of five columns reads badly: one block per check instead.
_TABLE_WIDTH = 140


def render_catalogue(catalogue: Sequence[Check], console: Console) -> None:
    """Every check: id, severity, roles, title and the guidance it enforces.

    A table on a wide terminal; one block per check otherwise (and when piped).
    """
    if console.width < _TABLE_WIDTH:
        console.print(Text(f"mfa-agent check catalogue ({len(catalogue)} checks)", "bold"))
        for c in catalogue:
            console.print()
            console.print(
                Text.assemble(
                    (c.meta.id, "bold"),
                    f"  {c.meta.severity}  ",
                    (", ".join(c.meta.roles) or "directory/deployment", "dim"),
                )
            )
            for line in (
                Text(c.meta.title),
                Text(f"“{c.meta.guidance.quote}”", "italic"),
                Text(f"— {c.meta.guidance.source}", "dim"),
            ):
                console.print(Padding(line, (0, 0, 0, 2), expand=False))
        return
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
