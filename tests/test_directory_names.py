"""Names the directory is asked about (group, DNs, allow-list entries) hold no control characters.

A NUL would cut the name short in C code and LDAP tooling, an escape sequence would disguise it
in a terminal report: such a value is an inventory error naming file, line and key (exit 3).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import InventoryError
from agent.inventory import load_inventory
from tests.conftest import CliRun

CONTROLS = {"NUL": "\\0", "ESC": "\\e", "DEL": "\\x7f", "C1 NEL": "\\N", "newline": "\\n"}
BASE = (
    "all:\n"
    "  vars:\n"
    "    mfa_directory:\n"
    "      url: ldaps://dc1.lab.example\n"
    "      base_dn: {base_dn}\n"
    "      group: {group}\n"
    "    mfa_phonefactor_admins_allowed:\n"
    "      - svc-adfs\n"
    "      - {allowed}\n"
)
GOOD = {
    "base_dn": '"DC=lab,DC=example"',
    "group": '"PhoneFactor Admins"',
    "allowed": '"LAB\\\\svc"',
}


def write(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(BASE.format(**{**GOOD, **values}), encoding="utf-8")
    return path


def test_the_names_used_below_are_otherwise_valid(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path))
    assert inventory.directory is not None
    assert inventory.directory.group == "PhoneFactor Admins"


@pytest.mark.parametrize("control", list(CONTROLS.values()), ids=list(CONTROLS))
@pytest.mark.parametrize(
    ("key", "line", "where"),
    [
        ("group", 6, "mfa_directory.group"),
        ("base_dn", 5, "mfa_directory.base_dn"),
        ("allowed", 9, "mfa_phonefactor_admins_allowed[1]"),
    ],
)
def test_control_characters_in_directory_names_are_refused(
    tmp_path: Path, control: str, key: str, line: int, where: str
) -> None:
    value = GOOD[key][:-1] + control + "x" + '"'
    path = write(tmp_path, **{key: value})
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (str(path), line)
    assert problem.key is not None and problem.key.endswith(where)
    assert "must not contain control characters (found U+" in problem.message


def test_the_command_line_refuses_it_with_exit_3(
    tmp_path: Path, run_cli: Callable[..., CliRun]
) -> None:
    path = write(tmp_path, group='"PhoneFactor Admins\\0"')
    run = run_cli("inventory", "-i", str(path))
    assert run.code == 3
    assert "must not contain control characters (found U+0000)" in run.err
    assert "\0" not in run.err and "Traceback" not in run.err
