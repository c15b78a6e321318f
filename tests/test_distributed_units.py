"""Zoned scans without a broker: what a task carries and what a reply may change, zones, options.

The end-to-end behaviour (real Redis, real workers) is in test_distributed.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.connectors.common import Timeouts
from agent.distributed import zones_note
from agent.distributed.app import shown_broker
from agent.distributed.payload import (
    BadTask,
    CannotTravel,
    facts_from_reply,
    host_from_task,
    queue_for,
    reply_for,
    task_for,
    zone_of,
)
from agent.distributed.worker import read_host
from agent.errors import InputError
from agent.facts import HostError, HostFacts
from agent.inventory import Host, load_inventory
from tests.conftest import CliRun

PASSWORD = "Pw-3b1e-unit"
PASSPHRASE = "Pp-77aa-unit"

INVENTORY = """\
all:
  vars:
    ansible_user: CORP\\\\audit
    ansible_password: "{{ lookup('env', 'UNIT_PW') }}"
  children:
    adfs:
      hosts:
        adfs01.corp.example:
          mfa_networks: {perimeter: [192.0.2.0/24]}
    user_portal:
      vars: {mfa_zone: dmz}
      hosts:
        portal01.corp.example:
          ansible_connection: ssh
          ansible_ssh_private_key_file: /etc/mfa-agent/id_ed25519
          mfa_ssh_key_passphrase: "{{ lookup('env', 'UNIT_PP') }}"
        portal02.corp.example:
          ansible_password: INLINE-Pw-91c2
