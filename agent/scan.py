"""A scan from start to finish: choose hosts and checks, get facts, evaluate, build the report.

Facts come from a facts file (replay) or from live connectors (WinRM, LDAP); either way they
end up as the same `HostFacts`, so the engine and reporters do not know which it was.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent import __version__
from agent.connectors.errors import ConnectorError
from agent.engine import HostResults, evaluate, select_checks
from agent.errors import InputError, Problem
from agent.facts import DirectoryView, Fleet, HostError, HostFacts
from agent.factsfile import FactsFile
from agent.gather import Gathered, GatherOptions, gather
from agent.history import History, inventory_key, stored_results
from agent.inventory import DirectorySettings, Host, Inventory
from agent.model import Waiver
from agent.registry import Check, load_catalogue
from agent.report.model import HostSummary, ScanReport
from agent.roles import SWEEP
from agent.waivers import apply_waivers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanRun:
    """What a scan produced: the report, and the facts it was evaluated from (for --save-facts)."""

    report: ScanReport
    facts: FactsFile


@dataclass(frozen=True)
class ScanOptions:
    """What the user asked for on the command line."""

    include: Sequence[str] = ()
    skip: Sequence[str] = ()
    limit: Sequence[str] = ()
    #: --sweep: also read the base facts of every Windows host in scope without a role.
    sweep: bool = False

    def scope(self) -> str:
        """How the scan is narrowed, as options (``""`` for everything); history compares only
        scans of the same scope."""
        parts = [f"--limit {p}" for p in sorted(self.limit)]
        parts += [f"--check {c}" for c in sorted(self.include)]
        parts += [f"--skip-check {c}" for c in sorted(self.skip)]
        parts += ["--sweep"] if self.sweep else []
        return " ".join(parts)


def select_hosts(inventory: Inventory, options: ScanOptions) -> tuple[Host, ...]:
    """The hosts a scan reads: ``--limit`` (hosts, groups, roles) over the inventory.

    No false green: when none of them has a role, nothing would be checked, so that is an input
    error that says how roles are assigned and which groups the inventory has.
    """
    selected = inventory.select(options.limit) if options.limit else inventory.hosts
    if options.sweep:
        selected = tuple(_swept(h) for h in selected)
    if not any(h.roles for h in selected):
        scope = f" selected by --limit {','.join(options.limit)}" if options.limit else ""
        sweep = " (nor a Windows host --sweep could read)" if options.sweep else ""
        raise InputError(
            Problem(
                str(inventory.path),
                f"no host{scope} has an MFA role{sweep}, so the scan would check nothing: "
                + inventory.roles_help(),
            )
        )
    return selected


def _swept(host: Host) -> Host:
    """A host without a role that --sweep reads the base facts of (role `SWEEP`)."""
    if host.roles or host.unusable_connection is not None:
        return host
    return dataclasses.replace(host, roles=frozenset({SWEEP}))


def sweep_notes(selected: Sequence[Host]) -> tuple[str, ...]:
    """What --sweep read, and the hosts in scope it could not (not Windows over WinRM/SSH)."""
    swept = sum(1 for h in selected if SWEEP in h.roles)
    skipped = [h for h in selected if not h.roles and h.unusable_connection is not None]
    notes = [f"--sweep: read the base facts of {swept} host(s) without a role"]
    if skipped:
        listed = ", ".join(f"{h.name} ({h.unusable_connection})" for h in skipped[:20])
        more = f", … ({len(skipped)} in all)" if len(skipped) > 20 else ""
        notes.append(f"--sweep: not swept (not Windows over WinRM or SSH): {listed}{more}")
    return tuple(notes)


def host_facts_from_inventory(host: Host, recorded: HostFacts | None, source: str) -> HostFacts:
    """An inventory host with the facts recorded for it (or an ERROR if none were)."""
    if recorded is None:
        error: HostError | None = HostError(
            "no-facts", f"no facts recorded for this host in {source}"
        )
        facts = {}
    else:
        error, facts = recorded.error, dict(recorded.facts)
    return HostFacts(
        name=host.name,
        roles=host.roles,
        address=host.address,
        declared=host.declared,
        facts=facts,
        error=error,
    )


def directory_view(inventory: Inventory, entry: object | None) -> DirectoryView:
    """The directory as declared by the inventory, with gathered facts when there are some."""
    settings = inventory.directory
    return DirectoryView(
        configured=settings is not None,
        group_name=settings.group if settings is not None else "PhoneFactor Admins",
        allowed_members=inventory.phonefactor_admins_allowed,
        entry=entry if isinstance(entry, dict) else None,
    )


def _select_recorded(
    hosts: tuple[HostFacts, ...], patterns: Sequence[str]
) -> tuple[HostFacts, ...]:
    """--limit over a facts file without an inventory: names, roles, or globs of names."""
    if not patterns:
        return hosts
    wanted = [p for raw in patterns for p in raw.replace(":", ",").split(",") if p]
    chosen = tuple(
        h for h in hosts if any(p in h.roles or fnmatch.fnmatchcase(h.name, p) for p in wanted)
    )
    if not chosen:
        raise InputError(
            Problem(
                "<arguments>", f"--limit {','.join(wanted)} matches no recorded host", key="--limit"
            )
        )
    return chosen


def replay(facts: FactsFile, inventory: Inventory | None, options: ScanOptions) -> ScanRun:
    """Evaluate the checks over a facts file, declarations from `inventory` when given."""
    started = datetime.now(UTC)
    checks = select_checks(load_catalogue(), options.include, options.skip)
    source = facts.source or "the facts file"
    if inventory is not None:
        selected = select_hosts(inventory, options)
        if selected and facts.hosts and all(facts.host(h.name) is None for h in selected):
            recorded = ", ".join(h.name for h in facts.hosts[:5])
            more = f", … ({len(facts.hosts)} in all)" if len(facts.hosts) > 5 else ""
            raise InputError(
                Problem(
                    source,
                    "none of the inventory's hosts is in this facts file "
                    f"(it holds {recorded}{more}): is it the facts file of another inventory?",
                )
            )
        hosts = tuple(host_facts_from_inventory(h, facts.host(h.name), source) for h in selected)
        fleet = Fleet(
            hosts=hosts,
            directory=directory_view(inventory, facts.directory.entry),
            deployment=inventory.deployment,
            outside_scope=inventory.outside_scope(selected),
        )
        summaries = tuple(_summary(h, hf) for h, hf in zip(selected, hosts, strict=True))
        warnings = tuple(inventory.warnings)
    else:
        hosts = _select_recorded(facts.hosts, options.limit)
        chosen = {h.name for h in hosts}
        outside: dict[str, list[str]] = {}
        for kept in facts.hosts:
            if kept.name not in chosen:
                for role in kept.roles:
                    outside.setdefault(role, []).append(kept.name)
        fleet = Fleet(
            hosts=hosts,
            directory=facts.directory,
            deployment=facts.deployment,
            outside_scope={role: tuple(names) for role, names in outside.items()},
        )
        summaries = tuple(
            HostSummary(
                name=h.name,
                address=h.address,
                roles=tuple(sorted(h.roles)),
                connection="replay",
                error=None if h.error is None else h.error.message,
            )
            for h in hosts
        )
        warnings = ()
    return _report(
        mode="replay",
        started=started,
        checks=checks,
        fleet=fleet,
        summaries=summaries,
        inventory=inventory,
        facts_source=source,
        warnings=warnings,
        inventory_path=facts.inventory_path,
        inventory_digest=facts.inventory_digest,
        collected_at=facts.collected_at,
        scope=options.scope(),
    )


def service_accounts(hosts: Sequence[HostFacts]) -> list[str]:
    """The AD FS service log-on accounts the AD FS nodes reported (to look up in the directory)."""
    accounts: list[str] = []
    for host in hosts:
        entry = host.facts.get("adfs") if host.error is None else None
        value = entry.get("value") if isinstance(entry, dict) else None
        account = value.get("service_account") if isinstance(value, dict) else None
        if isinstance(account, str) and account and account not in accounts:
            accounts.append(account)
    return accounts


def gather_directory(settings: DirectorySettings, accounts: Sequence[str]) -> dict[str, Any]:
    """The directory entry of a live scan: ``{"value": facts}`` or ``{"error": why}``."""
    try:
        from agent.connectors.directory import read_directory  # ldap3: only with a directory

        return {"value": read_directory(settings, accounts)}
    except ConnectorError as exc:
        return {"error": exc.message}
    except Exception as exc:  # a bug must cost the directory checks, not the scan
        log.error("reading the directory failed unexpectedly")
        log.debug("traceback", exc_info=True)
        return {"error": f"internal error reading the directory: {type(exc).__name__}"}


#: A gather step: `agent.gather.gather`, or `agent.distributed.dispatch.ZoneGather` (workers).
Gatherer = Callable[
    [Sequence[Host], GatherOptions, Callable[[HostFacts], None] | None], Gathered
]


def live(
    inventory: Inventory,
    options: ScanOptions,
    gather_options: GatherOptions,
    on_done: Callable[[HostFacts], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    gatherer: Gatherer | None = None,
) -> ScanRun:
    """Connect to the inventory's hosts, gather their facts and evaluate the checks.

    With a `gatherer` other than the local one, the hosts' secrets are the gatherer's business
    (workers hold them): only the directory's must be available here.
    """
    started = datetime.now(UTC)
    checks = select_checks(load_catalogue(), options.include, options.skip)
    selected = select_hosts(inventory, options)
    problems = inventory.missing_secrets(selected if gatherer is None else ())
    if problems:
        raise InputError(problems)
    if on_start is not None:
        on_start(len(selected))
    ready = HostResults(checks)

    def read(host: HostFacts) -> None:
        ready.add(host)
        if on_done is not None:
            on_done(host)

    gathered = (gatherer or _local_gather)(selected, gather_options, read)
    entry = None
    interrupted = gathered.interrupted
    if inventory.directory is not None and not interrupted:
        try:
            entry = gather_directory(inventory.directory, service_accounts(gathered.hosts))
        except KeyboardInterrupt:
            interrupted = True
            entry = {"error": "scan interrupted before the directory was read"}
    fleet = Fleet(
        hosts=gathered.hosts,
        directory=directory_view(inventory, entry),
        deployment=inventory.deployment,
        outside_scope=inventory.outside_scope(selected),
    )
    by_name = {h.name: h for h in gathered.hosts}
    summaries = tuple(
        _summary(h, by_name[h.name], gathered.notes.get(h.name, ())) for h in selected
    )
    warnings = tuple(inventory.warnings)
    if options.sweep:
        warnings += sweep_notes(selected)
    if inventory.directory is not None:
        warnings += tuple(f"directory: {note}" for note in inventory.directory.trust_notes())
    if interrupted:
        warnings += ("the scan was interrupted: what was not yet read is reported as ERROR",)
    run = _report(
        mode="live",
        started=started,
        checks=checks,
        fleet=fleet,
        summaries=summaries,
        inventory=inventory,
        facts_source=None,
        warnings=warnings,
        scope=options.scope(),
        interrupted=interrupted,
        ready=ready,
    )
    return run


def _local_gather(
    hosts: Sequence[Host],
    options: GatherOptions,
    on_done: Callable[[HostFacts], None] | None,
) -> Gathered:
    return gather(hosts, options, on_done=on_done)


def _summary(host: Host, facts: HostFacts, notes: tuple[str, ...] = ()) -> HostSummary:
    return HostSummary(
        name=host.name,
        address=host.address,
        roles=tuple(sorted(host.roles)),
        connection=host.connection.describe(),
        trust_notes=host.connection.trust_notes() + notes,
        error=None if facts.error is None else facts.error.message,
    )


def _report(
    *,
    mode: str,
    started: datetime,
    checks: tuple[Check, ...],
    fleet: Fleet,
    summaries: tuple[HostSummary, ...],
    inventory: Inventory | None,
    facts_source: str | None,
    warnings: tuple[str, ...],
    inventory_path: str | None = None,
    inventory_digest: str | None = None,
    collected_at: datetime | None = None,
    scope: str = "",
    interrupted: bool = False,
    ready: HostResults | None = None,
) -> ScanRun:
    results = evaluate(checks, fleet, ready)
    if inventory is not None:
        inventory_path, inventory_digest = str(inventory.path), inventory.digest
    facts = FactsFile(
        hosts=fleet.hosts,
        directory=fleet.directory,
        deployment=fleet.deployment,
        collected_at=collected_at or started,
        inventory_path=inventory_path,
        inventory_digest=inventory_digest,
    )
    report = ScanReport(
        agent_version=__version__,
        mode=mode,
        started_at=started,
        finished_at=datetime.now(UTC),
        inventory=inventory_path,
        inventory_digest=inventory_digest,
        facts_source=facts_source,
        hosts=summaries,
        checks=tuple(c.meta for c in checks),
        results=results,
        warnings=warnings,
        scope=scope,
        interrupted=interrupted,
    )
    return ScanRun(report=report, facts=facts)


def finalize(
    report: ScanReport, waivers: Sequence[Waiver] = (), history: History | None = None
) -> ScanReport:
    """Apply the waivers, then compare with and record into the history (when given)."""
    if waivers:
        today = report.started_at.astimezone(UTC).date()
        results, states = apply_waivers(report.results, waivers, today)
        report = dataclasses.replace(report, results=results, waivers=states)
    if history is not None:
        previous = history.previous(inventory_key(report), report.scope)
        delta = None
        if previous is not None:
            delta = history.delta(previous, stored_results(report), [h.name for h in report.hosts])
        report = dataclasses.replace(report, delta=delta, scan_id=history.record(report))
    return report
