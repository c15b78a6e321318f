"""The loaded inventory: hosts, their connections, the directory and deployment settings.

Everything here is immutable and built only by `agent.inventory.loader`. Passwords are
`Secret`s, so printing any of these objects never shows one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.errors import Problem
from agent.facts import Declared
from agent.inventory.sshargs import parse_ssh_args
from agent.inventory.templates import Secret

ConnectionKind = Literal["winrm", "ssh"]
WinrmTransport = Literal["ntlm", "kerberos", "basic", "certificate", "credssp"]
WinrmScheme = Literal["https", "http"]
CertValidation = Literal["validate", "ignore"]
ShellType = Literal["powershell", "cmd"]
#: How the agent binds to the directory: a simple bind (DN and password) or Kerberos (GSSAPI).
DirectoryAuth = Literal["simple", "kerberos"]



@dataclass(frozen=True)
class Location:
    """Where something is written: a file and a 1-based line (None when unknown)."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Connection:
    """How the agent reaches a host, from the Ansible connection variables."""

    kind: ConnectionKind = "winrm"
    port: int = 5986
    user: str | None = None
    password: Secret | None = None
    winrm_transport: WinrmTransport = "ntlm"
    winrm_scheme: WinrmScheme = "https"
    winrm_cert_validation: CertValidation = "validate"
    winrm_ca_trust_path: str | None = None
    ssh_private_key_file: str | None = None
    ssh_shell_type: ShellType = "powershell"
    ssh_common_args: str | None = None
    #: mfa_ssh_key_passphrase: the passphrase of ansible_ssh_private_key_file, if it has one.
    ssh_key_passphrase: Secret | None = None
    #: mfa_allow_insecure_transport: the operator accepts the insecure settings above.
    allow_insecure_transport: bool = False
    #: True when the scheme was not written but follows from ansible_port 5985, as in Ansible.
    winrm_scheme_implied: bool = False

    def describe(self) -> str:
        """One line for reports, e.g. ``winrm/ntlm over https:5986``."""
        if self.kind == "ssh":
            return f"ssh/{self.ssh_shell_type} on port {self.port}"
        return f"winrm/{self.winrm_transport} over {self.winrm_scheme}:{self.port}"

    def insecure_refusal(self) -> str | None:
        """Why a scan will refuse this connection as insecure (credentials in clear), or None."""
        insecure = (
            self.kind == "winrm"
            and self.winrm_scheme == "http"
            and self.winrm_transport in ("basic", "certificate")
        )
        if not insecure or self.allow_insecure_transport:
            return None
        return (
            f"{self.winrm_transport} over plain http would send credentials unencrypted; "
            "use https, or ntlm/kerberos (message encryption), or set "
            "mfa_allow_insecure_transport: true for this host"
        )

    def trust_notes(self) -> tuple[str, ...]:
        """Every insecure setting that was explicitly turned on, with the variable that did it."""
        notes: list[str] = []
        if self.kind == "winrm":
            if self.winrm_scheme == "http":
                why = (
                    "ansible_port 5985 implies ansible_winrm_scheme: http"
                    if self.winrm_scheme_implied
                    else "ansible_winrm_scheme: http"
                )
                notes.append(f"WinRM over plain HTTP without TLS ({why})")
            if self.winrm_cert_validation == "ignore":
                notes.append(
                    "TLS certificate validation disabled "
                    "(ansible_winrm_server_cert_validation: ignore)"
                )
        elif self.ssh_common_args:
            # The same parser the SSH connector uses: what is reported is what will happen.
            policy = parse_ssh_args(self.ssh_common_args).host_key_policy
            if policy == "no":
                notes.append("SSH host key checking disabled (ansible_ssh_common_args)")
            elif policy == "accept-new":
                notes.append(
                    "an unknown SSH host key is accepted on first use "
                    "(StrictHostKeyChecking=accept-new in ansible_ssh_common_args)"
                )
        if self.allow_insecure_transport:
            notes.append("insecure transport allowed (mfa_allow_insecure_transport)")
        return tuple(notes)


@dataclass(frozen=True)
class DirectorySettings:
    """How to reach Active Directory over LDAP (``mfa_directory``).

    With ``auth="simple"`` the agent binds as `bind_dn` with `bind_password` (both absent: an
    anonymous bind). With ``auth="kerberos"`` it binds with SASL GSSAPI from the caller's Kerberos
    credential cache (``kinit``; ``KRB5CCNAME``); `bind_dn` and `bind_password` are then None.
    """

    urls: tuple[str, ...]
    base_dn: str
    bind_dn: str | None = None
    bind_password: Secret | None = None
    ca_file: str | None = None
    #: The one name the server's TLS certificate must carry (the URL host is then not accepted);
    #: with Kerberos also the host of the service principal, ``ldap/<server_name>``.
    server_name: str | None = None
    auth: DirectoryAuth = "simple"
    group: str = "PhoneFactor Admins"
    starttls: bool = False
    allow_plain: bool = False
    validate_certs: bool = True
    timeout_seconds: int = 10
    location: Location | None = field(default=None, compare=False)

    def trust_notes(self) -> tuple[str, ...]:
        """Every insecure setting that was explicitly turned on."""
        notes: list[str] = []
        if not self.validate_certs:
            notes.append("TLS certificate validation disabled (mfa_directory.validate_certs)")
        plain = any(url.lower().startswith("ldap://") for url in self.urls)
        if plain and self.allow_plain and not self.starttls:
            notes.append("LDAP without TLS (mfa_directory.allow_plain)")
        return tuple(notes)


