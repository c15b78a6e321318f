"""The four WS-Management messages of the fast path, from string templates, and their replies.

Requests are plain string templates (no XML library on the way out): every value placed in them
is a number, an id we made, or XML-escaped (`_escape`: the endpoint, the command line and the
ids the host sent, which a hostile host could fill with quotes and markup). Replies are parsed with
ElementTree after refusing any DOCTYPE or ENTITY declaration, and each reply must relate to the
MessageID of its request.
"""

from __future__ import annotations

import base64
import binascii
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final

NS_S: Final = "http://www.w3.org/2003/05/soap-envelope"
NS_A: Final = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_W: Final = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_RSP: Final = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_F: Final = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
RESOURCE_URI: Final = f"{NS_RSP}/cmd"
ACTION_CREATE: Final = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
ACTION_DELETE: Final = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
ACTION_COMMAND: Final = f"{NS_RSP}/Command"
ACTION_RECEIVE: Final = f"{NS_RSP}/Receive"
STATE_DONE: Final = f"{NS_RSP}/CommandState/Done"
#: The fault code of a Receive that timed out on the host (poll again).
TIMED_OUT_CODE: Final = 2150858793
#: MaxEnvelopeSize asked for: Windows' default MaxEnvelopeSizekb (500) in bytes.
MAX_ENVELOPE: Final = 512000

_ENVELOPE: Final = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<s:Envelope xmlns:s="{NS_S}" xmlns:a="{NS_A}" xmlns:w="{NS_W}" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd" '
    f'xmlns:rsp="{NS_RSP}"><s:Header>'
    "<a:To>{to}</a:To>"
    '<a:ReplyTo><a:Address s:mustUnderstand="true">'
    "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>"
    f'<w:MaxEnvelopeSize s:mustUnderstand="true">{MAX_ENVELOPE}</w:MaxEnvelopeSize>'
    "<a:MessageID>{message_id}</a:MessageID>"
    '<w:Locale xml:lang="en-US" s:mustUnderstand="false"/>'
    '<p:DataLocale xml:lang="en-US" s:mustUnderstand="false"/>'
    "<w:OperationTimeout>PT{timeout}S</w:OperationTimeout>"
    f'<w:ResourceURI s:mustUnderstand="true">{RESOURCE_URI}</w:ResourceURI>'
    '<a:Action s:mustUnderstand="true">{action}</a:Action>'
    "{extra}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
)
_SELECTOR: Final = '<w:SelectorSet><w:Selector Name="ShellId">{shell}</w:Selector></w:SelectorSet>'


class SoapError(Exception):
    """A reply that is not the WS-Management envelope expected (the message says what)."""


@dataclass(frozen=True)
class Fault:
    """A SOAP fault's parts, as pywinrm reads them."""

    code: str | None
    subcode: str | None
    reason: str
    wsman_code: int | None


def message_id() -> str:
    """A fresh MessageID: a random (version 4) UUID, upper-case as pywinrm writes it; built
    from its bytes directly (`uuid.uuid4` costs three times as much, four times per host)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex().upper()
    return f"uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _find(parent: ET.Element | None, *path: str) -> ET.Element | None:
    """What ``parent.find("a/b/...")`` finds for a path of (namespaced) child tags: the first
    match in document order, searching every child that matches each step (a second Body is
    searched when the first has no match, as ElementPath does), without compiling and walking
    an ElementPath (several per reply, every host)."""
    if parent is None:
        return None
    if not path:
        return parent
    for child in parent:
        if child.tag == path[0]:
            found = _find(child, *path[1:])
            if found is not None:
                return found
    return None


def _text(element: ET.Element | None) -> str | None:
    """``findtext``'s answer for an element found (or not) by `_find`."""
    return None if element is None else element.text or ""


_HEADER: Final = f"{{{NS_S}}}Header"
_BODY: Final = f"{{{NS_S}}}Body"
_STREAM: Final = f"{{{NS_RSP}}}Stream"


