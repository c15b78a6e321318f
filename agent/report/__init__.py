"""Reporters: pure functions that render a `ScanReport` (terminal, JSON, JUnit XML, HTML,
Markdown, Prometheus text) and write report files atomically.

The report model (`ScanReport`, `HostSummary`) is built by the engine once a scan is over;
reporters never decide anything (exit code, counts, verdict and target order live on the model).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.report.html import render_html
    from agent.report.json_report import (
        SCHEMA_NAME,
        SCHEMA_VERSION,
        render_json,
        report_document,
        report_schema,
    )
    from agent.report.junit import render_junit
    from agent.report.markdown import render_markdown
    from agent.report.model import (
        EXIT_CODE_MEANINGS,
        EXPIRY_WARNING_DAYS,
        MODES,
        Compliance,
        Delta,
        DeltaItem,
        HostSummary,
        ScanReport,
        WaiverState,
    )
    from agent.report.terminal import render_terminal
    from agent.report.writer import (
        FILENAMES,
        FORMATS,
        RENDERERS,
        Renderer,
        render_prometheus,
        write_atomic,
        write_reports,
    )

#: Where each public name lives. Importing `agent.report.writer` (as every scan does) runs this
#: package first: the renderers' modules (rich, ElementTree, the HTML template) are imported
#: only when a name of theirs is asked for (PEP 562).
_HOMES: dict[str, str] = {
    "render_html": "html",
    "SCHEMA_NAME": "json_report",
    "SCHEMA_VERSION": "json_report",
    "render_json": "json_report",
    "report_document": "json_report",
    "report_schema": "json_report",
    "render_junit": "junit",
    "render_markdown": "markdown",
    **dict.fromkeys(("EXIT_CODE_MEANINGS", "EXPIRY_WARNING_DAYS", "MODES", "Compliance", "Delta",
                     "DeltaItem", "HostSummary", "ScanReport", "WaiverState"), "model"),
    "render_terminal": "terminal",
    **dict.fromkeys(("FILENAMES", "FORMATS", "RENDERERS", "Renderer", "render_prometheus",
                     "write_atomic", "write_reports"), "writer"),
}


if not TYPE_CHECKING:  # mypy then still checks every name imported from this package

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "EXIT_CODE_MEANINGS",
    "EXPIRY_WARNING_DAYS",
    "FILENAMES",
    "FORMATS",
    "MODES",
    "RENDERERS",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "Compliance",
    "Delta",
    "DeltaItem",
    "HostSummary",
    "Renderer",
    "ScanReport",
    "WaiverState",
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "render_prometheus",
    "render_terminal",
    "report_document",
    "report_schema",
    "write_atomic",
    "write_reports",
]
