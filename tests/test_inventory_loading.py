"""Loading valid inventories: structure, roles, groups, vars files, connections and settings."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent

import pytest

from agent.errors import InventoryError
from agent.inventory import Connection, DirectorySettings, Location, Secret, load_inventory

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "inventory"


def write(root: Path, inventory: str, files: Mapping[str, str] | None = None) -> Path:
    """Write hosts.yaml (and group_vars/host_vars files) under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "hosts.yaml"
    path.write_text(dedent(inventory).lstrip("\n"), encoding="utf-8")
    for relative, content in (files or {}).items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dedent(content).lstrip("\n"), encoding="utf-8")
    return path


# -- the example --------------------------------------------------------------------------------


def test_example_inventory_loads_cleanly() -> None:
    inv = load_inventory(REPO / "inventory" / "example.yaml")
    assert inv.warnings == ()
    names = [h.name for h in inv.hosts]
    assert names[:3] == ["adfs01.corp.example", "adfs02.corp.example", "adfs03.corp.example"]
    roles = {h.name: h.roles for h in inv.hosts}
    assert roles["mfaportal01.dmz.corp.example"] == {"user_portal"}
    assert roles["mfaws01.dmz.corp.example"] == {"mobile_app_ws"}
    assert roles["aadc01.corp.example"] == {"aad_connect"}
    assert roles["jump01.corp.example"] == frozenset()
    assert inv.directory is not None
    assert inv.directory.bind_password == Secret.from_env("MFA_LDAP_PASSWORD")
    assert set(inv.deployment) == {
        "licensing",
        "provider",
        "directory_sync",
        "app_passwords",
        "one_time_bypass_seconds",
        "trusted_ips",
    }
    json.dumps(inv.deployment)
    assert inv.phonefactor_admins_allowed is not None
    assert all(h.connection.trust_notes() == () for h in inv.hosts)


def test_example_inventory_documents_every_supported_key() -> None:
    from agent.inventory.settings import _DIRECTORY_FIELDS, CONNECTION_VARIABLES, MFA_VARIABLES

    text = (REPO / "inventory" / "example.yaml").read_text(encoding="utf-8")
    deployment_keys = (
        "licensing",
        "provider",
        "directory_sync",
        "app_passwords",
        "justification",
        "one_time_bypass_seconds",
        "trusted_ips",
        "ranges",
    )
    for key in [*CONNECTION_VARIABLES, *MFA_VARIABLES, *_DIRECTORY_FIELDS, *deployment_keys]:
        assert key in text, key
    assert "ansible_group_priority" in text


# -- structure ----------------------------------------------------------------------------------


def test_hosts_keep_order_of_first_definition_and_all_their_groups(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          hosts:
            first.example:
          children:
            windows:
              children:
                adfs:
                  hosts:
                    adfs01.example:
                    first.example:
            mfa_server:
              hosts:
                mfa01.example:
        extra:
          hosts:
            adfs01.example:
            lonely.example:
        """,
    )
    inv = load_inventory(path)
    assert [h.name for h in inv.hosts] == [
        "first.example",
        "adfs01.example",
        "mfa01.example",
        "lonely.example",
    ]
    hosts = {h.name: h for h in inv.hosts}
    assert hosts["adfs01.example"].groups == {"all", "windows", "adfs", "extra"}
    assert hosts["first.example"].groups == {"all", "windows", "adfs"}
    assert hosts["adfs01.example"].location == Location(str(path), 9)
    assert inv.groups["windows"] == {"adfs01.example", "first.example"}
    assert inv.groups["all"] == set(hosts)
    assert inv.groups["extra"] == {"adfs01.example", "lonely.example"}
    assert inv.groups["ungrouped"] == frozenset()


def test_host_only_in_all_is_ungrouped(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "all:\n  hosts:\n    solo.example:\n"))
    assert inv.hosts[0].groups == {"all", "ungrouped"}
    assert inv.groups["ungrouped"] == {"solo.example"}


def test_null_entries_and_single_name_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
          children:
            adfs:
              hosts: adfs01.example
            empty:
            mfa_server:
              hosts:
              children:
        """,
    )
    inv = load_inventory(path)
    assert [h.name for h in inv.hosts] == ["adfs01.example"]
    assert inv.groups["empty"] == frozenset()
    assert inv.groups["mfa_server"] == frozenset()


