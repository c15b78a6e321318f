"""Benchmark of zoned scans: the same lab through 1, 2 and 4 Celery workers vs one process.

Not a test (pytest does not collect it)::

    .venv/bin/python tests/bench_distributed.py [--hosts 1000] [--workers 1,2,4] [--concurrency 8]

It writes `--hosts` healthy profiles (copies of the built-in adfs01, portal01 and sync01 on
127.0.2.1 …) and serves them as one lab process, starts a redis-server on loopback, then scans the
lab through the command line: once in one process (``--workers CONCURRENCY``) and once per worker
count through ``--broker`` with that many ``mfa-agent worker`` processes (``--concurrency``
each). For each it prints wall seconds, hosts/s and CPU seconds: the scanning process, the
workers, Redis, and their total. The lab's own CPU is not counted, but it shares the machine's
cores with everything else. The last line is the Celery path's CPU overhead per host: (total CPU
through one worker − CPU of the one-process scan) / hosts.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import labfixtures
from celeryfixtures import Worker, running_redis, start_worker
from labfixtures import (
    PASSWORD_ENV,
    REPO,
    Report,
    bench_environment,
    clean_environment,
    process_cpu,
    running_lab,
    write_bench_profiles,
)


@dataclass(frozen=True)
class Run:
    """One scan: wall seconds, CPU seconds per party, hosts that failed, exit code."""

    label: str
    seconds: float
    scan_cpu: float
    worker_cpu: float
    redis_cpu: float
    failed: int
    code: int

    @property
    def total_cpu(self) -> float:
        """CPU seconds of everything but the lab."""
        return self.scan_cpu + self.worker_cpu + self.redis_cpu


def scan(label: str, inventory: Path, args: list[str], workers: list[Worker],
         redis_pid: int) -> Run:
    """One scan through the command line, with the CPU of every party."""
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_workers = sum(process_cpu(w.process.pid) for w in workers)
    before_redis = process_cpu(redis_pid)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "agent", "scan", "-i", str(inventory), "--no-history",
         "--format", "json", "--host-timeout", "600", "--zone-timeout", "600", *args],
        cwd=REPO, env=clean_environment(None), capture_output=True, text=True, check=False,
        timeout=3600,
    )
    seconds = time.perf_counter() - started
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    scan_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    report = Report.parse(result.stdout)
    failed = sum(1 for name in report.hosts if report.error(name))
    return Run(label, seconds, scan_cpu,
               sum(process_cpu(w.process.pid) for w in workers) - before_workers,
               process_cpu(redis_pid) - before_redis, failed, result.returncode)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; exit 1 if any host could not be read."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="hosts in flight per worker, and --workers of the local scan")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    labfixtures.START_TIMEOUT = 600.0  # a thousand servers take a while to start

    with tempfile.TemporaryDirectory(prefix="mfa-agent-bench-celery-") as temporary:
        root = Path(temporary)
        write_bench_profiles(root / "profiles", args.hosts)
        started = time.perf_counter()
        with running_lab(root / "lab", "--profiles", str(root / "profiles")) as lab, \
                running_redis(root / "redis") as redis:
            print(f"lab of {args.hosts} hosts started in {time.perf_counter() - started:.0f} s")
            os.environ.pop(PASSWORD_ENV, None)
            runs: list[Run] = []
            # The one-process scan needs the password; the coordinator below does not.
            env_scan = bench_environment(lab.password)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            local = subprocess.run(
                [sys.executable, "-m", "agent", "scan", "-i", str(lab.inventory), "--no-history",
                 "--format", "json", "--host-timeout", "600", "--workers",
                 str(args.concurrency)],
                cwd=REPO, env=env_scan, capture_output=True, text=True, check=False, timeout=3600,
            )
            seconds = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            report = Report.parse(local.stdout)
            runs.append(Run(
                f"one process, --workers {args.concurrency}", seconds,
                after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 0.0, 0.0,
                sum(1 for name in report.hosts if report.error(name)), local.returncode,
            ))
            for count in counts:
                workers = [
                    start_worker(redis.url, ["default"], f"bench{count}-{i}", root / "workers",
                                 lab.password, concurrency=args.concurrency)
                    for i in range(count)
                ]
                try:
                    runs.append(scan(f"{count} worker(s) x {args.concurrency}", lab.inventory,
                                     ["--broker", redis.url], workers, redis.process.pid))
                finally:
                    for worker in workers:
                        worker.stop()
    print(f"{args.hosts} hosts, NTLM + message encryption over http, {os.cpu_count()} CPUs")
    print(f"{'':28} {'seconds':>8} {'hosts/s':>8} {'scan CPU':>9} {'workers':>8} "
          f"{'redis':>6} {'total CPU':>9} {'failed':>6} {'exit':>4}")
    for run in runs:
        print(f"{run.label:28} {run.seconds:>8.1f} {args.hosts / run.seconds:>8.1f} "
              f"{run.scan_cpu:>9.1f} {run.worker_cpu:>8.1f} {run.redis_cpu:>6.1f} "
              f"{run.total_cpu:>9.1f} {run.failed:>6} {run.code:>4}")
    if len(runs) > 1:
        overhead = (runs[1].total_cpu - runs[0].total_cpu) / args.hosts
        print(f"Celery path CPU overhead: {overhead * 1000:.1f} ms per host "
              f"({runs[1].label} vs {runs[0].label})")
    return 1 if any(r.failed for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
