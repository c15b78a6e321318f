"""The HTML report: one self-contained page for the compliance team and the auditor.

`render_html` returns a complete HTML5 document that needs nothing else: the CSS is inline, there
is no JavaScript, no web font, no image and no external stylesheet, so the page can be archived,
mailed, attached to a ticket or opened from a share years later and look the same. A Content
Security Policy (``<meta http-equiv>``) enforces it: ``default-src 'none'`` and only the page's own
stylesheet (by its SHA-256 hash), so even a browser that follows a stray reference fetches
nothing, and an injected ``<script>``/``<style>`` would not run. Links to references are plain
``<a href>`` (http/https only) that the browser does not follow by itself.

Sections, in order: headline (compliance score, verdict, counts per status, the score's
definition, scan metadata); "read this first" (hosts not scanned, trust notes, warnings, waivers
expiring soon or expired); what changed since the last scan; the matrix of checks (rows) by
targets (columns); every FAIL, then every ERROR, with reason, evidence, the guidance quote and
its source, remediation and references; WAIVED results with their waiver; MANUAL items; the
waivers table; the hosts table.

The compliance score is `agent.report.model.Compliance`: ``PASS / (PASS + FAIL + ERROR +
WAIVED)`` over the evaluated results; a waived FAIL is accepted but not passing, so it counts
against the score (the share "compliant or accepted" is shown next to it); SKIP and MANUAL are not
counted. The page states this definition.

Everything taken from the report goes through `html.escape` (after `printable`, which makes
control and bidi-override characters visible), attributes included; element ids are generated
from indices, never from report text. Status cells carry the status as text (colour is a second
cue, never the only one). A print stylesheet keeps colours, avoids splitting findings across
pages and prints link targets.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Sequence
from typing import Final

from agent.errors import ExitCode
from agent.model import CheckMeta, Result, Status
from agent.report._text import (
    delta_summary,
    format_value,
    plural,
    printable,
    utc_human,
    utc_iso,
    waiver_expiry,
    worst_first,
    worst_status,
)
from agent.report.model import (
    EXIT_CODE_MEANINGS,
    EXPIRY_WARNING_DAYS,
    Compliance,
    ScanReport,
    WaiverState,
)

#: The page's whole stylesheet. Colours are paired with text everywhere (status words, labels).
CSS: Final = """
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg2: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1200px; padding: 1.5rem; color: var(--fg); background: #fff;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 .75rem; padding-bottom: .25rem;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.25rem 0 .5rem; }
h4 { font-size: 1rem; margin: .75rem 0 .25rem; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono",
  monospace; font-size: .9em; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
a { color: #0550ae; }
.muted { color: var(--muted); }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left;
  vertical-align: top; }
th { background: var(--bg2); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
time, .nowrap { white-space: nowrap; }
th[scope=row] .muted { font-weight: 400; }
.headline { display: flex; flex-wrap: wrap; gap: 1rem 2rem; align-items: center; }
.score { display: flex; flex-direction: column; }
.score-value { font-size: 3rem; font-weight: 700; line-height: 1; }
.score meter { width: 14rem; height: 1rem; margin-top: .35rem; }
.verdict { font-size: 1.15rem; padding: .6rem .9rem; border-radius: 6px; border: 2px solid; }
.verdict-ok { background: #e6f4ea; border-color: #1e6b34; color: #14532d; }
.verdict-fail { background: #fbe3e4; border-color: #a4161a; color: #7f1d1d; }
.verdict-error { background: #f3e5f5; border-color: #6a1b9a; color: #4a148c; }
.definition { max-width: 60rem; color: var(--muted); font-size: .9rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.attention { border: 3px solid #9a6700; background: #fff8c5; border-radius: 6px;
  padding: .25rem 1rem .75rem; margin-top: 1.5rem; }
.attention h2 { border: 0; margin-top: .75rem; color: #6b4700; }
.attention li { margin: .25rem 0; }
.tag { display: inline-block; font-weight: 700; font-size: .8rem; padding: 0 .35rem;
  border-radius: 4px; border: 1px solid; letter-spacing: .02em; }
.st { font-weight: 700; white-space: nowrap; }
.st-fail { background: #fbe3e4; color: #a4161a; }
.st-error { background: #f3e5f5; color: #6a1b9a; }
.st-waived { background: #fff4d6; color: #7a5200; }
.st-manual { background: #e3f2fd; color: #0d47a1; }
.st-skip { background: #f1f3f4; color: #5f6368; font-weight: 400; }
.st-pass { background: #e6f4ea; color: #1e6b34; }
.st-none { color: var(--muted); text-align: center; }
td.st a { color: inherit; }
.sev-critical { color: #fff; background: #a4161a; border-color: #a4161a; }
.sev-high { color: #a4161a; border-color: #a4161a; }
.sev-medium { color: #7a5200; border-color: #9a6700; }
.sev-low { color: #0d47a1; border-color: #0d47a1; }
.sev-info { color: #5f6368; border-color: #8c959f; }
.matrix-wrap { overflow-x: auto; }
table.matrix th[scope=col] { font-weight: 600; font-size: .85rem; max-width: 10rem;
  overflow-wrap: normal; word-break: keep-all; hyphens: none; }
table.matrix td.st { text-align: center; }
.finding { border: 1px solid var(--line); border-left: 6px solid var(--line); border-radius: 6px;
  padding: .25rem 1rem .75rem; margin: 1rem 0; break-inside: avoid; }
.finding.k-fail { border-left-color: #a4161a; }
.finding.k-error { border-left-color: #6a1b9a; }
.finding.k-waived { border-left-color: #9a6700; }
.finding.k-manual { border-left-color: #0d47a1; }
.target { margin: .5rem 0 .75rem; padding-left: .75rem; border-left: 2px solid var(--line); }
.reason { margin: .2rem 0; font-weight: 600; }
dl.evidence { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .75rem;
  margin: .25rem 0; font-size: .92rem; }
dl.evidence dt { color: var(--muted); }
dl.evidence dd { margin: 0; }
blockquote.guidance { margin: .5rem 0; padding: .4rem .9rem; border-left: 4px solid #8c959f;
  background: var(--bg2); }
blockquote.guidance p { margin: 0; font-style: italic; }
blockquote.guidance footer { color: var(--muted); font-size: .9rem; margin-top: .25rem; }
.label { font-weight: 600; }
tr.w-soon td { background: #fff4d6; }
tr.w-expired td { background: #fbe3e4; }
tr.w-unused td { background: #f1f3f4; }
ul.compact { margin: .25rem 0; padding-left: 1.25rem; }
footer.page { margin-top: 2.5rem; color: var(--muted); font-size: .85rem;
  border-top: 1px solid var(--line); padding-top: .5rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; }
  h3, h4 { break-after: avoid; }
  .finding, tr, .attention { break-inside: avoid; }
  .matrix-wrap { overflow: visible; }
  a { color: inherit; text-decoration: none; }
  a[href^="http"]::after { content: " <" attr(href) ">"; font-size: .85em; color: #59636e;
    overflow-wrap: anywhere; }
  thead { display: table-header-group; }
}
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


#: The Content Security Policy of the page: nothing may be loaded, only its own stylesheet runs.
CONTENT_SECURITY_POLICY: Final = _csp()

#: Shown in a matrix cell when the check was not evaluated on that target.
NOT_RUN: Final = "–"

_VERDICT_CLASSES: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "verdict-ok",
    ExitCode.FAIL: "verdict-fail",
    ExitCode.ERROR: "verdict-error",
    ExitCode.INTERRUPTED: "verdict-error",
}


def _e(value: object) -> str:
    """Report text as HTML: control and bidi characters made visible, then escaped (quotes too,
    so the result is safe in attribute values as well as in text)."""
    return html.escape(printable(str(value)), quote=True)


def _status(status: Status) -> str:
    return f'<span class="tag st st-{status.value.lower()}">{status.value}</span>'


def _severity(meta: CheckMeta) -> str:
    sev = meta.severity.value
    return f'<span class="tag sev sev-{sev}">{sev}</span>'


def _link(reference: str) -> str:
    """A reference as a link when it is a plain http(s) URL; as text otherwise."""
    text = reference.strip()
    lowered = text.lower()
    if lowered.startswith(("https://", "http://")) and not any(c.isspace() for c in text):
        return f'<a href="{_e(text)}" rel="noopener noreferrer">{_e(text)}</a>'
    return _e(reference)


def _section(section_id: str, title: str, body: Iterable[str], css: str = "") -> list[str]:
    cls = f' class="{css}"' if css else ""
    return [
        f'<section id="{section_id}"{cls} aria-labelledby="h-{section_id}">',
        f'<h2 id="h-{section_id}">{title}</h2>',
        *body,
        "</section>",
    ]


def _result_ids(report: ScanReport) -> dict[int, str]:
    """Anchor of every result (keyed by object identity), from its first position in
    `report.results`: never from report text, so it needs no escaping and cannot collide."""
    ids: dict[int, str] = {}
    for i, result in enumerate(report.results):
        ids.setdefault(id(result), f"r-{i}")
    return ids


def _anchor(ids: dict[int, str], result: Result) -> str:
    """`` id="r-N"`` the first time a result is shown, empty afterwards (ids stay unique)."""
    anchor = ids.pop(id(result), None)
    return "" if anchor is None else f' id="{anchor}"'


# -- Headline -------------------------------------------------------------------------------------


def _headline(report: ScanReport) -> list[str]:
    code = report.exit_code()
    compliance = report.compliance()
    score = compliance.score
    meter = (
        f'<meter min="0" max="1" low="0.8" high="0.95" optimum="1" value="{score:.4f}" '
        f'aria-hidden="true"></meter>'
        if score is not None
        else ""
    )
    detail = (
        f"{compliance.passed} PASS of {plural(compliance.evaluated, 'evaluated result')}; "
        f"{Compliance.percent(compliance.accepted)} compliant or accepted by a waiver"
        if compliance.evaluated
        else "nothing was evaluated"
    )
    counts_rows = "".join(
        f'<tr><th scope="row">{_status(status)}</th><td class="num">{n}</td></tr>'
        for status, n in report.counts().items()
    )
    out = [
        '<div class="headline">',
        '<div class="score">',
        f'<span class="score-value" id="compliance-score">{Compliance.percent(score)}</span>',
        '<span class="label">compliance score</span>',
        meter,
        f'<span class="muted">{_e(detail)}</span>',
        "</div>",
        f'<div class="verdict {_VERDICT_CLASSES[code]}" id="verdict">'
        f"<strong>{code.name}</strong>: {_e(EXIT_CODE_MEANINGS[code])} "
        f"(exit code {int(code)})</div>",
        "</div>",
        f'<p class="definition" id="score-definition">{_e(Compliance.DEFINITION)}</p>',
        '<table class="counts" id="counts"><caption class="visually-hidden">'
        "Results per status</caption>"
        '<thead><tr><th scope="col">Status</th><th scope="col" class="num">Results</th></tr>'
        f"</thead><tbody>{counts_rows}</tbody>"
        f'<tfoot><tr><th scope="row">Total</th><td class="num">{len(report.results)}</td></tr>'
        "</tfoot></table>",
        f"<p>{_e(report.verdict())}</p>",
    ]
    return out


def _metadata(report: ScanReport) -> list[str]:
    duration = max(0.0, (report.finished_at - report.started_at).total_seconds())
    rows: list[tuple[str, str]] = [
        ("Agent version", _e(report.agent_version)),
        ("Mode", _e(report.mode)),
    ]
    if report.scan_id is not None:
        rows.append(("Scan id", f"#{report.scan_id}"))
    rows.append(("Inventory", _e(report.inventory) if report.inventory else "none"))
    if report.inventory_digest is not None:
        rows.append(
            ("Inventory digest", f'<span class="mono">{_e(report.inventory_digest)}</span>')
        )
    if report.facts_source is not None:
        rows.append(("Facts file", _e(report.facts_source)))
    rows += [
        (
            "Started (UTC)",
            f'<time datetime="{utc_iso(report.started_at)}">{utc_human(report.started_at)}</time>',
        ),
        (
            "Finished (UTC)",
            f'<time datetime="{utc_iso(report.finished_at)}">'
            f"{utc_human(report.finished_at)}</time>",
        ),
        ("Duration", f"{duration:.1f} s"),
        (
            "Scope",
            _e(
                f"{plural(len(report.hosts), 'host')}, {plural(len(report.checks), 'check')}, "
                f"{plural(len(report.targets()), 'target')}, "
                f"{plural(len(report.results), 'result')}"
            ),
        ),
    ]
    body = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    return [
        '<h3 id="h-scan">About this scan</h3>',
        f'<dl class="meta" id="scan-metadata">{body}</dl>',
    ]


# -- Read this first ------------------------------------------------------------------------------


def _attention(report: ScanReport) -> list[str]:
    items: list[str] = []
    for host in report.failed_hosts():
        items.append(
            f'<li><span class="tag st st-error">HOST NOT SCANNED</span> <strong>{_e(host.name)}'
            f"</strong> ({_e(host.address)}): {_e(host.error)}</li>"
        )
    hosts_by_note: dict[str, list[str]] = {}
    for host in report.hosts:
        for note in host.trust_notes:
            hosts_by_note.setdefault(note, []).append(host.name)
    for note, names in hosts_by_note.items():
        items.append(
            f'<li><span class="tag">TRUST NOTE</span> <strong>{_e(", ".join(names))}</strong>: '
            f"{_e(note)}</li>"
        )
    for warning in report.warnings:
        items.append(f'<li><span class="tag">WARNING</span> {_e(warning)}</li>')
    for state in report.waivers_expiring_soon():
        items.append(
            f'<li><span class="tag st-waived">WAIVER EXPIRES SOON</span> '
            f"{_waiver_name(state)} {_e(waiver_expiry(state))}: renew it or fix the finding</li>"
        )
    for state in report.waivers:
        if state.state == "expired":
            items.append(
                f'<li><span class="tag st-fail">WAIVER EXPIRED</span> {_waiver_name(state)} '
                f"{_e(waiver_expiry(state))}</li>"
            )
    if not items:
        return []
    return _section(
        "attention",
        "Read this first",
        ['<ul class="compact">', *items, "</ul>"],
        css="attention",
    )


# -- Delta ----------------------------------------------------------------------------------------


def _delta(report: ScanReport) -> list[str]:
    delta = report.delta
    if delta is None:
        return []
    body = [f"<p>{_e(delta_summary(delta))}</p>"]
    rows: list[str] = []

    def status_cell(status: Status | None) -> str:
        return '<td class="muted">none</td>' if status is None else f"<td>{_status(status)}</td>"

    for label, items in delta.changes():
        for item in items:
            rows.append(
                f'<tr><th scope="row">{label}</th><td><code>{_e(item.check_id)}</code></td>'
                f"<td>{_e(item.target)}</td>{status_cell(item.before)}"
                f"{status_cell(item.after)}</tr>"
            )
    if rows:
        body += [
            '<table id="delta-table"><thead><tr><th scope="col">Change</th>'
            '<th scope="col">Check</th><th scope="col">Target</th>'
            '<th scope="col">Before</th><th scope="col">Now</th></tr></thead>',
            f"<tbody>{''.join(rows)}</tbody></table>",
        ]
    if delta.hosts_added:
        body.append(
            f'<p><span class="label">Hosts added:</span> {_e(", ".join(delta.hosts_added))}</p>'
        )
    if delta.hosts_removed:
        body.append(
            f'<p><span class="label">Hosts removed:</span> {_e(", ".join(delta.hosts_removed))}</p>'
        )
    if not rows and not delta.hosts_added and not delta.hosts_removed:
        body.append("<p>Nothing changed.</p>")
    return _section("delta", "Since the last scan", body)


# -- Matrix ---------------------------------------------------------------------------------------


def _breakable(name: str) -> str:
    """A host name for a narrow column header: it may break after a dot, never mid-word."""
    return ".<wbr>".join(_e(part) for part in name.split("."))


def _matrix(report: ScanReport) -> list[str]:
    if not report.results:
        return _section("matrix", "Results by check and target", ["<p>No results.</p>"])
    ids = _result_ids(report)
    cells: dict[tuple[str, str], list[Result]] = {}
    for result in report.results:
        cells.setdefault((result.check_id, result.target), []).append(result)
    targets = report.targets()
    head = "".join(f'<th scope="col">{_breakable(t)}</th>' for t in targets)
    rows: list[str] = []
    for meta in report.checks:
        if not any((meta.id, t) in cells for t in targets):
            continue
        row = [
            f'<th scope="row"><code>{_e(meta.id)}</code><br>'
            f'<span class="muted">{_e(meta.title)}</span></th>',
            f"<td>{_severity(meta)}</td>",
        ]
        for target in targets:
            results = cells.get((meta.id, target), [])
            status = worst_status(r.status for r in results)
            if status is None:
                row.append(
                    f'<td class="st-none"><span aria-hidden="true">{NOT_RUN}</span>'
                    '<span class="visually-hidden">not evaluated</span></td>'
                )
                continue
            first = next(r for r in results if r.status is status)
            label = status.value
            if status in (Status.FAIL, Status.ERROR, Status.WAIVED, Status.MANUAL):
                label = f'<a href="#{ids[id(first)]}">{label}</a>'
            row.append(
                f'<td class="st st-{status.value.lower()}" title="{_e(first.reason)}">{label}</td>'
            )
        rows.append(f"<tr>{''.join(row)}</tr>")
    return _section(
        "matrix",
        "Results by check and target",
        [
            '<div class="matrix-wrap">',
            '<table class="matrix" id="matrix-table"><caption class="visually-hidden">'
            "Status of each check (rows) on each target (columns)</caption>",
            f'<thead><tr><th scope="col">Check</th><th scope="col">Severity</th>{head}</tr>'
            "</thead>",
            f"<tbody>{''.join(rows)}</tbody></table>",
            "</div>",
            f'<p class="muted">{NOT_RUN} = not evaluated on that target. A cell shows the worst '
            "status when a check gave several results for one target; FAIL, ERROR, WAIVED and "
            "MANUAL cells link to the details.</p>",
        ],
    )


# -- Findings -------------------------------------------------------------------------------------


def _grouped(results: Sequence[Result]) -> list[tuple[str, list[Result]]]:
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(result.check_id, []).append(result)
    return list(groups.items())


def _evidence(result: Result) -> str:
    if not result.evidence:
        return ""
    items = "".join(
        f"<dt>{_e(key)}</dt><dd><pre>{_e(format_value(value))}</pre></dd>"
        for key, value in result.evidence.items()
    )
    return f'<dl class="evidence">{items}</dl>'


def _guidance(meta: CheckMeta) -> list[str]:
    out = [
        '<blockquote class="guidance">',
        f"<p>“{_e(meta.guidance.quote)}”</p>",
        f"<footer>— <cite>{_e(meta.guidance.source)}</cite></footer>",
        "</blockquote>",
    ]
    if meta.guidance.notes:
        out.append(f'<p><span class="label">Notes:</span> {_e(meta.guidance.notes)}</p>')
    out.append(f'<p><span class="label">Remediation:</span> {_e(meta.remediation)}</p>')
    if meta.references:
        links = "".join(f"<li>{_link(ref)}</li>" for ref in meta.references)
        out.append(
            f'<div><span class="label">References:</span><ul class="compact">{links}</ul></div>'
        )
    return out


def _waiver_block(result: Result) -> str:
    waiver = result.waiver
    if waiver is None:
        return '<p class="muted">No waiver recorded for this result.</p>'
    source = f" ({_e(waiver.source)})" if waiver.source else ""
    return (
        '<dl class="evidence waiver">'
        f"<dt>Waiver</dt><dd>{_e(waiver.justification)}</dd>"
        f"<dt>Approved by</dt><dd>{_e(waiver.approver)}</dd>"
        f"<dt>Expires</dt><dd>{waiver.expires.isoformat()} (last day it applies, UTC)</dd>"
        f"<dt>Covers</dt><dd><code>{_e(waiver.check_id)}</code> on {_e(waiver.hosts)}{source}"
        "</dd></dl>"
    )


def _findings(report: ScanReport, status: Status, title: str) -> list[str]:
    chosen = [r for r in report.results if r.status is status]
    if not chosen:
        return []
    ids = _result_ids(report)
    down = {h.name for h in report.failed_hosts()}
    # ERRORs on a host that could not be scanned are summarised per host below.
    detailed = [r for r in chosen if status is not Status.ERROR or r.target not in down]
    kind = status.value.lower()
    body: list[str] = []
    for check_id, results in _grouped(worst_first(detailed, report.check)):
        meta = report.check(check_id)
        body.append(f'<article class="finding k-{kind}">')
        body.append(
            f"<h3>{_status(status)} {_severity(meta)} <code>{_e(meta.id)}</code> "
            f"{_e(meta.title)}</h3>"
        )
        for result in results:
            body.append(f'<div class="target"{_anchor(ids, result)}>')
            body.append(f"<h4>{_e(result.target)}</h4>")
            body.append(f'<p class="reason">{_e(result.reason)}</p>')
            body.append(_evidence(result))
            if status is Status.WAIVED:
                body.append(_waiver_block(result))
            body.append("</div>")
        if status is not Status.WAIVED:
            body += _guidance(meta)
        body.append("</article>")
    if status is Status.ERROR:
        for host in report.failed_hosts():
            skipped = [r for r in chosen if r.target == host.name]
            if not skipped:
                continue
            body.append('<article class="finding k-error">')
            body.append(
                f"<h3>{_status(Status.ERROR)} <strong>{_e(host.name)}</strong> could not be "
                f"scanned</h3>"
            )
            body.append(f'<p class="reason">{_e(host.error)}</p>')
            body += [f"<span{_anchor(ids, r)}></span>" for r in skipped]
            checks = ", ".join(sorted({r.check_id for r in skipped}))
            body.append(f"<p>{len(skipped)} not evaluated: {_e(checks)}</p>")
            body.append("</article>")
    return _section(f"{kind}-results", f"{title} ({len(chosen)})", body)


def _manual(report: ScanReport) -> list[str]:
    chosen = [r for r in report.results if r.status is Status.MANUAL]
    if not chosen:
        return []
    ids = _result_ids(report)
    body: list[str] = []
    for check_id, results in _grouped(worst_first(chosen, report.check)):
        meta = report.check(check_id)
        body.append('<article class="finding k-manual">')
        body.append(f"<h3>{_severity(meta)} <code>{_e(meta.id)}</code> {_e(meta.title)}</h3>")
        for result in results:
            body.append(
                f'<div class="target"{_anchor(ids, result)}><h4>{_e(result.target)}</h4>'
                f'<p><span class="label">To attest:</span> {_e(result.reason)}</p></div>'
            )
        body += _guidance(meta)
        body.append("</article>")
    return _section("manual-results", f"MANUAL — attestation needed ({len(chosen)})", body)


# -- Waivers and hosts ----------------------------------------------------------------------------


def _waiver_name(state: WaiverState) -> str:
    return f"<code>{_e(state.waiver.check_id)}</code> on <strong>{_e(state.waiver.hosts)}</strong>"


def _waiver_state(state: WaiverState) -> tuple[str, str]:
    """(row class, state cell) for a waiver: the state always in words."""
    if state.state == "expired":
        return "w-expired", '<span class="tag st-fail">EXPIRED</span> no longer applies'
    if state.expiring_soon:
        extra = " — matched nothing" if state.state == "unused" else ""
        return "w-soon", f'<span class="tag st-waived">EXPIRES SOON</span>{extra}'
    if state.state == "unused":
        return "w-unused", '<span class="tag">UNUSED</span> matched nothing'
    return "w-active", "active"


def _waivers(report: ScanReport) -> list[str]:
    if not report.waivers:
        return []
    rows: list[str] = []
    for state in report.waivers:
        waiver = state.waiver
        css, state_cell = _waiver_state(state)
        if state.waived:
            effect = f"waived {plural(len(state.waived), 'result')}: " + _e(
                ", ".join(target for _, target in state.waived)
            )
        elif state.state == "unused":
            effect = "matched nothing"
        elif state.state == "expired":
            effect = "applied to nothing"
        else:
            effect = "matched results, none of which failed"
        rows.append(
            f'<tr class="{css}"><td>{state_cell}</td><td><code>{_e(waiver.check_id)}</code></td>'
            f"<td>{_e(waiver.hosts)}</td>"
            f'<td><time datetime="{waiver.expires.isoformat()}">{waiver.expires.isoformat()}'
            f"</time></td>"
            f'<td class="num">{state.days_left}</td>'
            f"<td>{_e(waiver_expiry(state))}</td>"
            f"<td>{_e(waiver.approver)}</td><td>{_e(waiver.justification)}</td>"
            f"<td>{effect}</td><td>{_e(waiver.source)}</td></tr>"
        )
    soon = len(report.waivers_expiring_soon())
    intro = (
        f"<p>{plural(len(report.waivers), 'waiver')}; "
        f"{soon} expiring within {EXPIRY_WARNING_DAYS} days (highlighted). Days left are counted "
        "in UTC from the scan's start; a waiver applies through its expiry day.</p>"
    )
    return _section(
        "waivers",
        "Waivers",
        [
            intro,
            '<div class="matrix-wrap"><table id="waivers-table"><thead><tr>'
            '<th scope="col">State</th><th scope="col">Check</th><th scope="col">Hosts</th>'
            '<th scope="col">Expires</th><th scope="col" class="num">Days left</th>'
            '<th scope="col">Expiry</th><th scope="col">Approver</th>'
            '<th scope="col">Justification</th><th scope="col">This scan</th>'
            '<th scope="col">Source</th></tr></thead>',
            f"<tbody>{''.join(rows)}</tbody></table></div>",
        ],
    )


def _hosts(report: ScanReport) -> list[str]:
    if not report.hosts:
        return []
    rows = []
    for host in report.hosts:
        state = (
            f'<span class="tag st-error">NOT SCANNED</span> {_e(host.error)}'
            if host.error is not None
            else "scanned"
        )
        notes = "<br>".join(_e(n) for n in host.trust_notes) or '<span class="muted">none</span>'
        rows.append(
            f'<tr><th scope="row">{_e(host.name)}</th><td>{_e(host.address)}</td>'
            f"<td>{_e(', '.join(host.roles) or '-')}</td><td>{_e(host.connection)}</td>"
            f"<td>{notes}</td><td>{state}</td></tr>"
        )
    return _section(
        "hosts",
        "Hosts",
        [
            '<div class="matrix-wrap"><table id="hosts-table"><thead><tr>'
            '<th scope="col">Host</th><th scope="col">Address</th><th scope="col">Roles</th>'
            '<th scope="col">Connection</th><th scope="col">Trust notes</th>'
            '<th scope="col">Scan</th></tr></thead>',
            f"<tbody>{''.join(rows)}</tbody></table></div>",
        ],
    )


# -- Page -----------------------------------------------------------------------------------------


def render_html(report: ScanReport) -> str:
    """The report as one self-contained HTML5 page (UTF-8 text, newline-ended).

    The headline compliance score is `Compliance.score`: PASS / (PASS + FAIL + ERROR + WAIVED)
    over the evaluated results. WAIVED counts as accepted but not passing (against the score; the
    share compliant-or-accepted is shown beside it), ERROR counts against, SKIP and MANUAL are
    left out. The definition is printed on the page.

    Nothing is loaded from anywhere (inline CSS, no script, no fonts, no images, a CSP that
    forbids loading), and every value from the report is escaped.
    """
    code = report.exit_code()
    score = Compliance.percent(report.compliance().score)
    title = (
        f"mfa-agent report: {code.name}, {score} compliant — "
        f"{report.started_at.strftime('%Y-%m-%d')}"
    )
    inventory = f" of {report.inventory}" if report.inventory else ""
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CONTENT_SECURITY_POLICY)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="mfa-agent {_e(report.agent_version)}">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>MFA deployment compliance report</h1>",
        f'<p class="muted">{_e(report.mode)} scan{_e(inventory)}, '
        f"{utc_human(report.started_at)}, by mfa-agent {_e(report.agent_version)}</p>",
        "</header>",
        "<main>",
        *_section("summary", "Summary", [*_headline(report), *_metadata(report)]),
        *_attention(report),
        *_delta(report),
        *_matrix(report),
        *_findings(report, Status.FAIL, "FAIL — not compliant"),
        *_findings(report, Status.ERROR, "ERROR — could not be evaluated"),
        *_findings(report, Status.WAIVED, "WAIVED — accepted risks"),
        *_manual(report),
        *_waivers(report),
        *_hosts(report),
        "</main>",
        '<footer class="page">',
        f"<p>{_e(report.verdict())}</p>",
        f"<p>Generated by mfa-agent {_e(report.agent_version)} from the scan that finished "
        f"{utc_human(report.finished_at)}. This page loads nothing from the network.</p>",
        "</footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"
