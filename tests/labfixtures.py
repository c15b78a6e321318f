"""The simulated Windows lab as a process, for end-to-end tests of live WinRM scans.

A lab is started as a subprocess (this file run as a script, which runs ``agent.lab.server``'s
``main`` unchanged), waited for through the ``ready`` file it writes, and stopped by PID (SIGTERM,
then SIGKILL). Run as a script, on SIGUSR1 and at exit, this file writes the servers' own
``WsmanServer.stats`` (every request, its body's content type and every response status, per
host) to ``STATE_DIR/stats.json``, so that a test (or the benchmark) can see what went over the
wire without running the lab in its own process::

    python tests/labfixtures.py --state-dir DIR [any agent.lab.server option]

Everything here listens on and connects to 127.0.0.0/8 only.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
#: Profile directories of the fault cases: one faulty host and one healthy host each.
FAULT_PROFILES = Path(__file__).resolve().parent / "data" / "lab-faults"
#: The environment variable the lab's inventory reads the password from.
PASSWORD_ENV = "MFA_LAB_PASSWORD"
STATS_FILE = "stats.json"
STDERR_FILE = "lab-stderr.log"
START_TIMEOUT = 120.0  # bounds a failure only: a busy machine may take long
STOP_TIMEOUT = 5.0
#: Environment variables that could send test traffic through a proxy off this machine.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "ALL_PROXY")
#: Scan options small enough that a hung host costs seconds, not minutes, yet a healthy host on a
#: machine whose cores are all busy still finishes well within its deadline.
FAST_TIMEOUTS = ("--host-timeout", "10", "--operation-timeout", "1", "--connect-timeout", "2")


# -- the lab process ---------------------------------------------------------------------------


@dataclass
class LabProcess:
    """A running lab process and what it wrote into its state directory."""

    process: subprocess.Popen[bytes]
    state_dir: Path
    ready: dict[str, Any]
    password: str
    _snapshot: int = field(default=0, repr=False)

    @property
    def pid(self) -> int:
        """The lab's process id."""
        return self.process.pid

    @property
    def inventory(self) -> Path:
        """The inventory the lab wrote (the password only as an environment lookup)."""
        return Path(self.ready["inventory"])

    @property
    def ca_file(self) -> Path:
        """The lab CA's certificate (HTTPS labs only)."""
        ca_file = self.ready.get("ca_file")
        assert ca_file, "this lab does not serve HTTPS"
        return Path(ca_file)

    @property
    def hosts(self) -> list[str]:
        """Names of the lab's hosts."""
        return list(self.ready["hosts"])

    def endpoint(self, host: str) -> str:
        """A host's WinRM endpoint URL."""
        return str(self.ready["hosts"][host]["endpoint"])

    def address(self, host: str) -> tuple[str, int]:
        """A host's (address, port)."""
        entry = self.ready["hosts"][host]
        return str(entry["address"]), int(entry["port"])

    def stats(self, timeout: float = 60.0) -> dict[str, dict[str, int]]:
        """Every host's request counters now (SIGUSR1 to the lab, then its stats.json)."""
        os.kill(self.pid, signal.SIGUSR1)
        path = self.state_dir / STATS_FILE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text())
                if data["snapshot"] > self._snapshot:
                    self._snapshot = int(data["snapshot"])
                    return {name: dict(counts) for name, counts in data["hosts"].items()}
            time.sleep(0.02)
        raise AssertionError(f"the lab (pid {self.pid}) wrote no stats within {timeout} s")

    def stop(self) -> int:
        """Stop the lab by its PID; its exit code."""
        return stop_process(self.process)


