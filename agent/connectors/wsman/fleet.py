"""Many hosts at once on the fast path: asyncio in one process, or one process per core.

`FleetRun` reads a list of hosts and hands each `HostFacts` to a callback as it is done. Hosts
are read concurrently on one event loop, as many at a time as file descriptors and memory allow
(`concurrency`: the soft ``RLIMIT_NOFILE``, raised to the hard limit, less a reserve, and at most
`MAX_IN_FLIGHT`), each within its own host deadline (``asyncio.timeout``). With more than
`PROCESS_THRESHOLD` hosts and more than one core, the hosts are dealt round-robin to one forked
process per core (``os.cpu_count()``); each runs its own event loop and sends back plain data
(name, facts, error), as many hosts per message as are done, over a pipe. SIGINT is ignored in
those children: the parent stops them by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import resource
import signal
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, Final

from agent.connectors.common import Timeouts
from agent.connectors.errors import ConnectorError, deadline_passed
from agent.connectors.wsman.session import gather_facts
from agent.facts import HostError, HostFacts
from agent.inventory import Host

log = logging.getLogger(__name__)

#: Hosts from which a scan is split across one process per core.
PROCESS_THRESHOLD: Final = 300
#: File descriptors kept free for everything else (logs, reports, the thread pool's hosts).
_FD_RESERVE: Final = 256
#: Most hosts one process has in flight. The client's CPU, not waiting, bounds a large scan:
#: 512 hosts at +1 s per request already outpace one core (a host costs a few ms of CPU), so
#: more in flight would only make each host wait longer for the CPU — past its own deadline on
#: a busy machine — and hold more memory (each holds a connection, buffers, an NTLM context).
MAX_IN_FLIGHT: Final = 512


def host_facts(host: Host, facts: dict[str, Any] | None = None,
               error: HostError | None = None) -> HostFacts:
    """The `HostFacts` of one host (read, or failed)."""
    return HostFacts(name=host.name, roles=host.roles, address=host.address,
                     declared=host.declared, facts=facts or {}, error=error)


def concurrency() -> int:
    """How many hosts one process may have in flight (one socket each, `MAX_IN_FLIGHT` at most)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return max(16, min(MAX_IN_FLIGHT, soft - _FD_RESERVE))


async def read_host(host: Host, timeouts: Timeouts) -> HostFacts:
    """One host within its deadline; every failure becomes its `HostError`."""
    try:
        async with asyncio.timeout(timeouts.host):
            return host_facts(host, facts=await gather_facts(host, timeouts))
    except TimeoutError:
        late = deadline_passed(host.name, timeouts.host)
        return host_facts(host, error=HostError(late.kind.value, late.message))
    except ConnectorError as exc:
        return host_facts(host, error=HostError(exc.kind.value, exc.message))
    except Exception as exc:  # a bug must cost one host, not the scan
        log.error("gathering %s failed unexpectedly", host.name)
        log.debug("traceback", exc_info=True)
        return host_facts(host, error=HostError("internal",
                                                f"internal error: {type(exc).__name__}"))


async def read_hosts(hosts: Sequence[Host], timeouts: Timeouts,
                     done: Callable[[HostFacts], None], limit: int | None = None) -> None:
    """Read every host, `limit` (default `concurrency()`) at a time, calling `done` for each."""
    gate = asyncio.Semaphore(limit or concurrency())

    async def one(host: Host) -> None:
        async with gate:
            result = await read_host(host, timeouts)
        done(result)

    await asyncio.gather(*(one(h) for h in hosts))


