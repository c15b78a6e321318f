"""Real OpenSSH servers on loopback for end-to-end tests of the SSH connector.

One session builds an `SshLab` in a directory of its own (world-readable: the sshd sessions run
as an unprivileged test user, who cannot enter pytest's 0700 tmp directories):

* a **test user** and a **bastion user** for the jump host, made with useradd for this session
  (unique names, so that concurrent sessions never change each other's passwords; homes inside
  the session directory; removed with userdel at the end, and a crashed session's users by the
  next) with random passwords set by chpasswd as real hashes — with ``UsePAM no`` the ``!``
  useradd leaves would refuse even key logins;
* **client keys**: ed25519 unencrypted, ed25519 encrypted with a passphrase, and one for ssh-agent;
* the **``powershell`` stand-in** (`agent.lab.powershell_standin`) behind a launcher named
  ``powershell`` in ``bin/``, run by a Python interpreter the test user can execute;
* **sshd instances**, one per simulated host, each on its own 127.0.9.N address and free port
  with its own host keys and config; ``SetEnv`` gives each session ``PATH`` (with or without
  ``bin/``) and ``MFA_LAB_PROFILE`` (the host profile the stand-in answers from);
* a **jump host**: an sshd where only the bastion user may log in, with TCP forwarding allowed
  and ``PermitOpen`` limited to one target;
* **known_hosts** written from the host keys (``[127.0.9.N]:port`` entries), and fingerprints read
  with ``ssh-keygen -l`` to compare the connector's with.

Every sshd is stopped by its PID (SIGTERM, then SIGKILL), after its own session processes.
Everything listens on and connects to 127.0.0.0/8 only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from conftest import require_or_fail
from expectations import check_facts, profile_statuses

from agent.lab.powershell_standin import PROFILE_ENV

REPO: Final = Path(__file__).resolve().parent.parent
FAULT_PROFILES: Final = Path(__file__).resolve().parent / "data" / "lab-faults"
BUILTIN_PROFILES: Final = REPO / "agent" / "lab" / "profiles"
SSHD: Final = "/usr/sbin/sshd"
#: Name prefixes of the session's accounts: the one scans sign in as, and the jump host's.
TEST_USER_PREFIX: Final = "mfa-ssh-"
BASTION_USER_PREFIX: Final = "mfa-jump-"
#: The comment (GECOS) of those accounts; the pid of the test session that made them follows.
USER_COMMENT: Final = "mfa-agent SSH tests pid "
#: Environment variables the inventories read secrets from (set by the `ssh` fixture).
PASSWORD_ENV: Final = "MFA_SSH_TEST_PASSWORD"
PASSPHRASE_ENV: Final = "MFA_SSH_TEST_PASSPHRASE"
#: The session directory's name prefix (in the system's temporary directory).
SESSION_PREFIX: Final = "mfa-agent-ssh-"
#: sshd instances get 127.0.9.1, 127.0.9.2, … (the WinRM labs use 127.0.1.x and 127.0.3.x).
ADDRESS_PREFIX: Final = "127.0.9."
START_TIMEOUT: Final = 60.0  # bounds a failure only: a busy machine may take long
STOP_TIMEOUT: Final = 5.0
#: A PATH without the stand-in: what a host without PowerShell offers.
PLAIN_PATH: Final = "/usr/bin:/bin"
#: Timeouts for scans of these servers: a connection takes milliseconds here, so the 2 s connect
#: timeout still lets a silent server time out quickly; the host and operation bounds are generous
#: (no test waits for them to fire) so that a busy machine never fails a healthy host.
FAST_SSH_TIMEOUTS: Final = ("--host-timeout", "60", "--operation-timeout", "30",
                            "--connect-timeout", "2")
#: Environment variables that could point paramiko at an agent or traffic at a proxy.
_CLEARED_ENV: Final = ("SSH_AUTH_SOCK", "http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY",
                       "HTTPS_PROXY", "ALL_PROXY")


# -- programs ------------------------------------------------------------------------------------


def missing_programs() -> list[str]:
    """The programs these fixtures need that are not installed."""
    wanted = {"sshd": SSHD, "ssh-keygen": "ssh-keygen", "ssh-agent": "ssh-agent",
              "ssh-add": "ssh-add", "useradd": "useradd", "chpasswd": "chpasswd",
              "userdel": "userdel"}
    return [name for name, program in wanted.items()
            if not (Path(program).is_file() if program.startswith("/") else shutil.which(program))]


def sshd_version() -> tuple[int, int]:
    """OpenSSH's (major, minor) of the installed sshd (0, 0 if unknown)."""
    probe = subprocess.run([SSHD, "-V"], capture_output=True, text=True, check=False, timeout=10)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", probe.stdout + probe.stderr)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _run(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=30,
                            **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def keygen(path: Path, kind: str = "ed25519", passphrase: str = "") -> Path:
    """A new key pair at `path` (and ``path.pub``); a passphrase encrypts the private key."""
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    # -a 4: few KDF rounds, so loading the encrypted key costs milliseconds, not a second.
    _run(["ssh-keygen", "-q", "-t", kind, "-a", "4", "-N", passphrase, "-C", path.name,
          "-f", str(path)])
    return path


