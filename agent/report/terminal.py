"""The terminal report: what an operations engineer reads after a scan, at 80-120 columns.

Sections, in order: header (scan id, mode, inventory, facts, time, hosts); "read this first"
(trust notes, warnings, and a line about waivers expiring soon or expired, when there are any); a
matrix of checks (rows) by targets (columns) in one block per role (AD FS servers, MFA Servers,
...) and one for the directory and deployment, so that it stays dense and fits the width (a block
with too many hosts is split over several tables, and host names are shortened to their first
label when unambiguous); the counts per status; "since the last scan" (new failures, new errors,
fixed, still failing, hosts added and removed), when the history knows a previous scan; every
FAIL and then every ERROR, grouped by check, worst severity first, with reason, evidence,
guidance, remediation and references; WAIVED items briefly (reason, justification, approver,
expiry); MANUAL items with what to attest; every waiver with its expiry and days left (expiring
within 14 days, expired - "no longer applies" - and unused - "matched nothing" - flagged); and a
one-line verdict, which also counts WAIVED results (they never change the exit code).

ERRORs on a host that could not be scanned at all are summarised in one line per host (the
host-level error and the checks it prevented) instead of repeating the same error per check.

Colour comes from rich, so a console that is not a terminal (piped, redirected, or created with
``force_terminal=False``) gets plain text. Everything taken from the report is passed to rich as
`Text` (never as markup) after `printable`, so evidence cannot inject markup, ANSI escape
sequences or other control characters.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.rule import Rule
from rich.segment import Segment, Segments
from rich.table import Table
from rich.text import Text

from agent.errors import ExitCode
from agent.model import STATUS_ORDER, CheckMeta, Result, Severity, Status
from agent.report._text import (
    delta_summary,
    format_value,
    plural,
    printable,
    utc_human,
    waiver_expiry,
    worst_first,
    worst_status,
)
from agent.report.model import (
    EXIT_CODE_MEANINGS,
    EXPIRY_WARNING_DAYS,
    DeltaItem,
    ScanReport,
    WaiverState,
)
from agent.roles import AAD_CONNECT, ADFS, MFA_SERVER, MOBILE_APP_WS, ROLES, USER_PORTAL

#: Style of each status wherever it is shown.
STATUS_STYLES: Final[dict[Status, str]] = {
    Status.FAIL: "bold red",
    Status.ERROR: "bold magenta",
    Status.WAIVED: "yellow",
    Status.MANUAL: "cyan",
    Status.SKIP: "dim",
    Status.PASS: "green",
}

#: Style of each severity wherever it is shown.
SEVERITY_STYLES: Final[dict[Severity, str]] = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}

_VERDICT_STYLES: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "bold green",
    ExitCode.FAIL: "bold red",
    ExitCode.ERROR: "bold magenta",
    ExitCode.INTERRUPTED: "bold yellow",
}

#: Shown in a matrix cell when the check was not evaluated on that target.
NOT_RUN: Final = "-"

_LABEL_WIDTH: Final = 12
_CELL_MIN: Final = max(len(s.value) for s in Status)
_TITLE_MIN: Final = 16
_SEVERITY_WIDTH: Final = max(len("Severity"), *(len(s.value) for s in Severity))


def _t(text: str, style: str = "") -> Text:
    """Report text as a rich `Text`: never parsed as markup, control characters made visible."""
    return Text(printable(text), style=style)


def _status(status: Status) -> Text:
    return Text(status.value, style=STATUS_STYLES[status])


def _severity(severity: Severity) -> Text:
    return Text(severity.value, style=SEVERITY_STYLES[severity])


def _fields(rows: Iterable[tuple[Text, Text]], indent: int = 2) -> RenderableType:
    """Label/value rows; long values wrap under themselves (a hanging indent)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, min_width=_LABEL_WIDTH)
    grid.add_column(overflow="fold", ratio=1)
    for label, value in rows:
        grid.add_row(label, value)
    return Padding(grid, (0, 0, 0, indent))


