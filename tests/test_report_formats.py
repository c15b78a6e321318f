"""Tests of waivers, the delta from the last scan and the compliance score in every format, and of
the HTML, Markdown and Prometheus reporters.

One report has every status including WAIVED, a waiver in each state (active, expiring in 3 days,
expired, unused), a delta from a previous scan, and hostile text (``<script>``, ``|``, newlines,
control characters) in evidence, reasons and waivers. The HTML page is opened in a real browser
in `test_report_browser.py`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import prometheus_client
import pytest
import xmlschema
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from rich.console import Console
from test_report import (
    FINISHED,
    HOSTILE,
    HOSTS,
    JUNIT_XSD,
    REPORT_SCHEMA,
    RESULTS,
    STARTED,
    make_report,
    meta,
    xml_root,
)

from agent.errors import ExitCode
from agent.model import STATUS_ORDER, Result, Status, Waiver
from agent.report import (
    FILENAMES,
    FORMATS,
    Compliance,
    Delta,
    DeltaItem,
    HostSummary,
    ScanReport,
    WaiverState,
    render_html,
    render_json,
    render_junit,
    render_markdown,
    render_prometheus,
    render_terminal,
    write_reports,
)
from agent.report.html import CONTENT_SECURITY_POLICY, CSS
from agent.report.markdown import MAX_ROWS, md
from agent.roles import ADFS, DIRECTORY_TARGET

XSS = "<script>alert(1)</script>"
TODAY = STARTED.date()

W_SOON = Waiver(
    "adfs-adapter-installed",
    "adfs02",
    "Adapter rollout in CHG-1234 | phase 2\nsee <b>ticket</b>",
    "Jane Doe, CISO",
    TODAY + timedelta(days=3),
    "waivers.yml:3",
)
W_ACTIVE = Waiver(
    "adfs-extranet-lockout",
    "adfs0*",
    "Lockout enforced by the WAF in front of AD FS",
    "John Roe",
    TODAY + timedelta(days=120),
    "waivers.yml:9",
)
W_EXPIRED = Waiver(
    "mfa-server-retired",
    "mfa01",
    "Migration to Entra MFA by April",
    "Jane Doe, CISO",
    TODAY - timedelta(days=10),
    "waivers.yml:15",
)
W_UNUSED = Waiver(
    "portal-https-only",
    "portal99*",
    "Old portal, decommissioned",
    "John Roe",
    TODAY + timedelta(days=60),
    "waivers.yml:21",
)

WAIVER_STATES = (
    WaiverState(W_SOON, "active", 3, (("adfs-adapter-installed", "adfs02"),)),
    WaiverState(W_ACTIVE, "active", 120, (("adfs-extranet-lockout", "adfs02"),)),
    WaiverState(W_EXPIRED, "expired", -10),
    WaiverState(W_UNUSED, "unused", 60),
)

ADFS02 = HostSummary("adfs02", "10.0.0.21", (ADFS,), "winrm/kerberos over https:5986")

FULL_RESULTS = (
    *RESULTS[:2],
    replace(
        RESULTS[2],
        evidence={**RESULTS[2].evidence, "banner": XSS, "expired_waiver": "a waiver expired"},
    ),
    *RESULTS[3:],
    Result(
        "adfs-adapter-installed",
        "adfs02",
        Status.WAIVED,
        "The MFA adapter is not registered in AD FS",
        {"providers": ["FormsAuthentication"]},
        waiver=W_SOON,
    ),
    Result(
        "adfs-extranet-lockout",
        "adfs02",
        Status.WAIVED,
        "Extranet lockout is disabled",
        {"enabled": False},
        waiver=W_ACTIVE,
    ),
    Result("adfs-extranet-lockout", "mfa01", Status.PASS, "Extranet lockout is enabled"),
)

DELTA = Delta(
    previous_scan_id=41,
    previous_started_at=STARTED - timedelta(days=1),
    new_failures=(DeltaItem("mfa-server-retired", "mfa01", Status.PASS, Status.FAIL),),
    # A check that was run last time but not this time: reporters must not look it up.
    fixed=(DeltaItem("adfs-legacy-auth-off", "adfs01", Status.FAIL, Status.PASS),),
    still_failing=(DeltaItem("adfs-adapter-installed", "adfs01", Status.FAIL, Status.FAIL),),
    new_errors=(DeltaItem("phonefactor-admins", DIRECTORY_TARGET, None, Status.ERROR),),
    hosts_added=("adfs02",),
    hosts_removed=("adfs-old01.corp.example",),
)

#: 2 PASS of 2 + 2 + 2 + 2 evaluated results.
FULL_SCORE = "25.0%"


def full_report(**changes: Any) -> ScanReport:
    """Every status, a waiver in each state, a delta, a scan id."""
    report = make_report(
        FULL_RESULTS,
        hosts=(*HOSTS, ADFS02),
        waivers=WAIVER_STATES,
        delta=DELTA,
        scan_id=42,
    )
    return replace(report, **changes) if changes else report


def terminal_text(report: ScanReport, width: int = 100) -> str:
    """The terminal report, as plain text."""
    buffer = io.StringIO()
    render_terminal(report, Console(file=buffer, force_terminal=False, width=width))
    return buffer.getvalue()


# -- Model ----------------------------------------------------------------------------------------


class TestModel:
    def test_full_report_has_every_status(self) -> None:
        counts = full_report().counts()
        assert all(counts[s] for s in STATUS_ORDER), counts
        assert counts[Status.WAIVED] == 2

    def test_waived_never_fails_the_exit_code(self) -> None:
        only_waived = tuple(r for r in FULL_RESULTS if r.status in (Status.WAIVED, Status.PASS))
        report = full_report(results=only_waived, hosts=(HOSTS[0], ADFS02))
        assert report.exit_code() is ExitCode.OK
        assert report.verdict().startswith("OK: no check failed and none errored (exit code 0); ")
        assert "2 WAIVED" in report.verdict()
        assert full_report().exit_code() is ExitCode.FAIL

    def test_compliance_score(self) -> None:
        compliance = full_report().compliance()
        assert (compliance.passed, compliance.failed, compliance.errored, compliance.waived) == (
            2,
            2,
            2,
            2,
        )
        assert compliance.evaluated == 8
        assert compliance.score == 0.25
        assert compliance.accepted == 0.5
        assert Compliance.percent(compliance.score) == FULL_SCORE
        empty = make_report((), hosts=()).compliance()
        assert (empty.score, empty.accepted, Compliance.percent(empty.score)) == (None, None, "n/a")
        only_skip_and_manual = make_report(
            tuple(r for r in RESULTS if r.status in (Status.SKIP, Status.MANUAL))
        )
        assert only_skip_and_manual.compliance().score is None

    @pytest.mark.parametrize(
        ("value", "shown"),
        [(1.0, "100.0%"), (0.99996, "99.9%"), (2 / 3, "66.6%"), (0.29, "29.0%"), (0.0, "0.0%")],
    )
    def test_percent_rounds_down(self, value: float, shown: str) -> None:
        assert Compliance.percent(value) == shown

    def test_waivers_expiring_soon(self) -> None:
        soon = full_report().waivers_expiring_soon()
        assert [w.waiver for w in soon] == [W_SOON]
        assert WaiverState(W_EXPIRED, "expired", -1).expiring_soon is False
        assert WaiverState(W_UNUSED, "unused", 14).expiring_soon is True


# -- Terminal -------------------------------------------------------------------------------------


class TestTerminal:
    def test_waived_results_with_their_waiver(self) -> None:
        out = terminal_text(full_report())
        section = out[out.index("WAIVED - accepted risks (2)") :]
        assert "WAIVED critical adfs-adapter-installed" in section
        assert "Waiver: Adapter rollout in CHG-1234 | phase 2" in section
        assert "Approved by Jane Doe, CISO, expires 2024-05-04" in section
        assert "Approved by John Roe, expires 2024-08-29" in section

    def test_waivers_section_flags_each_state(self) -> None:
        out = terminal_text(full_report())
        section = out[out.index("Waivers (4, 1 expiring within 14 days)") :]
        assert "EXPIRES SOON adfs-adapter-installed on adfs02" in section
        assert "expires 2024-05-04 (in 3 days)" in section
        assert "active adfs-extranet-lockout on adfs0*" in section
        assert "expires 2024-08-29 (in 120 days)" in section
        assert "EXPIRED mfa-server-retired on mfa01" in section
        assert "expired on 2024-04-21 — no longer applies" in section
        assert "UNUSED portal-https-only on portal99*" in section
        assert "matched nothing" in section
        assert "waived 1 result: adfs02" in section
        assert "waivers.yml:15" in section

    def test_read_this_first_mentions_expiring_and_expired_waivers(self) -> None:
        out = terminal_text(full_report())
        assert "WAIVERS 1 waiver expiring within 14 days, 1 waiver expired" in out

    def test_since_the_last_scan(self) -> None:
        out = terminal_text(full_report())
        section = out[out.index("Since the last scan") : out.index("FAIL - not compliant")]
        assert "Since scan #41 (2024-04-30 12:00:00 UTC): 1 new failure, 1 fixed" in section
        assert "New failures  mfa-server-retired on mfa01 (PASS -> FAIL)" in section
        assert "New errors    phonefactor-admins on (directory) (none -> ERROR)" in section
        assert "Fixed         adfs-legacy-auth-off on adfs01 (FAIL -> PASS)" in section
        assert "Still failing adfs-adapter-installed on adfs01 (FAIL -> FAIL)" in section
        assert "Hosts added   adfs02" in section
        assert "Hosts removed adfs-old01.corp.example" in section
        assert "Since the last scan" not in terminal_text(full_report(delta=None))
        unchanged = Delta(41, STARTED - timedelta(days=1))
        assert "Nothing changed." in terminal_text(full_report(delta=unchanged))

    def test_counts_verdict_and_scan_id(self) -> None:
        out = terminal_text(full_report())
        assert "2 FAIL  2 ERROR  2 WAIVED  1 MANUAL  1 SKIP  2 PASS" in out
        assert "Scan         #42" in out
        verdict = " ".join(out[out.rindex("Verdict:") :].split())
        assert verdict.endswith("2 WAIVED (accepted, not failing)")

    def test_no_waivers_no_waiver_sections(self) -> None:
        out = terminal_text(make_report())
        assert "Waivers (" not in out
        assert "WAIVED - accepted" not in out
        assert "WAIVERS" not in out

    @pytest.mark.parametrize("width", [60, 80, 120])
    def test_fits_the_width_and_stays_plain(self, width: int) -> None:
        out = terminal_text(full_report(), width=width)
        assert max(len(line) for line in out.splitlines()) <= width
        assert "\x1b" not in out
        assert all(line == line.rstrip() for line in out.splitlines())


# -- JSON -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    """A validator for the report JSON Schema, checking formats too."""
    schema = json.loads(REPORT_SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


class TestJson:
    def test_full_report_validates(self, validator: jsonschema.Draft202012Validator) -> None:
        validator.validate(json.loads(render_json(full_report())))

    def test_waivers_delta_scan_id(self) -> None:
        doc = json.loads(render_json(full_report()))
        assert doc["version"] == 1
        assert doc["scan_id"] == 42
        assert doc["summary"]["counts"]["WAIVED"] == 2
        assert doc["summary"]["compliance"]["score"] == 0.25
        assert doc["summary"]["compliance"]["accepted"] == 0.5
        assert [w["state"] for w in doc["waivers"]] == ["active", "active", "expired", "unused"]
        soon = doc["waivers"][0]
        assert soon == {
            "waiver": {
                "check_id": "adfs-adapter-installed",
                "hosts": "adfs02",
                "justification": W_SOON.justification,
                "approver": "Jane Doe, CISO",
                "expires": "2024-05-04",
                "source": "waivers.yml:3",
            },
            "state": "active",
            "days_left": 3,
            "expiring_soon": True,
            "waived": [{"check_id": "adfs-adapter-installed", "target": "adfs02"}],
        }
        assert doc["waivers"][1]["expiring_soon"] is False
        assert doc["waivers"][2]["days_left"] == -10
        assert doc["delta"]["previous_scan_id"] == 41
        assert doc["delta"]["previous_started_at"] == "2024-04-30T12:00:00.250000Z"
        assert doc["delta"]["new_failures"] == [
            {"check_id": "mfa-server-retired", "target": "mfa01", "before": "PASS", "after": "FAIL"}
        ]
        assert doc["delta"]["new_errors"][0]["before"] is None
        assert doc["delta"]["hosts_removed"] == ["adfs-old01.corp.example"]
        waived = [r for r in doc["results"] if r["status"] == "WAIVED"]
        assert [r["waiver"]["expires"] for r in waived] == ["2024-05-04", "2024-08-29"]
        assert all(r["waiver"] is None for r in doc["results"] if r["status"] != "WAIVED")

    def test_documents_without_the_new_fields_still_validate(
        self, validator: jsonschema.Draft202012Validator
    ) -> None:
        """The new fields are optional: a version-1 document written before them is valid."""
        doc = json.loads(render_json(full_report()))
        for name in ("scan_id", "waivers", "delta"):
            del doc[name]
        del doc["summary"]["compliance"]
        del doc["summary"]["counts"]["WAIVED"]
        doc["results"] = [r for r in doc["results"] if r["status"] != "WAIVED"]
        for r in doc["results"]:
            del r["waiver"]
        validator.validate(doc)

    def test_schema_rejects_a_bad_waiver_state(
        self, validator: jsonschema.Draft202012Validator
    ) -> None:
        doc = json.loads(render_json(full_report()))
        doc["waivers"][0]["state"] = "pending"
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(doc)


# -- JUnit ----------------------------------------------------------------------------------------


class TestJunit:
    def test_validates_against_the_xsd(self) -> None:
        xmlschema.XMLSchema(str(JUNIT_XSD)).validate(render_junit(full_report()))

    def test_waived_is_skipped_with_the_waiver(self) -> None:
        root = xml_root(render_junit(full_report()))
        suite = root.find("testsuite[@name='adfs02']")
        assert suite is not None
        assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "0", "2")
        skipped = suite.find("testcase/skipped")
        assert skipped is not None
        message = skipped.get("message") or ""
        assert message.startswith("waived: The MFA adapter is not registered in AD FS (")
        assert "approved by Jane Doe, CISO; expires 2024-05-04)" in message
        body = skipped.text or ""
        assert "Waiver:" in body
        assert "Approved by: Jane Doe, CISO" in body
        assert "Expires: 2024-05-04" in body
        assert "Source: waivers.yml:3" in body
        assert (root.get("failures"), root.get("errors")) == ("2", "2")

    def test_waivers_and_delta_in_properties_and_system_out(self) -> None:
        root = xml_root(render_junit(full_report()))
        mfa01 = root.find("testsuite[@name='mfa01']")
        assert mfa01 is not None
        props = {p.get("name"): p.get("value") for p in mfa01.iterfind("properties/property")}
        assert props["scan_id"] == "42"
        assert props["waiver_expiring_soon"] == (
            "adfs-adapter-installed on adfs02 expires 2024-05-04 (in 3 days); "
            "approved by Jane Doe, CISO"
        )
        assert props["waiver_expired"].startswith(
            "mfa-server-retired on mfa01 expired on 2024-04-21 — no longer applies"
        )
        assert (props["previous_scan_id"], props["new_failures"], props["fixed"]) == (
            "41",
            "1",
            "1",
        )
        assert props["hosts_removed"] == "adfs-old01.corp.example"
        out = mfa01.findtext("system-out") or ""
        assert "Since scan #41 (2024-04-30 12:00:00 UTC): 1 new failure" in out
        assert "NEW FAILURE: mfa-server-retired on mfa01" in out
        assert "WAIVER EXPIRES SOON: adfs-adapter-installed on adfs02" in out
        assert "WAIVER EXPIRED: mfa-server-retired on mfa01" in out
        assert "STILL FAILING" not in out  # that one is on adfs01
        adfs01 = root.find("testsuite[@name='adfs01']")
        assert adfs01 is not None
        assert "STILL FAILING: adfs-adapter-installed on adfs01" in (
            adfs01.findtext("system-out") or ""
        )

    def test_without_waivers_or_delta_nothing_extra(self) -> None:
        root = xml_root(render_junit(make_report()))
        names = {p.get("name") for p in root.iter("property")}
        assert not names & {"waiver_expiring_soon", "waiver_expired", "previous_scan_id"}


# -- HTML -----------------------------------------------------------------------------------------


#: Elements whose boundaries separate words in the text of a page.
BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt"),
        *("footer", "h1", "h2", "h3", "h4", "header", "li", "main", "meter", "p", "pre"),
        *("section", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"),
    }
)


class Page(HTMLParser):
    """Every start tag with its attributes, the text of each element id, and <style> text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self.text_by_id: dict[str, str] = {}
        self.ids: list[str] = []
        self._open: list[tuple[str, str | None]] = []
        self._in_style = False
        self.feed(text)
        self.close()

    def _boundary(self, tag: str) -> None:
        """Block and table elements separate words, as a browser's text rendering does."""
        if tag in BLOCKS:
            for _, element_id in self._open:
                if element_id is not None:
                    self.text_by_id[element_id] += " "

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._boundary(tag)
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        element_id = attributes.get("id")
        if element_id is not None:
            self.ids.append(element_id)
            self.text_by_id.setdefault(element_id, "")
        if tag in {"meta", "link", "br", "img", "input", "hr"}:
            return
        self._open.append((tag, element_id))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._boundary(tag)
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)
        for _, element_id in self._open:
            if element_id is not None:
                self.text_by_id[element_id] += data

    def text(self, element_id: str) -> str:
        """The text of an element, whitespace collapsed."""
        return " ".join(self.text_by_id[element_id].split())


