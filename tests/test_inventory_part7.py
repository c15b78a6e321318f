"""Point it at the inventory you already keep: roles from your group names, no false green,
--limit by role without invented failures, INI/JSON/directories, Vault and template errors,
hostile inventory files (FIFOs, range bombs, control characters), complete piped output."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import InputError, InventoryError
from agent.inventory import load_inventory
from agent.inventory.ini import parse_value
from agent.inventory.vault import VaultKeys, VaultPassword, collect_passwords
from tests.conftest import REPO, CliRun, require_or_fail

Run = Callable[..., CliRun]
LAB = str(REPO / "inventory" / "lab.yaml")
FACTS = str(REPO / "inventory" / "lab.facts.json")

TEAM_INI = """\
[adfs_servers]
adfs01.corp.example ansible_host=10.0.0.5
adfs02.corp.example

[mfa_portal]
portal01.dmz.example

[windows:children]
adfs_servers
mfa_portal

[jump]
jump01.corp.example
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- roles from the team's own groups; no false green ----------------------------------------


def test_team_group_names_without_mapping_is_exit_3_naming_groups(
    run_cli: Run, tmp_path: Path
) -> None:
    hosts = write(tmp_path / "hosts.ini", TEAM_INI)
    result = run_cli("scan", "-i", str(hosts), "--no-history")
    assert result.code == 3
    assert "no host has an MFA role" in result.err
    assert "mfa_role_groups" in result.err and "mfa_roles" in result.err
    for group in ("adfs_servers", "mfa_portal", "windows", "jump"):
        assert group in result.err
    assert "OK" not in result.out


def test_no_role_in_limit_is_exit_3_even_with_replay(run_cli: Run) -> None:
    result = run_cli(
        "scan", "-i", LAB, "--replay", FACTS, "--limit", "nosuchrole*,!*", "--no-history"
    )
    assert result.code == 3


def test_mfa_role_groups_in_all_vars_and_host_mfa_roles(tmp_path: Path) -> None:
    hosts = write(
        tmp_path / "hosts.ini",
        TEAM_INI
        + "\n[all:vars]\n"
        + "mfa_role_groups={'adfs': ['adfs_servers'], 'user_portal': ['mfa_portal']}\n"
        + "\n[extra]\nmfa05.corp.example mfa_roles=\"['mfa_server']\"\n",
    )
    inventory = load_inventory(hosts)
    roles = {h.name: set(h.roles) for h in inventory.hosts}
    assert roles == {
        "adfs01.corp.example": {"adfs"},
        "adfs02.corp.example": {"adfs"},
        "portal01.dmz.example": {"user_portal"},
        "jump01.corp.example": set(),
        "mfa05.corp.example": {"mfa_server"},
    }


def test_roles_side_file_leaves_the_inventory_untouched(run_cli: Run, tmp_path: Path) -> None:
    hosts = write(tmp_path / "hosts.ini", TEAM_INI)
    roles = write(tmp_path / "roles.yml", "mfa_role_groups:\n  adfs: [adfs_servers]\n")
    inventory = load_inventory(hosts, roles_file=roles)
    assert [h.name for h in inventory.hosts if "adfs" in h.roles] == [
        "adfs01.corp.example",
        "adfs02.corp.example",
    ]
    shown = run_cli("inventory", "-i", str(hosts), "--roles", str(roles), "--format", "json")
    assert shown.code == 0
    document = json.loads(shown.out)
    assert document["role_groups"]["adfs"] == ["adfs_servers"]
    assert set(document["hosts_without_role"]) == {"portal01.dmz.example", "jump01.corp.example"}
    text = run_cli("inventory", "-i", str(hosts), "--roles", str(roles))
    assert "2 of 4 hosts have no MFA role" in text.out


