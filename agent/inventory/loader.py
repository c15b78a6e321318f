"""`load_inventory`: an Ansible YAML inventory, its group_vars/host_vars, validated.

Variable precedence follows Ansible's default ``VARIABLE_PRECEDENCE`` for inventory
variables (hash_behaviour=replace, so a later definition replaces the whole top-level key),
lowest first; see `PRECEDENCE`. Groups within one layer are ordered as Ansible's
``sort_groups``: by depth from ``all``, then ``ansible_group_priority`` (inventory file only),
then name; so a child group beats its parent and siblings apply in name order.

Every problem found anywhere is collected and raised together as `InventoryError`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NoReturn

from agent.errors import InventoryError, Problem
from agent.facts import Declared
from agent.inventory.graph import Hierarchy, build_hierarchy
from agent.inventory.model import (
    Connection,
    DirectorySettings,
    Host,
    Inventory,
    Location,
    SecretRef,
    WinrmScheme,
)
from agent.inventory.parse import HostNode, Tree, VarDef, Vars, parse_tree
from agent.inventory.settings import (
    CONNECTION_VARIABLES,
    GROUP_PRIORITY,
    INVENTORY_WIDE,
    MFA_VARIABLES,
    OTHER_SECRETS,
    PASSWORD_VARIABLES,
    Ctx,
    Rejected,
    Validator,
    group_priority,
    suggest,
    valid_address,
)
from agent.inventory.templates import ENV_LOOKUP_HINT, Secret, env_lookup_name
from agent.inventory.varsfiles import VarsFiles, read_vars_dir
from agent.inventory.yamlload import SourceFile, line_of, read_file
from agent.roles import DIRECTORY_TARGET, ROLES

#: Inventory variable layers, lowest precedence first (Ansible's default order):
#: the ``all`` group in the inventory file, the host's other groups in the inventory file,
#: group_vars/all, group_vars/<group>, the host in the inventory file, host_vars/<host>.
PRECEDENCE: Final = (
    "all_inventory",
    "groups_inventory",
    "all_group_vars",
    "groups_group_vars",
    "host_inventory",
    "host_vars",
)

MAX_GROUPS: Final = 1_000
MAX_HOSTS: Final = 10_000

#: Variables the agent does not read but whose string values are still masked as secrets.
_SECRET_LOOKING: Final = re.compile(r"pass|secret|token|credential", re.IGNORECASE)
_WINRM_PASSWORDS: Final = ("ansible_winrm_password", "ansible_password")
_SSH_PASSWORDS: Final = ("ansible_ssh_pass", "ansible_password")


@dataclass
class _State:
    """Everything gathered while loading; turned into an `Inventory` at the end."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sources: list[SourceFile] = field(default_factory=list)
    #: Validated value of every definition of a variable the agent reads.
    checked: dict[VarDef, Any] = field(default_factory=dict)
    secret_refs: list[SecretRef] = field(default_factory=list)


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate an inventory; `InventoryError` lists every problem found."""
    state = _State(Path(path))
    if state.path.is_dir():
        raise InventoryError([Problem(str(state.path), "is a directory, not an inventory file")])
    source = read_file(state.path)
    state.sources.append(source)
    state.problems.extend(source.parsed.problems)
    if source.data is None or (source.parsed.value is None and state.problems):
        _raise(state)
    tree = parse_tree(source.parsed.value, str(state.path))
    state.problems.extend(tree.problems)
    if len(tree.groups) > MAX_GROUPS or len(tree.hosts) > MAX_HOSTS:
        message = f"more than {MAX_GROUPS} groups or {MAX_HOSTS} hosts"
        state.problems.append(Problem(str(state.path), message))
        _raise(state)
    hierarchy, cycles = build_hierarchy(tree)
    state.problems.extend(cycles)
    group_files, host_files = _read_vars_files(state, tree)
    for definition in _all_definitions(tree, group_files, host_files):
        _check_definition(state, definition)
    inventory = _assemble(state, tree, hierarchy, group_files, host_files)
    if state.problems:
        _raise(state)
    return inventory


def _raise(state: _State) -> NoReturn:
    problems = sorted(set(state.problems), key=lambda p: (p.file, p.line or 0, p.message))
    raise InventoryError(problems)


def _read_vars_files(state: _State, tree: Tree) -> tuple[VarsFiles, VarsFiles]:
    base = state.path.parent
    groups: dict[str, tuple[str, str | None]] = {n: (f"group {n}", n) for n in tree.groups}
    hosts: dict[str, tuple[str, str | None]] = {name: (name, None) for name in tree.hosts}
    group_files = read_vars_dir(base / "group_vars", "group_vars", groups)
    host_files = read_vars_dir(base / "host_vars", "host_vars", hosts)
    for files in (group_files, host_files):
        state.problems.extend(files.problems)
        state.warnings.extend(files.warnings)
        state.sources.extend(files.sources)
    return group_files, host_files


def _all_definitions(tree: Tree, *files: VarsFiles) -> Iterable[VarDef]:
    for group in tree.groups.values():
        yield from group.vars.values()
    for host in tree.hosts.values():
        yield from host.vars.values()
    for vars_files in files:
        yield from vars_files.definitions


# -- per-definition validation ---------------------------------------------------------------


def _validator(definition: VarDef, ctx: Ctx) -> Validator | None:
    key = definition.key
    if key.startswith("mfa_"):
        if key not in MFA_VARIABLES:
            ctx.report(
                f"unknown agent setting '{key}'{suggest(key, MFA_VARIABLES)}; "
                f"known: {', '.join(MFA_VARIABLES)}"
            )
            return None
        if key in INVENTORY_WIDE and definition.group != "all":
            ctx.report(
                f"{key} applies to the whole inventory: set it in the 'all' group "
                f"(all: vars: or group_vars/all), not for {definition.owner}"
            )
            return None
        return MFA_VARIABLES[key]
    if key in CONNECTION_VARIABLES:
        return CONNECTION_VARIABLES[key]
    if key == GROUP_PRIORITY and definition.group is not None and definition.in_inventory:
        return group_priority
    return None


def _check_definition(state: _State, definition: VarDef) -> None:
    ctx = Ctx(definition.location.file, definition.location.line, definition.key, state.problems)
    validate = _validator(definition, ctx)
    if validate is None:
        return
    try:
        value = validate(ctx, definition.value)
    except Rejected:
        return
    state.checked[definition] = value
    if definition.key in (*PASSWORD_VARIABLES, *OTHER_SECRETS) and value.source == "inline":
        _warn_inline(state, definition.owner, definition.key)
    if isinstance(value, DirectorySettings) and _is_inline(value.bind_password):
        _warn_inline(state, definition.owner, "mfa_directory.bind_password")


def _is_inline(secret: Secret | None) -> bool:
    return secret is not None and secret.source == "inline"


def _warn_inline(state: _State, owner: str, key: str) -> None:
    state.warnings.append(
        f"{owner}: {key} is written inline in the inventory; use {ENV_LOOKUP_HINT}"
    )


# -- precedence ----------------------------------------------------------------------------


@dataclass
class _Resolver:
    tree: Tree
    hierarchy: Hierarchy
    group_files: VarsFiles
    host_files: VarsFiles
    priority: Callable[[str], int]

    def sorted_groups(self, host: str) -> list[str]:
        groups = self.hierarchy.host_groups[host] - {"all"}
        return sorted(groups, key=lambda g: (self.hierarchy.depth[g], self.priority(g), g))

    def layers(self, kind: str, host: str) -> list[Vars]:
        if kind == "all_inventory":
            return [self.tree.groups["all"].vars]
        if kind == "groups_inventory":
            return [self.tree.groups[g].vars for g in self.sorted_groups(host)]
        if kind == "all_group_vars":
            return [self.group_files.layer("all")]
        if kind == "groups_group_vars":
            return [self.group_files.layer(g) for g in self.sorted_groups(host)]
        if kind == "host_inventory":
            return [self.tree.hosts[host].vars]
        return [self.host_files.layer(host)]

    def effective(self, host: str) -> Vars:
        """The definition that wins for each of the host's variables."""
        merged: Vars = {}
        for kind in PRECEDENCE:
            for layer in self.layers(kind, host):
                merged.update(layer)
        return merged

    def inventory_wide(self) -> Vars:
        """The ``all`` group's variables: inventory file, then group_vars/all."""
        return {**self.tree.groups["all"].vars, **self.group_files.layer("all")}


