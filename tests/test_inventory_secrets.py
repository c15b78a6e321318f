"""Secrets: env lookups, inline passwords, and that no value ever shows."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path
from textwrap import dedent

import pytest

from agent.errors import InputError, InventoryError
from agent.inventory import Secret, load_inventory

#: A password distinctive enough that finding it anywhere means it leaked.
PASSWORD = "Zq7-Distinctive-Hunter2-Pw"


def write(root: Path, inventory: str) -> Path:
    path = root / "hosts.yaml"
    path.write_text(dedent(inventory).lstrip("\n"), encoding="utf-8")
    return path


ENV_INVENTORY = """
all:
  vars:
    ansible_password: "{{ lookup('env', 'MFA_TEST_WINRM_PW') }}"
    mfa_directory:
      url: ldaps://dc01.corp.example
      base_dn: DC=corp,DC=example
      bind_dn: CN=svc,DC=corp,DC=example
      bind_password: '{{ lookup("env", "MFA_TEST_LDAP_PW") }}'
  children:
    adfs:
      hosts:
        adfs01.corp.example:
        adfs02.corp.example:
    jump:
      hosts:
        jump.corp.example:
          ansible_password: "{{lookup('env','MFA_TEST_JUMP_PW')}}"
"""


def test_env_lookups_become_env_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFA_TEST_WINRM_PW", PASSWORD)
    inv = load_inventory(write(tmp_path, ENV_INVENTORY))
    secret = inv.hosts[0].connection.password
    assert secret is not None
    assert (secret.source, secret.env_name, str(secret)) == (
        "env",
        "MFA_TEST_WINRM_PW",
        "env:MFA_TEST_WINRM_PW",
    )
    assert secret.is_available()
    assert secret.reveal() == PASSWORD
    assert inv.warnings == ()


def test_missing_env_vars_are_named_with_where_they_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MFA_TEST_WINRM_PW", "MFA_TEST_LDAP_PW", "MFA_TEST_JUMP_PW"):
        monkeypatch.delenv(name, raising=False)
    path = write(tmp_path, ENV_INVENTORY)
    inv = load_inventory(path)
    problems = inv.missing_secrets()
    by_key = {(p.key, p.line): p for p in problems}
    assert set(by_key) == {
        ("ansible_password", 3),
        ("mfa_directory.bind_password", 8),
        ("ansible_password", 17),
    }
    winrm = by_key[("ansible_password", 3)]
    assert winrm.file == str(path)
    assert "MFA_TEST_WINRM_PW" in winrm.message
    assert "adfs01.corp.example" in winrm.message
    assert "adfs02.corp.example" in winrm.message
    assert "MFA_TEST_LDAP_PW" in by_key[("mfa_directory.bind_password", 8)].message
    jump_only = inv.missing_secrets([h for h in inv.hosts if h.name == "jump.corp.example"])
    assert {p.line for p in jump_only} == {8, 17}
    monkeypatch.setenv("MFA_TEST_WINRM_PW", "x")
    monkeypatch.setenv("MFA_TEST_LDAP_PW", "x")
    monkeypatch.setenv("MFA_TEST_JUMP_PW", "x")
    assert inv.missing_secrets() == []


def test_reveal_of_unset_env_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MFA_TEST_UNSET", raising=False)
    secret = Secret.from_env("MFA_TEST_UNSET")
    assert not secret.is_available()
    with pytest.raises(InputError, match="MFA_TEST_UNSET") as info:
        secret.reveal()
    assert info.value.problems[0].key == "MFA_TEST_UNSET"


def test_secret_is_frozen_and_masked() -> None:
    secret = Secret.inline(PASSWORD)
    assert (secret.source, secret.env_name) == ("inline", None)
    assert str(secret) == repr(secret) == f"{secret}" == "<inline secret>"
    with pytest.raises(AttributeError):
        secret._value = "x"  # type: ignore[misc]
    assert copy.deepcopy(secret) is secret
    assert pickle.loads(pickle.dumps(secret)) == secret  # noqa: S301 - our own bytes
    assert Secret.inline(PASSWORD) == secret != Secret.from_env("X")
    assert len({secret, Secret.inline(PASSWORD)}) == 1
    with pytest.raises(ValueError, match="exactly one"):
        Secret()


INLINE_INVENTORY = f"""
all:
  vars:
    mfa_directory:
      url: ldaps://dc01.corp.example
      base_dn: DC=corp,DC=example
      bind_dn: CN=svc,DC=corp,DC=example
      bind_password: {PASSWORD}
  children:
    adfs:
      hosts:
        adfs01.corp.example:
          ansible_password: {PASSWORD}
          ansible_become_password: {PASSWORD}
          vault_token: {PASSWORD}