#: Past this many targets the matrix becomes a per-check summary, and lists of hosts or of
#: failing targets are cut with "… and N more" (the file formats always hold everything).
MAX_LISTED: Final = 30


def _more(hidden: int, what: str) -> Text:
    return Text(
        f"… and {plural(hidden, what)} more (every one is in -o DIR / --format json|html)", "dim"
    )


def _header(report: ScanReport) -> RenderableType:
    title = Text.assemble(
        ("mfa-agent ", "bold"),
        _t(report.agent_version, "bold"),
        " - ",
        _t(f"{report.mode} scan", "bold"),
    )
    duration = max(0.0, (report.finished_at - report.started_at).total_seconds())
    rows: list[tuple[Text, Text]] = []
    if report.scan_id is not None:
        rows.append((Text("Scan", "dim"), Text(f"#{report.scan_id}")))
    if report.inventory is not None:
        rows.append((Text("Inventory", "dim"), _t(report.inventory)))
    if report.inventory_digest is not None:
        rows.append((Text("Digest", "dim"), _t(report.inventory_digest)))
    if report.facts_source is not None:
        rows.append((Text("Facts", "dim"), _t(report.facts_source)))
    if report.scope:
        rows.append((Text("Scope", "dim"), _t(report.scope)))
    rows.append(
        (Text("Started", "dim"), Text(f"{utc_human(report.started_at)}, took {duration:.1f} s"))
    )
    failed = len(report.failed_hosts())
    hosts = plural(len(report.hosts), "host")
    if failed:
        hosts += f", {failed} could not be scanned"
    rows.append((Text("Hosts", "dim"), Text(hosts)))
    parts: list[RenderableType] = [title, _fields(rows)]
    if report.hosts:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
        table.add_column("Host", no_wrap=True)
        table.add_column("Address", overflow="fold")
        table.add_column("Roles", overflow="fold")
        table.add_column("Connection", overflow="fold")
        for host in report.hosts[:MAX_LISTED]:
            table.add_row(
                _t(host.name, "bold magenta" if host.error else "bold"),
                _t(host.address),
                _t(", ".join(host.roles) or "-"),
                _t(host.connection),
            )
        parts.append(Padding(table, (1, 0, 0, 2)))
        if len(report.hosts) > MAX_LISTED:
            parts.append(Padding(_more(len(report.hosts) - MAX_LISTED, "host"), (0, 0, 0, 2)))
        failed_hosts = report.failed_hosts()
        for host in failed_hosts[:MAX_LISTED]:
            line = Text.assemble(
                ("ERROR ", STATUS_STYLES[Status.ERROR]),
                _t(host.name, "bold"),
                _t(f" could not be scanned: {host.error}"),
            )
            parts.append(Padding(line, (0, 0, 0, 2)))
        if len(failed_hosts) > MAX_LISTED:
            hidden = _more(len(failed_hosts) - MAX_LISTED, "unscanned host")
            parts.append(Padding(hidden, (0, 0, 0, 2)))
    return Group(*parts)


def _attention(report: ScanReport) -> RenderableType | None:
    lines: list[Text] = []
    # The same note on many hosts (usually set once in group vars) is shown once, with its hosts.
    hosts_by_note: dict[str, list[str]] = {}
    for host in report.hosts:
        for note in host.trust_notes:
            hosts_by_note.setdefault(note, []).append(host.name)
    for note, names in hosts_by_note.items():
        lines.append(
            Text.assemble(("TRUST NOTE ", "bold yellow"), _t(f"{', '.join(names)}: "), _t(note))
        )
    for warning in report.warnings:
        lines.append(Text.assemble(("WARNING ", "bold yellow"), _t(warning)))
    soon = len(report.waivers_expiring_soon())
    expired = sum(1 for w in report.waivers if w.state == "expired")
    if soon or expired:
        parts = []
        if soon:
            parts.append(f"{plural(soon, 'waiver')} expiring within {EXPIRY_WARNING_DAYS} days")
        if expired:
            parts.append(f"{plural(expired, 'waiver')} expired")
        lines.append(
            Text.assemble(("WAIVERS ", "bold yellow"), ", ".join(parts), "; see Waivers below")
        )
    if not lines:
        return None
    return Panel(
        Group(*lines),
        title=Text("Read this first", "bold yellow"),
        title_align="left",
        border_style="yellow",
    )


