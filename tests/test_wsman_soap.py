"""The fast path's request templates (`agent.connectors.wsman.soap`) with hostile values.

The ShellId and CommandId come from the host; whatever they hold, the request that carries them
back must be well-formed XML holding exactly that value, with nothing added around it.
"""

from __future__ import annotations

import base64
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.connectors.wsman import soap

HOSTILE = ['x" Injected="1', "</w:Selector><evil/>", "a & b < c > d", "'quoted'", "plain-id"]
NS = {"s": soap.NS_S, "a": soap.NS_A, "w": soap.NS_W, "rsp": soap.NS_RSP}


@pytest.mark.parametrize("value", HOSTILE)
def test_ids_from_the_host_go_back_as_exactly_that_value(value: str) -> None:
    to = "http://adfs01&x.example:5985/wsman"
    for message in (soap.receive(to, "uuid:1", 20, value, value),
                    soap.delete(to, "uuid:1", 20, value),
                    soap.command(to, "uuid:1", 20, value, value)):
        root = soap.parse(message)
        selectors = root.findall("s:Header/w:SelectorSet/w:Selector", NS)
        assert [(s.attrib, s.text) for s in selectors] == [({"Name": "ShellId"}, value)]
        assert root.findtext("s:Header/a:To", namespaces=NS) == to
        assert root.find(".//evil") is None
    stream = soap.parse(soap.receive(to, "uuid:1", 20, "shell", value)).find(
        "s:Body/rsp:Receive/rsp:DesiredStream", NS)
    assert stream is not None and stream.attrib == {"CommandId": value}
    line = soap.parse(soap.command(to, "uuid:1", 20, "shell", value)).findtext(
        "s:Body/rsp:CommandLine/rsp:Command", namespaces=NS)
    assert line == value