"""


def test_inline_passwords_work_warn_and_never_show(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, INLINE_INVENTORY))
    host = inv.hosts[0]
    assert host.connection.password == Secret.inline(PASSWORD)
    assert host.connection.password is not None
    assert host.connection.password.reveal() == PASSWORD
    assert inv.directory is not None
    assert inv.directory.bind_password is not None
    assert inv.directory.bind_password.source == "inline"
    assert inv.warnings == (
        "group all: mfa_directory.bind_password is written inline in the inventory; "
        "use {{ lookup('env', 'NAME') }}",
        "adfs01.corp.example: ansible_password is written inline in the inventory; "
        "use {{ lookup('env', 'NAME') }}",
    )
    assert inv.missing_secrets() == []
    shown = [
        repr(inv),
        str(inv),
        repr(host),
        repr(host.connection),
        repr(inv.directory),
        repr(dict(host.vars)),
        str(dict(host.vars)),
        repr(inv.warnings),
        repr(dataclasses.asdict(host.connection)),
        repr(dataclasses.asdict(inv.directory)),
        repr(copy.deepcopy(host.connection)),
        host.connection.describe(),
        repr(host.connection.trust_notes()),
    ]
    for text in shown:
        assert PASSWORD not in text


@pytest.mark.parametrize(
    "inventory",
    [
        # a YAML syntax error on the password's line
        f"adfs:\n  hosts:\n    a.example:\n      ansible_password: '{PASSWORD}\n",
        # a duplicate key holding the password
        f"adfs:\n  hosts:\n    a.example:\n      ansible_password: {PASSWORD}\n"
        f"      ansible_password: {PASSWORD}x\n",
        # the password conflicting between two definitions of the host
        f"adfs:\n  hosts:\n    a.example:\n      ansible_password: {PASSWORD}\n"
        f"mfa_server:\n  hosts:\n    a.example:\n      ansible_password: other-{PASSWORD}\n",
        # the password in a wrongly typed place
        f"adfs:\n  hosts:\n    a.example:\n      ansible_port: {PASSWORD}\n",
        f"adfs:\n  hosts:\n    a.example:\n      ansible_password: !!int {PASSWORD}\n",
        f"all:\n  vars:\n    mfa_directory:\n      url: ldaps://svc:{PASSWORD}@dc01/\n",
        f"adfs:\n  hosts:\n    a.example:\n      ansible_password: '{{{{ {PASSWORD} }}}}'\n",
        f"all:\n  vars:\n    mfa_directory:\n      bind_password: {PASSWORD}\n      bad: 1\n",
        f"adfs:\n  hosts:\n    a.example:\n      ansible_password: [{PASSWORD}]\n",
    ],
)
def test_errors_never_contain_the_password(tmp_path: Path, inventory: str) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(write(tmp_path, inventory))
    assert PASSWORD not in str(info.value)
    assert all(PASSWORD not in str(p) for p in info.value.problems)


def test_unsafe_tag_writes_a_literal_password_with_braces(tmp_path: Path) -> None:
    path = write(
        tmp_path, "adfs:\n  hosts:\n    a.example:\n      ansible_password: !unsafe 'a{{b'\n"
    )
    password = load_inventory(path).hosts[0].connection.password
    assert password is not None
    assert password.reveal() == "a{{b"


def test_secret_looking_ignored_vars_are_masked_in_vars(tmp_path: Path) -> None:
    host = load_inventory(write(tmp_path, INLINE_INVENTORY)).hosts[0]
    assert host.vars["ansible_become_password"] == Secret.inline(PASSWORD)
    assert host.vars["vault_token"] == Secret.inline(PASSWORD)
    assert host.vars["ansible_password"] == Secret.inline(PASSWORD)
    assert host.vars["mfa_directory"]["bind_password"] == Secret.inline(PASSWORD)
