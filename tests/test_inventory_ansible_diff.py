"""Differential tests: mfa-agent reads inventories exactly as Ansible itself does.

For every inventory of the corpus, the hosts, the groups (with their members) and every host's
variables after precedence must equal what ``ansible-inventory --list --vars`` prints (run as a
subprocess from the test venv); templated values must equal what Ansible resolves (ad-hoc
``debug``). Vault fixtures are made by the real ``ansible-vault`` here, never pasted.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agent.inventory import load_inventory
from agent.inventory.loader import effective_values
from agent.inventory.templates import Secret
from agent.inventory.vault import VaultKeys, collect_passwords
from agent.inventory.yamlload import Tagged
from tests.ansible_oracle import (
    debug_vars,
    encrypt_file,
    encrypt_string,
    hosts_of,
    inventory_list,
    memberships,
)
from tests.conftest import require_or_fail


@pytest.fixture(autouse=True)
def _ansible_installed() -> None:
    """ansible-core comes with the test extra: missing, these tests fail in CI (never pass)."""
    found = shutil.which("ansible-inventory", path=str(Path(sys.executable).parent))
    require_or_fail(found is not None, "ansible-core (the test extra)")


VAULT_PASSWORD = "correct horse battery staple"


def _plain(value: Any) -> Any:
    """Our raw value in the shape ansible-inventory's JSON has."""
    if isinstance(value, Tagged) and value.tag == "!vault":
        return {"__ansible_vault": value.content}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return json.loads(json.dumps(value))


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def assert_same_as_ansible(
    root: Path, sources: list[str], vault_file: Path | None = None
) -> dict[str, Any]:
    paths = [root / s for s in sources]
    listing = inventory_list(paths, root, vault_file)
    keys = collect_passwords([str(vault_file)], [], False, None) if vault_file else VaultKeys()
    ours = effective_values(paths, vault=keys)
    theirs_vars = listing["_meta"]["hostvars"]
    assert set(ours) == hosts_of(listing)
    for host, values in ours.items():
        assert _plain(values) == theirs_vars.get(host, {}), host
    inventory = load_inventory(paths, vault=keys)
    ours_groups = {g: set(m) for g, m in inventory.groups.items() if m}
    theirs_groups = {g: m for g, m in memberships(listing).items() if m}
    assert ours_groups == theirs_groups
    return listing


INI_BASIC = {
    "hosts": """
        # comment line
        ; another comment
        loose01 a=1 b=a\\b c='x y' d="05" e=True f=[1,2] g={'k':1} h=foo#bar i=1.5
        [adfs_servers]
        adfs01.corp.example ansible_host=10.0.0.5 ansible_port=5986
        adfs[02:03].corp.example:15986 ansible_user='CORP\\\\svc'  # trailing comment

        [adfs_servers:vars]
        v1=23 # comment after a literal
        v2=a\\b
        v3 = 'quoted'
        v4=True
        v5=foo # not a literal
        v6=[1, 'two']
        v7=None
        v8={'a': {'b': 1}}
        v9="05"

        [mfa_portal]
        portal[a:c].dmz.example

        [windows:children]
        adfs_servers
        mfa_portal

        [windows:vars]
        ansible_connection=winrm
        v1=from-parent

        [all:vars]
        ansible_winrm_transport=ntlm
        v4=False
        """,
}

YAML_WITH_VARS = {
    "inventory.yml": """
        all:
          vars:
            level: all-inventory
            shared: {a: 1}
          children:
            adfs:
              hosts:
                adfs[01:02].corp.example:
                  level: host-inventory
              vars:
                level: adfs-inventory
                ansible_group_priority: 5
            mfa_server:
              hosts:
                adfs01.corp.example:
                mfa01.corp.example:
              vars:
                level: mfa-inventory
                ansible_group_priority: 2
            perimeter:
              children:
                user_portal:
                  hosts:
                    portal01.dmz.example:
        """,
    "group_vars/all.yml": "gv_all: 1\nlevel: all-group-vars\n",
    "group_vars/adfs/10-first.yml": "layered: first\nkeep: 1\n",
    "group_vars/adfs/20-second.yaml": "layered: second\n",
    "group_vars/perimeter": "zone: dmz\n",
    "group_vars/mfa_server.json": '{"json_var": [1, 2], "level": "mfa-group-vars"}',
    "host_vars/adfs02.corp.example.yml": "level: host-vars\n",
}


def test_ini_values_types_ranges_children(tmp_path: Path) -> None:
    write_tree(tmp_path, INI_BASIC)
    assert_same_as_ansible(tmp_path, ["hosts"])


def test_ini_with_ini_extension_and_group_vars(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "hosts.ini": """
                [adfs]
                adfs01 x=1
                [adfs:vars]
                x=2
                y=group
                """,
            "group_vars/adfs.yml": "y: group-vars\nz: 3\n",
            "host_vars/adfs01.yml": "x: host-vars\n",
        },
    )
    assert_same_as_ansible(tmp_path, ["hosts.ini"])


