"""The Markdown summary: for CI job summaries (GitHub Actions' ``$GITHUB_STEP_SUMMARY``, GitLab,
Azure DevOps) and for pasting into tickets.

It is a summary, not the full report (the HTML and JSON reports have the evidence): a verdict
line, the compliance score, counts per status, read-this-first items (hosts not scanned, trust
notes, warnings), the failures table (severity, check, target, reason), the errors, the waived
results, waivers expiring soon or expired, and what changed since the last scan. Tables are
capped at `MAX_ROWS` rows each (GitHub limits a step summary to 1 MiB), with a line saying how
many more there are.

Report text is untrusted: `md` makes control characters visible, turns ``&``, ``<`` and ``>``
into entities (no raw HTML can get through), backslash-escapes the characters that make links,
images, emphasis, code spans and table cells (so evidence cannot become a link or an image that
a viewer fetches), and turns newlines into ``<br>`` so that a value stays in its table cell.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from agent.model import Result, Status
from agent.report._text import (
    delta_summary,
    plural,
    printable,
    utc_human,
    waiver_expiry,
    worst_first,
)
from agent.report.model import EXPIRY_WARNING_DAYS, Compliance, ScanReport

#: Most rows of any one table; the rest are counted, not listed.
MAX_ROWS: Final = 200

#: Characters with a meaning in (GitHub-flavoured) Markdown inline text or in table cells. Links
#: and images need ``[``, so ``(``/``)``/``!`` stay as they are; block syntax (``#``, ``-``, ``1.``)
#: only matters at the start of a line, where report text never is.
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_VERDICT_ICONS: Final[dict[int, str]] = {0: "✅", 1: "❌", 2: "⚠️"}


def md(text: object) -> str:
    """Report text as inert Markdown, safe inside a table cell (``|`` and newlines escaped)."""
    value = printable(str(text).replace("\r\n", "\n"))
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = _SPECIAL.sub(r"\\\1", value)
    return value.replace("\t", " ").replace("\n", "<br>")


def _code(text: object) -> str:
    """An identifier (check id) shown as code: backticks in it are replaced, pipes escaped."""
    value = printable(str(text)).replace("`", "'").replace("\n", " ").replace("|", "\\|")
    return f"`{value}`"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A GitHub table; `align` is one character per column, ``l`` or ``r``."""
    align = align or "l" * len(headers)
    marks = ["---:" if a == "r" else "---" for a in align]
    out = [f"| {' | '.join(headers)} |", f"| {' | '.join(marks)} |"]
    out += [f"| {' | '.join(row)} |" for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        out += ["", f"… and {len(rows) - MAX_ROWS} more (see the HTML or JSON report)."]
    return out


def _results_table(report: ScanReport, results: Sequence[Result]) -> list[str]:
    rows = [
        [
            report.check(r.check_id).severity.value,
            _code(r.check_id),
            md(r.target),
            md(r.reason),
        ]
        for r in worst_first(results, report.check)
    ]
    return _table(["Severity", "Check", "Target", "Reason"], rows)


def _header(report: ScanReport) -> list[str]:
    code = report.exit_code()
    compliance = report.compliance()
    where = f" of `{md(report.inventory)}`" if report.inventory else ""
    scan = f" #{report.scan_id}" if report.scan_id is not None else ""
    out = [
        f"## {_VERDICT_ICONS.get(int(code), '')} mfa-agent: {md(report.verdict())}",
        "",
        f"**Compliance score: {Compliance.percent(compliance.score)}** "
        f"({compliance.passed} PASS of {plural(compliance.evaluated, 'evaluated result')}; "
        f"{Compliance.percent(compliance.accepted)} compliant or accepted by a waiver) · "
        f"{md(report.mode)} scan{scan}{where} · {utc_human(report.started_at)} · "
        f"mfa-agent {md(report.agent_version)}",
        "",
        f"<sub>{md(Compliance.DEFINITION)}</sub>",
        "",
    ]
    counts = report.counts()
    out += _table(
        [s.value for s in counts] + ["Total"],
        [[str(n) for n in counts.values()] + [str(len(report.results))]],
        "r" * (len(counts) + 1),
    )
    return [*out, ""]


def _attention(report: ScanReport) -> list[str]:
    lines = [f"- **Host not scanned** {md(h.name)}: {md(h.error)}" for h in report.failed_hosts()]
    hosts_by_note: dict[str, list[str]] = {}
    for host in report.hosts:
        for note in host.trust_notes:
            hosts_by_note.setdefault(note, []).append(host.name)
    lines += [
        f"- **Trust note** {md(', '.join(names))}: {md(note)}"
        for note, names in hosts_by_note.items()
    ]
    lines += [f"- **Warning** {md(w)}" for w in report.warnings]
    if not lines:
        return []
    return ["> [!WARNING]", "> **Read this first**", ">", *(f"> {line}" for line in lines), ""]


def _waivers(report: ScanReport) -> list[str]:
    flagged = [*report.waivers_expiring_soon()]
    flagged += [w for w in report.waivers if w.state == "expired"]
    if not flagged:
        return []
    rows = [
        [
            _code(w.waiver.check_id),
            md(w.waiver.hosts),
            w.waiver.expires.isoformat(),
            str(w.days_left),
            md(waiver_expiry(w) + ("; matched nothing" if w.state == "unused" else "")),
            md(w.waiver.approver),
        ]
        for w in flagged
    ]
    return [
        f"### Waivers expiring within {EXPIRY_WARNING_DAYS} days or expired ({len(flagged)})",
        "",
        *_table(["Check", "Hosts", "Expires", "Days left", "State", "Approver"], rows, "lllrll"),
        "",
    ]


def _waived(report: ScanReport) -> list[str]:
    waived = [r for r in report.results if r.status is Status.WAIVED]
    if not waived:
        return []
    rows = []
    for r in worst_first(waived, report.check):
        w = r.waiver
        rows.append(
            [
                report.check(r.check_id).severity.value,
                _code(r.check_id),
                md(r.target),
                md(w.justification) if w else "",
                md(w.approver) if w else "",
                w.expires.isoformat() if w else "",
            ]
        )
    return [
        f"### Waived — accepted risks ({len(waived)})",
        "",
        *_table(["Severity", "Check", "Target", "Justification", "Approver", "Expires"], rows),
        "",
    ]


def _delta(report: ScanReport) -> list[str]:
    delta = report.delta
    if delta is None:
        return []
    out = ["### Since the last scan", "", md(delta_summary(delta)), ""]
    rows: list[list[str]] = []
    for label, items in delta.changes():
        for item in items:
            before = item.before.value if item.before else "none"
            after = item.after.value if item.after else "none"
            rows.append([label, _code(item.check_id), md(item.target), f"{before} → {after}"])
    if rows:
        out += [*_table(["Change", "Check", "Target", "Status"], rows), ""]
    if delta.hosts_added:
        out += [f"Hosts added: {md(', '.join(delta.hosts_added))}", ""]
    if delta.hosts_removed:
        out += [f"Hosts removed: {md(', '.join(delta.hosts_removed))}", ""]
    return out


def render_markdown(report: ScanReport) -> str:
    """The report as a GitHub-flavoured Markdown summary (UTF-8 text, newline-ended)."""
    out = _header(report)
    out += _attention(report)
    out += _delta(report)
    failures = [r for r in report.results if r.status is Status.FAIL]
    if failures:
        out += [f"### Failures ({len(failures)})", "", *_results_table(report, failures), ""]
    errors = [r for r in report.results if r.status is Status.ERROR]
    if errors:
        out += [f"### Errors ({len(errors)})", "", *_results_table(report, errors), ""]
    out += _waivers(report)
    out += _waived(report)
    manual = sum(1 for r in report.results if r.status is Status.MANUAL)
    if manual:
        out += [
            f"{plural(manual, 'result')} {'needs' if manual == 1 else 'need'} a manual "
            "attestation (see the full report).",
            "",
        ]
    return "\n".join(out).rstrip("\n") + "\n"
