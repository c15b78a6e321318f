"""Tests of the report model and the reporters (terminal, JSON, JUnit) and of the report writer.

Waivers, the delta from the last scan, and the HTML, Markdown and Prometheus formats are tested in
`test_report_formats.py`; the HTML page in a real browser in `test_report_browser.py`.

Reports are built by hand: a few hosts (one unreachable, one with trust notes), every status,
results on `(directory)` and `(deployment)`, and hostile evidence (unicode, quotes, ``<&>``,
a bell character and an ANSI escape sequence).
"""

from __future__ import annotations

import io
import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import xmlschema
from pytest_mock import MockerFixture
from rich.console import Console

from agent.errors import ExitCode
from agent.model import CheckMeta, Guidance, Result, Scope, Severity, Status
from agent.report import (
    FILENAMES,
    FORMATS,
    RENDERERS,
    HostSummary,
    ScanReport,
    render_json,
    render_junit,
    render_terminal,
    report_schema,
    write_atomic,
    write_reports,
)
from agent.report._text import printable, xml_safe
from agent.roles import ADFS, DEPLOYMENT_TARGET, DIRECTORY_TARGET, MFA_SERVER, USER_PORTAL

ROOT = Path(__file__).resolve().parent.parent
REPORT_SCHEMA = ROOT / "agent" / "schemas" / "report.schema.json"
JUNIT_XSD = ROOT / "tests" / "data" / "junit" / "junit.xsd"

ANSI = re.compile(r"\x1b\[")
STARTED = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
FINISHED = STARTED + timedelta(seconds=3, milliseconds=500)

HOSTILE = "naïve “quoted” 'single' <tag attr=\"x\"> & ampersand \x07bell \x1b[31mred\x1b[0m ✓"


def meta(
    check_id: str,
    severity: Severity = Severity.HIGH,
    *,
    scope: Scope = Scope.HOST,
    roles: tuple[str, ...] = (ADFS,),
) -> CheckMeta:
    """A check with recognisable text in every field."""
    return CheckMeta(
        id=check_id,
        title=f"Title of {check_id}",
        severity=severity,
        roles=roles,
        scope=scope,
        guidance=Guidance(
            quote=f"Quote for {check_id}: you must do the right thing.",
            source=f"Source of {check_id}",
            notes=f"Notes on {check_id}" if severity is Severity.CRITICAL else "",
        ),
        remediation=f"Remediation for {check_id}: run Fix-It.",
        references=(f"https://learn.example/{check_id}",),
    )


CHECKS = (
    meta("adfs-adapter-installed", Severity.CRITICAL),
    meta("adfs-extranet-lockout", Severity.MEDIUM),
    meta("mfa-server-retired", Severity.HIGH, roles=(MFA_SERVER,)),
    meta("portal-https-only", Severity.LOW, roles=(USER_PORTAL,)),
    meta("phonefactor-admins", Severity.HIGH, scope=Scope.FLEET, roles=(ADFS, MFA_SERVER)),
    meta("deployment-documented", Severity.INFO, scope=Scope.FLEET, roles=("*",)),
)

HOSTS = (
    HostSummary(
        "adfs01",
        "adfs01.corp.example",
        (ADFS,),
        "winrm/ntlm over https:5986",
        trust_notes=("TLS certificate validation disabled",),
    ),
    HostSummary("mfa01", "10.0.0.12", (MFA_SERVER,), "winrm/kerberos over https:5986"),
    HostSummary(
        "portal01",
        "portal01.corp.example",
        (USER_PORTAL,),
        "winrm/ntlm over https:5986",
        error="connection refused (10.0.0.13:5986)",
    ),
)

