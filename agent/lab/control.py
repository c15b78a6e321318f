"""Start a whole lab — one WS-Management server per host profile — and describe it as an inventory.

::

    with start_lab(scheme="http", password=pw, state_dir=tmp) as lab:
        lab.write_inventory(tmp / "inventory.yaml")
        lab.hosts["adfs01.lab.example"].endpoint   # http://127.0.1.11:<port>/wsman

`agent.lab.server` runs a lab as a process until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Final, Literal

import yaml

from agent.errors import AgentError, ExitCode, InputError
from agent.lab.auth import Account, UserFile
from agent.lab.certs import LabCA
from agent.lab.eventloop import shared_loop
from agent.lab.profiles import LabDefinition, load_lab
from agent.lab.wsman import WsmanServer
from agent.roles import ROLES

DEFAULT_USER: Final = "LAB\\mfa-scan"
PASSWORD_ENV: Final = "MFA_LAB_PASSWORD"  # noqa: S105 - a variable name
_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Scheme = Literal["http", "https"]


class LabError(AgentError):
    """The lab could not start (an address or port already in use, no permission)."""

    exit_code = ExitCode.ERROR


@dataclass(frozen=True)
class LabHost:
    """Where one simulated host listens."""

    name: str
    address: str
    port: int
    scheme: str
    roles: tuple[str, ...]

    @property
    def endpoint(self) -> str:
        """The WinRM endpoint URL."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}/wsman"


class Lab:
    """A running lab. Stop it with `stop` or by using it as a context manager."""

    def __init__(
        self,
        definition: LabDefinition,
        servers: Mapping[str, WsmanServer],
        *,
        user: str,
        scheme: Scheme,
        ca_file: Path | None,
        user_files: list[UserFile],
    ) -> None:
        self.definition = definition
        self.user = user
        self.scheme: Scheme = scheme
        self.ca_file = ca_file
        self._servers = dict(servers)
        self._user_files = user_files
        self.hosts: Mapping[str, LabHost] = MappingProxyType({
            name: LabHost(name, server.address, server.port, server.scheme, server.profile.roles)
            for name, server in servers.items()
        })

    def server(self, name: str) -> WsmanServer:
        """The server of one host (for in-process inspection, e.g. its ``stats``)."""
        return self._servers[name]

    def stop(self) -> None:
        """Stop every server and delete the credential files. Safe to call twice."""
        _stop_all(list(self._servers.values()))
        for user_file in self._user_files:
            user_file.remove()

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def inventory(
        self, password_env: str = PASSWORD_ENV, extra_vars: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The Ansible inventory of this lab as data (the password only as an env lookup).

        `extra_vars` join the ``all`` vars (e.g. the lab directory's ``mfa_directory``).
        """
        if not _ENV_NAME.match(password_env):
            raise ValueError(f"{password_env!r} is not an environment variable name")
        common: dict[str, Any] = {
            "ansible_user": self.user,
            "ansible_password": f"{{{{ lookup('env', '{password_env}') }}}}",
            "ansible_connection": "winrm",
            "ansible_winrm_transport": "ntlm",
            "ansible_winrm_scheme": self.scheme,
        }
        if self.scheme == "https":
            common["ansible_winrm_server_cert_validation"] = "validate"
            common["ansible_winrm_ca_trust_path"] = str(self.ca_file)
        common.update(self.definition.inventory_vars)
        common.update(extra_vars or {})
        children: dict[str, Any] = {}
        ungrouped: dict[str, Any] = {}
        for role in ROLES:
            members = {
                h.name: {"ansible_host": h.address, "ansible_port": h.port}
                for h in self.hosts.values() if role in h.roles
            }
            if members:
                children[role] = {"hosts": members}
        for host in self.hosts.values():
            if not host.roles:
                ungrouped[host.name] = {"ansible_host": host.address, "ansible_port": host.port}
        everything: dict[str, Any] = {"vars": common}
        if ungrouped:
            everything["hosts"] = ungrouped
        everything["children"] = children
        return {"all": everything}

    def write_inventory(
        self,
        path: Path,
        password_env: str = PASSWORD_ENV,
        extra_vars: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the inventory as YAML (atomically); the password is never written."""
        header = (
            f"# The mfa-agent lab ({self.definition.directory}), generated while it runs.\n"
            f"# The password is read from the environment variable {password_env}.\n"
        )
        text = header + yaml.dump(
            self.inventory(password_env, extra_vars),
            Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),  # libyaml: 10,000 hosts fast
            sort_keys=False,
            default_flow_style=False,
            width=100,
        )
        write_atomically(path, text.encode("utf-8"), 0o644)
        return path


def _start_all(servers: list[WsmanServer]) -> None:
    async def start() -> None:
        await asyncio.gather(*(server.start_serving() for server in servers))

    shared_loop().run(start(), timeout=None)


def _stop_all(servers: list[WsmanServer]) -> None:
    async def stop() -> None:
        for server in servers:
            await server.stop_serving()

    shared_loop().run(stop())


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


def start_lab(
    profiles_dir: Path | None = None,
    *,
    scheme: Scheme = "http",
    port: int = 0,
    password: str,
    user: str = DEFAULT_USER,
    state_dir: Path,
    allow_unencrypted: bool = False,
    latency: float = 0.0,
) -> Lab:
    """Start one server per host profile on its address (`port` 0 = an ephemeral port each).

    Every host is served by the process's one lab event loop (`agent.lab.eventloop`).
    `latency` seconds are added to every answer. `profiles_dir` None is the built-in lab.
    `state_dir` receives the TLS files and the per-server ``NTLM_USER_FILE`` credential files
    (removed by `Lab.stop`). `InputError` for invalid profiles or arguments, `LabError` when a
    server cannot listen.
    """
    if scheme not in ("http", "https"):
        raise InputError(f"scheme must be http or https, not {scheme!r}")
    if not 0 <= port <= 65535:
        raise InputError(f"port must be between 0 and 65535, not {port}")
    if not 0 <= latency <= 60:
        raise InputError(f"latency must be between 0 and 60 seconds, not {latency:g}")
    try:
        account = Account(user, password)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    definition = load_lab(profiles_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    ca = LabCA(state_dir) if scheme == "https" else None
    tag = secrets.token_hex(4)
    user_files = [UserFile(state_dir / f"ntlm-users-{tag}", account)]
    servers: dict[str, WsmanServer] = {}
    try:
        for index, profile in enumerate(definition.hosts):
            tls = None if ca is None else ca.issue(
                [profile.name], [profile.address], file_name=f"server-{index}.pem")
            host_account, user_file = account, user_files[0]
            if profile.faults.wrong_password:
                # The host's copy of the account has another password: every logon fails.
                host_account = Account(user, secrets.token_urlsafe(24))
                user_file = UserFile(state_dir / f"ntlm-users-{tag}-{profile.name}", host_account)
                user_files.append(user_file)
            try:
                server = WsmanServer(profile, account=host_account, user_file=user_file,
                                     port=port, tls=tls, allow_unencrypted=allow_unencrypted,
                                     latency=latency)
            except OSError as exc:
                raise LabError(f"{profile.name}: cannot listen on {profile.address}:{port}: "
                               f"{exc.strerror or exc}") from exc
            servers[profile.name] = server
        _start_all(list(servers.values()))
    except BaseException:
        _stop_all(list(servers.values()))
        for user_file in user_files:
            user_file.remove()
        raise
    return Lab(definition, servers, user=user, scheme=scheme,
               ca_file=ca.ca_file if ca else None, user_files=user_files)
