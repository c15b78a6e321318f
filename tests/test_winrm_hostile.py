"""Live scans of hostile WS-Management hosts (`hostile_wsman`): nothing they say redirects a
request, forges a result, exhausts memory or outlives the host deadline, and every bad reply has
a named reason.

Black-box: each test scans an inventory pointing at a hostile server through the command line,
so the same tests hold for any WinRM transport. Servers listen on 127.0.6.x in this process.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, CliRun

from agent.connectors.common import Timeouts
from agent.connectors.errors import ConnectorError, ErrorKind
from agent.connectors.winrm import WinRMConnector
from agent.inventory.loader import load_inventory
from agent.lab import soap
from agent.lab.certs import create_certificates

pytest.register_assert_rewrite("labfixtures")
from hostile_wsman import (  # noqa: E402
    PASSWORD_ENV,
    ForgedShell,
    Scripted,
    Sink,
    declaring,
    flooding,
    gzip_bomb,
    plaintext_forger,
    redirecting,
    running,
    scan_peak_rss,
    scripted,
    trickling,
    write_inventory,
)
from labfixtures import FAST_TIMEOUTS, PROXY_VARIABLES, LabProcess, Report  # noqa: E402

pytest_plugins = ("labfixtures",)

Runner = Callable[..., CliRun]
HOST = "hostile.lab.example"
ADDRESS, ELSEWHERE = "127.0.6.1", "127.0.6.2"
MiB = 1024 * 1024


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    """The password the hostile host accepts, set where its inventory reads it."""
    value = f"Hx-{secrets.token_hex(8)}-Pw"
    monkeypatch.setenv(PASSWORD_ENV, value)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return value


@pytest.fixture(params=["fast", "pywinrm"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each hostile server is scanned by both WinRM clients: the fast one (the default) and
    pywinrm (Kerberos, CredSSP, certificates). Both must refuse alike."""
    return str(request.param)


@pytest.fixture
def run_cli(run_cli: Runner, engine: str) -> Runner:
    """`run_cli` whose scans use the `engine` under test."""

    def run(*args: str) -> CliRun:
        if args[:1] == ("scan",) and "--winrm-client" not in args:
            args = (*args, "--winrm-client", engine)
        return run_cli(*args)

    return run


def _scan(run_cli: Runner, inventory: Path, *options: str) -> Report:
    result = run_cli("scan", "-i", str(inventory), "--format", "json", *FAST_TIMEOUTS, *options)
    report = Report.parse(result.out)
    assert result.code == report.exit_code, result.err
    return report


