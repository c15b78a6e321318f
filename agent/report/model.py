"""The report model: everything a reporter renders, built once by the engine after a scan.

Reporters are pure functions of a `ScanReport` (they render, they never decide): the exit code,
the counts, the verdict and the order of targets are all defined here, so every format agrees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import ClassVar, Final, Literal

from agent.errors import ExitCode
from agent.model import STATUS_ORDER, CheckMeta, Result, Status, Waiver
from agent.roles import DEPLOYMENT_TARGET, DIRECTORY_TARGET

#: The scan modes a report can come from.
MODES: Final[tuple[str, ...]] = ("replay", "live")

#: What each exit code a scan can end with means, in words (used by every reporter's verdict).
EXIT_CODE_MEANINGS: Final[Mapping[ExitCode, str]] = MappingProxyType(
    {
        ExitCode.OK: "no check failed and none errored",
        ExitCode.FAIL: "at least one check failed",
        ExitCode.ERROR: "no check failed, but at least one could not be evaluated",
        ExitCode.INTERRUPTED: "the scan was stopped before every host was read; partial results",
    }
)


@dataclass(frozen=True)
class HostSummary:
    """One inventory host in the scan, as the reports describe it."""

    name: str
    address: str
    #: The host's roles (inventory groups), e.g. ``("adfs",)``.
    roles: tuple[str, ...]
    #: How facts were obtained, e.g. ``"winrm/ntlm over https:5986"`` or ``"replay"``.
    connection: str
    #: Insecure settings explicitly turned on for this host (e.g. "TLS certificate validation
    #: disabled"). Every report format shows them.
    trust_notes: tuple[str, ...] = ()
    #: A host-level failure (unreachable, authentication refused, timeout), if any.
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", tuple(self.roles))
        object.__setattr__(self, "trust_notes", tuple(self.trust_notes))


WaiverStateName = Literal["active", "expired", "unused"]


@dataclass(frozen=True)
class WaiverState:
    """A waiver of the waivers file and what it did in this scan."""

    waiver: Waiver
    #: active: in force (it may still have matched nothing that failed); expired: past its
    #: date, applied to nothing; unused: in force but its check/hosts matched no result at all.
    state: WaiverStateName
    #: Days until it expires (negative once expired), counted in UTC from the scan's start.
    days_left: int
    #: Results it turned from FAIL into WAIVED, as ``(check_id, target)``.
    waived: tuple[tuple[str, str], ...] = ()

    @property
    def expiring_soon(self) -> bool:
        """In force, and expires within 14 days."""
        return self.state != "expired" and self.days_left <= EXPIRY_WARNING_DAYS


#: Waivers expiring within this many days are flagged in every report.
EXPIRY_WARNING_DAYS: Final = 14


@dataclass(frozen=True)
class DeltaItem:
    """One result that changed (or stayed failing) since the previous scan."""

    check_id: str
    target: str
    before: Status | None
    after: Status | None


@dataclass(frozen=True)
class Delta:
    """What changed since the previous scan of the same inventory."""

    previous_scan_id: int
    previous_started_at: datetime
    new_failures: tuple[DeltaItem, ...] = ()
    fixed: tuple[DeltaItem, ...] = ()
    still_failing: tuple[DeltaItem, ...] = ()
    new_errors: tuple[DeltaItem, ...] = ()
    #: FAIL before, WAIVED now: an accepted risk, not a fix, so it is shown on its own.
    newly_waived: tuple[DeltaItem, ...] = ()
    hosts_added: tuple[str, ...] = ()
    hosts_removed: tuple[str, ...] = ()

    def changes(self) -> tuple[tuple[str, tuple[DeltaItem, ...]], ...]:
        """The result changes as (label, items), most pressing first."""
        return (
            ("New failure", self.new_failures),
            ("New error", self.new_errors),
            ("Newly waived", self.newly_waived),
            ("Fixed", self.fixed),
            ("Still failing", self.still_failing),
        )


@dataclass(frozen=True)
class Compliance:
    """The headline compliance score of a scan, defined once so that every format agrees.

    ``score = PASS / (PASS + FAIL + ERROR + WAIVED)``, over the results the agent evaluated:

    - PASS is the only status that counts as compliant;
    - FAIL and ERROR count against (an ERROR is a result the agent could not vouch for, so an
      unreachable host can never raise the score);
    - WAIVED counts against too: a waiver is an accepted risk, not a fix. It is shown separately
      as `accepted` = ``(PASS + WAIVED) / evaluated``;
    - SKIP (does not apply) and MANUAL (needs a human attestation the agent cannot read) are
      left out of both numerator and denominator.

    `score` is None when nothing was evaluated (no PASS, FAIL, ERROR or WAIVED result).
    """

    passed: int
    failed: int
    errored: int
    waived: int

    @property
    def evaluated(self) -> int:
        """The denominator: PASS + FAIL + ERROR + WAIVED results."""
        return self.passed + self.failed + self.errored + self.waived

    @property
    def score(self) -> float | None:
        """PASS / evaluated, in [0, 1]; None when nothing was evaluated."""
        return self.passed / self.evaluated if self.evaluated else None

    @property
    def accepted(self) -> float | None:
        """(PASS + WAIVED) / evaluated: the share that is compliant or an accepted risk."""
        return (self.passed + self.waived) / self.evaluated if self.evaluated else None

    @staticmethod
    def percent(value: float | None) -> str:
        """``66.6%``: rounded *down* to one decimal (99.96% is never shown as 100.0%);
        ``n/a`` for None."""
        if value is None:
            return "n/a"
        tenths = math.floor(round(value * 1000, 6))
        return f"{tenths // 10}.{tenths % 10}%"

    #: The definition in words, shown by the reports next to the score.
    DEFINITION: ClassVar[str] = (
        "Compliance score = PASS / (PASS + FAIL + ERROR + WAIVED) over the results the agent "
        "evaluated. A FAIL accepted by a waiver (WAIVED) still counts against the score: a "
        "waiver accepts a risk, it does not remove it. ERROR (could not be evaluated) counts "
        "against too. SKIP (does not apply) and MANUAL (needs a human attestation) are not "
        "counted. The score is rounded down to one decimal."
    )


@dataclass(frozen=True)
class ScanReport:
    """The outcome of one scan: its context, the checks run and every result.

    Raises `ValueError` on construction if the report is inconsistent: an unknown `mode`, naive
    timestamps, duplicate check ids, or a result whose check is not among `checks`.
    """

    agent_version: str
    #: ``"replay"`` (facts read from a file) or ``"live"`` (facts gathered from the hosts).
    mode: str
    #: Timezone-aware; reporters render them in UTC.
    started_at: datetime
    finished_at: datetime
    #: Path of the inventory file, and a digest of its content, when one was used.
    inventory: str | None
    inventory_digest: str | None
    #: Where facts came from in replay mode (a facts file), or None.
    facts_source: str | None
    #: Inventory hosts in the scan, in inventory order.
    hosts: tuple[HostSummary, ...]
    #: The checks that were run.
    checks: tuple[CheckMeta, ...]
    results: tuple[Result, ...]
    #: Scan-wide warnings (inventory oddities, options that weaken the scan, …).
    warnings: tuple[str, ...] = ()
    #: Every waiver of the waivers file (``--waivers``) and what it did; empty without one.
    waivers: tuple[WaiverState, ...] = ()
    #: The change since the previous scan of the same inventory (history), if there was one.
    delta: Delta | None = None
    #: The history database's id of this scan, once recorded.
    scan_id: int | None = None
    #: The user stopped the scan (Ctrl-C): hosts not yet read carry an "interrupted" error.
    interrupted: bool = False
    #: How the scan was narrowed (``--limit``, ``--check``, ``--skip-check``), "" for all of it.
    #: Only scans of the same scope are compared with each other.
    scope: str = ""
    _by_id: dict[str, CheckMeta] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _counts: dict[Status, int] = field(init=False, repr=False, compare=False, default_factory=dict)
    _targets: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    _by_target: dict[str, tuple[Result, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _hosts: dict[str, HostSummary] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        for name in ("hosts", "checks", "results", "warnings", "waivers"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.mode not in MODES:
            raise ValueError(f"report mode must be one of {MODES}, not {self.mode!r}")
        for name in ("started_at", "finished_at"):
            if getattr(self, name).utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware")
        by_id: dict[str, CheckMeta] = {}
        for meta in self.checks:
            if meta.id in by_id:
                raise ValueError(f"check listed twice in the report: {meta.id}")
            by_id[meta.id] = meta
        unknown = sorted({r.check_id for r in self.results} - by_id.keys())
        if unknown:
            raise ValueError(f"results for checks not in the report: {', '.join(unknown)}")
        object.__setattr__(self, "_by_id", by_id)
        # Derived once: reporters ask for these per target, and a fleet has thousands of targets.
        counts = dict.fromkeys(STATUS_ORDER, 0)
        by_target: dict[str, list[Result]] = {}
        for result in self.results:
            counts[result.status] += 1
            by_target.setdefault(result.target, []).append(result)
        ordered = [h.name for h in self.hosts if h.name in by_target]
        ordered += [t for t in (DIRECTORY_TARGET, DEPLOYMENT_TARGET) if t in by_target]
        listed = set(ordered)
        ordered += [t for t in by_target if t not in listed]  # in order of first appearance
        object.__setattr__(self, "_counts", counts)
        object.__setattr__(self, "_targets", tuple(ordered))
        object.__setattr__(self, "_by_target", {t: tuple(rs) for t, rs in by_target.items()})
        object.__setattr__(self, "_hosts", {h.name: h for h in self.hosts})

    def check(self, check_id: str) -> CheckMeta:
        """The metadata of a check that was run; `KeyError` if it was not."""
        return self._by_id[check_id]

    def counts(self) -> dict[Status, int]:
        """Number of results per status, every status present (zeros included), worst first."""
        return dict(self._counts)

    def results_for(self, target: str) -> tuple[Result, ...]:
        """The results of one target, in report order."""
        return self._by_target.get(target, ())

    def compliance(self) -> Compliance:
        """The headline compliance score's inputs (see `Compliance` for the definition)."""
        counts = self.counts()
        return Compliance(
            passed=counts[Status.PASS],
            failed=counts[Status.FAIL],
            errored=counts[Status.ERROR],
            waived=counts[Status.WAIVED],
        )

    def waivers_expiring_soon(self) -> tuple[WaiverState, ...]:
        """Waivers in force that expire within `EXPIRY_WARNING_DAYS`, soonest first."""
        soon = [w for w in self.waivers if w.expiring_soon]
        return tuple(sorted(soon, key=lambda w: w.days_left))

    def failed_hosts(self) -> tuple[HostSummary, ...]:
        """Hosts with a host-level error (unreachable, authentication refused, timeout)."""
        return tuple(h for h in self.hosts if h.error is not None)

    def exit_code(self) -> ExitCode:
        """`ExitCode.FAIL` if any result FAILed; else `ExitCode.ERROR` if any result is an ERROR
        or any host could not be scanned; else `ExitCode.OK`. WAIVED results never change the
        exit code (a waived FAIL is an accepted risk).

        A host-level error counts as an ERROR even when it produced no result (a host whose roles
        no selected check applies to), so an unreachable host can never yield a clean exit.
        """
        if self.interrupted:
            return ExitCode.INTERRUPTED
        counts = self.counts()
        if counts[Status.FAIL]:
            return ExitCode.FAIL
        if counts[Status.ERROR] or self.failed_hosts():
            return ExitCode.ERROR
        return ExitCode.OK

    def targets(self) -> tuple[str, ...]:
        """Targets that have results: hosts in inventory order, then `(directory)` and
        `(deployment)`, then any other target (e.g. the engine's `(fleet)` for a fleet check
        that crashed, or a host not in `hosts`) in order of first appearance."""
        return self._targets

    def host(self, name: str) -> HostSummary | None:
        """The inventory host called `name`, or None (for `(directory)`, `(deployment)`, …)."""
        return self._hosts.get(name)

    def verdict(self) -> str:
        """One line saying how the scan ended, what the exit code means, and the counts.

        e.g. ``FAIL: at least one check failed (exit code 1); 2 FAIL, 1 ERROR, 3 MANUAL, 9 PASS
        on 4 targets``.
        """
        code = self.exit_code()
        parts = [f"{n} {status.value}" for status, n in self.counts().items() if n]
        n_targets = len(self.targets())
        counts = ", ".join(parts) if parts else "no results"
        counts += f" on {n_targets} target{'' if n_targets == 1 else 's'}"
        failed = len(self.failed_hosts())
        if failed:
            counts += f"; {failed} host{'' if failed == 1 else 's'} could not be scanned"
        return f"{code.name}: {EXIT_CODE_MEANINGS[code]} (exit code {int(code)}); {counts}"
