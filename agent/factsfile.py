"""The facts file: a documented, versioned JSON record of everything a scan gathered.

``mfa-agent scan --save-facts FILE`` writes one; ``mfa-agent scan --replay FILE`` evaluates the
checks from one with no network at all. The file is self-contained — it also records each host's
roles, address and declared networks, the directory settings and the declared deployment — so a
replay needs no inventory; given one (``-i``), the inventory's declarations win and only the
gathered facts are taken from the file.

Format, version 1 (JSON object)::

    {
      "schema": "mfa-agent/facts",          # constant
      "version": 1,                          # bumped on incompatible change
      "agent_version": "0.1.0",
      "collected_at": "2026-11-28T03:00:00Z",
      "inventory": {"path": "...", "digest": "sha256:..."} | null,
      "deployment": { ...mfa_deployment as declared... },
      "directory": {
        "configured": bool,
        "group_name": "PhoneFactor Admins",
        "allowed_members": [str] | null,
        "entry": {"value": {...directory facts...}} | {"error": "why"} | null
      },
      "hosts": {
        "<inventory name>": {
          "address": str,
          "roles": [str],
          "declared": {"perimeter": [CIDR], "internal": [CIDR], "clock_skew_max_seconds": int},
          "error": {"kind": str, "message": str} | null,    # the host could not be scanned
          "facts": {"<fact>": {"value": {...}} | {"error": "why"}}
        }
      }
    }

Fact value shapes are documented in `agent.facts`. They are checked lazily by the checks, so a
fact of the wrong shape is an ERROR on that host, not a rejected file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent import __version__, strictjson
from agent.errors import FactsFileError, Problem
from agent.facts import Declared, DirectoryView, HostError, HostFacts, IPNetwork
from agent.safeio import UnreadableFile, read_regular_file

SCHEMA = "mfa-agent/facts"
VERSION = 1
_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class FactsFile:
    """A loaded (or about to be saved) facts file."""

    hosts: tuple[HostFacts, ...]
    directory: DirectoryView = field(default_factory=DirectoryView)
    deployment: Mapping[str, Any] = field(default_factory=dict)
    collected_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    agent_version: str = __version__
    inventory_path: str | None = None
    inventory_digest: str | None = None
    source: str | None = None
    _by_name: dict[str, HostFacts] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {h.name: h for h in self.hosts})

    def host(self, name: str) -> HostFacts | None:
        """The recorded host of that inventory name, if any."""
        return self._by_name.get(name)


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with a trailing Z, second precision."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_document(facts: FactsFile) -> dict[str, Any]:
    """The JSON document of a facts file."""
    inventory = None
    if facts.inventory_path is not None:
        inventory = {"path": facts.inventory_path, "digest": facts.inventory_digest}
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "agent_version": facts.agent_version,
        "collected_at": iso_utc(facts.collected_at),
        "inventory": inventory,
        "deployment": dict(facts.deployment),
        "directory": {
            "configured": facts.directory.configured,
            "group_name": facts.directory.group_name,
            "allowed_members": (
                None
                if facts.directory.allowed_members is None
                else list(facts.directory.allowed_members)
            ),
            "entry": None if facts.directory.entry is None else dict(facts.directory.entry),
        },
        "hosts": {
            h.name: {
                "address": h.address,
                "roles": sorted(h.roles),
                "declared": {
                    "perimeter": [str(n) for n in h.declared.perimeter],
                    "internal": [str(n) for n in h.declared.internal],
                    "clock_skew_max_seconds": h.declared.clock_skew_max_seconds,
                },
                "error": (
                    None if h.error is None else {"kind": h.error.kind, "message": h.error.message}
                ),
                "facts": dict(h.facts),
            }
            for h in facts.hosts
        },
    }


def dumps(facts: FactsFile) -> str:
    """Serialise a facts file (stable key order, indented for diffs) as strict JSON.

    A NaN or infinite number anywhere is refused (`ValueError`) rather than written as the
    ``NaN``/``Infinity`` that other JSON parsers reject.
    """
    # ASCII with escapes: a string from a host (even a lone surrogate) always serialises.
    return strictjson.dumps(to_document(facts), indent=2) + "\n"


def load(path: str | Path) -> FactsFile:
    """Read and validate a facts file; any problem raises `FactsFileError` naming file and key.

    Only a regular file is read (a FIFO or device is refused before it is opened), and only
    strict JSON is accepted: no NaN/Infinity, integers of at most
    `strictjson.MAX_INT_DIGITS` digits, nesting at most `strictjson.MAX_DEPTH` deep.
    """
    name = str(path)
    try:
        raw = read_regular_file(Path(path), _MAX_BYTES)
    except UnreadableFile as exc:
        raise FactsFileError(Problem(name, f"cannot read the facts file: {exc.reason}")) from None
    try:
        document = strictjson.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise FactsFileError(Problem(name, "the facts file is not UTF-8 text")) from None
    except strictjson.StrictJsonError as exc:
        raise FactsFileError(Problem(name, exc.message, line=exc.line)) from None
    return parse(document, name)


class _Reader:
    """Walks the document, collecting problems instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, message, key=key))

    def mapping(self, value: Any, key: str) -> Mapping[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(key, f"expected an object, got {_json_type(value)}")
            return None
        return value

    def keys(
        self, value: Mapping[str, Any], key: str, allowed: set[str], required: set[str]
    ) -> None:
        for k in value:
            if k not in allowed:
                self.problem(f"{key}.{k}" if key else k, "unknown key")
        for k in sorted(required - set(value)):
            self.problem(f"{key}.{k}" if key else k, "required key is missing")

    def string(self, value: Any, key: str, nullable: bool = False) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {_json_type(value)}")
            return None
        return value

    def networks(self, value: Any, key: str) -> tuple[IPNetwork, ...]:
        if not isinstance(value, list):
            self.problem(key, f"expected a list of networks, got {_json_type(value)}")
            return ()
        out: list[IPNetwork] = []
        for i, item in enumerate(value):
            try:
                out.append(ipaddress.ip_network(item, strict=False))
            except (ValueError, TypeError):
                self.problem(f"{key}[{i}]", f"not a network in CIDR notation: {item!r}"[:200])
        return tuple(out)

    def entry(self, value: Any, key: str) -> Mapping[str, Any] | None:
        """A fact entry: exactly one of value / error (a string)."""
        entry = self.mapping(value, key)
        if entry is None:
            return None
        if set(entry) == {"value"}:
            return entry
        if set(entry) == {"error"} and isinstance(entry["error"], str):
            return entry
        self.problem(key, 'expected {"value": ...} or {"error": "message"}')
        return None


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def parse(document: Any, file: str = "<facts>") -> FactsFile:
    """Validate a decoded facts document and build the `FactsFile`."""
    r = _Reader(file)
    top = r.mapping(document, "(top level)")
    if top is None:
        raise FactsFileError(r.problems)
    if top.get("schema") != SCHEMA:
        r.problem("schema", f"not an mfa-agent facts file (expected schema {SCHEMA!r})")
        raise FactsFileError(r.problems)
    if top.get("version") != VERSION:
        r.problem(
            "version",
            f"unsupported facts file version {top.get('version')!r}; "
            f"this agent reads version {VERSION}",
        )
        raise FactsFileError(r.problems)
    r.keys(
        top,
        "",
        {
            "schema",
            "version",
            "agent_version",
            "collected_at",
            "inventory",
            "deployment",
            "directory",
            "hosts",
        },
        {"hosts"},
    )
    collected_at = _timestamp(r, top.get("collected_at"))
    agent_version = r.string(top.get("agent_version", "unknown"), "agent_version") or "unknown"
    inv_path, inv_digest = _inventory(r, top.get("inventory"))
    deployment = r.mapping(top.get("deployment", {}), "deployment") or {}
    directory = _directory(r, top.get("directory"))
    hosts = _hosts(r, top.get("hosts"))
    if r.problems:
        raise FactsFileError(r.problems)
    return FactsFile(
        hosts=hosts,
        directory=directory,
        deployment=deployment,
        collected_at=collected_at,
        agent_version=agent_version,
        inventory_path=inv_path,
        inventory_digest=inv_digest,
        source=file,
    )


def _timestamp(r: _Reader, value: Any) -> datetime:
    if value is None:
        return datetime.now(UTC)
    text = r.string(value, "collected_at")
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        r.problem("collected_at", f"not an ISO-8601 timestamp: {text!r}"[:200])
        return datetime.now(UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        r.problem("collected_at", f"out of range: {text!r}"[:200])
        return datetime.now(UTC)


def _inventory(r: _Reader, value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    inv = r.mapping(value, "inventory")
    if inv is None:
        return None, None
    r.keys(inv, "inventory", {"path", "digest"}, {"path"})
    return r.string(inv.get("path"), "inventory.path"), r.string(
        inv.get("digest"), "inventory.digest", nullable=True
    )


def _directory(r: _Reader, value: Any) -> DirectoryView:
    if value is None:
        return DirectoryView()
    d = r.mapping(value, "directory")
    if d is None:
        return DirectoryView()
    r.keys(d, "directory", {"configured", "group_name", "allowed_members", "entry"}, set())
    configured = d.get("configured", False)
    if not isinstance(configured, bool):
        r.problem("directory.configured", f"expected a boolean, got {_json_type(configured)}")
        configured = False
    group = r.string(d.get("group_name", "PhoneFactor Admins"), "directory.group_name")
    allowed_raw = d.get("allowed_members")
    allowed: tuple[str, ...] | None = None
    if allowed_raw is not None:
        if isinstance(allowed_raw, list) and all(isinstance(a, str) for a in allowed_raw):
            allowed = tuple(allowed_raw)
        else:
            r.problem("directory.allowed_members", "expected a list of strings or null")
    entry = None
    if d.get("entry") is not None:
        entry = r.entry(d["entry"], "directory.entry")
    return DirectoryView(
        configured=configured,
        group_name=group or "PhoneFactor Admins",
        allowed_members=allowed,
        entry=entry,
    )


def _hosts(r: _Reader, value: Any) -> tuple[HostFacts, ...]:
    hosts = r.mapping(value, "hosts")
    if hosts is None:
        return ()
    out: list[HostFacts] = []
    for name, raw in hosts.items():
        key = f"hosts[{name!r}]"
        host = r.mapping(raw, key)
        if host is None:
            continue
        r.keys(host, key, {"address", "roles", "declared", "error", "facts"}, {"facts"})
        address = r.string(host.get("address", name), f"{key}.address") or name
        roles_raw = host.get("roles", [])
        if not (isinstance(roles_raw, list) and all(isinstance(x, str) for x in roles_raw)):
            r.problem(f"{key}.roles", "expected a list of role names")
            roles_raw = []
        declared = _declared(r, host.get("declared"), f"{key}.declared")
        error = None
        if host.get("error") is not None:
            err = r.mapping(host["error"], f"{key}.error")
            if err is not None:
                r.keys(err, f"{key}.error", {"kind", "message"}, {"kind", "message"})
                kind = r.string(err.get("kind"), f"{key}.error.kind")
                message = r.string(err.get("message"), f"{key}.error.message")
                if kind is not None and message is not None:
                    error = HostError(kind, message)
        facts: dict[str, Any] = {}
        raw_facts = r.mapping(host.get("facts", {}), f"{key}.facts")
        for fact, entry in (raw_facts or {}).items():
            checked = r.entry(entry, f"{key}.facts.{fact}")
            if checked is not None:
                facts[fact] = checked
        out.append(
            HostFacts(
                name=name,
                roles=frozenset(roles_raw),
                address=address,
                declared=declared,
                facts=facts,
                error=error,
            )
        )
    return tuple(out)


def _declared(r: _Reader, value: Any, key: str) -> Declared:
    if value is None:
        return Declared()
    d = r.mapping(value, key)
    if d is None:
        return Declared()
    r.keys(d, key, {"perimeter", "internal", "clock_skew_max_seconds"}, set())
    skew = d.get("clock_skew_max_seconds", 300)
    if not isinstance(skew, int) or isinstance(skew, bool) or skew <= 0:
        r.problem(f"{key}.clock_skew_max_seconds", "expected a positive integer")
        skew = 300
    return Declared(
        perimeter=r.networks(d.get("perimeter", []), f"{key}.perimeter"),
        internal=r.networks(d.get("internal", []), f"{key}.internal"),
        clock_skew_max_seconds=skew,
    )
