"""The JUnit XML report, for CI systems (Jenkins, GitLab, Azure DevOps, GitHub test reporters).

Layout::

    <testsuites name="mfa-agent" tests failures errors disabled time>
      <testsuite name="<target>" id package tests failures errors skipped time timestamp>
        <properties>            scan context, host address/roles/connection, trust notes, warnings
        <testcase classname="mfa-agent.<target>" name="<check id>: <title>" time>
          FAIL   -> <failure message="<reason>" type="<check id>">details</failure>
          ERROR  -> <error message="<reason>" type="<check id>">details</error>
          SKIP   -> <skipped message="<reason>"/>
          MANUAL -> <skipped message="MANUAL: <reason>">what to attest</skipped>
          WAIVED -> <skipped message="waived: <reason> (<justification>; approved by <approver>;
                     expires <date>)">details and the waiver</skipped>
          PASS   -> (empty)
        <system-out>            trust notes, warnings, waivers expiring soon or expired, and
                                the change since the last scan (this target's items), in words

Waivers expiring within 14 days (``waiver_expiring_soon``), expired ones (``waiver_expired``) and
the summary of the change since the previous scan (``scan_id``, ``previous_scan_id``,
``new_failures``, ``fixed``, ``still_failing``, ``new_errors``, ``newly_waived``,
``hosts_added``, ``hosts_removed``) are suite properties of every suite, like the warnings: CI
systems show properties per suite.

One suite per target, in `ScanReport.targets()` order. A host that could not be scanned and has
no result gets a suite with one ``<error>`` test case, so the XML never looks cleaner than the
exit code. Checks are pure functions of already-collected facts and are not timed, so test case
and suite times are 0; the ``<testsuites>`` time is the whole scan's duration. Timestamps are UTC
(``timestamp`` has no zone, as in Ant's format; the ``started_at`` property carries the ``Z``).

The tree is built with `xml.etree.ElementTree` (which escapes markup); every text and attribute
value first goes through `xml_safe`, which replaces characters XML 1.0 cannot carry.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC
from typing import Final

from agent.model import Result, Status, Waiver
from agent.report._text import (
    delta_summary,
    evidence_lines,
    utc_iso,
    waiver_summary,
    xml_safe,
)
from agent.report.model import Delta, DeltaItem, HostSummary, ScanReport

#: Prefix of every test case's ``classname``.
CLASSNAME_PREFIX: Final = "mfa-agent"

#: ``type`` of the synthetic error for a host that could not be scanned and has no result.
HOST_ERROR_TYPE: Final = "host-error"

_ZERO_TIME: Final = "0.000"


def _element(tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.Element(tag, {k: xml_safe(v) for k, v in attrs.items()})
    if text is not None:
        element.text = xml_safe(text)
    return element


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = _element(tag, text, **attrs)
    parent.append(element)
    return element


def _indent(lines: Iterable[str], prefix: str = "  ") -> list[str]:
    return [prefix + line.replace("\n", "\n" + prefix) for line in lines]


def _details(report: ScanReport, result: Result) -> str:
    """The body of a failure/error/skipped element: everything needed to act on the result."""
    meta = report.check(result.check_id)
    lines = [
        f"{result.status.value} [{meta.severity.value}] {meta.id}: {meta.title}",
        f"Target: {result.target}",
        f"Reason: {result.reason}",
    ]
    evidence = evidence_lines(result.evidence)
    if evidence:
        lines += ["Evidence:", *_indent(evidence)]
    lines += [f'Guidance: "{meta.guidance.quote}"', f"  -- {meta.guidance.source}"]
    if meta.guidance.notes:
        lines.append(f"Guidance notes: {meta.guidance.notes}")
    lines.append(f"Remediation: {meta.remediation}")
    if meta.references:
        lines += ["References:", *_indent(f"- {ref}" for ref in meta.references)]
    if result.waiver is not None:
        lines += ["Waiver:", *_indent(_waiver_lines(result.waiver))]
    return "\n".join(lines) + "\n"


def _waiver_lines(waiver: Waiver) -> list[str]:
    lines = [
        f"Justification: {waiver.justification}",
        f"Approved by: {waiver.approver}",
        f"Expires: {waiver.expires.isoformat()} (last day it applies, UTC)",
        f"Covers: {waiver.check_id} on {waiver.hosts}",
    ]
    if waiver.source:
        lines.append(f"Source: {waiver.source}")
    return lines


def _waived_message(result: Result) -> str:
    """``waived: <reason> (<justification>; approved by <approver>; expires <date>)``."""
    waiver = result.waiver
    if waiver is None:
        return f"waived: {result.reason}"
    return (
        f"waived: {result.reason} ({waiver.justification}; approved by {waiver.approver}; "
        f"expires {waiver.expires.isoformat()})"
    )


def _delta_kinds(delta: Delta) -> list[tuple[str, tuple[DeltaItem, ...]]]:
    return [
        ("NEW FAILURE", delta.new_failures),
        ("FIXED", delta.fixed),
        ("STILL FAILING", delta.still_failing),
        ("NEW ERROR", delta.new_errors),
        ("NEWLY WAIVED", delta.newly_waived),
    ]


def _testcase(report: ScanReport, result: Result) -> ET.Element:
    meta = report.check(result.check_id)
    case = _element(
        "testcase",
        classname=f"{CLASSNAME_PREFIX}.{result.target}",
        name=f"{meta.id}: {meta.title}",
        time=_ZERO_TIME,
    )
    if result.status is Status.FAIL:
        _sub(case, "failure", _details(report, result), message=result.reason, type=meta.id)
    elif result.status is Status.ERROR:
        _sub(case, "error", _details(report, result), message=result.reason, type=meta.id)
    elif result.status is Status.SKIP:
        _sub(case, "skipped", message=result.reason)
    elif result.status is Status.MANUAL:
        _sub(case, "skipped", _details(report, result), message=f"MANUAL: {result.reason}")
    elif result.status is Status.WAIVED:
        _sub(case, "skipped", _details(report, result), message=_waived_message(result))
    return case


def _host_error_case(host: HostSummary) -> ET.Element:
    case = _element(
        "testcase",
        classname=f"{CLASSNAME_PREFIX}.{host.name}",
        name="host scan: could not be scanned",
        time=_ZERO_TIME,
    )
    error = host.error or "host could not be scanned"
    _sub(
        case,
        "error",
        f"{host.name} ({host.address}): {error}\n",
        message=error,
        type=HOST_ERROR_TYPE,
    )
    return case


def _properties(report: ScanReport, host: HostSummary | None) -> ET.Element:
    props: list[tuple[str, str | None]] = [
        ("agent_version", report.agent_version),
        ("mode", report.mode),
        ("started_at", utc_iso(report.started_at)),
        ("finished_at", utc_iso(report.finished_at)),
        ("inventory", report.inventory),
        ("inventory_digest", report.inventory_digest),
        ("facts_source", report.facts_source),
        ("scan_id", None if report.scan_id is None else str(report.scan_id)),
    ]
    if host is not None:
        props += [
            ("address", host.address),
            ("roles", ",".join(host.roles)),
            ("connection", host.connection),
            ("host_error", host.error),
        ]
        props += [("trust_note", note) for note in host.trust_notes]
    props += [("warning", warning) for warning in report.warnings]
    props += [("waiver_expiring_soon", waiver_summary(w)) for w in report.waivers_expiring_soon()]
    props += [("waiver_expired", waiver_summary(w)) for w in report.waivers if w.state == "expired"]
    delta = report.delta
    if delta is not None:
        props += [
            ("previous_scan_id", str(delta.previous_scan_id)),
            ("previous_started_at", utc_iso(delta.previous_started_at)),
            ("new_failures", str(len(delta.new_failures))),
            ("fixed", str(len(delta.fixed))),
            ("still_failing", str(len(delta.still_failing))),
            ("new_errors", str(len(delta.new_errors))),
            ("newly_waived", str(len(delta.newly_waived))),
            ("hosts_added", ",".join(delta.hosts_added)),
            ("hosts_removed", ",".join(delta.hosts_removed)),
        ]
    element = _element("properties")
    for name, value in props:
        if value is not None:
            _sub(element, "property", name=name, value=value)
    return element


def _system_out(report: ScanReport, target: str, host: HostSummary | None) -> str:
    lines = [f"mfa-agent {report.agent_version}, {report.mode} scan: {report.verdict()}"]
    if host is not None:
        lines.append(
            f"Host {host.name} ({host.address}), roles: {', '.join(host.roles) or '-'}, "
            f"connection: {host.connection}"
        )
        if host.error:
            lines.append(f"HOST ERROR: {host.error}")
        lines += [f"TRUST NOTE: {note}" for note in host.trust_notes]
    lines += [f"WARNING: {warning}" for warning in report.warnings]
    lines += [f"WAIVER EXPIRES SOON: {waiver_summary(w)}" for w in report.waivers_expiring_soon()]
    lines += [
        f"WAIVER EXPIRED: {waiver_summary(w)}" for w in report.waivers if w.state == "expired"
    ]
    delta = report.delta
    if delta is not None:
        lines.append(delta_summary(delta))
        if delta.hosts_added:
            lines.append(f"Hosts added: {', '.join(delta.hosts_added)}")
        if delta.hosts_removed:
            lines.append(f"Hosts removed: {', '.join(delta.hosts_removed)}")
        for label, items in _delta_kinds(delta):
            for item in items:
                if item.target == target:
                    lines.append(f"{label}: {item.check_id} on {item.target}")
    return "\n".join(lines) + "\n"


def _suite(report: ScanReport, index: int, target: str, cases: list[ET.Element]) -> ET.Element:
    host = report.host(target)

    def count(tag: str) -> int:
        return sum(1 for case in cases if case.find(tag) is not None)

    suite = _element(
        "testsuite",
        name=target,
        id=str(index),
        package=CLASSNAME_PREFIX,
        tests=str(len(cases)),
        failures=str(count("failure")),
        errors=str(count("error")),
        skipped=str(count("skipped")),
        time=_ZERO_TIME,
        timestamp=report.started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
    )
    suite.append(_properties(report, host))
    suite.extend(cases)
    _sub(suite, "system-out", _system_out(report, target, host))
    return suite


def render_junit(report: ScanReport) -> str:
    """The report as a JUnit XML document (UTF-8 text with an XML declaration, newline-ended)."""
    suites: list[ET.Element] = []
    for target in report.targets():
        cases = [_testcase(report, r) for r in report.results_for(target)]
        suites.append(_suite(report, len(suites), target, cases))
    scanned = set(report.targets())
    for host in report.failed_hosts():
        if host.name not in scanned:
            suites.append(_suite(report, len(suites), host.name, [_host_error_case(host)]))

    def total(attr: str) -> str:
        return str(sum(int(s.get(attr, "0")) for s in suites))

    duration = max(0.0, (report.finished_at - report.started_at).total_seconds())
    root = _element(
        "testsuites",
        name=CLASSNAME_PREFIX,
        tests=total("tests"),
        failures=total("failures"),
        errors=total("errors"),
        disabled="0",
        time=f"{duration:.3f}",
    )
    root.extend(suites)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'
