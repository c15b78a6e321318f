"""Connector errors: the reasons a host could not be read, and one way to map exceptions to them.

Each connector maps what its libraries raise with `map_exception` and a table of `Row`s: the
first row whose types match any exception in the chain (causes, contexts, urllib3's ``.reason``,
and the attempts a library merged into one error's arguments) wins, the way httpx maps httpcore
exceptions. Types are matched, never message text. `network_rows` are the rows every connector
shares (name resolution, TLS, refused, timed out, reset); each connector puts its own protocol's
rows around them (`agent.connectors.winrm` for pywinrm, `agent.connectors.winrm_errors` for the
fast WinRM client, `agent.connectors.ssh`, `agent.connectors.ldap`). This module imports no
connector library.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)


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
    #: The host answered with an HTTP redirect; it is never followed (credentials stay put).
    REDIRECT_REFUSED = "redirect-refused"
    #: A plaintext reply on a session with message encryption: it could be forged, never read.
    UNENCRYPTED_REPLY = "unencrypted-reply"
    #: One reply passed its size cap while it was being read.
    REPLY_TOO_LARGE = "reply-too-large"
    #: A reply that is not a WS-Management envelope the agent can read (XML, entities, fields).
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
        # ldap3 tries each address of a name and raises one error carrying every attempt's
        # exception as (exception, ...) tuples in a list argument.
        for arg in current.args:
            if isinstance(arg, list):
                todo += [i[0] for i in arg if isinstance(i, tuple) and i
                         and isinstance(i[0], BaseException)]


#: Builds the error for the exception a row matched and the host (or URL) it concerns.
Describe = Callable[[BaseException, str], "ConnectorError"]


@dataclass(frozen=True)
class Row:
    """One line of a mapping table: exceptions of these types become `describe`'s error."""

    types: tuple[type[BaseException], ...]
    describe: Describe


def fixed(kind: ErrorKind, template: str) -> Describe:
    """A `Describe` with one message; ``{where}`` in `template` names the host."""
    return lambda _exc, where: ConnectorError(kind, template.format(where=where))


def map_exception(
    exc: BaseException, rows: Sequence[Row], where: str, fallback: Describe
) -> ConnectorError:
    """The error of the first row matching `exc` or its chain; `fallback`'s when none does.

    A `ConnectorError` is returned as it is. An unmatched exception is logged with its
    traceback for ``--debug``.
    """
    if isinstance(exc, ConnectorError):
        return exc
    chain = list(_chain(exc))
    for row in rows:
        for item in chain:
            if isinstance(item, row.types):
                return row.describe(item, where)
    log.debug("unexpected error talking to %s", where, exc_info=exc)
    return fallback(exc, where)


def unexpected(exc: BaseException, where: str) -> ConnectorError:
    """The fallback error: the exception's type only (its text may hold anything)."""
    return ConnectorError(
        ErrorKind.CONNECTION_FAILED, f"unexpected {type(exc).__name__} talking to {where}"
    )


#: The usual socket time-out.
TIMED_OUT_WAITING: Describe = fixed(ErrorKind.TIMED_OUT, "timed out waiting for {where}")


def network_rows(
    ca_hint: str | None = None, timed_out: Describe = TIMED_OUT_WAITING
) -> tuple[Row, ...]:
    """The rows every connector shares, in order. `ca_hint` is the setting that trusts a CA,
    named when a certificate is not trusted (no TLS rows without it: SSH has no TLS);
    `timed_out` describes a socket time-out."""

    def untrusted(exc: BaseException, where: str) -> ConnectorError:
        detail = getattr(exc, "verify_message", "") or "certificate not trusted"
        return ConnectorError(
            ErrorKind.TLS_VERIFICATION_FAILED,
            f"TLS verification failed for {where}: {detail} (trust its CA with {ca_hint})",
        )

    tls = (
        Row((ssl.SSLCertVerificationError,), untrusted),
        Row((ssl.SSLError,), fixed(ErrorKind.TLS_VERIFICATION_FAILED,
                                   "TLS handshake with {where} failed")),
    )
    return (
        Row((socket.gaierror,), fixed(ErrorKind.NAME_NOT_RESOLVED, "name not resolved: {where}")),
        *(tls if ca_hint is not None else ()),
        Row((socket.timeout, TimeoutError), timed_out),
        Row((ConnectionRefusedError,), fixed(ErrorKind.CONNECTION_REFUSED,
                                             "connection refused by {where}")),
        Row((ConnectionResetError, ConnectionAbortedError, BrokenPipeError, EOFError),
            fixed(ErrorKind.CONNECTION_RESET, "connection reset by {where}")),
    )


#: A connection that failed for no more specific reason.
COULD_NOT_CONNECT: Describe = fixed(ErrorKind.CONNECTION_FAILED, "could not connect to {where}")
#: The last row of every table: any other socket error.
OS_ERROR_ROW = Row((OSError,), COULD_NOT_CONNECT)


def shown(text: str, limit: int = 200) -> str:
    """A host-supplied string made safe to quote in a reason: one line, printable, bounded."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[:limit] + "…"


def redirect_refused(where: str, status: int, location: str | None) -> ConnectorError:
    """The error for a host that answered with a redirect (never followed)."""
    target = f" to {shown(location)}" if location else " (no Location)"
    return ConnectorError(
        ErrorKind.REDIRECT_REFUSED,
        f"{where} answered HTTP {status}, a redirect{target}: redirects are never followed, "
        "so no request or credential went anywhere else",
    )


def unencrypted_reply(where: str) -> ConnectorError:
    """The error for a plaintext reply on a session with message encryption."""
    return ConnectorError(
        ErrorKind.UNENCRYPTED_REPLY,
        f"unencrypted reply on an encrypted session from {where}: refused, it could be forged",
    )


def reply_too_large(where: str, limit: int) -> ConnectorError:
    """The error for a reply that passed its size cap while it was read."""
    return ConnectorError(
        ErrorKind.REPLY_TOO_LARGE,
        f"{where} sent a reply larger than {limit // (1024 * 1024)} MiB: stopped reading it",
    )


def malformed_reply(where: str, what: str) -> ConnectorError:
    """The error for a reply that is not a readable WS-Management envelope; `what` says why."""
    return ConnectorError(ErrorKind.MALFORMED_REPLY, f"malformed reply from {where}: {what}")


def deadline_passed(host: str, seconds: float) -> ConnectorError:
    """The one error for a host that used up its deadline, whoever noticed it first."""
    return ConnectorError(
        ErrorKind.TIMED_OUT,
        f"timed out: {host} gave no complete answer within the {seconds:g} s host deadline",
    )
