"""Reading the user's input files safely: regular files only, never more than a bound.

Every file the agent reads as input (inventories, vars files, facts files, waivers files, vault
password files) goes through `read_regular_file`. A FIFO, socket or device is refused *before*
it is opened for reading (opening a FIFO would block until a writer appears), and a file larger
than the bound is refused without reading it all into memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnreadableFile(Exception):
    """An input file that cannot be read; `reason` says why in words for a person."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def file_kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words: "a FIFO (named pipe)", "a socket"..."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of `path`, which must be a regular file of at most `limit` bytes.

    The file type is checked with ``stat`` before opening, and again on the opened descriptor
    (``O_NONBLOCK`` keeps a FIFO swapped in between from blocking the open).
    """
    try:
        before = os.stat(path)
    except OSError as exc:
        raise UnreadableFile(path, exc.strerror or type(exc).__name__) from None
    if not stat.S_ISREG(before.st_mode):
        raise UnreadableFile(path, f"is {file_kind(before.st_mode)}, not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFile(path, exc.strerror or type(exc).__name__) from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(path, f"is {file_kind(mode)}, not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFile(path, f"is larger than {limit:,} bytes")
    return data
