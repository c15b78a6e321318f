"""The JSON report: a versioned document for machines.

It is described, field by field, by the JSON Schema `agent/schemas/report.schema.json`.

The document is ``{"schema": "mfa-agent/report", "version": 1, ...}``. Within a version, fields
are only ever added; a field that changes meaning or disappears bumps `version`.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

from agent.model import CheckMeta, Result
from agent.report._text import jsonable, utc_iso
from agent.report.model import HostSummary, ScanReport

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


def _result(report: ScanReport, result: Result) -> dict[str, Any]:
    return {
        "check_id": result.check_id,
        "target": result.target,
        "status": result.status.value,
        "severity": report.check(result.check_id).severity.value,
        "reason": result.reason,
        "evidence": dict(result.evidence),
    }


def report_document(report: ScanReport) -> dict[str, Any]:
    """The report as plain JSON data (what `render_json` serialises)."""
    inventory = (
        None
        if report.inventory is None and report.inventory_digest is None
        else {"path": report.inventory, "digest": report.inventory_digest}
    )
    document = {
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
        },
        "hosts": [_host(h) for h in report.hosts],
        "checks": [_check(c) for c in report.checks],
        "results": [_result(report, r) for r in report.results],
        "warnings": list(report.warnings),
    }
    result: dict[str, Any] = jsonable(document)
    return result


def render_json(report: ScanReport) -> str:
    """The report as a JSON document (UTF-8 text, indented, ending with a newline).

    Evidence values that are not JSON data (sets, non-finite floats, other objects) are
    converted to lists or strings rather than failing the report.
    """
    return json.dumps(report_document(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
