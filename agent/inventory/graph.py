"""The group hierarchy: cycles, implicit ``all``/``ungrouped`` membership, depth, ancestors.

All walks are iterative: a chain of thousands of groups must not reach the recursion limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.errors import Problem
from agent.inventory.parse import Tree


@dataclass(frozen=True)
class Hierarchy:
    """Derived group relations; `Tree` children edges are already cycle-free."""

    #: Longest path from ``all`` (Ansible's group depth; ``all`` is 0).
    depth: Mapping[str, int]
    #: Every group → all of its ancestors (``all`` included, the group itself not).
    ancestors: Mapping[str, frozenset[str]]
    #: Every host → every group it is in, ancestors and ``all`` included.
    host_groups: Mapping[str, frozenset[str]]
    #: Every group → every host in it or in a descendant.
    members: Mapping[str, frozenset[str]]


def _break_cycles(tree: Tree) -> list[Problem]:
    """Drop every children edge that closes a cycle, reporting each where it is written."""
    problems: list[Problem] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in tree.groups:
        if root in state:
            continue
        path = [root]
        stack = [iter(list(tree.groups[root].children))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(child) == 1:
                where = tree.groups[path[-1]].children.pop(child)
                cycle = " -> ".join([*path[path.index(child) :], child])
                problems.append(Problem(where.file, f"group cycle: {cycle}", where.line, child))
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append(iter(list(tree.groups[child].children)))
    return problems


def _adopt_orphans(tree: Tree) -> None:
    """As Ansible reconciles: parentless groups go under ``all``, groupless hosts in ungrouped."""
    with_parent = {child for g in tree.groups.values() for child in g.children}
    all_group = tree.groups["all"]
    for name, group in tree.groups.items():
        if name != "all" and name not in with_parent:
            all_group.children.setdefault(name, group.location)
    grouped = {h for name, g in tree.groups.items() if name != "all" for h in g.hosts}
    ungrouped = tree.groups["ungrouped"]
    for host in tree.hosts:
        if host not in grouped:
            ungrouped.hosts.setdefault(host)


def _topological(tree: Tree) -> list[str]:
    indegree = dict.fromkeys(tree.groups, 0)
    for group in tree.groups.values():
        for child in group.children:
            indegree[child] += 1
    ready = [name for name, count in indegree.items() if count == 0]
    order: list[str] = []
    while ready:
        name = ready.pop()
        order.append(name)
        for child in tree.groups[name].children:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return order


def build_hierarchy(tree: Tree) -> tuple[Hierarchy, list[Problem]]:
    """Break cycles (reported), add implicit membership, and derive depth and ancestry."""
    problems = _break_cycles(tree)
    _adopt_orphans(tree)
    depth: dict[str, int] = dict.fromkeys(tree.groups, 0)
    ancestors: dict[str, set[str]] = {name: set() for name in tree.groups}
    for name in _topological(tree):
        for child in tree.groups[name].children:
            depth[child] = max(depth[child], depth[name] + 1)
            ancestors[child] |= ancestors[name] | {name}
    frozen = {k: frozenset(v) for k, v in ancestors.items()}
    host_groups = _host_groups(tree, frozen)
    members: dict[str, set[str]] = {name: set() for name in tree.groups}
    for host, groups in host_groups.items():
        for name in groups:
            members[name].add(host)
    hierarchy = Hierarchy(
        depth=depth,
        ancestors=frozen,
        host_groups=host_groups,
        members={k: frozenset(v) for k, v in members.items()},
    )
    return hierarchy, problems


def _host_groups(tree: Tree, ancestors: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    direct: dict[str, list[str]] = {host: [] for host in tree.hosts}
    for name, group in tree.groups.items():
        for host in group.hosts:
            direct[host].append(name)
    # Hosts with the same direct groups share one set (ranges make many such hosts).
    shared: dict[frozenset[str], frozenset[str]] = {}
    result: dict[str, frozenset[str]] = {}
    for host, names in direct.items():
        key = frozenset(names)
        if key not in shared:
            shared[key] = key.union({"all"}, *(ancestors[name] for name in key))
        result[host] = shared[key]
    return result
