"""Helpers shared by the reporters: timestamps, evidence values, and making text safe to show.

Evidence comes from the scanned hosts, so it is untrusted: it may hold control characters (a
terminal escape sequence, a bell), bidirectional overrides, or characters XML 1.0 cannot carry.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Set
from datetime import UTC, datetime
from typing import Any

from agent.model import STATUS_ORDER, CheckMeta, Result, Status
from agent.report.model import Delta, WaiverState

#: Characters XML 1.0 cannot carry at all (§2.2 Char), even as character references.
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: Characters that must not reach a terminal raw: C0 controls except tab and newline, DEL, C1
#: controls, bidirectional embeddings/overrides/isolates (U+202A-E, U+2066-9), lone surrogates,
#: and the XML-illegal non-characters U+FFFE/U+FFFF.
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]"
)

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with control and bidi-override characters shown as ``\\xNN``/``\\uNNNN``.

    Tabs and newlines are kept; everything else that could move the cursor, change colours,
    ring a bell or reorder text on a terminal is made visible instead of acted upon.
    """
    return _UNPRINTABLE.sub(_escape_char, text)


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 forbids, each replaced by a visible ``\\xNN``."""
    return _XML_ILLEGAL.sub(_escape_char, text)


def utc_iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix; microseconds only when there are some."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def utc_human(moment: datetime) -> str:
    """``2024-05-01 12:00:00 UTC``, for people."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data: mappings become dicts with string keys, tuples and sets
    become lists (sets sorted by their text), non-finite floats and anything else become strings,
    and lone surrogates in strings are replaced, so serialisation can never fail."""
    kind = type(value)
    # The exact types a report is made of first (a 1,000-host report is 180,000 values).
    if kind is str:
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if kind is dict:
        return {
            k if type(k) is str and k.isascii() else jsonable(str(k)): jsonable(v)
            for k, v in value.items()
        }
    if kind is list or kind is tuple:
        return [jsonable(v) for v in value]
    if value is None or kind is bool or kind is int:
        return value
    return _jsonable_other(value)


def _jsonable_other(value: Any) -> Any:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {jsonable(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, Set):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        return [jsonable(v) for v in value]
    return jsonable(str(value))


def format_value(value: Any) -> str:
    """An evidence value as one line of text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), ensure_ascii=False, sort_keys=True)


def evidence_lines(evidence: Mapping[str, Any]) -> list[str]:
    """``key: value`` lines for a result's evidence, in the order the check gave them."""
    return [f"{key}: {format_value(value)}" for key, value in evidence.items()]


def worst_first(results: Iterable[Result], check: Callable[[str], CheckMeta]) -> list[Result]:
    """Results sorted by severity (critical first), then status (FAIL first), then check id;
    the original order (the engine's target order) is kept within a check."""
    status_rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    return sorted(
        results,
        key=lambda r: (check(r.check_id).severity.rank, status_rank[r.status], r.check_id),
    )


def worst_status(statuses: Iterable[Status]) -> Status | None:
    """The worst of `statuses` in `STATUS_ORDER`, or None if there are none."""
    ranked = sorted(statuses, key=STATUS_ORDER.index)
    return ranked[0] if ranked else None


def plural(n: int, word: str) -> str:
    """``1 host``, ``2 hosts``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def waiver_expiry(state: WaiverState) -> str:
    """When a waiver expires, in words: ``expires 2024-05-04 (in 3 days)``, ``expires 2024-05-01
    (today is its last day)``, or ``expired on 2024-04-01 — no longer applies``."""
    expires = state.waiver.expires.isoformat()
    if state.state == "expired":
        return f"expired on {expires} — no longer applies"
    if state.days_left == 0:
        return f"expires {expires} (today is its last day)"
    return f"expires {expires} (in {plural(state.days_left, 'day')})"


def waiver_summary(state: WaiverState) -> str:
    """One line about a waiver, e.g. ``check-id on adfs* expires 2024-05-04 (in 3 days);
    approved by Jane Doe``, with ``; matched nothing`` for an unused one."""
    waiver = state.waiver
    line = f"{waiver.check_id} on {waiver.hosts} {waiver_expiry(state)}"
    line += f"; approved by {waiver.approver}"
    if state.state == "unused":
        line += "; matched nothing"
    return line


def delta_summary(delta: Delta) -> str:
    """One line: ``Since scan #41 (2024-04-30 12:00:00 UTC): 1 new failure, 2 fixed, …``."""
    parts = [
        plural(len(delta.new_failures), "new failure"),
        f"{len(delta.fixed)} fixed",
        f"{len(delta.still_failing)} still failing",
        plural(len(delta.new_errors), "new error"),
        f"{len(delta.newly_waived)} newly waived",
        plural(len(delta.hosts_added), "host") + " added",
        plural(len(delta.hosts_removed), "host") + " removed",
    ]
    return (
        f"Since scan #{delta.previous_scan_id} ({utc_human(delta.previous_started_at)}): "
        + ", ".join(parts)
    )