def test_yaml_precedence_group_vars_directories_priority(tmp_path: Path) -> None:
    write_tree(tmp_path, YAML_WITH_VARS)
    assert_same_as_ansible(tmp_path, ["inventory.yml"])


def test_format_is_chosen_by_content_not_extension(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "yaml_without_extension": "all:\n  hosts:\n    y1:\n      kind: yaml\n",
            "ini_without_extension": "i1 kind=ini\n[g]\ni2\n",
        },
    )
    assert_same_as_ansible(tmp_path, ["yaml_without_extension", "ini_without_extension"])


def test_directory_source_with_mixed_formats(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "inv/01-hosts.ini": "[adfs]\nadfs01 src=ini\n[adfs:vars]\nfrom_ini=1\n",
            "inv/02-more.yml": "adfs:\n  hosts:\n    adfs02:\n      src: yaml\n",
            "inv/README.md": "not an inventory\n",
            "inv/notes.txt": "ignored too\n",
            "inv/.hidden": "[x]\nhidden\n",
            "inv/group_vars/adfs.yml": "dir_group_var: yes\n",
            "inv/host_vars/adfs01.yml": "src: host_vars\n",
        },
    )
    assert_same_as_ansible(tmp_path, ["inv"])


def test_several_sources_merge_as_ansible(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "a/hosts.ini": "[adfs]\nadfs01 who=a\n[adfs:vars]\ng=a\nonly_a=1\n",
            "a/group_vars/all.yml": "base: a\nlayer: a\n",
            "b/hosts.yml": (
                "adfs:\n  hosts:\n    adfs01:\n      who: b\n    adfs02:\n  vars:\n    g: b\n"
            ),
            "b/group_vars/all.yml": "layer: b\n",
            "b/group_vars/adfs.yml": "gv: b\n",
        },
    )
    assert_same_as_ansible(tmp_path, ["a/hosts.ini", "b/hosts.yml"])
    assert_same_as_ansible(tmp_path, ["b/hosts.yml", "a/hosts.ini"])


def test_json_list_output_reads_back_as_the_original(tmp_path: Path) -> None:
    """``ansible-inventory --list`` output as an input: the same hosts, groups and vars."""
    write_tree(tmp_path, YAML_WITH_VARS)
    listing = inventory_list([tmp_path / "inventory.yml"], tmp_path)
    exported = tmp_path / "export" / "inventory.json"
    exported.parent.mkdir()
    exported.write_text(json.dumps(listing, indent=2), encoding="utf-8")
    ours = effective_values([exported])
    assert {h: _plain(v) for h, v in ours.items()} == {
        h: listing["_meta"]["hostvars"].get(h, {}) for h in hosts_of(listing)
    }
    groups = {g: set(m) for g, m in load_inventory(exported).groups.items() if m}
    assert groups == {g: m for g, m in memberships(listing).items() if m}


def test_json_list_output_with_inventory_wide_settings_copied_into_hosts(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "inventory.yml": """
                all:
                  vars:
                    mfa_deployment: {licensing: licenses}
                    mfa_role_groups: {adfs: [adfs_servers]}
                  children:
                    adfs_servers:
                      hosts:
                        adfs01.corp.example:
                        adfs02.corp.example:
                """,
        },
    )
    listing = inventory_list([tmp_path / "inventory.yml"], tmp_path)
    listing["_meta"]["profile"] = "inventory_legacy"  # extra keys are ignored
    exported = tmp_path / "list.json"
    exported.write_text(json.dumps(listing), encoding="utf-8")
    inventory = load_inventory(exported)
    assert inventory.deployment == {"licensing": "licenses"}
    assert {h.name: h.roles for h in inventory.hosts} == {
        "adfs01.corp.example": {"adfs"},
        "adfs02.corp.example": {"adfs"},
    }


@pytest.fixture
def vault_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault-pass.txt"
    path.write_text(VAULT_PASSWORD + "\n", encoding="utf-8")
    return path


def test_vault_values_and_vault_files(tmp_path: Path, vault_file: Path) -> None:
    password = encrypt_string("Winrm-Pa55!", "ansible_password", vault_file, tmp_path)
    other = encrypt_string("not read by the agent", "api_token", vault_file, tmp_path)
    (tmp_path / "inventory.yml").write_text(
        "adfs:\n  hosts:\n    adfs01.corp.example:\n"
        + textwrap.indent(password + other, "      "),
        encoding="utf-8",
    )
    write_tree(
        tmp_path,
        {"group_vars/all/vault.yml": "vault_bind_password: Bind-Pa55\nansible_user: CORP\\svc\n"},
    )
    encrypt_file(tmp_path / "group_vars/all/vault.yml", vault_file, tmp_path)
    assert_same_as_ansible(tmp_path, ["inventory.yml"], vault_file)
    keys = collect_passwords([str(vault_file)], [], False, None)
    host = load_inventory(tmp_path / "inventory.yml", vault=keys).hosts[0]
    assert host.connection.password is not None
    assert host.connection.password.source == "vault"
    assert host.connection.password.reveal() == "Winrm-Pa55!"
    assert host.connection.user == "CORP\\svc"
    assert "Winrm-Pa55!" not in repr(host) + str(dict(host.vars))