def _child(hosts: Sequence[Host], timeouts: Timeouts, pipe: Connection) -> None:
    """A forked reader: its event loop never writes to the pipe itself (a parent slow to read
    would block the loop and every host in flight); a sender thread does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outbox: queue.SimpleQueue[tuple[str, Any, Any] | None] = queue.SimpleQueue()

    def sender() -> None:
        # Whatever has queued up goes in one message: one pickle, one write and one wake-up of
        # the parent for a batch, not for each host.
        while True:
            batch = [outbox.get()]
            with contextlib.suppress(queue.Empty):
                while batch[-1] is not None:
                    batch.append(outbox.get_nowait())
            done = batch[-1] is None
            if done:
                batch.pop()
            if batch:
                pipe.send(batch)
            if done:
                return

    thread = threading.Thread(target=sender, name="mfa-agent results", daemon=True)
    thread.start()

    def send(facts: HostFacts) -> None:
        error = (facts.error.kind, facts.error.message) if facts.error else None
        # Only the top level is a read-only proxy: the entries are the plain dicts and lists
        # `gather_facts` built (JSON values), pickled as they are.
        outbox.put((facts.name, dict(facts.facts), error))

    try:
        asyncio.run(read_hosts(hosts, timeouts, send))
    finally:
        outbox.put(None)
        thread.join()
        pipe.close()


class FleetRun:
    """Reads hosts in the background (a thread, and processes for large fleets)."""

    def __init__(self, hosts: Sequence[Host], timeouts: Timeouts,
                 done: Callable[[HostFacts], None], *, processes: int | None = None) -> None:
        self.hosts = list(hosts)
        self._by_name = {h.name: h for h in self.hosts}
        self.timeouts = timeouts
        self.done = done
        cores = os.cpu_count() or 1
        self.processes = processes if processes is not None else (
            cores if len(self.hosts) > PROCESS_THRESHOLD and cores > 1 else 1)
        self._children: list[multiprocessing.process.BaseProcess] = []
        self._pipes: list[Connection] = []
        self._shares: dict[int, list[Host]] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = threading.Event()
        self._reap_lock = threading.Lock()

    def start(self) -> None:
        """Start reading (call from the main thread: processes are forked here)."""
        if not self.hosts:
            return
        if self.processes > 1:
            context = multiprocessing.get_context("fork")
            for index in range(self.processes):
                share = self.hosts[index::self.processes]
                if not share:
                    continue
                receiver, sender = context.Pipe(duplex=False)
                child = context.Process(target=_child, args=(share, self.timeouts, sender),
                                        name=f"mfa-agent winrm {index}", daemon=True)
                child.start()
                sender.close()
                self._children.append(child)
                self._pipes.append(receiver)
                self._shares[id(receiver)] = share
            target = self._collect
        else:
            target = self._serve
        self._thread = threading.Thread(target=target, name="mfa-agent winrm", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(read_hosts(self.hosts, self.timeouts, self._deliver))
        except (asyncio.CancelledError, RuntimeError):
            pass  # stopped
        finally:
            with contextlib.suppress(Exception):
                loop.close()

    def _collect(self) -> None:
        pipes = list(self._pipes)
        reported: set[str] = set()
        while pipes and not self._stopped.is_set():
            for ready in wait(pipes, timeout=0.2):
                assert isinstance(ready, Connection)
                try:
                    batch = ready.recv()
                except (EOFError, OSError):
                    pipes.remove(ready)
                    self._orphans(self._shares[id(ready)], reported)
                    continue
                for name, facts, error in batch:
                    reported.add(name)
                    self._deliver(host_facts(self._by_name[name], facts=facts,
                                             error=HostError(*error) if error else None))
        self._reap()

    def _reap(self) -> None:
        """Wait for the children, one thread at a time (two threads waiting on one child race:
        the loser never learns that it ended)."""
        with self._reap_lock:
            for child in self._children:
                child.join(timeout=5)

    def _orphans(self, share: list[Host], reported: set[str]) -> None:
        """Hosts of a child that ended without reporting them (it crashed or was killed)."""
        for host in share:
            if host.name not in reported:
                self._deliver(host_facts(host, error=HostError(
                    "internal", "internal error: the process reading this host stopped")))

    def _deliver(self, facts: HostFacts) -> None:
        if not self._stopped.is_set():
            self.done(facts)

    def stop(self) -> None:
        """Stop at once (Ctrl-C): children are killed by PID, the loop's tasks cancelled."""
        self._stopped.set()
        for child in self._children:
            if child.pid is not None and child.exitcode is None:
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signal.SIGKILL)
        self._reap()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            def cancel() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(cancel)
