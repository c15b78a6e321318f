"""Host profiles: what one simulated Windows host is, answers and gets wrong.

A lab directory holds one ``*.yaml`` file per host plus an optional ``_lab.yaml`` of
inventory-wide variables (``mfa_networks``, ``mfa_deployment``, …) that `Lab.write_inventory`
puts under ``all.vars``. Files whose names start with ``_`` are never host profiles.

A host profile starts from the healthy base host of one role and states only what differs::

    name: adfs01.lab.example
    address: 127.0.1.11          # loopback address the host's WS-Management server listens on
    extends: adfs                # the base host: every fact its scripts read, healthy
    roles: [adfs]                # inventory groups (agent.roles); default: [the extended role]
    facts:                       # what differs from the base, key by key within a fact
      os: {caption: ..., version: "6.2.9200", build_number: "9200"}
    fact_errors:                 # optional: reads that fail on this host
      adfs_providers: "Get-AdfsAuthenticationProvider : Access is denied."
    clock_skew_seconds: 0        # the computed clock fact is now + skew
    faults:                      # all optional, default off
      wrong_password: false      # 401 to every credential
      slow_seconds: 0            # each command takes this long (Receive: w:TimedOut meanwhile)
      hang: false                # read the request, never answer
      reset: false               # reset the TCP connection on the first request
      wsman_fault: false         # Create(shell) answers a w:AccessDenied SOAP fault
      powershell_error: false    # scripts fail: CLIXML error on stderr, exit 1 (a string: its text)
      garbage_output: false      # stdout is not JSON
      max_command_line: 8191     # longer command lines fail as cmd.exe's would
      split_output_bytes: 0      # > 0: stdout comes in Receives of at most this many bytes

The base host of a role reports the first (healthy) example of every fact the role's scripts read
(`agent.factscripts.FACTS`), so a new fact needs no profile unless a scenario is about it. Without
``extends`` a profile states every fact itself. Loading is strict: unknown keys, wrong types,
duplicate keys, unknown roles or facts, a fact value that does not fit its declared schema, a
``clock`` value (it is computed) and addresses outside loopback are all `InputError` problems
naming the file, line and key.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from agent.errors import InputError, Problem
from agent.factschema import validate
from agent.factscripts import FACTS, MAX_COMMAND_LINE, SCRIPTS, fact, scripts_for
from agent.roles import ROLES

#: Every fact some script emits.
KNOWN_FACTS: Final[frozenset[str]] = frozenset(f for s in SCRIPTS for f in s.facts)
#: Facts the lab computes rather than reads from the profile.
COMPUTED_FACTS: Final[frozenset[str]] = frozenset(f.name for f in FACTS if f.computed)
#: The file of inventory-wide variables in a lab directory.
LAB_VARS_FILE: Final = "_lab.yaml"
#: Inventory variables the lab writes itself; ``_lab.yaml`` may not set them.
GENERATED_VARS: Final[frozenset[str]] = frozenset(
    {
        "ansible_host",
        "ansible_port",
        "ansible_user",
        "ansible_password",
        "ansible_connection",
        "ansible_winrm_transport",
        "ansible_winrm_scheme",
        "ansible_winrm_ca_trust_path",
        "ansible_winrm_server_cert_validation",
    }
)
MAX_FILE_BYTES: Final = 1024 * 1024

_HOSTNAME: Final = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_VAR_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS: Final = frozenset(
    {"name", "address", "extends", "roles", "facts", "fact_errors", "clock_skew_seconds",
     "faults"}
)


def base_facts(role: str) -> dict[str, Any]:
    """The healthy base host of `role`: the first example of every fact its scripts read."""
    names = [f for s in scripts_for(frozenset({role})) for f in s.facts]
    declared = (fact(name) for name in names)
    return {d.name: dict(d.healthy) for d in declared if d is not None and not d.computed}


@dataclass(frozen=True)
class Faults:
    """Misbehaviour switches of one host; the defaults are a healthy host."""

    wrong_password: bool = False
    slow_seconds: float = 0.0
    hang: bool = False
    reset: bool = False
    wsman_fault: bool = False
    #: False, True (a default error text) or the error text itself.
    powershell_error: bool | str = False
    garbage_output: bool = False
    max_command_line: int = MAX_COMMAND_LINE
    split_output_bytes: int = 0


_FAULT_KEYS: Final = frozenset(Faults.__dataclass_fields__)


@dataclass(frozen=True)
class HostProfile:
    """One simulated Windows host."""

    name: str
    address: str
    roles: tuple[str, ...] = ()
    #: Fact name → value, as a script would report it inside ``{"value": ...}``.
    facts: Mapping[str, Any] = field(default_factory=dict)
    #: Fact name → error message, as a script would report it inside ``{"error": ...}``.
    fact_errors: Mapping[str, str] = field(default_factory=dict)
    clock_skew_seconds: float = 0.0
    faults: Faults = field(default_factory=Faults)
    #: The file it was read from ("<memory>" when built in code).
    source: str = "<memory>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))
        object.__setattr__(self, "fact_errors", MappingProxyType(dict(self.fact_errors)))


@dataclass(frozen=True)
class LabDefinition:
    """A whole lab: its hosts and the inventory-wide variables."""

    directory: Path
    hosts: tuple[HostProfile, ...]
    inventory_vars: Mapping[str, Any] = field(default_factory=dict)

    def host(self, name: str) -> HostProfile:
        """The host of that name (KeyError if none)."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)


