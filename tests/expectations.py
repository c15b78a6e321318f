"""What a scan of a simulated lab must show, derived from the declarations instead of kept by hand.

A lab's expected results are the checks evaluated in-process over the facts its profiles hold
(`agent.lab.simulate.fact_entries`, the very entries the simulated hosts print), the same way the
engine evaluates a live scan; hosts whose faults keep them from being read are host errors. A
transport test then asserts that the scan over WinRM or SSH arrives at exactly these results.
Which check reads which fact comes from the checks' own ``facts=`` declarations.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agent.engine import evaluate
from agent.facts import Declared, DirectoryView, Fleet, HostError, HostFacts
from agent.factscripts import SCRIPTS, scripts_for
from agent.lab import LabDefinition, load_lab, load_profile
from agent.lab.profiles import HostProfile
from agent.lab.simulate import fact_entries
from agent.registry import load_catalogue

#: Fault switches that keep a host from being read at all.
UNREADABLE_FAULTS = ("wrong_password", "hang", "reset", "wsman_fault", "slow_seconds")
SCRIPT_OF_FACT = {fact: script.name for script in SCRIPTS for fact in script.facts}


def _declared(lab_vars: Mapping[str, Any]) -> Declared:
    networks = lab_vars.get("mfa_networks", {})
    return Declared(
        perimeter=tuple(ipaddress.ip_network(n) for n in networks.get("perimeter", [])),
        internal=tuple(ipaddress.ip_network(n) for n in networks.get("internal", [])),
    )


def host_facts(profile: HostProfile, lab_vars: Mapping[str, Any] | None = None) -> HostFacts:
    """The host as a scan that read it would see it (every fault ignored)."""
    now = dt.datetime.now(dt.UTC)
    roles = frozenset(profile.roles)
    names = tuple(f for s in scripts_for(roles) for f in s.facts)
    entries = fact_entries(profile, names, now)
    clock = entries.get("clock", {}).get("value")
    if isinstance(clock, dict):
        clock["agent_utc"] = now.isoformat()
    return HostFacts(name=profile.name, roles=roles, address=profile.address,
                     declared=_declared(lab_vars or {}), facts=entries)


def lab_statuses(
    lab: LabDefinition, hosts: Iterable[str] | None = None
) -> dict[str, dict[str, str]]:
    """Host → check id → status the lab must yield (unread hosts: every check ERROR)."""
    chosen = [h for h in lab.hosts if hosts is None or h.name in set(hosts)]
    fleet_hosts = []
    for profile in chosen:
        facts = host_facts(profile, lab.inventory_vars)
        if any(getattr(profile.faults, fault) for fault in UNREADABLE_FAULTS):
            facts = HostFacts(name=facts.name, roles=facts.roles, address=facts.address,
                              declared=facts.declared, error=HostError("unread", "unread"))
        fleet_hosts.append(facts)
    fleet = Fleet(hosts=tuple(fleet_hosts), directory=DirectoryView(),
                  deployment=dict(lab.inventory_vars.get("mfa_deployment", {})))
    statuses: dict[str, dict[str, str]] = {h.name: {} for h in chosen}
    for result in evaluate(load_catalogue(), fleet):
        if result.target in statuses:
            statuses[result.target][result.check_id] = result.status.value
    return statuses


def profile_statuses(profile: Path) -> dict[str, str]:
    """Check id → status one host of a fault lab must yield when it is read."""
    lab = load_lab(profile.parent)
    host = next(h for h in lab.hosts if Path(h.source) == profile)
    fleet = Fleet(hosts=(host_facts(host, lab.inventory_vars),))
    return {r.check_id: r.status.value for r in evaluate(load_catalogue(), fleet)
            if r.target == host.name}


def check_facts(profile: Path) -> dict[str, str]:
    """Check id → the fact whose absence makes it an ERROR, on the host of `profile` (checks that
    need more, such as a directory, and read nothing here are left out). Among a check's declared
    facts (``facts=``) the first that errs it is taken, in script order."""
    lab = load_lab(profile.parent)
    host = host_facts(next(h for h in lab.hosts if Path(h.source) == profile), lab.inventory_vars)
    checks = [c for c in load_catalogue() if c.facts]
    found: dict[str, str] = {}
    for fact in host.facts:
        without = {k: v for k, v in host.facts.items() if k != fact}
        fleet = Fleet(hosts=(HostFacts(name=host.name, roles=host.roles, address=host.address,
                                       declared=host.declared, facts=without),))
        for result in evaluate([c for c in checks if fact in c.facts], fleet):
            if result.target == host.name and result.evidence.get("fact") == fact:
                found.setdefault(result.check_id, fact)
    return found


def failing_scripts(profile: Path) -> frozenset[str]:
    """The fact scripts that fail on the host of `profile` because of its script faults: every
    script of its roles for a PowerShell error or garbage output, those whose command line is
    longer than its ``max_command_line`` otherwise."""
    host = load_profile(profile)
    scripts = scripts_for(frozenset(host.roles))
    if host.faults.powershell_error or host.faults.garbage_output:
        return frozenset(s.name for s in scripts)
    return frozenset(s.name for s in scripts
                     if len(s.command_line()) > host.faults.max_command_line)
