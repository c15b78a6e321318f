"""The JSON report: a versioned document for machines.

It is described, field by field, by the JSON Schema `agent/schemas/report.schema.json`.

The document is ``{"schema": "mfa-agent/report", "version": 1, ...}``. Within a version, fields
are only ever added; a field that changes meaning or disappears bumps `version`. Added within
version 1 (optional in the schema, always written by this module): the WAIVED status and count,
``summary.compliance``, ``scan_id``, ``waivers``, ``delta`` and each result's ``waiver``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any, Final

from agent.model import CheckMeta, Result, Status, Waiver
from agent.report._text import jsonable, utc_iso
from agent.report.model import Compliance, Delta, DeltaItem, HostSummary, ScanReport, WaiverState

#: The ``schema`` value that identifies an mfa-agent report.
SCHEMA_NAME: Final = "mfa-agent/report"
#: The document version this module writes.
SCHEMA_VERSION: Final = 1


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the document `render_json` writes."""
    text = resources.files("agent").joinpath("schemas/report.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _host(host: HostSummary) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": host.address,
        "roles": list(host.roles),
        "connection": host.connection,
        "trust_notes": list(host.trust_notes),
        "error": host.error,
    }


def _check(meta: CheckMeta) -> dict[str, Any]:
    return {
        "id": meta.id,
        "title": meta.title,
        "severity": meta.severity.value,
        "roles": list(meta.roles),
        "scope": meta.scope.value,
        "guidance": {
            "quote": meta.guidance.quote,
            "source": meta.guidance.source,
            "notes": meta.guidance.notes,
        },
        "remediation": meta.remediation,
        "references": list(meta.references),
    }


def _waiver(waiver: Waiver) -> dict[str, Any]:
    return {
        "check_id": waiver.check_id,
        "hosts": waiver.hosts,
        "justification": waiver.justification,
        "approver": waiver.approver,
        "expires": waiver.expires.isoformat(),
        "source": waiver.source,
    }


def _waiver_state(state: WaiverState) -> dict[str, Any]:
    return {
        "waiver": _waiver(state.waiver),
        "state": state.state,
        "days_left": state.days_left,
        "expiring_soon": state.expiring_soon,
        "waived": [{"check_id": c, "target": t} for c, t in state.waived],
    }


def _status(status: Status | None) -> str | None:
    return None if status is None else status.value


def _delta_items(items: tuple[DeltaItem, ...]) -> list[dict[str, Any]]:
    return [
        {
            "check_id": item.check_id,
            "target": item.target,
            "before": _status(item.before),
            "after": _status(item.after),
        }
        for item in items
    ]


def delta_document(delta: Delta | None) -> dict[str, Any] | None:
    """A delta as the JSON report (and ``mfa-agent diff --format json``) write it."""
    if delta is None:
        return None
    return {
        "previous_scan_id": delta.previous_scan_id,
        "previous_started_at": utc_iso(delta.previous_started_at),
        "new_failures": _delta_items(delta.new_failures),
        "fixed": _delta_items(delta.fixed),
        "still_failing": _delta_items(delta.still_failing),
        "new_errors": _delta_items(delta.new_errors),
        "newly_waived": _delta_items(delta.newly_waived),
        "hosts_added": list(delta.hosts_added),
        "hosts_removed": list(delta.hosts_removed),
    }


def _compliance(compliance: Compliance) -> dict[str, Any]:
    return {
        "score": compliance.score,
        "accepted": compliance.accepted,
        "passed": compliance.passed,
        "failed": compliance.failed,
        "errored": compliance.errored,
        "waived": compliance.waived,
        "evaluated": compliance.evaluated,
    }


def _result(report: ScanReport, result: Result) -> dict[str, Any]:
    return {
        "check_id": result.check_id,
        "target": result.target,
        "status": result.status.value,
        "severity": report.check(result.check_id).severity.value,
        "reason": result.reason,
        "evidence": dict(result.evidence),
        "waiver": None if result.waiver is None else _waiver(result.waiver),
    }


def report_document(report: ScanReport) -> dict[str, Any]:
    """The report as plain JSON data (what `render_json` serialises)."""
    result: dict[str, Any] = jsonable(_document(report))
    return result


def _document(report: ScanReport) -> dict[str, Any]:
    """The report's fields, the results as an iterator (built one at a time when laid out)."""
    inventory = (
        None
        if report.inventory is None and report.inventory_digest is None
        else {"path": report.inventory, "digest": report.inventory_digest}
    )
    return {
        "schema": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "agent_version": report.agent_version,
        "mode": report.mode,
        "started_at": utc_iso(report.started_at),
        "finished_at": utc_iso(report.finished_at),
        "inventory": inventory,
        "facts_source": report.facts_source,
        "summary": {
            "counts": {status.value: n for status, n in report.counts().items()},
            "exit_code": int(report.exit_code()),
            "verdict": report.verdict(),
            "compliance": _compliance(report.compliance()),
        },
        "hosts": [_host(h) for h in report.hosts],
        "checks": [_check(c) for c in report.checks],
        "results": (_result(report, r) for r in report.results),
        "warnings": list(report.warnings),
        "scan_id": report.scan_id,
        "scope": report.scope,
        "interrupted": report.interrupted,
        "waivers": [_waiver_state(w) for w in report.waivers],
        "delta": delta_document(report.delta),
    }


def render_json(report: ScanReport) -> str:
    """The report as a JSON document (UTF-8 text, ending with a newline): one top-level field
    per line, and one host, check or result per line within its list — readable, greppable,
    and written by the json module's C encoder (an indented dump goes through its pure-Python
    encoder: 0.2 s for a 1,000-host report).

    Evidence values that are not JSON data (sets, non-finite floats, other objects) are
    converted to lists or strings rather than failing the report.
    """
    return layout(_document(report))


#: What ``json.dumps(..., ensure_ascii=False, allow_nan=False)`` would build for every item.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def _compact(value: Any) -> str:
    return _ENCODER.encode(jsonable(value))


def layout(document: Mapping[str, Any]) -> str:
    """`document` as text: a field per line, the items of a list (tuple, iterator) a line each.

    Each item is made plain JSON data (`jsonable`) and encoded on its own, and the text is
    joined once: a 10,000-host report never exists as a second whole document, nor as text
    more than twice (the pieces, then the document).
    """
    pieces = ["{"]
    for key, value in document.items():
        pieces.append(f"\n  {_compact(str(key))}: " if len(pieces) == 1
                      else f",\n  {_compact(str(key))}: ")
        if isinstance(value, list | tuple | Iterator):
            first = len(pieces)
            for item in value:
                pieces.append(",\n    " if len(pieces) > first else "[\n    ")
                pieces.append(_compact(item))
            pieces.append("\n  ]" if len(pieces) > first else "[]")
        else:
            pieces.append(_compact(value))
    pieces.append("\n}\n")
    return "".join(pieces)
