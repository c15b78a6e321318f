"""Ansible's INI inventory format, read into the same `Tree` as a YAML inventory.

Follows ansible-core's ``ini`` inventory plugin: lines before any section are hosts of
``ungrouped``; ``[group]`` lists hosts (a host pattern, then ``key=value`` pairs split as a POSIX
shell would, so an unquoted backslash is lost and ``#`` starts a comment); ``[group:vars]`` holds
one ``key=value`` per line (everything after the first ``=``); ``[group:children]`` lists child
groups, which must be declared somewhere in the file. Every value, inline or in ``:vars``, is
read with `ast.literal_eval` when it is a Python literal (``5986`` an integer, ``True`` a boolean,
``'05'`` the string) and kept as text otherwise; tuples and sets become lists, bytes and complex
numbers text, as ansible-core does. `ast.literal_eval` builds data only; it never runs code.

Unlike Ansible, which stops at the first error, every problem is collected with its line.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any, Final

from agent.errors import Problem
from agent.inventory.model import Location
from agent.inventory.parse import (
    GroupNode,
    Tree,
    VarDef,
    add_host_pattern,
    check_budget,
    pattern_size,
    set_var,
)

_COMMENT_MARKERS: Final = (";", "#")
_SECTION: Final = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME: Final = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
#: Longest value handed to `ast.literal_eval` (its parser is not meant for huge input).
MAX_VALUE_CHARS: Final = 65_536


_SHELL_SPECIAL: Final = re.compile(r"""['"\\#]""")
_SHELL_SPACE: Final = re.compile(r"[ \t\r\n]+")


def _split(line: str) -> list[str]:
    """The line split as POSIX `shlex` does (with comments); plain lines without its help."""
    if _SHELL_SPECIAL.search(line) is None:
        return [token for token in _SHELL_SPACE.split(line) if token]
    return shlex.split(line, comments=True)


#: Values whose reading is known without the Python parser: a plain decimal integer, or a
#: word or dotted address that no Python literal can be (``True``/``False``/``None`` aside).
_PLAIN_INT: Final = re.compile(r"(?:0|-?[1-9][0-9]{0,17})")
_PLAIN_TEXT: Final = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_.-]*|[0-9]+(?:\.[0-9]+){2,})")


def parse_value(text: str) -> Any:
    """An INI value as ansible-core reads it: a Python literal when it is one, else the text."""
    if _PLAIN_INT.fullmatch(text):
        return int(text)
    if _PLAIN_TEXT.fullmatch(text) and text not in ("True", "False", "None"):
        return text
    value: Any = text
    if len(text) <= MAX_VALUE_CHARS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SyntaxWarning)
                value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = text
    return _coerce(value)