def builtin_profiles_dir() -> Path:
    """The directory of the built-in lab shipped with the package."""
    return Path(__file__).resolve().parent / "profiles"


# -- YAML with lines -----------------------------------------------------------------------------


class _Doc:
    """A parsed YAML file that knows the line of each key path (``faults.hang``)."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.file = str(path)
        self.problems = problems
        self.lines: dict[str, int] = {}
        self.data: Any = None
        #: Whether the file could not be read or parsed (a problem says why).
        self.unreadable = True
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self.problem(f"cannot read the file: {exc.strerror or exc}")
            return
        if len(raw) > MAX_FILE_BYTES:
            self.problem(f"the file is larger than {MAX_FILE_BYTES} bytes")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.problem("the file is not UTF-8 text")
            return
        # libyaml when present: a 10,000-host lab loads in seconds, not a minute.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                self._walk(node, "")
                self.data = loader.construct_document(node)
            self.unreadable = False
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else None
            self.problem(f"invalid YAML: {exc.problem or exc.context or 'syntax error'}", line)
            self.data = None
        except yaml.YAMLError as exc:
            self.problem(f"invalid YAML: {type(exc).__name__}")
            self.data = None
        finally:
            loader.dispose()

    def _walk(self, node: Node, path: str) -> None:
        if isinstance(node, MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                where = f"{path}.{key}" if path else key
                if key in seen:
                    self.problem("duplicate key", key_node.start_mark.line + 1, where)
                seen.add(key)
                self.lines.setdefault(where, key_node.start_mark.line + 1)
                self._walk(value_node, where)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                where = f"{path}[{index}]"
                self.lines.setdefault(where, item.start_mark.line + 1)
                self._walk(item, where)

    def problem(self, message: str, line: int | None = None, key: str | None = None) -> None:
        """Record a problem; the line defaults to the key's."""
        if line is None and key is not None:
            line = self.lines.get(key)
        self.problems.append(Problem(file=self.file, message=message, line=line, key=key))


# -- value checks --------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _json_like(value: Any) -> bool:
    """Whether the value is plain JSON data (what ConvertTo-Json could have produced)."""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_json_like(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_like(v) for k, v in value.items())
    return False


def _faults(doc: _Doc, raw: Any) -> Faults:
    if raw is None:
        return Faults()
    if not isinstance(raw, dict):
        doc.problem(f"must be a mapping, not {_type_name(raw)}", key="faults")
        return Faults()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"faults.{key}"
        if key not in _FAULT_KEYS:
            known = ", ".join(sorted(_FAULT_KEYS))
            doc.problem(f"unknown fault '{key}' (known: {known})", key=where)
        elif key in {"wrong_password", "hang", "reset", "wsman_fault", "garbage_output"}:
            if isinstance(value, bool):
                values[key] = value
            else:
                doc.problem(f"must be true or false, not {_type_name(value)}", key=where)
        elif key == "powershell_error":
            if isinstance(value, bool) or (isinstance(value, str) and value.strip()):
                values[key] = value
            else:
                doc.problem("must be true, false or a non-empty error text", key=where)
        elif key == "slow_seconds":
            if _is_number(value) and 0 <= value <= 3600:
                values[key] = float(value)
            else:
                doc.problem("must be a number of seconds between 0 and 3600", key=where)
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            if key == "max_command_line" and value < 1:
                doc.problem("must be at least 1", key=where)
            else:
                values[key] = value
        else:
            doc.problem(f"must be a non-negative integer, not {_type_name(value)}", key=where)
    return Faults(**values)


