"""ansible_ssh_common_args: validated on load, and trust notes from the connector's own parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import InventoryError
from agent.inventory import load_inventory


def ssh_host(tmp_path: Path, args: str) -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "all:\n  children:\n    adfs:\n      hosts:\n        adfs01.corp.example:\n"
        "          ansible_connection: ssh\n"
        f"          ansible_ssh_common_args: \"{args}\"\n"
    )
    return path


@pytest.mark.parametrize(
    ("args", "note"),
    [
        ("-o StrictHostKeyChecking=no", "disabled"),
        ("-o StrictHostKeyChecking=false", "disabled"),
        ("-o 'StrictHostKeyChecking no'", "disabled"),
        ("-o StrictHostKeyChecking=accept-new", "accepted on first use"),
        ("-o 'StrictHostKeyChecking accept-new'", "accepted on first use"),
        ("-o UserKnownHostsFile=/dev/null", None),  # strict checking against no known hosts
        ("-o ProxyJump=audit@bastion.corp.example:22", None),
    ],
)
def test_trust_notes_follow_what_the_connector_will_do(
    tmp_path: Path, args: str, note: str | None
) -> None:
    notes = load_inventory(ssh_host(tmp_path, args)).hosts[0].connection.trust_notes()
    if note is None:
        assert notes == ()
    else:
        assert len(notes) == 1
        assert note in notes[0]


@pytest.mark.parametrize(
    "args",
    ["-o StrictHostKeyChecking=maybe", "-o ProxyJump=bastion:99999", "-o 'unbalanced"],
)
def test_bad_ssh_options_are_input_errors_with_line_and_key(tmp_path: Path, args: str) -> None:
    path = ssh_host(tmp_path, args)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    problem = caught.value.problems[0]
    assert (problem.file, problem.line, problem.key) == (str(path), 7, "ansible_ssh_common_args")
