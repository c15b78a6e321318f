"""The fast path's request templates (`agent.connectors.wsman.soap`) with hostile values.

The ShellId and CommandId come from the host; whatever they hold, the request that carries them
back must be well-formed XML holding exactly that value, with nothing added around it.
"""

from __future__ import annotations

import pytest

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
