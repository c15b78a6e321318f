"""`FleetRun`: hosts split across processes read what one process reads, and stop on request."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import pytest

from agent.connectors.common import Timeouts
from agent.connectors.wsman import FleetRun
from agent.connectors.wsman.fleet import concurrency
from agent.facts import HostFacts
from agent.inventory import load_inventory

pytest.register_assert_rewrite("labfixtures")  # before importing it: its helpers assert
from labfixtures import LabProcess  # noqa: E402

pytest_plugins = ("labfixtures",)
pytestmark = pytest.mark.needs_server

UseLab = Callable[[LabProcess], str]
TIMEOUTS = Timeouts(connect=5, operation=2, host=6)


def _collect(run: FleetRun, results: queue.SimpleQueue[HostFacts], count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _ in range(count):
        facts = results.get(timeout=60)  # bounds a failure only
        out[facts.name] = (facts.error, {k: v for k, v in facts.facts.items() if k != "clock"})
    return out


def test_processes_read_what_one_process_reads(builtin_lab: LabProcess, use_lab: UseLab) -> None:
    use_lab(builtin_lab)
    hosts = [h for h in load_inventory(builtin_lab.inventory).hosts
             if h.name != "portal02.lab.example"]  # the hung host: its deadline only costs time
    one: queue.SimpleQueue[HostFacts] = queue.SimpleQueue()
    two: queue.SimpleQueue[HostFacts] = queue.SimpleQueue()
    single = FleetRun(hosts, TIMEOUTS, one.put, processes=1)
    split = FleetRun(hosts, TIMEOUTS, two.put, processes=2)
    single.start()
    first = _collect(single, one, len(hosts))
    split.start()
    second = _collect(split, two, len(hosts))
    assert first == second
    assert len(split._children) == 2
    assert any(error is None for error, _ in first.values())


def test_stop_kills_the_processes(fault_labs: dict[str, LabProcess], use_lab: UseLab) -> None:
    lab = fault_labs["hang"]
    use_lab(lab)
    hosts = load_inventory(lab.inventory).hosts  # faulty (hangs) and healthy
    results: queue.SimpleQueue[HostFacts] = queue.SimpleQueue()
    run = FleetRun(hosts, Timeouts(connect=5, operation=60, host=600), results.put, processes=2)
    run.start()
    healthy = results.get(timeout=60)
    assert healthy.error is None
    run.stop()  # kills and reaps them
    for child in run._children:
        assert not child.is_alive()
    assert results.empty()  # the hung host is never reported after stop


def test_concurrency_is_bounded_by_file_descriptors() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 16 <= concurrency() <= max(16, min(soft, 512))


def test_sessions_sign_in_with_the_modules_own_ntlm(
    builtin_lab: LabProcess, use_lab: UseLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the lab, a session signs in with `ntlm.Initiator` and seals with its `Sealer`;
    pyspnego is not used."""
    import asyncio

    from agent.connectors.wsman import ntlm, session
    from agent.connectors.wsman.fleet import read_host

    use_lab(builtin_lab)
    sealers: list[object] = []
    real = ntlm.Initiator.sealer

    def spy(self: ntlm.Initiator) -> object:
        sealers.append(result := real(self))
        return result

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("pyspnego was used")

    monkeypatch.setattr(ntlm.Initiator, "sealer", spy)
    monkeypatch.setattr(session._Pyspnego, "__init__", refused)
    host = next(h for h in load_inventory(builtin_lab.inventory).hosts
                if h.name == "adfs01.lab.example")
    facts = asyncio.run(read_host(host, TIMEOUTS))
    assert facts.error is None and facts.facts
    assert len(sealers) == 1


