"""Benchmark of inventory loading: a 10,000-host INI inventory with vaulted group_vars.

Not a test (pytest does not collect it)::

    .venv/bin/python tests/bench_inventory.py [--hosts 10000] [--repeat 5]

Writes ``hosts.ini`` with one line per host (``ansible_host=`` inline) in 100 groups mapped to
roles by ``mfa_role_groups``, and ``group_vars/all/vault.yml`` encrypted by the real
``ansible-vault`` (the password template ``{{ vault_winrm_password }}`` resolves into it for
every host). Prints the median wall time of `load_inventory` and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.inventory import load_inventory
from agent.inventory.vault import collect_passwords
from tests.ansible_oracle import encrypt_file


def write_inventory(root: Path, hosts: int) -> tuple[Path, Path]:
    groups = 100
    lines: list[str] = []
    for group in range(groups):
        lines.append(f"[farm{group:03d}]")
        for index in range(group, hosts, groups):
            lines.append(f"host{index:06d}.corp.example ansible_host=10.{index // 65536}."
                         f"{index // 256 % 256}.{index % 256}")
    lines += [
        "[all:vars]",
        "ansible_user=CORP\\svc-mfa-audit",
        "ansible_password={{ vault_winrm_password }}",
        "mfa_role_groups={'adfs': [" + ", ".join(f"'farm{g:03d}'" for g in range(groups)) + "]}",
    ]
    inventory = root / "hosts.ini"
    inventory.write_text("\n".join(lines) + "\n", encoding="utf-8")
    vault = root / "group_vars" / "all" / "vault.yml"
    vault.parent.mkdir(parents=True)
    vault.write_text("vault_winrm_password: S3cret\nvault_other: x\n", encoding="utf-8")
    password = root / "vault-pass"
    password.write_text("bench\n", encoding="utf-8")
    encrypt_file(vault, password, root)
    return inventory, password


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inventory, password = write_inventory(Path(tmp), args.hosts)
        times, cpu = [], []
        for _ in range(args.repeat):
            keys = collect_passwords([str(password)], [], False, None)
            started, started_cpu = time.perf_counter(), time.process_time()
            loaded = load_inventory(inventory, vault=keys)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            assert len(loaded.hosts) == args.hosts
            assert all(h.connection.password is not None for h in loaded.hosts)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{args.hosts} hosts (INI, vaulted group_vars): wall median "
              f"{statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, "
              f"{args.repeat} runs); "
              f"CPU median {statistics.median(cpu):.2f} s; peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
