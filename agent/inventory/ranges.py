"""Host patterns of a YAML inventory: ``name:port`` and Ansible's host ranges.

``adfs[01:03].corp.example`` → adfs01, adfs02, adfs03 (leading zeros kept, as Ansible's
``expand_hostname_range``); ``[a:c]`` letters; ``[1:10:2]`` a stride; several ranges multiply
out, first range outermost. Unlike Ansible, malformed or empty ranges are errors rather than
silently odd host names, and a pattern may not expand to more than `MAX_HOSTS` hosts.
"""

from __future__ import annotations

import ipaddress
import re
import string
from itertools import product
from typing import Final

#: Most hosts one inventory may name (and so one pattern may expand to).
MAX_HOSTS: Final = 100_000

_BRACKETED_PORT: Final = re.compile(r"^\[([^\[\]]+)\]:([0-9]+)$")
_HOST_PORT: Final = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_NUMBER: Final = re.compile(r"^[0-9]{1,18}$")


class RangeError(ValueError):
    """A host pattern that cannot be expanded; the message says why."""


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def split_port(pattern: str) -> tuple[str, int | None]:
    """Split ``host:port`` / ``[ipv6]:port`` into host and port; a bare IPv6 keeps its colons."""
    match = _BRACKETED_PORT.match(pattern)
    if match and _is_ip(match.group(1)):
        return match.group(1), int(match.group(2))
    match = _HOST_PORT.match(pattern)
    if match and match.group(1):
        return match.group(1), int(match.group(2))
    if pattern.startswith("[") and pattern.endswith("]") and _is_ip(pattern[1:-1]):
        return pattern[1:-1], None
    return pattern, None


def _numeric(begin: str, end: str, step: int) -> list[str]:
    if _numeric_count(begin, end, step) > MAX_HOSTS:
        raise RangeError(f"a host range may not expand to more than {MAX_HOSTS} hosts")
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    low, high = int(begin), int(end)
    return [str(n).zfill(width) for n in range(low, high + 1, step)]


def _numeric_count(begin: str, end: str, step: int) -> int:
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    if width and len(end) != width:
        raise RangeError("a zero-padded range needs begin and end of the same width")
    low, high = int(begin), int(end)
    if low > high:
        raise RangeError("a host range must have begin <= end")
    return (high - low) // step + 1


def _alphabetic(begin: str, end: str, step: int) -> list[str]:
    letters = string.ascii_letters
    low, high = letters.index(begin), letters.index(end)
    if low > high:
        raise RangeError("a host range must have begin <= end")
    return list(letters[low : high + 1 : step])


def _bounds(body: str) -> tuple[str, str, int]:
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise RangeError("a host range is [begin:end] or [begin:end:step]")
    begin, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise RangeError("a host range needs an end value")
    if not _NUMBER.match(step_text) or int(step_text) < 1:
        raise RangeError("a host range step must be a positive integer")
    return begin, end, int(step_text)


def _range(body: str) -> list[str]:
    begin, end, step = _bounds(body)
    if _NUMBER.match(begin) and _NUMBER.match(end):
        return _numeric(begin, end, step)
    letters = string.ascii_letters
    if len(begin) == len(end) == 1 and begin in letters and end in letters:
        return _alphabetic(begin, end, step)
    raise RangeError("host range bounds must both be numbers or both be single letters")


def _range_count(body: str) -> int:
    begin, end, step = _bounds(body)
    if _NUMBER.match(begin) and _NUMBER.match(end):
        return _numeric_count(begin, end, step)
    return len(_range(body))  # letters: at most 52


def _bodies(pattern: str) -> list[str]:
    """The bodies of the pattern's ranges, checking brackets pair up and do not nest."""
    bodies: list[str] = []
    rest = pattern
    while True:
        start, close = rest.find("["), rest.find("]")
        if start < 0:
            if close >= 0:
                raise RangeError("']' without a matching '['")
            return bodies
        if close < start:
            raise RangeError("']' without a matching '['" if close >= 0 else "'[' without ']'")
        body = rest[start + 1 : close]
        if "[" in body:
            raise RangeError("host ranges cannot be nested")
        bodies.append(body)
        rest = rest[close + 1 :]


def count(pattern: str) -> int:
    """How many host names `pattern` stands for, computed without expanding it."""
    if "[" not in pattern and "]" not in pattern:
        return 1
    total = 1
    for body in _bodies(pattern):
        total *= _range_count(body)
    return total


def _segments(pattern: str) -> list[list[str]]:
    """The pattern as alternating literal and range segments, each a list of choices."""
    segments: list[list[str]] = []
    rest = pattern
    while True:
        start = rest.find("[")
        close = rest.find("]")
        if start < 0:
            if close >= 0:
                raise RangeError("']' without a matching '['")
            segments.append([rest])
            return segments
        if close < start:
            raise RangeError("']' without a matching '['" if close >= 0 else "'[' without ']'")
        body = rest[start + 1 : close]
        if "[" in body:
            raise RangeError("host ranges cannot be nested")
        segments.append([rest[:start]])
        segments.append(_range(body))
        rest = rest[close + 1 :]


def expand(pattern: str) -> list[str]:
    """Every host name a pattern (without port) stands for, in Ansible's order."""
    if "[" not in pattern and "]" not in pattern:
        return [pattern]
    segments = _segments(pattern)
    total = 1
    for choices in segments:
        total *= len(choices)
        if total > MAX_HOSTS:
            raise RangeError(f"a host pattern may not expand to more than {MAX_HOSTS} hosts")
    return ["".join(parts) for parts in product(*segments)]
