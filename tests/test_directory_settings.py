"""``mfa_directory.auth``: simple (the default) or kerberos, and what each requires.

Every problem names the file, the line and the key, like the rest of the inventory validation.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from agent.errors import InventoryError, Problem
from agent.inventory import DirectorySettings, load_inventory


def inventory(tmp_path: Path, body: str) -> Path:
    """hosts.yaml whose ``all`` vars hold ``mfa_directory`` with `body` (YAML, dedented)."""
    indented = "\n".join(f"      {line}" for line in dedent(body).strip().splitlines())
    path = tmp_path / "hosts.yaml"
    path.write_text(f"all:\n  vars:\n    mfa_directory:\n{indented}\n", encoding="utf-8")
    return path


def load(tmp_path: Path, body: str) -> DirectorySettings:
    directory = load_inventory(inventory(tmp_path, body)).directory
    assert directory is not None
    return directory


def problems(tmp_path: Path, body: str) -> tuple[Path, list[Problem]]:
    path = inventory(tmp_path, body)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    return path, caught.value.problems


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, text in enumerate(lines, 1) if needle in text)


def test_simple_is_the_default(tmp_path: Path) -> None:
    assert load(tmp_path, "url: ldaps://dc1.lab.example\nbase_dn: DC=lab").auth == "simple"


def test_kerberos_needs_no_bind_dn_or_password(tmp_path: Path) -> None:
    directory = load(
        tmp_path,
        """
        url: ldaps://dc1.lab.example
        base_dn: DC=lab,DC=example
        auth: kerberos
        """,
    )
    assert (directory.auth, directory.bind_dn, directory.bind_password) == ("kerberos", None, None)
    assert directory.trust_notes() == ()


def test_kerberos_to_an_address_with_server_name_is_fine(tmp_path: Path) -> None:
    directory = load(
        tmp_path,
        """
        urls: [ldaps://10.0.0.5, ldaps://10.0.0.6]
        base_dn: DC=lab,DC=example
        auth: kerberos
        server_name: dc1.lab.example
        """,
    )
    assert directory.server_name == "dc1.lab.example"


def test_kerberos_with_bind_credentials_names_each_key(tmp_path: Path) -> None:
    path, found = problems(
        tmp_path,
        """
        url: ldaps://dc1.lab.example
        base_dn: DC=lab,DC=example
        auth: kerberos
        bind_dn: CN=reader,DC=lab,DC=example
        bind_password: "{{ lookup('env', 'X') }}"
        """,
    )
    assert [(p.file, p.line, p.key) for p in found] == [
        (str(path), line_of(path, "bind_dn:"), "mfa_directory.bind_dn"),
        (str(path), line_of(path, "bind_password:"), "mfa_directory.bind_password"),
    ]
    assert found[0].message == (
        "auth: kerberos binds with the Kerberos credential cache (kinit, KRB5CCNAME), not a DN "
        "and password: remove 'bind_dn'"
    )
    assert found[1].message.endswith("remove 'bind_password'")


def test_kerberos_with_only_a_password_is_one_problem(tmp_path: Path) -> None:
    """Not also 'bind_dn and bind_password go together': that rule is for simple binds."""
    _, found = problems(
        tmp_path,
        "url: ldaps://dc1.lab.example\nbase_dn: DC=x\nauth: kerberos\nbind_password: pw",
    )
    assert [p.key for p in found] == ["mfa_directory.bind_password"]


def test_kerberos_to_an_address_needs_a_name(tmp_path: Path) -> None:
    path, found = problems(
        tmp_path,
        """
        urls:
          - ldaps://dc1.lab.example
          - ldaps://10.0.0.6:636
          - ldaps://[2001:db8::6]
        base_dn: DC=lab,DC=example
        auth: kerberos
        """,
    )
    assert [(p.line, p.key) for p in found] == [
        (line_of(path, "10.0.0.6"), "mfa_directory.urls[1]"),
        (line_of(path, "2001:db8::6"), "mfa_directory.urls[2]"),
    ]
    assert found[0].message == (
        "auth: kerberos needs the domain controller's DNS name for its service ticket "
        "(ldap/<name>), not the address 10.0.0.6: write the name in the URL or set server_name"
    )


def test_an_unknown_auth_is_refused_with_the_choices(tmp_path: Path) -> None:
    path, found = problems(tmp_path, "url: ldaps://dc1.lab.example\nbase_dn: DC=x\nauth: ntlm")
    assert [(p.line, p.key) for p in found] == [(line_of(path, "auth:"), "mfa_directory.auth")]
    assert found[0].message == "must be one of simple, kerberos, not 'ntlm'"


def test_simple_still_pairs_bind_dn_and_password(tmp_path: Path) -> None:
    _, found = problems(
        tmp_path, "url: ldaps://dc1.lab.example\nbase_dn: DC=x\nauth: simple\nbind_dn: CN=a"
    )
    assert [p.message for p in found] == [
        "bind_dn and bind_password go together; 'bind_password' is missing"
    ]


def test_the_example_documents_auth(repo: Path) -> None:
    text = (repo / "inventory" / "example.yaml").read_text(encoding="utf-8")
    assert "      auth: simple\n" in text
    assert "kerberos" in text[text.index("mfa_directory:") :]
    directory = load_inventory(repo / "inventory" / "example.yaml").directory
    assert directory is not None and directory.auth == "simple"