def _assert_refused(report: Report, kind: str, message: str) -> None:
    """The host is an ERROR of that kind and message, and not one result says PASS."""
    assert report.error(HOST) == message
    assert report.host_error_kind(HOST) == kind
    assert "PASS" not in report.statuses(HOST).values()


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("after_logon", [False, True], ids=["at-once", "after-ntlm-logon"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed(
    run_cli: Runner, password: str, tmp_path: Path, status: int, after_logon: bool
) -> None:
    sink = Sink(ELSEWHERE)
    try:
        target = sink.url()
        with running(ADDRESS, redirecting(status, target, after_logon=after_logon),
                     password=password, state_dir=tmp_path) as server:
            report = _scan(run_cli, server.inventory(tmp_path / "inventory.yaml"))
            logons = server.logons
    finally:
        sink.stop()
    _assert_refused(
        report, "redirect-refused",
        f"{HOST} answered HTTP {status}, a redirect to {target}: redirects are never followed, "
        "so no request or credential went anywhere else",
    )
    assert logons == (1 if after_logon else 0)
    # Not a request, not an NTLM message, not even a connection went to the other address.
    assert (sink.connections, bytes(sink.received)) == (0, b"")


# -- forged plaintext on an encrypted session ------------------------------------------------


def test_a_host_that_seals_its_replies_passes(
    run_cli: Runner, password: str, tmp_path: Path
) -> None:
    """The forging server's replies are good ones: sealed, they are believed (so the test
    below fails for the plaintext alone)."""
    with running(ADDRESS, scripted(lambda action, message: None), password=password,
                 state_dir=tmp_path) as server:
        report = _scan(run_cli, server.inventory(tmp_path / "inventory.yaml"))
    assert report.error(HOST) is None
    assert report.statuses(HOST)["adfs-role-running"] == "PASS"


def test_a_plaintext_reply_on_an_encrypted_session_is_refused(
    run_cli: Runner, password: str, tmp_path: Path
) -> None:
    with running(ADDRESS, plaintext_forger(), password=password, state_dir=tmp_path) as server:
        report = _scan(run_cli, server.inventory(tmp_path / "inventory.yaml"))
        assert server.logons >= 1  # the session was encrypted before the forgery
    _assert_refused(
        report, "unencrypted-reply",
        f"unencrypted reply on an encrypted session from {HOST}: refused, it could be forged",
    )


# -- malformed replies: each with a named reason -----------------------------------------------

HTML = b"<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>"
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaaaaaaaa">'
          b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
          b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">&b;</s:Envelope>')


def _healthy(message: bytes) -> bytes:
    return ForgedShell().answer(message)


def _on(action: str, make: Callable[[bytes], Scripted]) -> Callable[[str, bytes], Scripted | None]:
    return lambda seen, message: make(message) if seen == action else None


def _sealed(body: Callable[[bytes], bytes], status: int = 200) -> Callable[[bytes], Scripted]:
    return lambda message: (status, body(message), True, "")


MALFORMED: dict[str, tuple[Callable[[str, bytes], Scripted | None], str, str]] = {
    "html-200": (
        _on(soap.ACTION_CREATE, _sealed(lambda m: HTML)), "malformed-reply",
        f"malformed reply from {HOST}: an HTML page (no Content-Type), not WS-Management"),
    "html-500-sealed": (
        _on(soap.ACTION_CREATE, _sealed(lambda m: HTML, 500)), "http-error",
        f"{HOST} answered HTTP 500 with an HTML page (no Content-Type), not WS-Management"),
    "html-500-plaintext": (
        _on(soap.ACTION_CREATE, lambda m: (500, HTML, False, "text/html")), "http-error",
        f"{HOST} answered HTTP 500 with an unencrypted body on an encrypted session "
        "(not read)"),
    "entities": (
        _on(soap.ACTION_CREATE, _sealed(lambda m: LAUGHS)), "malformed-reply",
        f"malformed reply from {HOST}: the reply declares a DOCTYPE (entity declarations are "
        "refused, never expanded)"),
    "not-well-formed": (
        _on(soap.ACTION_CREATE, _sealed(lambda m: _healthy(m)[:-20])), "malformed-reply",
        f"malformed reply from {HOST}: XML that is not well-formed (unclosed token at line 2, "
        "column "),
    "empty": (
        _on(soap.ACTION_CREATE, _sealed(lambda m: b"")), "malformed-reply",
        f"malformed reply from {HOST}: an empty reply"),
    "not-an-envelope": (
        _on(soap.ACTION_CREATE, _sealed(lambda m: b"<Shell><ShellId>1</ShellId></Shell>")),
        "malformed-reply", f"malformed reply from {HOST}: XML whose root is <Shell>, not a SOAP "
        "envelope"),
    "no-shell-id": (
        _on(soap.ACTION_CREATE, _sealed(lambda m: _healthy(m).replace(b'"ShellId"', b'"X"')
                                        .replace(b"ShellId>", b"X>"))),
        "malformed-reply", f"malformed reply from {HOST}: the Create reply names no readable "
        "ShellId"),
    "no-command-id": (
        _on(soap.ACTION_COMMAND, _sealed(lambda m: _healthy(m).replace(b"CommandId>", b"X>"))),
        "malformed-reply", f"malformed reply from {HOST}: the Command reply has no readable "
        "CommandId"),
    "exit-code-not-a-number": (
        _on(soap.ACTION_RECEIVE, _sealed(lambda m: re.sub(
            rb"ExitCode>0<", b"ExitCode>zero<", _healthy(m)))),
        "malformed-reply", f"malformed reply from {HOST}: the Receive reply has a missing or "
        "non-numeric ExitCode, or unreadable output streams"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_reply_gets_a_named_reason(
    run_cli: Runner, password: str, tmp_path: Path, case: str
) -> None:
    replies, kind, message = MALFORMED[case]
    with running(ADDRESS, scripted(replies), password=password, state_dir=tmp_path) as server:
        report = _scan(run_cli, server.inventory(tmp_path / "inventory.yaml"))
    error = report.error(HOST)
    assert error is not None and error.startswith(message), error
    assert report.host_error_kind(HOST) == kind
    assert "PASS" not in report.statuses(HOST).values()


# -- floods and trickles -----------------------------------------------------------------------


def test_a_reply_declaring_more_than_the_cap_is_refused_before_its_body(
    run_cli: Runner, password: str, tmp_path: Path
) -> None:
    with running(ADDRESS, declaring(400 * MiB), password=password, state_dir=tmp_path) as server:
        report = _scan(run_cli, server.inventory(tmp_path / "inventory.yaml"))
        assert server.hung_up.wait(10), "the agent kept the connection open"
        sent = server.bytes_sent
    _assert_refused(report, "reply-too-large",
                    f"{HOST} sent a reply larger than 4 MiB: stopped reading it")
    assert sent < 64 * MiB


def test_a_compressed_reply_is_capped_by_what_it_expands_to(
    run_cli: Runner, password: str, tmp_path: Path
) -> None:
    """100 MB gzip-compressed to ~100 KB on the wire: pywinrm's client (which decodes what
    requests decodes) counts the decoded bytes; the fast client decodes nothing and refuses a
    compressed reply it never asked for."""
    with running(ADDRESS, gzip_bomb(100 * MiB), password=password, state_dir=tmp_path) as server:
        inventory = server.inventory(tmp_path / "inventory.yaml")
        pywinrm = _scan(run_cli, inventory, "--winrm-client", "pywinrm")
        fast = _scan(run_cli, inventory, "--winrm-client", "fast")
        assert server.bytes_sent < 2 * MiB
    _assert_refused(pywinrm, "reply-too-large",
                    f"{HOST} sent a reply larger than 4 MiB: stopped reading it")
    _assert_refused(fast, "malformed-reply",
                    f"malformed reply from {HOST}: a compressed reply (Content-Encoding 'gzip') "
                    "that was not asked for")


def test_a_reply_past_the_size_cap_is_refused_while_it_is_read(
    run_cli: Runner, password: str, tmp_path: Path
) -> None:
    with running(ADDRESS, flooding(400 * MiB), password=password, state_dir=tmp_path) as server:
        report = _scan(run_cli, server.inventory(tmp_path / "inventory.yaml"))
        assert server.hung_up.wait(10), "the agent kept the flooding connection open"
        sent = server.bytes_sent
    _assert_refused(report, "reply-too-large",
                    f"{HOST} sent a reply larger than 4 MiB: stopped reading it")
    # The agent stopped reading near the cap: the host could not push its 400 MB through
    # (socket buffers hold a few MiB at most).
    assert sent < 64 * MiB


def _peak_rss_kib(inventory: Path, engine: str) -> tuple[int, Report]:
    """Peak RSS (KiB) of a scan run as its own process, and its report."""
    kib, out = scan_peak_rss("scan", "-i", str(inventory), "--format", "json", *FAST_TIMEOUTS,
                             "--winrm-client", engine, cwd=REPO)
    return kib, Report.parse(out)


def test_a_host_sending_400_mb_adds_less_than_100_mb_to_the_agent(
    password: str, tmp_path: Path, engine: str
) -> None:
    with running(ADDRESS, scripted(_on(soap.ACTION_CREATE, _sealed(lambda m: b""))),
                 password=password, state_dir=tmp_path) as server:
        baseline, report = _peak_rss_kib(server.inventory(tmp_path / "small.yaml"), engine)
    assert report.host_error_kind(HOST) == "malformed-reply"
    with running(ADDRESS, flooding(400 * MiB), password=password, state_dir=tmp_path) as server:
        flooded, report = _peak_rss_kib(server.inventory(tmp_path / "flood.yaml"), engine)
    assert report.host_error_kind(HOST) == "reply-too-large"
    assert flooded - baseline < 100 * 1024, (baseline, flooded)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_trickled_reply_is_cut_off_at_the_host_deadline(
    run_cli: Runner, password: str, tmp_path: Path, scheme: str
) -> None:
    """One byte a second: every read gets data, so no read timeout ever fires. The host
    deadline does, and the agent really drops the connection (the host sees it hang up)."""
    tls = (create_certificates(tmp_path / "tls", names=[HOST], addresses=[ADDRESS])
           if scheme == "https" else None)
    with running(ADDRESS, trickling(), password=password, state_dir=tmp_path,
                 tls=tls) as server:
        report = _scan(run_cli, server.inventory(tmp_path / "inventory.yaml"))
        hung_up = server.hung_up.wait(10)
    deadline = FAST_TIMEOUTS[FAST_TIMEOUTS.index("--host-timeout") + 1]
    _assert_refused(report, "timed-out",
                    f"timed out: {HOST} gave no complete answer within the {deadline} s host "
                    "deadline")
    assert hung_up, "the agent kept reading the trickle after the host deadline"


def test_the_connector_alone_holds_the_host_deadline(password: str, tmp_path: Path) -> None:
    """Without the scan's coordinator watching, the connector cuts the trickle itself."""
    with running(ADDRESS, trickling(), password=password, state_dir=tmp_path) as server:
        host = load_inventory(server.inventory(tmp_path / "inventory.yaml")).hosts[0]
        timeouts = Timeouts(connect=2.0, operation=1, host=2.0)
        outcome: list[BaseException | dict[str, Any]] = []

        def gather() -> None:
            try:
                outcome.append(WinRMConnector(host, timeouts).gather(
                    time.monotonic() + timeouts.host))
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=gather, daemon=True)
        worker.start()
        worker.join(60)  # bounds a failure only: the deadline is 2 s
        hung_up = server.hung_up.wait(10)
    assert not worker.is_alive(), "the connector kept reading the trickle past its deadline"
    (error,) = outcome
    assert isinstance(error, ConnectorError)
    assert error.kind is ErrorKind.TIMED_OUT
    assert error.message == (
        f"timed out: {HOST} gave no complete answer within the 2 s host deadline"
    )
    assert hung_up


# -- timeouts that name themselves -------------------------------------------------------------


def test_a_tls_handshake_that_never_comes_names_the_connect_timeout(
    run_cli: Runner, password: str, tmp_path: Path
) -> None:
    """A listener that accepts and then says nothing: over https the handshake waits."""
    silent = Sink(ADDRESS)
    try:
        inventory = write_inventory(
            tmp_path / "inventory.yaml", silent.address, silent.port,
            ansible_winrm_scheme="https", ansible_winrm_server_cert_validation="ignore",
        )
        report = _scan(run_cli, inventory)
    finally:
        silent.stop()
    _assert_refused(report, "timed-out",
                    f"timed out connecting to {HOST}: no TLS handshake within 2 s "
                    "(--connect-timeout)")


# -- the process environment -------------------------------------------------------------------


@pytest.fixture
def environment_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """Every write to os.environ from now on: (name, value or None for a deletion)."""
    writes: list[tuple[str, Any]] = []
    environ_type = type(os.environ)
    setitem, delitem = environ_type.__setitem__, environ_type.__delitem__

    def record_set(self: Any, key: str, value: str) -> None:
        writes.append((key, value))
        setitem(self, key, value)

    def record_del(self: Any, key: str) -> None:
        writes.append((key, None))
        delitem(self, key)

    monkeypatch.setattr(environ_type, "__setitem__", record_set)
    monkeypatch.setattr(environ_type, "__delitem__", record_del)
    return writes


@pytest.mark.needs_server
def test_a_scan_never_writes_the_process_environment(
    builtin_lab: LabProcess, run_cli: Runner, use_lab: Callable[[LabProcess], str],
    tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    """requests rewrites os.environ per request when proxies are consulted (unlocked: a
    KeyError under load). The transport never consults or touches the environment."""
    use_lab(builtin_lab)
    writes: list[tuple[str, Any]] = request.getfixturevalue("environment_writes")
    result = run_cli("scan", "-i", str(builtin_lab.inventory), "--format", "json",
                     "--limit", "adfs01.lab.example", *FAST_TIMEOUTS)
    report = Report.parse(result.out)
    assert report.error("adfs01.lab.example") is None
    assert writes == []


def test_the_report_of_a_refused_host_is_valid_json(
    run_cli: Runner, password: str, tmp_path: Path
) -> None:
    """Quoted host text (a Location with control characters) stays one printable line."""
    location = "http://127.0.6.2/\x1b[31mred\x07"
    with running(ADDRESS, redirecting(302, location, after_logon=False), password=password,
                 state_dir=tmp_path) as server:
        report = _scan(run_cli, server.inventory(tmp_path / "inventory.yaml"))
    error = report.error(HOST) or ""
    assert "\x1b" not in error and "\r" not in error and "\n" not in error
    assert json.loads(json.dumps(error)) == error
