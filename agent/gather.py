"""Gathering facts from many hosts at once: the fast WinRM path, and a pool of worker threads.

WinRM hosts the fast path covers (NTLM or Basic, over http or validated https:
`agent.connectors.wsman.covers`) are read on asyncio, as many at once as file descriptors allow,
with one process per core for large fleets (`agent.connectors.wsman.FleetRun`); their results
join the same queue as the pool's. Every other host (SSH, and WinRM over Kerberos, CredSSP,
certificates or unvalidated TLS) goes to the pool of ``workers`` threads below.

The pool's client libraries block, so each host gets its own thread and its own connection. The
coordinator enforces each host's deadline itself (a hung host cannot hold the scan — pywinrm
retries a slow Receive forever), records a timeout for it, drops its connection and starts a
replacement worker so the pool keeps its size. Workers are daemon threads: one stuck in a read
cannot keep the process alive after the scan.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.connectors.common import Timeouts
from agent.connectors.errors import ConnectorError, ErrorKind, deadline_passed
from agent.connectors.wsman import FleetRun, covers
from agent.facts import HostError, HostFacts
from agent.inventory import Host

log = logging.getLogger(__name__)


class Connector(Protocol):
    """What the pool needs of a connector."""

    #: What the connection did that a report must show (e.g. a host key accepted on first use).
    notes: list[str]

    def gather(self, deadline: float) -> dict[str, Any]: ...

    def abort(self) -> None: ...


ConnectorFactory = Callable[[Host, Timeouts], Connector]


def default_connector(host: Host, timeouts: Timeouts) -> Connector:
    """The connector for a host's `ansible_connection`.

    Imported on first use: a scan whose hosts all take the fast WinRM path never loads paramiko,
    pywinrm or requests (a third of the start-up time).
    """
    if host.connection.kind == "ssh":
        from agent.connectors.ssh import SSHConnector

        return SSHConnector(host, timeouts)
    from agent.connectors.winrm import WinRMConnector

    return WinRMConnector(host, timeouts)


@dataclass(frozen=True)
class GatherOptions:
    """Concurrency and time bounds of a live scan.

    `workers` is the number of threads for hosts the fast WinRM path does not cover (SSH, and
    WinRM over Kerberos, CredSSP or certificates); the fast path's concurrency adapts on its own.
    `fast_winrm` False sends every WinRM host through pywinrm (for comparisons and tests).
    """

    workers: int = 64
    fast_winrm: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class Gathered:
    """Facts of every host, in inventory order; `interrupted` if the user stopped the scan."""

    hosts: tuple[HostFacts, ...]
    interrupted: bool = False
    #: Per host, what its connection did that the report must show.
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _facts(
    host: Host, facts: dict[str, Any] | None = None, error: HostError | None = None
) -> HostFacts:
    return HostFacts(
        name=host.name,
        roles=host.roles,
        address=host.address,
        declared=host.declared,
        facts=facts or {},
        error=error,
    )


def gather(
    hosts: Sequence[Host],
    options: GatherOptions,
    on_done: Callable[[HostFacts], None] | None = None,
    factory: ConnectorFactory = default_connector,
) -> Gathered:
    """Gather every host's facts; failures become `HostError`s, never exceptions."""
    fast = (
        [h for h in hosts if h.roles and covers(h)]
        if options.fast_winrm and factory is default_connector
        else []
    )
    pool = _Pool(hosts, options, factory, on_done, fast)
    return pool.run()