RESULTS = (
    Result(
        "adfs-adapter-installed",
        "adfs01",
        Status.FAIL,
        "The MFA adapter is not registered in AD FS",
        {"providers": ["FormsAuthentication", "CertificateAuthentication"], "note": HOSTILE},
    ),
    Result("adfs-extranet-lockout", "adfs01", Status.PASS, "Extranet lockout is enabled"),
    Result(
        "mfa-server-retired",
        "mfa01",
        Status.FAIL,
        "MFA Server 8.0.1.1 is still installed",
        {"version": "8.0.1.1", "installed": True},
    ),
    Result(
        "portal-https-only",
        "portal01",
        Status.ERROR,
        "host not scanned: connection refused",
        {"host_error": "unreachable"},
    ),
    Result(
        "phonefactor-admins",
        DIRECTORY_TARGET,
        Status.ERROR,
        "fact 'phonefactor_admins' could not be read: access denied",
        {"fact": "phonefactor_admins"},
    ),
    Result("phonefactor-admins", "adfs01", Status.SKIP, "not a domain member"),
    Result(
        "deployment-documented",
        DEPLOYMENT_TARGET,
        Status.MANUAL,
        "attest that the deployment's MFA configuration is documented and reviewed yearly",
    ),
)


def make_report(
    results: tuple[Result, ...] = RESULTS,
    *,
    hosts: tuple[HostSummary, ...] = HOSTS,
    warnings: tuple[str, ...] = ("group_vars/all.yml: unknown key 'winrm_tranport' ignored",),
    **changes: Any,
) -> ScanReport:
    """The sample report, or a variant of it."""
    report = ScanReport(
        agent_version="0.1.0",
        mode="live",
        started_at=STARTED,
        finished_at=FINISHED,
        inventory="inventories/prod.yml",
        inventory_digest="sha256:" + "ab" * 32,
        facts_source=None,
        hosts=hosts,
        checks=CHECKS,
        results=results,
        warnings=warnings,
    )
    return replace(report, **changes) if changes else report


def result(
    status: Status, target: str = "adfs01", check_id: str = "adfs-extranet-lockout"
) -> Result:
    """A result with a given status."""
    return Result(check_id, target, status, f"reason {status.value}")


def xml_root(text: str) -> ET.Element:
    """Parse JUnit XML that we produced ourselves (trusted input)."""
    return ET.fromstring(text.encode("utf-8"))  # noqa: S314


def terminal_output(report: ScanReport, *, tty: bool, width: int = 100) -> str:
    """What `render_terminal` prints on a console that is (or is not) a terminal."""
    buffer = io.StringIO()
    if tty:
        console = Console(file=buffer, force_terminal=True, color_system="standard", width=width)
    else:
        console = Console(file=buffer, force_terminal=False, width=width)
    render_terminal(report, console)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _no_colour_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Colour decisions must come from the console, not from the test runner's environment."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


# -- Model ----------------------------------------------------------------------------------------


