"""Connector errors: one table from library exceptions to readable, structured reasons.

Classification walks the exception chain and matches *types* (never message text), the way
httpx maps httpcore exceptions: the first row whose type matches any exception in the chain wins.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from enum import StrEnum

import requests
from urllib3.exceptions import NameResolutionError, ProtocolError
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)


class ErrorKind(StrEnum):
    """Why a host (or one of its fact scripts) could not be read. Values appear in reports."""

    NAME_NOT_RESOLVED = "name-not-resolved"
    CONNECTION_REFUSED = "connection-refused"
    CONNECTION_RESET = "connection-reset"
    CONNECTION_FAILED = "connection-failed"
    TLS_VERIFICATION_FAILED = "tls-verification-failed"
    AUTHENTICATION_REFUSED = "authentication-refused"
    STRONG_AUTH_REQUIRED = "strong-auth-required"
    DIRECTORY_ERROR = "directory-error"
    TIMED_OUT = "timed-out"
    WSMAN_FAULT = "wsman-fault"
    HTTP_ERROR = "http-error"
    POWERSHELL_ERROR = "powershell-error"
    POWERSHELL_MISSING = "powershell-missing"
    HOST_KEY_UNKNOWN = "host-key-unknown"
    HOST_KEY_CHANGED = "host-key-changed"
    COMMAND_LINE_TOO_LONG = "command-line-too-long"
    UNREADABLE_OUTPUT = "unreadable-output"
    INSECURE_TRANSPORT_REFUSED = "insecure-transport-refused"
    MISSING_EXTRA = "missing-extra"
    CONFIGURATION = "configuration"
    INTERRUPTED = "interrupted"
    REDIRECT_REFUSED = "redirect-refused"
    UNENCRYPTED_REPLY = "unencrypted-reply"
    REPLY_TOO_LARGE = "reply-too-large"
    MALFORMED_REPLY = "malformed-reply"


class ConnectorError(Exception):
    """A host could not be read; `kind` says why, `message` says it for a person."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(f"{kind.value}: {message}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        # urllib3's MaxRetryError keeps the real cause in .reason, not in the chain.
        for nxt in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _in_chain(exc: BaseException, *types: type[BaseException]) -> BaseException | None:
    for item in _chain(exc):
        if isinstance(item, types):
            return item
    return None


def classify(
    exc: BaseException, *, where: str, read_timeout: float | None = None
) -> ConnectorError:
    """Translate a transport-library exception into a `ConnectorError` for host `where`.

    `read_timeout` (seconds) names the limit in a read time-out, so the message says which
    option to raise.
    """
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, InvalidCredentialsError):
        return ConnectorError(
            ErrorKind.AUTHENTICATION_REFUSED,
            f"authentication refused by {where}: the credentials were rejected (HTTP 401)",
        )
    if isinstance(exc, WSManFaultError):
        code = f" (WS-Management code {exc.wsman_fault_code})" if exc.wsman_fault_code else ""
        return ConnectorError(
            ErrorKind.WSMAN_FAULT, f"WS-Management fault from {where}: {exc.reason}{code}"
        )
    if isinstance(exc, WinRMOperationTimeoutError):
        return ConnectorError(ErrorKind.TIMED_OUT, f"timed out waiting for {where}")
    if isinstance(exc, WinRMTransportError):
        return ConnectorError(
            ErrorKind.HTTP_ERROR, f"{where} answered HTTP {exc.code} to a WS-Management request"
        )
    if _in_chain(exc, NameResolutionError, socket.gaierror):
        return ConnectorError(ErrorKind.NAME_NOT_RESOLVED, f"name not resolved: {where}")
    if _in_chain(exc, ssl.SSLCertVerificationError):
        cert = _in_chain(exc, ssl.SSLCertVerificationError)
        detail = getattr(cert, "verify_message", "") or "certificate not trusted"
        return ConnectorError(
            ErrorKind.TLS_VERIFICATION_FAILED, f"TLS verification failed for {where}: {detail}"
        )
    if isinstance(exc, requests.exceptions.SSLError) or _in_chain(exc, ssl.SSLError):
        return ConnectorError(
            ErrorKind.TLS_VERIFICATION_FAILED, f"TLS handshake with {where} failed"
        )
    if _in_chain(exc, requests.exceptions.ConnectTimeout):
        return ConnectorError(
            ErrorKind.TIMED_OUT, f"timed out connecting to {where} (--connect-timeout)"
        )
    if _in_chain(exc, requests.exceptions.Timeout, socket.timeout, TimeoutError):
        limit = (
            f": no answer within {read_timeout:g} s (--operation-timeout + 10 s)"
            if read_timeout
            else ""
        )
        return ConnectorError(ErrorKind.TIMED_OUT, f"timed out waiting for {where}{limit}")
    if _in_chain(exc, ConnectionRefusedError):
        return ConnectorError(ErrorKind.CONNECTION_REFUSED, f"connection refused by {where}")
    if _in_chain(exc, ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ProtocolError):
        return ConnectorError(ErrorKind.CONNECTION_RESET, f"connection reset by {where}")
    if isinstance(exc, requests.exceptions.ConnectionError) or _in_chain(exc, OSError):
        return ConnectorError(ErrorKind.CONNECTION_FAILED, f"could not connect to {where}")
    if isinstance(exc, WinRMError):
        return ConnectorError(ErrorKind.CONFIGURATION, f"WinRM client error for {where}: {exc}")
    return ConnectorError(
        ErrorKind.CONNECTION_FAILED, f"unexpected {type(exc).__name__} talking to {where}"
    )


def deadline_passed(host: str, seconds: float) -> ConnectorError:
    """The one error for a host that used up its deadline, whoever noticed it first."""
    return ConnectorError(
        ErrorKind.TIMED_OUT,
        f"timed out: {host} gave no complete answer within the {seconds:g} s host deadline",
    )