def fingerprint(public_key: Path) -> str:
    """OpenSSH's own ``SHA256:…`` fingerprint of a public key file."""
    out = _run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)]).stdout
    return out.split()[1]


def public_key(path: Path) -> str:
    """``type base64`` of a key pair's public half."""
    kind, blob = path.with_suffix(".pub").read_text().split()[:2]
    return f"{kind} {blob}"


# -- users ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """A local account the sshd sessions run as."""

    name: str
    uid: int
    gid: int
    home: Path
    password: str


def add_user(prefix: str, homes: Path) -> User:
    """A new account ``prefix<random>`` with its home under `homes` and a random password."""
    name = f"{prefix}{secrets.token_hex(4)}"
    home = homes / name
    _run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh",
          "--user-group", "--comment", f"{USER_COMMENT}{os.getpid()}", name])
    password = f"Pw-{secrets.token_hex(12)}"
    # On stdin, never on a command line; chpasswd stores a real hash (not '!': locked).
    _run(["chpasswd"], input=f"{name}:{password}\n")
    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid, home, password)


def remove_user(name: str) -> None:
    """Remove an account these fixtures made (its home goes with the session directory)."""
    subprocess.run(["userdel", name], capture_output=True, check=False, timeout=30)


def remove_stale_users() -> None:
    """Remove the accounts of test sessions that ended without removing them (killed, crashed)."""
    for entry in pwd.getpwall():
        if not entry.pw_name.startswith((TEST_USER_PREFIX, BASTION_USER_PREFIX)):
            continue
        _, ours, pid = entry.pw_gecos.partition(USER_COMMENT)
        if not ours or not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue  # not ours, or its session still runs
        remove_user(entry.pw_name)
        home = Path(entry.pw_dir)
        if home.parent.parent.name.startswith(SESSION_PREFIX):  # only a home we made
            shutil.rmtree(home, ignore_errors=True)


