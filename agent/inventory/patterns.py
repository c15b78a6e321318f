"""``--limit`` host patterns, as Ansible reads them.

A pattern is a host name, a group name, an fnmatch glob (``adfs*``) or ``~regex``, optionally
subscripted (``adfs[0]``, ``adfs[1:]``, over the matched hosts in inventory order). Patterns are
separated by ``,`` (or ``:`` when there is no comma); ``!x`` removes hosts and ``&x`` keeps only
hosts also in x; plain patterns are applied first, then ``&``, then ``!``. Only-``!``/``&``
selections start from ``all``. Unlike Ansible, a pattern that matches nothing is an error.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Final

from agent.errors import InputError, Problem

_SUBSCRIPT: Final = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+):([0-9]*))\]$")
_COLON_PARTS: Final = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_GLOB_CHARS: Final = (".", "?", "*", "[")
_SOURCE: Final = "--limit"


def split_patterns(patterns: Sequence[str]) -> list[str]:
    """Every single pattern in `patterns`, each of which may be a separated list."""
    result: list[str] = []
    for text in patterns:
        if "," in text:
            parts = text.split(",")
        elif _is_address(text):
            parts = [text]
        else:
            parts = _COLON_PARTS.findall(text)
        result.extend(p.strip() for p in parts if p.strip())
    return result


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return False
    return True


def order_patterns(patterns: list[str]) -> list[str]:
    """Plain patterns first, then ``&``, then ``!``; ``all`` when there is no plain one."""
    plain = [p for p in patterns if p[0] not in "!&"]
    intersect = [p for p in patterns if p[0] == "&"]
    exclude = [p for p in patterns if p[0] == "!"]
    return (plain or ["all"]) + intersect + exclude


class _Matcher:
    def __init__(self, hosts: Sequence[str], groups: Mapping[str, frozenset[str]]) -> None:
        self.hosts = hosts
        self.groups = groups
        self.problems: list[Problem] = []

    def fail(self, pattern: str, message: str) -> list[str]:
        self.problems.append(Problem(_SOURCE, message, None, pattern))
        return []

    def compile(self, written: str, pattern: str) -> re.Pattern[str] | None:
        if not pattern.startswith("~"):
            return re.compile(fnmatch.translate(pattern))
        try:
            return re.compile(pattern[1:])
        except re.error as exc:
            self.fail(written, f"'{written}' is not a valid regular expression: {exc}")
            return None

    def match(self, written: str, pattern: str) -> list[str]:
        """Host names matched by `pattern` (`written` without its ! or &), in inventory order."""
        base, subscript = pattern, None
        found = None if pattern.startswith("~") else _SUBSCRIPT.match(pattern)
        if found:
            base, subscript = found.group(1), found.groups()[1:]
        regex = self.compile(written, base)
        if regex is None:
            return []
        names: set[str] = set()
        matched_group = False
        for group, members in self.groups.items():
            if regex.match(group):
                matched_group = True
                names |= members
        if not matched_group or base.startswith("~") or any(c in base for c in _GLOB_CHARS):
            names |= {h for h in self.hosts if regex.match(h)}
        if not names and not matched_group:
            return self.fail(written, f"'{written}' matches no host or group in the inventory")
        ordered = [h for h in self.hosts if h in names]
        return self.subscript(written, ordered, subscript) if subscript else ordered

    def subscript(
        self, written: str, hosts: list[str], subscript: tuple[str | None, ...]
    ) -> list[str]:
        single, start, end = subscript
        if single is not None:
            index = int(single)
            if not -len(hosts) <= index < len(hosts):
                return self.fail(written, f"'{written}': index out of range ({len(hosts)} hosts)")
            return [hosts[index]]
        first = int(start or 0)
        last = int(end) if end else len(hosts) - 1
        if first >= len(hosts) or last < first:
            return self.fail(written, f"'{written}': range out of bounds ({len(hosts)} hosts)")
        return hosts[first : last + 1]


def select_names(
    hosts: Sequence[str], groups: Mapping[str, frozenset[str]], patterns: Sequence[str]
) -> set[str]:
    """The names of the hosts `patterns` select; `InputError` for patterns matching nothing."""
    matcher = _Matcher(hosts, groups)
    known = set(hosts)
    chosen: set[str] = set()
    for pattern in order_patterns(split_patterns(patterns)):
        if pattern in known:
            chosen.add(pattern)
            continue
        operator, bare = (pattern[0], pattern[1:]) if pattern[0] in "!&" else ("", pattern)
        if not bare:
            matcher.fail(pattern, f"'{pattern}' is missing a host or group name")
            continue
        matched = set(matcher.match(pattern, bare))
        if operator == "!":
            chosen -= matched
        elif operator == "&":
            chosen &= matched
        else:
            chosen |= matched
    if matcher.problems:
        raise InputError(matcher.problems)
    return chosen
