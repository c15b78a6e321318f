"""Fuzzing the WinRM reply handling with hostile SOAP (as test_inventory_fuzz fuzzes loaders).

Each example hands one HTTP reply (status, Content-Type, body) to every pywinrm `Protocol`
operation the connector uses, through the project's `GuardedTransport` (its checks run before
pywinrm parses anything) and `named_error`: whatever the body, an operation either succeeds or
ends in a `ConnectorError` with a named reason — never another exception, never "unexpected".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from winrm.protocol import Protocol

from agent.connectors.errors import ConnectorError, ErrorKind
from agent.connectors.winrm import named_error
from agent.connectors.winrm_transport import HostLink, guard

WHERE = "fuzzed.lab.example"
ENDPOINT = "http://127.0.0.1:9/wsman"
SHELL = "11111111-2222-3333-4444-555555555555"
COMMAND = "66666666-7777-8888-9999-AAAAAAAAAAAA"
NS = (
    'xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" '
    'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"'
)
DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
#: What a text node or attribute holds: anything, well-formed or not.
fill = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789-ABCDEFabcdef", max_size=40),
    st.sampled_from(["", "0", "-1", "1e3", "NaN", "uuid:" + SHELL, SHELL, "&lt;", "&a;", "]]>"]),
)
FRAGMENTS: list[Callable[[str], str]] = [
    lambda t: f'<w:Selector Name="ShellId">{t}</w:Selector>',
    lambda t: f"<rsp:ShellId>{t}</rsp:ShellId>",
    lambda t: f"<rsp:CommandId>{t}</rsp:CommandId>",
    lambda t: f'<rsp:Stream Name="stdout" CommandId="{COMMAND}">{t}</rsp:Stream>',
    lambda t: f'<rsp:Stream Name="{t}" CommandId="{COMMAND}" End="true"/>',
    lambda t: f'<rsp:CommandState State="{DONE}"><rsp:ExitCode>{t}</rsp:ExitCode>'
    "</rsp:CommandState>",
    lambda t: f'<rsp:CommandState State="{t}"/>',
    lambda t: f"<s:Fault><s:Code><s:Value>{t}</s:Value></s:Code><s:Reason><s:Text>{t}"
    f'</s:Text></s:Reason><s:Detail><f:WSManFault Code="{t}"/></s:Detail></s:Fault>',
    lambda t: f"<a:RelatesTo>{t}</a:RelatesTo>",
    lambda t: t,
]


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """A SOAP envelope of fragments pywinrm looks for, with hostile contents."""
    parts = draw(st.lists(st.tuples(st.sampled_from(FRAGMENTS), fill), max_size=6))
    relates = draw(fill)
    body = "".join(make(text) for make, text in parts)
    text = (f"<s:Envelope {NS}><s:Header><a:RelatesTo>{relates}</a:RelatesTo></s:Header>"
            f"<s:Body>{body}</s:Body></s:Envelope>")
    prefix = draw(st.sampled_from([
        "", '<?xml version="1.0" encoding="utf-8"?>',
        '<!DOCTYPE s [<!ENTITY a "x">]>', '<!DOCTYPE html>', "<html><body>",
    ]))
    data = (prefix + text).encode("utf-8")
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return data if cut is None else data[:cut]


bodies = st.one_of(envelopes(), st.binary(max_size=300), st.text(max_size=300).map(str.encode))


class _Canned(requests.Session):
    """A session whose every request gets the same reply, without a network."""

    def __init__(self, status: int, content_type: str | None, body: bytes) -> None:
        super().__init__()
        self.reply = (status, content_type, body)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        status, content_type, body = self.reply
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(
            {"Content-Type": content_type} if content_type is not None else {}
        )
        response._content = body
        response.request = request
        response.url = request.url or ENDPOINT
        return response


def _protocol(status: int, content_type: str | None, body: bytes) -> Protocol:
    protocol = Protocol(
        ENDPOINT, transport="basic", username="u", password="p", proxy=None,
        ca_trust_path=None,  # type: ignore[arg-type]
        read_timeout_sec=30, operation_timeout_sec=20,
    )
    guard(protocol, HostLink(WHERE, ENDPOINT))
    protocol.transport.session = _Canned(status, content_type, body)
    return protocol


OPERATIONS: dict[str, Callable[[Protocol], object]] = {
    "open_shell": lambda p: p.open_shell(codepage=65001),
    "run_command": lambda p: p.run_command(SHELL, "powershell -EncodedCommand AA=="),
    "get_command_output": lambda p: p.get_command_output_raw(SHELL, COMMAND),
    "cleanup_command": lambda p: p.cleanup_command(SHELL, COMMAND),
    "close_shell": lambda p: p.close_shell(SHELL),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 200, 200, 400, 401, 404, 500, 503]),
    content_type=st.sampled_from(
        ["application/soap+xml;charset=UTF-8", "text/html; charset=utf-8", None, "x/y"]
    ),
    body=bodies,
    operation=st.sampled_from(sorted(OPERATIONS)),
)
def test_any_reply_is_read_or_named(
    status: int, content_type: str | None, body: bytes, operation: str
) -> None:
    protocol = _protocol(status, content_type, body)
    try:
        OPERATIONS[operation](protocol)
    except Exception as exc:  # the property is about every exception
        error = named_error(exc, where=WHERE, operation=operation)
        assert isinstance(error, ConnectorError)
        assert error.kind in set(ErrorKind)
        assert "unexpected" not in error.message, (type(exc).__name__, error.message)


def test_entities_are_refused_not_expanded() -> None:
    """A billion-laughs reply is refused by name before any parser expands it."""
    laughs = ('<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaaaaaaaa">'
              + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">'
                        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
              + f']><s:Envelope {NS}><s:Body>&i;</s:Body></s:Envelope>').encode()
    protocol = _protocol(200, "application/soap+xml", laughs)
    try:
        protocol.open_shell()
    except Exception as exc:
        error = named_error(exc, where=WHERE, operation="open_shell")
    assert error.kind is ErrorKind.MALFORMED_REPLY
    assert error.message == (
        f"malformed reply from {WHERE}: the reply declares a DOCTYPE (entity declarations are "
        "refused, never expanded)"
    )
