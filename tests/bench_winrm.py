"""Benchmark of live WinRM scans: a lab of healthy hosts, scanned with NTLM and message encryption.

Not a test (pytest does not collect it)::

    .venv/bin/python tests/bench_winrm.py [--hosts 50] [--workers 1,4,8,16] [--repeat 3]

It writes `--hosts` profiles (copies of the built-in adfs01, portal01 and sync01, on 127.0.2.1…)
into a temporary directory, starts them as one lab process (`labfixtures`, which counts every
HTTP request each host receives), and scans the lab in this process with `agent.scan.live` once
per worker count (median of `--repeat` runs), then once more through the command line
(``python -m agent scan --workers 8``, interpreter start and report included). It prints hosts per
second, HTTP requests per host and the client's CPU time. The lab's own CPU is not counted, but
it shares the machine's cores with the client: on a small machine both compete.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labfixtures import (
    PASSWORD_ENV,
    LabProcess,
    Report,
    run_agent,
    running_lab,
)

from agent.connectors.common import Timeouts
from agent.gather import GatherOptions
from agent.inventory import load_inventory
from agent.lab import builtin_profiles_dir
from agent.scan import ScanOptions, live

TEMPLATES = ("adfs01", "portal01", "sync01")


@dataclass(frozen=True)
class Run:
    """One scan: wall and client CPU seconds, HTTP requests the lab saw, hosts that failed."""

    seconds: float
    cpu_seconds: float
    requests: int
    failed: int


def write_profiles(directory: Path, count: int) -> None:
    """`count` healthy host profiles on 127.0.2.1… from the built-in lab, and its _lab.yaml."""
    if not 1 <= count <= 254:
        raise SystemExit("--hosts must be between 1 and 254")
    builtin = builtin_profiles_dir()
    templates = [yaml.safe_load((builtin / f"{name}.yaml").read_text()) for name in TEMPLATES]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "_lab.yaml").write_text((builtin / "_lab.yaml").read_text())
    for index in range(1, count + 1):
        template = templates[(index - 1) % len(templates)]
        kind = template["name"].split(".")[0].rstrip("0123456789")
        profile = {
            **template,
            "name": f"{kind}-{index:02d}.bench.example",
            "address": f"127.0.2.{index}",
        }
        (directory / f"{index:03d}.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))


def scan_once(lab: LabProcess, workers: int) -> Run:
    """Scan the whole lab in this process with `workers` workers."""
    inventory = load_inventory(str(lab.inventory))
    options = GatherOptions(
        workers=workers, timeouts=Timeouts(connect=5.0, operation=20, host=120.0)
    )
    before = lab.stats()
    cpu, started = time.process_time(), time.perf_counter()
    run = live(inventory, ScanOptions(), options)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    after = lab.stats()
    requests = sum(
        counts.get("requests", 0) - before.get(host, {}).get("requests", 0)
        for host, counts in after.items()
    )
    failed = sum(1 for host in run.facts.hosts if host.error is not None)
    return Run(seconds, cpu_seconds, requests, failed)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; exit 1 if any host could not be read."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument(
        "--workers", default="1,4,8,16", help="comma-separated worker counts (default 1,4,8,16)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per worker count (median)")
    args = parser.parse_args(argv)
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]

    with tempfile.TemporaryDirectory(prefix="mfa-agent-bench-") as temporary:
        root = Path(temporary)
        write_profiles(root / "profiles", args.hosts)
        with running_lab(root / "lab", "--profiles", str(root / "profiles")) as lab:
            os.environ[PASSWORD_ENV] = lab.password
            scan_once(lab, 8)  # warm-up: imports, first connections
            print(
                f"{args.hosts} hosts ({', '.join(TEMPLATES)} copies), NTLM + message "
                f"encryption over http, {os.cpu_count()} CPUs, median of {args.repeat} runs"
            )
            print(
                f"{'workers':>7} {'seconds':>8} {'hosts/s':>8} {'req/host':>9} "
                f"{'client CPU s':>12} {'failed':>6}"
            )
            failures = 0
            for workers in worker_counts:
                runs = [scan_once(lab, workers) for _ in range(max(1, args.repeat))]
                seconds = statistics.median(r.seconds for r in runs)
                cpu = statistics.median(r.cpu_seconds for r in runs)
                failed = max(r.failed for r in runs)
                failures += failed
                per_host = statistics.median(r.requests for r in runs) / args.hosts
                print(
                    f"{workers:>7} {seconds:>8.2f} {args.hosts / seconds:>8.1f} "
                    f"{per_host:>9.1f} {cpu:>12.2f} {failed:>6}"
                )
            started = time.perf_counter()
            result = run_agent(
                "scan",
                "-i",
                str(lab.inventory),
                "--no-history",
                "--workers",
                "8",
                "--format",
                "json",
                password=lab.password,
                timeout=600,
            )
            seconds = time.perf_counter() - started
            report = Report.parse(result.stdout)
            cli_failed = sum(1 for name in report.hosts if report.error(name))
            failures += cli_failed
            print(
                f"command line, --workers 8: {seconds:.2f} s, "
                f"{args.hosts / seconds:.1f} hosts/s, exit {result.returncode}, "
                f"{cli_failed} hosts failed"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
