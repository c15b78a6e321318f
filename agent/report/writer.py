"""Writing report files: atomically, one file per format, named after the format.

A new format is a renderer (a pure function `ScanReport -> str`) plus an entry in `RENDERERS`
and `FILENAMES`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

from agent.report.json_report import render_json
from agent.report.model import ScanReport

#: A reporter that renders to text: a pure function of the report.
Renderer = Callable[[ScanReport], str]


def _imported_on_first_use(module: str, name: str) -> Renderer:
    """The renderer `module.name`, its module imported when it first renders: the HTML, JUnit,
    Markdown and Prometheus renderers (and rich, prometheus_client and ElementTree with them)
    are a third of the start-up, and most runs write one format, or none."""
    def render(report: ScanReport) -> str:
        renderer: Renderer = getattr(importlib.import_module(module), name)
        return renderer(report)

    render.__name__ = render.__qualname__ = name
    render.__doc__ = f"`{module}.{name}`, imported on first use."
    return render


render_html = _imported_on_first_use("agent.report.html", "render_html")
render_junit = _imported_on_first_use("agent.report.junit", "render_junit")
render_markdown = _imported_on_first_use("agent.report.markdown", "render_markdown")
render_prometheus = _imported_on_first_use("agent.report.prometheus", "render_prometheus")

#: Format name -> renderer, for the formats that can be written to a file.
RENDERERS: Final[dict[str, Renderer]] = {
    "json": render_json,
    "junit": render_junit,
    "html": render_html,
    "markdown": render_markdown,
    "prometheus": render_prometheus,
}

#: Format name -> file name in the output directory.
FILENAMES: Final[dict[str, str]] = {
    "json": "mfa-agent-report.json",
    "junit": "mfa-agent-report.xml",
    "html": "mfa-agent-report.html",
    "markdown": "mfa-agent-report.md",
    # node_exporter's textfile collector reads *.prom files.
    "prometheus": "mfa-agent.prom",
}

#: Permission bits of a new file per format (default 0600). node_exporter runs as its own user
#: and must be able to read the metrics; they name checks and hosts, not evidence.
FILE_MODES: Final[dict[str, int]] = {"prometheus": 0o644}

#: The file formats, in the order they are documented.
FORMATS: Final[tuple[str, ...]] = ("json", "junit", "html", "markdown", "prometheus")


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Write `text` (UTF-8, newlines as given) to `path` so that readers see either the old file
    or the complete new one, never a partial write.

    The text goes to a temporary file in the same directory, which is flushed, fsynced and then
    renamed over `path` (`os.replace`). On any failure the temporary file is removed, `path` is
    left as it was, and the exception propagates. The parent directory is created if needed.

    A new file gets `mode`, by default readable by its owner only (0600): reports describe
    security weaknesses. A file that is replaced keeps its permission bits.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        except FileNotFoundError:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable where the platform allows it (not on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Output:
    """One file to write: where, how to render it (late, so one failure costs only itself), and
    the mode of a new file."""

    path: Path
    render: Callable[[], str]
    mode: int = 0o600


def report_outputs(report: ScanReport, formats: Sequence[str], out_dir: Path) -> list[Output]:
    """The report files for `formats` in `out_dir` (each format once, in the order given)."""
    unknown = [f for f in formats if f not in RENDERERS]
    if unknown:
        raise ValueError(
            f"unknown report format(s): {', '.join(unknown)}; known: {', '.join(FORMATS)}"
        )
    return [
        Output(
            Path(out_dir) / FILENAMES[name],
            partial(RENDERERS[name], report),
            FILE_MODES.get(name, 0o600),
        )
        for name in dict.fromkeys(formats)
    ]


def write_reports(report: ScanReport, formats: Sequence[str], out_dir: Path) -> list[Path]:
    """Write the report in each of `formats` to `out_dir`; return the paths written, in order.

    Unknown formats raise `ValueError` before anything is written. Every format is rendered
    before the first file is written, so a renderer failing leaves every existing file as it
    was. Repeated formats are written once.
    """
    outputs = report_outputs(report, formats, out_dir)
    rendered = [(output, output.render()) for output in outputs]
    for output, text in rendered:
        write_atomic(output.path, text, output.mode)
    return [output.path for output in outputs]
