"""The coordinator's gather step: one task per host to its zone's queue, facts back, faults handled.

`ZoneGather` has the shape of `agent.gather.gather` and returns the same `Gathered`, so
`agent.scan.live` evaluates, reports and records a distributed scan exactly as a local one.

What can go wrong, and what the host then says (never missing, never reported twice):

* no worker consumes a zone's queue: ERROR "no worker for zone Z", as soon as probes of the
  workers' heartbeats (`agent.distributed.app.alive_key`) have shown no consumer `ABSENT_PROBES`
  times in a row, at the latest when no host of the zone was started within ``zone_timeout`` of
  dispatch;
* a worker that started a host lets its heartbeat expire and shows no other activity (claims,
  replies) for `ABSENT_PROBES` probes (killed, partitioned): the host is re-sent once, as a new
  task, to its zone; lost again (or no worker left) → ERROR "worker lost";
* a worker that started a host but has not replied long after the host's deadline: ERROR
  timed out (the worker enforces the deadline itself; this only bounds a misbehaving worker);
* Ctrl-C: every task not yet started is cancelled (claimed by the coordinator);
* the broker lost or frozen: every host not yet read is ERROR "lost the broker" (each command
  is bounded by `agent.distributed.app.BROKER_SOCKET_TIMEOUT`).

The coordinator talks to the broker with plain Redis commands only, besides publishing the tasks
(with Celery's bounded publish retry): no control broadcast and no result subscription, whose
reconnect loops have no end.

A task not started is cancelled by claiming it (`agent.distributed.app.claim_key`): a worker that
receives it later finds the claim taken and does not read the host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from agent.connectors.errors import ErrorKind, deadline_passed
from agent.distributed.app import (
    CANCELLED,
    WORKERS_KEY,
    alive_key,
    claim_key,
    make_app,
    shown_broker,
)
from agent.distributed.payload import (
    TASK_NAME,
    BadTask,
    CannotTravel,
    facts_from_reply,
    queue_for,
    task_for,
    zone_of,
)
from agent.errors import InputError, Problem
from agent.facts import HostError, HostFacts
from agent.gather import Gathered, GatherOptions
from agent.inventory import Host

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

#: Seconds between two polls of the results.
POLL_INTERVAL: Final = 0.5
#: Seconds between two probes of the workers' heartbeats.
PROBE_INTERVAL: Final = 2.0
#: Probes in a row without a consumer (or without a worker that started a host) before giving up
#: (on top of the heartbeat's own `agent.distributed.app.ALIVE_TTL`).
ABSENT_PROBES: Final = 2
#: Largest heartbeat read (a worker's list of queues).
MAX_HEARTBEAT_BYTES: Final = 64 * 2**10
#: Largest reply read from the broker for one host (facts are a few kilobytes).
MAX_REPLY_BYTES: Final = 4 * 2**20
#: Seconds past a host's deadline a worker may take to reply before the host is timed out.
REPLY_GRACE: Final = 60.0


@dataclass(frozen=True)
class DispatchOptions:
    """Where to send hosts and how long to wait for a zone's first worker."""

    broker: str
    zone_timeout: float = 120.0


@dataclass
class _Task:
    host: Host
    zone: str
    document: dict[str, Any]
    task_id: str = ""
    attempt: int = 1
    worker: str | None = None  # who claimed (started) it
    started: float | None = None
    absent: int = 0  # probes in a row its worker had no heartbeat


@dataclass
class _Zone:
    absent: int = 0  # probes in a row without a consumer
    started: bool = False  # some host of the zone was started


