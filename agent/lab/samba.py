"""A throwaway Samba Active Directory domain controller on loopback, for the tests and the demo.

Samba is a real AD DC: LDAPS and StartTLS, ``LDAP_MATCHING_RULE_IN_CHAIN`` for nested groups,
``msDS-User-Account-Control-Computed`` (locked out, password expired), simple binds refused on
plain LDAP. `SambaDC` provisions a domain into a state directory with ``samba-tool``, starts
``samba`` in the foreground with only the LDAP and Kerberos services, and stops it by the PID in
its own pid file — never by process name. It needs the Debian packages ``samba samba-ad-dc
samba-ad-provision`` and root (the DC listens on ports 88, 389, 464, 636, 3268 and 3269).

    with SambaDC(tmp / "dc", admin_password="Lab-Admin-Passw0rd!") as dc:
        group = dc.add_group("PhoneFactor Admins")
        dc.add_members(group, [dc.add_user("svc-adfs", "Svc-Passw0rd!")])
        ...  # read it over dc.ldaps_url, trusting dc.ca_file, expecting dc.server_name

The server certificate is the lab's own (`agent.lab.certs`): it names ``<host_name>.<realm>``
and the IP address, so clients can verify it whether they connect by address or by name. Any
127.x.y.z address works (nothing to configure), so several domains — or several test sessions —
can run side by side; `extra_addresses` are listened on too but are not in the certificate.

Timings on a 2-core machine: provisioning 2.5–4.5 s, start 0.3–0.5 s, about 2.5 ms per user
added. The admin password is given to ``samba-tool`` on its command line (it has no other way),
so it is visible in the process list while provisioning runs: use a throwaway password.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from agent.lab.certs import create_certificates

#: The safety net given to ``samba --maximum-runtime``: it exits by itself after this long.
DEFAULT_MAX_RUNTIME: Final = 5400
#: A global security group (ADS_GROUP_TYPE_GLOBAL_GROUP | ADS_GROUP_TYPE_SECURITY_ENABLED).
GLOBAL_SECURITY_GROUP: Final = -2147483646
UF_ACCOUNTDISABLE: Final = 0x2
UF_LOCKOUT: Final = 0x10
UF_NORMAL_ACCOUNT: Final = 0x200
UF_WORKSTATION_TRUST_ACCOUNT: Final = 0x1000
UF_PASSWORD_EXPIRED: Final = 0x800000
_COMPUTED: Final = "msDS-User-Account-Control-Computed"
_LDAP_PORTS: Final = (389, 636)
_ENTRY_EXISTS: Final = 68
_EXTRA_PATH: Final = "/usr/sbin:/usr/bin:/sbin:/bin"


class SambaError(Exception):
    """The domain controller could not be provisioned, started, stopped or filled."""


def _which(program: str) -> str | None:
    path = os.environ.get("PATH", "")
    return shutil.which(program, path=f"{path}:{_EXTRA_PATH}" if path else _EXTRA_PATH)


def _accepts(address: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _random_password() -> str:
    """A password that meets Samba's default complexity rules (three character classes, ≥ 7)."""
    return f"Aa1!{secrets.token_urlsafe(18)}"


