"""The Celery application shared by the coordinator and the workers, and its hardened settings.

* JSON only, both ways: ``accept_content=["json"]``, so a pickled (or YAML, msgpack) message is
  refused by the worker before anything in it is decoded, and never executed.
* A task is acknowledged when a worker *starts* it (not late): a worker killed mid-host loses only
  the hosts it had started, which the coordinator sees and re-sends once (`agent.distributed.
  dispatch`), so no host is read twice by the broker's redelivery as well. A message taken but not
  yet started is redelivered by Redis after `VISIBILITY_TIMEOUT` (Celery's default is an hour);
  should the first worker start it after all, the task's claim (`claim_key`, Redis SET NX) lets
  only one of them read the host.
* Results expire after `RESULT_EXPIRES`; task arguments are not stored with them.
* Every socket to the broker has a timeout (`BROKER_SOCKET_TIMEOUT`): a broker that stops
  answering is an error the scan reports.
* Workers say they are alive with a key they renew (`alive_key`), not through Celery's control
  broadcasts: the coordinator reads it with plain Redis commands, each bounded by the socket
  timeout, where kombu's publish with ``retry=True`` retries a lost broker forever.
* Optional message signing (`SIGNING_VARIABLES`): Celery's ``auth`` serializer signs every task
  and control message, and only messages signed by a trusted certificate are accepted.

Celery is imported only here and in `worker`, on first use: without the ``celery`` extra the
command line says how to install it (`require_celery`).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from agent.errors import InputError, Problem

if TYPE_CHECKING:
    from celery import Celery

#: Seconds after which a message a worker took but never started goes back to its queue.
VISIBILITY_TIMEOUT: Final = 30
#: Seconds a result stays on the broker for the coordinator to collect.
RESULT_EXPIRES: Final = 6 * 3600
#: Seconds a broker may take to accept a connection or answer one command, for the coordinator
#: and the workers alike: a broker that stops answering (frozen, partitioned) is then an error
#: the scan reports, not a wait without end (redis-py retries a timed-out command 3 times, so
#: a frozen broker is given up after about 4 times this).
BROKER_SOCKET_TIMEOUT: Final = 5
#: Redis key a worker sets (SET NX) before reading a host: the first claim wins, so a message
#: delivered twice is read once; the coordinator claims a task itself to cancel it.
CLAIM_PREFIX: Final = "mfa-agent:claim:"
#: The claim value of a task the coordinator cancelled (no worker name starts with "!").
CANCELLED: Final = "!cancelled"
INSTALL_HINT: Final = "scans across zones need the celery extra: pip install 'mfa-agent[celery]'"


#: Every live worker renews its key ``ALIVE_PREFIX + name`` (the queues it consumes, as JSON)
#: every `HEARTBEAT_INTERVAL` seconds, with an expiry of `ALIVE_TTL`; its name is in the set
#: `WORKERS_KEY`. Expiry is the broker's own clock, so clocks of the zones need not agree.
ALIVE_PREFIX: Final = "mfa-agent:alive:"
WORKERS_KEY: Final = "mfa-agent:workers"
HEARTBEAT_INTERVAL: Final = 1.0
ALIVE_TTL: Final = 5


def claim_key(task_id: str) -> str:
    """The Redis key of a task's claim."""
    return CLAIM_PREFIX + task_id


def alive_key(worker: str) -> str:
    """The Redis key a worker renews while it is alive."""
    return ALIVE_PREFIX + worker


def require_celery() -> None:
    """`InputError` with the install hint when Celery (and its Redis client) is missing."""
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        raise InputError(Problem("<arguments>", INSTALL_HINT, key="--broker")) from None


def shown_broker(url: str) -> str:
    """The broker URL as it may be printed: no user or password."""
    return re.sub(r"//[^/@]*@", "//", url)[:200]


def check_broker_url(url: str) -> None:
    """`InputError` unless `url` is a redis:// or rediss:// URL (or a unix socket)."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in ("redis", "rediss", "redis+socket"):
        raise InputError(
            Problem(
                "<arguments>",
                f"'{shown_broker(url)}' is not a Redis URL (redis://host:6379/0 or rediss://...)",
                key="--broker",
            )
        )


def make_app(broker_url: str) -> Celery:
    """The Celery application for `broker_url` (broker and result backend on the same Redis).

    With the `SIGNING_VARIABLES` set, every message is signed and only signed ones are accepted.
    """
    require_celery()
    check_broker_url(broker_url)
    signing = signing_settings()
    from celery import Celery

    app = Celery("mfa_agent", broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.update(settings())
    if signing is not None:
        app.conf.update(signing, task_serializer="auth", accept_content=["auth"])
        try:
            app.setup_security(allowed_serializers=["json"], serializer="json")
        except Exception as exc:  # unreadable or mismatched key and certificate files
            raise InputError(
                Problem("<environment>", f"cannot set up message signing: {type(exc).__name__}: "
                        f"{str(exc)[:200]}", key=SIGNING_VARIABLES[0])
            ) from None
    return app


#: Message signing (Celery's ``auth`` serializer): this party's private key and certificate
#: (PEM files), and a glob of the certificates of every party whose messages are accepted.
SIGNING_VARIABLES: Final = (
    "MFA_AGENT_SIGNING_KEY", "MFA_AGENT_SIGNING_CERT", "MFA_AGENT_SIGNING_TRUST"
)


def signing_settings() -> dict[str, str] | None:
    """Celery's ``security_*`` settings from `SIGNING_VARIABLES`; None when none is set."""
    values = {name: os.environ.get(name, "") for name in SIGNING_VARIABLES}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise InputError(
            Problem("<environment>", f"message signing needs all of {', '.join(SIGNING_VARIABLES)}"
                    f" ({', '.join(missing)} not set)", key=missing[0])
        )
    key, cert, trust = values.values()
    return {"security_key": key, "security_certificate": cert, "security_cert_store": trust,
            "security_digest": "sha256"}


def settings() -> dict[str, Any]:
    """Every setting that differs from Celery's defaults (see the module docstring)."""
    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": False,
        "worker_prefetch_multiplier": 1,
        "task_track_started": False,  # the claim says who started a host (see CLAIM_PREFIX)
        "result_expires": RESULT_EXPIRES,
        "result_extended": False,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "socket_timeout": BROKER_SOCKET_TIMEOUT,
            "socket_connect_timeout": BROKER_SOCKET_TIMEOUT,
        },
        "broker_connection_timeout": BROKER_SOCKET_TIMEOUT,
        "redis_socket_timeout": BROKER_SOCKET_TIMEOUT,
        "redis_socket_connect_timeout": BROKER_SOCKET_TIMEOUT,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "task_default_queue": "mfa-agent.default",
    }
