"""What a task carries to a worker and brings back: plain JSON, and never a secret.

A task is one host: its name, address and roles, the non-secret connection settings the inventory
resolved for it, the scan's timeouts, and for each secret only a *reference* the worker resolves
itself: ``{"kind": "env", "name": "VAR"}`` (the variable of ``{{ lookup('env', 'VAR') }}``, read
from the worker's own environment) or ``{"kind": "vault", "ciphertext": "$ANSIBLE_VAULT;..."}``
(a ``!vault`` value, decrypted with the worker's own vault password; ciphertext is safe on the
broker). A password written inline in the inventory, or read from a wholly vault-encrypted file,
has no reference and cannot be sent: `task_for` raises `CannotTravel` and the host is an ERROR
saying so.

The reply is the host's entry of a facts document (`agent.factsfile`), checked by
`agent.factsfile.parse` on the coordinator, which keeps only the facts and the host error: who the
host is and what it declares always come from the coordinator's own inventory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final, get_args

from agent import factsfile
from agent.connectors.common import Timeouts
from agent.distributed import DEFAULT_ZONE, ZONE_VARIABLE
from agent.errors import InputError, Problem
from agent.facts import Declared, HostFacts
from agent.inventory import Connection, Host, Location, Secret
from agent.inventory.model import ConnectionKind

#: Version of the task document; a worker refuses any other.
TASK_VERSION: Final = 1
#: The name of the one task.
TASK_NAME: Final = "mfa_agent.read_host"
#: Connection fields that are secrets: they travel as references only.
SECRET_FIELDS: Final = ("password", "ssh_key_passphrase")
#: Host variables the connectors read besides `Connection` (paths on the worker, not secrets).
TRAVELLING_VARS: Final = ("ansible_winrm_cert_pem", "ansible_winrm_cert_key_pem")
INLINE_HINT: Final = (
    "a password written inline in the inventory is never sent to a worker: "
    "use {{ lookup('env', 'NAME') }} (set NAME on the zone's workers) or a !vault value"
)
VAULT_FILE_HINT: Final = (
    "a password from a wholly vault-encrypted vars file cannot be sent to a worker: "
    "write it as a !vault value (ansible-vault encrypt_string) or an env lookup"
)


class CannotTravel(Exception):
    """The host cannot be read by a worker (e.g. an inline password); the message says why."""


class BadTask(Exception):
    """A task document that is not what this agent sends; the message says what is wrong."""


def zone_of(host: Host) -> str:
    """The host's zone: ``mfa_zone``, else ``default``."""
    value = host.vars.get(ZONE_VARIABLE, DEFAULT_ZONE)
    return value if isinstance(value, str) else DEFAULT_ZONE


def queue_for(zone: str) -> str:
    """The Celery queue of a zone (prefixed, so a shared broker's other queues are not hit)."""
    return f"mfa-agent.{zone}"


def secret_reference(secret: Secret | None, key: str) -> dict[str, str] | None:
    """How the worker finds `secret` (None for no secret); `CannotTravel` for an inline one."""
    if secret is None:
        return None
    if secret.env_name is not None:
        return {"kind": "env", "name": secret.env_name}
    if secret.source == "vault":
        if secret.reference() is None:
            raise CannotTravel(f"{key}: {VAULT_FILE_HINT}")
        return {"kind": "vault", "ciphertext": str(secret.ciphertext)}
    raise CannotTravel(f"{key}: {INLINE_HINT}")


def resolve_secret(reference: Any, key: str) -> Secret | None:
    """The `Secret` a reference names: an env secret read lazily from the worker's environment,
    or a vault secret still encrypted (the worker decrypts it with `decrypt_secrets`)."""
    if reference is None:
        return None
    if not isinstance(reference, Mapping):
        raise BadTask(f"{key}: not a secret reference")
    kind = reference.get("kind")
    if kind == "env" and set(reference) == {"kind", "name"} and isinstance(reference["name"], str):
        return Secret.from_env(reference["name"])
    text = reference.get("ciphertext")
    if kind == "vault" and set(reference) == {"kind", "ciphertext"} and isinstance(text, str):
        if not text.lstrip().startswith("$ANSIBLE_VAULT;"):
            raise BadTask(f"{key}: not a vault ciphertext")
        return Secret.from_vault(text)
    raise BadTask(f"{key}: unsupported secret reference")


def task_for(host: Host, timeouts: Timeouts) -> dict[str, Any]:
    """The task document of `host`: JSON, references in place of secrets."""
    connection: dict[str, Any] = {}
    for item in dataclasses.fields(Connection):
        value = getattr(host.connection, item.name)
        if item.name in SECRET_FIELDS:
            value = secret_reference(value, _secret_key(item.name))
        connection[item.name] = value
    return {
        "version": TASK_VERSION,
        "host": {
            "name": host.name,
            "address": host.address,
            "roles": sorted(host.roles),
            "zone": zone_of(host),
            "connection": connection,
            "vars": {k: host.vars[k] for k in TRAVELLING_VARS if isinstance(host.vars.get(k), str)},
        },
        "timeouts": {
            "connect": timeouts.connect,
            "operation": timeouts.operation,
            "host": timeouts.host,
        },
    }


