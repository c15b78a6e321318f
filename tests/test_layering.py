"""The layers stay apart: reading an inventory never imports connector or transport code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ("winrm", "requests", "paramiko", "ldap3", "spnego", "agent.connectors")


def _imported_by(code: str) -> list[str]:
    probe = (
        f"{code}\nimport sys\n"
        f"print('\\n'.join(m for m in sys.modules if m.startswith({TRANSPORTS!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_the_inventory_package_imports_no_transport() -> None:
    assert _imported_by("import agent.inventory, agent.report.inventory_view") == []


def test_the_inventory_command_imports_no_transport() -> None:
    code = (
        "import contextlib, io\n"
        "from agent.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['inventory', '-i', 'inventory/example.yaml'])\n"
    )
    assert _imported_by(code) == []


def test_the_error_table_imports_no_connector_library() -> None:
    """The shared error kinds and table (`agent.connectors.errors`) import only the standard
    library: each connector's own table brings its library."""
    imported = _imported_by("import agent.connectors.errors")
    assert [m for m in imported if not m.startswith("agent.connectors")] == []