def test_role_group_mapping_to_an_unknown_group_is_reported(tmp_path: Path) -> None:
    hosts = write(tmp_path / "hosts.ini", TEAM_INI)
    roles = write(tmp_path / "roles.yml", "mfa_role_groups:\n  adfs: [adfs_server]\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(hosts, roles_file=roles)
    message = str(info.value)
    assert "no group 'adfs_server'" in message and "did you mean 'adfs_servers'" in message


# -- --limit: hosts, groups and roles; nothing invented outside it ---------------------------


@pytest.mark.parametrize("inventory", [("-i", LAB), ()])
def test_limit_by_role_never_fails_directory_sync_outside_the_limit(
    run_cli: Run, inventory: tuple[str, ...]
) -> None:
    result = run_cli(
        "scan", *inventory, "--replay", FACTS, "--limit", "adfs", "--format", "json",
        "--no-history",
    )
    document = json.loads(result.out)
    sync = [r for r in document["results"] if r["check_id"] == "directory-sync-component"]
    assert [(r["target"], r["status"]) for r in sync] == [("(deployment)", "SKIP")]
    assert "sync01.lab.example" in sync[0]["reason"] and "--limit" in sync[0]["reason"]


def test_limit_accepts_role_names_mapped_from_team_groups(tmp_path: Path) -> None:
    hosts = write(
        tmp_path / "hosts.ini",
        TEAM_INI + "\n[all:vars]\nmfa_role_groups={'user_portal': ['mfa_portal']}\n",
    )
    inventory = load_inventory(hosts)
    assert [h.name for h in inventory.select(["user_portal"])] == ["portal01.dmz.example"]
    assert [h.name for h in inventory.select(["windows"])] == [
        "adfs01.corp.example",
        "adfs02.corp.example",
        "portal01.dmz.example",
    ]


# -- INI semantics that matter for credentials -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5986", 5986),
        ("'05'", "05"),
        ("True", True),
        ("[1, 'a']", [1, "a"]),
        ("(1, 2)", [1, 2]),
        ("None", None),
        ("__import__('os').system('false')", "__import__('os').system('false')"),
        ("1j", "1j"),
        ("...", "..."),
        ("b'x'", "x"),
        ("plain text", "plain text"),
    ],
)
def test_ini_values_are_literals_or_text_never_code(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_ini_problems_carry_lines(tmp_path: Path) -> None:
    hosts = write(
        tmp_path / "hosts",
        "[a]\nh1 novalue\n[b:vars]\nx=1\n[c:children]\nmissing\n[bad section]\n",
    )
    with pytest.raises(InventoryError) as info:
        load_inventory(hosts)
    assert any(p.line == 2 and "no '='" in p.message for p in info.value.problems)
    assert any(p.line == 3 and "[b:vars]" in p.message for p in info.value.problems)
    assert any(p.line == 6 and "'missing'" in p.message for p in info.value.problems)
    assert any(p.line == 7 and "invalid section" in p.message for p in info.value.problems)


# -- Vault: passwords, errors, masking ------------------------------------------------------------


def _vaulted_inventory(tmp_path: Path) -> tuple[Path, Path]:
    """An inventory with a !vault password made by the real ansible-vault."""
    from tests.ansible_oracle import encrypt_string

    password_file = write(tmp_path / "pw.txt", "Vault-Key-1\n")
    text = encrypt_string("Zq7-Vaulted-Pw", "ansible_password", password_file, tmp_path)
    inventory = write(
        tmp_path / "inv.yml",
        "adfs:\n  hosts:\n    adfs01.corp.example:\n" + textwrap.indent(text, "      "),
    )
    return inventory, password_file


@pytest.mark.usefixtures("ansible_available")
def test_no_vault_password_is_exit_3_naming_the_option(run_cli: Run, tmp_path: Path) -> None:
    inventory, _ = _vaulted_inventory(tmp_path)
    result = run_cli("inventory", "-i", str(inventory))
    assert result.code == 3
    assert "--vault-password-file" in result.err and "inv.yml:4" in result.err


@pytest.mark.usefixtures("ansible_available")
def test_wrong_vault_password_is_exit_3_naming_file_and_line(
    run_cli: Run, tmp_path: Path
) -> None:
    inventory, _ = _vaulted_inventory(tmp_path)
    wrong = write(tmp_path / "wrong.txt", "not-it\n")
    result = run_cli("inventory", "-i", str(inventory), "--vault-password-file", str(wrong))
    assert result.code == 3
    assert "inv.yml:4" in result.err and "wrong vault password" in result.err


@pytest.mark.usefixtures("ansible_available")
def test_vault_secret_is_masked_in_every_output(run_cli: Run, tmp_path: Path) -> None:
    inventory, password_file = _vaulted_inventory(tmp_path)
    for fmt in ("text", "json"):
        result = run_cli(
            "inventory", "-i", str(inventory), "--vault-password-file", str(password_file),
            "--format", fmt,
        )
        assert result.code == 0, result.err
        assert "Zq7-Vaulted-Pw" not in result.out + result.err
        assert "<vault secret>" in result.out


@pytest.mark.usefixtures("ansible_available")
def test_executable_password_file_and_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory, _ = _vaulted_inventory(tmp_path)
    script = write(tmp_path / "pw.sh", "#!/bin/sh\necho Vault-Key-1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    keys = collect_passwords([str(script)], [], False, None)
    host = load_inventory(inventory, vault=keys).hosts[0]
    assert host.connection.password is not None
    assert host.connection.password.reveal() == "Zq7-Vaulted-Pw"
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(tmp_path / "pw.txt"))
    keys = collect_passwords([], [], False, None)
    assert load_inventory(inventory, vault=keys).hosts[0].connection.password is not None


@pytest.mark.usefixtures("ansible_available")
def test_vault_secret_reference_is_its_ciphertext(tmp_path: Path) -> None:
    inventory, password_file = _vaulted_inventory(tmp_path)
    keys = collect_passwords([str(password_file)], [], False, None)
    secret = load_inventory(inventory, vault=keys).hosts[0].connection.password
    assert secret is not None and secret.source == "vault"
    reference = secret.reference()
    assert reference is not None and reference.startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert "Zq7-Vaulted-Pw" not in reference
    other = VaultKeys([VaultPassword("default", b"Vault-Key-1")])
    assert other.decrypt(reference) == b"Zq7-Vaulted-Pw"


@pytest.fixture
def ansible_available() -> None:
    found = (Path(sys.executable).parent / "ansible-vault").exists()
    require_or_fail(found, "ansible-core (the test extra, to make vault fixtures)")


# -- templates: resolved lazily where they win, errors name the expression ----------------------


def test_template_overridden_by_a_host_value_is_never_evaluated(tmp_path: Path) -> None:
    hosts = write(
        tmp_path / "inv.yml",
        """\
        all:
          vars:
            ansible_user: "{{ something | weird_filter }}"
          children:
            adfs:
              hosts:
                adfs01.corp.example:
                  ansible_user: CORP\\svc
        """,
    )
    assert load_inventory(hosts).hosts[0].connection.user == "CORP\\svc"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{{ a }}", "in a cycle: a -> b -> a"),
        ("{{ x.__class__ }}", "is not a template mfa-agent resolves"),
        ("{{ lookup('pipe', 'id') }}", "is not a template mfa-agent resolves"),
        ("{% if true %}x{% endif %}", "Jinja statements"),
        ("{{ 1 + 1 }}", "is not a template mfa-agent resolves"),
    ],
)
def test_unsupported_templates_and_cycles_are_named(
    tmp_path: Path, value: str, message: str
) -> None:
    hosts = write(
        tmp_path / "inv.yml",
        "adfs:\n  hosts:\n    h1.example:\n  vars:\n"
        f"    a: '{{{{ b }}}}'\n    b: '{{{{ a }}}}'\n    ansible_user: {json.dumps(value)}\n",
    )
    with pytest.raises(InventoryError) as info:
        load_inventory(hosts)
    assert message in str(info.value)
    assert any(p.line == 7 and p.key == "ansible_user" for p in info.value.problems) or (
        "cycle" in message
    )