def bench_environment(password: str | None = None) -> dict[str, str]:
    """`clean_environment` for a benchmark: with the project's bytecode compiled and used, as
    after ``pip install`` (an editable checkout under ``PYTHONDONTWRITEBYTECODE`` would compile
    every module from source at each start: 0.2–0.3 s more per run, measured)."""
    import compileall

    for package in ("agent", "checks"):
        compileall.compile_dir(REPO / package, quiet=1)
    env = clean_environment(password)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def clean_environment(password: str | None = None) -> dict[str, str]:
    """The current environment without proxy settings, with `password` as MFA_LAB_PASSWORD."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env["no_proxy"] = env["NO_PROXY"] = "*"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.pop(PASSWORD_ENV, None)
    if password is not None:
        env[PASSWORD_ENV] = password
    return env


def launch_lab(state_dir: Path, *args: str, password: str | None = None) -> subprocess.Popen[bytes]:
    """Start a lab process (not waiting for it); `args` are ``agent.lab.server`` options."""
    state_dir.mkdir(parents=True, exist_ok=True)
    # stderr to a file: a pipe nobody reads while the lab runs could fill up and stall it.
    with (state_dir / STDERR_FILE).open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--state-dir", str(state_dir), *args],
            cwd=REPO, env=clean_environment(password), stdout=subprocess.DEVNULL, stderr=stderr,
        )


def wait_for_lab(process: subprocess.Popen[bytes], state_dir: Path) -> LabProcess:
    """Wait until a launched lab is ready; fail the test (and stop it) if it is not."""
    ready_file = state_dir / "ready"
    deadline = time.monotonic() + START_TIMEOUT
    while not ready_file.exists():
        if process.poll() is not None:
            err = (state_dir / STDERR_FILE).read_text(errors="replace")
            pytest.fail(f"the lab exited with {process.returncode}: {err}")
        if time.monotonic() > deadline:
            stop_process(process)
            pytest.fail(f"the lab was not ready within {START_TIMEOUT} s")
        time.sleep(0.02)
    ready = json.loads(ready_file.read_text())
    return LabProcess(process, state_dir, ready, read_password(state_dir / "lab.env"))


def start_lab_process(state_dir: Path, *args: str, password: str | None = None) -> LabProcess:
    """Start a lab process and wait until it is ready."""
    return wait_for_lab(launch_lab(state_dir, *args, password=password), state_dir)


def start_lab_processes(
    labs: Mapping[str, tuple[Path, Sequence[str]]], password: str | None = None
) -> dict[str, LabProcess]:
    """Start several labs at once (key → (state dir, options)); all ready, or none left running."""
    launched = {key: (launch_lab(state, *args, password=password), state)
                for key, (state, args) in labs.items()}
    running: dict[str, LabProcess] = {}
    try:
        for key, (process, state) in launched.items():
            running[key] = wait_for_lab(process, state)
    except BaseException:
        for process, _ in launched.values():
            stop_process(process)
        raise
    return running


@contextlib.contextmanager
def running_lab(state_dir: Path, *args: str, password: str | None = None) -> Iterator[LabProcess]:
    """A lab process for the duration of a ``with`` block."""
    lab = start_lab_process(state_dir, *args, password=password)
    try:
        yield lab
    finally:
        lab.stop()


def stop_labs(labs: Sequence[LabProcess]) -> None:
    """Stop several labs at once: SIGTERM to every PID first, then wait for each."""
    for lab in labs:
        if lab.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(lab.pid, signal.SIGTERM)
    for lab in labs:
        lab.stop()


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM to the process's PID, SIGKILL if it has not exited within STOP_TIMEOUT."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
    return process.returncode


def read_password(env_file: Path) -> str:
    """The password from a lab's ``lab.env`` (``MFA_LAB_PASSWORD=<shell-quoted>``)."""
    name, _, value = env_file.read_text().strip().partition("=")
    assert name == PASSWORD_ENV, env_file
    return shlex.split(value)[0]


# -- inventories -------------------------------------------------------------------------------


