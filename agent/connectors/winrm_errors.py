"""What both WinRM clients agree on before and after talking to a host: its URL, the transport
policy, and the errors of WS-Management replies and sockets.

The fast client (`agent.connectors.wsman`) uses these directly; pywinrm's path
(`agent.connectors.winrm`) maps what pywinrm, requests and urllib3 raise onto the same builders
and rows, so the two give identical errors. This module imports neither pywinrm nor requests:
a scan on the fast path never loads them.
"""

from __future__ import annotations

import ipaddress

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
from agent.inventory import Host

#: The inventory variable that names the CA a WinRM host's certificate is checked against.
CA_SETTING = "ansible_winrm_ca_trust_path"


def url_host(address: str) -> str:
    """The address as the host part of a URL (an IPv6 address in brackets)."""
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"[{address}]"
    except ValueError:
        pass
    return address


def endpoint_of(host: Host) -> str:
    """The host's WS-Management URL, from the inventory's address, scheme and port."""
    c = host.connection
    return f"{c.winrm_scheme}://{url_host(host.address)}:{c.port}/wsman"


def refuse_insecure(host: Host) -> None:
    """Refuse combinations that would expose the password, unless the host opts in."""
    refusal = host.connection.insecure_refusal()
    if refusal is not None:
        raise ConnectorError(ErrorKind.INSECURE_TRANSPORT_REFUSED, refusal)


def credentials_rejected(where: str) -> ConnectorError:
    """The error for an HTTP 401 after authenticating."""
    return ConnectorError(
        ErrorKind.AUTHENTICATION_REFUSED,
        f"authentication refused by {where}: the credentials were rejected (HTTP 401)",
    )


def wsman_fault(where: str, reason: str, wsman_code: int | str | None) -> ConnectorError:
    """The error for a SOAP fault (`wsman_code`: the WS-Management code, when given)."""
    code = f" (WS-Management code {wsman_code})" if wsman_code else ""
    return ConnectorError(
        ErrorKind.WSMAN_FAULT, f"WS-Management fault from {where}: {reason}{code}"
    )


def http_status(where: str, status: int) -> ConnectorError:
    """The error for an HTTP error status that carries no SOAP fault."""
    return ConnectorError(
        ErrorKind.HTTP_ERROR, f"{where} answered HTTP {status} to a WS-Management request"
    )


def timed_out(read_timeout: float | None) -> Describe:
    """A read time-out; `read_timeout` (seconds) names the limit, so the message says which
    option to raise."""
    if not read_timeout:
        return TIMED_OUT_WAITING
    return fixed(ErrorKind.TIMED_OUT, f"timed out waiting for {{where}}: no answer within "
                 f"{read_timeout:g} s (--operation-timeout + 10 s)")


def socket_rows(read_timeout: float | None = None) -> tuple[Row, ...]:
    """The rows for what sockets and TLS raise under either client, in order."""
    return (*network_rows(CA_SETTING, timed_out(read_timeout)), OS_ERROR_ROW)


def socket_error(
    exc: BaseException, *, where: str, read_timeout: float | None = None
) -> ConnectorError:
    """The error for what a socket or TLS raised talking to `where` (the fast client's map)."""
    return map_exception(exc, socket_rows(read_timeout), where, unexpected)
