"""Several fact scripts in ONE command line, and their results read back one per script.

The fast WinRM path (`agent.connectors.wsman`) runs every script a host needs with one Command.
The scripts together are longer than cmd.exe's 8,191-character line allows as ``-EncodedCommand``
(base64 of UTF-16LE: 8/3 characters per script character), so the line is::

    powershell -NoProfile -NonInteractive -Command "$MfaAgentBundle='1';…FromBase64String('<P>')…"

where ``<P>`` is the raw-deflate + base64 of the scripts (``name\\x01text``, joined by ``\\x00``):
about 4,100 characters for all four scripts. The bootstrap (PowerShell 3.0+, no ``::new``, only
single quotes so cmd.exe and PowerShell's argument parsing leave it alone) inflates the payload with
``New-Object IO.Compression.DeflateStream``, runs each script in its own scope
(``& ([scriptblock]::Create(...))``, so one script's variables and failures never touch another)
and prints one record line per script::

    #MFA-AGENT-RESULT <name> <exit 0|1> <base64 of stdout> <base64 of the error text>

A script that stops with an error gets exit 1 and its message, exactly what its own
``powershell -EncodedCommand`` would have reported; a read that fails inside ``Read-Fact`` is a
per-fact error as always. When the bootstrap itself cannot run (a ConstrainedLanguage policy, a
PowerShell too old, cmd.exe refusing the line) there are no records: the whole command's output
stands for every script (`split_results`), as it would have for each script run alone.
`decode_bundle` is the lab's side: the scripts inside such a command line.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

from agent.factscripts import MAX_COMMAND_LINE, FactScript

RECORD: Final = b"#MFA-AGENT-RESULT "
_PREFIX: Final = "powershell -NoProfile -NonInteractive -Command \""
_TAG: Final = "$MfaAgentBundle='1';"
_BOOTSTRAP: Final = (
    _TAG
    + "$u=New-Object Text.UTF8Encoding $false;"
    "$z=New-Object IO.Compression.DeflateStream((New-Object IO.MemoryStream(,"
    "[Convert]::FromBase64String('{payload}'))),[IO.Compression.CompressionMode]::Decompress);"
    "$t=(New-Object IO.StreamReader($z,$u)).ReadToEnd();"
    "foreach($x in $t.Split([char]0)){{$n,$b=$x.Split([char]1,2);$o='';$e='';$c=0;"
    "try{{$o=&([scriptblock]::Create($b))|Out-String}}catch{{$e=[string]$_;$c=1}};"
    "[Console]::Out.Write('#MFA-AGENT-RESULT '+$n+' '+$c+' '"
    "+[Convert]::ToBase64String($u.GetBytes($o))+' '+[Convert]::ToBase64String($u.GetBytes($e))"
    "+[char]10)}}"
)
_PAYLOAD: Final = re.compile(r"FromBase64String\('([A-Za-z0-9+/=]*)'\)")
#: Most script text a bundle may inflate to on the lab's side.
MAX_PAYLOAD_BYTES: Final = 1024 * 1024


@dataclass(frozen=True)
class Outcome:
    """One script's stdout, stderr and exit code, as if it had run alone."""

    stdout: bytes
    stderr: bytes
    exit_code: int


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


@cache
def command_line(scripts: tuple[FactScript, ...]) -> str:
    """The one command line that runs `scripts` (cached: the same for every host of a kind)."""
    text = "\x00".join(f"{s.name}\x01{s.text()}" for s in scripts)
    payload = base64.b64encode(_deflate(text.encode("utf-8"))).decode("ascii")
    return _PREFIX + _BOOTSTRAP.format(payload=payload) + '"'


def plan(scripts: Sequence[FactScript]) -> list[tuple[FactScript, ...]]:
    """`scripts` in as few bundles as fit cmd.exe's line limit (one for every host today)."""
    bundles: list[tuple[FactScript, ...]] = []
    current: tuple[FactScript, ...] = ()
    for script in scripts:
        candidate = (*current, script)
        if current and len(command_line(candidate)) > MAX_COMMAND_LINE:
            bundles.append(current)
            candidate = (script,)
        current = candidate
    if current:
        bundles.append(current)
    return bundles


def split_results(
    scripts: Sequence[FactScript], stdout: bytes, stderr: bytes, exit_code: int
) -> dict[str, Outcome]:
    """Each script's `Outcome` from the bundle's output (see the module docstring).

    Record lines are read strictly: a name not in `scripts`, a name twice, a non-integer exit
    code or invalid base64 makes that record count as missing. A script without a record gets
    the whole command's output when there are no records at all, else an exit 1 with the
    command's stderr (the bundle stopped before it).
    """
    names = {s.name for s in scripts}
    found: dict[str, Outcome] = {}
    for line in stdout.split(b"\n"):
        if not line.startswith(RECORD):
            continue
        fields = line[len(RECORD):].rstrip(b"\r").split(b" ")
        if len(fields) != 4:
            continue
        name = fields[0].decode("ascii", "replace")
        if name not in names or name in found or fields[1] not in (b"0", b"1"):
            continue
        try:
            out = base64.b64decode(fields[2], validate=True)
            err = base64.b64decode(fields[3], validate=True)
        except (binascii.Error, ValueError):
            continue
        found[name] = Outcome(out, err, int(fields[1]))
    if not found:
        whole = Outcome(stdout, stderr, exit_code)
        return {s.name: whole for s in scripts}
    stopped = Outcome(b"", stderr, exit_code or 1)
    return {s.name: found.get(s.name, stopped) for s in scripts}


def is_bundle(command_line: str) -> bool:
    """Whether a command line is a bundle (the lab's test)."""
    return _TAG in command_line


def decode_bundle(command_line: str) -> list[tuple[str, str]] | None:
    """The (name, script text) pairs inside a bundle command line, None if it is not one."""
    if not is_bundle(command_line):
        return None
    match = _PAYLOAD.search(command_line)
    if match is None:
        return None
    try:
        packed = base64.b64decode(match.group(1), validate=True)
        inflater = zlib.decompressobj(-15)
        data = inflater.decompress(packed, MAX_PAYLOAD_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            return None
        text = data.decode("utf-8")
    except (binascii.Error, ValueError, zlib.error, UnicodeDecodeError):
        return None
    pairs: list[tuple[str, str]] = []
    for part in text.split("\x00"):
        name, sep, body = part.partition("\x01")
        if not sep:
            return None
        pairs.append((name, body))
    return pairs


def result_line(name: str, outcome: Outcome) -> bytes:
    """The record line the bootstrap prints for one script (the lab prints the same)."""
    return (RECORD + name.encode("ascii") + b" " + str(outcome.exit_code).encode() + b" "
            + base64.b64encode(outcome.stdout) + b" " + base64.b64encode(outcome.stderr) + b"\n")