#: Attributes through which a page can load something.
LOADING_ATTRIBUTES = (
    "src",
    "href",
    "srcset",
    "poster",
    "data",
    "action",
    "formaction",
    "background",
)
REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)


def remote_loads(page: Page) -> list[str]:
    """Everything in the page that would make the browser fetch a URL by itself."""
    found = []
    for tag, attrs in page.tags:
        if tag == "a":
            continue  # links are followed only when clicked
        for name in LOADING_ATTRIBUTES:
            value = attrs.get(name)
            if value is not None and REMOTE.search(value):
                found.append(f"<{tag} {name}={value}>")
        if "style" in attrs:
            found.append(f"<{tag} style=...>")
    for css in page.styles:
        found += re.findall(r"@import|url\s*\(", css, re.IGNORECASE)
    return found


@pytest.fixture(scope="module")
def page_text() -> str:
    """The full report as HTML."""
    return render_html(full_report())


@pytest.fixture(scope="module")
def page(page_text: str) -> Page:
    """The full report's HTML, parsed."""
    return Page(page_text)


class TestHtml:
    def test_is_one_document(self, page_text: str) -> None:
        assert page_text.startswith('<!DOCTYPE html>\n<html lang="en">')
        assert page_text.endswith("</html>\n")
        page_text.encode("utf-8")

    def test_loads_nothing(self, page: Page) -> None:
        assert remote_loads(page) == []
        tags = {tag for tag, _ in page.tags}
        assert not tags & {"script", "img", "iframe", "object", "embed", "video", "audio", "base"}
        links = [attrs for tag, attrs in page.tags if tag == "link"]
        assert links == [{"rel": "icon", "href": "data:,"}]

    def test_the_check_catches_remote_loads(self) -> None:
        """The detector above is not vacuous."""
        bad = Page(
            '<link rel="stylesheet" href="https://cdn.example/x.css"><img src="//t.example/p">'
            "<style>@import 'x.css'; body { background: url(data:,) }</style>"
            '<a href="https://ok.example">fine</a><p style="color:red">x</p>'
        )
        assert len(remote_loads(bad)) == 5

    def test_content_security_policy_matches_the_stylesheet(
        self, page: Page, page_text: str
    ) -> None:
        metas = [a for t, a in page.tags if t == "meta" and a.get("http-equiv")]
        assert [m["content"] for m in metas] == [CONTENT_SECURITY_POLICY]
        assert "default-src 'none'" in CONTENT_SECURITY_POLICY
        assert "script-src" not in CONTENT_SECURITY_POLICY  # falls back to 'none'
        assert "".join(page.styles) == CSS
        digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
        assert f"style-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY

    def test_hostile_text_is_escaped(self, page: Page, page_text: str) -> None:
        assert XSS not in page_text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page_text
        assert not [t for t, _ in page.tags if t in {"script", "tag", "b"}]
        assert "\x07" not in page_text
        assert "\x1b" not in page_text
        assert "\\x07bell \\x1b[31mred\\x1b[0m ✓" in page_text
        assert "naïve “quoted” &#x27;single&#x27; &lt;tag attr=&quot;x&quot;&gt; &amp;" in page_text

    def test_hostile_text_in_attributes_and_ids(self) -> None:
        evil = '"><script>alert(2)</script>'
        report = full_report(
            results=(Result("adfs-extranet-lockout", evil, Status.FAIL, evil, {evil: evil}),),
            hosts=(HostSummary(evil, evil, (ADFS,), evil, trust_notes=(evil,), error=evil),),
            warnings=(evil,),
            inventory=evil,
            inventory_digest=evil,
            agent_version=evil,
        )
        text = render_html(report)
        assert "<script>" not in text
        page = Page(text)
        assert not [t for t, _ in page.tags if t == "script"]
        assert all(re.fullmatch(r"[a-z][a-z0-9-]*", i) for i in page.ids)

    def test_ids_are_unique_even_for_repeated_results(self) -> None:
        duplicate = RESULTS[0]
        page = Page(render_html(make_report((duplicate, duplicate, *RESULTS[1:]))))
        assert len(page.ids) == len(set(page.ids))
        anchors = {a["href"] for t, a in page.tags if t == "a" and (a.get("href") or "")[:1] == "#"}
        assert anchors <= {f"#{i}" for i in page.ids}

    def test_headline_score_counts_and_definition(self, page: Page) -> None:
        assert page.text("compliance-score") == FULL_SCORE
        assert "PASS / (PASS + FAIL + ERROR + WAIVED)" in page.text("score-definition")
        assert page.text("verdict") == "FAIL: at least one check failed (exit code 1)"
        assert page.text("counts") == (
            "Results per status Status Results FAIL 2 ERROR 2 WAIVED 2 MANUAL 1 SKIP 1 PASS 2 "
            "Total 10"
        )
        assert "50.0% compliant or accepted by a waiver" in page.text("summary")

    def test_metadata(self, page: Page) -> None:
        meta_text = page.text("scan-metadata")
        for expected in (
            "Agent version 0.1.0",
            "Mode live",
            "Scan id #42",
            "Inventory inventories/prod.yml",
            "sha256:" + "ab" * 32,
            "Started (UTC) 2024-05-01 12:00:00 UTC",
            "Finished (UTC) 2024-05-01 12:00:03 UTC",
            "Duration 3.5 s",
        ):
            assert expected in meta_text

    def test_read_this_first(self, page: Page) -> None:
        text = page.text("attention")
        assert "HOST NOT SCANNED portal01 (portal01.corp.example): connection refused" in text
        assert "TRUST NOTE adfs01: TLS certificate validation disabled" in text
        assert "WARNING group_vars/all.yml: unknown key 'winrm_tranport' ignored" in text
        assert "WAIVER EXPIRES SOON adfs-adapter-installed on adfs02 expires 2024-05-04" in text
        assert "WAIVER EXPIRED mfa-server-retired on mfa01 expired on 2024-04-21" in text
        assert "attention" not in Page(render_html(make_report(hosts=(), warnings=()))).ids

    def test_matrix(self, page: Page) -> None:
        text = page.text("matrix-table")
        assert text.startswith(
            "Status of each check (rows) on each target (columns) Check Severity adfs01 mfa01 "
            "portal01 adfs02 (directory) (deployment)"
        )
        assert (
            "adfs-adapter-installed Title of adfs-adapter-installed critical FAIL –not evaluated "
            "–not evaluated WAIVED"
        ) in text
        cells = [a for t, a in page.tags if t == "td" and "st" in (a.get("class") or "").split()]
        assert {c["class"] for c in cells} == {f"st st-{s.value.lower()}" for s in STATUS_ORDER}
        assert all(c.get("title") for c in cells)  # the reason, as a tooltip

    def test_every_failure_and_error_in_full(self, page: Page) -> None:
        report = full_report()
        fail_text = page.text("fail-results")
        error_text = page.text("error-results")
        for r in report.results:
            if r.status not in (Status.FAIL, Status.ERROR) or r.target == "portal01":
                continue
            text = fail_text if r.status is Status.FAIL else error_text
            check = report.check(r.check_id)
            assert r.reason in text
            assert check.guidance.quote in text
            assert check.guidance.source in text
            assert check.remediation in text
            assert check.references[0] in text
        assert "banner <script>alert(1)</script>" in fail_text
        assert 'providers ["FormsAuthentication", "CertificateAuthentication"]' in fail_text
        assert "Notes on adfs-adapter-installed" in fail_text
        assert "portal01 could not be scanned connection refused (10.0.0.13:5986)" in error_text
        refs = [a["href"] for t, a in page.tags if t == "a" and "learn.example" in a["href"]]
        assert "https://learn.example/mfa-server-retired" in refs

    def test_only_http_references_become_links(self) -> None:
        check = replace(
            meta("adfs-extranet-lockout"),
            references=(
                "javascript:alert(1)",
                "https://learn.example/ok",
                "Microsoft Learn, AD FS operations",
            ),
        )
        result = Result("adfs-extranet-lockout", "adfs01", Status.FAIL, "x")
        page = Page(render_html(make_report((result,), checks=(check,))))
        hrefs = [a["href"] for t, a in page.tags if t == "a" and not a["href"].startswith("#")]
        assert hrefs == ["https://learn.example/ok"]
        assert "javascript:alert(1)" in page.text("fail-results")

    def test_waived_results_with_their_waiver(self, page: Page) -> None:
        text = page.text("waived-results")
        assert text.startswith("WAIVED — accepted risks (2)")
        assert "Waiver Adapter rollout in CHG-1234 | phase 2 see <b>ticket</b>" in text
        assert "Approved by Jane Doe, CISO" in text
        assert "Expires 2024-05-04 (last day it applies, UTC)" in text
        assert "Covers adfs-extranet-lockout on adfs0* (waivers.yml:9)" in text

    def test_waivers_table(self, page: Page) -> None:
        rows = [a.get("class") for t, a in page.tags if t == "tr" and a.get("class")]
        assert rows == ["w-soon", "w-active", "w-expired", "w-unused"]
        text = page.text("waivers-table")
        assert (
            "EXPIRES SOON adfs-adapter-installed adfs02 2024-05-04 3 expires 2024-05-04 (in 3 days)"
        ) in text
        assert "active adfs-extranet-lockout adfs0* 2024-08-29 120" in text
        assert "EXPIRED no longer applies mfa-server-retired mfa01 2024-04-21 -10" in text
        assert "expired on 2024-04-21 — no longer applies" in text
        assert "UNUSED matched nothing portal-https-only portal99*" in text
        assert "waived 1 result: adfs02" in text

    def test_delta(self, page: Page) -> None:
        assert "Since scan #41 (2024-04-30 12:00:00 UTC)" in page.text("delta")
        text = page.text("delta-table")
        assert "New failure mfa-server-retired mfa01 PASS FAIL" in text
        assert "New error phonefactor-admins (directory) none ERROR" in text
        assert "Fixed adfs-legacy-auth-off adfs01 FAIL PASS" in text
        assert "Still failing adfs-adapter-installed adfs01 FAIL FAIL" in text
        assert "Hosts added: adfs02" in page.text("delta")
        assert "Hosts removed: adfs-old01.corp.example" in page.text("delta")
        assert "delta" not in Page(render_html(full_report(delta=None))).ids

    def test_hosts_and_manual(self, page: Page) -> None:
        hosts = page.text("hosts-table")
        assert "portal01 portal01.corp.example user_portal" in hosts
        assert "NOT SCANNED connection refused (10.0.0.13:5986)" in hosts
        assert "TLS certificate validation disabled" in hosts
        assert "To attest: attest that the deployment" in page.text("manual-results")

    def test_print_stylesheet(self) -> None:
        assert "@media print" in CSS
        assert "break-inside: avoid" in CSS

    def test_empty_report(self) -> None:
        page = Page(render_html(make_report((), hosts=(), warnings=())))
        assert page.text("compliance-score") == "n/a"
        assert "No results." in page.text("matrix")
        assert "nothing was evaluated" in page.text("summary")