class TestModel:
    @pytest.mark.parametrize(
        ("statuses", "expected"),
        [
            ((), ExitCode.OK),
            ((Status.PASS,), ExitCode.OK),
            ((Status.SKIP, Status.MANUAL), ExitCode.OK),
            ((Status.PASS, Status.FAIL), ExitCode.FAIL),
            ((Status.PASS, Status.ERROR), ExitCode.ERROR),
            ((Status.ERROR, Status.FAIL), ExitCode.FAIL),
            ((Status.MANUAL, Status.ERROR, Status.SKIP), ExitCode.ERROR),
            ((Status.WAIVED,), ExitCode.OK),
            ((Status.WAIVED, Status.PASS, Status.MANUAL), ExitCode.OK),
            ((Status.WAIVED, Status.ERROR), ExitCode.ERROR),
            ((Status.WAIVED, Status.FAIL), ExitCode.FAIL),
        ],
    )
    def test_exit_code(self, statuses: tuple[Status, ...], expected: ExitCode) -> None:
        hosts = (HOSTS[0],)
        results = tuple(result(s, check_id=c.id) for s, c in zip(statuses, CHECKS, strict=False))
        assert make_report(results, hosts=hosts).exit_code() is expected

    def test_unreachable_host_without_results_is_an_error(self) -> None:
        report = make_report((result(Status.PASS),))
        assert report.failed_hosts() == (HOSTS[2],)
        assert report.exit_code() is ExitCode.ERROR
        assert "1 host could not be scanned" in report.verdict()

    def test_counts_every_status_worst_first(self) -> None:
        counts = make_report().counts()
        assert list(counts) == [
            Status.FAIL,
            Status.ERROR,
            Status.WAIVED,
            Status.MANUAL,
            Status.SKIP,
            Status.PASS,
        ]
        assert counts == {
            Status.FAIL: 2,
            Status.ERROR: 2,
            Status.WAIVED: 0,
            Status.MANUAL: 1,
            Status.SKIP: 1,
            Status.PASS: 1,
        }
        assert set(make_report(()).counts().values()) == {0}

    def test_targets_in_inventory_order_then_directory_and_deployment(self) -> None:
        shuffled = (*reversed(RESULTS), result(Status.PASS, target="(fleet)"))
        report = make_report(shuffled)
        assert report.targets() == (
            "adfs01",
            "mfa01",
            "portal01",
            DIRECTORY_TARGET,
            DEPLOYMENT_TARGET,
            "(fleet)",
        )
        no_results_on_mfa01 = tuple(r for r in RESULTS if r.target != "mfa01")
        assert "mfa01" not in make_report(no_results_on_mfa01).targets()

    def test_check_lookup(self) -> None:
        report = make_report()
        assert report.check("mfa-server-retired") is CHECKS[2]
        with pytest.raises(KeyError):
            report.check("no-such-check")

    def test_verdict(self) -> None:
        assert make_report().verdict() == (
            "FAIL: at least one check failed (exit code 1); 2 FAIL, 2 ERROR, 1 MANUAL, 1 SKIP, "
            "1 PASS on 5 targets; 1 host could not be scanned"
        )
        ok = make_report((result(Status.PASS),), hosts=(HOSTS[0],)).verdict()
        assert ok == "OK: no check failed and none errored (exit code 0); 1 PASS on 1 target"

    @pytest.mark.parametrize(
        "changes",
        [
            {"mode": "dry-run"},
            {"started_at": datetime(2024, 5, 1, 12, 0)},
            {"checks": (*CHECKS, CHECKS[0])},
            {"results": (*RESULTS, result(Status.PASS, check_id="unknown-check"))},
        ],
    )
    def test_inconsistent_reports_are_refused(self, changes: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=r"mode|timezone|twice|not in the report"):
            make_report(**changes)

    def test_sequences_are_frozen_into_tuples(self) -> None:
        report = make_report(list(RESULTS), hosts=list(HOSTS))  # type: ignore[arg-type]
        assert isinstance(report.results, tuple)
        assert isinstance(report.hosts, tuple)


# -- Text safety ----------------------------------------------------------------------------------


class TestTextSafety:
    def test_printable_makes_control_and_bidi_characters_visible(self) -> None:
        assert printable("a\x07b\x1b[0m\u202ec\td\ne\x9b") == "a\\x07b\\x1b[0m\\u202ec\td\ne\\x9b"
        assert printable("naïve “ok” ✓") == "naïve “ok” ✓"

    def test_xml_safe_replaces_only_xml_illegal_characters(self) -> None:
        assert xml_safe("a\x07b\x00c\ud800d\ufffe") == "a\\x07b\\x00c\\ud800d\\ufffe"
        assert xml_safe("tab\tnl\ncr\r é <&>") == "tab\tnl\ncr\r é <&>"


# -- Terminal -------------------------------------------------------------------------------------