def _coerce(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {_coerce(k): _coerce(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


class _IniParser:
    def __init__(self, file: str, tree: Tree) -> None:
        self.file = file
        self.tree = tree
        self.problems = tree.problems
        #: Groups named in ``:vars``/``:children`` but not (yet) declared, with where.
        self.pending: dict[str, tuple[str, int, list[str]]] = {}

    def problem(self, message: str, line: int | None, key: str | None = None) -> None:
        self.problems.append(Problem(self.file, message, line, key))

    def group(self, name: str, line: int) -> GroupNode:
        node = self.tree.groups.get(name)
        if node is None:
            node = self.tree.groups[name] = GroupNode(name, Location(self.file, line))
        return node

    def parse(self, text: str) -> None:
        self.tree.groups.setdefault("all", GroupNode("all", Location(self.file, None)))
        self.tree.groups.setdefault("ungrouped", GroupNode("ungrouped", Location(self.file, None)))
        lines = text.splitlines()
        if not check_budget(self.tree, self.file, _host_count(lines)):
            return
        group, state = "ungrouped", "hosts"
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line[0] in _COMMENT_MARKERS:
                continue
            section = _SECTION.match(line)
            if section:
                group, state = self.section(section, number)
                continue
            if line.startswith("[") and line.endswith("]"):
                self.problem(
                    f"invalid section '{line[:80]}': no spaces or other characters are allowed "
                    "in a [group], [group:vars] or [group:children] header",
                    number,
                )
                state = "invalid"
                continue
            if state == "hosts":
                self.host_line(group, line, number)
            elif state == "vars":
                self.vars_line(group, line, number)
            elif state == "children":
                self.child_line(group, line, number)
        for name, (state, number, parents) in self.pending.items():
            if state == "vars":
                message = f"section [{name}:vars] is for a group that is not declared"
            else:
                message = f"section [{parents[-1]}:children] includes undeclared group '{name}'"
            self.problem(message + " (declare it with [" + name + "])", number, name)

    def section(self, match: re.Match[str], number: int) -> tuple[str, str]:
        name, state = match.group(1), match.group(2) or "hosts"
        if state not in ("hosts", "vars", "children"):
            self.problem(
                f"section [{name}:{state}] has unknown type '{state}' "
                "(only :vars and :children)",
                number,
                name,
            )
            return name, "invalid"
        if name not in self.tree.groups and state == "vars" and name not in self.pending:
            self.pending[name] = ("vars", number, [])
        self.group(name, number)
        if state != "vars":
            self.declare(name)
        return name, state

    def declare(self, name: str) -> None:
        pending = self.pending.pop(name, None)
        if pending is None or pending[0] != "children":
            return
        for parent in pending[2]:
            self.tree.groups[parent].children.setdefault(name, Location(self.file, pending[1]))

    def host_line(self, group: str, line: str, number: int) -> None:
        try:
            tokens = _split(line)
        except ValueError as exc:
            self.problem(f"cannot split host line: {exc}", number)
            return
        if not tokens:
            return
        pattern, assignments = tokens[0], tokens[1:]
        if pattern.strip() == "---":
            self.problem("'---' is not a host: is this a YAML file with an INI name?", number)
            return
        body: dict[str, Any] = {}
        for position, token in enumerate(assignments, start=2):
            if "=" not in token:
                # The word is not quoted: it could be part of a password written with a space.
                self.problem(
                    f"expected key=value host variables after the host name; word {position} "
                    "has no '=' (quote values that contain spaces)",
                    number,
                )
                return
            key, value = token.split("=", 1)
            body[key] = parse_value(value)
        definitions = [
            (key, value, Location(self.file, number)) for key, value in body.items()
        ]
        add_host_pattern(self.tree, self.tree.groups[group], pattern, definitions, number,
                         self.file)

    def vars_line(self, group: str, line: str, number: int) -> None:
        if "=" not in line:
            self.problem(f"expected key=value in [{group}:vars] (the line has no '=')", number)
            return
        key, value = (part.strip() for part in line.split("=", 1))
        if not key:
            self.problem(f"empty variable name in [{group}:vars]", number)
            return
        definition = VarDef(
            key, parse_value(value), Location(self.file, number), f"group {group}", group
        )
        set_var(self.tree.groups[group].vars, definition, self.problems)

    def child_line(self, group: str, line: str, number: int) -> None:
        match = _GROUP_NAME.match(line)
        if not match:
            self.problem(f"expected a group name in [{group}:children], got '{line[:80]}'", number)
            return
        child = match.group(1)
        if child == "all":
            self.problem("'all' cannot be a child of another group", number, child)
            return
        if child in self.tree.groups:
            self.tree.groups[group].children.setdefault(child, Location(self.file, number))
            return
        pending = self.pending.get(child)
        if pending is None:
            self.pending[child] = ("children", number, [group])
        else:
            pending[2].append(group)


def _host_count(lines: list[str]) -> int:
    """Host names the host lines write (ranges counted, nothing expanded)."""
    total, state = 0, "hosts"
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in _COMMENT_MARKERS:
            continue
        section = _SECTION.match(line)
        if section:
            state = section.group(2) or "hosts"
        elif state == "hosts" and not (line.startswith("[") and line.endswith("]")):
            total += pattern_size(line.split(None, 1)[0])
    return total


def parse_ini(text: str, file: str, tree: Tree) -> None:
    """Add the groups, hosts and variables of INI inventory `text` to `tree`."""
    _IniParser(file, tree).parse(text)
