"""``mfa-agent worker``: a Celery worker that reads the hosts of its zones.

Each task is one host (`agent.distributed.payload`); the worker rebuilds it, resolves its secret
references from its own environment or vault password, and reads it with the same
`agent.gather.gather` a local scan uses, so deadlines, errors and facts are exactly a local scan's.
A worker needs no inventory. ``--concurrency N`` threads read N hosts at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent.distributed.app import (
    ALIVE_TTL,
    HEARTBEAT_INTERVAL,
    RESULT_EXPIRES,
    WORKERS_KEY,
    alive_key,
    claim_key,
    make_app,
)
from agent.distributed.payload import (
    SECRET_FIELDS,
    TASK_NAME,
    BadTask,
    host_from_task,
    queue_for,
    reply_for,
)
from agent.errors import Problem
from agent.facts import HostError, HostFacts
from agent.gather import GatherOptions, gather
from agent.inventory import Host, Secret
from agent.inventory.vault import VaultKeys

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)


def check_zones(zones: Sequence[str]) -> None:
    """`InputError` naming every --zone that is not a valid zone name."""
    from agent.errors import InputError
    from agent.inventory.settings import Ctx, Rejected, zone

    problems: list[Problem] = []
    for name in zones:
        with contextlib.suppress(Rejected):
            zone(Ctx("<arguments>", None, "--zone", problems), name)
    if problems:
        raise InputError(problems)


def default_name(zones: Sequence[str]) -> str:
    """A node name unique to this process, so several workers of a zone can share a machine."""
    unique = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return f"mfa-agent-{'+'.join(zones)[:60]}-{unique}@{socket.gethostname()}"


def read_host(document: Any, worker: str, vault: VaultKeys | None = None) -> dict[str, Any]:
    """Read the host a task describes; the reply document (errors included, never raised).

    `vault`: this worker's vault passwords, for ``!vault`` passwords the task carries encrypted.
    """
    try:
        host, timeouts = host_from_task(document)
    except BadTask as exc:
        refused = {"kind": "bad-task", "message": f"the worker refused the task: {exc}"[:300]}
        return {"host": {"error": refused, "facts": {}}, "notes": [], "worker": worker}
    decrypted = _decrypt_vault_secrets(host, vault or VaultKeys())
    if isinstance(decrypted, HostError):
        return reply_for(_facts(host, decrypted), (), worker)
    host = decrypted
    missing = [s.env_name for s in _secrets(host) if not s.is_available()]
    if missing:
        error = HostError(
            "configuration",
            f"environment variable {missing[0]} is not set on the worker that read this host",
        )
        return reply_for(_facts(host, error), (), worker)
    gathered = gather([host], GatherOptions(workers=1, timeouts=timeouts))
    return reply_for(gathered.hosts[0], gathered.notes.get(host.name, ()), worker)


def _decrypt_vault_secrets(host: Host, vault: VaultKeys) -> Host | HostError:
    """`host` with its vault secrets decrypted by this worker, or why they cannot be."""
    from agent.inventory.vault import NoPassword, VaultFormatError, WrongPassword

    changes: dict[str, Secret] = {}
    for name in SECRET_FIELDS:
        secret = getattr(host.connection, name)
        if not isinstance(secret, Secret) or secret.source != "vault" or secret.is_available():
            continue
        try:
            plain = vault.decrypt(str(secret.ciphertext)).decode("utf-8", errors="replace")
        except NoPassword:
            return HostError(
                "configuration",
                "the host's password is a !vault value and this worker has no vault password "
                "(--vault-password-file, --vault-id or $ANSIBLE_VAULT_PASSWORD_FILE)",
            )
        except (WrongPassword, VaultFormatError):
            return HostError(
                "configuration",
                "no vault password of this worker decrypts the host's !vault password",
            )
        changes[name] = Secret.from_vault(str(secret.ciphertext), plain)
    if not changes:
        return host
    connection = dataclasses.replace(
        host.connection,
        password=changes.get("password", host.connection.password),
        ssh_key_passphrase=changes.get("ssh_key_passphrase", host.connection.ssh_key_passphrase),
    )
    return dataclasses.replace(host, connection=connection)


def _secrets(host: Host) -> list[Secret]:
    values = [getattr(host.connection, name) for name in SECRET_FIELDS]
    return [s for s in values if isinstance(s, Secret)]


def _facts(host: Host, error: HostError) -> HostFacts:
    from agent.facts import Declared

    return HostFacts(name=host.name, roles=host.roles, address=host.address,
                     declared=Declared(), facts={}, error=error)


def register(app: Celery, vault: VaultKeys | None = None) -> None:
    """Register the task on `app` (`vault`: this worker's vault passwords)."""

    from celery.exceptions import Ignore

    @app.task(name=TASK_NAME, bind=True, ignore_result=False)  # type: ignore[untyped-decorator]
    def read_host_task(self: Any, document: Any) -> dict[str, Any]:
        worker = str(self.request.hostname or "?")
        claimed = app.backend.client.set(
            claim_key(str(self.request.id)), worker, nx=True, ex=RESULT_EXPIRES
        )
        if not claimed:  # read by another worker already, or cancelled by the coordinator
            log.info("task %s already claimed: not reading it again", self.request.id)
            raise Ignore()
        return read_host(document, worker, vault)


def run_worker(
    broker: str,
    zones: Sequence[str],
    concurrency: int,
    name: str | None,
    vault: VaultKeys | None = None,
) -> int:
    """Run a worker for `zones` until it is stopped; its exit code."""
    app = make_app(broker)
    register(app, vault)
    worker = app.Worker(
        hostname=name or default_name(zones),
        queues=[queue_for(z) for z in zones],
        concurrency=concurrency,
        pool="threads",
        loglevel="INFO",
        without_gossip=True,
        optimization="fair",
    )
    heartbeat = Heartbeat(app, str(worker.hostname), [queue_for(z) for z in zones])
    heartbeat.start()
    try:
        worker.start()
    finally:
        heartbeat.stop()
    return int(worker.exitcode or 0)


class Heartbeat:
    """Renews this worker's alive key on the broker until stopped (`agent.distributed.app`).

    A thread of its own, so a worker busy reading hosts still says it is alive; a broker that
    does not answer is logged and tried again at the next beat.
    """

    def __init__(self, app: Celery, name: str, queues: Sequence[str]) -> None:
        self.app, self.name, self.value = app, name, json.dumps(list(queues))
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mfa-agent-heartbeat", daemon=True)

    def start(self) -> None:
        """Beat now and every `HEARTBEAT_INTERVAL` seconds."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and say so, so coordinators need not wait for the key to expire."""
        self._stopped.set()
        self._thread.join(ALIVE_TTL)
        with contextlib.suppress(Exception):
            client = self.app.backend.client
            client.delete(alive_key(self.name))
            client.srem(WORKERS_KEY, self.name)

    def _run(self) -> None:
        while True:
            try:
                pipe = self.app.backend.client.pipeline(transaction=False)
                pipe.set(alive_key(self.name), self.value, ex=ALIVE_TTL)
                pipe.sadd(WORKERS_KEY, self.name)
                pipe.execute()
            except Exception as exc:  # the broker is away: beat again when it is back
                log.warning("cannot renew this worker's heartbeat: %s", type(exc).__name__)
            if self._stopped.wait(HEARTBEAT_INTERVAL):
                return