#: How each role's block of the matrix is titled.
ROLE_TITLES: Final[dict[str, str]] = {
    ADFS: "AD FS servers",
    MFA_SERVER: "MFA Servers",
    USER_PORTAL: "User Portal servers",
    MOBILE_APP_WS: "Mobile App Web Service servers",
    AAD_CONNECT: "Azure AD Connect servers",
}


@dataclass(frozen=True)
class _Layout:
    """How a block of the matrix fits the width: the gap between columns, the width of the
    Title column (None: not shown) and the targets of each table."""

    gap: int
    title_width: int | None
    chunks: list[list[str]]


def _short_labels(report: ScanReport) -> dict[str, str]:
    """Column headings: host names up to their first dot when that is unambiguous.

    ``adfs01.corp.example`` becomes ``adfs01`` if no other host starts with ``adfs01.``; IP
    addresses and the non-host targets are kept whole. The host table shows the full names.
    """
    labels = {t: t for t in report.targets()}
    firsts: dict[str, list[str]] = {}
    for host in report.hosts:
        try:
            ipaddress.ip_address(host.name)
        except ValueError:
            firsts.setdefault(host.name.split(".", 1)[0], []).append(host.name)
    for first, names in firsts.items():
        if len(names) == 1 and first and first not in labels:
            labels[names[0]] = first
    return labels


