"""`load_inventory`: Ansible inventory sources, their group_vars/host_vars, validated.

Sources (YAML, INI, Ansible's JSON inventory, directories of them; see `sources`) are merged
into one tree. Variables the agent reads are validated where they are written; a template or
vault value among them is resolved (`resolve`) only where it wins, in the host's context.

Variable precedence follows Ansible's default ``VARIABLE_PRECEDENCE`` for inventory
variables (hash_behaviour=replace, so a later definition replaces the whole top-level key),
lowest first; see `PRECEDENCE`. Groups within one layer are ordered as Ansible's
``sort_groups``: by depth from ``all``, then ``ansible_group_priority`` (inventory file only),
then name; so a child group beats its parent and siblings apply in name order.

Every problem found anywhere is collected and raised together as `InventoryError`.
"""

from __future__ import annotations

import dataclasses
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
from agent.inventory.parse import HostNode, Tree, VarDef, Vars
from agent.inventory.resolve import Resolver, Unresolvable, contains_vault, needs_resolving
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
from agent.inventory.sources import read_sources
from agent.inventory.templates import ENV_LOOKUP_HINT, Secret, env_lookup_name
from agent.inventory.varsfiles import VarsFiles, read_vars_dir
from agent.inventory.vault import VaultKeys
from agent.inventory.yamlload import SourceFile, YamlMap, line_of, read_file
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

MAX_GROUPS: Final = 10_000

#: Variables the agent does not read but whose string values are still masked as secrets.
_SECRET_LOOKING: Final = re.compile(r"pass|secret|token|credential", re.IGNORECASE)
_WINRM_PASSWORDS: Final = ("ansible_winrm_password", "ansible_password")
_SSH_PASSWORDS: Final = ("ansible_ssh_pass", "ansible_password")


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
#: Paths inside variables that hold secrets (a top-level password, the directory's).
_SECRET_KEYS: Final = frozenset((*PASSWORD_VARIABLES, *OTHER_SECRETS))


def _secret_path(key: str) -> Callable[[tuple[str | int, ...]], bool]:
    def is_secret(path: tuple[str | int, ...]) -> bool:
        if key in _SECRET_KEYS:
            return not path
        return key == "mfa_directory" and path == ("bind_password",)

    return is_secret


@dataclass
class _State:
    """Everything gathered while loading; turned into an `Inventory` at the end."""

    path: Path
    keys: VaultKeys = field(default_factory=VaultKeys)
    paths: tuple[Path, ...] = ()
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sources: list[SourceFile] = field(default_factory=list)
    #: Validated value of every definition of a variable the agent reads.
    checked: dict[VarDef, Any] = field(default_factory=dict)
    #: Definitions of variables the agent reads whose value must be resolved where it wins.
    deferred: set[VarDef] = field(default_factory=set)
    #: Resolved values of deferred definitions, each with what it depended on (`Resolver`).
    resolved: dict[VarDef, list[tuple[list[tuple[str, VarDef | None]], Any]]] = field(
        default_factory=dict
    )
    #: Whether a definition holds a !vault value (computed once per definition).
    vaulted: dict[VarDef, bool] = field(default_factory=dict)
    secret_refs: list[SecretRef] = field(default_factory=list)


def load_inventory(
    path: str | Path | list[str | Path] | tuple[str | Path, ...],
    *,
    vault: VaultKeys | None = None,
    roles_file: str | Path | None = None,
) -> Inventory:
    """Load and validate inventory sources; `InventoryError` lists every problem found.

    `path` is one source or several (``-i`` repeated), each a file or a directory. Vault
    values and files are decrypted with `vault`. `roles_file` is a YAML file with
    ``mfa_role_groups`` (which of the inventory's groups hold which role).
    """
    state, tree, hierarchy, vars_files, role_file_defs = _prepare(path, vault, roles_file)
    for definition in _all_definitions(tree, *vars_files, extra=role_file_defs):
        _check_definition(state, definition)
    inventory = _assemble(state, tree, hierarchy, vars_files, role_file_defs)
    if state.problems:
        _raise(state)
    return inventory


def effective_values(
    path: str | Path | list[str | Path] | tuple[str | Path, ...],
    *,
    vault: VaultKeys | None = None,
) -> dict[str, dict[str, Any]]:
    """Every host's variables after precedence, as written (untemplated, unvalidated).

    What ``ansible-inventory --list`` prints as hostvars; for comparing with Ansible. Holds
    decrypted vault-file values in clear: never for display.
    """
    state, tree, hierarchy, vars_files, _ = _prepare(path, vault, None)
    resolver = _Resolver(tree, hierarchy, vars_files, _priority_lookup(state, tree), [])
    return {
        name: {key: d.value for key, d in resolver.effective(name).items()}
        for name in tree.hosts
    }