def test_file_lookup_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "user.txt", "CORP\\svc-file\n")
    monkeypatch.chdir(tmp_path)
    hosts = write(
        tmp_path / "inv.yml",
        "adfs:\n  hosts:\n    h1.example:\n  vars:\n"
        "    ansible_user: \"{{ lookup('file', 'user.txt') }}\"\n"
        "    ansible_port: \"{{ port | default(15986) }}\"\n",
    )
    host = load_inventory(hosts).hosts[0]
    assert (host.connection.user, host.connection.port) == ("CORP\\svc-file", 15986)


# -- hostile inventory files ---------------------------------------------------------------------


def test_fifo_inventory_is_exit_3_without_opening_it(run_cli: Run, tmp_path: Path) -> None:
    fifo = tmp_path / "hosts.ini"
    os.mkfifo(fifo)
    result = run_cli("inventory", "-i", str(fifo))  # would block forever if it were opened
    assert result.code == 3
    assert "FIFO" in result.err and str(fifo) in result.err


def test_fifo_vars_file_is_a_problem(tmp_path: Path) -> None:
    hosts = write(tmp_path / "hosts.ini", "[adfs]\nh1\n")
    (tmp_path / "group_vars").mkdir()
    os.mkfifo(tmp_path / "group_vars" / "adfs.yml")
    with pytest.raises(InventoryError) as info:
        load_inventory(hosts)
    assert "FIFO" in str(info.value)


