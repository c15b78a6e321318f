"""The WinRM connector: runs the fact scripts on one Windows host over one WinRM shell.

One `Protocol` per host and scan: open_shell once, one command per fact script, close_shell
once (pywinrm's `Session.run_ps` would open a shell and re-authenticate per command). Protocols are
never shared between threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from urllib3.exceptions import NameResolutionError, ProtocolError
from winrm import transport as winrm_transport
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from agent.connectors.common import (
    MAX_OUTPUT_BYTES,
    Timeouts,
    run_scripts,
    script_entries,
    too_much_output,
)
from agent.connectors.errors import (
    COULD_NOT_CONNECT,
    OS_ERROR_ROW,
    TIMED_OUT_WAITING,
    ConnectorError,
    ErrorKind,
    Row,
    deadline_passed,
    fixed,
    map_exception,
    network_rows,
    unexpected,
)
from agent.connectors.replies import translate
from agent.connectors.winrm_errors import (
    CA_SETTING,
    credentials_rejected,
    endpoint_of,
    http_status,
    refuse_insecure,
    timed_out,
    wsman_fault,
)
from agent.connectors.winrm_transport import HostLink, guard
from agent.factscripts import MAX_COMMAND_LINE, FactScript, scripts_for
from agent.inventory import Host

log = logging.getLogger(__name__)


def _check_policy(host: Host) -> None:
    """Refuse insecure combinations, and transports whose optional extra is not installed."""
    refuse_insecure(host)
    c = host.connection
    if not transport_available(c.winrm_transport):
        raise ConnectorError(
            ErrorKind.MISSING_EXTRA,
            f"the {c.winrm_transport} transport needs an optional extra: "
            f"pip install 'mfa-agent[{c.winrm_transport}]'",
        )


def _fault(exc: BaseException, where: str) -> ConnectorError:
    return wsman_fault(where, str(getattr(exc, "reason", "")),
                       getattr(exc, "wsman_fault_code", None))


def _status(exc: BaseException, where: str) -> ConnectorError:
    return http_status(where, int(getattr(exc, "code", 0)))


def _client_error(exc: BaseException, where: str) -> ConnectorError:
    return ConnectorError(ErrorKind.CONFIGURATION, f"WinRM client error for {where}: {exc}")


def _rows(read_timeout: float | None) -> tuple[Row, ...]:
    """pywinrm's table: its own exceptions, then requests' and urllib3's around the socket rows
    both clients share (`agent.connectors.winrm_errors`)."""
    return (
        Row((InvalidCredentialsError,), lambda _exc, where: credentials_rejected(where)),
        Row((WSManFaultError,), _fault),
        Row((WinRMOperationTimeoutError,), TIMED_OUT_WAITING),
        Row((WinRMTransportError,), _status),
        Row((NameResolutionError,), fixed(ErrorKind.NAME_NOT_RESOLVED,
                                          "name not resolved: {where}")),
        Row((requests.exceptions.ConnectTimeout,), fixed(
            ErrorKind.TIMED_OUT, "timed out connecting to {where} (--connect-timeout)")),
        *network_rows(CA_SETTING, timed_out(read_timeout)),
        Row((requests.exceptions.SSLError,), fixed(ErrorKind.TLS_VERIFICATION_FAILED,
                                                   "TLS handshake with {where} failed")),
        Row((requests.exceptions.Timeout,), timed_out(read_timeout)),
        Row((ProtocolError,), fixed(ErrorKind.CONNECTION_RESET, "connection reset by {where}")),
        # requests' exceptions are OSErrors too: these rows come before the last socket row.
        Row((requests.exceptions.ConnectionError,), COULD_NOT_CONNECT),
        OS_ERROR_ROW,
        Row((WinRMError,), _client_error),
    )


_ROWS = _rows(None)


def classify(
    exc: BaseException, *, where: str, read_timeout: float | None = None
) -> ConnectorError:
    """The `ConnectorError` for what pywinrm (or requests under it) raised talking to `where`.

    `read_timeout` (seconds) names the limit in a read time-out.
    """
    rows = _rows(read_timeout) if read_timeout else _ROWS
    return map_exception(exc, rows, where, unexpected)


def transport_available(transport: str) -> bool:
    """Whether pywinrm can use a transport here (kerberos and credssp need optional packages).

    pywinrm probes for them when it is imported (its HAVE_* flags); asking it avoids guessing
    which module names it tries.
    """
    if transport == "kerberos":
        return bool(winrm_transport.HAVE_KERBEROS)
    if transport == "credssp":
        return bool(winrm_transport.HAVE_CREDSSP)
    return True


def build_protocol(host: Host, timeouts: Timeouts, link: HostLink | None = None) -> Protocol:
    """A pywinrm `Protocol` configured from the host's inventory variables, its HTTP guarded
    by `link` (`agent.connectors.winrm_transport`: one origin, no redirects, capped replies)."""
    _check_policy(host)
    c = host.connection
    password = c.password.reveal() if c.password is not None else None
    # Kerberos authenticates with the ticket cache (kinit; KRB5CCNAME): no password needed.
    needs_password = c.winrm_transport not in {"certificate", "kerberos"}
    if needs_password and (not c.user or password is None):
        raise ConnectorError(
            ErrorKind.CONFIGURATION,
            f"{c.winrm_transport} authentication needs ansible_user and ansible_password",
        )
    cert_pem = host.vars.get("ansible_winrm_cert_pem")
    cert_key = host.vars.get("ansible_winrm_cert_key_pem")
    if c.winrm_transport == "certificate" and not (
        isinstance(cert_pem, str) and isinstance(cert_key, str)
    ):
        raise ConnectorError(
            ErrorKind.CONFIGURATION,
            "certificate authentication needs ansible_winrm_cert_pem and "
            "ansible_winrm_cert_key_pem",
        )
    endpoint = endpoint_of(host)
    try:
        protocol = Protocol(
            endpoint,
            transport=c.winrm_transport,
            username=c.user,
            password=password,
            server_cert_validation=c.winrm_cert_validation,
            # None: no CA override and, unlike pywinrm's "legacy_requests" default, no trust
            # taken from REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE in the environment.
            ca_trust_path=c.winrm_ca_trust_path,  # type: ignore[arg-type]
            cert_pem=cert_pem if isinstance(cert_pem, str) else None,
            cert_key_pem=cert_key if isinstance(cert_key, str) else None,
            read_timeout_sec=timeouts.operation + 10,
            operation_timeout_sec=timeouts.operation,
            message_encryption="auto",
            proxy=None,  # never an environment proxy: traffic goes where the inventory says
        )
    except Exception as exc:
        raise classify(exc, where=host.name) from None
    guard(protocol, link or HostLink(host.name, endpoint))
    # requests takes (connect, read); pywinrm passes read_timeout_sec through unchanged.
    protocol.transport.read_timeout_sec = (timeouts.connect, timeouts.operation + 10)  # type: ignore[assignment]
    return protocol


class WinRMConnector:
    """Gathers one host's facts over WinRM. Create one per host and scan; not thread-safe."""

    def __init__(self, host: Host, timeouts: Timeouts) -> None:
        self.host = host
        self.timeouts = timeouts
        self._protocol: Protocol | None = None
        self._aborted = threading.Event()
        self._link: HostLink | None = None
        self.notes: list[str] = []
        self._lock = threading.Lock()

    def abort(self) -> None:
        """Called from the coordinator when the host deadline passed: drop the connection,
        waking a read blocked on it (also one that a host feeds a byte at a time)."""
        self._aborted.set()
        with self._lock:
            link = self._link
        if link is not None:
            link.abort()
        with self._lock:
            protocol = self._protocol
        if protocol is not None:
            session = getattr(protocol.transport, "session", None)
            if session is not None:
                session.close()

    def gather(self, deadline: float) -> dict[str, Any]:
        """Run every fact script the host's roles need; return fact name → entry."""
        scripts = scripts_for(self.host.roles)
        if not scripts:
            return {}
        link = HostLink(self.host.name, endpoint_of(self.host))
        with self._lock:
            self._link = link
        if self._aborted.is_set():
            link.abort()
        protocol = build_protocol(self.host, self.timeouts, link)
        with self._lock:
            self._protocol = protocol
        timer = link.abort_at(deadline)
        try:
            return self._gather(protocol, scripts, deadline)
        finally:
            timer.cancel()

    def _gather(
        self, protocol: Protocol, scripts: tuple[FactScript, ...], deadline: float
    ) -> dict[str, Any]:
        name = self.host.name
        try:
            shell = protocol.open_shell(codepage=65001)
        except Exception as exc:
            raise self._error(exc, "open_shell") from None
        try:
            return run_scripts(
                scripts,
                lambda script: self._run(protocol, shell, script, deadline),
                where=name,
                deadline=deadline,
                host_seconds=self.timeouts.host,
            )
        finally:
            # The shell dies with the connection anyway; a failed close changes no fact. After an
            # abort nothing more is sent: the host has been given up on.
            if not self._aborted.is_set():
                with contextlib.suppress(Exception):
                    protocol.close_shell(shell)

    def _receive(
        self,
        protocol: Protocol,
        shell: str,
        command_id: str,
        deadline: float,
        script: FactScript,
    ) -> tuple[bytes, bytes, int]:
        """Collect a command's output. pywinrm's own loop retries a timed-out Receive forever;
        this one stops at the host deadline, when the coordinator aborts the host, or when the
        output grows past `MAX_OUTPUT_BYTES`."""
        stdout, stderr = bytearray(), bytearray()
        while True:
            if self._aborted.is_set() or time.monotonic() > deadline:
                raise deadline_passed(self.host.name, self.timeouts.host)
            try:
                out, err, code, done = protocol.get_command_output_raw(shell, command_id)
            except WinRMOperationTimeoutError:
                continue  # the command is still running: ask again
            except Exception as exc:
                raise self._error(exc, "get_command_output") from None
            stdout += out
            stderr += err
            if len(stdout) + len(stderr) > MAX_OUTPUT_BYTES:
                raise too_much_output(self.host.name, script)
            if done:
                return bytes(stdout), bytes(stderr), code

    def _run(
        self, protocol: Protocol, shell: str, script: FactScript, deadline: float
    ) -> Mapping[str, Any]:
        name = self.host.name
        command = script.command_line()
        if len(command) > MAX_COMMAND_LINE:  # our own bug, caught before Windows does
            raise ConnectorError(
                ErrorKind.COMMAND_LINE_TOO_LONG,
                f"the {script.name} script is {len(command)} characters encoded "
                f"(limit {MAX_COMMAND_LINE})",
            )
        sent = datetime.now(UTC)
        try:
            command_id = protocol.run_command(shell, command)
        except Exception as exc:
            raise self._error(exc, "run_command") from None
        try:
            stdout, stderr, code = self._receive(protocol, shell, command_id, deadline, script)
        except BaseException:
            self._cleanup(protocol, shell, command_id, quiet=True)
            raise
        self._cleanup(protocol, shell, command_id, quiet=False)
        # The script read the host clock somewhere between sending and receiving: the midpoint
        # halves the error the command's own run time adds to the measured skew.
        read_at = sent + (datetime.now(UTC) - sent) / 2
        return script_entries(script, name, stdout, stderr, code, read_at)

    def _cleanup(self, protocol: Protocol, shell: str, command_id: str, *, quiet: bool) -> None:
        """Signal the command's end; quietly when an error reading it is already on its way.
        After an abort nothing more is sent: the host has been given up on."""
        if self._aborted.is_set() or (self._link is not None and self._link.aborted):
            return
        try:
            protocol.cleanup_command(shell, command_id)
        except Exception as exc:
            if not quiet:
                raise self._error(exc, "cleanup_command") from None
            log.debug("cleanup after a failed command on %s", self.host.name, exc_info=True)

    def _error(self, exc: BaseException, operation: str) -> ConnectorError:
        link = self._link
        if link is not None and link.aborted:  # the deadline cut the connection mid-read
            log.debug("%s: %s after the abort", self.host.name, operation, exc_info=exc)
            return deadline_passed(self.host.name, self.timeouts.host)
        return named_error(
            exc, where=self.host.name, operation=operation,
            read_timeout=self.timeouts.operation + 10,
        )


def named_error(
    exc: BaseException, *, where: str, operation: str, read_timeout: float | None = None
) -> ConnectorError:
    """The named error for what one pywinrm `Protocol` operation (its method name) raised:
    a reply it could not read (`agent.connectors.replies.translate`), else `classify`."""
    named = translate(exc, where=where, operation=operation)
    if named is None:
        return classify(exc, where=where, read_timeout=read_timeout)
    if not isinstance(exc, ConnectorError):
        log.debug("%s: pywinrm could not read the %s reply", where, operation, exc_info=exc)
    return named