def _prepare(
    path: str | Path | list[str | Path] | tuple[str | Path, ...],
    vault: VaultKeys | None,
    roles_file: str | Path | None,
) -> tuple[_State, Tree, Hierarchy, list[VarsFiles], list[VarDef]]:
    """Read every source and vars file into a tree with its hierarchy (problems in state)."""
    paths = [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
    if not paths:
        raise InventoryError([Problem("<arguments>", "no inventory given")])
    state = _State(paths[0], vault if vault is not None else VaultKeys(), tuple(paths))
    tree = Tree()
    sources = read_sources(paths, tree, state.keys)
    state.sources.extend(sources.files)
    state.problems.extend(sources.problems)
    state.problems.extend(tree.problems)
    if state.problems and (tree.over_budget or not tree.hosts):
        _raise(state)
    _check_group_names(state, tree)
    if len(tree.groups) > MAX_GROUPS:
        state.problems.append(Problem(str(state.path), f"more than {MAX_GROUPS} groups"))
        _raise(state)
    hierarchy, cycles = build_hierarchy(tree)
    state.problems.extend(cycles)
    vars_files = _read_vars_files(state, tree, sources.bases)
    role_file_defs = _read_roles_file(state, roles_file)
    return state, tree, hierarchy, vars_files, role_file_defs


def _check_group_names(state: _State, tree: Tree) -> None:
    for name, group in tree.groups.items():
        if _CONTROL.search(name):
            state.problems.append(
                Problem(
                    group.location.file,
                    f"group name {name[:60]!r} contains a control character",
                    group.location.line,
                )
            )


_FOR_HOST: Final = re.compile(r"^(.*) for host (\S+)$", re.DOTALL)


def _raise(state: _State) -> NoReturn:
    raise InventoryError(_collapse(sorted(set(state.problems), key=_problem_order)))


def _problem_order(problem: Problem) -> tuple[str, int, str]:
    return (problem.file, problem.line or 0, problem.message)


def _collapse(problems: list[Problem]) -> list[Problem]:
    """One problem per definition for what went wrong alike for many hosts (a group's template)."""
    hosts: dict[tuple[str, int | None, str | None, str], list[str]] = {}
    result: list[Problem] = []
    for problem in problems:
        match = _FOR_HOST.match(problem.message)
        if match is None:
            result.append(problem)
            continue
        key = (problem.file, problem.line, problem.key, match.group(1))
        if key not in hosts:
            hosts[key] = []
            result.append(Problem(problem.file, match.group(1), problem.line, problem.key))
        hosts[key].append(match.group(2))
    return sorted(
        (
            Problem(p.file, _for_hosts(p.message, hosts[key]), p.line, p.key)
            if (key := (p.file, p.line, p.key, p.message)) in hosts
            else p
            for p in result
        ),
        key=_problem_order,
    )


def _for_hosts(message: str, names: list[str]) -> str:
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return f"{message} for host {names[0]}{more}"


def _read_vars_files(state: _State, tree: Tree, bases: list[Path]) -> list[VarsFiles]:
    """group_vars then host_vars of every base, in order: [g1, h1, g2, h2, ...]."""
    groups: dict[str, tuple[str, str | None]] = {n: (f"group {n}", n) for n in tree.groups}
    hosts: dict[str, tuple[str, str | None]] = {name: (name, None) for name in tree.hosts}
    result: list[VarsFiles] = []
    for base in bases:
        group_files = read_vars_dir(base / "group_vars", "group_vars", groups, state.keys)
        host_files = read_vars_dir(base / "host_vars", "host_vars", hosts, state.keys)
        for files in (group_files, host_files):
            state.problems.extend(files.problems)
            state.warnings.extend(files.warnings)
            state.sources.extend(files.sources)
        result.extend((group_files, host_files))
    return result


def _read_roles_file(state: _State, roles_file: str | Path | None) -> list[VarDef]:
    """The ``mfa_role_groups`` of a ``--roles`` file, as a definition of the ``all`` group."""
    if roles_file is None:
        return []
    path = Path(roles_file)
    source = read_file(path)
    state.sources.append(source)
    state.problems.extend(source.parsed.problems)
    data = source.parsed.value
    if source.parsed.problems or source.text is None:
        return []
    if not isinstance(data, YamlMap) or set(data) != {"mfa_role_groups"}:
        state.problems.append(
            Problem(
                str(path),
                "a roles file holds only 'mfa_role_groups:', a mapping of roles to your groups "
                "(e.g. adfs: [adfs_servers])",
                1,
            )
        )
        return []
    where = Location(str(path), data.line_of("mfa_role_groups"))
    return [VarDef("mfa_role_groups", data["mfa_role_groups"], where, "group all", "all", False)]


def _all_definitions(
    tree: Tree, *files: VarsFiles, extra: Iterable[VarDef] = ()
) -> Iterable[VarDef]:
    for group in tree.groups.values():
        yield from group.vars.values()
    for host in tree.hosts.values():
        yield from host.vars.values()
    for vars_files in files:
        yield from vars_files.definitions
    yield from extra


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
    if needs_resolving(definition.value, _secret_path(definition.key)):
        state.deferred.add(definition)  # resolved only where it wins, in the host's context
        return
    try:
        value = _from_vault_file(definition, validate(ctx, definition.value))
    except Rejected:
        return
    state.checked[definition] = value
    _warn_if_inline(state, definition, value)


def _from_vault_file(definition: VarDef, value: Any) -> Any:
    """Inline secrets read from a vault-encrypted file are vault secrets."""
    if definition.vault is None:
        return value
    if isinstance(value, Secret) and value.source == "inline":
        return Secret.from_vault_file(definition.vault, value.reveal())
    if isinstance(value, DirectorySettings) and _is_inline(value.bind_password):
        assert value.bind_password is not None
        password = Secret.from_vault_file(definition.vault, value.bind_password.reveal())
        return dataclasses.replace(value, bind_password=password)
    return value


def _warn_if_inline(state: _State, definition: VarDef, value: Any) -> None:
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
    #: group_vars and host_vars of every base, in order: [group_vars, host_vars, ...].
    vars_files: list[VarsFiles]
    priority: Callable[[str], int]
    role_file_defs: list[VarDef]

    def sorted_groups(self, host: str) -> list[str]:
        groups = self.hierarchy.host_groups[host] - {"all"}
        return sorted(groups, key=lambda g: (self.hierarchy.depth[g], self.priority(g), g))

    def layers(self, kind: str, host: str) -> list[Vars]:
        group_files, host_files = self.vars_files[0::2], self.vars_files[1::2]
        if kind == "all_inventory":
            return [_group_layer(self.tree.groups["all"].vars)]
        if kind == "groups_inventory":
            return [_group_layer(self.tree.groups[g].vars) for g in self.sorted_groups(host)]
        if kind == "all_group_vars":
            return [files.layer("all") for files in group_files]
        if kind == "groups_group_vars":
            groups = self.sorted_groups(host)
            return [files.layer(g) for files in group_files for g in groups]
        if kind == "host_inventory":
            return [self.tree.hosts[host].vars]
        return [files.layer(host) for files in host_files]

    def effective(self, host: str) -> Vars:
        """The definition that wins for each of the host's variables."""
        merged: Vars = {}
        for kind in PRECEDENCE:
            for layer in self.layers(kind, host):
                merged.update(layer)
        return merged

    def inventory_wide(self) -> Vars:
        """The ``all`` group's variables: inventory, group_vars/all, then a --roles file."""
        merged: Vars = dict(self.tree.groups["all"].vars)
        for files in self.vars_files[0::2]:
            merged.update(files.layer("all"))
        for definition in self.role_file_defs:
            merged[definition.key] = definition
        return merged


def _group_layer(variables: Vars) -> Vars:
    """A group's variables from the inventory: ansible_group_priority there is not a variable
    (Ansible makes it the group's priority)."""
    if GROUP_PRIORITY not in variables:
        return variables
    return {k: v for k, v in variables.items() if k != GROUP_PRIORITY}


def _priority_lookup(state: _State, tree: Tree) -> Callable[[str], int]:
    def priority(group: str) -> int:
        definition = tree.groups[group].vars.get(GROUP_PRIORITY)
        value = state.checked.get(definition) if definition is not None else None
        return value if isinstance(value, int) else 1

    return priority


_INVALID: Final = object()


class _Values:
    """The validated values of one host's (or the ``all`` group's) winning definitions."""

    def __init__(self, state: _State, effective: Vars, host: str | None) -> None:
        self.state = state
        self.effective = effective
        self.resolved: dict[str, Any] = {}
        self.resolver = Resolver(state.keys, effective.get, state.problems, host)

    def get(self, key: str) -> Any:
        """The validated value of `key`; None if absent or invalid."""
        value = self._value(key)
        return None if value is _INVALID else value

    def _value(self, key: str) -> Any:
        definition = self.effective.get(key)
        if definition is None:
            return _INVALID
        if definition not in self.state.deferred:
            return self.state.checked.get(definition, _INVALID)
        if key not in self.resolved:
            self.resolved[key] = self._resolve(definition)
        return self.resolved[key]

    def _resolve(self, definition: VarDef) -> Any:
        """Resolve and validate; a value resolved for another host with the same
        dependencies (and not using the host's name) is reused."""
        for depends, value in self.state.resolved.get(definition, ()):
            if all(self.effective.get(name) is found for name, found in depends):
                return value
        ctx = Ctx(
            definition.location.file, definition.location.line, definition.key, self.state.problems
        )
        validate = _validator(definition, ctx)
        if validate is None:
            return _INVALID
        try:
            raw = self.resolver.resolve(definition, _secret_path(definition.key))
            value = _from_vault_file(definition, validate(ctx, raw))
        except (Unresolvable, Rejected):
            return _INVALID
        _warn_if_inline(self.state, definition, value)
        if not self.resolver.used_host:
            cached = self.state.resolved.setdefault(definition, [])
            if len(cached) < 16:  # a few variants (e.g. per group) at most
                cached.append((list(self.resolver.depends), value))
        return value

    def values(self) -> dict[str, Any]:
        """Every valid value of a variable the agent reads, by key."""
        result = {}
        for key in self.effective:
            value = self._value(key)
            if value is not _INVALID:
                result[key] = value
        return result


# -- assembly ------------------------------------------------------------------------------


def _assemble(
    state: _State,
    tree: Tree,
    hierarchy: Hierarchy,
    vars_files: list[VarsFiles],
    role_file_defs: list[VarDef],
) -> Inventory:
    resolver = _Resolver(
        tree, hierarchy, vars_files, _priority_lookup(state, tree), role_file_defs
    )
    wide = resolver.inventory_wide()
    wide_values = _Values(state, wide, None)
    role_groups = _role_groups(state, tree, wide_values, wide)
    hosts = tuple(
        _build_host(state, node, hierarchy.host_groups[name], resolver.effective(name), role_groups)
        for name, node in tree.hosts.items()
    )
    for host in hosts:
        refusal = host.connection.insecure_refusal() if host.roles else None
        if refusal is not None:
            state.warnings.append(f"{host.name}: will be refused when scanned: {refusal}")
    directory = wide_values.get("mfa_directory")
    if isinstance(directory, DirectorySettings):
        _record_directory_secret(state, directory, wide["mfa_directory"])
    admins = wide_values.get("mfa_phonefactor_admins_allowed")
    return Inventory(
        path=state.path,
        digest=_digest(state),
        hosts=hosts,
        groups=MappingProxyType(dict(hierarchy.members)),
        directory=directory if isinstance(directory, DirectorySettings) else None,
        deployment=wide_values.get("mfa_deployment") or {},
        phonefactor_admins_allowed=tuple(admins) if admins is not None else None,
        warnings=tuple(dict.fromkeys(state.warnings)),
        secret_refs=tuple(state.secret_refs),
        sources=state.paths,
        role_groups=MappingProxyType(role_groups),
    )


def _role_groups(
    state: _State, tree: Tree, values: _Values, wide: Vars
) -> dict[str, tuple[str, ...]]:
    """Role → the groups whose hosts have it: the role's own group, then mfa_role_groups."""
    mapped: dict[str, tuple[str, ...]] = values.get("mfa_role_groups") or {}
    definition = wide.get("mfa_role_groups")
    result: dict[str, tuple[str, ...]] = {}
    for role in ROLES:
        groups = [role] if role in tree.groups else []
        for group in mapped.get(role, ()):
            if group not in tree.groups:
                where = definition.location if definition is not None else Location("<roles>")
                known = ", ".join(sorted(g for g in tree.groups if g not in ("all", "ungrouped")))
                state.problems.append(
                    Problem(
                        where.file,
                        f"mfa_role_groups: {role}: the inventory has no group '{group}'"
                        f"{suggest(group, tree.groups)}; its groups: {known or '(none)'}",
                        where.line,
                        f"mfa_role_groups.{role}",
                    )
                )
            elif group not in groups:
                groups.append(group)
        if groups:
            result[role] = tuple(groups)
    return result


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


def _build_host(
    state: _State,
    node: HostNode,
    groups: frozenset[str],
    effective: Vars,
    role_groups: Mapping[str, tuple[str, ...]],
) -> Host:
    host_values = _Values(state, effective, node.name)
    values = host_values.values()
    roles = frozenset(
        role for role, names in role_groups.items() if not groups.isdisjoint(names)
    ) | frozenset(values.get("mfa_roles") or ())
    usable = _usable_connection(state, node.name, roles, effective, values)
    connection = _connection(values if usable is None else _default_kinds(values))
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
        address=_address(state, node, roles, effective, values),
        roles=roles,
        groups=groups,
        connection=connection,
        declared=Declared(
            perimeter=networks.get("perimeter", ()),
            internal=networks.get("internal", ()),
            clock_skew_max_seconds=values.get("mfa_clock_skew_max_seconds", 300),
        ),
        location=node.location,
        vars=MappingProxyType(_visible_vars(state, effective, values)),
        unusable_connection=usable,
    )


