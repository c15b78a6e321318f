"""Variable precedence, which follows Ansible's defaults exactly (hash_behaviour=replace).

Lowest first: the ``all`` group in the inventory file < the host's other groups in the inventory
file (by depth, then ansible_group_priority, then name) < group_vars/all < group_vars/<group>
(same order) < the host in the inventory file < host_vars/<host>.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.inventory import PRECEDENCE, load_inventory

#: Every layer of the test inventory, lowest precedence first.
LAYERS = (
    "all_inventory",
    "parent_inventory",
    "child_inventory",
    "group_vars_all",
    "group_vars_parent",
    "group_vars_child",
    "host_inventory",
    "host_vars",
)


def write_layers(root: Path, present: set[str], key: str = "probe", value: Any = None) -> Path:
    """An inventory all > parent > child > h1.example, setting `key` in the layers present."""

    def var(layer: str) -> dict[str, Any] | None:
        if layer not in present:
            return None
        return {key: layer if value is None else value(layer)}

    inventory = {
        "all": {
            "vars": var("all_inventory"),
            "children": {
                "parent": {
                    "vars": var("parent_inventory"),
                    "children": {
                        "child": {
                            "vars": var("child_inventory"),
                            "hosts": {"h1.example": var("host_inventory")},
                        }
                    },
                }
            },
        }
    }
    root.mkdir(parents=True)
    path = root / "hosts.yaml"
    path.write_text(yaml.safe_dump(inventory))
    files = {
        "group_vars_all": "group_vars/all.yml",
        "group_vars_parent": "group_vars/parent.yml",
        "group_vars_child": "group_vars/child.yml",
        "host_vars": "host_vars/h1.example.yml",
    }
    for layer, relative in files.items():
        content = var(layer)
        if content is not None:
            (root / relative).parent.mkdir(exist_ok=True)
            (root / relative).write_text(yaml.safe_dump(content))
    return path


def test_precedence_constant_is_ansibles_default() -> None:
    assert PRECEDENCE == (
        "all_inventory",
        "groups_inventory",
        "all_group_vars",
        "groups_group_vars",
        "host_inventory",
        "host_vars",
    )


def test_highest_layer_present_wins_for_every_combination(tmp_path: Path) -> None:
    for count in range(1, len(LAYERS) + 1):
        for index, present in enumerate(itertools.combinations(LAYERS, count)):
            path = write_layers(tmp_path / f"c{count}-{index}", set(present))
            host = load_inventory(path).hosts[0]
            assert host.vars["probe"] == present[-1], present


def test_typed_settings_follow_the_same_precedence(tmp_path: Path) -> None:
    seconds = {layer: 10 * (i + 1) for i, layer in enumerate(LAYERS)}
    for top in range(len(LAYERS)):
        present = set(LAYERS[: top + 1])
        path = write_layers(
            tmp_path / str(top), present, "mfa_clock_skew_max_seconds", seconds.__getitem__
        )
        declared = load_inventory(path).hosts[0].declared
        assert declared.clock_skew_max_seconds == seconds[LAYERS[top]]


def test_group_vars_all_beats_a_child_groups_inventory_vars(tmp_path: Path) -> None:
    # Ansible's documented order (inventory group vars < group_vars/all); often a surprise.
    path = write_layers(tmp_path / "x", {"child_inventory", "group_vars_all"})
    assert load_inventory(path).hosts[0].vars["probe"] == "group_vars_all"


def _siblings(root: Path, inventory: str, files: Mapping[str, str] | None = None) -> Any:
    root.mkdir(parents=True, exist_ok=True)
    (root / "hosts.yaml").write_text(inventory)
    for relative, content in (files or {}).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    return load_inventory(root / "hosts.yaml").hosts[0].vars["probe"]


SIBLINGS = """
beta:
  vars: {probe: beta}
  hosts: {h1.example: }
alpha:
  vars: {probe: alpha%s}
  hosts: {h1.example: }
"""


def test_siblings_of_equal_depth_apply_in_name_order(tmp_path: Path) -> None:
    assert _siblings(tmp_path, SIBLINGS % "") == "beta"


def test_group_priority_reorders_siblings(tmp_path: Path) -> None:
    assert _siblings(tmp_path, SIBLINGS % ", ansible_group_priority: 5") == "alpha"


def test_group_priority_in_group_vars_is_ignored_as_in_ansible(tmp_path: Path) -> None:
    files = {"group_vars/alpha.yml": "ansible_group_priority: 5\n"}
    assert _siblings(tmp_path, SIBLINGS % "", files) == "beta"


def test_sibling_group_vars_files_apply_in_name_and_priority_order(tmp_path: Path) -> None:
    files = {
        "group_vars/alpha.yml": "probe: alpha-file\n",
        "group_vars/beta.yml": "probe: beta-file\n",
    }
    assert _siblings(tmp_path / "a", SIBLINGS % "", files) == "beta-file"
    prioritised = SIBLINGS % ", ansible_group_priority: 5"
    assert _siblings(tmp_path / "b", prioritised, files) == "alpha-file"


def test_deeper_group_beats_shallower_whatever_the_name(tmp_path: Path) -> None:
    inventory = """
all:
  children:
    zeta:
      vars: {probe: zeta}
      hosts: {h1.example: }
    outer:
      children:
        aaa:
          vars: {probe: aaa}
          hosts: {h1.example: }
"""
    assert _siblings(tmp_path, inventory) == "aaa"


def test_depth_is_the_longest_path_from_all(tmp_path: Path) -> None:
    # 'early' is both a child of all and a grandchild; its depth is 2, so it beats 'middle' (1).
    inventory = """
all:
  children:
    early:
      vars: {probe: early}
      hosts: {h1.example: }
    middle:
      vars: {probe: middle}
      hosts: {h1.example: }
    top:
      children:
        early:
"""
    assert _siblings(tmp_path, inventory) == "early"


def test_a_later_value_replaces_the_whole_key(tmp_path: Path) -> None:
    path = write_layers(
        tmp_path / "x",
        {"parent_inventory", "host_inventory"},
        "mfa_networks",
        lambda layer: (
            {"perimeter": ["192.0.2.0/24"]}
            if layer == "parent_inventory"
            else {"internal": ["10.0.0.0/8"]}
        ),
    )
    declared = load_inventory(path).hosts[0].declared
    assert declared.perimeter == ()
    assert [str(n) for n in declared.internal] == ["10.0.0.0/8"]


@pytest.mark.parametrize(
    ("layer", "expected"),
    [("host_vars", "host_vars"), ("group_vars_child", "host_inventory")],
)
def test_host_vars_files_beat_host_inventory_vars(
    tmp_path: Path, layer: str, expected: str
) -> None:
    path = write_layers(tmp_path / "x", {"host_inventory", layer})
    assert load_inventory(path).hosts[0].vars["probe"] == expected


def test_inventory_wide_settings_prefer_group_vars_all(tmp_path: Path) -> None:
    root = tmp_path / "x"
    root.mkdir()
    (root / "hosts.yaml").write_text(
        "all:\n  vars:\n    mfa_deployment: {provider: none}\n  hosts: {h1.example: }\n"
    )
    (root / "group_vars").mkdir()
    (root / "group_vars" / "all.yml").write_text("mfa_deployment: {provider: per_user}\n")
    assert load_inventory(root / "hosts.yaml").deployment == {"provider": "per_user"}
