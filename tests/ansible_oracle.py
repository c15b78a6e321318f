"""Ansible itself as the test oracle: ansible-inventory, ansible-vault and ad-hoc debug.

ansible-core is a test-only dependency (GPL-3): it runs as a subprocess from the test venv and
is never imported by the product or by these tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_HOME=str(home / ".ansible"),
        ANSIBLE_LOCAL_TEMP=str(home / ".ansible" / "tmp"),
        ANSIBLE_CONFIG=str(home / "no-ansible.cfg"),
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_HOST_KEY_CHECKING="false",
    )
    return env


def run(tool: str, args: list[str], cwd: Path, stdin: str | None = None) -> str:
    """Run an ansible tool; its stdout (a failure shows stderr)."""
    done = subprocess.run(
        [str(BIN / tool), *args],
        cwd=cwd,
        env=_env(cwd),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{tool} {args} failed:\n{done.stderr}"
    return done.stdout


def inventory_list(sources: list[Path], cwd: Path, vault_file: Path | None = None) -> Any:
    """``ansible-inventory --list --vars`` of `sources`, parsed."""
    args = [a for s in sources for a in ("-i", str(s))] + ["--list", "--vars"]
    if vault_file is not None:
        args += ["--vault-password-file", str(vault_file)]
    return json.loads(run("ansible-inventory", args, cwd))


def encrypt_string(value: str, name: str, vault_file: Path, cwd: Path, label: str = "") -> str:
    """``ansible-vault encrypt_string``: YAML ``name: !vault |`` text."""
    vault_id = f"{label}@{vault_file}" if label else str(vault_file)
    args = ["encrypt_string", "--vault-id", vault_id, "--name", name]
    if label:
        args += ["--encrypt-vault-id", label]
    return run("ansible-vault", [*args, value], cwd)


def encrypt_file(path: Path, vault_file: Path, cwd: Path, label: str = "") -> None:
    """``ansible-vault encrypt`` in place."""
    vault_id = f"{label}@{vault_file}" if label else str(vault_file)
    args = ["encrypt", "--vault-id", vault_id, str(path)]
    if label:
        args += ["--encrypt-vault-id", label]
    run("ansible-vault", args, cwd)


def debug_vars(
    sources: list[Path], names: list[str], cwd: Path, vault_file: Path | None = None
) -> dict[str, list[Any]]:
    """Each host's templated values of `names`, as Ansible resolves them (ad-hoc debug)."""
    message = "{{ [" + ", ".join(names) + "] | to_json }}"
    args = [a for s in sources for a in ("-i", str(s))]
    args += ["all", "-m", "ansible.builtin.debug", "-a", f"msg={message}", "-o"]
    if vault_file is not None:
        args += ["--vault-password-file", str(vault_file)]
    result: dict[str, list[Any]] = {}
    for line in run("ansible", args, cwd).splitlines():
        host, _, rest = line.partition(" | SUCCESS => ")
        if rest:
            result[host.strip()] = json.loads(json.loads(rest)["msg"])
    return result


def memberships(listing: Any) -> dict[str, set[str]]:
    """Group → every host in it or a descendant, from a ``--list`` document."""
    direct = {
        name: (set(body.get("hosts", [])), list(body.get("children", [])))
        for name, body in listing.items()
        if name != "_meta"
    }
    result: dict[str, set[str]] = {}

    def members(name: str, seen: frozenset[str]) -> set[str]:
        if name in result:
            return result[name]
        hosts, children = direct.get(name, (set(), []))
        found = set(hosts)
        for child in children:
            if child not in seen:
                found |= members(child, seen | {child})
        result[name] = found
        return found

    for name in direct:
        members(name, frozenset({name}))
    return result


def hosts_of(listing: Any) -> set[str]:
    """Every host of a ``--list`` document."""
    return set().union(*memberships(listing).values()) | set(listing["_meta"]["hostvars"])