def _secret_key(field_name: str) -> str:
    return "mfa_ssh_key_passphrase" if field_name == "ssh_key_passphrase" else "ansible_password"


def host_from_task(document: Any) -> tuple[Host, Timeouts]:
    """The host and timeouts a task document describes; `BadTask` for anything else."""
    if not isinstance(document, Mapping) or document.get("version") != TASK_VERSION:
        raise BadTask(f"not an mfa-agent task of version {TASK_VERSION}")
    raw_host, raw_timeouts = document.get("host"), document.get("timeouts")
    if not isinstance(raw_host, Mapping) or not isinstance(raw_timeouts, Mapping):
        raise BadTask("a task needs 'host' and 'timeouts' objects")
    name, address = raw_host.get("name"), raw_host.get("address")
    roles, raw_vars = raw_host.get("roles"), raw_host.get("vars", {})
    if not (isinstance(name, str) and isinstance(address, str)):
        raise BadTask("host name and address must be strings")
    if not (isinstance(roles, list) and all(isinstance(r, str) for r in roles)):
        raise BadTask("host roles must be a list of strings")
    if not isinstance(raw_vars, Mapping) or not set(raw_vars) <= set(TRAVELLING_VARS):
        raise BadTask("unexpected host variables")
    host = Host(
        name=name,
        address=address,
        roles=frozenset(roles),
        groups=frozenset(roles),
        connection=_connection(raw_host.get("connection")),
        declared=Declared(),
        location=Location("<task>"),
        vars={k: v for k, v in raw_vars.items() if isinstance(v, str)},
    )
    return host, _timeouts(raw_timeouts)


def _connection(raw: Any) -> Connection:
    fields = {f.name: f for f in dataclasses.fields(Connection)}
    if not isinstance(raw, Mapping) or not set(raw) <= set(fields):
        raise BadTask("unexpected connection settings")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECRET_FIELDS:
            values[key] = resolve_secret(value, _secret_key(key))
        elif value is None or isinstance(value, str | int | bool):
            values[key] = value
        else:
            raise BadTask(f"connection setting {key} must be a plain value")
    if values.get("kind", "winrm") not in get_args(ConnectionKind):
        raise BadTask("unknown connection kind")
    try:
        return Connection(**values)
    except TypeError as exc:
        raise BadTask("invalid connection settings") from exc


def _timeouts(raw: Mapping[str, Any]) -> Timeouts:
    connect, operation, host = raw.get("connect"), raw.get("operation"), raw.get("host")
    numbers = (connect, operation, host)
    if not all(isinstance(n, int | float) and not isinstance(n, bool) and n > 0 for n in numbers):
        raise BadTask("timeouts must be positive numbers")
    if not isinstance(operation, int):
        raise BadTask("the operation timeout must be an integer")
    return Timeouts(connect=float(connect), operation=operation, host=float(host))  # type: ignore[arg-type]


def reply_for(facts: HostFacts, notes: tuple[str, ...], worker: str) -> dict[str, Any]:
    """What a worker returns for one host: its facts-document entry, its notes, who read it."""
    document = factsfile.to_document(
factsfile.FactsFile(hosts=(facts,)))
    return {"host": document["hosts"][facts.name], "notes": list(notes), "worker": worker}


def facts_from_reply(host: Host, reply: Any) -> tuple[HostFacts, tuple[str, ...], str]:
    """The facts, notes and worker name of a reply for `host`; `BadTask` for a malformed one.

    Only the facts and the host error are taken from the reply (checked as a facts file would
    be); the host's identity and declarations come from the coordinator's inventory.
    """
    from agent.scan import host_facts_from_inventory

    if not isinstance(reply, Mapping) or not isinstance(reply.get("host"), Mapping):
        raise BadTask("a reply needs a 'host' object")
    notes, worker = reply.get("notes", []), reply.get("worker", "?")
    if not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        raise BadTask("reply notes must be a list of strings")
    if not isinstance(worker, str):
        raise BadTask("the reply's worker must be a string")
    document = {"schema": factsfile.SCHEMA, "version": factsfile.VERSION,
                "hosts": {host.name: reply["host"]}}
    try:
        parsed = factsfile.parse(document, f"the reply of worker {worker[:80]}")
    except InputError as exc:
        raise BadTask("; ".join(p.message for p in exc.problems)[:300]) from exc
    facts = host_facts_from_inventory(host, parsed.host(host.name), "the worker's reply")
    return facts, tuple(n[:500] for n in notes[:20]), worker[:200]


def unresolvable(host: Host) -> list[Problem]:
    """Why a task for `host` cannot be built (used to warn before dispatch); empty when it can."""
    try:
        task_for(host, Timeouts())
    except CannotTravel as exc:
        return [Problem(str(host.location), f"{host.name}: {exc}")]
    return []
