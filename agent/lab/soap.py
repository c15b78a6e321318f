"""WS-Management SOAP envelopes of the Windows Remote Shell, as the lab reads and writes them.

`parse_request` reads what a client sends (action, MessageID, ShellId selector, OperationTimeout,
command line, CommandId): the envelopes this project's client writes with one pattern, any
other with ElementTree. The ``*_response`` builders and `fault` write what Windows answers from
string templates, every reply carrying ``a:RelatesTo`` = the request's MessageID. Only the
elements clients look at are produced, with the names and namespaces Windows uses.
"""

from __future__ import annotations

import base64
import functools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple
from xml.sax.saxutils import escape

from agent.connectors.wsman.soap import message_id

NS: Final = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)

SHELL_URI: Final = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CMD_RESOURCE_URI: Final = f"{SHELL_URI}/cmd"
TRANSFER: Final = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
ACTION_CREATE: Final = f"{TRANSFER}/Create"
ACTION_DELETE: Final = f"{TRANSFER}/Delete"
ACTION_COMMAND: Final = f"{SHELL_URI}/Command"
ACTION_RECEIVE: Final = f"{SHELL_URI}/Receive"
ACTION_SIGNAL: Final = f"{SHELL_URI}/Signal"
ACTION_SEND: Final = f"{SHELL_URI}/Send"
ANONYMOUS: Final = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
FAULT_ACTION: Final = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
STATE_RUNNING: Final = f"{SHELL_URI}/CommandState/Running"
STATE_DONE: Final = f"{SHELL_URI}/CommandState/Done"
#: Largest request the lab accepts (Windows' default MaxEnvelopeSizekb is 500).
MAX_ENVELOPE_BYTES: Final = 512 * 1024

_DURATION: Final = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


class SoapError(Exception):
    """A request that is not a WS-Management envelope the lab understands."""


class Request(NamedTuple):
    """The parts of a WS-Management request the lab acts on (a tuple: a frozen dataclass costs
    the lab two microseconds more per request)."""

    action: str
    message_id: str
    resource_uri: str | None
    shell_id: str | None
    #: Seconds from ``w:OperationTimeout``, None when absent.
    operation_timeout: float | None
    #: A Command's line: ``rsp:Command`` plus any ``rsp:Arguments`` (None: no CommandLine).
    command_line: str | None
    #: The CommandId a Receive, Signal or Send request is about (None: none named).
    command_id: str | None


def parse_duration(text: str) -> float | None:
    """Seconds of an xs:duration such as ``PT20S`` or ``PT1.500S`` (None if not one).

    Short ones are cached: a client sends the same OperationTimeout with every request.
    """
    return _cached_duration(text) if len(text) <= 64 else _duration(text)


@functools.lru_cache(maxsize=64)
def _cached_duration(text: str) -> float | None:
    return _duration(text)


def _duration(text: str) -> float | None:
    match = _DURATION.match(text.strip())
    if not match or text.strip() in {"P", "PT"}:
        return None
    days, hours, minutes = (int(match.group(k) or 0) for k in ("d", "h", "m"))
    return days * 86400 + hours * 3600 + minutes * 60 + float(match.group("s") or 0)


_ENVELOPE: Final = _q("s", "Envelope")
_HEADER: Final = _q("s", "Header")
_BODY: Final = _q("s", "Body")
_ACTION: Final = _q("a", "Action")
_MESSAGE_ID: Final = _q("a", "MessageID")
_RESOURCE_URI: Final = _q("w", "ResourceURI")
_SELECTOR_SET: Final = _q("w", "SelectorSet")
_SELECTOR: Final = _q("w", "Selector")
_OPERATION_TIMEOUT: Final = _q("w", "OperationTimeout")
_COMMAND_LINE: Final = _q("rsp", "CommandLine")
_COMMAND: Final = _q("rsp", "Command")
_ARGUMENTS: Final = _q("rsp", "Arguments")
#: Where a Receive, Signal or Send request names its CommandId.
_COMMAND_ID_PATHS: Final = (
    f"{_q('rsp', 'Receive')}/{_q('rsp', 'DesiredStream')}",
    _q("rsp", "Signal"),
    f"{_q('rsp', 'Send')}/{_q('rsp', 'Stream')}",
)


