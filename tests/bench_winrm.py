"""Benchmark of live WinRM scans, side by side: mfa-agent, the naive pywinrm script, Ansible.

Not a test (pytest does not collect it)::

    .venv/bin/python tests/bench_winrm.py [--hosts 100,1000] [--latency 0,0.3]
        [--engines agent,naive,ansible] [--naive-threads 64,256] [--ansible-forks 50,256]
        [--scheme http|https]

For each host count it writes that many healthy host profiles (copies of the built-in adfs01,
portal01 and sync01, on 127.10.x.y: any 127/8 address works) and starts ONE lab process with
``--latency`` (`labfixtures`: request counters per host). Then, for each latency, every engine
scans the lab as its own process, and the table shows wall time, hosts/s, HTTP requests per host
(the lab's counters), client CPU per host (user + system of the engine's process tree, from
``wait4``), its peak RSS (largest process), the lab's CPU per request, and hosts that failed:

* ``mfa-agent``: ``python -m agent scan -i INVENTORY --no-history --format json`` with default
  settings (the whole program: start, inventory, scan, checks, report);
* ``naive``: `naive_scan` below — pywinrm ``Session.run_ps`` per fact script, one thread per host
  at the given thread count (the best one is reported);
* ``ansible``: ``ansible-playbook`` with one ``raw`` task per fact script sending the agent's own
  command lines over Ansible's winrm connection (NTLM), at the given fork count (best reported).
  Needs ansible-core (``pip install -e '.[bench]'``); never imported by the agent.

Everything runs on this machine: the lab shares the cores with the client being measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import labfixtures
from labfixtures import (
    PASSWORD_ENV,
    LabProcess,
    bench_environment,
    process_cpu,
    running_lab,
    write_bench_profiles,
)

from agent.factscripts import scripts_for


@dataclass(frozen=True)
class Run:
    """One scan by one engine."""

    engine: str
    setting: str
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    requests: int
    lab_cpu_seconds: float
    failed: int


def total_requests(lab: LabProcess) -> int:
    return sum(counts.get("requests", 0) for counts in lab.stats(timeout=60).values())


def measure(lab: LabProcess, engine: str, setting: str, argv: list[str],
            env: dict[str, str]) -> Run:
    """Run one engine as a child process; its wall time, CPU and peak RSS from wait4."""
    before, lab_before = total_requests(lab), process_cpu(lab.pid)
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    lab_seconds = process_cpu(lab.pid) - lab_before
    requests = total_requests(lab) - before
    return Run(engine, setting, seconds, usage.ru_utime + usage.ru_stime,
               usage.ru_maxrss / 1024, requests, lab_seconds, failures(engine, text))


def failures(engine: str, text: str) -> int:
    """Hosts that could not be read, from the engine's output (-1 if it printed nothing usable)."""
    if engine == "mfa-agent":
        try:
            document = json.loads(text)
        except ValueError:
            return -1
        failed: dict[str, str] = {}
        for result in document.get("results", []):
            kind = result.get("evidence", {}).get("host_error")
            if kind:
                failed[result.get("target", "")] = kind
        kinds = sorted(set(failed.values()))
        if kinds:
            print(f"  mfa-agent host errors: {', '.join(kinds)}", file=sys.stderr)
        return len(failed)
    if engine == "ansible":
        return text.count("UNREACHABLE!") + text.count("FAILED!")
    try:
        return int(json.loads(text)["failed"])
    except (ValueError, KeyError):
        return -1


# -- the naive script ------------------------------------------------------------------------


def naive_scan(inventory: Path, threads: int) -> int:
    """What an ops script does: pywinrm ``Session.run_ps`` per fact script; hosts that failed."""
    import winrm

    from agent.inventory import load_inventory

    hosts = load_inventory(inventory).hosts
    password = os.environ[PASSWORD_ENV]

    def one(host: Any) -> bool:
        c = host.connection
        session = winrm.Session(f"{c.winrm_scheme}://{host.address}:{c.port}/wsman",
                                auth=(c.user, password), transport="ntlm",
                                server_cert_validation="validate",
                                ca_trust_path=c.winrm_ca_trust_path or "legacy_requests")
        try:
            for script in scripts_for(host.roles):
                result = session.run_ps(script.text())
                json.loads(result.std_out)
        except Exception:
            return False
        return True

    with ThreadPoolExecutor(threads) as pool:
        return sum(1 for ok in pool.map(one, hosts) if not ok)


# -- Ansible ---------------------------------------------------------------------------------


#: The prefix Ansible's powershell shell plugin itself encodes scripts with: a ``raw`` command
#: starting with it is sent as is. Any other line (the agent's own ``powershell -NoProfile
#: -NonInteractive -EncodedCommand …``) is wrapped in a second -EncodedCommand, which makes the
#: base script's line 17,000 characters long: cmd.exe (and the lab) refuse it.
ANSIBLE_PREFIX = (
    "PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand "
)