class TestTerminal:
    def test_piped_output_has_no_escape_codes(self) -> None:
        out = terminal_output(make_report(), tty=False)
        assert not ANSI.search(out)
        assert "\x1b" not in out
        assert "\x07" not in out
        assert "\\x07bell" in out
        assert "\\x1b[31mred" in out

    def test_auto_detected_non_terminal_is_plain(self) -> None:
        buffer = io.StringIO()
        render_terminal(make_report(), Console(file=buffer, width=100))
        assert not ANSI.search(buffer.getvalue())
        assert "TRUST NOTE adfs01" in buffer.getvalue()

    def test_terminal_output_is_coloured(self) -> None:
        out = terminal_output(make_report(), tty=True)
        assert ANSI.search(out)
        assert "\x1b[1;31mFAIL" in out  # bold red
        assert "\x07" not in out

    def test_every_failure_and_error_is_detailed(self) -> None:
        out = terminal_output(make_report(), tty=False)
        for r in RESULTS:
            if r.status is Status.FAIL or r.target == DIRECTORY_TARGET:
                check = make_report().check(r.check_id)
                assert r.reason in out
                assert check.title in out
                assert check.guidance.quote in out
                assert check.guidance.source in out
                assert check.remediation in out
                assert check.references[0] in out
        assert "version: 8.0.1.1" in out
        assert "installed: true" in out
        assert 'providers: ["FormsAuthentication", "CertificateAuthentication"]' in out
        assert "fact: phonefactor_admins" in out
        assert "Notes on adfs-adapter-installed" in out

    def test_failures_worst_severity_first(self) -> None:
        out = terminal_output(make_report(), tty=False)
        critical = out.index("FAIL critical adfs-adapter-installed")
        high = out.index("FAIL high mfa-server-retired")
        assert critical < high

    def test_unreachable_host_errors_are_summarised(self) -> None:
        out = terminal_output(make_report(), tty=False)
        assert "portal01 could not be scanned: connection refused (10.0.0.13:5986)" in out
        assert "Checks       1 not evaluated: portal-https-only" in out

    def test_header_trust_notes_warnings_manual_and_verdict(self) -> None:
        report = make_report()
        out = terminal_output(report, tty=False)
        assert "mfa-agent 0.1.0 - live scan" in out
        assert "inventories/prod.yml" in out
        assert "2024-05-01 12:00:00 UTC" in out
        assert "TRUST NOTE adfs01: TLS certificate validation disabled" in out
        assert "WARNING group_vars/all.yml: unknown key 'winrm_tranport' ignored" in out
        assert "attest that the deployment's MFA configuration is documented" in out
        assert out.rstrip().splitlines()[-1] == (
            "Verdict: FAIL: at least one check failed (exit code 1); 2 FAIL, 2 ERROR, "
            "1 host not scanned"
        )

    def test_matrix_shows_each_status_in_role_blocks(self) -> None:
        lines = terminal_output(make_report(), tty=False).splitlines()

        def block(title: str) -> list[list[str]]:
            start = lines.index(title) + 3  # title, heading, rule
            end = lines.index("", start)
            return [line.split() for line in lines[start:end]]

        adfs = block("AD FS servers")
        assert [(r[0], r[1], r[-1]) for r in adfs] == [
            ("adfs-adapter-installed", "critical", "FAIL"),
            ("adfs-extranet-lockout", "medium", "PASS"),
            ("phonefactor-admins", "high", "SKIP"),
        ]
        assert [(r[0], r[-1]) for r in block("MFA Servers")] == [("mfa-server-retired", "FAIL")]
        assert [(r[0], r[-1]) for r in block("User Portal servers")] == [
            ("portal-https-only", "ERROR")
        ]
        fleet = block("Directory and deployment")
        assert [(r[0], r[-2], r[-1]) for r in fleet] == [
            ("phonefactor-admins", "ERROR", "-"),
            ("deployment-documented", "-", "MANUAL"),
        ]
        heading = lines[lines.index("AD FS servers") + 1].split()
        assert heading[-1] == "adfs01"  # adfs01.corp.example, shortened
        counts = next(line for line in lines if line.startswith("Results:"))
        assert "2 FAIL  2 ERROR  0 WAIVED  1 MANUAL  1 SKIP  1 PASS" in counts

    def test_host_with_two_roles_is_in_both_blocks(self) -> None:
        both = HostSummary("dual", "10.0.0.9", (ADFS, MFA_SERVER), "replay")
        results = (
            Result("adfs-extranet-lockout", "dual", Status.PASS, "ok"),
            Result("mfa-server-retired", "dual", Status.FAIL, "installed"),
        )
        lines = terminal_output(make_report(results, hosts=(both,)), tty=False).splitlines()
        for title in ("AD FS servers", "MFA Servers"):
            assert lines[lines.index(title) + 1].split()[-1] == "dual"

    def test_ambiguous_short_names_are_kept_whole(self) -> None:
        hosts = (
            HostSummary("adfs01.a.example", "10.0.0.1", (ADFS,), "replay"),
            HostSummary("adfs01.b.example", "10.0.0.2", (ADFS,), "replay"),
            HostSummary("10.0.0.3", "10.0.0.3", (ADFS,), "replay"),
        )
        results = tuple(Result("adfs-extranet-lockout", h.name, Status.PASS, "ok") for h in hosts)
        lines = terminal_output(make_report(results, hosts=hosts), tty=False).splitlines()
        heading = lines[lines.index("AD FS servers") + 1].split()
        assert heading[-3:] == ["adfs01.a.example", "adfs01.b.example", "10.0.0.3"]

    @pytest.mark.parametrize("width", [80, 100, 120])
    def test_fits_the_width(self, width: int) -> None:
        many_hosts = tuple(
            HostSummary(f"adfs{i:02d}.corp.example", f"10.0.1.{i}", (ADFS,), "replay")
            for i in range(8)
        )
        results = tuple(
            Result(c.id, h.name, Status.PASS, "ok") for c in CHECKS[:2] for h in many_hosts
        )
        out = terminal_output(make_report(results, hosts=many_hosts), tty=False, width=width)
        assert max(len(line) for line in out.splitlines()) <= width
        for host in many_hosts:
            assert host.name in out

    def test_lines_have_no_trailing_spaces(self) -> None:
        out = terminal_output(make_report(), tty=False)
        assert all(line == line.rstrip() for line in out.splitlines())

    @pytest.mark.parametrize("width", [30, 60])
    def test_narrow_consoles_still_render_everything(self, width: int) -> None:
        out = terminal_output(make_report(), tty=False, width=width)
        assert max(len(line) for line in out.splitlines()) <= width
        assert "Remediation" in out
        assert "Verdict: FAIL" in out

    def test_empty_report(self) -> None:
        out = terminal_output(make_report((), hosts=(), warnings=()), tty=False)
        assert "No results." in out
        assert "Read this first" not in out
        assert out.rstrip().endswith("exit code 0)")

    def test_markup_in_report_text_is_not_interpreted(self) -> None:
        tricky = Result("adfs-extranet-lockout", "adfs01", Status.FAIL, "[bold]not bold[/bold] :x:")
        out = terminal_output(make_report((tricky,)), tty=False)
        assert "[bold]not bold[/bold] :x:" in out


