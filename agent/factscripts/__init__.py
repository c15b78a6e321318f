"""The PowerShell fact scripts, shipped as package data, and how they travel to a host.

Each script reads the facts one group of roles needs and prints one JSON document mapping fact
name to ``{"value": ...}`` or ``{"error": "..."}`` (shapes in `agent.facts`). A script is the
shared prelude, its own body and the epilogue, with comment lines and indentation removed so that
``powershell -EncodedCommand`` (base64 of UTF-16LE) stays under cmd.exe's 8,191-character line —
about 3,000 script characters. The first statement names the script (``$MfaAgentScript``), which
is how the lab simulator recognises it. Inventory text is never placed in a script.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from agent.roles import AAD_CONNECT, ADFS, ANY_ROLE, USER_PORTAL

#: cmd.exe's maximum command-line length; pywinrm's run_cmd goes through it.
MAX_COMMAND_LINE = 8191
_TAG = re.compile(r"^\$MfaAgentScript = '([a-z]+)/(\d+)'$", re.MULTILINE)
_POWERSHELL = "powershell -NoProfile -NonInteractive -EncodedCommand "
SCRIPT_VERSION = 1


@dataclass(frozen=True)
class FactScript:
    """One fact script: which facts it emits and which roles need it."""

    name: str
    facts: tuple[str, ...]
    roles: tuple[str, ...]

    def text(self) -> str:
        """The script as sent: tag, prelude, body and epilogue, minified."""
        return _assemble(self.name)

    def command_line(self) -> str:
        """The command line that runs it (what pywinrm's `run_command` sends)."""
        return encode_command(self.text())


SCRIPTS: tuple[FactScript, ...] = (
    FactScript("base", ("os", "mfa_server", "ip_addresses", "clock"), (ANY_ROLE,)),
    FactScript("adfs", ("adfs", "adfs_providers"), (ADFS,)),
    FactScript("portal", ("iis", "aspnet_v2"), (USER_PORTAL,)),
    FactScript("adsync", ("adsync",), (AAD_CONNECT,)),
)


def scripts_for(roles: frozenset[str]) -> tuple[FactScript, ...]:
    """The scripts a host with these roles runs (none for a host without a role)."""
    if not roles:
        return ()
    return tuple(s for s in SCRIPTS if ANY_ROLE in s.roles or roles.intersection(s.roles))


def by_name(name: str) -> FactScript | None:
    """The script of that name, if any."""
    return next((s for s in SCRIPTS if s.name == name), None)


def _minify(source: str) -> str:
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("#"))


@cache
def _assemble(name: str) -> str:
    files = resources.files(__name__)
    parts = [
        f"$MfaAgentScript = '{name}/{SCRIPT_VERSION}'",
        _minify(files.joinpath("_prelude.ps1").read_text(encoding="utf-8")),
        _minify(files.joinpath(f"{name}.ps1").read_text(encoding="utf-8")),
        _minify(files.joinpath("_epilogue.ps1").read_text(encoding="utf-8")),
    ]
    return "\n".join(parts)


def encode_command(script: str) -> str:
    """``powershell … -EncodedCommand <base64 of UTF-16LE>``, as pywinrm's run_ps builds it."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return _POWERSHELL + encoded


def decode_command(command_line: str) -> str | None:
    """The script inside an ``-EncodedCommand`` command line, or None if it is not one."""
    parts = command_line.split()
    for i, part in enumerate(parts[:-1]):
        if part.lower() in {"-encodedcommand", "-enc", "-e", "-ec"}:
            try:
                return base64.b64decode(parts[i + 1], validate=True).decode("utf-16-le")
            except (ValueError, UnicodeDecodeError):
                return None
    return None


def script_tag(script: str) -> tuple[str, int] | None:
    """The (name, version) a script declares in its first statement, if any."""
    match = _TAG.search(script)
    return (match.group(1), int(match.group(2))) if match else None