class SambaDC:
    """One Samba AD domain controller: provisioned into `state_dir`, listening on `address`.

    `state_dir` holds everything: the provisioned databases, ``etc/smb.conf``, the TLS files
    (``tls/``), ``samba.pid``, ``samba.log`` and the daemon's own output ``samba.out``. The
    fixture helpers (`add_user`, `add_group`, …) work as Administrator over LDAPS on one cached
    connection; every one raises `SambaError` when the directory refuses.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        admin_password: str,
        realm: str = "LAB.EXAMPLE",
        domain: str = "LAB",
        address: str = "127.0.0.1",
        extra_addresses: Sequence[str] = (),
        host_name: str = "dc1",
        max_runtime: int = DEFAULT_MAX_RUNTIME,
    ) -> None:
        for where in (address, *extra_addresses):
            if not ipaddress.ip_address(where).is_loopback:
                raise ValueError(f"the lab domain controller listens on loopback only, not {where}")
        self.state_dir = Path(state_dir)
        self.admin_password = admin_password
        self.realm = realm.upper()
        self.domain = domain.upper()
        self.address = address
        #: More loopback addresses the DC listens on; its certificate names none of them.
        self.extra_addresses = tuple(extra_addresses)
        self.host_name = host_name.lower()
        self.max_runtime = max_runtime
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Any = None  # ldap3.Connection, bound as Administrator, opened on first use
        self._ous: set[str] = set()

    def _interfaces(self) -> str:
        """The smb.conf ``interfaces`` value: every address with its prefix length.

        Given as address/prefix, Samba binds an address even when it is not configured on ``lo``
        (Linux routes all of 127.0.0.0/8 there), so any 127.x.y.z works without ``ip addr add``.
        """
        return " ".join(
            f"{a}/{8 if ipaddress.ip_address(a).version == 4 else 128}"
            for a in (self.address, *self.extra_addresses)
        )

    def __repr__(self) -> str:
        return f"SambaDC({self.realm} on {self.address}, {self.state_dir})"

    # -- names and places -------------------------------------------------------------------

    @property
    def dns_domain(self) -> str:
        """The domain's DNS name, ``lab.example``."""
        return self.realm.lower()

    @property
    def base_dn(self) -> str:
        """The domain's naming context, ``DC=lab,DC=example``."""
        return ",".join(f"DC={escape_rdn(part)}" for part in self.dns_domain.split("."))

    @property
    def users_dn(self) -> str:
        """The default container for users and groups, ``CN=Users,<base>``."""
        return f"CN=Users,{self.base_dn}"

    @property
    def admin_dn(self) -> str:
        """The built-in Administrator's DN."""
        return f"CN=Administrator,{self.users_dn}"

    @property
    def server_name(self) -> str:
        """The DNS name in the server certificate (``dc1.lab.example``); its IP SAN is `address`."""
        return f"{self.host_name}.{self.dns_domain}"

    @property
    def ldaps_url(self) -> str:
        """``ldaps://<address>:636``."""
        return f"ldaps://{self._url_host}:636"

    @property
    def ldap_url(self) -> str:
        """``ldap://<address>:389`` (simple binds need StartTLS there)."""
        return f"ldap://{self._url_host}:389"

    @property
    def _url_host(self) -> str:
        return f"[{self.address}]" if ":" in self.address else self.address

    @property
    def ca_file(self) -> Path:
        """The lab CA's certificate (PEM), the one to trust."""
        return self.state_dir / "tls" / "ca.pem"

    @property
    def smb_conf(self) -> Path:
        """The configuration samba-tool wrote."""
        return self.state_dir / "etc" / "smb.conf"

    @property
    def pid_file(self) -> Path:
        """Where samba writes its PID (the pid directory is the state directory)."""
        return self.state_dir / "samba.pid"

    @property
    def log_file(self) -> Path:
        """Samba's log (``log file`` in smb.conf)."""
        return self.state_dir / "samba.log"

    @property
    def provisioned(self) -> bool:
        """Whether `provision` has run in the state directory."""
        return self.smb_conf.is_file()

    # -- lifecycle ---------------------------------------------------------------------------

    @staticmethod
    def available() -> bool:
        """Whether this machine can run the DC: samba and samba-tool installed, and we are root."""
        installed = _which("samba") is not None and _which("samba-tool") is not None
        return installed and os.geteuid() == 0

    def provision(self, timeout: float = 120.0) -> None:
        """Create the domain with ``samba-tool domain provision`` and the lab's TLS certificate.

        No DNS server (``--dns-backend=NONE``), bound to `address` only, pid directory and logs
        in the state directory. Raises `SambaError` with samba-tool's last output lines on failure.
        """
        tool = _which("samba-tool")
        if tool is None:
            raise SambaError("samba-tool is not installed (Debian: samba-ad-dc samba-ad-provision)")
        if self.provisioned:
            raise SambaError(f"{self.state_dir} already holds a provisioned domain")
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        command = [
            tool, "domain", "provision",
            f"--realm={self.realm}",
            f"--domain={self.domain}",
            "--server-role=dc",
            "--dns-backend=NONE",
            f"--host-name={self.host_name}",
            f"--adminpass={self.admin_password}",
            f"--targetdir={self.state_dir}",
            f"--option=interfaces={self._interfaces()}",
            "--option=bind interfaces only=yes",
            f"--option=pid directory={self.state_dir}",
            f"--option=log file={self.log_file}",
            "--option=ldb:nosync=true",
        ]  # fmt: skip
        out_file = self.state_dir / "provision.out"
        try:
            with out_file.open("wb") as out:
                done = subprocess.run(
                    command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
                )
        except subprocess.TimeoutExpired:
            raise SambaError(
                f"samba-tool domain provision took longer than {timeout:g} s"
            ) from None
        if done.returncode != 0:
            tail = _tail(out_file, 6).replace(self.admin_password, "***")
            raise SambaError(f"samba-tool domain provision failed ({done.returncode}):\n{tail}")
        create_certificates(
            self.state_dir / "tls", names=[self.server_name], addresses=[self.address]
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start samba in the foreground and wait until `address`:636 accepts connections.

        Refuses to start when this state directory's samba still runs, or when something else
        already listens on the LDAP ports of `address` (the new samba would fail to bind, while
        the old server answered in its place).
        """
        samba = _which("samba")
        if samba is None:
            raise SambaError("samba is not installed (Debian: samba samba-ad-dc)")
        if not self.provisioned:
            raise SambaError(f"{self.state_dir} holds no provisioned domain: call provision()")
        running = self._running_pid()
        if running is not None:
            raise SambaError(f"samba is already running for {self.state_dir} (PID {running})")
        addresses = (self.address, *self.extra_addresses)
        busy = [f"{a}:{port}" for a in addresses for port in _LDAP_PORTS if _accepts(a, port)]
        if busy:
            raise SambaError(f"another server already listens on {', '.join(busy)}")
        tls = self.state_dir / "tls"
        command = [
            samba, "-s", str(self.smb_conf), "-F", "--no-process-group", "-M", "single",
            f"--maximum-runtime={self.max_runtime}",
            f"--option=interfaces={self._interfaces()}",
            "--option=server services=ldap kdc",
            "--option=ldb:nosync=true",
            f"--option=tls keyfile={tls / 'server-key.pem'}",
            f"--option=tls certfile={tls / 'server.pem'}",
            f"--option=tls cafile={tls / 'ca.pem'}",
        ]  # fmt: skip
        log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        with (self.state_dir / "samba.out").open("ab") as out:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise SambaError(f"samba exited ({code}) while starting: {self._why(log_start)}")
            if _accepts(self.address, 636):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise SambaError(
                    f"samba did not accept connections on {self.address}:636 within {timeout:g} s"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop samba by its PID: SIGTERM, then SIGKILL after `timeout` seconds.

        The PID is the child's when this object started it, else the one in the pid file (a
        samba started by another process, e.g. an earlier run). Does nothing when it is not
        running; a pid file whose process is not this state directory's samba is left alone.
        """
        if self._conn is not None:
            with contextlib.suppress(LDAPException, OSError):
                self._conn.unbind()
            self._conn = None
        process, self._process = self._process, None
        pid = process.pid if process is not None and process.poll() is None else None
        pid = pid or self._running_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, process, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, process, timeout)

    def __enter__(self) -> Self:
        if not self.provisioned:
            self.provision()
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The running samba's PID, from its pid file (None when it is not running)."""
        return self._running_pid()

    def _running_pid(self) -> int | None:
        """The pid file's PID if that process is alive, is samba, and has our files open.

        Samba rewrites its command line ("samba: root process"), so the program is recognised
        by /proc/PID/exe and the instance by an open file descriptor inside the state directory.
        """
        try:
            pid = int(self.pid_file.read_text().strip())
            proc = Path(f"/proc/{pid}")
            if Path(os.readlink(proc / "exe")).name != "samba":
                return None
            if proc.joinpath("stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                return None  # exited, not yet reaped by its parent
            state = str(self.state_dir.resolve()) + os.sep
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).startswith(state):
                        return pid
        except (OSError, ValueError, IndexError):
            return None
        return None

    def _wait_gone(self, pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
        if process is not None:
            try:
                process.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._running_pid() != pid:
                return True
            time.sleep(0.05)
        return False

    def _why(self, log_start: int) -> str:
        """The reason samba gave in its log for exiting at start."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(log_start)
                lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            lines = []
        for line in lines:
            if "already running" in line:
                return line.strip()
        for line in lines:
            if "Failed to listen" in line or "failed to bind" in line:
                return line.strip()
        reasons = [line.strip() for line in lines if line.startswith("  ")]
        return reasons[-1] if reasons else f"see {self.log_file} and {self.state_dir}/samba.out"

    # -- fixture objects ---------------------------------------------------------------------

    def connection(self) -> Any:
        """The Administrator's bound ldap3 connection over LDAPS (certificate verified)."""
        if self._conn is None:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=str(self.ca_file),
                valid_names=[self.server_name],
            )
            server = ldap3.Server(
                self.address, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE,
                connect_timeout=10,
            )  # fmt: skip
            conn = ldap3.Connection(
                server,
                user=self.admin_dn,
                password=self.admin_password,
                raise_exceptions=False,
                receive_timeout=30,
            )
            try:
                conn.open(read_server_info=False)
                bound = conn.bind()
            except LDAPException as exc:
                raise SambaError(f"cannot connect to {self.ldaps_url}: {exc}") from None
            if not bound:
                raise SambaError(f"the Administrator bind failed: {conn.result.get('description')}")
            self._conn = conn
        return self._conn

    def _done(self, what: str, ok: bool = True) -> None:
        result = self._conn.result if self._conn is not None else {}
        if not ok or result.get("result") != 0:
            detail = f"{result.get('description')}: {result.get('message', '')}".strip(": ")
            raise SambaError(f"{what} failed: {detail}")

    def _container(self, ou: str | None) -> str:
        if ou is None:
            return self.users_dn
        dn = f"OU={escape_rdn(ou)},{self.base_dn}"
        if dn not in self._ous:
            conn = self.connection()
            conn.add(dn, ["top", "organizationalUnit"])
            if conn.result.get("result") != _ENTRY_EXISTS:
                self._done(f"adding the OU {ou!r}")
            self._ous.add(dn)
        return dn

    def add_ou(self, name: str) -> str:
        """An organizational unit directly under the domain (kept if it exists); its DN."""
        return self._container(name)

    def add_group(self, name: str, ou: str | None = None, *, cn: str | None = None) -> str:
        """A global security group whose sAMAccountName is `name`; its DN.

        `cn` (default `name`) is the relative name in the DN, escaped; AD forbids some
        characters in sAMAccountName (``* \\ / [ ] : ; | = , + ? < > "``) but not in a CN.
        """
        dn = f"CN={escape_rdn(cn or name)},{self._container(ou)}"
        conn = self.connection()
        conn.add(dn, ["top", "group"], {"sAMAccountName": name, "groupType": GLOBAL_SECURITY_GROUP})
        self._done(f"adding the group {name!r}")
        return dn

    def add_user(
        self,
        name: str,
        password: str | None = None,
        enabled: bool = True,
        upn: str | None = None,
        *,
        cn: str | None = None,
        ou: str | None = None,
    ) -> str:
        """A user whose sAMAccountName is `name`, with a password (random when None); its DN.

        The password is set through unicodePwd (``extend.microsoft.modify_password``), then
        userAccountControl becomes 512 (enabled) or 514 (disabled).
        """
        dn = f"CN={escape_rdn(cn or name)},{self._container(ou)}"
        attributes: dict[str, Any] = {"sAMAccountName": name}
        if upn is not None:
            attributes["userPrincipalName"] = upn
        conn = self.connection()
        conn.add(dn, ["top", "person", "organizationalPerson", "user"], attributes)
        self._done(f"adding the user {name!r}")
        ok = conn.extend.microsoft.modify_password(dn, password or _random_password())
        self._done(f"setting the password of {name!r}", ok)
        uac = UF_NORMAL_ACCOUNT | (0 if enabled else UF_ACCOUNTDISABLE)
        conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(uac)])]})
        self._done(f"setting userAccountControl of {name!r}")
        return dn

    def add_gmsa(self, name: str) -> str:
        """An enabled group Managed Service Account (sAMAccountName ends in ``$``); its DN.

        Samba 4.17 stores the object (objectClass msDS-GroupManagedServiceAccount, a computer)
        but does not generate its managed password: it exists to be looked up, not to log on.
        """
        sam = name if name.endswith("$") else f"{name}$"
        cn = sam[:-1]
        dn = f"CN={escape_rdn(cn)},CN=Managed Service Accounts,{self.base_dn}"
        conn = self.connection()
        conn.add(
            dn,
            ["msDS-GroupManagedServiceAccount"],
            {
                "sAMAccountName": sam,
                "dNSHostName": f"{cn}.{self.dns_domain}",
                "msDS-ManagedPasswordInterval": "30",
            },
        )
        self._done(f"adding the gMSA {sam!r}")
        uac = str(UF_WORKSTATION_TRUST_ACCOUNT)
        conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [uac])]})
        self._done(f"enabling the gMSA {sam!r}")
        return dn

    def add_users_bulk(self, prefix: str, count: int, ou: str | None = None) -> list[str]:
        """`count` users named ``<prefix>00000``…, as fast as the DC allows; their DNs.

        No passwords, so they stay disabled (userAccountControl 546) — enough to be members.
        """
        container = self._container(ou)
        conn = self.connection()
        classes = ["top", "person", "organizationalPerson", "user"]
        width = max(5, len(str(count - 1)))
        dns = []
        for i in range(count):
            name = f"{prefix}{i:0{width}d}"
            dn = f"CN={escape_rdn(name)},{container}"
            conn.add(dn, classes, {"sAMAccountName": name})
            self._done(f"adding the user {name!r}")
            dns.append(dn)
        return dns

    def add_members(self, group_dn: str, member_dns: Iterable[str]) -> None:
        """Add these DNs (users, groups, computers) to the group's member attribute."""
        members = list(member_dns)
        if not members:
            return
        conn = self.connection()
        try:
            ok = conn.extend.microsoft.add_members_to_groups(members, [group_dn])
        except LDAPException as exc:
            raise SambaError(f"adding members to {group_dn} failed: {exc}") from None
        self._done(f"adding {len(members)} member(s) to {group_dn}", ok)

    def find_dn(self, name: str) -> str:
        """The DN of the object whose sAMAccountName is `name`."""
        conn = self.connection()
        conn.search(
            self.base_dn,
            f"(sAMAccountName={escape_filter_chars(name)})",
            search_scope=ldap3.SUBTREE,
            attributes=["1.1"],
        )
        self._done(f"looking up {name!r}")
        found = [e["dn"] for e in conn.response or [] if e.get("type") == "searchResEntry"]
        if len(found) != 1:
            raise SambaError(f"{len(found)} objects have the sAMAccountName {name!r}")
        return str(found[0])

    def computed_flags(self, name: str) -> int:
        """The account's msDS-User-Account-Control-Computed (UF_LOCKOUT, UF_PASSWORD_EXPIRED)."""
        conn = self.connection()
        conn.search(self.find_dn(name), "(objectClass=*)", ldap3.BASE, attributes=[_COMPUTED])
        self._done(f"reading {_COMPUTED} of {name!r}")
        values = conn.response[0]["attributes"].get(_COMPUTED) or ["0"]
        return int(values[0] if isinstance(values, list) else values)

    def lockout_threshold(self) -> int:
        """The domain's lockoutThreshold (0: accounts never lock out)."""
        conn = self.connection()
        conn.search(self.base_dn, "(objectClass=*)", ldap3.BASE, attributes=["lockoutThreshold"])
        self._done("reading lockoutThreshold")
        values = conn.response[0]["attributes"].get("lockoutThreshold") or ["0"]
        return int(values[0] if isinstance(values, list) else values)

    def set_lockout_threshold(self, attempts: int) -> None:
        """Set the domain's lockoutThreshold (bad passwords before lockout; 0 turns it off)."""
        conn = self.connection()
        change = {"lockoutThreshold": [(ldap3.MODIFY_REPLACE, [str(attempts)])]}
        conn.modify(self.base_dn, change)
        self._done("setting lockoutThreshold")

    def lock_out(self, name: str, attempts: int = 3) -> None:
        """Lock the account out the way it happens in production: failed binds.

        The domain's lockout threshold is set to `attempts` for the duration, `attempts` simple
        binds with a wrong password are made over LDAPS, and the threshold is put back (the
        lockout stays: for the domain's lockoutDuration, 30 minutes by default, or `unlock`).
        Raises `SambaError` unless msDS-User-Account-Control-Computed then reports UF_LOCKOUT.
        """
        dn = self.find_dn(name)
        before = self.lockout_threshold()
        self.set_lockout_threshold(attempts)
        try:
            server = self.connection().server
            for _ in range(attempts):
                wrong = ldap3.Connection(server, user=dn, password=_random_password())
                try:
                    if wrong.bind():
                        raise SambaError(f"a bind as {name!r} with a random password succeeded")
                finally:
                    wrong.unbind()
        finally:
            self.set_lockout_threshold(before)
        if not self.computed_flags(name) & UF_LOCKOUT:
            raise SambaError(f"{name!r} is not reported locked out after {attempts} failed binds")

    def unlock(self, name: str) -> None:
        """Clear a lockout (lockoutTime = 0, as Unlock-ADAccount does)."""
        conn = self.connection()
        conn.modify(self.find_dn(name), {"lockoutTime": [(ldap3.MODIFY_REPLACE, ["0"])]})
        self._done(f"unlocking {name!r}")

    def expire_password(self, name: str) -> None:
        """Make the password expired ("must change at next logon"): pwdLastSet = 0.

        Samba, like AD, then reports UF_PASSWORD_EXPIRED in msDS-User-Account-Control-Computed;
        raises `SambaError` if it does not.
        """
        conn = self.connection()
        conn.modify(self.find_dn(name), {"pwdLastSet": [(ldap3.MODIFY_REPLACE, ["0"])]})
        self._done(f"expiring the password of {name!r}")
        if not self.computed_flags(name) & UF_PASSWORD_EXPIRED:
            raise SambaError(f"{name!r} is not reported password-expired after pwdLastSet=0")


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
