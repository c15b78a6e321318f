"""One exception table for the three connectors (`agent.connectors.errors.map_exception`).

The connectors' own tests prove each message against real servers; these prove the table itself:
how the chain is walked, that row order decides, and that one socket failure is the same kind of
error whichever connector met it.
"""

from __future__ import annotations

import socket
import ssl

import pytest
from ldap3.core.exceptions import LDAPSocketOpenError

from agent.connectors import ssh
from agent.connectors.errors import (
    ConnectorError,
    ErrorKind,
    Row,
    fixed,
    map_exception,
    unexpected,
)
from agent.connectors.ldap import Endpoint, ExpectedNameTls, _socket_error
from agent.connectors.winrm import classify

FIRST = Row((ValueError,), fixed(ErrorKind.CONFIGURATION, "first {where}"))
SECOND = Row((KeyError,), fixed(ErrorKind.TIMED_OUT, "second {where}"))


def _raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as caught:
        return caught


def test_the_first_matching_row_wins_wherever_its_type_is_in_the_chain() -> None:
    # KeyError is on top, ValueError underneath: the row order decides, not the chain order.
    exc = _raised_from(KeyError("k"), ValueError("v"))
    assert map_exception(exc, (FIRST, SECOND), "h", unexpected).message == "first h"
    assert map_exception(exc, (SECOND, FIRST), "h", unexpected).message == "second h"


def test_the_chain_includes_reason_and_the_attempts_a_library_merged() -> None:
    class Wrapped(Exception):
        reason = ValueError("under .reason, as urllib3 keeps it")

    merged = LDAPSocketOpenError("socket connection error", [(ValueError("one address"), "h")])
    for exc in (Wrapped(), merged):
        assert map_exception(exc, (FIRST,), "h", unexpected).message == "first h"


def test_no_row_is_the_fallback_and_a_connector_error_passes_through() -> None:
    assert map_exception(RuntimeError("x"), (FIRST,), "h", unexpected).message == (
        "unexpected RuntimeError talking to h"
    )
    mine = ConnectorError(ErrorKind.INTERRUPTED, "stop")
    assert map_exception(mine, (FIRST,), "h", unexpected) is mine


def _ldap(exc: BaseException) -> ConnectorError:
    endpoint = Endpoint("ldaps://dc.example:636", "dc.example", 636, True)
    tls = ExpectedNameTls(ssl.create_default_context(), "dc.example")
    return _socket_error(LDAPSocketOpenError("socket connection error", [(exc, "x")]), endpoint,
                         tls)


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        (socket.gaierror(socket.EAI_NONAME, "unknown"), ErrorKind.NAME_NOT_RESOLVED),
        (ConnectionRefusedError(111, "refused"), ErrorKind.CONNECTION_REFUSED),
        (TimeoutError("timed out"), ErrorKind.TIMED_OUT),
        (ConnectionResetError(104, "reset"), ErrorKind.CONNECTION_RESET),
        (OSError(113, "no route to host"), ErrorKind.CONNECTION_FAILED),
    ],
)
def test_one_socket_failure_is_one_kind_in_every_connector(
    cause: BaseException, kind: ErrorKind
) -> None:
    wrapped = _raised_from(RuntimeError("a library's own wrapper"), cause)
    kinds = {
        "winrm": classify(wrapped, where="h").kind,
        "ssh": ssh._connect_error(wrapped, "h:22").kind,
        "ldap": _ldap(cause).kind,
    }
    assert kinds == {"winrm": kind, "ssh": kind, "ldap": kind}


def test_an_untrusted_certificate_names_each_transports_ca_setting() -> None:
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate"
    assert classify(untrusted, where="h").message == (
        "TLS verification failed for h: self-signed certificate "
        "(trust its CA with ansible_winrm_ca_trust_path)"
    )
    assert _ldap(untrusted).message == (
        "TLS verification failed for ldaps://dc.example:636: self-signed certificate "
        "(trust its CA with mfa_directory.ca_file)"
    )
