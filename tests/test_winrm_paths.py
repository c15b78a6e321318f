"""Differential test: the fast WS-Management client and pywinrm read the same facts and errors.

Both engines scan the same lab processes (the built-in lab, its https twin, and every fault lab
of tests/data/lab-faults) through `agent.gather.gather`: once with the default fast path, once
with ``fast_winrm=False`` (every host through pywinrm, one thread each). For every host, the facts
(the clock's two timestamps aside, which are read at different moments) and the host error (kind
and message) must be identical. The one expected difference is the command-line-limit fault:
its host refuses lines over 5,000 characters, which pywinrm's one-script-per-line path passes
and the fast path's one line for every script (about 2,700 characters) does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.connectors.common import Timeouts
from agent.facts import HostFacts
from agent.factscripts import bundle, scripts_for
from agent.gather import GatherOptions, gather
from agent.inventory import load_inventory

pytest.register_assert_rewrite("labfixtures")  # before importing it: its helpers assert
from labfixtures import LabProcess  # noqa: E402

pytest_plugins = ("labfixtures",)
pytestmark = pytest.mark.needs_server

UseLab = Callable[[LabProcess], str]
#: Long enough for slow-within-deadline (two 1.5 s commands through pywinrm), short for a hang.
TIMEOUTS = Timeouts(connect=2.0, operation=1, host=6.0)


def _comparable(host: HostFacts) -> tuple[dict[str, Any], tuple[str, str] | None]:
    facts = dict(host.facts)
    clock = facts.get("clock")
    if isinstance(clock, dict) and isinstance(clock.get("value"), dict):
        facts["clock"] = {"value": sorted(clock["value"])}  # which keys, not when
    error = (host.error.kind, host.error.message) if host.error else None
    return facts, error


def _both(lab: LabProcess) -> tuple[dict[str, Any], dict[str, Any]]:
    hosts = load_inventory(lab.inventory).hosts
    fast = gather(hosts, GatherOptions(timeouts=TIMEOUTS))
    slow = gather(hosts, GatherOptions(timeouts=TIMEOUTS, fast_winrm=False))
    return ({h.name: _comparable(h) for h in fast.hosts},
            {h.name: _comparable(h) for h in slow.hosts})


def test_the_builtin_lab_reads_the_same_both_ways(builtin_lab: LabProcess,
                                                  use_lab: UseLab) -> None:
    use_lab(builtin_lab)
    fast, slow = _both(builtin_lab)
    assert list(fast) == builtin_lab.hosts
    assert fast == slow
    read = [name for name, (facts, error) in fast.items() if error is None and facts]
    failed = [name for name, (_, error) in fast.items() if error is not None]
    assert read and failed  # both kinds of host are compared, not only one


def test_the_https_lab_reads_the_same_both_ways(builtin_https_lab: LabProcess,
                                                use_lab: UseLab) -> None:
    use_lab(builtin_https_lab)
    before = builtin_https_lab.stats()
    fast, slow = _both(builtin_https_lab)
    after = builtin_https_lab.stats()
    assert fast == slow
    verified = sum(after[h].get("channel_bindings_verified", 0)
                   - before[h].get("channel_bindings_verified", 0) for h in after)
    assert verified >= 2 * sum(1 for _, error in fast.values() if error is None)


@pytest.mark.parametrize("case", [
    "wrong-password", "slow-within-deadline", "slow-past-deadline", "hang", "reset",
    "wsman-fault", "powershell-error", "garbage-output", "split-output",
])
def test_every_fault_reads_the_same_both_ways(
    case: str, fault_labs: dict[str, LabProcess], use_lab: UseLab
) -> None:
    lab = fault_labs[case]
    use_lab(lab)
    fast, slow = _both(lab)
    assert fast == slow, case


def test_the_command_line_limit_is_the_one_expected_difference(
    fault_labs: dict[str, LabProcess], use_lab: UseLab
) -> None:
    lab = fault_labs["command-line-limit"]
    use_lab(lab)
    fast, slow = _both(lab)
    faulty, healthy = "faulty.lab.example", "healthy.lab.example"
    assert fast[healthy] == slow[healthy]
    roles = next(h.roles for h in load_inventory(lab.inventory).hosts if h.name == faulty)
    assert len(bundle.command_line(scripts_for(roles))) < 5000
    assert fast[faulty][1] is None
    assert not any("error" in entry for entry in fast[faulty][0].values())
    too_long = [fact for fact, entry in slow[faulty][0].items()
                if "command line is too long" in entry.get("error", "")]
    assert too_long  # pywinrm's longer per-script line was refused
