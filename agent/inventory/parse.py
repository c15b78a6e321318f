"""The inventory file's structure: groups, hosts, children and variables, as Ansible reads them.

Follows Ansible's YAML inventory plugin: every top-level key is a group; a group is null or a
mapping with only ``hosts``, ``vars`` and ``children``; ``hosts``/``children`` may also be a
single name. Where Ansible warns or lets a later value win silently, this parser reports a
`Problem` instead: unknown group keys, wrong types, a host or group variable written twice with
different values.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Final

from agent.errors import Problem
from agent.inventory.model import Location
from agent.inventory.ranges import MAX_HOSTS, RangeError, count, expand, split_port
from agent.inventory.yamlload import YamlMap, kind_of, line_of

GROUP_KEYS: Final = ("hosts", "vars", "children")
_BAD_HOST_CHARS: Final = frozenset("(),") | frozenset(" \t\r\n\f\v")


@dataclass(eq=False)
class VarDef:
    """One variable as written in one place (inventory file, group_vars or host_vars)."""

    key: str
    value: Any
    location: Location
    #: ``group <name>`` or the host name, for messages.
    owner: str
    #: The group it belongs to; None for a host variable.
    group: str | None
    #: Written in the inventory file itself (not group_vars/host_vars).
    in_inventory: bool = True
    #: The envelope of the vault-encrypted file it was read from (its value is a secret).
    vault: str | None = None


Vars = dict[str, VarDef]


@dataclass
class GroupNode:
    """A group and what the inventory file says directly about it."""

    name: str
    location: Location
    vars: Vars = field(default_factory=dict)
    #: Host names in order of appearance (a dict as an ordered set: large groups stay linear).
    hosts: dict[str, None] = field(default_factory=dict)
    #: Direct child groups, each with where the relationship is written.
    children: dict[str, Location] = field(default_factory=dict)


@dataclass
class HostNode:
    """A host and its own variables in the inventory file."""

    name: str
    location: Location
    vars: Vars = field(default_factory=dict)


@dataclass
class Tree:
    """Everything the inventory file declares, in order of first definition."""

    groups: dict[str, GroupNode] = field(default_factory=dict)
    hosts: dict[str, HostNode] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Host names written so far, counted before any pattern is expanded (duplicates too).
    expanded: int = 0
    #: Set once the host budget is spent: nothing more is expanded.
    over_budget: bool = False


def same_value(first: Any, second: Any) -> bool:
    """Equality that does not confuse ``1``, ``1.0`` and ``true``."""
    return type(first) is type(second) and bool(first == second)


def set_var(target: Vars, definition: VarDef, problems: list[Problem]) -> None:
    """Add a definition, reporting a second, different value for the same key in one file.

    A definition in a later inventory source replaces one from an earlier source, as Ansible
    merges several ``-i`` sources.
    """
    existing = target.get(definition.key)
    if existing is None or existing.location.file != definition.location.file:
        target[definition.key] = definition
        return
    if not same_value(existing.value, definition.value):
        problems.append(
            Problem(
                definition.location.file,
                f"{definition.owner}: '{definition.key}' is defined twice with different values "
                f"(line {existing.location.line} and line {definition.location.line})",
                definition.location.line,
                definition.key,
            )
        )


class _Parser:
    def __init__(self, file: str, tree: Tree) -> None:
        self.file = file
        self.tree = tree

    def problem(self, message: str, line: int | None, key: str | None = None) -> None:
        self.tree.problems.append(Problem(self.file, message, line, key))

    def parse(self, data: Any) -> Tree:
        self.group("all", None)
        if data is None:
            self.problem("the inventory is empty; it needs at least 'all:' with hosts", 1)
        elif not isinstance(data, YamlMap):
            self.problem(
                f"the inventory must be a mapping of groups (all: ...), not {kind_of(data)}", 1
            )
        elif check_budget(self.tree, self.file, yaml_host_count(data)):
            for name, body in data.items():
                self.group_entry(name, body, data.line_of(name), None)
        self.group("ungrouped", None)
        return self.tree

    def group(self, name: str, line: int | None) -> GroupNode:
        node = self.tree.groups.get(name)
        if node is None:
            node = self.tree.groups[name] = GroupNode(name, Location(self.file, line))
        elif node.location.line is None and line is not None:
            node.location = Location(self.file, line)
        return node

    def group_entry(self, name: Any, body: Any, line: int | None, parent: str | None) -> None:
        if not isinstance(name, str) or not name.strip():
            self.problem("group names must be non-empty strings; quote numbers", line, str(name))
            return
        if parent is not None and name == "all":
            self.problem("'all' cannot be a child of another group", line, name)
            return
        group = self.group(name, line)
        if parent is not None:
            self.tree.groups[parent].children.setdefault(name, Location(self.file, line))
        if body is None:
            return
        if not isinstance(body, YamlMap):
            self.problem(
                f"group '{name}' must be a mapping with hosts, vars and children (or empty), "
                f"not {kind_of(body)}",
                line,
                name,
            )
            return
        for key, section in body.items():
            self.section(group, key, section, body.line_of(key))

    def section(self, group: GroupNode, key: Any, section: Any, line: int | None) -> None:
        if key == "hosts":
            self.hosts(group, section, line)
        elif key == "vars":
            self.group_vars(group, section, line)
        elif key == "children":
            self.children(group, section, line)
        else:
            close = difflib.get_close_matches(str(key), GROUP_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.problem(
                f"unknown key '{key}' in group '{group.name}'{hint}; a group has only "
                "hosts, vars and children (host variables go under the host, group "
                "variables under vars)",
                line,
                f"{group.name}.{key}",
            )

    def names(self, group: GroupNode, what: str, section: Any, line: int | None) -> Any:
        """A hosts/children section as a mapping (a single name is allowed), or None."""
        if section is None:
            return None
        if isinstance(section, str):
            single = YamlMap(line)
            single[section] = None
            return single
        if not isinstance(section, YamlMap):
            self.problem(
                f"'{what}' of group '{group.name}' must be a mapping of names (each name a key, "
                f"optionally with its own settings), not {kind_of(section)}",
                line,
                f"{group.name}.{what}",
            )
            return None
        return section

    def children(self, group: GroupNode, section: Any, line: int | None) -> None:
        mapping = self.names(group, "children", section, line)
        for child, body in (mapping or {}).items():
            self.group_entry(child, body, line_of(mapping, child), group.name)

    def group_vars(self, group: GroupNode, section: Any, line: int | None) -> None:
        if section is None:
            return
        if not isinstance(section, YamlMap):
            self.problem(
                f"'vars' of group '{group.name}' must be a mapping of variables, "
                f"not {kind_of(section)}",
                line,
                f"{group.name}.vars",
            )
            return
        self.variables(group.vars, section, f"group {group.name}", group.name)

    def variables(self, target: Vars, section: YamlMap, owner: str, group: str | None) -> None:
        for key, value in section.items():
            line = section.line_of(key)
            if not isinstance(key, str):
                self.problem(f"{owner}: variable names must be strings", line, str(key))
                continue
            definition = VarDef(key, value, Location(self.file, line), owner, group)
            set_var(target, definition, self.tree.problems)

    def hosts(self, group: GroupNode, section: Any, line: int | None) -> None:
        mapping = self.names(group, "hosts", section, line)
        for pattern, body in (mapping or {}).items():
            self.host_entry(group, pattern, body, line_of(mapping, pattern))

    def host_entry(self, group: GroupNode, pattern: Any, body: Any, line: int | None) -> None:
        if not isinstance(pattern, str):
            self.problem("host names must be strings; quote numbers", line, str(pattern))
            return
        if body is not None and not isinstance(body, YamlMap):
            self.problem(
                f"host '{pattern}' must be a mapping of its variables (or empty), "
                f"not {kind_of(body)}",
                line,
                pattern,
            )
            return
        definitions = []
        for key, value in (body or {}).items():
            if not isinstance(key, str):
                self.problem(f"{pattern}: variable names must be strings", line, str(key))
                continue
            definitions.append((key, value, Location(self.file, line_of(body, key))))
        add_host_pattern(self.tree, group, pattern, definitions, line, self.file)


_CONTROL: Final = frozenset(chr(c) for c in range(32)) | {chr(127)}


def valid_host_name(tree: Tree, file: str, name: str, line: int | None) -> bool:
    """Whether `name` may be a host name; a problem says why not."""
    if not name:
        tree.problems.append(Problem(file, "empty host name", line, name))
        return False
    if _BAD_HOST_CHARS.intersection(name) or _CONTROL.intersection(name):
        tree.problems.append(
            Problem(
                file,
                f"host name {name[:80]!r} may not contain spaces, control characters, "
                "commas or parentheses",
                line,
                name[:80],
            )
        )
        return False
    return True


def pattern_size(pattern: str) -> int:
    """How many hosts `pattern` names (0 when it is malformed: reported when it is added)."""
    try:
        return count(split_port(pattern)[0])
    except RangeError:
        return 0


def check_budget(tree: Tree, file: str, total: int) -> bool:
    """Whether `total` more host names fit the inventory's budget; a problem when not.

    Called with a whole file's count before any of it is expanded, so an inventory naming
    millions of hosts is refused at once.
    """
    if tree.expanded + total <= MAX_HOSTS:
        return True
    tree.over_budget = True
    tree.problems.append(
        Problem(
            file,
            f"the inventory names more than {MAX_HOSTS:,} hosts ({tree.expanded + total:,}, "
            "host ranges counted before expanding, repeats included)",
        )
    )
    return False


def yaml_host_count(data: Any) -> int:
    """Host names a parsed YAML inventory writes (ranges counted, nothing expanded)."""
    total = 0
    stack = [data]
    while stack:
        group = stack.pop()
        if not isinstance(group, dict):
            continue
        for body in group.values():
            if not isinstance(body, dict):
                continue
            hosts = body.get("hosts")
            if isinstance(hosts, str):
                total += pattern_size(hosts)
            elif isinstance(hosts, dict):
                total += sum(pattern_size(p) for p in hosts if isinstance(p, str))
            children = body.get("children")
            if isinstance(children, dict):
                stack.append(children)
    return total


def add_host_pattern(
    tree: Tree,
    group: GroupNode,
    pattern: str,
    definitions: list[tuple[str, Any, Location]],
    line: int | None,
    file: str,
) -> None:
    """Add the hosts `pattern` stands for to `group`, each with the variables `definitions`.

    The number of hosts is computed before anything is expanded, and the inventory's total
    (duplicates counted) may not pass `MAX_HOSTS`.
    """
    if tree.over_budget:
        return
    try:
        base, port = split_port(pattern)
        size = count(base)
    except RangeError as exc:
        message = f"invalid host pattern '{pattern[:80]}': {exc}"
        tree.problems.append(Problem(file, message, line, pattern[:80]))
        return
    if tree.expanded + size > MAX_HOSTS:
        tree.over_budget = True
        tree.problems.append(
            Problem(
                file,
                f"the inventory names more than {MAX_HOSTS:,} hosts (host ranges counted "
                f"before expanding, repeats included); '{pattern[:80]}' would make "
                f"{tree.expanded + size:,}",
                line,
            )
        )
        return
    tree.expanded += size
    for name in expand(base):
        if not valid_host_name(tree, file, name, line):
            continue
        host = tree.hosts.get(name)
        if host is None:
            host = tree.hosts[name] = HostNode(name, Location(file, line))
        group.hosts.setdefault(name)
        if port is not None:
            port_def = VarDef("ansible_port", port, Location(file, line), name, None)
            set_var(host.vars, port_def, tree.problems)
        for key, value, where in definitions:
            set_var(host.vars, VarDef(key, value, where, name, None), tree.problems)


def parse_tree(data: Any, file: str, tree: Tree | None = None) -> Tree:
    """Read the structure of a parsed YAML inventory file into `tree` (a new one by default);
    problems are in `Tree.problems`."""
    return _Parser(file, Tree() if tree is None else tree).parse(data)
