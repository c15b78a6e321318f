"""What a WS-Management reply must be before anything parses it.

pywinrm hands reply bodies straight to ElementTree and reads fields with ``next(...)`` and
``int(...)``: an HTML error page, a DOCTYPE with entities or a missing ShellId would surface as
"unexpected ParseError/StopIteration". `check_reply` runs first, with expat and without building a
tree: the body must be UTF-8, well-formed XML, declare no DOCTYPE (so no entity is ever defined,
let alone expanded) and have a SOAP envelope as its root. `translate` names what a reply that
passed still lacked, per operation.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Final
from xml.parsers import expat

from agent.connectors.errors import ConnectorError, ErrorKind, malformed_reply, shown

SOAP_ENVELOPE: Final = "http://www.w3.org/2003/05/soap-envelope Envelope"
#: What a reply of each operation must carry (for the error when pywinrm could not find it).
EXPECTED: Final = {
    "open_shell": "the Create reply names no readable ShellId",
    "run_command": "the Command reply has no readable CommandId",
    "get_command_output": "the Receive reply has a missing or non-numeric ExitCode, "
    "or unreadable output streams",
    "cleanup_command": "the Signal reply does not relate to the request (RelatesTo)",
    "close_shell": "the Delete reply does not relate to the request (RelatesTo)",
}
#: What pywinrm raises when a well-formed envelope lacks what it looks for.
READ_ERRORS: Final = (
    StopIteration,
    ValueError,  # also UnicodeError, binascii.Error
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    ET.ParseError,
)


class _Refused(Exception):
    """Raised from inside expat when the document declares a DTD."""


def describe_quickly(body: bytes, content_type: str | None) -> str | None:
    """What `_describe` finds without parsing: an empty reply, an HTML page, not UTF-8."""
    if not body.strip():
        return "an empty reply"
    head = body.lstrip()[:64].lower()
    if (content_type or "").lower().startswith("text/html") or head.startswith(
        (b"<!doctype html", b"<html")
    ):
        return f"an HTML page ({shown(content_type or 'no Content-Type', 80)}), not WS-Management"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "a reply that is not UTF-8 text"
    return None


def _describe(body: bytes, content_type: str | None) -> str | None:
    """Why `body` is not a WS-Management envelope, or None if it is one."""
    quick = describe_quickly(body, content_type)
    if quick is not None:
        return quick
    root: list[str] = []

    def refuse(*_: object) -> None:
        raise _Refused

    def start(name: str, _attrs: object) -> None:
        if not root:
            root.append(name)

    parser = expat.ParserCreate(encoding="utf-8", namespace_separator=" ")
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    try:
        parser.Parse(body, True)
    except _Refused:
        return "the reply declares a DOCTYPE (entity declarations are refused, never expanded)"
    except expat.ExpatError as exc:
        return (
            f"XML that is not well-formed ({expat.ErrorString(exc.code)} "
            f"at line {exc.lineno}, column {exc.offset})"
        )
    if root[:1] != [SOAP_ENVELOPE]:
        name = root[0].rpartition(" ")[2] if root else "nothing"
        return f"XML whose root is <{shown(name, 60)}>, not a SOAP envelope"
    return None


def check_reply(body: bytes, *, where: str, status: int, content_type: str | None) -> None:
    """Raise a `ConnectorError` unless `body` is a SOAP envelope pywinrm may parse.

    A 2xx reply that is not one is a malformed reply; an error status whose body is not a SOAP
    fault is that HTTP error, named with what the body was.
    """
    problem = _describe(body, content_type)
    if problem is None:
        return
    if status >= 400:
        raise ConnectorError(
            ErrorKind.HTTP_ERROR, f"{where} answered HTTP {status} with {problem}"
        )
    raise malformed_reply(where, problem)


def translate(exc: BaseException, *, where: str, operation: str) -> ConnectorError | None:
    """The named error for what pywinrm raised reading an envelope, else None."""
    # Only pywinrm's path calls this, which has loaded them: the fast client never does.
    from requests import RequestException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, RequestException | HTTPError):
        return None  # e.g. requests' InvalidHeader is a ValueError too: a transport error
    if isinstance(exc, READ_ERRORS):
        return malformed_reply(where, EXPECTED[operation])
    return None
