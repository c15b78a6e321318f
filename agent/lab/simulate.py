"""What a simulated host prints when the agent runs a command on it.

Only the agent's own fact scripts are understood: the command line is decoded with
`agent.factscripts.decode_command`, the script is recognised by its tag (`script_tag`), and the
answer is the JSON document the script would print, built from the host profile: for each fact of
the script (`by_name(name).facts`) ``{"value": ...}`` from ``facts``, ``{"error": ...}`` from
``fact_errors`` or, when the profile has neither, a "not found" error; ``clock`` is computed as
now + ``clock_skew_seconds``. Anything else fails the way Windows would: cmd.exe's line-length and
"is not recognized" messages, or PowerShell's CLIXML error records on stderr with exit code 1.

Output is encoded as Windows would: UTF-8 when the script sets ``[Console]::OutputEncoding`` to
UTF-8 (`UTF8_OUTPUT`, in the shared prelude), else the console's OEM code page (437 on an en-US
host), where a character it lacks becomes ``?``. ConvertTo-Json leaves non-ASCII characters as
they are, and so does the simulator.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Final

from agent.factscripts import bundle, by_name, decode_command, script_tag
from agent.lab.profiles import HostProfile

CLIXML_HEADER: Final = b"#< CLIXML\r\n"
POWERSHELL_NS: Final = "http://schemas.microsoft.com/powershell/2004/04"
TOO_LONG: Final = b"The command line is too long.\r\n"
_POWERSHELL_EXES: Final = frozenset({"powershell", "powershell.exe", "pwsh", "pwsh.exe"})
#: The statement by which a script makes PowerShell write UTF-8 (agent/factscripts/_prelude.ps1).
UTF8_OUTPUT: Final = "[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false"
#: The OEM code page of an en-US Windows console, what stdout is without `UTF8_OUTPUT`.
OEM_CODE_PAGE: Final = "cp437"

#: What the ``powershell_error`` fault reports by default: the script is blocked outright, as
#: under an AppLocker/WDAC policy that forces ConstrainedLanguage mode.
DEFAULT_POWERSHELL_ERROR: Final = (
    "Cannot invoke method. Method invocation is supported only on core types in this language "
    "mode."
)


@dataclass(frozen=True)
class CommandResult:
    """A finished command: its output streams and exit code."""

    stdout: bytes
    stderr: bytes
    exit_code: int


def utc_o_format(moment: dt.datetime) -> str:
    """.NET's round-trip ``ToString('o')`` of a UTC time: 7 fractional digits and ``Z``."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def clixml_error(lines: list[str]) -> bytes:
    """PowerShell's CLIXML serialisation of error records, as it writes them to stderr."""
    objs = ET.Element("Objs", {"Version": "1.1.0.1", "xmlns": POWERSHELL_NS})
    for line in lines:
        ET.SubElement(objs, "S", {"S": "Error"}).text = line + "_x000D__x000A_"
    return CLIXML_HEADER + ET.tostring(objs, encoding="unicode").encode("utf-8")


def _error_record(message: str, statement: str, category: str, error_id: str) -> list[str]:
    return [
        *message.splitlines(),
        "At line:1 char:1",
        f"+ {statement}",
        "+ " + "~" * max(1, len(statement)),
        f"    + CategoryInfo          : {category}",
        f"    + FullyQualifiedErrorId : {error_id}",
        " ",
    ]


def not_recognized(term: str) -> CommandResult:
    """PowerShell's error for a command it does not know."""
    message = (
        f"{term} : The term '{term}' is not recognized as the name of a cmdlet, function, script "
        "file, or operable program. Check the spelling of the name, or if a path was included, "
        "verify that the path is correct and try again."
    )
    lines = _error_record(message, term, f"ObjectNotFound: ({term}:String) [], "
                          "CommandNotFoundException", "CommandNotFoundException")
    return CommandResult(b"", clixml_error(lines), 1)


def _first_term(text: str) -> str:
    for line in text.splitlines():
        words = line.split()
        if words and not words[0].startswith(("$", "#")):
            return words[0]
    return text.split()[0] if text.split() else "(empty)"


def _powershell_failure(profile: HostProfile) -> CommandResult:
    setting = profile.faults.powershell_error
    if isinstance(setting, str):
        lines = _error_record(setting, "$r = @{}", "NotSpecified: (:) [], RuntimeException",
                              "RuntimeException")
    else:
        lines = _error_record(
            DEFAULT_POWERSHELL_ERROR,
            "$r | ConvertTo-Json -Depth 8 -Compress",
            "InvalidOperation: (:) [], RuntimeException",
            "MethodInvocationNotSupportedInConstrainedLanguage",
        )
    return CommandResult(b"", clixml_error(lines), 1)


