"""The HTML matrix header: host names break only after a dot, never mid-word."""

from __future__ import annotations

import re

from test_report import make_report

from agent.report import render_html


def test_matrix_header_breaks_host_names_only_at_dots() -> None:
    page = render_html(make_report())
    head = re.search(r'<table class="matrix".*?</thead>', page, re.DOTALL)
    assert head is not None
    headers = re.findall(r'<th scope="col">(.*?)</th>', head.group(0))
    dotted = [h for h in headers if "." in h.replace(".<wbr>", "")]
    assert not dotted, dotted  # every dot in a host name is followed by a break opportunity
    rule = re.search(r"table\.matrix th\[scope=col\] \{[^}]*\}", page)
    assert rule is not None
    assert "anywhere" not in rule.group(0) and "break-all" not in rule.group(0)
    assert "keep-all" in rule.group(0)


def test_matrix_header_of_a_fqdn() -> None:
    from agent.report.html import _breakable

    assert _breakable("mfa01.lab.example") == "mfa01.<wbr>lab.<wbr>example"
    assert _breakable("<x>.y") == "&lt;x&gt;.<wbr>y"