@dataclass(frozen=True)
class Host:
    """One inventory host as the agent sees it."""

    name: str
    address: str
    roles: frozenset[str]
    #: Every group the host is in, ancestors and ``all`` included.
    groups: frozenset[str]
    connection: Connection
    declared: Declared
    location: Location
    #: The host's variables after Ansible's precedence rules; passwords are `Secret`s.
    vars: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Why mfa-agent cannot connect to this host (e.g. ``ansible_connection: local``); only
    #: hosts without a role may have one.
    unusable_connection: str | None = None


@dataclass(frozen=True)
class SecretRef:
    """A `Secret` some host or the directory uses, and where it is written."""

    secret: Secret
    location: Location
    key: str
    #: Host name, or `agent.roles.DIRECTORY_TARGET` for the directory bind password.
    user: str


@dataclass(frozen=True, eq=False)
class Inventory:
    """A loaded, validated inventory."""

    path: Path
    #: ``sha256:<hex>`` over the inventory file and every group_vars/host_vars file read.
    digest: str
    #: In order of first definition.
    hosts: tuple[Host, ...]
    #: Every group (``all`` and ``ungrouped`` included) → its hosts, children's included.
    groups: Mapping[str, frozenset[str]]
    directory: DirectorySettings | None = None
    #: The validated ``mfa_deployment``: plain JSON-able data, only the keys declared.
    deployment: Mapping[str, Any] = field(default_factory=dict)
    phonefactor_admins_allowed: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = ()
    secret_refs: tuple[SecretRef, ...] = field(default=(), repr=False)
    #: Every source given (``-i`` repeated); `path` is the first.
    sources: tuple[Path, ...] = ()
    #: Role → the groups whose hosts have it (the role's own group, then mfa_role_groups).
    role_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def select(self, patterns: Sequence[str]) -> tuple[Host, ...]:
        """The hosts a ``--limit`` selects, in inventory order (all hosts for no patterns).

        Raises `agent.errors.InputError` naming every pattern that matches nothing.
        """
        from agent.inventory.patterns import select_names

        if not patterns:
            return self.hosts
        chosen = select_names([h.name for h in self.hosts], self.selectable_groups(), patterns)
        return tuple(h for h in self.hosts if h.name in chosen)

    def selectable_groups(self) -> dict[str, frozenset[str]]:
        """The groups ``--limit`` knows: every group, and every role as the hosts that have it."""
        from agent.roles import ROLES

        groups = dict(self.groups)
        for role in ROLES:
            holders = frozenset(h.name for h in self.hosts if role in h.roles)
            if holders or role in groups:
                groups[role] = groups.get(role, frozenset()) | holders
        return groups

    def outside_scope(self, selected: Sequence[Host]) -> dict[str, tuple[str, ...]]:
        """Role → the hosts that have it but are not in `selected` (what --limit left out)."""
        chosen = {h.name for h in selected}
        result: dict[str, list[str]] = {}
        for host in self.hosts:
            if host.name not in chosen:
                for role in host.roles:
                    result.setdefault(role, []).append(host.name)
        return {role: tuple(names) for role, names in result.items()}

    def roles_help(self) -> str:
        """How hosts get roles, and the groups this inventory has: for 'no host has a role'."""
        from agent.roles import ROLES

        groups = sorted(g for g in self.groups if g not in ("all", "ungrouped"))
        shown = ", ".join(groups[:30]) + (f", … ({len(groups)} in all)" if len(groups) > 30 else "")
        return (
            f"a host has a role when it is in a group named {', '.join(ROLES)}; or in a group "
            "mapped to the role by mfa_role_groups (in the 'all' vars or a --roles FILE, e.g. "
            "mfa_role_groups: {adfs: [adfs_servers], user_portal: [mfa_portal]}); or when it "
            "sets mfa_roles: [adfs] itself. This inventory's groups: " + (shown or "(none)")
        )

    def missing_secrets(self, hosts: Iterable[Host] | None = None) -> list[Problem]:
        """A problem for every env secret in use whose variable is unset.

        Only secrets of `hosts` (default: every host) and of the directory count.
        """
        wanted = None if hosts is None else {h.name for h in hosts}
        users: dict[tuple[Location, str, str], list[str]] = {}
        for ref in self.secret_refs:
            if ref.secret.is_available():
                continue
            if wanted is not None and _is_host_ref(ref) and ref.user not in wanted:
                continue
            name = ref.secret.env_name or ""
            user = ref.user if _is_host_ref(ref) else "the directory (mfa_directory)"
            users.setdefault((ref.location, ref.key, name), []).append(user)
        return [
            Problem(
                location.file,
                f"environment variable {name} is not set (needed by {', '.join(names)})",
                location.line,
                key,
            )
            for (location, key, name), names in users.items()
        ]


def _is_host_ref(ref: SecretRef) -> bool:
    return not ref.user.startswith("(")
