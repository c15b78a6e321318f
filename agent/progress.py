"""Progress of a live scan on a terminal: hosts done of total, failures so far.

Shown on stderr only when it is a terminal; nothing at all is printed otherwise (cron, CI, pipes).
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from agent.facts import HostFacts

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class ScanProgress:
    """A context manager whose `start`/`host_done` callbacks drive a progress bar, if any."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._lock = threading.Lock()
        self._failures = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ScanProgress:
        if self.enabled:
            # rich is imported only when there is a bar to show (not under cron, CI or a pipe).
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("scanning"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("hosts · {task.fields[failures]} unreachable · {task.fields[last]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, total: int) -> None:
        """The scan is about to read `total` hosts."""
        if self._progress is not None:
            self._task = self._progress.add_task("scan", total=total, failures=0, last="")

    def host_done(self, host: HostFacts) -> None:
        """One host finished (read, or failed)."""
        with self._lock:
            if host.error is not None:
                self._failures += 1
            if self._progress is not None and self._task is not None:
                self._progress.update(
                    self._task,
                    advance=1,
                    failures=self._failures,
                    last=host.name,
                )