def inventory_variant(
    source: Path,
    dest: Path,
    *,
    common: Mapping[str, Any] | None = None,
    drop: Sequence[str] = (),
    host_vars: Mapping[str, Mapping[str, Any]] | None = None,
    add_hosts: Mapping[str, Mapping[str, Any]] | None = None,
    add_to_group: str = "adfs",
) -> Path:
    """A copy of a lab inventory with changed ``all.vars`` and host variables, or more hosts."""
    data = yaml.safe_load(source.read_text())
    everything = data["all"]
    variables = everything.setdefault("vars", {})
    for key in drop:
        variables.pop(key, None)
    variables.update(common or {})
    for host, changes in (host_vars or {}).items():
        found = [group["hosts"][host] for group in everything["children"].values()
                 if host in group.get("hosts", {})]
        assert found, f"{host} is not in {source}"
        for entry in found:
            entry.update(changes)
    if add_hosts:
        group = everything["children"].setdefault(add_to_group, {"hosts": {}})
        group.setdefault("hosts", {}).update({name: dict(v) for name, v in add_hosts.items()})
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- reports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """A JSON report (``--format json``), with lookups by host and check."""

    document: dict[str, Any]

    @classmethod
    def parse(cls, text: str) -> Report:
        """Parse the JSON report a scan printed or wrote."""
        document = json.loads(text)
        assert document["schema"] == "mfa-agent/report", document.get("schema")
        return cls(document)

    @property
    def hosts(self) -> dict[str, dict[str, Any]]:
        """``hosts[]`` by name."""
        return {h["name"]: h for h in self.document["hosts"]}

    def error(self, host: str) -> str | None:
        """The host-level error message of a host (``hosts[].error``)."""
        error: str | None = self.hosts[host]["error"]
        return error

    def results(self, target: str) -> dict[str, dict[str, Any]]:
        """Check id → result, for one target."""
        return {r["check_id"]: r for r in self.document["results"] if r["target"] == target}

    def statuses(self, target: str) -> dict[str, str]:
        """Check id → status, for one target."""
        return {check: r["status"] for check, r in self.results(target).items()}

    def outcomes(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(check id, target) → (status, reason) of every result."""
        return {(r["check_id"], r["target"]): (r["status"], r["reason"])
                for r in self.document["results"]}

    def host_error_kind(self, host: str) -> str:
        """The ErrorKind of a host that could not be read, from its host checks' evidence.

        Every per-host check of an unread host carries ``evidence.host_error``; fleet checks
        (e.g. adfs-adapter-registered) report the missing fact instead and are not looked at.
        """
        kinds = {r["evidence"]["host_error"] for r in self.results(host).values()
                 if "host_error" in r["evidence"]}
        assert len(kinds) == 1, f"{host}: expected one host error kind, found {kinds}"
        return str(kinds.pop())

    @property
    def exit_code(self) -> int:
        """``summary.exit_code``."""
        return int(self.document["summary"]["exit_code"])


_TRUST_NOTE = re.compile(r"TRUST NOTE (?P<hosts>.+?): (?P<note>.+?)\s*│?$")


def terminal_trust_notes(text: str) -> dict[str, set[str]]:
    """Host → trust notes shown by the terminal report (one host per line, or grouped)."""
    notes: dict[str, set[str]] = {}
    for line in text.splitlines():
        found = _TRUST_NOTE.search(line)
        if found:
            for host in found["hosts"].split(", "):
                notes.setdefault(host.strip(), set()).add(found["note"])
    return notes


# -- what the built-in lab yields ---------------------------------------------------------------

#: Host → ErrorKind of the built-in lab's hosts that cannot be read.
BUILTIN_HOST_ERRORS: Final[dict[str, str]] = {
    "mfa02.lab.example": "authentication-refused",
    "portal02.lab.example": "timed-out",
}


@functools.cache
def _builtin_expectations() -> dict[str, dict[str, str]]:
    from expectations import lab_statuses

    from agent.lab import load_lab

    return lab_statuses(load_lab())


def __getattr__(name: str) -> Any:
    """``BUILTIN_STATUSES``: check id → status for every host of the built-in lab that answers
    (inventory/lab.yaml); ``BUILTIN_ERROR_CHECKS``: the checks of its unreadable hosts (all
    ERROR). Derived from its profiles and the catalogue (tests/expectations.py), on first use, so
    that the lab process this file also runs as does not pay for it."""
    expected = _builtin_expectations()
    if name == "BUILTIN_STATUSES":
        return {h: s for h, s in expected.items() if h not in BUILTIN_HOST_ERRORS}
    if name == "BUILTIN_ERROR_CHECKS":
        return {h: tuple(sorted(expected[h])) for h in BUILTIN_HOST_ERRORS}
    raise AttributeError(name)


#: --limit that leaves out the built-in lab's hung host (a scan then takes about a second).
WITHOUT_HUNG_HOST = "!portal02.lab.example"


def assert_builtin_results(report: Report, hosts: Sequence[str] | None = None) -> None:
    """The report has the built-in lab's expected statuses and host errors, for `hosts`."""
    chosen = set(report.hosts) if hosts is None else set(hosts)
    for host, statuses in __getattr__("BUILTIN_STATUSES").items():
        if host in chosen:
            assert report.error(host) is None, (host, report.error(host))
            assert report.statuses(host) == statuses, host
    for host, kind in BUILTIN_HOST_ERRORS.items():
        if host in chosen:
            assert report.error(host), host
            assert report.host_error_kind(host) == kind, host
            errors = __getattr__("BUILTIN_ERROR_CHECKS")[host]
            assert report.statuses(host) == dict.fromkeys(errors, "ERROR")


# -- session fixtures (test modules load this file with ``pytest_plugins = ("labfixtures",)``) --


@pytest.fixture(scope="session")
def lab_password() -> str:
    """A distinctive password for the session's labs, easy to search for in any output."""
    return f"Zq-{secrets.token_hex(10)}-LabPw"


@pytest.fixture(scope="session")
def builtin_lab(
    tmp_path_factory: pytest.TempPathFactory, lab_password: str
) -> Iterator[LabProcess]:
    """The built-in lab over http: NTLM with message encryption; Basic is refused."""
    with running_lab(tmp_path_factory.mktemp("lab-http"), password=lab_password) as lab:
        yield lab


@pytest.fixture(scope="session")
def builtin_https_lab(
    tmp_path_factory: pytest.TempPathFactory, lab_password: str
) -> Iterator[LabProcess]:
    """The built-in lab over https with its own CA (Basic and NTLM)."""
    with running_lab(tmp_path_factory.mktemp("lab-https"), "--scheme", "https",
                     password=lab_password) as lab:
        yield lab


@pytest.fixture(scope="session")
def unencrypted_lab(
    tmp_path_factory: pytest.TempPathFactory, lab_password: str
) -> Iterator[LabProcess]:
    """The built-in lab over http that also accepts plain SOAP (Basic over http)."""
    with running_lab(tmp_path_factory.mktemp("lab-plain"), "--allow-unencrypted",
                     password=lab_password) as lab:
        yield lab


@pytest.fixture(scope="session")
def fault_labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LabProcess]]:
    """One lab per directory of tests/data/lab-faults (one faulty, one healthy host), by name."""
    root = tmp_path_factory.mktemp("lab-faults")
    specs = {case.name: (root / case.name, ("--profiles", str(case)))
             for case in sorted(FAULT_PROFILES.iterdir()) if case.is_dir()}
    labs = start_lab_processes(specs)
    try:
        yield labs
    finally:
        stop_labs(list(labs.values()))