"""


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Host]:
    monkeypatch.setenv("UNIT_PW", PASSWORD)
    monkeypatch.setenv("UNIT_PP", PASSPHRASE)
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY)
    return {h.name: h for h in load_inventory(path).hosts}


def test_a_task_carries_references_never_secrets(hosts: dict[str, Host]) -> None:
    for name in ("adfs01.corp.example", "portal01.corp.example"):
        host = hosts[name]
        text = json.dumps(task_for(host, Timeouts(connect=2, operation=3, host=40)))
        assert PASSWORD not in text and PASSPHRASE not in text
        assert "UNIT_PW" in text
        rebuilt, timeouts = host_from_task(json.loads(text))
        assert rebuilt.connection == host.connection  # secrets compare by variable name
        assert (rebuilt.name, rebuilt.address, rebuilt.roles) == (
            host.name, host.address, host.roles
        )
        assert timeouts == Timeouts(connect=2, operation=3, host=40)
    portal = host_from_task(json.loads(json.dumps(task_for(hosts["portal01.corp.example"],
                                                           Timeouts()))))[0]
    assert portal.connection.ssh_key_passphrase is not None
    assert portal.connection.ssh_key_passphrase.reveal() == PASSPHRASE  # from the environment


def test_an_inline_password_cannot_travel(hosts: dict[str, Host]) -> None:
    with pytest.raises(CannotTravel) as raised:
        task_for(hosts["portal02.corp.example"], Timeouts())
    assert "lookup('env'" in str(raised.value)
    assert "INLINE-Pw" not in str(raised.value)


def test_zones_and_queues(hosts: dict[str, Host], tmp_path: Path) -> None:
    assert zone_of(hosts["adfs01.corp.example"]) == "default"
    assert zone_of(hosts["portal01.corp.example"]) == "dmz"
    assert queue_for("dmz") == "mfa-agent.dmz"
    note = zones_note(load_inventory(tmp_path / "inventory.yaml"))
    assert note is not None and "mfa_zone: dmz" in note and "not enforced" in note


@pytest.mark.parametrize("zone", ["bad zone", "-dash", "x" * 64, "a/b"])
def test_an_invalid_zone_is_an_input_error(tmp_path: Path, zone: str) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(f"all:\n  hosts:\n    h1.corp.example:\n      mfa_zone: {json.dumps(zone)}\n")
    with pytest.raises(InputError) as raised:
        load_inventory(path)
    assert any(p.key == "mfa_zone" and "not a zone name" in p.message
               for p in raised.value.problems)


def _good_task(hosts: dict[str, Host]) -> dict[str, Any]:
    return task_for(hosts["adfs01.corp.example"], Timeouts())


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.update(version=2),
        lambda t: t["host"].update(vars={"ansible_password": "x"}),
        lambda t: t["host"]["connection"].update(password="plain"),
        lambda t: t["host"]["connection"].update(password={"kind": "file", "name": "/etc/x"}),
        lambda t: t["host"]["connection"].update(port=[1]),
        lambda t: t["host"]["connection"].update(kind="telnet"),
        lambda t: t["host"]["connection"].update(surprise=1),
        lambda t: t["timeouts"].update(host=-1),
        lambda t: t["timeouts"].update(operation=True),
        lambda t: t["host"].update(roles="adfs"),
        lambda t: t.pop("timeouts"),
    ],
)
def test_a_worker_refuses_a_task_it_did_not_expect(
    hosts: dict[str, Host], change: Callable[[dict[str, Any]], None]
) -> None:
    task = json.loads(json.dumps(_good_task(hosts)))
    change(task)
    with pytest.raises(BadTask):
        host_from_task(task)
    reply = read_host(task, "w1@test")
    assert reply["host"]["error"]["kind"] == "bad-task"


def test_a_worker_without_the_variable_reports_it(
    hosts: dict[str, Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    task = json.loads(json.dumps(_good_task(hosts)))
    monkeypatch.delenv("UNIT_PW")
    reply = read_host(task, "w1@test")
    facts, _, worker = facts_from_reply(hosts["adfs01.corp.example"], reply)
    assert worker == "w1@test"
    assert facts.error == HostError(
        "configuration",
        "environment variable UNIT_PW is not set on the worker that read this host",
    )


def test_a_reply_gives_facts_only_never_identity(hosts: dict[str, Host]) -> None:
    host = hosts["adfs01.corp.example"]
    forged = HostFacts(name=host.name, roles=frozenset({"user_portal"}), address="203.0.113.9",
                       facts={"os": {"value": {"caption": "x"}}})
    facts, notes, worker = facts_from_reply(host, reply_for(forged, ("a note",), "w9@test"))
    assert (facts.roles, facts.address, facts.declared) == (
        host.roles, host.address, host.declared
    )
    assert facts.facts == {"os": {"value": {"caption": "x"}}}
    assert (notes, worker) == (("a note",), "w9@test")


@pytest.mark.parametrize(
    "reply",
    [
        None,
        {"host": "x"},
        {"host": {"facts": {"os": 3}}},
        {"host": {"facts": {}}, "notes": "not a list"},
        {"host": {"facts": {}}, "worker": 5},
        {"host": {"facts": {}, "error": {"kind": 1}}},
    ],
)
def test_a_malformed_reply_is_refused(hosts: dict[str, Host], reply: Any) -> None:
    with pytest.raises(BadTask):
        facts_from_reply(hosts["adfs01.corp.example"], reply)


def test_broker_url_is_shown_without_password() -> None:
    assert shown_broker("redis://:s3cret@broker:6379/0") == "redis://broker:6379/0"
    assert shown_broker("rediss://user:s3cret@broker/1") == "rediss://broker/1"


def test_broker_options_are_checked(run_cli: Callable[..., CliRun], tmp_path: Path) -> None:
    facts = tmp_path / "f.json"
    facts.write_text(json.dumps({"schema": "mfa-agent/facts", "version": 1, "hosts": {}}))
    replay = run_cli("scan", "--replay", str(facts), "--broker", "redis://127.0.0.1:1/0")
    assert replay.code == 3 and "--broker applies to live scans" in replay.err
    example = str(Path(__file__).resolve().parent.parent / "inventory" / "example.yaml")
    amqp = run_cli("scan", "-i", example, "--broker", "amqp://u:pw1@rabbit//", "--no-history")
    assert amqp.code == 3 and "is not a Redis URL" in amqp.err and "pw1" not in amqp.err
    worker = run_cli("worker", "--broker", "redis://127.0.0.1:1/0", "--zone", "bad zone")
    assert worker.code == 3 and "not a zone name" in worker.err


def test_without_the_celery_extra_the_hint_says_how_to_install(
    run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "celery", None)  # import celery now raises ImportError
    example = str(Path(__file__).resolve().parent.parent / "inventory" / "example.yaml")
    for args in (("scan", "-i", example, "--broker", "redis://127.0.0.1:1/0", "--no-history"),
                 ("worker", "--broker", "redis://127.0.0.1:1/0", "--zone", "dmz")):
        result = run_cli(*args)
        assert result.code == 3, result.err
        assert "pip install 'mfa-agent[celery]'" in result.err


def test_signing_needs_all_three_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.distributed.app import signing_settings

    assert signing_settings() is None
    monkeypatch.setenv("MFA_AGENT_SIGNING_KEY", "/etc/mfa-agent/worker.key")
    with pytest.raises(InputError) as raised:
        signing_settings()
    (problem,) = raised.value.problems
    assert "MFA_AGENT_SIGNING_CERT, MFA_AGENT_SIGNING_TRUST not set" in problem.message
    monkeypatch.setenv("MFA_AGENT_SIGNING_CERT", "/etc/mfa-agent/worker.pem")
    monkeypatch.setenv("MFA_AGENT_SIGNING_TRUST", "/etc/mfa-agent/trust/*.pem")
    assert signing_settings() == {
        "security_key": "/etc/mfa-agent/worker.key",
        "security_certificate": "/etc/mfa-agent/worker.pem",
        "security_cert_store": "/etc/mfa-agent/trust/*.pem",
        "security_digest": "sha256",
    }


def test_worker_broker_from_the_environment(
    run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "--broker" in run_cli("worker", "--zone", "dmz").err  # required...
    monkeypatch.setenv("MFA_AGENT_BROKER", "amqp://u:pw2@rabbit//")
    result = run_cli("worker", "--zone", "dmz")  # ...unless MFA_AGENT_BROKER gives it
    assert result.code == 3 and "is not a Redis URL" in result.err and "pw2" not in result.err


def test_a_vault_password_travels_encrypted_and_the_worker_decrypts_it(
    tmp_path: Path,
) -> None:
    """A !vault password: the coordinator loads it without the vault password (deferred), the
    task carries only its ciphertext, and only a worker holding the vault password opens it."""
    import sys
    import textwrap

    from conftest import require_or_fail

    from agent.distributed.worker import _decrypt_vault_secrets
    from agent.inventory.vault import VaultKeys, VaultPassword
    from tests.ansible_oracle import encrypt_string

    require_or_fail((Path(sys.executable).parent / "ansible-vault").exists(),
                    "ansible-core (the test extra, to make vault fixtures)")
    key_file = tmp_path / "vault-pw"
    key_file.write_text("Worker-Vault-Key\n")
    vaulted = encrypt_string("Vaulted-Pw-5e1d", "ansible_password", key_file, tmp_path)
    path = tmp_path / "inv.yml"
    path.write_text("adfs:\n  hosts:\n    adfs01.corp.example:\n      ansible_user: audit\n"
                    + textwrap.indent(vaulted, "      "))
    with pytest.raises(InputError):  # an ordinary load still needs the vault password
        load_inventory(path)
    host = load_inventory(path, vault=VaultKeys(defer=True)).hosts[0]
    text = json.dumps(task_for(host, Timeouts()))
    assert "Vaulted-Pw-5e1d" not in text and "$ANSIBLE_VAULT;1.1;AES256" in text
    rebuilt, _ = host_from_task(json.loads(text))

    no_keys = _decrypt_vault_secrets(rebuilt, VaultKeys())
    assert isinstance(no_keys, HostError) and "--vault-password-file" in no_keys.message
    wrong = _decrypt_vault_secrets(rebuilt, VaultKeys([VaultPassword("default", b"nope")]))
    assert isinstance(wrong, HostError) and "decrypts" in wrong.message
    opened = _decrypt_vault_secrets(
        rebuilt, VaultKeys([VaultPassword("default", b"Worker-Vault-Key")])
    )
    assert isinstance(opened, Host)
    assert opened.connection.password is not None
    assert opened.connection.password.reveal() == "Vaulted-Pw-5e1d"


def test_a_password_from_a_wholly_encrypted_file_cannot_travel(tmp_path: Path) -> None:
    import sys

    from conftest import require_or_fail

    from agent.inventory.vault import VaultKeys, VaultPassword
    from tests.ansible_oracle import encrypt_file

    require_or_fail((Path(sys.executable).parent / "ansible-vault").exists(),
                    "ansible-core (the test extra, to make vault fixtures)")
    key_file = tmp_path / "vault-pw"
    key_file.write_text("File-Vault-Key\n")
    (tmp_path / "group_vars").mkdir()
    secret_file = tmp_path / "group_vars" / "adfs.yml"
    secret_file.write_text("ansible_password: File-Pw-77aa\n")
    encrypt_file(secret_file, key_file, tmp_path)
    path = tmp_path / "inv.yml"
    path.write_text("adfs:\n  hosts:\n    adfs01.corp.example:\n      ansible_user: audit\n")
    keys = VaultKeys([VaultPassword("default", b"File-Vault-Key")])
    host = load_inventory(path, vault=keys).hosts[0]
    with pytest.raises(CannotTravel) as raised:
        task_for(host, Timeouts())
    assert "!vault value" in str(raised.value) and "File-Pw" not in str(raised.value)
