"""Ansible's JSON inventory: the output of ``ansible-inventory --list`` (and dynamic inventories).

``{"_meta": {"hostvars": {host: vars}}, group: {"hosts": [...], "children": [...], "vars":
{...}}}``. As ``--list`` prints it: every host's variables are already merged, so the ``all``
group's variables arrive copied into each host; the inventory-wide ``mfa_*`` settings are
accepted there when every host carries the same value, and become the ``all`` group's.
``{"__ansible_vault": "<ciphertext>"}`` is a vault value. Unknown keys (``_meta.profile``)
are ignored.
"""

from __future__ import annotations

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
from agent.inventory.settings import INVENTORY_WIDE
from agent.inventory.yamlload import Tagged, YamlMap, YamlSeq, kind_of, line_of

VAULT_KEY: Final = "__ansible_vault"
_GROUP_KEYS: Final = ("hosts", "children", "vars")


def is_list_output(data: Any) -> bool:
    """Whether a parsed document is Ansible's JSON inventory (it has ``_meta``), not YAML's."""
    if not isinstance(data, dict):
        return False
    return isinstance(data.get("_meta"), dict)


def unwrap(value: Any) -> Any:
    """`value` with every ``{"__ansible_vault": ciphertext}`` turned into a ``!vault`` value."""
    if isinstance(value, dict):
        if set(value) == {VAULT_KEY} and isinstance(value[VAULT_KEY], str):
            return Tagged("!vault", value[VAULT_KEY])
        result = YamlMap(getattr(value, "line", None))
        for key, item in value.items():
            result[key] = unwrap(item)
            if isinstance(value, YamlMap):
                result.key_lines[key] = value.key_lines.get(key)
        return result
    if isinstance(value, list):
        seq = YamlSeq(getattr(value, "line", None))
        seq.extend(unwrap(item) for item in value)
        if isinstance(value, YamlSeq):
            seq.item_lines = list(value.item_lines)
        return seq
    return value


class _ListReader:
    def __init__(self, file: str, tree: Tree) -> None:
        self.file = file
        self.tree = tree

    def problem(self, message: str, line: int | None, key: str | None = None) -> None:
        self.tree.problems.append(Problem(self.file, message, line, key))

    def group(self, name: str, line: int | None) -> GroupNode:
        node = self.tree.groups.get(name)
        if node is None:
            node = self.tree.groups[name] = GroupNode(name, Location(self.file, line))
        return node

    def read(self, data: YamlMap) -> None:
        self.group("all", None)
        listed = sum(
            pattern_size(host)
            for body in data.values()
            if isinstance(body, dict) and isinstance(body.get("hosts"), list)
            for host in body["hosts"]
            if isinstance(host, str)
        )
        if not check_budget(self.tree, self.file, listed):
            return
        meta = data.get("_meta")
        hostvars = meta.get("hostvars") if isinstance(meta, dict) else None
        if hostvars is not None and not isinstance(hostvars, dict):
            where = line_of(meta, "hostvars")
            self.problem("_meta.hostvars must be a mapping of host names", where)
            hostvars = None
        for name, body in data.items():
            if name == "_meta":
                continue
            line = data.line_of(name)
            if not isinstance(name, str) or not name.strip():
                self.problem("group names must be non-empty strings", line, str(name))
                continue
            if not isinstance(body, dict):
                if body is not None:
                    message = f"group '{name}' must be a mapping, not {kind_of(body)}"
                    self.problem(message, line, name)
                continue
            self.read_group(name, body, line)
        self.group("ungrouped", None)
        if hostvars:
            self.read_hostvars(hostvars)

    def read_group(self, name: str, body: dict[str, Any], line: int | None) -> None:
        group = self.group(name, line)
        hosts = body.get("hosts") or []
        if not isinstance(hosts, list):
            self.problem(f"'hosts' of group '{name}' must be a list", line, name)
            hosts = []
        for index, host in enumerate(hosts):
            if not isinstance(host, str):
                self.problem(f"host names must be strings (group '{name}')", line, name)
                continue
            add_host_pattern(self.tree, group, host, [], line_of(hosts, index) or line, self.file)
        children = body.get("children") or []
        if not isinstance(children, list):
            self.problem(f"'children' of group '{name}' must be a list", line, name)
            children = []
        for index, child in enumerate(children):
            if not isinstance(child, str) or child == "all":
                self.problem(f"invalid child group in '{name}'", line, str(child))
                continue
            self.group(child, line_of(children, index) or line)
            group.children.setdefault(child, Location(self.file, line_of(children, index) or line))
        variables = body.get("vars") or {}
        if not isinstance(variables, dict):
            self.problem(f"'vars' of group '{name}' must be a mapping", line, name)
            variables = {}
        for key, value in variables.items():
            where = Location(self.file, line_of(variables, key) or line)
            definition = VarDef(str(key), unwrap(value), where, f"group {name}", name)
            set_var(group.vars, definition, self.tree.problems)

    def read_hostvars(self, hostvars: dict[str, Any]) -> None:
        wide: dict[str, list[tuple[str, Any, int | None]]] = {}
        for host, variables in hostvars.items():
            line = line_of(hostvars, host)
            node = self.tree.hosts.get(host) if isinstance(host, str) else None
            if node is None:
                self.problem(f"_meta.hostvars names '{host}', which no group lists", line)
                continue
            if not isinstance(variables, dict):
                self.problem(f"_meta.hostvars of '{host}' must be a mapping", line, str(host))
                continue
            for key, value in variables.items():
                where = line_of(variables, key) or line
                if key in INVENTORY_WIDE:
                    wide.setdefault(key, []).append((host, value, where))
                    continue
                definition = VarDef(str(key), unwrap(value), Location(self.file, where), host, None)
                set_var(node.vars, definition, self.tree.problems)
        for key, values in wide.items():
            self.hoist(key, values)

    def hoist(self, key: str, values: list[tuple[str, Any, int | None]]) -> None:
        """An inventory-wide setting copied into hosts: the `all` group's if all agree."""
        first_host, first, line = values[0]
        differing = [host for host, value, _ in values if value != first]
        missing = len(values) != len(self.tree.hosts)
        if differing or missing:
            self.problem(
                f"{key} applies to the whole inventory, but the hosts' values differ "
                f"({first_host} and {(differing or ['hosts without it'])[0]}): set it for 'all'",
                line,
                key,
            )
            return
        all_group = self.tree.groups["all"]
        if key not in all_group.vars:
            definition = VarDef(key, unwrap(first), Location(self.file, line), "group all", "all")
            set_var(all_group.vars, definition, self.tree.problems)


def parse_list_output(data: YamlMap, file: str, tree: Tree) -> None:
    """Add the groups, hosts and variables of Ansible's JSON inventory `data` to `tree`."""
    _ListReader(file, tree).read(data)