# -- JSON -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    """A validator for the report JSON Schema, checking formats too."""
    schema = json.loads(REPORT_SCHEMA.read_text(encoding="utf-8"))
    assert report_schema() == schema  # the packaged copy is the one we test
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture(scope="module")
def junit_schema() -> xmlschema.XMLSchema:
    """Our JUnit XSD."""
    return xmlschema.XMLSchema(str(JUNIT_XSD))


class TestJson:
    def test_validates_against_the_schema(self, validator: jsonschema.Draft202012Validator) -> None:
        for report in (
            make_report(),
            make_report(
                (),
                hosts=(),
                warnings=(),
                inventory=None,
                inventory_digest=None,
                mode="replay",
                facts_source="facts.json",
            ),
        ):
            validator.validate(json.loads(render_json(report)))

    def test_schema_documents_every_field(self) -> None:
        schema = json.loads(REPORT_SCHEMA.read_text(encoding="utf-8"))

        def undocumented(node: Any, path: str) -> list[str]:
            missing = []
            if isinstance(node, dict):
                for name, sub in node.get("properties", {}).items():
                    if "description" not in sub:
                        missing.append(f"{path}.{name}")
                for key, sub in node.items():
                    missing += undocumented(sub, f"{path}/{key}")
            elif isinstance(node, list):
                for i, sub in enumerate(node):
                    missing += undocumented(sub, f"{path}[{i}]")
            return missing

        assert undocumented(schema, "#") == []

    def test_round_trips_values(self) -> None:
        report = make_report()
        doc = json.loads(render_json(report))
        assert doc["schema"] == "mfa-agent/report"
        assert doc["version"] == 1
        assert doc["mode"] == "live"
        assert doc["started_at"] == "2024-05-01T12:00:00.250000Z"
        assert datetime.fromisoformat(doc["finished_at"]) == FINISHED
        assert doc["inventory"] == {"path": "inventories/prod.yml", "digest": "sha256:" + "ab" * 32}
        assert doc["facts_source"] is None
        assert doc["summary"] == {
            "counts": {"FAIL": 2, "ERROR": 2, "WAIVED": 0, "MANUAL": 1, "SKIP": 1, "PASS": 1},
            "exit_code": 1,
            "verdict": report.verdict(),
            "compliance": {
                "score": 0.2,
                "accepted": 0.2,
                "passed": 1,
                "failed": 2,
                "errored": 2,
                "waived": 0,
                "evaluated": 5,
            },
        }
        assert (doc["scan_id"], doc["waivers"], doc["delta"]) == (None, [], None)
        assert all(r["waiver"] is None for r in doc["results"])
        assert doc["warnings"] == list(report.warnings)
        assert [h["name"] for h in doc["hosts"]] == ["adfs01", "mfa01", "portal01"]
        assert doc["hosts"][0]["trust_notes"] == ["TLS certificate validation disabled"]
        assert doc["hosts"][2]["error"] == "connection refused (10.0.0.13:5986)"
        check = doc["checks"][0]
        assert check == {
            "id": "adfs-adapter-installed",
            "title": "Title of adfs-adapter-installed",
            "severity": "critical",
            "roles": ["adfs"],
            "scope": "host",
            "guidance": {
                "quote": CHECKS[0].guidance.quote,
                "source": CHECKS[0].guidance.source,
                "notes": CHECKS[0].guidance.notes,
            },
            "remediation": CHECKS[0].remediation,
            "references": list(CHECKS[0].references),
        }
        assert len(doc["results"]) == len(RESULTS)
        for got, want in zip(doc["results"], RESULTS, strict=True):
            assert got["check_id"] == want.check_id
            assert got["target"] == want.target
            assert got["status"] == want.status.value
            assert got["severity"] == report.check(want.check_id).severity.value
            assert got["reason"] == want.reason
            assert got["evidence"] == dict(want.evidence)
        assert doc["results"][0]["evidence"]["note"] == HOSTILE  # control characters survive

    def test_timestamps_are_utc_z(self) -> None:
        paris = timezone(timedelta(hours=2))
        doc = json.loads(
            render_json(make_report(started_at=datetime(2024, 5, 1, 14, tzinfo=paris)))
        )
        assert doc["started_at"] == "2024-05-01T12:00:00Z"

    def test_odd_evidence_never_breaks_the_document(
        self, validator: jsonschema.Draft202012Validator
    ) -> None:
        odd = Result(
            "adfs-extranet-lockout",
            "adfs01",
            Status.FAIL,
            "odd",
            {"nan": float("nan"), "set": {"b", "a"}, "path": Path("/x"), "lone": "\ud800"},
        )
        text = render_json(make_report((odd,)))
        doc = json.loads(text)
        validator.validate(doc)
        assert doc["results"][0]["evidence"] == {
            "nan": "nan",
            "set": ["a", "b"],
            "path": "/x",
            "lone": "\ufffd",
        }
        text.encode("utf-8")