def parse_request(data: bytes) -> Request:
    """Read a SOAP request; `SoapError` when it is not XML or lacks Action/MessageID/Body.

    The envelopes this project's own client writes (`agent.connectors.wsman.soap`) are read by
    `_read_known`, which matches them byte for byte; anything else is parsed by ElementTree.
    The two give the same `Request` (a differential test holds them to it).
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        raise SoapError("the envelope is larger than the lab's MaxEnvelopeSize")
    return _read_known(data) or _parse(data)


def _parse(data: bytes) -> Request:
    """`parse_request` with ElementTree, for any envelope.

    The header is read in one pass over its children by qualified name: ElementTree's path
    lookups with a prefix map sort that map on every call, a tenth of the lab's CPU per request.
    The first occurrence of each header element counts, as ``find`` would take it.
    """
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SoapError("DTDs are not allowed in SOAP messages")
    try:
        root = ET.fromstring(data)  # noqa: S314 - no DTD (checked above), loopback lab only
    except ET.ParseError as exc:
        raise SoapError(f"the request is not well-formed XML: {exc}") from exc
    if root.tag != _ENVELOPE:
        raise SoapError("the request is not a SOAP 1.2 envelope")
    header = root.find(_HEADER)
    body = root.find(_BODY)
    if header is None or body is None:
        raise SoapError("the envelope has no Header or no Body")
    texts: dict[str, str] = {}
    shell_id = None
    for child in header:
        tag = child.tag
        if tag == _SELECTOR_SET:
            for selector in child.iterfind(_SELECTOR):
                if selector.get("Name") == "ShellId":
                    shell_id = (selector.text or "").strip()
        elif tag not in texts:
            texts[tag] = child.text or ""
    action = texts.get(_ACTION, "").strip()
    message_id = texts.get(_MESSAGE_ID, "").strip()
    if not action or not message_id:
        raise SoapError("the header has no Action or no MessageID")
    resource = texts.get(_RESOURCE_URI)
    timeout_text = texts.get(_OPERATION_TIMEOUT)
    return Request(
        action=action,
        message_id=message_id,
        resource_uri=resource.strip() if resource else None,
        shell_id=shell_id,
        operation_timeout=parse_duration(timeout_text) if timeout_text else None,
        command_line=_command_line(body),
        command_id=_command_id(body),
    )


def _command_line(body: ET.Element) -> str | None:
    line = body.find(_COMMAND_LINE)
    if line is None:
        return None
    parts = [(line.findtext(_COMMAND, default="") or "").strip()]
    parts += [(a.text or "") for a in line.iterfind(_ARGUMENTS)]
    return " ".join(p for p in parts if p)


def _command_id(body: ET.Element) -> str | None:
    for path in _COMMAND_ID_PATHS:
        element = body.find(path)
        if element is not None and element.get("CommandId"):
            return element.get("CommandId")
    return None


#: A variable part of an envelope: everything up to the next tag (or quote, in an attribute);
#: `_character_data` then checks it. (A pattern that checks each character costs 25 times more
#: in `re`.)
_TEXT: Final = rb"[^<]*+"
_ATTRIBUTE: Final = rb'[^<"]*+'
#: What character data as the client's `_escape` writes it never holds: a character XML refuses
#: or rewrites (a carriage return becomes a line feed), or ``>``.
_NOT_IN_TEXT: Final = bytes([*range(0x09), *range(0x0B, 0x20)]) + b">"
#: The same in a double-quoted attribute value, where XML also turns tabs and line feeds into
#: spaces (such values are left to ElementTree).
_NOT_IN_ATTRIBUTE: Final = bytes(range(0x20)) + b">"
_URI: Final = rb"[A-Za-z0-9:/._-]{1,200}"


def _ns(prefix: str) -> bytes:
    return f'xmlns:{prefix}="{NS[prefix]}"'.encode()


_KNOWN: Final = re.compile(
    re.escape(b'<?xml version="1.0" encoding="utf-8"?><s:Envelope '
              + b" ".join(_ns(p) for p in ("s", "a", "w", "p", "rsp")) + b"><s:Header>")
    + b"<a:To>(?P<to>" + _TEXT + b")</a:To>"
    + re.escape(f'<a:ReplyTo><a:Address s:mustUnderstand="true">{ANONYMOUS}</a:Address>'
                "</a:ReplyTo>".encode())
    + b'<w:MaxEnvelopeSize s:mustUnderstand="true">[0-9]{1,9}</w:MaxEnvelopeSize>'
    b"<a:MessageID>(?P<mid>uuid:[0-9A-Fa-f-]{36})</a:MessageID>"
    b'<w:Locale xml:lang="en-US" s:mustUnderstand="false"/>'
    b'<p:DataLocale xml:lang="en-US" s:mustUnderstand="false"/>'
    b"<w:OperationTimeout>(?P<timeout>PT[0-9]{1,9}S)</w:OperationTimeout>"
    b'<w:ResourceURI s:mustUnderstand="true">(?P<resource>' + _URI + b")</w:ResourceURI>"
    b'<a:Action s:mustUnderstand="true">(?P<action>' + _URI + b")</a:Action>"
    b'(?:<w:SelectorSet><w:Selector Name="ShellId">(?P<shell>' + _TEXT + b")</w:Selector>"
    b"</w:SelectorSet>)?"
    b'(?:<w:OptionSet>(?:<w:Option Name="[A-Z_]{1,40}">[A-Z0-9]{0,20}</w:Option>){1,4}'
    b"</w:OptionSet>)?"
    b"</s:Header><s:Body>(?:"
    b"<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams>"
    b"<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
    b"|<rsp:CommandLine><rsp:Command>(?P<line>" + _TEXT + b")</rsp:Command></rsp:CommandLine>"
    b'|<rsp:Receive><rsp:DesiredStream CommandId="(?P<command>' + _ATTRIBUTE + b')">'
    b"stdout stderr</rsp:DesiredStream></rsp:Receive>"
    b")?</s:Body></s:Envelope>"
)
#: References in one part past which ElementTree is left to read it (a line of 512 KiB of
#: ``&amp;`` costs this loop 4 times what it costs expat).
_MOST_REFERENCES: Final = 64
_REFERENCED: Final = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _read_known(data: bytes) -> Request | None:
    """The `Request` of an envelope exactly as this project's client writes it; None for any
    other (`_parse` then reads it, and reports what is wrong with it).

    Such an envelope is well-formed by construction: the pattern fixes all its markup, and
    `_character_data` admits only variable parts XML takes as they are, but for the five
    predefined references.
    """
    match = _KNOWN.fullmatch(data)
    if match is None:
        return None
    to, shell, line = (_character_data(part, _NOT_IN_TEXT)
                       for part in match.group("to", "shell", "line"))
    command = _character_data(match["command"], _NOT_IN_ATTRIBUTE)
    if to is False or shell is False or line is False or command is False:
        return None
    return Request(
        action=match["action"].decode("ascii"),
        message_id=match["mid"].decode("ascii"),
        resource_uri=match["resource"].decode("ascii"),
        shell_id=None if shell is None else shell.strip(),
        operation_timeout=parse_duration(match["timeout"].decode("ascii")),
        command_line=None if line is None else line.strip(),
        command_id=command or None,
    )


def _character_data(raw: bytes | None, forbidden: bytes) -> str | Literal[False] | None:
    """The text of a variable part (None when the part is absent); False when XML would read
    it otherwise than as it stands, or refuse it, or when it holds more references than
    `_MOST_REFERENCES` (ElementTree reads those faster)."""
    if raw is None:
        return None
    if len(raw.translate(None, forbidden)) != len(raw):
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if "\ufffe" in text or "\uffff" in text:
        return False  # not characters to XML, though UTF-8 encodes them
    if "&" not in text:
        return text
    if text.count("&") > _MOST_REFERENCES:
        return False
    first, *rest = text.split("&")
    parts = [first]
    for piece in rest:
        name, semicolon, after = piece.partition(";")
        if not semicolon or name not in _REFERENCED:
            return False
        parts += (_REFERENCED[name], after)
    return "".join(parts)


def new_id() -> str:
    """An id as Windows writes them: an uppercase (random) UUID."""
    return message_id()[len("uuid:"):]


_ROOT: Final = (
    "<?xml version='1.0' encoding='utf-8'?>\n"
    '<s:Envelope xmlns:s="{s}" xmlns:a="{a}" xmlns:x="{x}" xmlns:w="{w}" xmlns:rsp="{rsp}" '
    'xmlns:f="{f}" xml:lang="en-US"><s:Header>'
).format(**NS) + (
    "<a:Action>{action}</a:Action><a:MessageID>uuid:{mid}</a:MessageID>"
    f"<a:To>{ANONYMOUS}</a:To><a:RelatesTo>{{relates}}</a:RelatesTo></s:Header>"
    "<s:Body>{body}</s:Body></s:Envelope>"
)


def _envelope(action: str, relates_to: str, body: str = "") -> bytes:
    """A reply envelope from a string template (ElementTree's serialiser costs the lab more
    CPU than the whole client's request)."""
    return _ROOT.format(action=action, mid=new_id(), relates=escape(relates_to),
                        body=body).encode("utf-8")


def create_response(request: Request, shell_id: str, address: str) -> bytes:
    """The reply to Create: ResourceCreated with the ShellId selector, and the Shell."""
    shell = escape(shell_id)
    return _envelope(f"{TRANSFER}/CreateResponse", request.message_id, (
        f"<x:ResourceCreated><a:Address>{escape(address)}</a:Address><a:ReferenceParameters>"
        f"<w:ResourceURI>{CMD_RESOURCE_URI}</w:ResourceURI><w:SelectorSet>"
        f'<w:Selector Name="ShellId">{shell}</w:Selector></w:SelectorSet>'
        "</a:ReferenceParameters></x:ResourceCreated>"
        f"<rsp:Shell><rsp:ShellId>{shell}</rsp:ShellId>"
        f"<rsp:ResourceUri>{CMD_RESOURCE_URI}</rsp:ResourceUri>"
        f"<rsp:State>{SHELL_URI}/ShellState/Connected</rsp:State>"
        "<rsp:InputStreams>stdin</rsp:InputStreams>"
        "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
    ))


def command_response(request: Request, command: str) -> bytes:
    """The reply to Command: the new CommandId."""
    return _envelope(f"{SHELL_URI}/CommandResponse", request.message_id,
                     f"<rsp:CommandResponse><rsp:CommandId>{escape(command)}</rsp:CommandId>"
                     "</rsp:CommandResponse>")


def receive_response(
    request: Request,
    command: str,
    *,
    stdout: bytes,
    stderr: bytes,
    exit_code: int | None,
) -> bytes:
    """The reply to Receive: output Streams and the CommandState (Done with ExitCode when given)."""
    done = exit_code is not None
    cid = escape(command, {'"': "&quot;"})
    parts = ["<rsp:ReceiveResponse>"]
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        if data:
            parts.append(f'<rsp:Stream Name="{name}" CommandId="{cid}">'
                         f'{base64.b64encode(data).decode("ascii")}</rsp:Stream>')
        if done:
            parts.append(f'<rsp:Stream Name="{name}" CommandId="{cid}" End="true" />')
    if done:
        parts.append(f'<rsp:CommandState CommandId="{cid}" State="{STATE_DONE}">'
                     f"<rsp:ExitCode>{exit_code}</rsp:ExitCode></rsp:CommandState>")
    else:
        parts.append(f'<rsp:CommandState CommandId="{cid}" State="{STATE_RUNNING}" />')
    parts.append("</rsp:ReceiveResponse>")
    return _envelope(f"{SHELL_URI}/ReceiveResponse", request.message_id, "".join(parts))


def signal_response(request: Request) -> bytes:
    """The reply to Signal."""
    return _envelope(f"{SHELL_URI}/SignalResponse", request.message_id,
                     "<rsp:SignalResponse />")


def send_response(request: Request) -> bytes:
    """The reply to Send (stdin is accepted and ignored)."""
    return _envelope(f"{SHELL_URI}/SendResponse", request.message_id, "<rsp:SendResponse />")


def delete_response(request: Request) -> bytes:
    """The reply to Delete: an empty body."""
    return _envelope(f"{TRANSFER}/DeleteResponse", request.message_id)


@dataclass(frozen=True)
class Fault:
    """A WS-Management fault as Windows reports it."""

    code: str  #: s:Sender or s:Receiver
    subcode: str  #: e.g. w:TimedOut
    reason: str
    wsman_code: int | None = None


TIMED_OUT: Final = Fault(
    "s:Receiver", "w:TimedOut",
    "The WS-Management service cannot complete the operation within the time specified in "
    "OperationTimeout.",
    2150858793,
)
ACCESS_DENIED: Final = Fault("s:Sender", "w:AccessDenied", "Access is denied.", 5)


def invalid_shell(shell_id: str | None) -> Fault:
    """The fault for a ShellId that does not exist."""
    return Fault(
        "s:Sender", "w:InvalidSelectors",
        f"The request for the Windows Remote Shell with ShellId {shell_id or '(none)'} failed "
        "because the shell was not found on the server. Possible causes are: the specified "
        "ShellId is incorrect or the shell no longer exists on the server. Provide the correct "
        "ShellId or create a new shell and retry the operation.",
        2150858843,
    )


def invalid_command(command: str | None) -> Fault:
    """The fault for a CommandId that does not exist in the shell."""
    return Fault(
        "s:Sender", "w:InvalidParameter",
        f"The request for the Windows Remote Shell failed because the command with CommandId "
        f"{command or '(none)'} was not found.",
        87,
    )


def unsupported(what: str) -> Fault:
    """The fault for an action or resource the lab does not implement."""
    return Fault("s:Sender", "a:ActionNotSupported",
                 f"The WS-Management service cannot process the request: {what}.")


def fault(relates_to: str | None, error: Fault, machine: str) -> bytes:
    """A SOAP fault envelope (sent with HTTP 500)."""
    code = f' Code="{error.wsman_code}"' if error.wsman_code is not None else ""
    reason = escape(error.reason)
    return _envelope(FAULT_ACTION, relates_to or f"uuid:{new_id()}", (
        f"<s:Fault><s:Code><s:Value>{escape(error.code)}</s:Value><s:Subcode>"
        f"<s:Value>{escape(error.subcode)}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault Machine="{escape(machine, {chr(34): "&quot;"})}"{code}>'
        f"<f:Message>{reason}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    ))
