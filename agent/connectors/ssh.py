"""The SSH connector: the same fact scripts over OpenSSH on Windows, optionally via bastions.

One SSH connection (paramiko `Transport`) per host and scan, one exec channel per fact script.
Every host behind a bastion is its own connection to that bastion, and sshd drops
unauthenticated connections beyond its ``MaxStartups`` (OpenSSH's default ``10:30:100``: with 10
unauthenticated, 30 % of new ones are refused, rising to all at 100); so this process has at most
`HANDSHAKES_PER_SERVER` handshakes in progress with one bastion at a time, however many hosts are
read at once; the same holds for a host that several inventory hosts name. A server is known by
the chain that reaches it (its host and port as the inventory writes them, after the bastions
before it): one server written under two names gets two gates. Signed-in connections do not
count against ``MaxStartups``: a place is given back once the hop has signed in and a channel on
its session is open (through a bastion to the next hop; on the host, the first script's), a
round trip with its signed-in session (by then sshd's listener knows it signed in). A server
that leaves a connection or its handshake unanswered for the connect timeout is remembered as
silent for the host deadline: the hosts waiting for its places, and those that come to it, fail
at once (`_Gate.mark_silent`), so one dead bastion costs one connect timeout, not one per host.
Host keys are verified against known_hosts (``UserKnownHostsFile`` or ``~/.ssh/known_hosts``) for
the host and for every bastion; an unknown or changed key is an ERROR that shows the fingerprint.
Authentication tries the key file (passphrase from ``mfa_ssh_key_passphrase``), then ssh-agent,
then the password.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import paramiko

from agent.connectors.common import (
    MAX_OUTPUT_BYTES,
    Timeouts,
    run_scripts,
    script_entries,
    too_much_output,
)
from agent.connectors.errors import (
    COULD_NOT_CONNECT,
    OS_ERROR_ROW,
    ConnectorError,
    ErrorKind,
    Row,
    fixed,
    map_exception,
    network_rows,
    shown,
)
from agent.factscripts import FactScript, scripts_for
from agent.inventory import Host
from agent.inventory.sshargs import HostKeyPolicy, Jump, SshArgsError, SshOptions, parse_ssh_args

log = logging.getLogger(__name__)
#: Exit codes of a shell that could not find the program: sh, cmd.exe.
_NOT_FOUND = frozenset({127, 9009})
#: Host key algorithms that a known_hosts key type can be negotiated as.
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


#: Handshakes this process has in progress with one SSH server at once: below sshd's default
#: ``MaxStartups`` start (10), leaving room for the server's other users.
HANDSHAKES_PER_SERVER = 8


@dataclass
class _Gate:
    """The places of one server (a chain of hops), while anybody holds or waits for one, or
    while it is remembered as silent."""

    places: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(HANDSHAKES_PER_SERVER))
    users: int = 0
    #: Why the server is not tried again, and until when (``time.monotonic``): it left a
    #: connection or its SSH handshake unanswered for the connect timeout (`mark_silent`).
    silent: tuple[str, float] | None = None

    def mark_silent(self, why: str, seconds: float) -> None:
        """Remember for `seconds` that the server did not answer (`why`, the error it cost):
        meanwhile the hosts waiting for a turn with it, and those that come to it, fail at once
        instead of each spending the connect timeout on it, 8 at a time."""
        self.silent = (why, time.monotonic() + seconds)

    def refuse_if_silent(self, server: str, bastion: bool) -> None:
        """TIMED_OUT, naming why, while the server is remembered as silent."""
        silent = self.silent
        if silent is None:
            return
        why, until = silent
        left = until - time.monotonic()
        if left <= 0:
            self.silent = None
            return
        what = f"bastion {server}" if bastion else server
        raise ConnectorError(ErrorKind.TIMED_OUT, (
            f"not tried: {what} did not answer another host of this scan ({why}); it is tried "
            f"again in {left:.0f} s"))


_gates: dict[tuple[tuple[str, int], ...], _Gate] = {}
_gates_lock = threading.Lock()


@contextlib.contextmanager
def sign_in_gate(chain: Sequence[Jump], deadline: float, *, bastion: bool) -> Iterator[_Gate]:
    """Hold one of `HANDSHAKES_PER_SERVER` places for a handshake with the last hop of `chain`
    (a bastion, or the host); TIMED_OUT if none frees up before the host's `deadline`
    (``time.monotonic``), or at once while the server is remembered as silent (before waiting
    and again after: the handshakes ahead may have found it so). A server's gate is dropped
    once nobody holds or waits for a place and it is not remembered as silent, so a scan of
    many hosts keeps none for the hosts it is done with."""
    key = tuple((hop.host, hop.port) for hop in chain)
    server = f"{chain[-1].host}:{chain[-1].port}"
    gates = _gates
    with _gates_lock:
        gate = gates.get(key) or gates.setdefault(key, _Gate())
        gate.users += 1
    try:
        gate.refuse_if_silent(server, bastion)
        if not gate.places.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise ConnectorError(ErrorKind.TIMED_OUT, (
                f"timed out waiting for a turn to sign in to bastion {server} (at most "
                f"{HANDSHAKES_PER_SERVER} sign-ins with one bastion at a time)") if bastion else (
                f"timed out waiting for a turn to sign in to {server} (at most "
                f"{HANDSHAKES_PER_SERVER} sign-ins with one SSH server at a time)"))
        try:
            gate.refuse_if_silent(server, bastion)
            yield gate
        finally:
            gate.places.release()
    finally:
        with _gates_lock:
            gate.users -= 1
            if not gate.users and (gate.silent is None or gate.silent[1] <= time.monotonic()):
                del gates[key]


#: The parsed known_hosts files, by path, with the version (inode, size, modification and change
#: times) they were parsed from: paramiko parses every key of a file (0.5 ms a line), and an
#: estate's file names every host, so parsing it again for each host made a scan quadratic (2,000
#: lines: 1.1 s of CPU per host). A file that changed is parsed again. Only looked up, never
#: changed.
_known_hosts: dict[str, tuple[tuple[int, int, int, int], paramiko.HostKeys]] = {}
_known_hosts_lock = threading.Lock()


def _read_known_hosts(path: Path) -> paramiko.HostKeys:
    """The host keys of a known_hosts file, parsed once per version of the file."""
    try:
        status = path.stat()
        name = str(path.resolve())
        # ctime too: a rewrite in place that keeps the size and the modification time
        # (cp -p, rsync -t --inplace) still changes it.
        version = (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
        with _known_hosts_lock:
            parsed = _known_hosts.get(name)
            if parsed is None or parsed[0] != version:
                known = paramiko.HostKeys()
                known.load(name)
                parsed = _known_hosts[name] = (version, known)
        return parsed[1]
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise ConnectorError(
            ErrorKind.CONFIGURATION, f"cannot read known hosts file {path}: {exc}"
        ) from None


def known_hosts_name(host: str, port: int) -> str:
    """How known_hosts names a host: ``host``, or ``[host]:port`` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