def test_range_bomb_is_refused_before_expansion(tmp_path: Path) -> None:
    hosts = write(tmp_path / "hosts.ini", "[g]\n" + "r1-[0000:9999]\n" * 300)
    started = time.process_time()
    with pytest.raises(InventoryError) as info:
        load_inventory(hosts)
    # A bound that only catches a regression (expanding even 100,000 names takes seconds).
    assert time.process_time() - started < 1  # about 0.05 s: counted, never expanded
    assert "more than 100,000 hosts" in str(info.value)


def test_control_characters_in_group_names_are_refused(tmp_path: Path) -> None:
    hosts = write(tmp_path / "hosts.ini", "[bad\x01group]\nh1\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(hosts)
    assert "control character" in str(info.value)


# -- piped output is complete ----------------------------------------------------------------------


def test_piped_inventory_and_checks_tables_print_whole_values(tmp_path: Path) -> None:
    long_name = "adfs-" + ".".join(["x" * 50] * 3) + ".corp.example"
    hosts = write(tmp_path / "hosts.ini", f"[adfs]\n{long_name}\n")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "inventory", "-i", str(hosts)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stderr
    assert long_name in done.stdout


@pytest.mark.usefixtures("ansible_available")
def test_readme_ini_example_with_a_vault_file(run_cli: Run, tmp_path: Path) -> None:
    """The README's INI example, its password in a vault-encrypted group_vars file."""
    from tests.ansible_oracle import encrypt_file

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = readme.split("```ini\n", 1)[1].split("```", 1)[0]
    hosts = write(tmp_path / "hosts.ini", example)
    vault = write(tmp_path / "group_vars" / "all" / "vault.yml", "vault_winrm_password: Zq7-Vf\n")
    password_file = write(tmp_path / "pw.txt", "Vault-Key-2\n")
    encrypt_file(vault, password_file, tmp_path)
    keys = collect_passwords([str(password_file)], [], False, None)
    inventory = load_inventory(hosts, vault=keys)
    assert {h.name: set(h.roles) for h in inventory.hosts} == {
        "adfs01.corp.example": {"adfs"},
        "adfs02.corp.example": {"adfs"},
        "mfaportal.corp.example": {"user_portal"},
    }
    password = inventory.hosts[0].connection.password
    assert password is not None and password.source == "vault"
    assert password.reveal() == "Zq7-Vf"
    assert not any("inline" in w for w in inventory.warnings)
    shown = run_cli("inventory", "-i", str(hosts), "--vault-password-file", str(password_file))
    assert shown.code == 0 and "Zq7-Vf" not in shown.out + shown.err


@pytest.mark.parametrize(
    "text",
    [
        "[adfs]\nh1 ansible_password=Zq7 Hunter2-Distinctive\n",
        "[adfs:vars]\nZq7 Hunter2-Distinctive\n[adfs]\nh1\n",
        "[adfs]\nh1 ansible_password='Zq7 Hunter2-Distinctive\n",
        "[adfs]\nh1\n[adfs:vars]\nansible_password={{ Zq7 Hunter2-Distinctive }}\n",
    ],
)
def test_ini_errors_never_quote_a_password(tmp_path: Path, text: str) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(write(tmp_path / "hosts", text))
    assert "Hunter2" not in str(info.value)


def test_ask_vault_pass_prompts_or_names_the_alternative() -> None:
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed"

    keys = collect_passwords([], [], True, prompt)
    assert [p.value for p in keys.passwords] == [b"typed"] and asked == ["Vault password: "]
    with pytest.raises(InputError) as info:
        collect_passwords([], [], True, None)
    assert "--vault-password-file" in str(info.value)


@pytest.mark.usefixtures("ansible_available")
def test_user_from_a_vault_file_is_masked_in_the_inventory_view(
    run_cli: Run, tmp_path: Path
) -> None:
    from tests.ansible_oracle import encrypt_file

    hosts = write(tmp_path / "hosts.ini", "[adfs]\nadfs01.corp.example\n")
    vault = write(tmp_path / "group_vars" / "adfs.yml", "ansible_user: CORP\\Zq7-vaulted-user\n")
    password_file = write(tmp_path / "pw.txt", "Vault-Key-3\n")
    encrypt_file(vault, password_file, tmp_path)
    for fmt in ("text", "json"):
        shown = run_cli(
            "inventory", "-i", str(hosts), "--vault-password-file", str(password_file),
            "--format", fmt,
        )
        assert shown.code == 0, shown.err
        assert "Zq7-vaulted-user" not in shown.out + shown.err


def test_secret_references_round_trip_without_the_value() -> None:
    from agent.inventory.templates import Secret

    env = Secret.from_env("MFA_PW")
    assert env.reference() == "env:MFA_PW"
    assert Secret.from_reference("env:MFA_PW") == env
    assert Secret.inline("x").reference() is None
    vault = Secret.from_reference("$ANSIBLE_VAULT;1.1;AES256\nab", lambda text: "plain")
    assert vault.source == "vault" and vault.reveal() == "plain" and str(vault) == "<vault secret>"
    undecrypted = Secret.from_reference("$ANSIBLE_VAULT;1.1;AES256\nab")
    assert not undecrypted.is_available()
    with pytest.raises(InputError):
        undecrypted.reveal()
    with pytest.raises(ValueError, match="env:NAME"):
        Secret.from_reference("hunter2")


def test_piped_history_prints_whole_inventory_paths(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    inventory = deep / "lab.yaml"
    inventory.write_text(Path(LAB).read_text(encoding="utf-8"), encoding="utf-8")
    db = tmp_path / "history.sqlite3"
    env = {**os.environ, "COLUMNS": "80"}
    scan = [sys.executable, "-m", "agent", "scan", "-i", str(inventory), "--replay", FACTS,
            "--db", str(db), "-q"]
    assert subprocess.run(scan, capture_output=True, check=False, env=env).returncode == 1
    done = subprocess.run(
        [sys.executable, "-m", "agent", "history", "--db", str(db)],
        capture_output=True, text=True, check=False, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert str(inventory) in done.stdout
