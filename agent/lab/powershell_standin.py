#!/usr/bin/env python3
"""A ``powershell`` program for SSH tests: answers the agent's fact scripts from a host profile.

The SSH connector runs ``powershell -NoProfile -NonInteractive -EncodedCommand <base64>`` on the
host; an OpenSSH server hands that line to the user's shell, which runs the first program named
``powershell`` on the session's PATH with the rest as arguments. Installed there under that name
(the SSH test fixtures write a launcher), this module rebuilds the command line and answers it
through `agent.lab.simulate.run_command_line` — the very function the WS-Management lab answers
with — so one profile gives the same stdout, stderr and exit code over WinRM and over SSH.

The profile is the file named by the environment variable ``MFA_LAB_PROFILE`` (an sshd sets it
per instance with ``SetEnv MFA_LAB_PROFILE=/path/profile.yaml``), or else the file named on the
first line of ``~/.mfa-lab-profile``. Faults, as in the WS-Management lab:

* ``slow_seconds``: the answer is computed at once and written that many seconds later;
* ``hang``: no answer at all;
* ``split_output_bytes``: stdout is written (and flushed) in pieces of at most that size;
* ``powershell_error``, ``garbage_output``, ``max_command_line``: as `run_command_line` answers.

``wrong_password``, ``reset`` and ``wsman_fault`` are WS-Management faults and mean nothing
here: over SSH a wrong password is refused by the server itself. While it waits (slow or hang) the
program watches its stdout and exits as soon as the SSH session is gone, so an abandoned scan
leaves no process behind.
"""

from __future__ import annotations

import datetime as dt
import os
import select
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, Final

#: The environment variable naming the host profile.
PROFILE_ENV: Final = "MFA_LAB_PROFILE"
#: The file in the user's home directory naming the host profile when PROFILE_ENV is not set.
PROFILE_POINTER: Final = ".mfa-lab-profile"
#: The program name the command line is rebuilt with.
PROGRAM: Final = "powershell"
#: The longest a ``hang`` waits for its session to go away (a safety net, not a test setting).
HANG_LIMIT_SECONDS: Final = 900.0
#: Exit code when the stand-in itself is misconfigured (no profile, an invalid profile).
SETUP_ERROR: Final = 3


def profile_path(environ: Mapping[str, str], home: Path) -> Path | None:
    """The host profile to answer from: ``$MFA_LAB_PROFILE``, else ``~/.mfa-lab-profile``."""
    named = environ.get(PROFILE_ENV, "").strip()
    if named:
        return Path(named)
    pointer = home / PROFILE_POINTER
    try:
        first = pointer.read_text(encoding="utf-8").strip().splitlines()
    except OSError:
        return None
    return Path(first[0].strip()) if first and first[0].strip() else None


def command_line(argv: list[str]) -> str:
    """The command line the shell split into `argv` (the program name, then its arguments)."""
    return " ".join([PROGRAM, *argv[1:]])


def session_gone(stream: BinaryIO) -> bool:
    """Whether the reader of `stream` has gone (the SSH session closed its end of the pipe)."""
    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def wait_while_connected(seconds: float, stream: BinaryIO) -> bool:
    """Sleep up to `seconds`; False as soon as the session is gone, else True."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if session_gone(stream):
            return False
        time.sleep(min(0.1, left))
    return not session_gone(stream)


def write_pieces(stream: BinaryIO, data: bytes, size: int) -> None:
    """Write `data`, flushing after every piece of at most `size` bytes (all at once if 0)."""
    step = size if size > 0 else max(1, len(data))
    for start in range(0, len(data), step):
        stream.write(data[start : start + step])
        stream.flush()


def main(argv: list[str] | None = None) -> int:
    """Answer one command line; the exit code is the simulated command's."""
    from agent.errors import InputError
    from agent.lab.profiles import load_profile
    from agent.lab.simulate import run_command_line

    args = list(sys.argv if argv is None else argv)
    stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
    path = profile_path(os.environ, Path.home())
    if path is None:
        stderr.write(f"{PROGRAM} stand-in: set {PROFILE_ENV} to a host profile\n".encode())
        return SETUP_ERROR
    try:
        profile = load_profile(path)
    except InputError as exc:
        stderr.write(f"{PROGRAM} stand-in: invalid host profile: {exc}\n".encode())
        return SETUP_ERROR
    result = run_command_line(profile, command_line(args), dt.datetime.now(dt.UTC))
    faults = profile.faults
    if faults.hang:
        wait_while_connected(HANG_LIMIT_SECONDS, stdout)
        return 1
    if faults.slow_seconds > 0 and not wait_while_connected(faults.slow_seconds, stdout):
        return 1
    try:
        write_pieces(stdout, result.stdout, faults.split_output_bytes)
        write_pieces(stderr, result.stderr, 0)
    except BrokenPipeError:
        return 1
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
