"""What the Windows connectors (WinRM, SSH) share: time bounds and reading a fact script's result.

Both run the same `agent.factscripts` command line and get back stdout, stderr and an exit code;
turning those into fact entries, or into one script's failure, happens here once.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent import strictjson
from agent.connectors.errors import ConnectorError, ErrorKind, deadline_passed
from agent.factscripts import FactScript

#: The ``-EncodedCommand`` limit as cmd.exe reports it.
_TOO_LONG = "The command line is too long"
#: Failures of one script (its facts become errors) rather than of the whole host.
SCRIPT_FAILURES = frozenset(
    {ErrorKind.POWERSHELL_ERROR, ErrorKind.UNREADABLE_OUTPUT, ErrorKind.COMMAND_LINE_TOO_LONG}
)


#: Largest HTTP reply read from a WinRM host, by either WinRM client. pywinrm asks for envelopes
#: of at most 150 KiB (MaxEnvelopeSize 153600), the fast client for 500 KiB, Windows' own ceiling;
#: anything past this is hostile.
MAX_REPLY_BYTES = 4 * 1024 * 1024

#: Most output one fact script may print (it prints a few KiB): a host streaming more is not
#: answering the script, and must not exhaust the agent's memory.
MAX_OUTPUT_BYTES = 16 * 1024 * 1024


def too_much_output(where: str, script: FactScript) -> ConnectorError:
    """The error for a script whose output passed `MAX_OUTPUT_BYTES`."""
    return ConnectorError(
        ErrorKind.UNREADABLE_OUTPUT,
        f"unreadable output from {where}: the {script.name} script printed more than "
        f"{MAX_OUTPUT_BYTES // (1024 * 1024)} MiB",
    )


@dataclass(frozen=True)
class Timeouts:
    """Every wait has a bound: connecting, one remote operation, and the whole host."""

    connect: float = 10.0
    operation: int = 20
    host: float = 120.0


def clixml_text(stderr: str) -> str:
    """The error records of PowerShell's CLIXML stderr as plain text (else the text itself)."""
    if not stderr.startswith("#< CLIXML"):
        return stderr.strip()
    body = stderr.split("\n", 1)[1] if "\n" in stderr else ""
    try:
        # pywinrm parses the same replies with ElementTree; expat ≥ 2.4 bounds entity expansion.
        root = ET.fromstring(body)  # noqa: S314
    except ET.ParseError:
        return stderr.strip()
    parts = [
        (el.text or "")
        for el in root.iter()
        if el.tag.endswith("}S") and el.attrib.get("S") == "Error"
    ]
    text = "".join(parts).replace("_x000D_", "").replace("_x000A_", " ")
    return " ".join(text.split())


def parse_script_output(script: FactScript, stdout: bytes, *, where: str) -> dict[str, Any]:
    """The fact entries a script printed, each checked; facts it left out become errors."""
    try:
        document = strictjson.loads(stdout.decode("utf-8-sig"))
    except (UnicodeDecodeError, strictjson.StrictJsonError) as exc:
        # Strict: NaN/Infinity, a huge integer or deep nesting is unreadable output too.
        why = exc.message if isinstance(exc, strictjson.StrictJsonError) else "not UTF-8"
        raise ConnectorError(
            ErrorKind.UNREADABLE_OUTPUT,
            f"unreadable output from {where}: the {script.name} script did not print JSON "
            f"({why}; {len(stdout)} bytes)",
        ) from None
    if not isinstance(document, dict):
        raise ConnectorError(
            ErrorKind.UNREADABLE_OUTPUT,
            f"unreadable output from {where}: the {script.name} script printed a JSON "
            f"{type(document).__name__}, not an object",
        )
    unsupported = document.get("_unsupported")
    entries: dict[str, Any] = {}
    for fact in script.facts:
        entry = document.get(fact)
        if isinstance(unsupported, str):
            entries[fact] = {"error": unsupported}
        elif _is_entry(entry):
            entries[fact] = entry
        elif entry is None:
            entries[fact] = {"error": f"the {script.name} script did not report this fact"}
        else:
            entries[fact] = {"error": f"the {script.name} script reported it in an unreadable form"}
    return entries


def _is_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    return set(entry) == {"value"} or (set(entry) == {"error"} and isinstance(entry["error"], str))


def stamp_clock(entries: dict[str, Any], read_at: datetime) -> None:
    """Add the agent's own time, estimated for when the host read its clock, to the clock fact."""
    clock = entries.get("clock")
    if isinstance(clock, dict) and isinstance(clock.get("value"), dict):
        clock["value"] = {**clock["value"], "agent_utc": read_at.isoformat()}


def script_entries(
    script: FactScript, where: str, stdout: bytes, stderr: bytes, code: int, read_at: datetime
) -> dict[str, Any]:
    """The fact entries of one script run, or the `ConnectorError` of a failed script."""
    if code != 0:
        text = clixml_text(stderr.decode("utf-8", "replace"))
        if _TOO_LONG in text:  # cmd.exe refused the line (WinRM, and SSH's default shell)
            raise ConnectorError(
                ErrorKind.COMMAND_LINE_TOO_LONG,
                f"{where} refused the {script.name} script: the command line is too long",
            )
        raise ConnectorError(
            ErrorKind.POWERSHELL_ERROR,
            f"PowerShell error on {where} in the {script.name} script (exit {code}): "
            f"{text[:300] or 'no message'}",
        )
    entries = parse_script_output(script, stdout, where=where)
    stamp_clock(entries, read_at)
    return entries


def run_scripts(
    scripts: Sequence[FactScript],
    run: Callable[[FactScript], Mapping[str, Any]],
    *,
    where: str,
    deadline: float,
    host_seconds: float,
) -> dict[str, Any]:
    """Run each script in turn until the host deadline; a failed script costs its facts only."""
    facts: dict[str, Any] = {}
    for script in scripts:
        if time.monotonic() > deadline:
            raise deadline_passed(where, host_seconds)
        try:
            facts.update(run(script))
        except ConnectorError as exc:
            if exc.kind not in SCRIPT_FAILURES:
                raise
            facts.update({fact: {"error": exc.message} for fact in script.facts})
    return facts