@dataclass
class _Run:
    hosts: list[Host]
    on_done: Callable[[HostFacts], None] | None
    results: dict[str, HostFacts] = field(default_factory=dict)
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pending: dict[str, _Task] = field(default_factory=dict)  # by task id
    zones: dict[str, _Zone] = field(default_factory=dict)
    dispatched: float = 0.0
    #: Workers and zones that showed activity (a claim, a reply) since the last probe: alive
    #: even if a busy worker is slow to answer the probe itself.
    active_workers: set[str] = field(default_factory=set)
    active_zones: set[str] = field(default_factory=set)
    #: Set by Ctrl-C (`_deferred_interrupt`): the loops stop at their next check.
    interrupted: threading.Event = field(default_factory=threading.Event)

    def record(self, facts: HostFacts, notes: tuple[str, ...] = ()) -> None:
        if facts.name in self.results:
            return
        self.results[facts.name] = facts
        if notes:
            self.notes[facts.name] = notes
        if self.on_done is not None:
            self.on_done(facts)

    def gathered(self, interrupted: bool = False) -> Gathered:
        hosts = tuple(self.results[h.name] for h in self.hosts if h.name in self.results)
        return Gathered(hosts, interrupted=interrupted, notes=dict(self.notes))


def _error(host: Host, kind: str, message: str) -> HostFacts:
    return HostFacts(host.name, host.roles, host.address, host.declared, {},
                     HostError(kind, message))