_KINDS: Final = ("winrm", "ssh")
_SHELLS: Final = ("powershell", "cmd")


def _usable_connection(
    state: _State, name: str, roles: frozenset[str], effective: Vars, values: Mapping[str, Any]
) -> str | None:
    """Why mfa-agent cannot read this host (not WinRM, nor SSH to a Windows shell), or None.

    Hosts the agent does not read may use any connection; for a host with a role it is a
    problem where the variable is written (a shell other than powershell/cmd too).
    """
    kind = values.get("ansible_connection", "winrm")
    shell = values.get("ansible_shell_type", "powershell")
    if kind not in _KINDS:
        key, why = "ansible_connection", f"must be one of {', '.join(_KINDS)}, not '{kind[:40]}'"
    elif shell not in _SHELLS and (kind == "ssh" or roles):
        key, why = "ansible_shell_type", f"must be one of {', '.join(_SHELLS)}, not '{shell[:40]}'"
    else:
        return None
    if roles:
        where = effective[key].location
        message = f"{why} (host {name} has role {', '.join(sorted(roles))})"
        state.problems.append(Problem(where.file, message, where.line, key))
    return f"{key}: {kind if key == 'ansible_connection' else shell}"


def _default_kinds(values: Mapping[str, Any]) -> dict[str, Any]:
    unusable = ("ansible_connection", "ansible_shell_type")
    return {k: v for k, v in values.items() if k not in unusable}