class _Pool:
    def __init__(
        self,
        hosts: Sequence[Host],
        options: GatherOptions,
        factory: ConnectorFactory,
        on_done: Callable[[HostFacts], None] | None,
        fast: Sequence[Host] = (),
    ) -> None:
        self.hosts = list(hosts)
        self.fast = FleetRun(fast, options.timeouts, self._fast_done)
        self._fast_names = {h.name for h in fast}
        self.options = options
        self.factory = factory
        self.on_done = on_done
        self.todo: queue.SimpleQueue[Host] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[HostFacts] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.running: dict[str, tuple[float, Connector, Host]] = {}
        self.results: dict[str, HostFacts] = {}
        self.notes: dict[str, tuple[str, ...]] = {}

    def _fast_done(self, facts: HostFacts) -> None:
        self.done.put(facts)

    def run(self) -> Gathered:
        self.fast.start()  # first: it may fork, which is safest before our threads start
        threaded = 0
        for host in self.hosts:
            if host.name in self._fast_names:
                continue
            if host.roles:
                self.todo.put(host)
                threaded += 1
            else:  # no role, nothing to read: do not even connect
                self._record(_facts(host))
        for _ in range(min(max(1, self.options.workers), threaded)):
            self._start_worker()
        try:
            while len(self.results) < len(self.hosts):
                with contextlib.suppress(queue.Empty):
                    self._record(self.done.get(timeout=0.05))
                self._expire()
        except KeyboardInterrupt:
            self._interrupt()
            return Gathered(self._ordered(), interrupted=True, notes=dict(self.notes))
        return Gathered(self._ordered(), notes=dict(self.notes))

    def _ordered(self) -> tuple[HostFacts, ...]:
        return tuple(self.results[h.name] for h in self.hosts if h.name in self.results)

    def _record(self, facts: HostFacts) -> None:
        if facts.name in self.results:
            return
        self.results[facts.name] = facts
        if self.on_done is not None:
            self.on_done(facts)

    def _start_worker(self) -> None:
        threading.Thread(target=self._work, name="mfa-agent-gather", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                host = self.todo.get_nowait()
            except queue.Empty:
                return
            deadline = time.monotonic() + self.options.timeouts.host
            try:
                connector = self.factory(host, self.options.timeouts)
            except Exception:
                log.error("could not create a connector for %s", host.name)
                log.debug("traceback", exc_info=True)
                self.done.put(
                    _facts(host, error=HostError("internal", "could not create a connector"))
                )
                continue
            with self.lock:
                self.running[host.name] = (deadline, connector, host)
            result = self._gather_one(host, connector, deadline)
            self._keep_notes(host.name, connector)
            with self.lock:
                abandoned = self.running.pop(host.name, None) is None
            if abandoned:
                return  # the coordinator already timed this host out and replaced this worker
            self.done.put(result)

    def _gather_one(self, host: Host, connector: Connector, deadline: float) -> HostFacts:
        try:
            return _facts(host, facts=connector.gather(deadline))
        except ConnectorError as exc:
            log.debug("%s: %s", host.name, exc)
            return _facts(host, error=HostError(exc.kind.value, exc.message))
        except Exception as exc:  # a bug must cost one host, not the scan
            log.error("gathering %s failed unexpectedly", host.name)
            log.debug("traceback", exc_info=True)
            return _facts(
                host, error=HostError("internal", f"internal error: {type(exc).__name__}")
            )

    def _keep_notes(self, name: str, connector: Connector) -> None:
        """What the connection did that the report must show, also for a host given up on."""
        if connector.notes:
            with self.lock:
                self.notes[name] = tuple(connector.notes)

    def _expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            expired = [(n, c, h) for n, (d, c, h) in self.running.items() if now > d]
            for name, _, _ in expired:
                del self.running[name]
        for _, connector, host in expired:
            self._keep_notes(host.name, connector)
            late = deadline_passed(host.name, self.options.timeouts.host)
            self._record(_facts(host, error=HostError(late.kind.value, late.message)))
            _quietly(connector.abort)
            self._start_worker()

    def _interrupt(self) -> None:
        self.fast.stop()
        with self.lock:
            running = list(self.running.values())
            self.running.clear()
        for _, connector, host in running:
            self._keep_notes(host.name, connector)
            _quietly(connector.abort)
        for host in self.hosts:
            if host.name not in self.results:
                error = HostError(
                    ErrorKind.INTERRUPTED.value, "scan interrupted before this host was read"
                )
                self.results[host.name] = _facts(host, error=error)


def _quietly(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:
        log.debug("ignored error while aborting a connection", exc_info=True)