# -- JUnit ----------------------------------------------------------------------------------------


class TestJunit:
    def parse(self, report: ScanReport) -> ET.Element:
        return xml_root(render_junit(report))

    def test_validates_against_the_xsd(self, junit_schema: xmlschema.XMLSchema) -> None:
        for report in (make_report(), make_report(()), make_report(hosts=())):
            text = render_junit(report)
            assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
            junit_schema.validate(text)

    def test_suites_per_target_with_correct_counts(self) -> None:
        root = self.parse(make_report())
        suites = {s.get("name"): s for s in root.findall("testsuite")}
        assert list(suites) == ["adfs01", "mfa01", "portal01", DIRECTORY_TARGET, DEPLOYMENT_TARGET]

        def counts(name: str) -> tuple[str | None, ...]:
            suite = suites[name]
            return tuple(suite.get(a) for a in ("tests", "failures", "errors", "skipped"))

        assert counts("adfs01") == ("3", "1", "0", "1")
        assert counts("mfa01") == ("1", "1", "0", "0")
        assert counts("portal01") == ("1", "0", "1", "0")
        assert counts(DIRECTORY_TARGET) == ("1", "0", "1", "0")
        assert counts(DEPLOYMENT_TARGET) == ("1", "0", "0", "1")
        assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "2", "2")
        assert root.get("time") == "3.500"
        assert suites["adfs01"].get("timestamp") == "2024-05-01T12:00:00"

    def test_one_element_per_status(self) -> None:
        root = self.parse(make_report())
        cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
        fail = cases[
            ("mfa-agent.adfs01", "adfs-adapter-installed: Title of adfs-adapter-installed")
        ]
        failure = fail.find("failure")
        assert failure is not None
        assert failure.get("message") == "The MFA adapter is not registered in AD FS"
        assert failure.get("type") == "adfs-adapter-installed"
        body = failure.text or ""
        assert "Evidence:" in body
        assert CHECKS[0].guidance.quote in body
        assert CHECKS[0].remediation in body
        assert CHECKS[0].references[0] in body

        passed = cases[
            ("mfa-agent.adfs01", "adfs-extranet-lockout: Title of adfs-extranet-lockout")
        ]
        assert list(passed) == []

        skipped = cases[("mfa-agent.adfs01", "phonefactor-admins: Title of phonefactor-admins")]
        assert [e.tag for e in skipped] == ["skipped"]
        assert skipped[0].get("message") == "not a domain member"

        directory = cases[
            ("mfa-agent.(directory)", "phonefactor-admins: Title of phonefactor-admins")
        ]
        assert [e.tag for e in directory] == ["error"]
        assert directory[0].get("type") == "phonefactor-admins"

        manual = cases[
            ("mfa-agent.(deployment)", "deployment-documented: Title of deployment-documented")
        ]
        assert [e.tag for e in manual] == ["skipped"]
        assert (manual[0].get("message") or "").startswith("MANUAL: attest that")

    def test_evidence_escaped_and_illegal_characters_replaced(self) -> None:
        text = render_junit(make_report())
        assert "\x07" not in text
        assert "\x1b" not in text
        root = xml_root(text)
        failure = root.find("testsuite/testcase/failure")
        assert failure is not None
        body = failure.text or ""
        assert "naïve “quoted” 'single' <tag attr=\"x\"> & ampersand \\x07bell" in body
        assert "\\x1b[31mred\\x1b[0m ✓" in body

    def test_illegal_characters_in_attributes(self, junit_schema: xmlschema.XMLSchema) -> None:
        bad = Result("adfs-extranet-lockout", "adfs01", Status.FAIL, 'bell\x07 <&> "q"\x00')
        text = render_junit(make_report((bad,)))
        junit_schema.validate(text)
        case = xml_root(text).find("testsuite/testcase/failure")
        assert case is not None
        assert case.get("message") == 'bell\\x07 <&> "q"\\x00'

    def test_trust_notes_and_warnings_are_carried(self) -> None:
        root = self.parse(make_report())
        adfs = root.find("testsuite[@name='adfs01']")
        assert adfs is not None
        props = [(p.get("name"), p.get("value")) for p in adfs.iterfind("properties/property")]
        assert ("trust_note", "TLS certificate validation disabled") in props
        assert ("warning", "group_vars/all.yml: unknown key 'winrm_tranport' ignored") in props
        assert ("address", "adfs01.corp.example") in props
        out = adfs.findtext("system-out") or ""
        assert "TRUST NOTE: TLS certificate validation disabled" in out
        assert "WARNING: group_vars/all.yml" in out

    def test_unreachable_host_without_results_gets_an_error(
        self, junit_schema: xmlschema.XMLSchema
    ) -> None:
        report = make_report(tuple(r for r in RESULTS if r.target != "portal01"))
        text = render_junit(report)
        junit_schema.validate(text)
        suite = xml_root(text).find("testsuite[@name='portal01']")
        assert suite is not None
        assert (suite.get("tests"), suite.get("errors")) == ("1", "1")
        error = suite.find("testcase/error")
        assert error is not None
        assert error.get("message") == "connection refused (10.0.0.13:5986)"


