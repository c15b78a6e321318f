"""The layers stay apart: reading an inventory never imports connector or transport code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("labfixtures")  # before importing it: its helpers assert
from labfixtures import LabProcess, clean_environment  # noqa: E402

pytest_plugins = ("labfixtures",)

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ("winrm", "requests", "paramiko", "ldap3", "spnego", "agent.connectors")


def _imported_by(code: str, env: dict[str, str] | None = None,
                 prefixes: tuple[str, ...] = TRANSPORTS) -> list[str]:
    probe = (
        f"{code}\nimport sys\n"
        f"print('\\n'.join(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
        env=env,
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


@pytest.mark.needs_server
def test_a_scan_on_the_fast_path_loads_no_other_client_library(builtin_lab: LabProcess) -> None:
    """pywinrm, requests, paramiko and ldap3 cost a third of the start-up: a scan whose hosts all
    take the fast WinRM path, without a directory, never imports them."""
    code = (
        "import contextlib, io\n"
        "from agent.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main(['scan', '-i', {str(builtin_lab.inventory)!r}, '--limit', 'adfs01.lab.example',"
        " '--no-history', '--format', 'json'])\n"
        "import agent.connectors.wsman.session\n"  # it did take the fast path
    )
    imported = _imported_by(code, env=clean_environment(builtin_lab.password))
    assert "agent.connectors.wsman.session" in imported
    others = ("winrm", "requests", "paramiko", "ldap3", "agent.connectors.winrm.")
    assert [m for m in imported if m.startswith(others) or m == "agent.connectors.winrm"] == []


@pytest.mark.needs_server
def test_a_json_scan_imports_no_other_renderer(builtin_lab: LabProcess) -> None:
    """rich, the HTML, JUnit, Markdown and Prometheus renderers are a tenth of the start-up: a
    scan that prints JSON imports none of them (the terminal report does import rich)."""
    renderers = ("rich", "prometheus_client", "agent.report.")
    scan = (
        "import contextlib, io\n"
        "from agent.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main(['scan', '-i', {str(builtin_lab.inventory)!r}, '--limit', 'adfs01.lab.example',"
        " '--no-history', '--format', '{format}'])\n"
    )
    env = clean_environment(builtin_lab.password)
    imported = _imported_by(scan.format(format="json"), env=env, prefixes=renderers)
    assert "agent.report.json_report" in imported
    assert sorted(m for m in imported if not m.startswith(("agent.report.json_report",
                                                           "agent.report.writer",
                                                           "agent.report.model",
                                                           "agent.report._text"))) == []
    both = _imported_by(scan.format(format="json") + "from agent.report import render_html\n",
                        env=env, prefixes=renderers)
    assert "agent.report.html" in both  # the package still hands out every renderer


def test_the_report_package_still_hands_out_every_public_name() -> None:
    """Its names are imported on first use: each still resolves, and ``dir`` lists them."""
    names = _imported_by(
        "import sys\nimport agent.report\n"
        "missing = [n for n in agent.report.__all__ if n not in dir(agent.report)]\n"
        "assert not missing, missing\n"
        "assert 'agent.report.html' not in sys.modules\n"
        "values = [getattr(agent.report, n) for n in agent.report.__all__]\n",
        prefixes=("agent.report.",))
    assert {"agent.report.html", "agent.report.terminal", "agent.report.junit"} <= set(names)