def _priority_lookup(state: _State, tree: Tree) -> Callable[[str], int]:
    def priority(group: str) -> int:
        definition = tree.groups[group].vars.get(GROUP_PRIORITY)
        value = state.checked.get(definition) if definition is not None else None
        return value if isinstance(value, int) else 1

    return priority


# -- assembly ------------------------------------------------------------------------------


def _assemble(
    state: _State, tree: Tree, hierarchy: Hierarchy, group_files: VarsFiles, host_files: VarsFiles
) -> Inventory:
    resolver = _Resolver(tree, hierarchy, group_files, host_files, _priority_lookup(state, tree))
    hosts = tuple(
        _build_host(state, node, hierarchy.host_groups[name], resolver.effective(name))
        for name, node in tree.hosts.items()
    )
    for host in hosts:
        refusal = host.connection.insecure_refusal() if host.roles else None
        if refusal is not None:
            state.warnings.append(f"{host.name}: will be refused when scanned: {refusal}")
    wide = resolver.inventory_wide()
    directory = _setting(state, wide, "mfa_directory")
    if isinstance(directory, DirectorySettings):
        _record_directory_secret(state, directory, wide["mfa_directory"])
    admins = _setting(state, wide, "mfa_phonefactor_admins_allowed")
    return Inventory(
        path=state.path,
        digest=_digest(state),
        hosts=hosts,
        groups=MappingProxyType(dict(hierarchy.members)),
        directory=directory if isinstance(directory, DirectorySettings) else None,
        deployment=_setting(state, wide, "mfa_deployment") or {},
        phonefactor_admins_allowed=tuple(admins) if admins is not None else None,
        warnings=tuple(dict.fromkeys(state.warnings)),
        secret_refs=tuple(state.secret_refs),
    )