# -- Writer ---------------------------------------------------------------------------------------


class TestWriter:
    def test_formats_are_registered_consistently(self) -> None:
        assert FORMATS == ("json", "junit", "html", "markdown", "prometheus")
        assert set(RENDERERS) == set(FILENAMES) == set(FORMATS)

    def test_write_atomic_writes_and_creates_the_directory(self, tmp_path: Path) -> None:
        target = tmp_path / "new" / "dir" / "report.json"
        write_atomic(target, "first\n")
        assert target.read_text(encoding="utf-8") == "first\n"
        write_atomic(target, "é second\r\n")
        assert target.read_bytes() == "é second\r\n".encode()
        assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]

    @pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
    def test_write_atomic_permissions(self, tmp_path: Path) -> None:
        new = tmp_path / "new.json"
        write_atomic(new, "x")
        assert new.stat().st_mode & 0o777 == 0o600
        existing = tmp_path / "existing.json"
        existing.write_text("old")
        existing.chmod(0o644)
        write_atomic(existing, "new")
        assert existing.stat().st_mode & 0o777 == 0o644

    @pytest.mark.parametrize("failing", ["os.replace", "os.fsync"])
    def test_write_atomic_failure_keeps_the_old_file(
        self, tmp_path: Path, mocker: MockerFixture, failing: str
    ) -> None:
        target = tmp_path / "report.xml"
        target.write_text("old content", encoding="utf-8")
        mocker.patch(f"agent.report.writer.{failing}", side_effect=OSError("disk full"))
        with pytest.raises(OSError, match="disk full"):
            write_atomic(target, "new content")
        assert target.read_text(encoding="utf-8") == "old content"
        assert [p.name for p in tmp_path.iterdir()] == ["report.xml"]

    def test_write_atomic_failure_while_writing(self, tmp_path: Path) -> None:
        target = tmp_path / "report.json"
        target.write_text("old content", encoding="utf-8")
        with pytest.raises(UnicodeEncodeError):
            write_atomic(target, "partial \ud800 text")
        assert target.read_text(encoding="utf-8") == "old content"
        assert [p.name for p in tmp_path.iterdir()] == ["report.json"]

    def test_write_reports(self, tmp_path: Path) -> None:
        report = make_report()
        paths = write_reports(report, ["json", "junit", "json"], tmp_path / "out")
        assert paths == [
            tmp_path / "out" / "mfa-agent-report.json",
            tmp_path / "out" / "mfa-agent-report.xml",
        ]
        assert paths[0].read_text(encoding="utf-8") == render_json(report)
        assert paths[1].read_text(encoding="utf-8") == render_junit(report)
        assert write_reports(report, [], tmp_path / "none") == []

    def test_write_reports_unknown_format_writes_nothing(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="unknown report format"):
            write_reports(make_report(), ["json", "pdf"], tmp_path)
        assert list(tmp_path.iterdir()) == []

    def test_render_failure_midway_leaves_old_files(
        self, tmp_path: Path, mocker: MockerFixture
    ) -> None:
        for name in FILENAMES.values():
            (tmp_path / name).write_text("old", encoding="utf-8")
        mocker.patch.dict(
            "agent.report.writer.RENDERERS", {"junit": mocker.Mock(side_effect=RuntimeError("bug"))}
        )
        with pytest.raises(RuntimeError, match="bug"):
            write_reports(make_report(), ["json", "junit"], tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILENAMES.values())
        assert all(p.read_text(encoding="utf-8") == "old" for p in tmp_path.iterdir())
