"""The lab's request reader: its byte-for-byte reading of this project's own envelopes
(`_read_known`) against ElementTree's (`_parse`), which reads any envelope.

The fast reading must give the same `Request` as ElementTree for every envelope it takes, and
take none that ElementTree refuses: otherwise the lab would answer a malformed request from the
client that a real host (and the lab's own slow path) refuses.
"""

from __future__ import annotations

from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.connectors.wsman import soap as client
from agent.factscripts import bundle, scripts_for
from agent.lab import soap

TO = "http://127.0.0.5:5985/wsman"
SHELL = "8D4D5D1E-2B6B-4F3E-9F6A-0A1B2C3D4E5F"
COMMAND = "1C2D3E4F-5A6B-4C7D-8E9F-A0B1C2D3E4F5"

#: Characters that XML reads otherwise than as written, refuses, or that the client escapes.
_AWKWARD = st.sampled_from(list(
    "aZ09 -_;#\t\n\r\x00\x01\x0b\x1f&<>\"'\x7f\x85é€\ufffe\uffff\U0001f600"))
_TEXTS = st.text(alphabet=_AWKWARD | st.characters(codec="utf-8"), max_size=30)


def _outcome(reader, data: bytes) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    try:
        return "read", reader(data)
    except soap.SoapError:
        return "refused", None


def _envelopes(to: str, timeout: int, shell: str, line: str, command: str) -> list[bytes]:
    mid = client.message_id()
    return [
        client.create(to, mid, timeout),
        client.command(to, mid, timeout, shell, line),
        client.receive(to, mid, timeout, shell, command),
        client.delete(to, mid, timeout, shell),
    ]


def test_the_clients_own_requests_take_the_fast_reading() -> None:
    """Every request of a real scan (the AD FS bundle's command line included) is read without
    ElementTree, and read as ElementTree reads it."""
    line = bundle.command_line(scripts_for(frozenset({"adfs"})))
    assert "&" in line and '"' in line  # both become references in the envelope
    for envelope in _envelopes(TO, 20, SHELL, line, COMMAND):
        fast = soap._read_known(envelope)
        assert fast is not None, envelope[:200]
        assert fast == soap._parse(envelope) == soap.parse_request(envelope)
    command = soap._read_known(client.command(TO, client.message_id(), 20, SHELL, line))
    assert command is not None and command.command_line == line
    assert command.shell_id == SHELL and command.action == soap.ACTION_COMMAND
    receive = soap._read_known(client.receive(TO, client.message_id(), 20, SHELL, COMMAND))
    assert receive is not None and receive.command_id == COMMAND
    assert receive.operation_timeout == 20.0


@settings(max_examples=400, deadline=None)
@given(to=_TEXTS, timeout=st.integers(0, 10**10), shell=_TEXTS, line=_TEXTS, command=_TEXTS)
def test_any_text_in_the_clients_envelopes_reads_as_elementtree_reads_it(
    to: str, timeout: int, shell: str, line: str, command: str,
) -> None:
    """Ids and lines with references, control characters, carriage returns, tabs, spaces to strip
    and non-characters: the same `Request`, or the same refusal."""
    for envelope in _envelopes(to, timeout, shell, line, command):
        assert _outcome(soap.parse_request, envelope) == _outcome(soap._parse, envelope)


#: Raw bytes put in a variable part, past the client's escaping: each is refused by XML, read
#: otherwise than written, or one of the references the fast reading does take.
_RAW: Final = (
    b"\xef\xbf\xbe", b"\xef\xbf\xbf", b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82",
    b"&#65;", b"&#x41;", b"&amp", b"&", b"&nbsp;", b"&amp;", b"&lt;", b"&gt;", b"&quot;",
    b"&apos;", b"]]>", b">", b"\r", b"\r\n", b"\t", b"\n", b"\x00", b"\x01", b"\x7f",
    b"\xc2\x85", b"\xe2\x80\xa8", b"\xef\xbb\xbf", b" ", b"'", b'"', b"\xc3\xa9",
)
#: (envelope, the variable part in it, as the client writes them)
_SLOTS: Final = (
    ("create", b"<a:To>", b"</a:To>"),
    ("command", b'<w:Selector Name="ShellId">', b"</w:Selector>"),
    ("command", b"<rsp:Command>", b"</rsp:Command>"),
    ("receive", b'CommandId="', b'">'),
)


