"""The fast path's request templates (`agent.connectors.wsman.soap`) with hostile values.

The ShellId and CommandId come from the host; whatever they hold, the request that carries them
back must be well-formed XML holding exactly that value, with nothing added around it.
"""

from __future__ import annotations

import base64
import uuid
import xml.etree.ElementTree as ET

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
    """Envelopes holding some of the parts the readers look for, each at most once per parent
    (where ElementPath's first match and the first child are the same element), and decoys."""
    def some(*parts: ET.Element) -> list[ET.Element]:
        chosen = [p for p in parts if draw(st.booleans())]
        return draw(st.permutations(chosen))

    streams = [
        _element(f"{RSP}Stream", draw(TEXTS), Name=draw(st.sampled_from(["stdout", "stderr", "x"])),
                 CommandId=draw(st.sampled_from(["C", "D"])))
        for _ in range(draw(st.integers(0, 3)))
    ]
    state = _element(f"{RSP}CommandState", None,
                     some(_element(f"{RSP}ExitCode", draw(TEXTS))),
                     State=draw(st.sampled_from([soap.STATE_DONE, "Running"])))
    decoy = _element(f"{A}Stream", "aGk=", Name="stdout", CommandId="C")  # not rsp:Stream
    body = _element(f"{S}Body", None, some(
        _element(f"{RSP}ReceiveResponse", None, [*streams, *some(state, decoy)]),
        _element(f"{RSP}CommandResponse", None, some(_element(f"{RSP}CommandId", draw(TEXTS)))),
        _element(f"{S}Fault", None, some(
            _element(f"{S}Code", None, [_element(f"{S}Value", "s:Receiver")]),
            _element(f"{S}Detail", None, some(_element(f"{F}WSManFault", None, Code="5"))))),
    ))
    header = _element(f"{S}Header", None, some(_element(f"{A}RelatesTo", draw(TEXTS)),
                                                _element(f"{A}MessageID", "uuid:2")))
    return _element(f"{S}Envelope", None, some(header, body))


def _by_elementpath(root: ET.Element) -> dict[str, object]:
    """What the readers answered when they used ElementPath (their previous implementation)."""
    relates = root.findtext(f"{S}Header/{A}RelatesTo")
    command = root.findtext(f"{S}Body/{RSP}CommandResponse/{RSP}CommandId")
    fault = root.find(f"{S}Body/{S}Fault")
    detail = fault.find(f"{S}Detail/{F}WSManFault") if fault is not None else None
    response = root.find(f"{S}Body/{RSP}ReceiveResponse")
    streams = ([(s.get("Name"), s.get("CommandId"), s.text)
                for s in response.iterfind(f"{RSP}Stream")] if response is not None else None)
    state = response.find(f"{RSP}CommandState") if response is not None else None
    code = state.findtext(f"{RSP}ExitCode") if state is not None else None
    return {"relates": (relates or "").strip() == "uuid:1",
            "command": command.strip() if command and command.strip() else None,
            "fault": fault is not None, "wsman_code": detail is not None,
            "streams": streams, "state": None if state is None else state.get("State"),
            "code": code}


def _by_readers(root: ET.Element) -> dict[str, object]:
    try:
        soap.check_relates_to(root, "uuid:1")
        relates = True
    except soap.SoapError:
        relates = False
    try:
        command: str | None = soap.command_id(root)
    except soap.SoapError:
        command = None
    found = soap.fault(root)
    response = soap._child(soap._child(root, f"{S}Body"), f"{RSP}ReceiveResponse")
    streams = ([(s.get("Name"), s.get("CommandId"), s.text) for s in response
                if s.tag == f"{RSP}Stream"] if response is not None else None)
    state = soap._child(response, f"{RSP}CommandState")
    return {"relates": relates, "command": command, "fault": found is not None,
            "wsman_code": found is not None and found.wsman_code is not None,
            "streams": streams, "state": None if state is None else state.get("State"),
            "code": soap._text(soap._child(state, f"{RSP}ExitCode"))}


@settings(max_examples=300, deadline=None)
@given(_replies())
def test_the_reply_readers_find_what_elementpath_finds(root: ET.Element) -> None:
    assert _by_readers(root) == _by_elementpath(root)
    expected = _by_elementpath(root)
    if expected["streams"] is None:
        with pytest.raises(soap.SoapError):
            soap.output(root, "C")
        return
    try:
        out, err, code = soap.output(root, "C")
    except soap.SoapError:
        return  # a stream that is not base64, or an exit code that is not a number
    streams = expected["streams"]
    assert isinstance(streams, list)
    for name, got in (("stdout", out), ("stderr", err)):
        assert got == b"".join(base64.b64decode(text) for kind, cid, text in streams
                               if kind == name and cid == "C" and text)
    done = expected["state"] == soap.STATE_DONE
    assert (code is not None) == done
    if done:
        assert code == int(str(expected["code"] or "").strip())