class ZoneGather:
    """`agent.gather.gather` over Celery workers: call it with the hosts and the scan's options."""

    def __init__(self, options: DispatchOptions, app: Celery | None = None) -> None:
        self.options = options
        self.app = app if app is not None else make_app(options.broker)
        from kombu.exceptions import OperationalError
        from redis.exceptions import RedisError

        #: What a broker that went away raises (the hosts not yet read are then ERROR).
        self.broker_errors: tuple[type[Exception], ...] = (RedisError, OperationalError, OSError)

    def check_broker(self) -> None:
        """`InputError` (exit 3) naming the broker, without its password, when it is unreachable."""
        try:
            self.app.backend.client.ping()
        except Exception as exc:  # redis raises many kinds; none may end the scan with a trace
            reason = type(exc).__name__
            detail = str(exc).replace(self.options.broker, shown_broker(self.options.broker))
            password = _password(self.options.broker)
            if password and password in detail:
                detail = ""
            raise InputError(
                Problem(
                    "<arguments>",
                    f"cannot reach the broker {shown_broker(self.options.broker)}: "
                    f"{reason}{': ' + detail[:200] if detail else ''}",
                    key="--broker",
                )
            ) from None

    def __call__(
        self,
        hosts: Sequence[Host],
        options: GatherOptions,
        on_done: Callable[[HostFacts], None] | None = None,
    ) -> Gathered:
        run = _Run(list(hosts), on_done)
        try:
            with _deferred_interrupt(run.interrupted):
                self._dispatch(run, options)
                self._collect(run, options)
        except KeyboardInterrupt:
            self._cancel(run, "scan interrupted before this host was read",
                         ErrorKind.INTERRUPTED.value)
            return run.gathered(interrupted=True)
        except self.broker_errors as exc:
            log.debug("the broker failed during the scan", exc_info=True)
            self._cancel(run, f"lost the broker {shown_broker(self.options.broker)} before this "
                         f"host was read ({type(exc).__name__})", "broker-lost", reachable=False)
        return run.gathered()

    # -- sending -------------------------------------------------------------------------------

    def _dispatch(self, run: _Run, options: GatherOptions) -> None:
        for host in run.hosts:
            if run.interrupted.is_set():
                raise KeyboardInterrupt
            if not host.roles:  # nothing to read, as in a local scan: not even sent
                run.record(HostFacts(host.name, host.roles, host.address, host.declared, {}))
                continue
            try:
                document = task_for(host, options.timeouts)
            except CannotTravel as exc:
                run.record(_error(host, ErrorKind.CONFIGURATION.value, str(exc)))
                continue
            self._send(run, _Task(host, zone_of(host), document))
        run.dispatched = time.monotonic()
        run.zones = {t.zone: _Zone() for t in run.pending.values()}

    def _send(self, run: _Run, task: _Task) -> None:
        task.task_id = f"mfa-agent-{uuid.uuid4()}"
        task.worker, task.started, task.absent = None, None, 0
        run.pending[task.task_id] = task
        # Not `app.send_task`: that also subscribes to the result on the backend's pub/sub and
        # returns an `AsyncResult` whose finaliser unsubscribes. Results are polled here, and a
        # subscription to a broker that went away reconnects with retries (19 s measured) inside
        # whatever code the garbage collector interrupts.
        amqp = self.app.amqp
        message = amqp.create_task_message(task.task_id, TASK_NAME, [task.document], {})
        with self.app.producer_or_acquire() as producer:
            amqp.send_task_message(producer, TASK_NAME, message, queue=queue_for(task.zone))

    # -- collecting ----------------------------------------------------------------------------

    def _collect(self, run: _Run, options: GatherOptions) -> None:
        next_probe = time.monotonic()
        while run.pending:
            self._poll(run)
            now = time.monotonic()
            if now >= next_probe and run.pending:
                self._probe(run)
                next_probe = time.monotonic() + PROBE_INTERVAL
            self._expire(run, options, now)
            if run.interrupted.is_set() or (run.pending and run.interrupted.wait(POLL_INTERVAL)):
                raise KeyboardInterrupt

    def _poll(self, run: _Run) -> None:
        """Collect the replies that arrived, and who claimed what."""
        ids = list(run.pending)
        backend = self.app.backend
        result_keys = [backend.get_key_for_task(i) for i in ids]
        pipe = backend.client.pipeline(transaction=False)
        for key in result_keys:  # at most one byte more than allowed: memory stays bounded
            pipe.getrange(key, 0, MAX_REPLY_BYTES)
        pipe.mget([claim_key(i) for i in ids])
        *results, claims = pipe.execute() if ids else [[]]
        finished = []
        for task_id, key, raw, claim in zip(ids, result_keys, results, claims, strict=True):
            task = run.pending[task_id]
            if claim is not None and task.worker is None:
                task.worker = _text(claim)
                task.started = time.monotonic()
                run.zones[task.zone].started = True
                run.active_workers.add(task.worker)
                run.active_zones.add(task.zone)
            if raw:  # b"" while there is no result yet
                self._finish(run, task, raw)
                finished.append(key)
        if finished:  # read once: no need to keep them on the broker until they expire
            backend.client.delete(*finished)

    def _finish(self, run: _Run, task: _Task, raw: bytes) -> None:
        del run.pending[task.task_id]
        host = task.host
        try:
            if len(raw) > MAX_REPLY_BYTES:
                raise BadTask(f"larger than {MAX_REPLY_BYTES // 2**20} MiB")
            meta = json.loads(raw)
            if not isinstance(meta, dict):
                raise BadTask("not a result")
            if meta.get("status") != "SUCCESS":
                failure = meta.get("result")
                kind = failure.get("exc_type") if isinstance(failure, dict) else None
                raise BadTask(f"the task failed on worker {task.worker}: {str(kind)[:80]}")
            facts, notes, worker = facts_from_reply(host, meta.get("result"))
        except (ValueError, BadTask) as exc:
            log.warning("%s: unusable reply: %s", host.name, exc)
            run.record(_error(host, "internal", f"unusable reply from the worker: {exc}"[:300]))
            return
        run.active_workers.add(worker)
        run.active_zones.add(task.zone)
        run.record(facts, (*notes, f"read by worker {worker} (zone {task.zone})"))

    def _heartbeats(self) -> dict[str, list[str]]:
        """The live workers and the queues each consumes; forgets the workers whose key expired."""
        client = self.app.backend.client
        names = [_text(n) for n in client.smembers(WORKERS_KEY)]
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.getrange(alive_key(name), 0, MAX_HEARTBEAT_BYTES)
        values = pipe.execute() if names else []
        alive: dict[str, list[str]] = {}
        for name, value in zip(names, values, strict=True):
            if value:
                alive[name] = _queues(value)
        gone = [name for name in names if name not in alive]
        if gone:
            client.srem(WORKERS_KEY, *gone)
        return alive

    def _probe(self, run: _Run) -> None:
        """Read the workers' heartbeats; act on absent consumers and lost workers."""
        heartbeats = self._heartbeats()
        alive = set(heartbeats) | run.active_workers
        consumed = {q for queues in heartbeats.values() for q in queues} | {
            queue_for(zone) for zone in run.active_zones
        }
        run.active_workers, run.active_zones = set(), set()
        for task in list(run.pending.values()):
            if task.worker is None or task.worker == CANCELLED:
                continue
            task.absent = 0 if task.worker in alive else task.absent + 1
            if task.absent >= ABSENT_PROBES:
                self._lost(run, task)
        for name, zone in run.zones.items():
            zone.absent = 0 if queue_for(name) in consumed else zone.absent + 1
            if zone.absent >= ABSENT_PROBES:
                self._no_worker(run, name)

    def _lost(self, run: _Run, task: _Task) -> None:
        del run.pending[task.task_id]
        lost = task.worker
        if task.attempt == 1:
            log.warning("%s: worker %s lost; sending the host again", task.host.name, lost)
            task.attempt = 2
            self._send(run, task)
            return
        run.record(_error(task.host, "worker-lost",
                          f"worker lost: {lost} stopped answering while reading this host "
                          "(it was already re-sent once)"))

    def _no_worker(self, run: _Run, zone: str) -> None:
        for task in [t for t in run.pending.values() if t.zone == zone and t.worker is None]:
            if not self._claim(task):
                continue  # a worker took it just now
            del run.pending[task.task_id]
            if task.attempt > 1:
                message = f"worker lost, and no other worker for zone {zone} to read this host"
                run.record(_error(task.host, "worker-lost", message))
            else:
                run.record(_error(task.host, "no-worker", f"no worker for zone {zone}"))

    def _expire(self, run: _Run, options: GatherOptions, now: float) -> None:
        for name, zone in run.zones.items():
            if not zone.started and now - run.dispatched > self.options.zone_timeout:
                self._no_worker(run, name)
        limit = options.timeouts.host + REPLY_GRACE
        for task in list(run.pending.values()):
            if task.started is not None and now - task.started > limit:
                del run.pending[task.task_id]
                late = deadline_passed(task.host.name, options.timeouts.host)
                run.record(_error(task.host, late.kind.value,
                                  f"{late.message} (no reply from worker {task.worker})"))

    def _claim(self, task: _Task) -> bool:
        """Cancel a task no worker has started; False when a worker claimed it first."""
        claimed = self.app.backend.client.set(claim_key(task.task_id), CANCELLED, nx=True,
                                              ex=24 * 3600)
        return bool(claimed)

    def _cancel(self, run: _Run, message: str, kind: str, reachable: bool = True) -> None:
        """Cancel every pending task (Ctrl-C, broker lost); their hosts get `message`."""
        for task in list(run.pending.values()):
            if reachable:
                try:
                    self._claim(task)
                except Exception:  # the broker may be gone: the host is reported all the same
                    log.debug("could not cancel %s", task.task_id, exc_info=True)
                    reachable = False
            run.record(_error(task.host, kind, message))
        run.pending.clear()
        for host in run.hosts:
            if host.name not in run.results:
                run.record(_error(host, kind, message))


def _queues(value: bytes) -> list[str]:
    """The queue names of a heartbeat (written by whoever can write the broker: checked)."""
    try:
        queues = json.loads(value) if len(value) <= MAX_HEARTBEAT_BYTES else None
    except ValueError:
        queues = None
    if not isinstance(queues, list):
        return []
    return [q for q in queues if isinstance(q, str)]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace")[:200] if isinstance(value, bytes) else str(value)


def _password(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:
        return None


@contextlib.contextmanager
def _deferred_interrupt(flag: threading.Event) -> Iterator[None]:
    """Ctrl-C sets `flag` instead of raising wherever the main thread happens to be.

    Celery's and redis' objects run code in ``__del__``; a KeyboardInterrupt raised there is
    swallowed ("Exception ignored in ...") and the scan would go on as if nothing happened. The
    dispatch loops check `flag` and raise at a point where it is handled.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: flag.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