def _with_slot(kind: str, start: bytes, end: bytes, content: bytes) -> bytes:
    """A client envelope whose variable part between `start` and `end` is `content`."""
    envelope = dict(zip(("create", "command", "receive", "delete"),
                        _envelopes(TO, 20, SHELL, "powershell -Command Get-Date", COMMAND),
                        strict=True))[kind]
    at = envelope.index(start) + len(start)
    return envelope[:at] + content + envelope[envelope.index(end, at):]


@pytest.mark.parametrize(("kind", "start", "end"), _SLOTS)
@pytest.mark.parametrize("raw", _RAW)
def test_raw_bytes_in_each_variable_part_read_as_elementtree_reads_them(
    kind: str, start: bytes, end: bytes, raw: bytes,
) -> None:
    """Each kind of byte sequence XML refuses or rewrites, alone and amid text, in each part
    the client fills in: the same `Request` or the same refusal."""
    for content in (raw, b"ab" + raw + b"cd", b" " + raw * 3 + b" "):
        envelope = _with_slot(kind, start, end, content)
        assert _outcome(soap.parse_request, envelope) == _outcome(soap._parse, envelope)


@pytest.mark.parametrize(("kind", "start", "end"), _SLOTS)
def test_references_and_text_xml_takes_as_written_are_read_fast(
    kind: str, start: bytes, end: bytes,
) -> None:
    """The fast reading is not only ever declining: references, quotes, non-ASCII text and
    spaces to strip are its to read (the test above would pass with it turned off)."""
    content = b" x&amp;y&lt;z&gt;&quot;&apos;'\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 "
    envelope = _with_slot(kind, start, end, content)
    fast = soap._read_known(envelope)
    assert fast is not None and fast == soap._parse(envelope)


@settings(max_examples=300, deadline=None)
@given(slot=st.sampled_from(_SLOTS),
       content=st.lists(st.sampled_from(_RAW) | st.binary(max_size=4), max_size=6))
def test_any_bytes_in_a_variable_part_read_as_elementtree_reads_them(
    slot: tuple[str, bytes, bytes], content: list[bytes],
) -> None:
    kind, start, end = slot
    envelope = _with_slot(kind, start, end, b"".join(content))
    assert _outcome(soap.parse_request, envelope) == _outcome(soap._parse, envelope)


_EDIT_BYTES = st.sampled_from([b"<", b">", b"&", b'"', b"'", b"\r", b"\t", b"\x00", b" ", b"a",
                               b"/", b"=", b"\xff", b"\xef\xbf\xbe", b"&amp;", b"&#65;", b"]]>"])


@settings(max_examples=400, deadline=None)
@given(which=st.integers(0, 3), edits=st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 3), _EDIT_BYTES), min_size=1, max_size=3))
def test_an_edited_envelope_is_read_fast_only_when_elementtree_reads_it_the_same(
    which: int, edits: list[tuple[float, int, bytes]],
) -> None:
    """Bytes inserted, replaced or removed anywhere in a client envelope: whatever the fast
    reading takes, ElementTree reads, and reads the same."""
    data = bytearray(_envelopes(TO, 20, SHELL, "powershell -Command \"Get-Date\"", COMMAND)[which])
    for where, removed, inserted in edits:
        at = int(where * len(data))
        data[at:at + removed] = inserted
    fast = soap._read_known(bytes(data))
    if fast is not None:
        assert _outcome(soap._parse, bytes(data)) == ("read", fast)