def ansible_playbook(directory: Path) -> Path:
    """A playbook sending each fact script with ``raw`` to the hosts needing it (one play each)."""
    import base64

    from agent.factscripts import SCRIPTS
    from agent.roles import ANY_ROLE

    tasks = []
    for script in SCRIPTS:
        groups = "all" if ANY_ROLE in script.roles else ":".join(script.roles)
        line = ANSIBLE_PREFIX + base64.b64encode(script.text().encode("utf-16-le")).decode()
        tasks.append({"name": script.name, "hosts": groups, "gather_facts": False,
                      "tasks": [{"raw": line}]})
    path = directory / "playbook.yaml"
    path.write_text(yaml.safe_dump(tasks, sort_keys=False, width=100000))
    return path


def machine_speed() -> float:
    """CPU nanoseconds of one iteration of a fixed Python loop: how fast this machine is *now*
    (other jobs on shared cores slow every figure down; an idle modern core takes ~30-40 ns)."""
    started = time.process_time()
    total = 0
    for i in range(2_000_000):
        total += isinstance(i, int)
    return (time.process_time() - started) / 2_000_000 * 1e9


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="100,1000")
    parser.add_argument("--latency", default="0,0.3")
    parser.add_argument("--engines", default="agent,naive")
    parser.add_argument("--scheme", choices=("http", "https"), default="http",
                        help="https: TLS with the lab's CA (NTLM without message encryption)")
    parser.add_argument("--naive-threads", default="64,256")
    parser.add_argument("--ansible-forks", default="50,256")
    parser.add_argument("--naive-run", nargs=2, metavar=("INVENTORY", "THREADS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_run:
        failed = naive_scan(Path(args.naive_run[0]), int(args.naive_run[1]))
        print(json.dumps({"failed": failed}))
        return 0
    engines = args.engines.split(",")
    labfixtures.START_TIMEOUT = 900.0  # 10,000 profiles take a while to load on a busy machine
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"reference loop {machine_speed():.0f} ns/iteration; lab on the same machine; NTLM"
          + (" + message encryption over http" if args.scheme == "http" else " over https"))
    print(f"{'hosts':>6} {'lat s':>5} {'engine':<10} {'setting':<12} {'wall s':>7} "
          f"{'hosts/s':>8} {'req/host':>8} {'CPU ms/host':>11} {'peak MB':>8} "
          f"{'lab ms/req':>10} {'failed':>6}", flush=True)
    for count in (int(c) for c in args.hosts.split(",")):
        with tempfile.TemporaryDirectory(prefix="mfa-agent-bench-") as temporary:
            root = Path(temporary)
            write_bench_profiles(root / "profiles", count)
            for latency in (float(x) for x in args.latency.split(",")):
                with running_lab(root / f"lab-{latency}", "--profiles", str(root / "profiles"),
                                 "--latency", str(latency), "--scheme", args.scheme) as lab:
                    env = bench_environment(lab.password)
                    runs = _runs(lab, engines, args, env, root)
                    for run in runs:
                        per_request = (run.lab_cpu_seconds * 1000 / run.requests
                                       if run.requests else 0.0)
                        print(f"{count:>6} {latency:>5.2f} {run.engine:<10} {run.setting:<12} "
                              f"{run.seconds:>7.2f} {count / run.seconds:>8.1f} "
                              f"{run.requests / count:>8.1f} "
                              f"{run.cpu_seconds * 1000 / count:>11.2f} "
                              f"{run.peak_rss_mb:>8.0f} {per_request:>10.3f} "
                              f"{run.failed:>6}", flush=True)
    return 0


def _runs(lab: LabProcess, engines: list[str], args: argparse.Namespace,
          env: dict[str, str], root: Path) -> list[Run]:
    runs: list[Run] = []
    python = sys.executable
    if "agent" in engines:
        runs.append(measure(lab, "mfa-agent", "default", [
            python, "-m", "agent", "scan", "-i", str(lab.inventory), "--no-history",
            "--format", "json"], env))
    if "naive" in engines:
        for threads in args.naive_threads.split(","):
            runs.append(measure(lab, "naive", f"threads {threads}", [
                python, str(Path(__file__).resolve()), "--naive-run", str(lab.inventory),
                threads], env))
    if "ansible" in engines:
        playbook = ansible_playbook(root)
        ansible_env = {**env, "ANSIBLE_HOST_KEY_CHECKING": "False",
                       "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_LOCALHOST_WARNING": "0",
                       "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
        binary = Path(sys.executable).parent / "ansible-playbook"
        for forks in args.ansible_forks.split(","):
            runs.append(measure(lab, "ansible", f"forks {forks}", [
                str(binary), "-i", str(lab.inventory), "-f", forks, str(playbook)],
                ansible_env))
    return runs


if __name__ == "__main__":
    sys.exit(main())