def test_roles_come_from_role_groups_and_their_children(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          children:
            adfs:
              children:
                adfs_primary:
                  children:
                    adfs_primary_dc1:
                      hosts:
                        adfs01.example:
            user_portal:
              hosts:
                both.example:
            mobile_app_ws:
              hosts:
                both.example:
            windows:
              hosts:
                plain.example:
        """,
    )
    roles = {h.name: h.roles for h in load_inventory(path).hosts}
    assert roles == {
        "adfs01.example": {"adfs"},
        "both.example": {"user_portal", "mobile_app_ws"},
        "plain.example": frozenset(),
    }


def test_ranges_and_ports_in_host_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        adfs:
          hosts:
            adfs[08:10].corp.example:5985:
              ansible_user: CORP\\svc
            node-[a:c].corp.example:
            odd[1:7:3].corp.example:
            "[2001:db8::10]:5986":
        """,
    )
    hosts = {h.name: h for h in load_inventory(path).hosts}
    assert list(hosts) == [
        "adfs08.corp.example",
        "adfs09.corp.example",
        "adfs10.corp.example",
        "node-a.corp.example",
        "node-b.corp.example",
        "node-c.corp.example",
        "odd1.corp.example",
        "odd4.corp.example",
        "odd7.corp.example",
        "2001:db8::10",
    ]
    assert hosts["adfs09.corp.example"].connection.port == 5985
    assert hosts["adfs09.corp.example"].connection.user == "CORP\\svc"
    assert hosts["node-a.corp.example"].connection.port == 5986
    assert hosts["2001:db8::10"].address == "2001:db8::10"


def test_same_host_value_written_twice_is_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        adfs:
          hosts:
            a.example: {ansible_port: 5986}
        mfa_server:
          hosts:
            a.example: {ansible_port: 5986}
        """,
    )
    assert load_inventory(path).hosts[0].roles == {"adfs", "mfa_server"}


def test_template_and_vault_values_in_ignored_keys_are_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            app_url: "https://{{ inventory_hostname }}/"
            ansible_become_password: !vault |
              $ANSIBLE_VAULT;1.1;AES256
              61626364
            custom: !whatever 12
          hosts:
            a.example:
        """,
    )
    host = load_inventory(path).hosts[0]
    assert host.vars["app_url"] == "https://{{ inventory_hostname }}/"
    assert "ANSIBLE_VAULT" not in repr(host.vars["ansible_become_password"])


# -- group_vars / host_vars -------------------------------------------------------------------


def test_group_vars_directory_form_merges_files_in_sorted_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "adfs:\n  hosts:\n    a.example:\n",
        {
            "group_vars/adfs/10-base.yml": "mfa_clock_skew_max_seconds: 100\nansible_user: base\n",
            "group_vars/adfs/20-override.yaml": "mfa_clock_skew_max_seconds: 200\n",
            "group_vars/adfs/sub/30-deeper": "ansible_port: 15986\n",
            "group_vars/adfs/.hidden.yml": "ansible_user: hidden\n",
            "group_vars/adfs/99-backup.yml~": "ansible_user: backup\n",
            "group_vars/adfs/notes.txt": "this: is ignored\n",
        },
    )
    host = load_inventory(path).hosts[0]
    assert host.declared.clock_skew_max_seconds == 200
    assert host.connection.user == "base"
    assert host.connection.port == 15986


def test_group_vars_json_and_extensionless_files(tmp_path: Path) -> None:
    group_vars = json.dumps({"mfa_networks": {"internal": ["10.1.0.0/16"]}}, indent="\t")
    path = write(
        tmp_path,
        "adfs:\n  hosts:\n    a.example:\n",
        {
            "group_vars/adfs.json": group_vars,
            "host_vars/a.example": "ansible_user: from-host-vars\n",
        },
    )
    host = load_inventory(path).hosts[0]
    assert host.declared.internal == (ipaddress.ip_network("10.1.0.0/16"),)
    assert host.connection.user == "from-host-vars"


def test_only_the_first_vars_file_is_read_and_others_warned_about(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "adfs:\n  hosts:\n    a.example:\n",
        {
            "group_vars/adfs.yml": "ansible_user: yml\n",
            "group_vars/adfs.yaml": "ansible_user: yaml\n",
            "group_vars/adfss.yml": "ansible_user: typo\n",
        },
    )
    inv = load_inventory(path)
    assert inv.hosts[0].connection.user == "yml"
    assert any("adfs.yaml is ignored" in w for w in inv.warnings)
    assert any("adfss.yml matches no group" in w for w in inv.warnings)


def test_host_vars_file_with_dots_in_the_host_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "adfs:\n  hosts:\n    adfs01.corp.example:\n",
        {"host_vars/adfs01.corp.example.yml": "ansible_port: 15986\n"},
    )
    inv = load_inventory(path)
    assert inv.hosts[0].connection.port == 15986
    assert inv.warnings == ()