def test_labelled_vault_id(tmp_path: Path, vault_file: Path) -> None:
    text = encrypt_string("Labelled-Pa55", "ansible_password", vault_file, tmp_path, "prod")
    assert "$ANSIBLE_VAULT;1.2;AES256;prod" in text
    (tmp_path / "inventory.yml").write_text(
        "adfs:\n  hosts:\n    a1:\n" + textwrap.indent(text, "      "), encoding="utf-8"
    )
    # As Ansible: the labelled password opens it, and so does the same password unlabelled.
    for ids, files in (([f"prod@{vault_file}"], []), ([], [str(vault_file)])):
        keys = collect_passwords(files, ids, False, None)
        secret = load_inventory(tmp_path / "inventory.yml", vault=keys).hosts[0].connection
        assert secret.password is not None
        assert secret.password.reveal() == "Labelled-Pa55"


def test_templates_resolve_as_ansible_resolves_them(tmp_path: Path, vault_file: Path) -> None:
    vaulted = encrypt_string("Templ-Pa55", "vault_winrm_password", vault_file, tmp_path)
    write_tree(
        tmp_path,
        {
            "hosts.ini": """
                [adfs]
                adfs01 winrm_port=15986
                adfs02

                [adfs:vars]
                ansible_host={{ inventory_hostname }}.corp.example
                ansible_port={{ winrm_port | default(5986) }}
                ansible_user={{ domain }}\\\\{{ account | default('svc-audit') }}
                ansible_password={{ vault_winrm_password }}
                unrelated={{ inventory_hostname | upper }}
                """,
            "group_vars/all.yml": "domain: CORP\n" + vaulted,
        },
    )
    names = ["ansible_host", "ansible_port", "ansible_user", "ansible_password"]
    resolved = debug_vars([tmp_path / "hosts.ini"], names, tmp_path, vault_file)
    keys = collect_passwords([str(vault_file)], [], False, None)
    inventory = load_inventory(tmp_path / "hosts.ini", vault=keys)
    for host in inventory.hosts:
        password = host.connection.password
        assert isinstance(password, Secret)
        ours = [host.address, host.connection.port, host.connection.user, password.reveal()]
        assert ours == resolved[host.name], host.name
        # Variables the agent does not read are left as written.
        assert host.vars["unrelated"] == "{{ inventory_hostname | upper }}"


def test_ini_forward_declarations_repeated_hosts_and_ports(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "hosts": """
                [top:children]
                middle
                [middle:vars]
                level=middle
                [middle:children]
                leaf
                [leaf]
                h1 level=host
                h2:2222
                10.0.0.[1:3]
                [other]
                h1
                [::1]:5986
                [leaf:vars]
                level=leaf
                [top:vars]
                level=top
                [all:vars]
                level=all
                """,
            "group_vars/middle.yml": "gv: middle\n",
            "group_vars/leaf/main.yml": "gv: leaf\n",
        },
    )
    assert_same_as_ansible(tmp_path, ["hosts"])


def test_yaml_ports_single_names_and_vars_of_vault_encrypted_host_vars(
    tmp_path: Path, vault_file: Path
) -> None:
    write_tree(
        tmp_path,
        {
            "inv.yaml": """
                adfs:
                  hosts:
                    adfs01.corp.example:5986:
                    adfs02.corp.example:
                      ansible_port: 15986
                  children: mfa_server
                mfa_server:
                  hosts: mfa01.corp.example
                """,
            "host_vars/adfs02.corp.example/vault.yml": "ansible_password: Pw-HostVars\n",
            "host_vars/adfs02.corp.example/plain.yml": "plain: 1\n",
        },
    )
    encrypt_file(tmp_path / "host_vars/adfs02.corp.example/vault.yml", vault_file, tmp_path)
    assert_same_as_ansible(tmp_path, ["inv.yaml"], vault_file)


def test_vault_encrypted_inventory_file(tmp_path: Path, vault_file: Path) -> None:
    write_tree(tmp_path, INI_BASIC)
    encrypt_file(tmp_path / "hosts", vault_file, tmp_path)
    assert (tmp_path / "hosts").read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert_same_as_ansible(tmp_path, ["hosts"], vault_file)