def _address(
    state: _State,
    node: HostNode,
    roles: frozenset[str],
    effective: Vars,
    values: Mapping[str, Any],
) -> str:
    """``ansible_host`` or the name; for role hosts, it must be a usable address."""
    definition = effective.get("ansible_host")
    if definition is not None and "ansible_host" not in values:
        return node.name  # already reported as invalid
    value = None if definition is None else values["ansible_host"]
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


#: How a value decrypted from a vault is shown.
VAULT_MASK: Final = "<vault secret>"


def _has_vault(state: _State, definition: VarDef) -> bool:
    found = state.vaulted.get(definition)
    if found is None:
        found = state.vaulted[definition] = contains_vault(definition.value)
    return found


def _visible_vars(state: _State, effective: Vars, values: Mapping[str, Any]) -> dict[str, Any]:
    """The host's variables for display: every secret masked, never a raw value."""
    result: dict[str, Any] = {}
    for key, definition in effective.items():
        value = definition.value
        checked = values.get(key)
        if isinstance(checked, Secret):
            value = checked
        elif definition.vault is not None or _has_vault(state, definition):
            value = VAULT_MASK
        elif isinstance(checked, DirectorySettings) and isinstance(value, Mapping):
            if checked.bind_password is not None:
                value = {**value, "bind_password": checked.bind_password}
        elif isinstance(value, str) and _SECRET_LOOKING.search(key):
            name = env_lookup_name(value)
            value = Secret.from_env(name) if name else Secret.inline(value)
        result[key] = value
    return result


def _digest(state: _State) -> str:
    """sha256 over every file read, sorted by path relative to the first source's directory."""
    base = state.path if state.path.is_dir() else state.path.parent
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
