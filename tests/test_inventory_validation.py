"""Invalid inventories: every problem is reported, with file, line and key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent

import pytest

from agent.errors import InventoryError, Problem
from agent.inventory import load_inventory


def write(root: Path, inventory: str, files: Mapping[str, str] | None = None) -> Path:
    """Write hosts.yaml (and group_vars/host_vars files) under `root`."""
    path = root / "hosts.yaml"
    path.write_text(dedent(inventory).lstrip("\n"), encoding="utf-8")
    for relative, content in (files or {}).items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dedent(content).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return info.value.problems


def line(path: Path, needle: str) -> int:
    """The 1-based line of the first occurrence of `needle` in the file."""
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in text:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def find(problems: list[Problem], key: str | None, line_no: int | None) -> Problem:
    matches = [p for p in problems if p.key == key and p.line == line_no]
    assert len(matches) == 1, problems
    return matches[0]


def single(path: Path) -> Problem:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return problems[0]


# -- files and YAML -----------------------------------------------------------------------------


def test_missing_inventory_file(tmp_path: Path) -> None:
    problem = single(tmp_path / "nope.yaml")
    assert problem.file == str(tmp_path / "nope.yaml")
    assert "cannot read" in problem.message


def test_yaml_syntax_error_has_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    a.example:\n   bad: [\n")
    problem = single(path)
    assert "YAML syntax error" in problem.message
    assert problem.line is not None
    assert problem.line >= 4


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_bytes(b"all:\n  hosts:\n    caf\xe9:\n")
    problem = single(path)
    assert (problem.line, "UTF-8" in problem.message) == (3, True)


def test_duplicate_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          children:
            adfs:
              hosts:
                a.example:
                  ansible_port: 5986
                  ansible_port: 5986
        """,
    )
    problem = single(path)
    assert (problem.key, problem.line) == ("ansible_port", 7)
    assert "duplicate key" in problem.message
    assert "line 6" in problem.message


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("# only a comment\n", "empty"), ("- all\n", "mapping of groups")],
)
def test_empty_or_non_mapping_inventory(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    assert message in single(path).message


def test_recursive_alias(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  vars:\n    x: &loop [*loop]\n")
    assert "recursive" in single(path).message


def test_absurd_nesting(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  vars:\n    x: " + "[" * 3000 + "]" * 3000 + "\n")
    assert "nested deeper" in single(path).message


def test_unreadable_vars_file(tmp_path: Path) -> None:
    path = write(tmp_path, "adfs:\n  hosts:\n    a.example:\n")
    (tmp_path / "group_vars").mkdir()
    os.symlink(tmp_path / "missing.yml", tmp_path / "group_vars" / "adfs.yml")
    problem = single(path)
    assert problem.file == str(tmp_path / "group_vars" / "adfs.yml")
    assert "cannot read" in problem.message


def test_vars_file_errors_point_into_that_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "adfs:\n  hosts:\n    a.example:\n",
        {
            "group_vars/adfs.yml": "ansible_user: ok\nansible_port: http\n",
            "host_vars/a.example.yml": "- not\n- a mapping\n",
        },
    )
    problems = problems_of(path)
    assert len(problems) == 2
    port = find(problems, "ansible_port", 2)
    assert port.file == str(tmp_path / "group_vars" / "adfs.yml")
    [other] = [p for p in problems if p is not port]
    assert other.file == str(tmp_path / "host_vars" / "a.example.yml")
    assert "mapping" in other.message


# -- structure ----------------------------------------------------------------------------------


def test_hosts_as_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  children:\n    adfs:\n      hosts:\n        - a.example\n")
    problem = single(path)
    assert (problem.line, problem.key) == (4, "adfs.hosts")
    assert "not a list" in problem.message


@pytest.mark.parametrize(
    ("inventory", "key", "line_no", "message"),
    [
        ("adfs:\n  host:\n    a.example:\n", "adfs.host", 2, "did you mean 'hosts'"),
        ("adfs:\n  hosts: {}\n  var: {}\n", "adfs.var", 3, "did you mean 'vars'"),
        ("adfs: [a.example]\n", "adfs", 1, "must be a mapping"),
        ("adfs:\n  vars: [x]\n", "adfs.vars", 2, "must be a mapping of variables"),
        ("adfs:\n  vars: x\n", "adfs.vars", 2, "must be a mapping of variables"),
        ("adfs:\n  children: [x]\n", "adfs.children", 2, "must be a mapping"),
        ("adfs:\n  hosts:\n    a.example: [1]\n", "a.example", 3, "mapping of its variables"),
        ("adfs:\n  hosts:\n    12:\n", "12", 3, "quote numbers"),
        ("12:\n  hosts:\n", "12", 1, "group names"),
        ("adfs:\n  children:\n    all:\n", "all", 3, "'all' cannot be a child"),
        ("adfs:\n  hosts:\n    bad(name):\n", "bad(name)", 3, "parentheses"),
        ("adfs:\n  hosts:\n    web[3:1]:\n", "web[3:1]", 3, "begin <= end"),
        ("adfs:\n  vars:\n    3: x\n", "3", 3, "variable names must be strings"),
    ],
)
def test_structure_problems(
    tmp_path: Path, inventory: str, key: str, line_no: int, message: str
) -> None:
    problem = single(write(tmp_path, inventory))
    assert (problem.key, problem.line) == (key, line_no)
    assert message in problem.message


def test_group_cycle(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        a:
          children:
            b:
              children:
                c:
        c:
          children:
            a:
          hosts:
            h.example:
        """,
    )
    problem = single(path)
    assert (problem.line, problem.key) == (8, "a")
    assert "group cycle: a -> b -> c -> a" in problem.message


def test_host_defined_twice_with_conflicting_values_names_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        adfs:
          hosts:
            a.example:
              ansible_host: 10.0.0.1
              ansible_user: same
        mfa_server:
          hosts:
            a.example:
              ansible_user: same
              ansible_host: 10.0.0.2
        """,
    )
    problem = single(path)
    assert (problem.key, problem.line) == ("ansible_host", 10)
    assert "line 4 and line 10" in problem.message
    assert "a.example" in problem.message


def test_port_in_host_key_conflicting_with_host_var(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        adfs:
          hosts:
            a.example:5985:
        mfa_server:
          hosts:
            a.example:
              ansible_port: 5986
        """,
    )
    problem = single(path)
    assert (problem.key, problem.line) == ("ansible_port", 7)
    assert "line 3 and line 7" in problem.message


# -- addresses of role hosts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        ("a.example:\n      ansible_host: ''", "ansible_host", "ansible_host is empty"),
        ("a.example:\n      ansible_host:", "ansible_host", "ansible_host is empty"),
        ("a.example:\n      ansible_host: 'x y'", "ansible_host", "not a valid host name"),
        ("a.example:\n      ansible_host: 10.0.0.300", "ansible_host", "not a valid host name"),
        ("-bad-.example:", "-bad-.example", "not a valid host name"),
        ("under_score..example:", "under_score..example", "not a valid host name"),
    ],
)
def test_role_host_needs_a_valid_address(
    tmp_path: Path, entry: str, key: str, message: str
) -> None:
    path = write(tmp_path, f"adfs:\n  hosts:\n    {entry}\n")
    problem = single(path)
    assert (problem.key, problem.line) == (key, line(path, key))
    assert message in problem.message


def test_hosts_without_roles_may_have_any_name(tmp_path: Path) -> None:
    path = write(tmp_path, "misc:\n  hosts:\n    -odd-name-:\n      ansible_host: ''\n")
    assert load_inventory(path).hosts[0].address == "-odd-name-"


@pytest.mark.parametrize(
    "address",
    ["10.0.0.1", "2001:db8::1", "fe80::1%eth0", "adfs01", "adfs_01.corp.example", "a.example."],
)
def test_valid_role_addresses(tmp_path: Path, address: str) -> None:
    path = write(tmp_path, f"adfs:\n  hosts:\n    h.example:\n      ansible_host: '{address}'\n")
    assert load_inventory(path).hosts[0].address == address


# -- variable values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "key", "message"),
    [
        ("ansible_port: 0", "ansible_port", "between 1 and 65535"),
        ("ansible_port: 70000", "ansible_port", "between 1 and 65535"),
        ("ansible_port: '5986'", "ansible_port", "must be an integer, not a string"),
        ("ansible_port: true", "ansible_port", "not a boolean"),
        ("ansible_connection: psrp", "ansible_connection", "one of winrm, ssh"),
        (
            "ansible_winrm_transport: digest",
            "ansible_winrm_transport",
            "one of ntlm, kerberos, basic, certificate, credssp, not 'digest'",
        ),
        ("ansible_winrm_scheme: ftp", "ansible_winrm_scheme", "one of https, http"),
        (
            "ansible_winrm_server_cert_validation: no",
            "ansible_winrm_server_cert_validation",
            "one of validate, ignore",
        ),
        ("ansible_shell_type: bash", "ansible_shell_type", "one of powershell, cmd"),
        ("ansible_user: ''", "ansible_user", "must not be empty"),
        ("ansible_user: [a]", "ansible_user", "not a list"),
        ("ansible_user: '{{ who }}'", "ansible_user", "variable 'who' is not defined"),
        ("ansible_user: '{{ who | upper }}'", "ansible_user", "is not a template mfa-agent"),
        ("ansible_host: !vault '$ANSIBLE_VAULT'", "ansible_host", "invalid !vault value"),
        (
            "ansible_password: '{{ vault_pw }}'",
            "ansible_password",
            "variable 'vault_pw' is not defined",
        ),
        (
            "ansible_password: !vault '$ANSIBLE_VAULT'",
            "ansible_password",
            "invalid !vault value",
        ),
        ("ansible_password: 12345", "ansible_password", "must be a string"),
        ("mfa_clock_skew_max_seconds: 0", "mfa_clock_skew_max_seconds", ">= 1"),
        ("mfa_clock_skew_max_seconds: 1.5", "mfa_clock_skew_max_seconds", "integer"),
        ("mfa_allow_insecure_transport: 'yes'", "mfa_allow_insecure_transport", "true or false"),
        ("mfa_networks: [10.0.0.0/8]", "mfa_networks", "must be a mapping"),
        ("mfa_networks: {perimeter: 10.0.0.0/8}", "mfa_networks.perimeter", "must be a list"),
        (
            "mfa_networks: {perimeter: [10.0.0.0/33]}",
            "mfa_networks.perimeter[0]",
            "not a valid CIDR",
        ),
        (
            "mfa_networks: {internal: [10.1.2.3/16]}",
            "mfa_networks.internal[0]",
            "did you mean 10.1.0.0/16",
        ),
        ("mfa_networks: {dmz: []}", "mfa_networks.dmz", "unknown key 'dmz'"),
        ("mfa_netwrks: {}", "mfa_netwrks", "did you mean 'mfa_networks'"),
        ("mfa_anything: 1", "mfa_anything", "unknown agent setting"),
    ],
)
def test_host_variable_problems(tmp_path: Path, assignment: str, key: str, message: str) -> None:
    path = write(tmp_path, f"adfs:\n  hosts:\n    a.example:\n      {assignment}\n")
    problem = single(path)
    assert (problem.file, problem.line, problem.key) == (str(path), 4, key)
    assert message in problem.message


def test_nested_value_problems_point_at_their_own_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            mfa_networks:
              perimeter:
                - 192.0.2.0/24
                - 192.0.2.0/99
              internal: []
        """,
    )
    problem = single(path)
    assert (problem.line, problem.key) == (6, "mfa_networks.perimeter[1]")


@pytest.mark.parametrize(
    "key", ["mfa_directory", "mfa_deployment", "mfa_phonefactor_admins_allowed"]
)
@pytest.mark.parametrize("where", ["group", "host", "group_vars"])
def test_inventory_wide_settings_only_in_all(tmp_path: Path, key: str, where: str) -> None:
    inventory = "adfs:\n  hosts:\n    a.example:\n"
    files = {}
    if where == "group":
        inventory += f"  vars:\n    {key}: {{}}\n"
    elif where == "host":
        inventory += f"      {key}: {{}}\n"
    else:
        files["group_vars/adfs.yml"] = f"{key}: {{}}\n"
    problem = single(write(tmp_path, inventory, files))
    assert problem.key == key
    assert "whole inventory" in problem.message
    assert "'all' group" in problem.message


def test_templates_are_fine_in_keys_the_agent_ignores(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        adfs:
          hosts:
            a.example:
              ansible_become_user: "{{ admin }}"
              my_setting: !vault |
                $ANSIBLE_VAULT;1.1;AES256
                6162
        """,
    )
    assert load_inventory(path).hosts[0].vars["ansible_become_user"] == "{{ admin }}"


# -- mfa_directory and mfa_deployment -----------------------------------------------------------


DIRECTORY = """
all:
  vars:
    mfa_directory:
{body}
"""


def directory_problems(tmp_path: Path, body: str) -> tuple[Path, list[Problem]]:
    indented = "\n".join(f"      {text}" for text in dedent(body).strip().splitlines())
    path = write(tmp_path, DIRECTORY.format(body=indented))
    return path, problems_of(path)


@pytest.mark.parametrize(
    ("body", "key", "needle", "message"),
    [
        ("url: ldap://dc01.example\nbase_dn: DC=x", "mfa_directory.url", "url:", "plain LDAP"),
        (
            "urls:\n  - ldaps://dc01.example\n  - ldap://dc02.example\nbase_dn: DC=x",
            "mfa_directory.urls[1]",
            "ldap://dc02",
            "plain LDAP",
        ),
        (
            "url: ldaps://dc01.example\nurls: [ldaps://dc02.example]\nbase_dn: DC=x",
            "mfa_directory.urls",
            "urls:",
            "either 'url' or 'urls'",
        ),
        ("base_dn: DC=x", "mfa_directory", "mfa_directory:", "needs 'url'"),
        ("urls: []\nbase_dn: DC=x", "mfa_directory", "mfa_directory:", "needs 'url'"),
        ("url: ldaps://dc01.example", "mfa_directory", "mfa_directory:", "'base_dn' is required"),
        ("url: https://dc01.example\nbase_dn: DC=x", "mfa_directory.url", "url:", "ldap://"),
        (
            "url: ldaps://dc01.example/DC=x?sub\nbase_dn: DC=x",
            "mfa_directory.url",
            "url:",
            "only scheme, host and port",
        ),
        (
            "url: ldaps://dc01.example:99999\nbase_dn: DC=x",
            "mfa_directory.url",
            "url:",
            "not a valid URL",
        ),
        ("url: ldaps://\nbase_dn: DC=x", "mfa_directory.url", "url:", "valid host"),
        (
            "url: ldaps://dc01.example\nstarttls: true\nbase_dn: DC=x",
            "mfa_directory.starttls",
            "starttls",
            "ldap:// URLs only",
        ),
        (
            "url: ldaps://dc01.example\nbase_dn: DC=x\nbind_dn: CN=svc",
            "mfa_directory",
            "mfa_directory:",
            "'bind_password' is missing",
        ),
        (
            "url: ldaps://dc01.example\nbase_dn: DC=x\ntimeout_seconds: 0",
            "mfa_directory.timeout_seconds",
            "timeout",
            "between 1 and 3600",
        ),
        (
            "url: ldaps://dc01.example\nbase_dn: DC=x\nserver_name: 'a b'",
            "mfa_directory.server_name",
            "server_name",
            "not a valid host name",
        ),
        (
            "url: ldaps://dc01.example\nbase_dn: DC=x\nvalidate_cert: false",
            "mfa_directory.validate_cert",
            "validate_cert",
            "did you mean 'validate_certs'",
        ),
        (
            "url: ldaps://dc01.example\nbase_dn: DC=x\ngroup: ''",
            "mfa_directory.group",
            "group",
            "must not be empty",
        ),
    ],
)
def test_directory_problems(tmp_path: Path, body: str, key: str, needle: str, message: str) -> None:
    path, problems = directory_problems(tmp_path, body)
    problem = find(problems, key, line(path, needle))
    assert message in problem.message


def test_directory_plain_ldap_is_allowed_when_asked(tmp_path: Path) -> None:
    path = write(
        tmp_path, DIRECTORY.format(body="      {url: 'ldap://dc', base_dn: x, allow_plain: true}")
    )
    assert load_inventory(path).directory is not None


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("licensing: free", "mfa_deployment.licensing", "one of licenses, provider, mixed"),
        (
            "provider: per_seat",
            "mfa_deployment.provider",
            "one of none, per_user, per_authentication",
        ),
        ("directory_sync: 1", "mfa_deployment.directory_sync", "true or false"),
        (
            "app_passwords: {justification: x}",
            "mfa_deployment.app_passwords",
            "'allowed' is required",
        ),
        ("app_passwords: {allowed: no, why: x}", "mfa_deployment.app_passwords.why", "unknown key"),
        ("one_time_bypass_seconds: -1", "mfa_deployment.one_time_bypass_seconds", ">= 0"),
        ("trusted_ips: {ranges: []}", "mfa_deployment.trusted_ips", "'enabled' is required"),
        (
            "trusted_ips: {enabled: true, ranges: [1.2.3.4/40]}",
            "mfa_deployment.trusted_ips.ranges[0]",
            "not a valid CIDR",
        ),
        ("trustedips: {}", "mfa_deployment.trustedips", "did you mean 'trusted_ips'"),
    ],
)
def test_deployment_problems(tmp_path: Path, body: str, key: str, message: str) -> None:
    path = write(tmp_path, f"all:\n  vars:\n    mfa_deployment:\n      {body}\n")
    problem = single(path)
    assert (problem.key, problem.line) == (key, 4)
    assert message in problem.message


@pytest.mark.parametrize(
    ("value", "message"),
    [("CORP\\alice", "must be a list"), ("[alice, 3]", "must be a string"), ("['']", "empty")],
)
def test_admins_allowed_problems(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, f"all:\n  vars:\n    mfa_phonefactor_admins_allowed: {value}\n")
    assert message in single(path).message


# -- everything at once -------------------------------------------------------------------------


def test_all_problems_are_reported_sorted_by_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            mfa_directory: {url: ldap://dc, base_dn: x}
          children:
            adfs:
              hosts:
                a.example: {ansible_port: 0}
                b.example: {ansible_connection: local}
              hostz: {}
        """,
        {
            "group_vars/adfs.yml": "mfa_typo: 1\n",
            "host_vars/a.example.yml": "ansible_winrm_scheme: x\n",
        },
    )
    problems = problems_of(path)
    assert [(Path(p.file).name, p.line) for p in problems] == [
        ("adfs.yml", 1),
        ("a.example.yml", 1),
        ("hosts.yaml", 3),
        ("hosts.yaml", 7),
        ("hosts.yaml", 8),
        ("hosts.yaml", 9),
    ]
    assert [p.file for p in problems] == sorted(p.file for p in problems)


def test_directory_cross_checks_are_reported_with_field_problems(tmp_path: Path) -> None:
    _, problems = directory_problems(
        tmp_path, "url: ldap://dc01.example\nbase_dn: DC=x\ntimeout_seconds: -1\nbind_dn: CN=a"
    )
    assert {p.key for p in problems} == {
        "mfa_directory.url",
        "mfa_directory.timeout_seconds",
        "mfa_directory",
    }


def test_looping_vars_directory_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "adfs:\n  hosts:\n    a.example:\n")
    (tmp_path / "group_vars" / "adfs").mkdir(parents=True)
    (tmp_path / "group_vars" / "adfs" / "base.yml").write_text("x: 1\n")
    os.symlink(tmp_path / "group_vars" / "adfs", tmp_path / "group_vars" / "adfs" / "loop")
    assert "looping" in single(path).message
