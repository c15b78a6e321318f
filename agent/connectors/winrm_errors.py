"""WinRM's exception table: what pywinrm, requests and urllib3 raise, as `ConnectorError`s.

Both WinRM clients use it: pywinrm's path (`agent.connectors.winrm`) with what the libraries
raise, and the fast client (`agent.connectors.wsman.session`) with pywinrm's exception types
built for the same replies, so the two give identical errors.
"""

from __future__ import annotations

import requests
from urllib3.exceptions import NameResolutionError, ProtocolError
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)

from agent.connectors.errors import (
    OS_ERROR_ROW,
    TIMED_OUT_WAITING,
    ConnectorError,
    Describe,
    ErrorKind,
    Row,
    fixed,
    map_exception,
    network_rows,
    unexpected,
)

#: The inventory variable that names the CA a WinRM host's certificate is checked against.
CA_SETTING = "ansible_winrm_ca_trust_path"


def _fault(exc: BaseException, where: str) -> ConnectorError:
    assert isinstance(exc, WSManFaultError)
    code = f" (WS-Management code {exc.wsman_fault_code})" if exc.wsman_fault_code else ""
    return ConnectorError(
        ErrorKind.WSMAN_FAULT, f"WS-Management fault from {where}: {exc.reason}{code}"
    )


def _http_status(exc: BaseException, where: str) -> ConnectorError:
    assert isinstance(exc, WinRMTransportError)
    return ConnectorError(
        ErrorKind.HTTP_ERROR, f"{where} answered HTTP {exc.code} to a WS-Management request"
    )


def _client_error(exc: BaseException, where: str) -> ConnectorError:
    return ConnectorError(ErrorKind.CONFIGURATION, f"WinRM client error for {where}: {exc}")


def _rows(timed_out: Describe) -> tuple[Row, ...]:
    return (
        Row((InvalidCredentialsError,), fixed(
            ErrorKind.AUTHENTICATION_REFUSED,
            "authentication refused by {where}: the credentials were rejected (HTTP 401)")),
        Row((WSManFaultError,), _fault),
        Row((WinRMOperationTimeoutError,), TIMED_OUT_WAITING),
        Row((WinRMTransportError,), _http_status),
        Row((NameResolutionError,), fixed(ErrorKind.NAME_NOT_RESOLVED,
                                          "name not resolved: {where}")),
        Row((requests.exceptions.ConnectTimeout,), fixed(
            ErrorKind.TIMED_OUT, "timed out connecting to {where} (--connect-timeout)")),
        *network_rows(CA_SETTING, timed_out),
        Row((requests.exceptions.SSLError,), fixed(ErrorKind.TLS_VERIFICATION_FAILED,
                                                   "TLS handshake with {where} failed")),
        Row((requests.exceptions.Timeout,), timed_out),
        Row((ProtocolError,), fixed(ErrorKind.CONNECTION_RESET, "connection reset by {where}")),
        Row((requests.exceptions.ConnectionError,), fixed(
            ErrorKind.CONNECTION_FAILED, "could not connect to {where}")),
        OS_ERROR_ROW,
        Row((WinRMError,), _client_error),
    )


_ROWS = _rows(TIMED_OUT_WAITING)


def classify(
    exc: BaseException, *, where: str, read_timeout: float | None = None
) -> ConnectorError:
    """The `ConnectorError` for what a WinRM exchange with host `where` raised.

    `read_timeout` (seconds) names the limit in a read time-out, so the message says which
    option to raise.
    """
    rows = _ROWS
    if read_timeout:
        rows = _rows(fixed(ErrorKind.TIMED_OUT, f"timed out waiting for {{where}}: no answer "
                           f"within {read_timeout:g} s (--operation-timeout + 10 s)"))
    return map_exception(exc, rows, where, unexpected)