@dataclass
class HostKeyCheck:
    """Verifies server keys against a known_hosts file under one policy; records what it did."""

    policy: HostKeyPolicy
    known: paramiko.HostKeys
    accepted: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, options: SshOptions) -> HostKeyCheck:
        """The known hosts of the inventory's file, else the user's (missing file: none known)."""
        path = Path(options.known_hosts_file or "~/.ssh/known_hosts").expanduser()
        if path.exists():
            known = _read_known_hosts(path)
        elif options.known_hosts_file and options.known_hosts_file != "/dev/null":
            raise ConnectorError(ErrorKind.CONFIGURATION, f"known hosts file {path} does not exist")
        else:
            known = paramiko.HostKeys()
        return cls(policy=options.host_key_policy, known=known)

    def preferred_key_types(self, host: str, port: int, offered: Sequence[str]) -> list[str]:
        """`offered` (the client's host key algorithms) with those known for the host first.

        As OpenSSH does: a server usually has several host keys (Windows' OpenSSH: RSA, ECDSA and
        Ed25519) and known_hosts may hold only one type; negotiating another type would present
        a key known_hosts does not have — a false "changed" alarm.
        """
        entry = self.known.lookup(known_hosts_name(host, port))
        if entry is None:
            return list(offered)
        wanted = {alg for name in entry for alg in _ALGORITHMS.get(name, (name,))}
        return [t for t in offered if t in wanted] + [t for t in offered if t not in wanted]

    def verify(self, host: str, port: int, key: paramiko.PKey) -> None:
        """Accept the key, or raise HOST_KEY_UNKNOWN / HOST_KEY_CHANGED with its fingerprint."""
        name = known_hosts_name(host, port)
        entry = self.known.lookup(name)
        shown = f"{key.get_name()} {fingerprint(key)}"
        if self.policy == "no":
            return
        if entry is None:
            if self.policy == "accept-new":
                self.accepted.append(f"{name}: accepted new host key {shown}")
                return
            raise ConnectorError(
                ErrorKind.HOST_KEY_UNKNOWN,
                f"host key of {name} is not in known_hosts: {shown} — verify it, then add it "
                f"(ssh-keyscan -p {port} {host} >> known_hosts), or opt in with "
                "-o StrictHostKeyChecking=accept-new",
            )
        expected = entry.get(key.get_name())
        if expected is None or expected != key:
            raise ConnectorError(
                ErrorKind.HOST_KEY_CHANGED,
                f"host key of {name} CHANGED: it presents {shown}, which known_hosts does not "
                "have for it (a reinstalled host, or someone in the middle)",
            )