def _setting(state: _State, effective: Vars, key: str) -> Any:
    """The validated value of the winning definition of `key`, None if absent or invalid."""
    definition = effective.get(key)
    return None if definition is None else state.checked.get(definition)


def _record_directory_secret(
    state: _State, settings: DirectorySettings, definition: VarDef
) -> None:
    if settings.bind_password is None:
        return
    line = line_of(definition.value, "bind_password") or definition.location.line
    location = Location(definition.location.file, line)
    state.secret_refs.append(
        SecretRef(settings.bind_password, location, "mfa_directory.bind_password", DIRECTORY_TARGET)
    )


def _build_host(state: _State, node: HostNode, groups: frozenset[str], effective: Vars) -> Host:
    roles = frozenset(role for role in ROLES if role in groups)
    values = {
        key: state.checked[definition]
        for key, definition in effective.items()
        if definition in state.checked
    }
    connection = _connection(values)
    password_key = _password_key(connection.kind, values)
    if connection.password is not None and password_key is not None:
        definition = effective[password_key]
        state.secret_refs.append(
            SecretRef(connection.password, definition.location, password_key, node.name)
        )
    passphrase = effective.get("mfa_ssh_key_passphrase")
    if connection.ssh_key_passphrase is not None and passphrase is not None:
        state.secret_refs.append(
            SecretRef(
                connection.ssh_key_passphrase,
                passphrase.location,
                "mfa_ssh_key_passphrase",
                node.name,
            )
        )
    networks = values.get("mfa_networks", {})
    return Host(
        name=node.name,
        address=_address(state, node, roles, effective),
        roles=roles,
        groups=groups,
        connection=connection,
        declared=Declared(
            perimeter=networks.get("perimeter", ()),
            internal=networks.get("internal", ()),
            clock_skew_max_seconds=values.get("mfa_clock_skew_max_seconds", 300),
        ),
        location=node.location,
        vars=MappingProxyType(_visible_vars(state, effective)),
    )