def _layout(
    ids: Sequence[str], targets: Sequence[str], labels: dict[str, str], width: int
) -> _Layout:
    """One table with 2-space gaps if it fits, else with 1-space gaps, else several tables.

    The Title column is added only in the space left over: check ids are descriptive.
    """
    id_width = max([len("Check"), *(len(i) for i in ids)])
    widths = {t: max(len(labels[t]), _CELL_MIN) for t in targets}

    def total(chunk: Sequence[str], gap: int) -> int:
        return id_width + _SEVERITY_WIDTH + sum(widths[t] for t in chunk) + gap * (len(chunk) + 1)

    for gap in (2, 1):
        used = total(targets, gap)
        if used <= width:
            room = width - used - gap
            return _Layout(gap, room if room >= _TITLE_MIN else None, [list(targets)])
    gap = 2
    chunks: list[list[str]] = [[]]
    for target in targets:
        if chunks[-1] and total([*chunks[-1], target], gap) > width:
            chunks.append([])
        chunks[-1].append(target)
    # Spread the targets evenly over that many tables, if they still fit.
    per = -(-len(targets) // len(chunks))
    even = [list(targets[i : i + per]) for i in range(0, len(targets), per)]
    if len(even) == len(chunks) and all(total(c, gap) <= width for c in even):
        chunks = even
    return _Layout(gap, None, chunks)


def _blocks(report: ScanReport) -> list[tuple[str, list[str]]]:
    """The matrix split by role, so that it stays dense and narrow: one block of hosts per role
    (in `ROLES` order; a host with several roles is in several blocks), then hosts with no
    known role, then the non-host targets (``(directory)``, ``(deployment)``, …)."""
    targets = report.targets()
    hosts = [h for h in report.hosts if h.name in targets]
    blocks: list[tuple[str, list[str]]] = []
    for role in ROLES:
        members = [h.name for h in hosts if role in h.roles]
        if members:
            blocks.append((ROLE_TITLES.get(role, role), members))
    others = [h.name for h in hosts if not set(h.roles) & set(ROLES)]
    if others:
        blocks.append(("Other hosts", others))
    fleet = [t for t in targets if report.host(t) is None]
    if fleet:
        blocks.append(("Directory and deployment", fleet))
    return blocks


def _matrix(report: ScanReport, width: int) -> list[RenderableType]:
    """Checks (rows) by targets (columns), one block per role; cells are the status, or the
    worst status if a check gave several results for one target."""
    if not report.results:
        return [Text("No results.", "bold")]
    if len(report.targets()) > MAX_LISTED:
        return _summary_by_check(report)
    cells: dict[tuple[str, str], list[Status]] = {}
    for result in report.results:
        cells.setdefault((result.check_id, result.target), []).append(result.status)
    labels = _short_labels(report)
    parts: list[RenderableType] = [Text("Results by check and target", "bold underline")]
    for block_title, targets in _blocks(report):
        rows = [c for c in report.checks if any((c.id, t) in cells for t in targets)]
        layout = _layout([c.id for c in rows], targets, labels, width)
        for number, chunk in enumerate(layout.chunks, 1):
            title = block_title
            if len(layout.chunks) > 1:
                title += f" ({number}/{len(layout.chunks)})"
            table = Table(
                title=_t(title, "bold"),
                title_justify="left",
                box=box.SIMPLE_HEAD,
                show_edge=False,
                pad_edge=False,
                padding=(0, layout.gap - 1, 0, 0),
            )
            table.add_column("Check", no_wrap=True, style="bold")
            table.add_column("Severity", no_wrap=True)
            if layout.title_width is not None:
                table.add_column(
                    "Title", no_wrap=True, overflow="ellipsis", max_width=layout.title_width
                )
            for target in chunk:
                table.add_column(_t(labels[target]), no_wrap=True, min_width=_CELL_MIN)
            for meta in rows:
                row: list[RenderableType] = [_t(meta.id), _severity(meta.severity)]
                if layout.title_width is not None:
                    row.append(_t(meta.title))
                for target in chunk:
                    status = worst_status(cells.get((meta.id, target), ()))
                    row.append(Text(NOT_RUN, "dim") if status is None else _status(status))
                table.add_row(*row)
            parts += [Text(""), table]
    shortened = any(labels[t] != t for t in labels)
    legend = f"{NOT_RUN} = not evaluated on that target"
    if shortened:
        legend += "; host names are shown up to the first dot"
    parts += [Text(""), Text(legend, "dim")]
    return parts


def _summary_by_check(report: ScanReport) -> list[RenderableType]:
    """For a large fleet: per check, how many targets got each status."""
    per_check: dict[str, dict[Status, int]] = {}
    for result in report.results:
        counts = per_check.setdefault(result.check_id, dict.fromkeys(STATUS_ORDER, 0))
        counts[result.status] += 1
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    table.add_column("Check", no_wrap=True, style="bold")
    table.add_column("Severity", no_wrap=True)
    for status in STATUS_ORDER:
        table.add_column(Text(status.value, STATUS_STYLES[status]), justify="right")
    for meta in report.checks:
        if meta.id in per_check:
            counts = per_check[meta.id]
            cells = [Text(str(n), "bold" if n else "dim") for n in counts.values()]
            table.add_row(_t(meta.id), _severity(meta.severity), *cells)
    title = f"Results by check ({plural(len(report.targets()), 'target')})"
    return [Text(title, "bold underline"), Text(""), table, Text("")]


def _counts(report: ScanReport) -> Text:
    text = Text("Results: ", "bold")
    for i, (status, n) in enumerate(report.counts().items()):
        if i:
            text.append("  ")
        text.append(f"{n} ", "bold" if n else "dim")
        text.append(status.value, STATUS_STYLES[status] if n else "dim")
    text.append(
        f"   ({plural(len(report.results), 'result')}, {plural(len(report.checks), 'check')}, "
        f"{plural(len(report.targets()), 'target')})",
        "dim",
    )
    return text


def _grouped(results: Sequence[Result]) -> list[tuple[str, list[Result]]]:
    """Results grouped by check id, keeping the order of first appearance."""
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(result.check_id, []).append(result)
    return list(groups.items())


def _target_rows(results: Sequence[Result]) -> list[tuple[Text, Text]]:
    rows = []
    for result in results:
        value = _t(result.reason)
        for key, item in result.evidence.items():
            value.append("\n")
            value.append_text(_t(f"{key}: ", "dim"))
            value.append_text(_t(format_value(item)))
        rows.append((_t(result.target, "bold"), value))
    return rows


def _guidance_rows(meta: CheckMeta) -> list[tuple[Text, Text]]:
    quote = _t(f'"{meta.guidance.quote}"', "italic")
    quote.append("\n")
    quote.append_text(_t(f"-- {meta.guidance.source}", "dim"))
    rows = [(Text("Guidance", "dim"), quote)]
    if meta.guidance.notes:
        rows.append((Text("Notes", "dim"), _t(meta.guidance.notes)))
    rows.append((Text("Remediation", "dim"), _t(meta.remediation)))
    if meta.references:
        rows.append((Text("References", "dim"), _t("\n".join(meta.references))))
    return rows


def _check_heading(status: Status | None, meta: CheckMeta) -> RenderableType:
    """``FAIL high check-id  Title``; a long title wraps under itself."""
    left = Text.assemble(_severity(meta.severity), " ", _t(meta.id, "bold"))
    if status is not None:
        left = Text.assemble(_status(status), " ", left)
    grid = Table.grid(padding=(0, 0, 0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold", ratio=1)
    grid.add_row(left, _t(meta.title, "bold"))
    return grid


def _problems(report: ScanReport, status: Status, heading: str) -> list[RenderableType]:
    down = {h.name for h in report.failed_hosts()}
    chosen = [r for r in report.results if r.status is status]
    # ERRORs on a host that could not be scanned are summarised per host below.
    detailed = [r for r in chosen if status is not Status.ERROR or r.target not in down]
    if not chosen:
        return []
    parts: list[RenderableType] = [
        Rule(Text(f"{heading} ({len(chosen)})", STATUS_STYLES[status]), align="left")
    ]
    for check_id, results in _grouped(worst_first(detailed, report.check)):
        meta = report.check(check_id)
        parts.append(_check_heading(status, meta))
        parts.append(_fields(_target_rows(results[:MAX_LISTED]) + _guidance_rows(meta)))
        if len(results) > MAX_LISTED:
            parts.append(Padding(_more(len(results) - MAX_LISTED, "target"), (0, 0, 0, 2)))
        parts.append(Text(""))
    if status is Status.ERROR:
        failed_hosts = report.failed_hosts()
        for host in failed_hosts[:MAX_LISTED]:
            skipped = [r for r in report.results_for(host.name) if r.status is Status.ERROR]
            if not skipped:
                continue
            text = Text.assemble(
                _status(Status.ERROR),
                " ",
                _t(host.name, "bold"),
                _t(f" could not be scanned: {host.error}"),
            )
            ids = ", ".join(sorted({r.check_id for r in skipped}))
            not_evaluated = _t(f"{len(skipped)} not evaluated: {ids}")
            parts.append(text)
            parts.append(_fields([(Text("Checks", "dim"), not_evaluated)]))
            parts.append(Text(""))
        if len(failed_hosts) > MAX_LISTED:
            parts += [_more(len(failed_hosts) - MAX_LISTED, "unscanned host"), Text("")]
    return parts


def _manual(report: ScanReport) -> list[RenderableType]:
    chosen = [r for r in report.results if r.status is Status.MANUAL]
    if not chosen:
        return []
    parts: list[RenderableType] = [
        Rule(
            Text(f"MANUAL - attestation needed ({len(chosen)})", STATUS_STYLES[Status.MANUAL]),
            align="left",
        )
    ]
    for check_id, results in _grouped(worst_first(chosen, report.check)):
        meta = report.check(check_id)
        parts.append(_check_heading(None, meta))
        by_reason: dict[str, list[str]] = {}
        for result in results:
            by_reason.setdefault(result.reason, []).append(result.target)
        rows: list[tuple[Text, Text]] = []
        for reason, targets in by_reason.items():
            shown = ", ".join(targets[:MAX_LISTED])
            if len(targets) > MAX_LISTED:
                shown += f", … and {len(targets) - MAX_LISTED} more"
            rows.append((Text("Targets", "dim"), _t(shown, "bold")))
            rows.append((Text("To attest", "dim"), _t(reason)))
        parts.append(_fields(rows))
        parts.append(Text(""))
    return parts


def _waived(report: ScanReport) -> list[RenderableType]:
    """WAIVED results, briefly: the reason and the waiver that accepted it."""
    chosen = [r for r in report.results if r.status is Status.WAIVED]
    if not chosen:
        return []
    parts: list[RenderableType] = [
        Rule(
            Text(f"WAIVED - accepted risks ({len(chosen)})", STATUS_STYLES[Status.WAIVED]),
            align="left",
        )
    ]
    for check_id, results in _grouped(worst_first(chosen, report.check)):
        parts.append(_check_heading(Status.WAIVED, report.check(check_id)))
        rows: list[tuple[Text, Text]] = []
        for result in results:
            value = _t(result.reason)
            waiver = result.waiver
            if waiver is not None:
                value.append("\n")
                value.append_text(_t("Waiver: ", "dim"))
                value.append_text(_t(waiver.justification))
                value.append("\n")
                value.append_text(_t("Approved by ", "dim"))
                value.append_text(_t(waiver.approver))
                value.append_text(_t(", expires ", "dim"))
                value.append_text(_t(waiver.expires.isoformat()))
            rows.append((_t(result.target, "bold"), value))
        parts.append(_fields(rows))
        parts.append(Text(""))
    return parts


def _waiver_flag(state: WaiverState) -> Text:
    """``EXPIRES SOON``, ``EXPIRED``, ``UNUSED`` or ``active``, styled."""
    if state.state == "expired":
        return Text("EXPIRED", "bold red")
    if state.expiring_soon:
        return Text("EXPIRES SOON", "bold yellow")
    if state.state == "unused":
        return Text("UNUSED", "bold cyan")
    return Text("active", "green")


def _waivers(report: ScanReport) -> list[RenderableType]:
    """Every waiver of the waivers file: what it covers, who approved it, when it expires, and
    what it did in this scan."""
    if not report.waivers:
        return []
    soon = len(report.waivers_expiring_soon())
    title = f"Waivers ({len(report.waivers)}"
    title += f", {soon} expiring within {EXPIRY_WARNING_DAYS} days)" if soon else ")"
    parts: list[RenderableType] = [Rule(Text(title, "bold"), align="left")]
    for state in report.waivers:
        waiver = state.waiver
        heading = Text.assemble(
            _waiver_flag(state),
            " ",
            _t(waiver.check_id, "bold"),
            " on ",
            _t(waiver.hosts, "bold"),
        )
        expiry = _t(waiver_expiry(state), "bold red" if state.state == "expired" else "")
        if state.expiring_soon:
            expiry.stylize("bold yellow")
        if state.waived:
            effect = _t(
                f"waived {plural(len(state.waived), 'result')}: "
                + ", ".join(target for _, target in state.waived)
            )
        elif state.state == "unused":
            effect = Text("matched nothing: no result of this check on these hosts")
        elif state.state == "expired":
            effect = Text("applied to nothing")
        else:
            effect = Text("matched results, none of which failed")
        rows = [
            (Text("Expiry", "dim"), expiry),
            (Text("Approved by", "dim"), _t(waiver.approver)),
            (Text("Why", "dim"), _t(waiver.justification)),
            (Text("This scan", "dim"), effect),
        ]
        if waiver.source:
            rows.append((Text("Source", "dim"), _t(waiver.source)))
        parts += [heading, _fields(rows), Text("")]
    return parts


def _delta(report: ScanReport) -> list[RenderableType]:
    """What changed since the previous scan of the same inventory, when the history knows."""
    delta = report.delta
    if delta is None:
        return []
    parts: list[RenderableType] = [
        Rule(Text("Since the last scan", "bold"), align="left"),
        _t(delta_summary(delta)),
    ]

    def items(values: Sequence[DeltaItem]) -> Text:
        lines = []
        for item in values:
            change = " -> ".join(
                "none" if status is None else status.value for status in (item.before, item.after)
            )
            lines.append(f"{item.check_id} on {item.target} ({change})")
        return _t("\n".join(lines))

    rows: list[tuple[Text, Text]] = []
    for label, style, values in (
        ("New failures", STATUS_STYLES[Status.FAIL], delta.new_failures),
        ("New errors", STATUS_STYLES[Status.ERROR], delta.new_errors),
        ("Newly waived", STATUS_STYLES[Status.WAIVED], delta.newly_waived),
        ("Fixed", STATUS_STYLES[Status.PASS], delta.fixed),
        ("Still failing", "red", delta.still_failing),
    ):
        if values:
            rows.append((Text(label, style), items(values)))
    if delta.hosts_added:
        rows.append((Text("Hosts added", "dim"), _t(", ".join(delta.hosts_added))))
    if delta.hosts_removed:
        rows.append((Text("Hosts removed", "dim"), _t(", ".join(delta.hosts_removed))))
    if rows:
        parts.append(_fields(rows, indent=2))
    else:
        parts.append(Text("  Nothing changed.", "dim"))
    parts.append(Text(""))
    return parts


def _verdict(report: ScanReport) -> Text:
    """The last line: outcome and exit code, the deciding counts, hosts not scanned."""
    code = report.exit_code()
    counts = report.counts()
    line = f"{code.name}: {EXIT_CODE_MEANINGS[code]} (exit code {int(code)})"
    deciding = [f"{counts[s]} {s.value}" for s in (Status.FAIL, Status.ERROR) if counts[s]]
    failed = len(report.failed_hosts())
    if failed:
        deciding.append(f"{plural(failed, 'host')} not scanned")
    if counts[Status.WAIVED]:
        # Never deciding, but a clean exit code must not hide accepted risks.
        deciding.append(f"{counts[Status.WAIVED]} WAIVED (accepted, not failing)")
    if deciding:
        line += "; " + ", ".join(deciding)
    return Text.assemble(("Verdict: ", "bold"), (line, _VERDICT_STYLES[code]))


def _rstrip(line: list[Segment]) -> list[Segment]:
    """A rendered line without its trailing spaces (rich pads table cells to their width)."""
    out = list(line)
    while out and not out[-1].control:
        last = out[-1]
        text = last.text.rstrip(" ")
        if text:
            out[-1] = Segment(text, last.style)
            break
        out.pop()
    return out


def _emit(console: Console, renderable: RenderableType) -> None:
    """Print `renderable` line by line, without trailing spaces."""
    segments: list[Segment] = []
    for line in console.render_lines(renderable, pad=False):
        segments += _rstrip(line)
        segments.append(Segment.line())
    console.print(Segments(segments), end="")


def render_terminal(report: ScanReport, console: Console) -> None:
    """Print the report to `console`, fitting `console.width` (plain text when not a TTY)."""
    blank = Text("")
    parts: list[RenderableType | None] = [_header(report), blank, _attention(report), blank]
    parts += _matrix(report, console.width)
    parts.append(_counts(report))
    parts.append(blank)
    parts += _delta(report)
    parts += _problems(report, Status.FAIL, "FAIL - not compliant")
    parts += _problems(report, Status.ERROR, "ERROR - could not be evaluated")
    parts += _waived(report)
    parts += _manual(report)
    parts += _waivers(report)
    parts.append(Rule(style="dim"))
    parts.append(_verdict(report))
    for part in parts:
        if part is not None:
            _emit(console, part)