def _facts(doc: _Doc, raw: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    if raw is None:
        return dict(base)
    if not isinstance(raw, dict):
        doc.problem(f"must be a mapping of fact name to value, not {_type_name(raw)}", key="facts")
        return {}
    facts: dict[str, Any] = dict(base)
    for name, value in raw.items():
        where = f"facts.{name}"
        if name in COMPUTED_FACTS:
            doc.problem(
                f"'{name}' is computed by the lab; set clock_skew_seconds instead", key=where
            )
        elif name not in KNOWN_FACTS:
            known = ", ".join(sorted(KNOWN_FACTS - COMPUTED_FACTS))
            doc.problem(f"unknown fact '{name}' (known: {known})", key=where)
        elif not isinstance(value, dict):
            doc.problem(f"a fact value must be a mapping, not {_type_name(value)}", key=where)
        elif not _json_like(value):
            doc.problem("a fact value must be plain JSON data (no dates, sets or binary)",
                        key=where)
        else:
            merged = {**base.get(name, {}), **value}
            declaration = fact(str(name))
            mismatch = None if declaration is None else validate(declaration.schema, merged)
            if mismatch is not None:
                path, expected, _ = mismatch
                doc.problem(f"'{name}' does not fit its schema at '{path}': expected {expected}",
                            key=where)
            facts[str(name)] = merged
    return facts


def _fact_errors(doc: _Doc, raw: Any, facts: dict[str, Any], stated: Any) -> dict[str, str]:
    """The read errors; `stated` is the profile's own ``facts`` (inherited values give way)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        doc.problem(f"must be a mapping of fact name to message, not {_type_name(raw)}",
                    key="fact_errors")
        return {}
    errors: dict[str, str] = {}
    for name, message in raw.items():
        where = f"fact_errors.{name}"
        if name not in KNOWN_FACTS:
            doc.problem(f"unknown fact '{name}'", key=where)
        elif not isinstance(message, str) or not message.strip():
            doc.problem("the error must be a non-empty string", key=where)
        elif isinstance(stated, dict) and name in stated:
            doc.problem(f"'{name}' has both a value (facts) and an error (fact_errors)", key=where)
        else:
            facts.pop(str(name), None)  # an inherited value gives way to the error
            errors[str(name)] = message
    return errors


def _address(doc: _Doc, raw: Any) -> str:
    if not isinstance(raw, str):
        doc.problem(f"must be an IP address string, not {_type_name(raw)}", key="address")
        return ""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        doc.problem("is not an IP address", key="address")
        return ""
    if not address.is_loopback:
        doc.problem("must be a loopback address (127.0.0.0/8 or ::1): the lab never "
                    "listens beyond this machine", key="address")
        return ""
    return str(address)


def _roles(doc: _Doc, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        doc.problem(f"must be a list of roles, not {_type_name(raw)}", key="roles")
        return ()
    roles: list[str] = []
    for index, role in enumerate(raw):
        if role not in ROLES:
            doc.problem(f"unknown role {role!r} (known: {', '.join(ROLES)})",
                        key=f"roles[{index}]")
        elif role in roles:
            doc.problem(f"role '{role}' is listed twice", key=f"roles[{index}]")
        else:
            roles.append(role)
    return tuple(roles)


def _parse_profile(doc: _Doc) -> HostProfile | None:
    data = doc.data
    if doc.unreadable:
        return None
    if data is None:
        doc.problem("the file is empty")
        return None
    if not isinstance(data, dict):
        doc.problem(f"a host profile must be a mapping, not {_type_name(data)}")
        return None
    before = len(doc.problems)
    for key in data:
        if key not in _TOP_KEYS:
            doc.problem(f"unknown key '{key}' (known: {', '.join(sorted(_TOP_KEYS))})",
                        key=str(key))
    for key in ("name", "address"):
        if key not in data:
            doc.problem(f"missing required key '{key}'")
    name = data.get("name")
    if "name" in data and (not isinstance(name, str) or not _HOSTNAME.match(name)):
        doc.problem("must be a host name (letters, digits, '-' and '.')", key="name")
    address = _address(doc, data["address"]) if "address" in data else ""
    extends = data.get("extends")
    base: dict[str, Any] = {}
    if extends is not None:
        if extends in ROLES:
            base = base_facts(extends)
        else:
            doc.problem(f"extends {extends!r}, not a role (known: {', '.join(ROLES)})",
                        key="extends")
    default_roles = [extends] if extends in ROLES else None
    roles = _roles(doc, data.get("roles", default_roles))
    facts = _facts(doc, data.get("facts"), base)
    errors = _fact_errors(doc, data.get("fact_errors"), facts, data.get("facts"))
    skew = data.get("clock_skew_seconds", 0)
    if not _is_number(skew) or abs(skew) > 10 * 365 * 86400:
        doc.problem("must be a number of seconds (within ten years)", key="clock_skew_seconds")
        skew = 0
    faults = _faults(doc, data.get("faults"))
    if len(doc.problems) > before or not isinstance(name, str):
        return None
    return HostProfile(
        name=name,
        address=address,
        roles=roles,
        facts=facts,
        fact_errors=errors,
        clock_skew_seconds=float(skew),
        faults=faults,
        source=doc.file,
    )


def load_profile(path: Path) -> HostProfile:
    """Read and validate one host profile; `InputError` lists every problem found."""
    problems: list[Problem] = []
    profile = _parse_profile(_Doc(path, problems))
    if problems or profile is None:
        raise InputError(problems or [Problem(str(path), "invalid host profile")])
    return profile


def _lab_vars(path: Path, problems: list[Problem]) -> dict[str, Any]:
    doc = _Doc(path, problems)
    if doc.unreadable or doc.data is None:
        return {}
    if not isinstance(doc.data, dict):
        doc.problem(f"must be a mapping of inventory variables, not {_type_name(doc.data)}")
        return {}
    result: dict[str, Any] = {}
    for key, value in doc.data.items():
        if not isinstance(key, str) or not _VAR_NAME.match(key):
            doc.problem(f"{key!r} is not a valid variable name", key=str(key))
        elif key in GENERATED_VARS:
            doc.problem(f"'{key}' is written by the lab itself and cannot be set here", key=key)
        elif not _json_like(value):
            doc.problem("must be plain data (no dates, sets or binary)", key=key)
        else:
            result[key] = value
    return result


def load_lab(directory: Path | None = None) -> LabDefinition:
    """Read a lab directory (the built-in lab when None); `InputError` lists every problem."""
    root = builtin_profiles_dir() if directory is None else directory
    if not root.is_dir():
        raise InputError(Problem(str(root), "is not a directory of host profiles"))
    problems: list[Problem] = []
    hosts: list[HostProfile] = []
    files = sorted(p for p in root.glob("*.yaml") if not p.name.startswith("_"))
    if not files:
        problems.append(Problem(str(root), "contains no host profiles (*.yaml)"))
    names: dict[str, str] = {}
    addresses: dict[str, str] = {}
    for path in files:
        doc = _Doc(path, problems)
        profile = _parse_profile(doc)
        if profile is None:
            continue
        if profile.name.lower() in names:
            doc.problem(f"host '{profile.name}' is also defined in {names[profile.name.lower()]}",
                        key="name")
            continue
        if profile.address in addresses:
            doc.problem(f"address {profile.address} is also used by {addresses[profile.address]}",
                        key="address")
            continue
        names[profile.name.lower()] = str(path)
        addresses[profile.address] = profile.name
        hosts.append(profile)
    lab_file = root / LAB_VARS_FILE
    inventory_vars = _lab_vars(lab_file, problems) if lab_file.exists() else {}
    if problems:
        raise InputError(problems)
    return LabDefinition(directory=root, hosts=tuple(hosts), inventory_vars=inventory_vars)
