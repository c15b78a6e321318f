"""The project's own errors, and the exit codes they map to.

Library exceptions are translated into these at each boundary (loaders, connectors), so the
command line never shows a traceback for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in README and `--help`."""

    OK = 0  #: no FAIL and no ERROR
    FAIL = 1  #: at least one FAIL
    ERROR = 2  #: no FAIL, but at least one ERROR
    INVALID_INPUT = 3  #: invalid inventory, arguments or facts file; nothing scanned
    INTERNAL = 4  #: a bug
    INTERRUPTED = 130  #: stopped by the user (Ctrl-C); what was gathered is still reported


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located as precisely as we can."""

    file: str
    message: str
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""

    exit_code: ExitCode = ExitCode.INVALID_INPUT


class InputError(AgentError):
    """Invalid user input (inventory, facts file, arguments). Exit code 3, nothing scanned."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(file="<input>", message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = problems
        super().__init__("\n".join(str(p) for p in problems))


class InventoryError(InputError):
    """The inventory (or its group_vars/host_vars) is malformed."""


class FactsFileError(InputError):
    """A facts file cannot be read or does not follow the documented format."""