def test_fixture_inventory_with_group_and_host_vars() -> None:
    inv = load_inventory(DATA / "site" / "hosts.yaml")
    hosts = {h.name: h for h in inv.hosts}
    assert hosts["adfs01.corp.example"].connection.winrm_transport == "kerberos"
    assert hosts["adfs02.corp.example"].connection.port == 15986
    assert inv.directory is not None
    assert inv.directory.urls == ("ldaps://dc01.corp.example",)


# -- digest ----------------------------------------------------------------------------------


def test_digest_covers_inventory_and_vars_files_and_not_the_location(tmp_path: Path) -> None:
    first = tmp_path / "one"
    path = write(first, "adfs:\n  hosts:\n    a.example:\n", {"group_vars/adfs.yml": "x: 1\n"})
    digest = load_inventory(path).digest
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64
    assert load_inventory(path).digest == digest
    second = tmp_path / "two"
    shutil.copytree(first, second)
    assert load_inventory(second / "hosts.yaml").digest == digest
    (second / "group_vars" / "adfs.yml").write_text("x: 2\n")
    assert load_inventory(second / "hosts.yaml").digest != digest
    (second / "group_vars" / "adfs.yml").write_text("x: 1\n")
    (second / "host_vars").mkdir()
    (second / "host_vars" / "a.example.yml").write_text("y: 1\n")
    assert load_inventory(second / "hosts.yaml").digest != digest


# -- connections -------------------------------------------------------------------------------


def _connection(tmp_path: Path, host_vars: str) -> Connection:
    body = "\n".join(f"      {line}" for line in dedent(host_vars).strip().splitlines())
    path = write(tmp_path, f"adfs:\n  hosts:\n    a.example:\n{body}\n")
    return load_inventory(path).hosts[0].connection


@pytest.mark.parametrize(
    ("host_vars", "described", "port"),
    [
        ("{}", "winrm/ntlm over https:5986", 5986),
        ("ansible_winrm_scheme: http", "winrm/ntlm over http:5985", 5985),
        ("ansible_port: 5985", "winrm/ntlm over http:5985", 5985),
        ("ansible_port: 5985\nansible_winrm_scheme: https", "winrm/ntlm over https:5985", 5985),
        ("ansible_winrm_transport: kerberos", "winrm/kerberos over https:5986", 5986),
        ("ansible_connection: ssh", "ssh/powershell on port 22", 22),
        (
            "ansible_connection: ssh\nansible_shell_type: cmd\nansible_port: 2222",
            "ssh/cmd on port 2222",
            2222,
        ),
    ],
)
def test_connection_defaults(tmp_path: Path, host_vars: str, described: str, port: int) -> None:
    connection = _connection(tmp_path, host_vars)
    assert connection.describe() == described
    assert connection.port == port


def test_connection_fields(tmp_path: Path) -> None:
    connection = _connection(
        tmp_path,
        """
        ansible_user: CORP\\svc
        ansible_password: "{{ lookup('env', 'PW') }}"
        ansible_winrm_transport: credssp
        ansible_winrm_ca_trust_path: /etc/ca.pem
        ansible_ssh_private_key_file: /k
        ansible_ssh_common_args: -o ConnectTimeout=5
        unrelated_var: 1
        ansible_become: true
        """,
    )
    assert connection == Connection(
        kind="winrm",
        port=5986,
        user="CORP\\svc",
        password=Secret.from_env("PW"),
        winrm_transport="credssp",
        winrm_ca_trust_path="/etc/ca.pem",
        ssh_private_key_file="/k",
        ssh_common_args="-o ConnectTimeout=5",
    )
    assert connection.trust_notes() == ()


def test_trust_notes_list_what_was_turned_on(tmp_path: Path) -> None:
    connection = _connection(
        tmp_path,
        """
        ansible_winrm_server_cert_validation: ignore
        mfa_allow_insecure_transport: true
        """,
    )
    assert connection.trust_notes() == (
        "TLS certificate validation disabled (ansible_winrm_server_cert_validation: ignore)",
        "insecure transport allowed (mfa_allow_insecure_transport)",
    )
    http = _connection(tmp_path, "ansible_port: 5985")
    assert http.trust_notes() == (
        "WinRM over plain HTTP without TLS (ansible_port 5985 implies ansible_winrm_scheme: http)",
    )
    ssh = _connection(
        tmp_path, "ansible_connection: ssh\nansible_ssh_common_args: -o StrictHostKeyChecking=no"
    )
    assert ssh.trust_notes() == ("SSH host key checking disabled (ansible_ssh_common_args)",)