def fact_entries(profile: HostProfile, facts: tuple[str, ...], now: dt.datetime) -> dict[str, Any]:
    """The ``{fact: {"value": ...} | {"error": ...}}`` document a script prints on this host."""
    result: dict[str, Any] = {}
    for fact in facts:
        if fact in profile.fact_errors:
            result[fact] = {"error": profile.fact_errors[fact]}
        elif fact == "clock":
            host_time = now + dt.timedelta(seconds=profile.clock_skew_seconds)
            result[fact] = {"value": {"host_utc": utc_o_format(host_time)}}
        elif fact in profile.facts:
            result[fact] = {"value": profile.facts[fact]}
        else:
            result[fact] = {"error": f"Cannot read '{fact}': not found on this host "
                                     f"(the lab profile of {profile.name} has no value for it)"}
    return result


def _garbage(entries: dict[str, Any]) -> bytes:
    # What the hashtable prints when ConvertTo-Json is missing: Format-Table, not JSON.
    rows = ["", "Name                           Value", "----                           -----"]
    rows += [f"{name:<30} {{{', '.join(entry)}}}" for name, entry in entries.items()]
    return ("\r\n".join([*rows, "", ""])).encode("utf-8")


#: ``ConvertTo-Json -Compress`` as the lab writes it (``json.dumps`` with these settings builds
#: a new encoder on every call).
_COMPACT_JSON: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

#: The longest command line a program started by PowerShell may get (CreateProcess's limit).
PROCESS_COMMAND_LINE_LIMIT: Final = 32767


def run_command_line(
    profile: HostProfile, command_line: str, now: dt.datetime | None = None,
    *, limit: int | None = None,
) -> CommandResult:
    """Run one command line on the simulated host.

    `limit` is the line's length limit: cmd.exe's (the profile's ``max_command_line``) for what
    WinRM runs; a ``powershell -EncodedCommand`` whose script is itself a ``powershell …`` line
    (Ansible's ``raw`` wraps the agent's line that way) runs the inner line as PowerShell would,
    through CreateProcess. A fact-script bundle (`agent.factscripts.bundle`) runs each script in
    turn and prints its records.
    """
    now = now or dt.datetime.now(dt.UTC)
    if len(command_line) > (profile.faults.max_command_line if limit is None else limit):
        return CommandResult(b"", TOO_LONG, 1)
    first = command_line.split(None, 1)  # the whole line is split only when it is refused
    if not first:
        return CommandResult(b"", b"", 0)
    program = first[0].strip('"').replace("/", "\\").rsplit("\\", 1)[-1].lower()
    if program not in _POWERSHELL_EXES:
        message = (f"'{first[0]}' is not recognized as an internal or external command,\r\n"
                   "operable program or batch file.\r\n")
        return CommandResult(b"", message.encode("utf-8"), 1)
    if bundle.is_bundle(command_line):
        return _run_bundle(profile, command_line, now)
    script = decode_command(command_line)
    if script is None:
        words = command_line.split()
        arguments = [w for w in words[1:] if not w.startswith("-")]
        return not_recognized(arguments[0] if arguments else words[0])
    inner = script.strip()
    if inner.split(" ", 1)[0].lower() in _POWERSHELL_EXES and limit is None:
        return run_command_line(profile, inner, now, limit=PROCESS_COMMAND_LINE_LIMIT)
    return _run_script(profile, script, now)


def _run_script(profile: HostProfile, script: str, now: dt.datetime) -> CommandResult:
    tag = script_tag(script)
    fact_script = by_name(tag[0]) if tag else None
    if fact_script is None:
        return not_recognized(_first_term(script))
    if profile.faults.powershell_error:
        return _powershell_failure(profile)
    entries = fact_entries(profile, fact_script.facts, now)
    if profile.faults.garbage_output:
        return CommandResult(_garbage(entries), b"", 0)
    document = _COMPACT_JSON.encode(entries) + "\r\n"
    if UTF8_OUTPUT in script:
        return CommandResult(document.encode("utf-8"), b"", 0)
    return CommandResult(document.encode(OEM_CODE_PAGE, "replace"), b"", 0)


@functools.lru_cache(maxsize=32)
def _bundle_scripts(command_line: str) -> tuple[tuple[str, str], ...] | None:
    """`bundle.decode_bundle`, once per distinct line: every host of a kind is sent the same."""
    pairs = bundle.decode_bundle(command_line)
    return None if pairs is None else tuple(pairs)


def _run_bundle(profile: HostProfile, command_line: str, now: dt.datetime) -> CommandResult:
    if profile.faults.powershell_error:
        return _powershell_failure(profile)  # the bootstrap itself is blocked
    pairs = _bundle_scripts(command_line)
    if pairs is None:
        return not_recognized("$MfaAgentBundle")
    records = []
    for name, text in pairs:
        result = _run_script(profile, text, now)
        records.append(bundle.result_line(name, bundle.Outcome(
            result.stdout, result.stderr, result.exit_code)))
    return CommandResult(b"".join(records), b"", 0)