def _address(state: _State, node: HostNode, roles: frozenset[str], effective: Vars) -> str:
    """``ansible_host`` or the name; for role hosts, it must be a usable address."""
    definition = effective.get("ansible_host")
    if definition is not None and definition not in state.checked:
        return node.name  # already reported as invalid
    value = None if definition is None else state.checked[definition]
    where = node.location if definition is None else definition.location
    key = node.name if definition is None else "ansible_host"
    if definition is not None and (value is None or not value.strip()):
        if roles:
            state.problems.append(
                Problem(where.file, f"{node.name}: ansible_host is empty", where.line, key)
            )
        return node.name
    address: str = node.name if value is None else value.strip()
    if roles and not valid_address(address):
        state.problems.append(
            Problem(
                where.file,
                f"{node.name}: '{address[:80]}' is not a valid host name or IP address "
                f"(host has role {', '.join(sorted(roles))})",
                where.line,
                key,
            )
        )
    return address


def _password_key(kind: str, values: Mapping[str, Any]) -> str | None:
    """Which password variable applies; the connection-specific alias wins, as in Ansible."""
    for key in _SSH_PASSWORDS if kind == "ssh" else _WINRM_PASSWORDS:
        if key in values:
            return key
    return None


def _connection(values: Mapping[str, Any]) -> Connection:
    kind = values.get("ansible_connection", "winrm")
    port = values.get("ansible_port")
    password_key = _password_key(kind, values)
    common = {
        "user": values.get("ansible_user"),
        "password": values[password_key] if password_key else None,
        "allow_insecure_transport": values.get("mfa_allow_insecure_transport", False),
        "winrm_transport": values.get("ansible_winrm_transport", "ntlm"),
        "winrm_cert_validation": values.get("ansible_winrm_server_cert_validation", "validate"),
        "winrm_ca_trust_path": values.get("ansible_winrm_ca_trust_path"),
        "ssh_private_key_file": values.get("ansible_ssh_private_key_file"),
        "ssh_shell_type": values.get("ansible_shell_type", "powershell"),
        "ssh_common_args": values.get("ansible_ssh_common_args"),
        "ssh_key_passphrase": values.get("mfa_ssh_key_passphrase"),
    }
    if kind == "ssh":
        return Connection(kind="ssh", port=port or 22, **common)
    # As Ansible's winrm plugin: without a scheme, port 5985 means http.
    scheme: WinrmScheme = values.get("ansible_winrm_scheme") or (
        "http" if port == 5985 else "https"
    )
    return Connection(
        kind="winrm",
        port=port or (5986 if scheme == "https" else 5985),
        winrm_scheme=scheme,
        winrm_scheme_implied="ansible_winrm_scheme" not in values and scheme == "http",
        **common,
    )


def _visible_vars(state: _State, effective: Vars) -> dict[str, Any]:
    """The host's variables for display: every password a `Secret`, never a raw value."""
    result: dict[str, Any] = {}
    for key, definition in effective.items():
        value = definition.value
        checked = state.checked.get(definition)
        if isinstance(checked, Secret):
            value = checked
        elif isinstance(checked, DirectorySettings) and isinstance(value, Mapping):
            if checked.bind_password is not None:
                value = {**value, "bind_password": checked.bind_password}
        elif isinstance(value, str) and _SECRET_LOOKING.search(key):
            name = env_lookup_name(value)
            value = Secret.from_env(name) if name else Secret.inline(value)
        result[key] = value
    return result


def _digest(state: _State) -> str:
    """sha256 over every file read, sorted by path relative to the inventory's directory."""
    base = state.path.parent
    entries = []
    for source in state.sources:
        try:
            name = source.path.relative_to(base).as_posix()
        except ValueError:
            name = source.path.as_posix()
        entries.append((name, source.data or b""))
    digest = hashlib.sha256()
    for name, data in sorted(entries):
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return f"sha256:{digest.hexdigest()}"