def test_message_ids_are_distinct_random_uuids_in_upper_case() -> None:
    ids = [soap.message_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for mid in ids[:200]:
        assert mid.startswith("uuid:")
        parsed = uuid.UUID(mid[5:])
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert mid[5:] == str(parsed).upper()


# -- the reply readers against ElementPath ---------------------------------------------------

S, A, RSP, F = (f"{{{soap.NS_S}}}", f"{{{soap.NS_A}}}", f"{{{soap.NS_RSP}}}",
                f"{{{soap.NS_F}}}")
TEXTS = st.sampled_from([None, "", "  ", "uuid:1", " uuid:1 ", "0", "7", "x", "aGk=", "!"])


def _element(tag: str, text: str | None = None, children: list[ET.Element] | None = None,
             **attrib: str) -> ET.Element:
    element = ET.Element(tag, attrib)
    element.text = text
    element.extend(children or [])
    return element


@st.composite
def _replies(draw: st.DrawFn) -> ET.Element:
    """Envelopes holding some of the parts the readers look for, any of them twice or more
    (a second Body, a first CommandResponse without a CommandId...), and decoys."""
    def some(make: Callable[[], ET.Element]) -> list[ET.Element]:
        return [make() for _ in range(draw(st.integers(0, 2)))]

    def stream() -> ET.Element:
        return _element(f"{RSP}Stream", draw(TEXTS),
                        Name=draw(st.sampled_from(["stdout", "stderr", "x"])),
                        CommandId=draw(st.sampled_from(["C", "D"])))

    def state() -> ET.Element:
        return _element(f"{RSP}CommandState", None,
                        some(lambda: _element(f"{RSP}ExitCode", draw(TEXTS))),
                        State=draw(st.sampled_from([soap.STATE_DONE, "Running"])))

    def decoy() -> ET.Element:  # an a:Stream is no rsp:Stream
        return _element(f"{A}Stream", "aGk=", Name="stdout", CommandId="C")

    def receive() -> ET.Element:
        parts = [*some(stream), *some(stream), *some(state), *some(decoy)]
        return _element(f"{RSP}ReceiveResponse", None, draw(st.permutations(parts)))

    def command() -> ET.Element:
        return _element(f"{RSP}CommandResponse", None,
                        some(lambda: _element(f"{RSP}CommandId", draw(TEXTS))))

    def fault() -> ET.Element:
        return _element(f"{S}Fault", None, [
            _element(f"{S}Code", None, [_element(f"{S}Value", "s:Receiver")]),
            *some(lambda: _element(f"{S}Detail", None, some(
                lambda: _element(f"{F}WSManFault", None, Code=draw(st.sampled_from(["5", "x"])))
            )))])

    def body() -> ET.Element:
        parts = [*some(receive), *some(command), *some(fault)]
        return _element(f"{S}Body", None, draw(st.permutations(parts)))

    def header() -> ET.Element:
        parts = [*some(lambda: _element(f"{A}RelatesTo", draw(TEXTS))),
                 _element(f"{A}MessageID", "uuid:2")]
        return _element(f"{S}Header", None, draw(st.permutations(parts)))

    return _element(f"{S}Envelope", None, draw(st.permutations([*some(header), *some(body)])))


def _answer(read: Callable[[], object]) -> object:
    try:
        return read()
    except soap.SoapError as exc:
        return ("SoapError", str(exc))


def _fault_by_elementpath(root: ET.Element) -> soap.Fault | None:
    element = root.find(f"{S}Body/{S}Fault")
    if element is None:
        return None
    detail = element.find(f"{S}Detail/{F}WSManFault")
    code = detail.get("Code") if detail is not None else None
    return soap.Fault(code=element.findtext(f"{S}Code/{S}Value"),
                      subcode=element.findtext(f"{S}Code/{S}Subcode/{S}Value"),
                      reason=(element.findtext(f"{S}Reason/{S}Text")
                              or "(no error message in fault)"),
                      wsman_code=int(code) if code is not None and code.isdigit() else None)


def _output_by_elementpath(root: ET.Element, wanted: str) -> tuple[bytes, bytes, int | None]:
    """`soap.output` as it was written with ElementPath."""
    response = root.find(f"{S}Body/{RSP}ReceiveResponse")
    if response is None:
        raise soap.SoapError("the Receive reply has no ReceiveResponse")
    out, err = bytearray(), bytearray()
    for stream in response.iterfind(f"{RSP}Stream"):
        if stream.get("CommandId", wanted) != wanted or not stream.text:
            continue
        try:
            data = base64.b64decode(stream.text, validate=True)
        except ValueError:
            raise soap.SoapError("a Receive stream is not base64") from None
        if stream.get("Name") == "stdout":
            out += data
        elif stream.get("Name") == "stderr":
            err += data
    state = response.find(f"{RSP}CommandState")
    if state is None or state.get("State") != soap.STATE_DONE:
        return bytes(out), bytes(err), None
    code_text = (state.findtext(f"{RSP}ExitCode") or "").strip()
    try:
        return bytes(out), bytes(err), int(code_text)
    except ValueError:
        raise soap.SoapError(f"the exit code {code_text[:20]!r} is not a number") from None


@settings(max_examples=400, deadline=None)
@given(_replies())
def test_the_reply_readers_find_what_elementpath_finds(root: ET.Element) -> None:
    """The readers walk children instead of compiling ElementPaths: the same answers, also when
    parts repeat (ElementPath searches every Body, not just the first)."""
    relates = root.findtext(f"{S}Header/{A}RelatesTo")
    assert _answer(lambda: soap.check_relates_to(root, "uuid:1")) == (
        None if (relates or "").strip() == "uuid:1"
        else ("SoapError", "the reply does not relate to the request (RelatesTo)"))
    command = root.findtext(f"{S}Body/{RSP}CommandResponse/{RSP}CommandId")
    assert _answer(lambda: soap.command_id(root)) == (
        command.strip() if command and command.strip()
        else ("SoapError", "the Command reply has no CommandId"))
    assert soap.fault(root) == _fault_by_elementpath(root)
    assert _answer(lambda: soap.output(root, "C")) == _answer(
        lambda: _output_by_elementpath(root, "C"))