def _readable_copy(scratch: Path) -> str:
    """A world-readable copy of the agent package and the venv's packages, for a checkout the
    test user cannot read (e.g. a clone under /root); its PYTHONPATH."""
    target = scratch / "python-path"
    if not target.exists():
        shutil.copytree(REPO / "agent", target / "agent")
        for source in dict.fromkeys(
            [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        ):
            shutil.copytree(source, target / "site", dirs_exist_ok=True)
        for path in [target, *target.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return os.pathsep.join([str(target), str(target / "site")])


def standin_interpreter(user: User, scratch: Path) -> tuple[str, str]:
    """(python, PYTHONPATH) with which `user` can run the stand-in, or skip/fail.

    The venv's own interpreter when the user can run it (CI: a venv of Debian's python). A venv
    made from an interpreter under /root (pyenv) is out of the user's reach: then the system's
    python of the same version, with the venv's site-packages on PYTHONPATH — or, when the
    checkout itself is out of reach, with a world-readable copy of them in `scratch`.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    packages = os.pathsep.join(dict.fromkeys(
        [str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    candidates: list[tuple[str, str | Callable[[], str]]] = [(sys.executable, str(REPO))]
    for name in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if Path(name).is_file():
            candidates.append((name, packages))
            candidates.append((name, lambda: _readable_copy(scratch)))
    problems = []
    for python, path_or_copy in candidates:
        pythonpath = path_or_copy if isinstance(path_or_copy, str) else path_or_copy()
        try:
            probe = subprocess.run(
                [python, "-s", "-c", "import agent.lab.powershell_standin, agent.lab.simulate"],
                user=user.uid, group=user.gid, extra_groups=[], cwd="/",
                env={"PATH": PLAIN_PATH, "HOME": str(user.home), "PYTHONPATH": pythonpath},
                capture_output=True, text=True, check=False, timeout=60,
            )
        except OSError as exc:  # the user may not even reach the interpreter
            problems.append(f"{python}: {exc.strerror}")
            continue
        if probe.returncode == 0:
            return python, pythonpath
        problems.append(f"{python}: {' '.join(probe.stderr.strip().splitlines()[-1:])}")
    require_or_fail(False, f"a Python {version} that {user.name} can run ({'; '.join(problems)})")
    raise AssertionError("unreachable")


# -- servers -------------------------------------------------------------------------------------


@dataclass
class SshServer:
    """One running sshd: a simulated Windows host with OpenSSH Server, or a jump host."""

    name: str
    address: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    #: Host key pairs (private key paths; the public halves are beside them).
    host_keys: tuple[Path, ...]
    #: The only account it lets in.
    user: str
    #: The host profile its sessions answer from (None for a jump host).
    profile: Path | None = None

    @property
    def pid(self) -> int:
        """The listening sshd's process id."""
        return self.process.pid

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts names this server: ``[address]:port``."""
        return f"[{self.address}]:{self.port}"

    @property
    def jump(self) -> str:
        """``user@address:port`` for ProxyJump (its account)."""
        return f"{self.user}@{self.address}:{self.port}"

    def fingerprint(self, kind: str = "ed25519") -> str:
        """The ``SHA256:…`` fingerprint of its host key of that type (by ssh-keygen)."""
        return fingerprint(self._key(kind).with_suffix(".pub"))

    def known_hosts_lines(self, kinds: Iterable[str] | None = None) -> list[str]:
        """known_hosts lines for its host keys (all of them, or those of `kinds`)."""
        keys = self.host_keys if kinds is None else [self._key(k) for k in kinds]
        return [f"{self.known_hosts_name} {public_key(k)}" for k in keys]

    def log(self) -> str:
        """What sshd wrote to its log so far (for failure messages)."""
        return (self.directory / "sshd.log").read_text(errors="replace")

    def _key(self, kind: str) -> Path:
        for key in self.host_keys:
            if key.name == f"host_{kind}":
                return key
        raise KeyError(f"{self.name} has no {kind} host key")

    def stop(self) -> int:
        """Stop its session processes and then sshd itself, by PID."""
        return stop_tree(self.process)


def _process_table() -> dict[int, int]:
    """pid → parent pid of every process (from /proc)."""
    table: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "pid (comm) state ppid …": comm may hold spaces, so split after its ')'.
            table[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    return table


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, children first."""
    children: dict[int, list[int]] = {}
    for child, parent in _process_table().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_tree(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM to a server's PID and to each process it started; SIGKILL what outlives that."""
    below = descendants(process.pid) if process.poll() is None else []
    for pid in [process.pid, *below]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in below:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return process.returncode


def free_port(address: str) -> int:
    """A TCP port nothing listens on at `address` (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _answers_ssh(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


@dataclass
class SshLab:
    """The session's users, keys, stand-in and sshd instances (see the module docstring)."""

    root: Path
    user: User
    bastion_user: User
    python: str
    pythonpath: str
    passphrase: str
    version: tuple[int, int]
    servers: dict[str, SshServer] = field(default_factory=dict)
    _next_address: int = 1

    @property
    def bin(self) -> Path:
        """The directory holding the ``powershell`` launcher."""
        return self.root / "bin"

    @property
    def key(self) -> Path:
        """The unencrypted client key (authorized for both users)."""
        return self.root / "client" / "id_ed25519"

    @property
    def encrypted_key(self) -> Path:
        """The client key encrypted with `passphrase` (authorized for the test user)."""
        return self.root / "client" / "id_ed25519_encrypted"

    @property
    def agent_key(self) -> Path:
        """The key only ssh-agent offers (authorized for the test user)."""
        return self.root / "client" / "id_ed25519_agent"

    @property
    def impostor_key(self) -> Path:
        """A host key no server has: known_hosts entries with it make a host key 'changed'."""
        return self.root / "client" / "host_impostor"

    @property
    def known_hosts(self) -> Path:
        """known_hosts with every host key of every server."""
        return self.root / "known_hosts"

    def setup(self) -> None:
        """Client keys, authorized keys, the stand-in launcher."""
        (self.root / "client").mkdir()
        keygen(self.key)
        keygen(self.encrypted_key, passphrase=self.passphrase)
        keygen(self.agent_key)
        keygen(self.impostor_key)
        for private in (self.key, self.encrypted_key, self.agent_key):
            private.chmod(0o600)
        authorized = self.root / "authorized_keys"
        authorized.mkdir()
        users = {self.user.name: (self.key, self.encrypted_key, self.agent_key),
                 self.bastion_user.name: (self.key,)}
        for name, keys in users.items():
            (authorized / name).write_text("".join(f"{public_key(k)}\n" for k in keys))
        self.bin.mkdir()
        launcher = self.bin / "powershell"
        launcher.write_text(
            "#!/bin/sh\n"
            "# The powershell stand-in of mfa-agent's SSH tests (agent/lab/powershell_standin.py)\n"
            f"PYTHONPATH={shlex.quote(self.pythonpath)} exec {shlex.quote(self.python)} -s "
            '-m agent.lab.powershell_standin "$@"\n'
        )
        launcher.chmod(0o755)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir

    def _address(self) -> str:
        address = f"{ADDRESS_PREFIX}{self._next_address}"
        self._next_address += 1
        return address

    def _config(self, directory: Path, address: str, port: int, keys: Sequence[Path],
                lines: Sequence[str], max_startups: str) -> Path:
        config = [
            f"ListenAddress {address}",
            f"Port {port}",
            *(f"HostKey {key}" for key in keys),
            f"PidFile {directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}/%u",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin no",
            "UseDNS no",
            "PrintMotd no",
            "PermitTTY no",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "LogLevel VERBOSE",
            f"MaxStartups {max_startups}",
            *lines,
        ]
        if self.version >= (9, 8):
            # Newer sshd penalises addresses with failed logins: tests fail logins on purpose.
            config.append("PerSourcePenalties no")
        path = directory / "sshd_config"
        path.write_text("\n".join(config) + "\n")
        return path

    def _launch(self, name: str, user: User, key_kinds: Sequence[str], lines: Sequence[str],
                profile: Path | None, max_startups: str = "100:30:200") -> SshServer:
        directory = self.root / "servers" / name
        directory.mkdir(parents=True)
        keys = tuple(keygen(directory / f"host_{kind}", kind) for kind in key_kinds)
        address = self._address()
        for _attempt in range(3):
            port = free_port(address)
            config = self._config(directory, address, port, keys, lines, max_startups)
            log = (directory / "sshd.log").open("ab")
            with log:
                process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            server = SshServer(name, address, port, directory, process, keys, user.name,
                               profile)
            deadline = time.monotonic() + START_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if _answers_ssh(address, port):
                    self.servers[name] = server
                    return server
                time.sleep(0.02)
            server.stop()
            if "Address already in use" not in server.log():
                break  # not a lost race for the port: no point in another one
        raise RuntimeError(f"sshd {name} did not start on {address}: {server.log()[-2000:]}")

    def start_host(self, name: str, profile: Path, *, powershell: bool = True,
                   key_kinds: Sequence[str] = ("ed25519",),
                   max_startups: str = "100:30:200") -> SshServer:
        """An sshd whose sessions answer from `profile` (no powershell on PATH if not wanted),
        with sshd's ``MaxStartups`` as given."""
        path = f"{self.bin}:{PLAIN_PATH}" if powershell else PLAIN_PATH
        # A copy in the session's world-readable directory: the checkout may sit where the test
        # user cannot read (a clone under a 0700 directory, as mktemp makes them).
        readable = self.root / "profiles" / f"{name}.yaml"
        readable.parent.mkdir(mode=0o755, exist_ok=True)
        shutil.copyfile(profile, readable)
        readable.chmod(0o644)
        lines = [f"AllowUsers {self.user.name}", "AllowTcpForwarding no",
                 f'SetEnv "PATH={path}" "{PROFILE_ENV}={readable}"']
        return self._launch(name, self.user, key_kinds, lines, profile, max_startups)

    def start_bastion(self, name: str, targets: Sequence[SshServer],
                      max_startups: str = "100:30:200") -> SshServer:
        """A jump host: only the bastion user, TCP forwarding to `targets` only, no shell;
        sshd's ``MaxStartups`` as given (the tests' other servers take 100 at once)."""
        permit = " ".join(f"{t.address}:{t.port}" for t in targets)
        lines = [f"AllowUsers {self.bastion_user.name}", "AllowTcpForwarding local",
                 f"PermitOpen {permit}", "ForceCommand /bin/false"]
        return self._launch(name, self.bastion_user, ("ed25519",), lines, None, max_startups)

    def write_known_hosts(self, path: Path, servers: Iterable[SshServer] | None = None,
                          extra: Iterable[str] = ()) -> Path:
        """known_hosts with the host keys of `servers` (all by default) and `extra` lines."""
        chosen = self.servers.values() if servers is None else servers
        lines = [line for server in chosen for line in server.known_hosts_lines()]
        path.write_text("".join(f"{line}\n" for line in [*lines, *extra]))
        return path

    def inventory(self, path: Path,
                  hosts: Mapping[str, tuple[Sequence[str], Mapping[str, Any]]],
                  common: Mapping[str, Any] | None = None) -> Path:
        """An inventory of SSH hosts: name → (roles, variables); `common` joins ``all.vars``."""
        children: dict[str, Any] = {}
        for name, (roles, variables) in hosts.items():
            for role in roles:
                children.setdefault(role, {"hosts": {}})["hosts"][name] = dict(variables)
        everything = {"vars": {"ansible_connection": "ssh", "ansible_user": self.user.name,
                               **(common or {})},
                      "children": children}
        path.write_text(yaml.safe_dump({"all": everything}, sort_keys=False))
        return path

    def stop(self) -> None:
        """Stop every server, then remove the session's accounts."""
        for server in self.servers.values():
            server.stop()
        for user in (self.user, self.bastion_user):
            remove_user(user.name)


# -- the session lab -----------------------------------------------------------------------------

#: The standard servers: name → (profile, starts with the stand-in on PATH).
HOST_SERVERS: Final[dict[str, tuple[Path, bool]]] = {
    **{name: (BUILTIN_PROFILES / f"{name}.yaml", True)
       for name in ("adfs01", "adfs02", "mfa01", "portal01", "sync01")},
    "healthy": (FAULT_PROFILES / "garbage-output" / "healthy.yaml", True),
    **{case: (FAULT_PROFILES / case / "faulty.yaml", True)
       for case in ("garbage-output", "powershell-error", "slow-past-deadline",
                    "command-line-limit")},
    "no-powershell": (FAULT_PROFILES / "garbage-output" / "healthy.yaml", False),
}
#: The jump host, and the one server it forwards to.
BASTION: Final = "bastion"
JUMP_TARGET: Final = "healthy"


def build_lab(root: Path) -> SshLab:
    """Users, keys, the stand-in and every standard server (see HOST_SERVERS)."""
    missing = missing_programs()
    require_or_fail(not missing, f"OpenSSH server ({', '.join(missing)} missing)")
    require_or_fail(os.geteuid() == 0, "root (to add the SSH test users and run sshd)")
    remove_stale_users()
    homes = root / "home"
    homes.mkdir()
    user = add_user(TEST_USER_PREFIX, homes)
    try:
        bastion_user = add_user(BASTION_USER_PREFIX, homes)
    except BaseException:
        remove_user(user.name)
        raise
    lab = SshLab(root, user, bastion_user, "", "",
                 passphrase=f"Kp-{secrets.token_hex(10)}-Phrase", version=sshd_version())
    try:
        lab.python, lab.pythonpath = standin_interpreter(user, root)
        lab.setup()
        for name, (profile, powershell) in HOST_SERVERS.items():
            kinds = ("ed25519", "ecdsa") if name == JUMP_TARGET else ("ed25519",)
            lab.start_host(name, profile, powershell=powershell, key_kinds=kinds)
        lab.start_bastion(BASTION, [lab.servers[JUMP_TARGET]])
        lab.write_known_hosts(lab.known_hosts)
    except BaseException:
        lab.stop()
        raise
    return lab


@pytest.fixture(scope="session")
def ssh_lab() -> Iterator[SshLab]:
    """The session's SSH lab; everything stopped and removed at the end."""
    root = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX))
    root.chmod(0o755)  # the sessions run as the test user: profiles and bin/ must be readable
    try:
        lab = build_lab(root)
        try:
            yield lab
        finally:
            lab.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ssh(ssh_lab: SshLab, monkeypatch: pytest.MonkeyPatch) -> SshLab:
    """The SSH lab, with the secrets in the environment and no ssh-agent or proxy in sight."""
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(PASSWORD_ENV, ssh_lab.user.password)
    monkeypatch.setenv(PASSPHRASE_ENV, ssh_lab.passphrase)
    return ssh_lab


# -- ssh-agent and a listener that never speaks SSH -------------------------------------------


@dataclass
class SshAgent:
    """A running ssh-agent holding one key."""

    socket: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop it by its PID."""
        stop_tree(self.process)


def start_agent(directory: Path, key: Path) -> SshAgent:
    """``ssh-agent -D -a SOCKET`` with `key` added."""
    directory.mkdir(parents=True, exist_ok=True)
    sock = directory / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent = SshAgent(sock, process)
    deadline = time.monotonic() + START_TIMEOUT
    while not sock.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            agent.stop()
            raise RuntimeError("ssh-agent did not start")
        time.sleep(0.01)
    try:
        _run(["ssh-add", str(key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
             stdin=subprocess.DEVNULL)
    except BaseException:
        agent.stop()
        raise
    return agent


@pytest.fixture
def ssh_agent(ssh: SshLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshAgent]:
    """An ssh-agent with the lab's agent key, as SSH_AUTH_SOCK for the test."""
    agent = start_agent(tmp_path / "agent", ssh.agent_key)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.socket))
    try:
        yield agent
    finally:
        agent.stop()