@pytest.fixture
def use_lab(monkeypatch: pytest.MonkeyPatch) -> Callable[[LabProcess], str]:
    """Set MFA_LAB_PASSWORD from a lab's lab.env (and keep traffic off proxies); returns it."""

    def use(lab: LabProcess) -> str:
        password = read_password(lab.state_dir / "lab.env")
        monkeypatch.setenv(PASSWORD_ENV, password)
        return password

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("COLUMNS", "400")  # the terminal report without wrapped lines
    return use


def run_agent(
    *args: str, password: str | None, timeout: float = 60.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m agent ARGS…`` as its own process (real stderr logging, a hard timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], cwd=cwd or REPO,
        env=clean_environment(password), capture_output=True, text=True, timeout=timeout,
        check=False,
    )


# -- a TCP relay that records the wire ---------------------------------------------------------


class Relay:
    """A TCP relay on 127.0.0.1 to one lab host that records every byte in both directions."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sent = bytearray()
        self.received = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink, record in ((client, upstream, self.sent),
                                         (upstream, client, self.received)):
                threading.Thread(target=self._pump, args=(source, sink, record),
                                 name="relay pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, record: bytearray) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    record.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop relaying and close every socket."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.close()


# -- benchmark fleets ---------------------------------------------------------------------------

#: Built-in profiles a benchmark fleet is made of, in turn.
BENCH_TEMPLATES: Final = ("adfs01", "portal01", "sync01")


def bench_address(index: int) -> str:
    """The loopback address of bench host `index` (0-based): 127.10.0.1, … up to 62,500 hosts."""
    return f"127.{10 + index // 62500}.{(index // 250) % 250}.{index % 250 + 1}"


def write_bench_profiles(directory: Path, count: int) -> None:
    """`count` healthy host profiles copied from the built-in lab, and its _lab.yaml."""
    from agent.lab import builtin_profiles_dir

    builtin = builtin_profiles_dir()
    templates = [
        yaml.safe_load((builtin / f"{name}.yaml").read_text()) for name in BENCH_TEMPLATES
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "_lab.yaml").write_text((builtin / "_lab.yaml").read_text())
    for index in range(count):
        template = templates[index % len(templates)]
        kind = template["name"].split(".")[0].rstrip("0123456789")
        profile = {**template, "name": f"{kind}-{index + 1:05d}.bench.example",
                   "address": bench_address(index)}
        (directory / f"{index:05d}.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))


def process_cpu(pid: int) -> float:
    """User + system CPU seconds a running process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- run as a script: the lab server, with request counters ------------------------------------


def _serve(argv: list[str]) -> int:
    """`agent.lab.server.main(argv)`, writing request counters on SIGUSR1 and at exit."""
    import agent.lab.server as server
    from agent.lab import Lab, start_lab

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--state-dir", type=Path, required=True)
    state_dir: Path = parser.parse_known_args(argv)[0].state_dir.resolve()
    labs: list[Lab] = []
    def start_and_keep(*args: Any, **kwargs: Any) -> Lab:
        lab = start_lab(*args, **kwargs)
        labs.append(lab)
        return lab

    server.start_lab = start_and_keep  # type: ignore[attr-defined]
    snapshots = itertools.count(1)

    def dump(signum: int | None = None, frame: FrameType | None = None) -> None:
        hosts = {name: lab.server(name).stats_snapshot() for lab in labs for name in lab.hosts}
        data = json.dumps({"snapshot": next(snapshots), "hosts": hosts})
        temporary = state_dir / f".{STATS_FILE}.tmp"
        temporary.write_text(data)
        os.replace(temporary, state_dir / STATS_FILE)

    signal.signal(signal.SIGUSR1, dump)
    try:
        return server.main(argv)
    finally:
        dump()


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