def _timed_out(exc: BaseException) -> bool:
    """Whether a timeout is in the exception's chain (paramiko wraps its socket.timeout)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TimeoutError):  # socket.timeout is TimeoutError
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _read_capped(recv: Callable[[int], bytes], limit: int) -> bytes | None:
    """A stream read to its end, or None (and nothing kept) once it passes `limit` bytes."""
    data = bytearray()
    while chunk := recv(64 * 1024):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


def _bastion_refused(exc: BaseException, where: str) -> ConnectorError:
    text = getattr(exc, "text", "") or "refused"
    return ConnectorError(
        ErrorKind.CONNECTION_REFUSED,
        f"the bastion could not open a connection to {where}: {shown(str(text))}",
    )


def _negotiation_failed(exc: BaseException, where: str) -> ConnectorError:
    return ConnectorError(
        ErrorKind.CONNECTION_FAILED, f"SSH negotiation with {where} failed: {shown(str(exc))}"
    )


#: What paramiko and the sockets under it raise, as errors (`agent.connectors.errors`).
_ROWS: tuple[Row, ...] = (
    *network_rows(),
    Row((paramiko.ChannelException,), _bastion_refused),
    Row((paramiko.AuthenticationException,), fixed(ErrorKind.AUTHENTICATION_REFUSED,
                                                   "authentication failed on {where}")),
    Row((paramiko.SSHException,), _negotiation_failed),
    OS_ERROR_ROW,
)


def _connect_error(exc: BaseException, where: str) -> ConnectorError:
    return map_exception(exc, _ROWS, where, COULD_NOT_CONNECT)


class SSHConnector:
    """Gathers one host's facts over SSH. Create one per host and scan; not thread-safe."""

    def __init__(self, host: Host, timeouts: Timeouts) -> None:
        self.host = host
        self.timeouts = timeouts
        self._transports: list[paramiko.Transport] = []
        self._lock = threading.Lock()
        self._aborted = False
        self._key: paramiko.PKey | None = None
        self._place: contextlib.ExitStack | None = None
        self.notes: list[str] = []

    def abort(self) -> None:
        """Called from the coordinator when the host deadline passed: drop every connection,
        also one still being opened (it is closed as soon as it exists)."""
        self._give_back_place()
        with self._lock:
            self._aborted = True
            transports = list(self._transports)
        for transport in reversed(transports):
            with contextlib.suppress(Exception):
                transport.close()

    def gather(self, deadline: float) -> dict[str, Any]:
        """Run every fact script the host's roles need; return fact name → entry."""
        scripts = scripts_for(self.host.roles)
        if not scripts:
            return {}
        try:
            options = parse_ssh_args(self.host.connection.ssh_common_args)
        except SshArgsError as exc:  # validated with the inventory; a task may still carry it
            raise ConnectorError(
                ErrorKind.CONFIGURATION, f"ansible_ssh_common_args: {exc.message}"
            ) from None
        keys = HostKeyCheck.load(options)
        try:
            try:
                transport = self._open(options, keys, deadline)
            finally:
                # Also when signing in then fails: credentials went to a key accepted on first use.
                self.notes += keys.accepted
            return run_scripts(
                scripts,
                partial(self._run, transport),
                where=self.host.name,
                deadline=deadline,
                host_seconds=self.timeouts.host,
            )
        finally:
            self.abort()

    def _open(self, options: SshOptions, keys: HostKeyCheck,
              deadline: float) -> paramiko.Transport:
        """The transport to the host, through each bastion of the ProxyJump chain in turn."""
        c = self.host.connection
        hops = [*options.jumps, Jump(self.host.address, c.port, c.user)]
        if c.ssh_private_key_file:
            # Decrypted once, before any place is taken (an encrypted key's KDF is slow).
            self._private_key()
        transport: paramiko.Transport | None = None
        # Every hop's place is taken before connecting, deepest first (the host's, then the
        # bastions' towards the first): every connection takes them in that order, so no cycle,
        # and a host waiting for its own server's place holds no bastion's. A hop's place is
        # given back once a channel on its signed-in session is open (through a bastion to the
        # next hop; on the host, the first script's): that round trip tells us sshd's listener
        # has counted it as signed in.
        places = [contextlib.ExitStack() for _ in hops]
        gates: dict[int, _Gate] = {}
        with contextlib.ExitStack() as failed:
            for i in reversed(range(len(hops))):
                failed.push(places[i])
                gates[i] = places[i].enter_context(sign_in_gate(hops[:i + 1], deadline,
                                                                bastion=i < len(hops) - 1))
            for i, hop in enumerate(hops):
                via = f" via {hops[i - 1]}" if i else ""
                where = f"{hop.host}:{hop.port}{via}"
                try:
                    sock = self._socket(transport, hop)
                    if i:
                        places[i - 1].close()
                    transport = self._handshake(sock, hop, keys, where)
                except Exception as exc:
                    error = _connect_error(exc, where)
                    if error.kind is ErrorKind.TIMED_OUT and not self._aborted:
                        # Marked while its place is held: no host takes the place back
                        # without seeing the mark.
                        gates[i].mark_silent(error.message, self.timeouts.host)
                    raise error from None
            failed.pop_all()
        with self._lock:
            self._place = places[-1]
        assert transport is not None
        return transport

    def _give_back_place(self) -> None:
        """The host's sign-in place, once a channel on its session is open (or it is over)."""
        with self._lock:
            place, self._place = self._place, None
        if place is not None:
            place.close()

    def _socket(self, previous: paramiko.Transport | None, hop: Jump) -> Any:
        if previous is None:
            return socket.create_connection((hop.host, hop.port), timeout=self.timeouts.connect)
        try:
            return previous.open_channel("direct-tcpip", (hop.host, hop.port), ("127.0.0.1", 0),
                                         timeout=self.timeouts.connect)
        except paramiko.ChannelException:
            raise  # the bastion refused
        except paramiko.SSHException:
            if not previous.is_active():
                raise
            raise ConnectorError(  # paramiko's "Timeout opening channel."
                ErrorKind.TIMED_OUT,
                f"timed out waiting for the bastion to open a connection to {hop.host}:"
                f"{hop.port}: no answer within {self.timeouts.connect:g} s",
            ) from None

    def _handshake(
        self, sock: Any, hop: Jump, keys: HostKeyCheck, where: str
    ) -> paramiko.Transport:
        transport = paramiko.Transport(sock)
        with self._lock:
            self._transports.append(transport)
            aborted = self._aborted
        if aborted:
            sock.close()  # Transport.close does nothing before the transport has started
            raise ConnectorError(ErrorKind.TIMED_OUT, f"the host's deadline passed before "
                                 f"signing in to {where}")
        transport.banner_timeout = self.timeouts.connect
        transport.auth_timeout = self.timeouts.connect
        security = transport.get_security_options()
        security.key_types = keys.preferred_key_types(hop.host, hop.port, security.key_types)
        try:
            transport.start_client(timeout=self.timeouts.connect)
        except paramiko.SSHException as exc:
            if not _timed_out(exc):
                raise
        if not transport.initial_kex_done:
            # start_client returns when its timeout passes, handshake or not; a server that
            # accepts the connection but never speaks SSH fails the banner read with a timeout.
            raise ConnectorError(
                ErrorKind.TIMED_OUT,
                f"timed out waiting for {where}: no SSH handshake within "
                f"{self.timeouts.connect:g} s",
            )
        keys.verify(hop.host, hop.port, transport.get_remote_server_key())
        self._authenticate(transport, hop.user or self.host.connection.user, where)
        return transport

    def _authenticate(self, transport: paramiko.Transport, user: str | None, where: str) -> None:
        c = self.host.connection
        if not user:
            raise ConnectorError(
                ErrorKind.CONFIGURATION, f"no user to sign in to {where} (ansible_user)"
            )
        tried: list[str] = []
        if c.ssh_private_key_file:
            tried.append("key file")
            if self._try(lambda: transport.auth_publickey(user, self._private_key())):
                return
        agent = paramiko.Agent()
        try:
            agent_keys = agent.get_keys()
            if agent_keys:
                tried.append("ssh-agent")
            for key in agent_keys:
                if self._try(partial(transport.auth_publickey, user, key)):
                    return
        finally:
            agent.close()
        if c.password is not None:
            tried.append("password")
            password = c.password.reveal()
            if self._try(lambda: transport.auth_password(user, password)):
                return
        methods = ", ".join(tried) or "no method configured"
        raise ConnectorError(
            ErrorKind.AUTHENTICATION_REFUSED,
            f"authentication failed for {user} on {where} (tried: {methods})",
        )

    @staticmethod
    def _try(attempt: Callable[[], object]) -> bool:
        try:
            attempt()
        except paramiko.AuthenticationException:
            return False
        return True

    def _private_key(self) -> paramiko.PKey:
        """The key file's key, read (and decrypted) once per connector."""
        if self._key is None:
            self._key = self._read_private_key()
        return self._key

    def _read_private_key(self) -> paramiko.PKey:
        c = self.host.connection
        path = str(Path(c.ssh_private_key_file or "").expanduser())
        passphrase = c.ssh_key_passphrase.reveal() if c.ssh_key_passphrase is not None else None
        # Bytes: paramiko hands the password to cryptography's loaders, which refuse a str.
        secret = passphrase.encode("utf-8") if passphrase is not None else None
        try:
            try:
                return paramiko.PKey.from_path(path, password=secret)  # type: ignore[arg-type]
            except TypeError:
                # cryptography: "Key is password-protected, but password was not provided", or
                # "Password was given but private key is not encrypted" (OpenSSH ignores it too).
                if secret is None:
                    raise paramiko.PasswordRequiredException(path) from None
                return paramiko.PKey.from_path(path)
        except paramiko.PasswordRequiredException:
            raise ConnectorError(
                ErrorKind.CONFIGURATION,
                f"the key {path} is encrypted: set mfa_ssh_key_passphrase for this host",
            ) from None
        except (OSError, paramiko.SSHException, ValueError) as exc:
            reason = "wrong passphrase or unreadable key" if passphrase else str(exc)
            raise ConnectorError(
                ErrorKind.CONFIGURATION, f"cannot load the key {path}: {reason}"
            ) from None

    def _run(self, transport: paramiko.Transport, script: FactScript) -> dict[str, Any]:
        name = self.host.name
        sent = datetime.now(UTC)
        try:
            channel = transport.open_session(timeout=self.timeouts.connect)
            self._give_back_place()
            channel.settimeout(self.timeouts.operation + 10)
            channel.exec_command(script.command_line())
            # Read under one cap for both streams: the host cannot make the agent hold more
            # than MAX_OUTPUT_BYTES (plus paramiko's 2 MiB channel window) whatever it sends.
            stdout = _read_capped(channel.recv, MAX_OUTPUT_BYTES)
            stderr = (
                _read_capped(channel.recv_stderr, MAX_OUTPUT_BYTES - len(stdout))
                if stdout is not None
                else None
            )
            if stdout is None or stderr is None:
                channel.close()
                raise too_much_output(name, script)
            code = channel.recv_exit_status()
            channel.close()
        except Exception as exc:
            raise _connect_error(exc, name) from None
        read_at = sent + (datetime.now(UTC) - sent) / 2  # see WinRMConnector._run
        if code in _NOT_FOUND:
            raise ConnectorError(
                ErrorKind.POWERSHELL_MISSING,
                f"PowerShell is not available on {name} (exit {code}): "
                "the remote shell found no 'powershell' program",
            )
        return script_entries(script, name, stdout, stderr, code, read_at)