class SilentListener:
    """A TCP listener on loopback that accepts connections and never says a word."""

    def __init__(self, address: str = "127.0.9.250") -> None:
        self._listener = socket.create_server((address, 0))
        self.address = address
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="silent listener", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(connection)
                self.accepted += 1

    def close(self) -> None:
        """Close the listener and every connection it holds."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    """A `SilentListener`, closed at teardown."""
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.close()


# -- inventories ---------------------------------------------------------------------------------


def host_vars(server: SshServer | tuple[str, int], *, known_hosts: Path | None,
              args: str = "", **extra: Any) -> dict[str, Any]:
    """A host's connection variables: address, port, ssh options (with its known_hosts)."""
    address, port = (server.address, server.port) if isinstance(server, SshServer) else server
    options = " ".join(filter(None, [
        f"-o UserKnownHostsFile={known_hosts}" if known_hosts else "", args]))
    entry: dict[str, Any] = {"ansible_host": address, "ansible_port": port}
    if options:
        entry["ansible_ssh_common_args"] = options
    entry.update(extra)
    return entry


PASSWORD_LOOKUP: Final = f"{{{{ lookup('env', '{PASSWORD_ENV}') }}}}"
PASSPHRASE_LOOKUP: Final = f"{{{{ lookup('env', '{PASSPHRASE_ENV}') }}}}"


# -- what the scans must show --------------------------------------------------------------------

HEALTHY: Final = "healthy.lab.example"
#: What the healthy AD FS profile of tests/data/lab-faults yields (and the WinRM tests expect),
#: and the fact each of its checks reads first (tests/expectations.py derives both).
HEALTHY_STATUSES: Final[dict[str, str]] = profile_statuses(
    Path(__file__).resolve().parent / "data" / "lab-faults" / "hang" / "healthy.yaml"
)
CHECK_FACTS: Final[dict[str, str]] = check_facts(
    Path(__file__).resolve().parent / "data" / "lab-faults" / "hang" / "healthy.yaml"
)


def expected_facts(profile: Path) -> dict[str, Any]:
    """The fact entries a scan must gather from a host answering from `profile` (not clock)."""
    from agent.factscripts import scripts_for
    from agent.lab import load_profile

    loaded = load_profile(profile)
    facts = [f for s in scripts_for(frozenset(loaded.roles)) for f in s.facts if f != "clock"]
    return {f: ({"error": loaded.fact_errors[f]} if f in loaded.fact_errors
                else {"value": loaded.facts[f]}) for f in facts}