def _escape(text: str) -> str:
    """`text` as XML character data or a double-quoted attribute value: nothing in it can end
    the element or attribute (``xml.sax.saxutils.escape`` leaves quotes alone, and imports 20 ms
    of urllib and http.client). XML still turns a tab or line break in an attribute into a
    space: only the host's own ids could hold one."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _envelope(to: str, mid: str, timeout: int, action: str, extra: str, body: str) -> bytes:
    return _ENVELOPE.format(to=_escape(to), message_id=mid, timeout=timeout, action=action,
                            extra=extra, body=body).encode("utf-8")


def create(to: str, mid: str, timeout: int) -> bytes:
    """Create a cmd shell (UTF-8 code page, like pywinrm's ``open_shell(codepage=65001)``)."""
    return _envelope(
        to, mid, timeout, ACTION_CREATE,
        '<w:OptionSet><w:Option Name="WINRS_NOPROFILE">FALSE</w:Option>'
        '<w:Option Name="WINRS_CODEPAGE">65001</w:Option></w:OptionSet>',
        "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams>"
        "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>",
    )


def command(to: str, mid: str, timeout: int, shell: str, line: str) -> bytes:
    """Run one command line in the shell."""
    return _envelope(
        to, mid, timeout, ACTION_COMMAND,
        _SELECTOR.format(shell=_escape(shell))
        + '<w:OptionSet><w:Option Name="WINRS_CONSOLEMODE_STDIN">TRUE</w:Option>'
        '<w:Option Name="WINRS_SKIP_CMD_SHELL">FALSE</w:Option></w:OptionSet>',
        f"<rsp:CommandLine><rsp:Command>{_escape(line)}</rsp:Command></rsp:CommandLine>",
    )


def receive(to: str, mid: str, timeout: int, shell: str, command_id: str) -> bytes:
    """Ask for a command's output."""
    return _envelope(
        to, mid, timeout, ACTION_RECEIVE, _SELECTOR.format(shell=_escape(shell)),
        f'<rsp:Receive><rsp:DesiredStream CommandId="{_escape(command_id)}">stdout stderr'
        "</rsp:DesiredStream></rsp:Receive>",
    )


def delete(to: str, mid: str, timeout: int, shell: str) -> bytes:
    """Delete the shell (and with it any command still in it)."""
    return _envelope(to, mid, timeout, ACTION_DELETE, _SELECTOR.format(shell=_escape(shell)), "")


def parse(data: bytes) -> ET.Element:
    """The reply's root element; `SoapError` for entity declarations or malformed XML."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SoapError("the reply declares a DTD or entities (refused, never expanded)")
    # UTF-8 whatever the document declares: the DOCTYPE check above then sees every byte as the
    # parser does (a UTF-16 document could spell "<!DOCTYPE" in bytes that check never sees).
    parser = ET.XMLParser(encoding="utf-8")  # noqa: S314 - no DTD or entity (checked above)
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        raise SoapError(f"the reply is not well-formed XML ({exc})") from None
    if root.tag != f"{{{NS_S}}}Envelope":
        raise SoapError("the reply is not a SOAP envelope")
    return root


def check_relates_to(root: ET.Element, mid: str) -> None:
    """Refuse a reply that does not answer the request `mid`."""
    relates = _text(_find(root, _HEADER, f"{{{NS_A}}}RelatesTo"))
    if (relates or "").strip() != mid:
        raise SoapError("the reply does not relate to the request (RelatesTo)")


def shell_id(root: ET.Element) -> str:
    """The ShellId of a Create reply."""
    for element in root.iter():
        if element.get("Name") == "ShellId" and element.text and element.text.strip():
            return element.text.strip()
    found = root.findtext(f".//{{{NS_RSP}}}ShellId")
    if found and found.strip():
        return found.strip()
    raise SoapError("the Create reply has no ShellId")


def command_id(root: ET.Element) -> str:
    """The CommandId of a Command reply."""
    found = _text(_find(root, _BODY, f"{{{NS_RSP}}}CommandResponse", f"{{{NS_RSP}}}CommandId"))
    if not found or not found.strip():
        raise SoapError("the Command reply has no CommandId")
    return found.strip()


def output(root: ET.Element, wanted: str) -> tuple[bytes, bytes, int | None]:
    """(stdout, stderr, exit code or None while running) of a Receive reply."""
    response = _find(root, _BODY, f"{{{NS_RSP}}}ReceiveResponse")
    if response is None:
        raise SoapError("the Receive reply has no ReceiveResponse")
    out, err = bytearray(), bytearray()
    for stream in response:
        if stream.tag != _STREAM or stream.get("CommandId", wanted) != wanted or not stream.text:
            continue
        try:
            data = base64.b64decode(stream.text, validate=True)
        except (binascii.Error, ValueError):
            raise SoapError("a Receive stream is not base64") from None
        if stream.get("Name") == "stdout":
            out += data
        elif stream.get("Name") == "stderr":
            err += data
    state = _find(response, f"{{{NS_RSP}}}CommandState")
    if state is None or state.get("State") != STATE_DONE:
        return bytes(out), bytes(err), None
    code_text = (_text(_find(state, f"{{{NS_RSP}}}ExitCode")) or "").strip()
    try:
        code = int(code_text)
    except ValueError:
        raise SoapError(f"the exit code {code_text[:20]!r} is not a number") from None
    return bytes(out), bytes(err), code


def fault(root: ET.Element) -> Fault | None:
    """The SOAP fault of a reply, None if it is not one."""
    element = _find(root, _BODY, f"{{{NS_S}}}Fault")
    if element is None:
        return None
    detail = _find(element, f"{{{NS_S}}}Detail", f"{{{NS_F}}}WSManFault")
    wsman_code: int | None = None
    if detail is not None and detail.get("Code") is not None:
        try:
            wsman_code = int(detail.get("Code") or "")
        except ValueError:
            wsman_code = None
    return Fault(
        code=element.findtext(f"{{{NS_S}}}Code/{{{NS_S}}}Value"),
        subcode=element.findtext(f"{{{NS_S}}}Code/{{{NS_S}}}Subcode/{{{NS_S}}}Value"),
        reason=element.findtext(f"{{{NS_S}}}Reason/{{{NS_S}}}Text")
        or "(no error message in fault)",
        wsman_code=wsman_code,
    )