def test_a_challenge_the_module_declines_signs_in_again_with_pyspnego(
    builtin_lab: LabProcess, use_lab: UseLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ntlm.Unsupported` costs one more connection, not the host: pyspnego, imported off the
    event loop's thread, signs in on it and its context seals with the fast `Sealer` all the
    same."""
    import asyncio
    import importlib
    import threading

    from agent.connectors.wsman import ntlm, ntlmseal
    from agent.connectors.wsman.fleet import read_host

    use_lab(builtin_lab)
    declined: list[bytes] = []
    taken: list[object] = []
    real = ntlmseal.Sealer.take

    def decline(challenge: bytes) -> None:
        declined.append(challenge)
        raise ntlm.Unsupported("declined by the test")

    def spy(context: Any) -> ntlmseal.Sealer | None:
        taken.append(result := real(context))
        return result

    imported_on: list[threading.Thread] = []
    real_import = importlib.import_module

    def import_module(name: str, package: str | None = None) -> Any:
        if name.startswith("spnego"):
            imported_on.append(threading.current_thread())
        return real_import(name, package)

    monkeypatch.setattr(ntlm, "_parse_challenge", decline)
    monkeypatch.setattr(ntlmseal.Sealer, "take", staticmethod(spy))
    monkeypatch.setattr(importlib, "import_module", import_module)
    host = next(h for h in load_inventory(builtin_lab.inventory).hosts
                if h.name == "adfs01.lab.example")
    before = builtin_lab.stats()[host.name]
    facts = asyncio.run(read_host(host, TIMEOUTS))
    assert facts.error is None and facts.facts
    assert len(declined) == 1
    assert len(taken) == 1 and isinstance(taken[0], ntlmseal.Sealer)
    assert imported_on and threading.main_thread() not in imported_on  # asyncio.run's thread
    after = builtin_lab.stats()[host.name]
    assert after["ntlm_logons"] == before.get("ntlm_logons", 0) + 1
    assert after["http:401"] == before.get("http:401", 0) + 2  # two NEGOTIATEs


@pytest.mark.parametrize(("change", "message"), [
    ({"LM_COMPAT_LEVEL": "x"}, "pyspnego cannot start NTLM with LM_COMPAT_LEVEL='x' (0 to 5)"),
    ({"user": "LAB\\mfa-\udc80scan"}, "ansible_user holds what cannot be sent (a lone surrogate)"),
])
def test_local_settings_ntlm_cannot_use_are_configuration_errors(
    builtin_lab: LabProcess, use_lab: UseLab, monkeypatch: pytest.MonkeyPatch,
    change: dict[str, str], message: str,
) -> None:
    """Not "the host sent an unusable challenge", nor an internal error: the setting is named."""
    import asyncio
    import dataclasses

    from agent.connectors.wsman.fleet import read_host

    use_lab(builtin_lab)
    host = next(h for h in load_inventory(builtin_lab.inventory).hosts
                if h.name == "adfs01.lab.example")
    if "user" in change:
        host = dataclasses.replace(host, connection=dataclasses.replace(
            host.connection, user=change["user"]))
    else:
        monkeypatch.setenv("LM_COMPAT_LEVEL", change["LM_COMPAT_LEVEL"])
    facts = asyncio.run(read_host(host, TIMEOUTS))
    assert facts.error is not None
    assert (facts.error.kind, facts.error.message) == ("configuration", message)


def test_tls_connections_use_small_read_buffers(
    builtin_https_lab: LabProcess, use_lab: UseLab
) -> None:
    """asyncio's 256 KiB buffer per TLS connection, times 512 hosts in flight, was most of an
    https scan's memory: the fast client lowers it before its first TLS connection."""
    import asyncio
    import asyncio.sslproto

    from agent.connectors.wsman.fleet import read_host
    from agent.connectors.wsman.session import TLS_READ_BUFFER

    use_lab(builtin_https_lab)
    host = next(h for h in load_inventory(builtin_https_lab.inventory).hosts
                if h.name == "adfs01.lab.example")
    facts = asyncio.run(read_host(host, TIMEOUTS))
    assert facts.error is None and facts.facts
    assert asyncio.sslproto.SSLProtocol.max_size == TLS_READ_BUFFER


def test_plain_connections_read_in_buffers_below_the_mmap_threshold(
    builtin_lab: LabProcess, use_lab: UseLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio reads a plain connection 256 KiB at a time, a buffer glibc maps and unmaps for
    every read: the fast client asks for `RECV_SIZE` on each of its connections."""
    import asyncio

    from agent.connectors.wsman import session
    from agent.connectors.wsman.fleet import read_host

    use_lab(builtin_lab)
    sizes: list[int] = []
    real = session.Connection.__init__

    def spy(self: session.Connection, reader: Any, writer: Any, *args: Any) -> None:
        sizes.append(writer.transport.max_size)
        real(self, reader, writer, *args)

    monkeypatch.setattr(session.Connection, "__init__", spy)
    host = next(h for h in load_inventory(builtin_lab.inventory).hosts
                if h.name == "adfs01.lab.example")
    facts = asyncio.run(read_host(host, TIMEOUTS))
    assert facts.error is None and facts.facts
    assert sizes == [session.RECV_SIZE] and session.RECV_SIZE < 128 * 1024