# -- Markdown -------------------------------------------------------------------------------------


def table_after(text: str, heading: str) -> list[str]:
    """The table rows (header included) following a heading."""
    lines = text.splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    return rows


def cells(row: str) -> list[str]:
    """A table row split on its unescaped pipes."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


class TestMarkdown:
    def test_verdict_score_and_counts(self) -> None:
        text = render_markdown(full_report())
        first = text.splitlines()[0]
        assert first.startswith("## ❌ mfa-agent: FAIL: at least one check failed (exit code 1)")
        assert f"**Compliance score: {FULL_SCORE}**" in text
        assert "live scan #42 of `inventories/prod.yml`" in text
        assert "| FAIL | ERROR | WAIVED | MANUAL | SKIP | PASS | Total |" in text
        assert "| 2 | 2 | 2 | 1 | 1 | 2 | 10 |" in text
        assert text.endswith("\n") and not text.endswith("\n\n")

    def test_failures_and_errors_tables(self) -> None:
        text = render_markdown(full_report())
        failures = table_after(text, "### Failures (2)")
        assert cells(failures[0]) == ["Severity", "Check", "Target", "Reason"]
        assert cells(failures[2]) == [
            "critical",
            "`adfs-adapter-installed`",
            "adfs01",
            "The MFA adapter is not registered in AD FS",
        ]
        assert cells(failures[3])[:3] == ["high", "`mfa-server-retired`", "mfa01"]
        errors = table_after(text, "### Errors (2)")
        assert [cells(r)[2] for r in errors[2:]] == ["(directory)", "portal01"]

    def test_waivers_expiring_soon_or_expired(self) -> None:
        text = render_markdown(full_report())
        rows = table_after(text, "### Waivers expiring within 14 days or expired (2)")
        assert [cells(r)[0] for r in rows[2:]] == [
            "`adfs-adapter-installed`",
            "`mfa-server-retired`",
        ]
        assert cells(rows[2])[3:5] == ["3", "expires 2024-05-04 (in 3 days)"]
        assert cells(rows[3])[4] == "expired on 2024-04-21 — no longer applies"
        waived = table_after(text, "### Waived — accepted risks (2)")
        assert cells(waived[2])[3] == (
            "Adapter rollout in CHG-1234 \\| phase 2<br>see &lt;b&gt;ticket&lt;/b&gt;"
        )

    def test_delta(self) -> None:
        text = render_markdown(full_report())
        assert "### Since the last scan" in text
        rows = table_after(text, "### Since the last scan")
        assert [cells(r)[0] for r in rows[2:]] == [
            "New failure",
            "New error",
            "Fixed",
            "Still failing",
        ]
        assert cells(rows[3])[3] == "none → ERROR"
        assert "Hosts removed: adfs\\-old01" not in text
        assert "Hosts removed: adfs-old01.corp.example" in text
        assert "Since the last scan" not in render_markdown(full_report(delta=None))

    def test_read_this_first(self) -> None:
        text = render_markdown(full_report())
        assert "> - **Host not scanned** portal01: connection refused (10.0.0.13:5986)" in text
        assert "> - **Trust note** adfs01: TLS certificate validation disabled" in text
        assert "> - **Warning** group\\_vars/all.yml" in text

    def test_cells_escape_pipes_newlines_html_and_links(self) -> None:
        nasty = "a|b\nc\r\nd <img src=x> [click](https://evil.example) ![t](https://t.example/p)"
        result = Result("adfs-extranet-lockout", "adfs01", Status.FAIL, nasty)
        text = render_markdown(make_report((result,), hosts=(HOSTS[0],), warnings=()))
        rows = table_after(text, "### Failures (1)")
        assert all(len(cells(r)) == 4 for r in rows)
        reason = cells(rows[2])[3]
        assert reason == (
            "a\\|b<br>c<br>d &lt;img src=x&gt; \\[click\\](https://evil.example) "
            "!\\[t\\](https://t.example/p)"
        )
        assert "<img" not in text
        assert "](" not in text.replace("\\](", "")

    def test_md_makes_control_characters_visible(self) -> None:
        assert md(HOSTILE) == (
            "naïve “quoted” 'single' &lt;tag attr=\"x\"&gt; &amp; ampersand \\\\x07bell "
            "\\\\x1b\\[31mred\\\\x1b\\[0m ✓"
        )
        assert md("`code` *em* _u_ ~s~") == "\\`code\\` \\*em\\* \\_u\\_ \\~s\\~"

    def test_long_tables_are_capped(self) -> None:
        many = tuple(
            Result("adfs-extranet-lockout", f"h{i}", Status.FAIL, "x") for i in range(MAX_ROWS + 7)
        )
        text = render_markdown(make_report(many, hosts=(), warnings=()))
        assert len(table_after(text, f"### Failures ({MAX_ROWS + 7})")) == MAX_ROWS + 2
        assert "… and 7 more (see the HTML or JSON report)." in text

    def test_clean_report(self) -> None:
        ok = make_report((RESULTS[1],), hosts=(replace(HOSTS[0], trust_notes=()),), warnings=())
        text = render_markdown(ok)
        assert text.startswith("## ✅ mfa-agent: OK")
        assert "### Failures" not in text
        assert "Read this first" not in text
        assert "**Compliance score: 100.0%**" in text


# -- Prometheus -----------------------------------------------------------------------------------


def families(text: str) -> dict[str, list[Sample]]:
    """Parsed exposition: metric family name -> samples."""
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def value(samples: list[Sample], **labels: str) -> float:
    """The value of the one sample with exactly these labels."""
    found = [s.value for s in samples if s.labels == labels]
    assert len(found) == 1, (labels, samples)
    return found[0]


@pytest.fixture(scope="module")
def metrics() -> dict[str, list[Sample]]:
    """The full report's metrics, parsed by prometheus-client's own parser."""
    return families(render_prometheus(full_report()))


class TestPrometheus:
    def test_check_status_is_one_hot(self, metrics: dict[str, list[Sample]]) -> None:
        samples = metrics["mfa_agent_check_status"]
        report = full_report()
        keys = {(r.check_id, r.target) for r in report.results}
        assert len(samples) == len(keys) * len(STATUS_ORDER)
        for check_id, target in keys:
            mine = [
                s for s in samples if (s.labels["check"], s.labels["target"]) == (check_id, target)
            ]
            assert sorted(s.labels["status"] for s in mine) == sorted(s.value for s in STATUS_ORDER)
            assert sum(s.value for s in mine) == 1
            assert {s.labels["severity"] for s in mine} == {report.check(check_id).severity.value}
        assert (
            value(
                samples,
                check="adfs-adapter-installed",
                target="adfs02",
                severity="critical",
                status="WAIVED",
            )
            == 1
        )
        assert (
            value(
                samples, check="mfa-server-retired", target="mfa01", severity="high", status="FAIL"
            )
            == 1
        )
        assert (
            value(
                samples, check="mfa-server-retired", target="mfa01", severity="high", status="PASS"
            )
            == 0
        )

    def test_counts_and_scan_metrics(self, metrics: dict[str, list[Sample]]) -> None:
        for status, n in full_report().counts().items():
            assert value(metrics["mfa_agent_results"], status=status.value) == n
        assert value(metrics["mfa_agent_exit_code"]) == 1
        assert value(metrics["mfa_agent_scan_duration_seconds"]) == 3.5
        assert value(metrics["mfa_agent_last_scan_timestamp_seconds"]) == FINISHED.timestamp()
        assert (
            value(metrics["mfa_agent_last_successful_scan_timestamp_seconds"])
            == FINISHED.timestamp()
        )
        assert value(metrics["mfa_agent_compliance_ratio"]) == 0.25
        assert value(metrics["mfa_agent_compliance_accepted_ratio"]) == 0.5
        assert value(metrics["mfa_agent_hosts"], state="not_scanned") == 1
        assert value(metrics["mfa_agent_hosts"], state="scanned") == 3
        assert value(metrics["mfa_agent_host_scanned"], host="portal01") == 0
        assert value(metrics["mfa_agent_host_scanned"], host="adfs02") == 1
        assert value(metrics["mfa_agent_scan_id"]) == 42
        info = metrics["mfa_agent_scan_info"]
        assert [s.name for s in info] == ["mfa_agent_scan_info"]
        assert info[0].labels["inventory_digest"] == "sha256:" + "ab" * 32

    def test_waivers(self, metrics: dict[str, list[Sample]]) -> None:
        assert value(metrics["mfa_agent_waivers_expiring_soon"]) == 1
        assert value(metrics["mfa_agent_waivers"], state="active") == 2
        assert value(metrics["mfa_agent_waivers"], state="expired") == 1
        assert value(metrics["mfa_agent_waivers"], state="unused") == 1
        days = metrics["mfa_agent_waiver_days_left"]
        assert value(days, check="adfs-adapter-installed", hosts="adfs02") == 3
        assert value(days, check="mfa-server-retired", hosts="mfa01") == -10

    def test_delta(self, metrics: dict[str, list[Sample]]) -> None:
        changes = metrics["mfa_agent_changes_since_last_scan"]
        assert {s.labels["change"]: s.value for s in changes} == {
            "new_failures": 1,
            "fixed": 1,
            "still_failing": 1,
            "new_errors": 1,
            "newly_waived": 0,
            "hosts_added": 1,
            "hosts_removed": 1,
        }
        plain = families(render_prometheus(make_report()))
        assert "mfa_agent_changes_since_last_scan" not in plain
        assert "mfa_agent_scan_id" not in plain
        assert value(plain["mfa_agent_waivers_expiring_soon"]) == 0

    def test_textfile_collector_rules(self) -> None:
        text = render_prometheus(full_report())
        assert text.endswith("\n")
        parsed = list(text_string_to_metric_families(text))
        assert all(f.name.startswith("mfa_agent_") for f in parsed)
        assert all(f.type == "gauge" for f in parsed)
        samples = [s for f in parsed for s in f.samples]
        assert all(s.timestamp is None for s in samples)  # the collector refuses timestamps
        series = [(s.name, tuple(sorted(s.labels.items()))) for s in samples]
        assert len(series) == len(set(series))  # duplicates make node_exporter drop the file

    def test_several_results_for_one_target_give_the_worst(self) -> None:
        results = (
            Result("adfs-extranet-lockout", "adfs01", Status.PASS, "ok"),
            Result("adfs-extranet-lockout", "adfs01", Status.ERROR, "could not read"),
        )
        samples = families(render_prometheus(make_report(results)))["mfa_agent_check_status"]
        assert [s.labels["status"] for s in samples if s.value == 1] == ["ERROR"]
        assert len(samples) == len(STATUS_ORDER)

    def test_hostile_label_values_round_trip(self) -> None:
        target = 'we"ird\\host\nname\x07\ud800'
        result = Result("adfs-extranet-lockout", target, Status.FAIL, "x")
        samples = families(render_prometheus(make_report((result,))))["mfa_agent_check_status"]
        assert {s.labels["target"] for s in samples} == {'we"ird\\host\nname\\x07\\ud800'}

    def test_empty_report_has_no_score(self) -> None:
        plain = families(render_prometheus(make_report((), hosts=(), warnings=())))
        assert "mfa_agent_compliance_ratio" not in plain
        assert value(plain["mfa_agent_exit_code"]) == 0
        assert plain["mfa_agent_check_status"] == []

    def test_uses_a_fresh_registry(self) -> None:
        before = set(prometheus_client.REGISTRY._names_to_collectors)
        assert render_prometheus(full_report()) == render_prometheus(full_report())
        assert set(prometheus_client.REGISTRY._names_to_collectors) == before


# -- Writer ---------------------------------------------------------------------------------------


class TestWriter:
    def test_every_format_written(self, tmp_path: Path) -> None:
        report = full_report()
        paths = write_reports(report, list(FORMATS), tmp_path)
        assert [p.name for p in paths] == [
            "mfa-agent-report.json",
            "mfa-agent-report.xml",
            "mfa-agent-report.html",
            "mfa-agent-report.md",
            "mfa-agent.prom",
        ]
        assert [FILENAMES[f] for f in ("html", "markdown", "prometheus")] == [
            "mfa-agent-report.html",
            "mfa-agent-report.md",
            "mfa-agent.prom",
        ]
        assert (tmp_path / "mfa-agent-report.html").read_text(encoding="utf-8") == render_html(
            report
        )
        assert (tmp_path / "mfa-agent.prom").read_text(encoding="utf-8") == render_prometheus(
            report
        )
        assert (tmp_path / "mfa-agent-report.md").read_text(encoding="utf-8") == render_markdown(
            report
        )


@pytest.mark.parametrize("status", STATUS_ORDER)
def test_every_format_renders_every_status(status: Status) -> None:
    """A report made of one status renders in every format (no missing style, no KeyError)."""
    waiver = W_SOON if status is Status.WAIVED else None
    result = Result("adfs-extranet-lockout", "adfs01", status, "why", waiver=waiver)
    report = make_report((result,), hosts=(HOSTS[0],))
    for render in (render_html, render_json, render_junit, render_markdown, render_prometheus):
        assert status.value in render(report)
    assert status.value in terminal_text(report)