def test_password_aliases_for_the_connection_kind_win(tmp_path: Path) -> None:
    winrm = _connection(
        tmp_path,
        """
        ansible_password: "{{ lookup('env', 'GENERIC') }}"
        ansible_winrm_password: "{{ lookup('env', 'WINRM') }}"
        ansible_ssh_pass: "{{ lookup('env', 'SSH') }}"
        """,
    )
    assert winrm.password == Secret.from_env("WINRM")
    ssh = _connection(
        tmp_path,
        """
        ansible_connection: ssh
        ansible_password: "{{ lookup('env', 'GENERIC') }}"
        ansible_ssh_pass: "{{ lookup('env', 'SSH') }}"
        """,
    )
    assert ssh.password == Secret.from_env("SSH")


def test_address_is_ansible_host_or_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        adfs:
          hosts:
            adfs01.example:
              ansible_host: 10.0.0.11
            adfs02.example:
        jump:
          hosts:
            "jump box alias!":
        """.replace("jump box alias!", "jump-alias_!"),
    )
    hosts = {h.name: h.address for h in load_inventory(path).hosts}
    assert hosts == {
        "adfs01.example": "10.0.0.11",
        "adfs02.example": "adfs02.example",
        "jump-alias_!": "jump-alias_!",
    }


# -- settings ----------------------------------------------------------------------------------


def test_directory_settings_defaults_and_networks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            mfa_directory:
              url: ldap://dc01.corp.example:389
              starttls: true
              base_dn: DC=corp,DC=example
            mfa_networks:
              perimeter: [192.0.2.0/24, "2001:db8:1::/48"]
              internal: [10.0.0.5]
            mfa_phonefactor_admins_allowed: []
            mfa_clock_skew_max_seconds: 60
          hosts:
            a.example:
        """,
    )
    inv = load_inventory(path)
    assert inv.directory == DirectorySettings(
        urls=("ldap://dc01.corp.example:389",), base_dn="DC=corp,DC=example", starttls=True
    )
    assert inv.directory.group == "PhoneFactor Admins"
    assert inv.directory.validate_certs is True
    assert inv.directory.timeout_seconds == 10
    assert inv.directory.trust_notes() == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        inv.directory.group = "x"  # type: ignore[misc]
    assert inv.phonefactor_admins_allowed == ()
    declared = inv.hosts[0].declared
    assert declared.perimeter == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8:1::/48"),
    )
    assert declared.internal == (ipaddress.ip_network("10.0.0.5/32"),)
    assert declared.clock_skew_max_seconds == 60


def test_no_settings_means_defaults(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "adfs:\n  hosts:\n    a.example:\n"))
    assert inv.directory is None
    assert inv.deployment == {}
    assert inv.phonefactor_admins_allowed is None
    assert inv.hosts[0].declared.clock_skew_max_seconds == 300
    assert inv.hosts[0].declared.perimeter == ()
    assert inv.hosts[0].connection.allow_insecure_transport is False


def test_directory_insecure_settings_are_noted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            mfa_directory:
              urls: [ldap://dc01.corp.example]
              allow_plain: true
              validate_certs: false
              base_dn: DC=corp,DC=example
        """,
    )
    directory = load_inventory(path).directory
    assert directory is not None
    assert directory.trust_notes() == (
        "TLS certificate validation disabled (mfa_directory.validate_certs)",
        "LDAP without TLS (mfa_directory.allow_plain)",
    )


def test_deployment_is_plain_validated_data_with_only_declared_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            mfa_deployment:
              licensing: mixed
              app_passwords: {allowed: true}
              trusted_ips:
                enabled: true
                ranges: [203.0.113.0/24, "2001:DB8::/32"]
        """,
    )
    deployment = load_inventory(path).deployment
    assert deployment == {
        "licensing": "mixed",
        "app_passwords": {"allowed": True},
        "trusted_ips": {"enabled": True, "ranges": ["203.0.113.0/24", "2001:db8::/32"]},
    }
    assert json.loads(json.dumps(deployment)) == deployment
    assert type(deployment) is dict


def test_settings_may_come_from_group_vars_all(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "adfs:\n  hosts:\n    a.example:\n",
        {
            "group_vars/all/directory.yml": """
                mfa_directory:
                  url: ldaps://dc01.corp.example
                  base_dn: DC=corp,DC=example
                mfa_phonefactor_admins_allowed: [CORP\\alice]
                mfa_deployment: {provider: per_user}
            """,
        },
    )
    inv = load_inventory(path)
    assert inv.directory is not None
    assert inv.phonefactor_admins_allowed == ("CORP\\alice",)
    assert inv.deployment == {"provider": "per_user"}


def test_load_accepts_str_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "adfs:\n  hosts:\n    a.example:\n")
    assert load_inventory(str(path)).path == path


def test_directory_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="directory"):
        load_inventory(tmp_path)
