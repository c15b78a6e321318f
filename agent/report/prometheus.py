"""The Prometheus report: metrics for node_exporter's textfile collector.

Write it with ``--format prometheus`` into the collector's directory (node_exporter
``--collector.textfile.directory``); the file is ``mfa-agent.prom`` and is replaced atomically
(the temporary file ends in ``.tmp``, which the collector ignores). Unlike the other report files
(0600) a new ``mfa-agent.prom`` is created 0644 so node_exporter's user can read it
(`agent.report.writer.FILE_MODES`); a replaced file keeps its mode.

The text is produced by prometheus-client (a fresh `CollectorRegistry` and `generate_latest`,
exposition format 0.0.4, no timestamps as the textfile collector requires). Every metric is a
gauge:

``mfa_agent_check_status{check, target, severity, status}``
    One-hot: for each check and target, one series per status (FAIL, ERROR, WAIVED, MANUAL,
    SKIP, PASS), 1 for the result's status and 0 for the others (the convention of
    kube-state-metrics' ``kube_pod_status_phase``), so ``mfa_agent_check_status{status="FAIL"}
    == 1`` selects the failures and a change of status never leaves a stale 1 behind. When a
    check gave several results for one target, its worst status is used.
``mfa_agent_results{status}``
    Number of results per status (every status, zeros included).
``mfa_agent_compliance_ratio``, ``mfa_agent_compliance_accepted_ratio``
    The compliance score, 0 to 1: PASS / (PASS + FAIL + ERROR + WAIVED), and (PASS + WAIVED) /
    the same (see `agent.report.model.Compliance`); absent when nothing was evaluated.
``mfa_agent_exit_code``
    The scan's exit code: 0 compliant, 1 at least one FAIL, 2 at least one ERROR.
``mfa_agent_scan_duration_seconds``
    Wall-clock duration of the scan.
``mfa_agent_last_scan_timestamp_seconds``
    When this scan finished (Unix time).
``mfa_agent_last_successful_scan_timestamp_seconds``
    When the last *successful* scan finished. A scan is successful when it completed and
    produced a report, i.e. ended with exit code 0, 1 or 2 (findings are not a failure of the
    scan); a scan that could not run (exit 3, a crash) writes no report, so the file keeps the
    previous value. A reporter only knows its own report, which always comes from a completed
    scan, so this is this scan's finish time. Alert on ``time() -
    mfa_agent_last_successful_scan_timestamp_seconds > 26 * 3600`` for a nightly scan.
``mfa_agent_hosts{state}``, ``mfa_agent_host_scanned{host}``
    Hosts scanned / not scanned (unreachable, authentication refused, timeout), and per host 1
    or 0.
``mfa_agent_waivers{state}``, ``mfa_agent_waivers_expiring_soon``,
``mfa_agent_waiver_days_left{check, hosts}``
    Waivers per state (active, expired, unused), how many in force expire within 14 days, and
    the days left of each (negative once expired; the smallest when two waivers cover the same
    check and hosts).
``mfa_agent_changes_since_last_scan{change}``
    Only when the history knows a previous scan: new_failures, fixed, still_failing,
    new_errors, newly_waived, hosts_added, hosts_removed.
``mfa_agent_scan_id``
    The history id of this scan, when recorded.
``mfa_agent_scan_info{agent_version, mode, inventory, inventory_digest}``
    Always 1; the scan's context as labels.

Label values go through `printable`: host names, check ids and waiver patterns come from files
people edit, and a control character or a lone surrogate must not break the exposition format or
its UTF-8 encoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.model import STATUS_ORDER, Status
from agent.report._text import printable, worst_status
from agent.report.model import ScanReport

#: Prefix of every metric name.
PREFIX: Final = "mfa_agent"

#: The waiver states, in the order their series are written.
WAIVER_STATES: Final = ("active", "expired", "unused")


def _label(value: object) -> str:
    return printable(str(value))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


class _ReportCollector(Collector):
    """Yields the metrics of one `ScanReport`; registered on a fresh registry per rendering."""

    def __init__(self, report: ScanReport) -> None:
        self.report = report

    def describe(self) -> Iterable[Metric]:
        """Nothing: the registry need not know the names in advance (no duplicate check)."""
        return ()

    def collect(self) -> Iterator[Metric]:
        """Every metric of the report, in the order the module docstring lists them."""
        report = self.report
        statuses: dict[tuple[str, str], list[Status]] = {}
        for result in report.results:
            statuses.setdefault((result.check_id, result.target), []).append(result.status)
        check_status = GaugeMetricFamily(
            f"{PREFIX}_check_status",
            "Status of a check on a target, one-hot: 1 for its status, 0 for the others.",
            labels=("check", "target", "severity", "status"),
        )
        for (check_id, target), found in statuses.items():
            worst = worst_status(found)
            severity = report.check(check_id).severity.value
            for status in STATUS_ORDER:
                check_status.add_metric(
                    [_label(check_id), _label(target), severity, status.value],
                    1.0 if status is worst else 0.0,
                )
        yield check_status

        results = GaugeMetricFamily(
            f"{PREFIX}_results", "Number of results with each status.", labels=("status",)
        )
        for status, n in report.counts().items():
            results.add_metric([status.value], n)
        yield results

        compliance = report.compliance()
        if compliance.score is not None and compliance.accepted is not None:
            yield _gauge(
                "compliance_ratio",
                "Compliance score: PASS / (PASS + FAIL + ERROR + WAIVED); SKIP and MANUAL not "
                "counted.",
                compliance.score,
            )
            yield _gauge(
                "compliance_accepted_ratio",
                "(PASS + WAIVED) / (PASS + FAIL + ERROR + WAIVED): compliant or accepted by a "
                "waiver.",
                compliance.accepted,
            )

        yield _gauge(
            "exit_code",
            "Exit code of the scan: 0 compliant, 1 at least one FAIL, 2 at least one ERROR, "
            "130 interrupted.",
            int(report.exit_code()),
        )
        duration = max(0.0, (report.finished_at - report.started_at).total_seconds())
        yield _gauge("scan_duration_seconds", "Wall-clock duration of the scan.", duration)
        finished = report.finished_at.timestamp()
        yield _gauge(
            "last_scan_timestamp_seconds", "When the last scan finished (Unix time).", finished
        )
        if not report.interrupted:
            yield _gauge(
                "last_successful_scan_timestamp_seconds",
                "When the last scan that completed (exit code 0, 1 or 2) finished (Unix time).",
                finished,
            )

        failed = {h.name for h in report.failed_hosts()}
        hosts = GaugeMetricFamily(
            f"{PREFIX}_hosts", "Inventory hosts scanned or not scanned.", labels=("state",)
        )
        hosts.add_metric(["scanned"], len(report.hosts) - len(failed))
        hosts.add_metric(["not_scanned"], len(failed))
        yield hosts
        per_host = GaugeMetricFamily(
            f"{PREFIX}_host_scanned",
            "1 if the host could be scanned, 0 if not (unreachable, authentication refused, "
            "timeout).",
            labels=("host",),
        )
        seen_hosts: set[str] = set()
        for host in report.hosts:
            if host.name not in seen_hosts:
                seen_hosts.add(host.name)
                per_host.add_metric([_label(host.name)], 0.0 if host.name in failed else 1.0)
        yield per_host

        waivers = GaugeMetricFamily(
            f"{PREFIX}_waivers", "Waivers of the waivers file per state.", labels=("state",)
        )
        for state in WAIVER_STATES:
            waivers.add_metric([state], sum(1 for w in report.waivers if w.state == state))
        yield waivers
        yield _gauge(
            "waivers_expiring_soon",
            "Waivers in force that expire within 14 days.",
            len(report.waivers_expiring_soon()),
        )
        days_left: dict[tuple[str, str], int] = {}
        for w in report.waivers:
            key = (_label(w.waiver.check_id), _label(w.waiver.hosts))
            days_left[key] = min(w.days_left, days_left.get(key, w.days_left))
        waiver_days = GaugeMetricFamily(
            f"{PREFIX}_waiver_days_left",
            "Days until a waiver expires (negative once expired).",
            labels=("check", "hosts"),
        )
        for (check_id, pattern), days in days_left.items():
            waiver_days.add_metric([check_id, pattern], days)
        yield waiver_days

        delta = report.delta
        if delta is not None:
            changes = GaugeMetricFamily(
                f"{PREFIX}_changes_since_last_scan",
                "What changed since the previous scan of the same inventory.",
                labels=("change",),
            )
            for change, n in (
                ("new_failures", len(delta.new_failures)),
                ("fixed", len(delta.fixed)),
                ("still_failing", len(delta.still_failing)),
                ("new_errors", len(delta.new_errors)),
                ("newly_waived", len(delta.newly_waived)),
                ("hosts_added", len(delta.hosts_added)),
                ("hosts_removed", len(delta.hosts_removed)),
            ):
                changes.add_metric([change], n)
            yield changes
        if report.scan_id is not None:
            yield _gauge("scan_id", "History id of this scan.", report.scan_id)

        info = InfoMetricFamily(f"{PREFIX}_scan", "The scan's context.")
        info.add_metric(
            [],
            {
                "agent_version": _label(report.agent_version),
                "mode": _label(report.mode),
                "inventory": _label(report.inventory or ""),
                "inventory_digest": _label(report.inventory_digest or ""),
            },
        )
        yield info


def render_prometheus(report: ScanReport) -> str:
    """The report as Prometheus text exposition (format 0.0.4) for node_exporter's textfile
    collector: metrics listed in the module docstring, rendered by prometheus-client from a fresh
    registry (nothing global is touched)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReportCollector(report))
    return generate_latest(registry).decode("utf-8")
