"""Benchmark of live SSH scans, side by side: mfa-agent at several ``--workers``, and Ansible.

Not a test (pytest does not collect it); needs root and OpenSSH's sshd, like the SSH tests::

    .venv/bin/python tests/bench_ssh.py [--hosts 64,256] [--rtt 0,0.3]
        [--workers 8,64] [--ansible-forks 50|none] [--via-bastion] [--targets N] [--replay]

It builds the SSH tests' lab (`sshfixtures.build_lab`: real sshd instances whose sessions run the
``powershell`` stand-in) and puts a TCP relay in front of the healthy AD FS server (and of
``--targets`` - 1 copies of it) that delays every chunk by half the round-trip time in each
direction (``--rtt``: a WAN, without burning CPU). Every inventory host is its own loopback
address of a relay, host i on server i % N (each server's ``MaxStartups`` is 100). ``--replay``
answers each distinct command line from the stand-in's first answer to it, so that the servers'
CPU (a Python start per fact script) does not decide the result at scale. For each host count
and round-trip time, each engine scans as its own process:

* ``mfa-agent``: ``python -m agent scan --no-history --format json --workers N`` (the whole
  program), for each N of ``--workers``;
* ``ansible``: ``ansible-playbook`` with one ``raw`` task per fact script sending the agent's own
  command lines over Ansible's ssh connection (OpenSSH with ControlPersist), at each fork count;
  skipped without ansible-core (``pip install -e '.[bench]'``).

``--via-bastion`` sends every host through one jump host with OpenSSH's default ``MaxStartups
10:30:100``, as many estates reach their servers.

The table shows wall time, hosts/s, client CPU per host (user + system of the engine's process
tree, from ``wait4``), its peak RSS and hosts that failed. The stand-in PowerShell runs on the
same cores (one Python start per fact script), so without latency the server's CPU decides.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_winrm import ANSIBLE_PREFIX, failures, machine_speed
from sshfixtures import (
    JUMP_TARGET,
    SESSION_PREFIX,
    SshLab,
    SshServer,
    build_lab,
    host_vars,
    public_key,
)


class DelayRelay:
    """A TCP relay on `addresses` (one port) that delays every chunk by `delay` seconds each way,
    in order."""

    def __init__(self, server: SshServer, delay: float, addresses: list[str]) -> None:
        self.server = server
        self.target = (server.address, server.port)
        self.addresses = addresses
        self.delay = delay
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.Task[None]] = set()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="delay relay", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._client, self.addresses[0], 0, backlog=1024))
        self.port = server.sockets[0].getsockname()[1]
        for address in self.addresses[1:]:
            self.loop.run_until_complete(
                asyncio.start_server(self._client, address, self.port, backlog=1024))
        self._ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                             return_exceptions=True)
        self._writers -= {writer, up_writer}
        self._clients.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due - self.loop.time()))
                if not chunk:
                    writer.close()
                    return
                writer.write(chunk)

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                queue.put_nowait((self.loop.time() + self.delay, chunk))
                if not chunk:
                    break
            await sender
        except OSError:
            sender.cancel()
            writer.close()

    def stop(self) -> None:
        """Stop relaying: every connection is dropped, then the loop stopped."""
        async def close() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            await asyncio.gather(*self._clients, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)


def addresses(count: int) -> list[str]:
    """One loopback address per host: 127.20.0.1, 127.20.0.2, …"""
    return [f"127.20.{i // 250}.{i % 250 + 1}" for i in range(count)]


def inventory(lab: SshLab, path: Path, count: int, relays: Sequence[DelayRelay], known: Path,
              bastion: SshServer | None) -> Path:
    """`count` AD FS hosts, host i an address of relay i % len(relays)."""
    args = f"-J {bastion.jump}" if bastion is not None else ""
    hosts = {f"ssh-{i:05d}.bench.example": (["adfs"], host_vars(
        (address, relays[i % len(relays)].port), known_hosts=known, args=args,
        ansible_ssh_private_key_file=str(lab.key)))
        for i, address in enumerate(addresses(count))}
    return lab.inventory(path, hosts)


def known_hosts(path: Path, count: int, relays: Sequence[DelayRelay],
                bastion: SshServer | None) -> Path:
    """Each relay address with the keys of the server behind it, and the bastion's."""
    lines = [f"[{address}]:{relays[i % len(relays)].port} {public_key(key)}"
             for i, address in enumerate(addresses(count))
             for key in relays[i % len(relays)].server.host_keys]
    lines += bastion.known_hosts_lines() if bastion is not None else []
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def ansible_playbook(directory: Path) -> Path:
    """One ``raw`` play per AD FS fact script, the agent's own command lines."""
    import base64

    from agent.factscripts import scripts_for

    plays = []
    for script in scripts_for(frozenset({"adfs"})):
        # Lower case: Windows finds PowerShell either way, the stand-in's launcher only so.
        encoded = base64.b64encode(script.text().encode("utf-16-le")).decode()
        line = ANSIBLE_PREFIX.replace("PowerShell", "powershell", 1) + encoded
        plays.append({"name": script.name, "hosts": "all", "gather_facts": False,
                      "tasks": [{"raw": line}]})
    path = directory / "playbook.yaml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False, width=100000))
    return path


def measure(argv: list[str], env: dict[str, str], engine: str) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MB, hosts failed) of one engine run as a child process."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, _, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if engine == "ansible" and failures(engine, text):
        shown = [line for line in text.splitlines() if "UNREACHABLE" in line or "FAILED" in line]
        print(f"  ansible: {shown[0][:300] if shown else text[-300:]}", file=sys.stderr)
    return (seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
            failures(engine, text))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="64,256")
    parser.add_argument("--rtt", default="0,0.3")
    parser.add_argument("--workers", default="8,64")
    parser.add_argument("--ansible-forks", default="50", help='"none" runs no Ansible')
    parser.add_argument("--via-bastion", action="store_true")
    parser.add_argument("--targets", type=int, default=1,
                        help="sshd servers behind the relays (each takes 100 unauthenticated "
                        "connections at once)")
    parser.add_argument("--replay", action="store_true",
                        help="answer each distinct command line from the first answer to it, "
                        "so that the stand-in's CPU does not decide the result")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX))
    root.chmod(0o755)
    lab = build_lab(root)
    relays: list[DelayRelay] = []
    try:
        env: dict[str, Any] = {k: v for k, v in os.environ.items()
                               if k not in {"SSH_AUTH_SOCK", "PYTHONDONTWRITEBYTECODE"}}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        env["ANSIBLE_SSH_USETTY"] = "False"  # the lab's sshd refuses PTYs (PermitTTY no)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
              f"reference loop {machine_speed():.0f} ns/iteration; sshd and the stand-in on "
              "the same machine" + ("; every host through one bastion" if args.via_bastion
                                    else ""))
        print(f"{'hosts':>6} {'rtt s':>5} {'engine':<10} {'setting':<12} {'wall s':>7} "
              f"{'hosts/s':>8} {'CPU ms/host':>11} {'peak MB':>8} {'failed':>6}", flush=True)
        if args.replay:
            replay_standin(lab)
        profile = lab.servers[JUMP_TARGET].profile
        assert profile is not None
        targets = [lab.servers[JUMP_TARGET]] + [
            lab.start_host(f"bench-target-{i}", profile) for i in range(1, args.targets)]
        ansible = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
        for rtt in (float(x) for x in args.rtt.split(",")):
            most = max(int(c) for c in args.hosts.split(","))
            everyone = addresses(most)
            group = [DelayRelay(target, rtt / 2, everyone[t::len(targets)])
                     for t, target in enumerate(targets)]
            relays += group
            bastion = (lab.start_bastion(f"bench-bastion-{group[0].port}",
                                         [cast(SshServer, _Relayed(a, r.port))
                                          for r in group for a in r.addresses],
                                         max_startups="10:30:100")
                       if args.via_bastion else None)
            known = known_hosts(root / f"known_hosts-{group[0].port}", most, group, bastion)
            for count in (int(c) for c in args.hosts.split(",")):
                path = inventory(lab, root / f"inventory-{count}-{rtt}.yaml", count, group,
                                 known, bastion)
                runs: list[tuple[str, str, list[str]]] = [
                    ("mfa-agent", f"workers {w}", [
                        sys.executable, "-m", "agent", "scan", "-i", str(path), "--no-history",
                        "--format", "json", "--workers", w, "--host-timeout", "600"])
                    for w in args.workers.split(",")]
                if ansible and args.ansible_forks != "none":
                    playbook = ansible_playbook(root)
                    runs += [("ansible", f"forks {f}", [ansible, "-i", str(path), "-f", f,
                                                        str(playbook)])
                             for f in args.ansible_forks.split(",")]
                for engine, setting, command in runs:
                    seconds, cpu, rss, failed = measure(command, env, engine)
                    print(f"{count:>6} {rtt:>5.2f} {engine:<10} {setting:<12} {seconds:>7.2f} "
                          f"{count / seconds:>8.1f} {cpu * 1000 / count:>11.1f} {rss:>8.0f} "
                          f"{failed:>6}", flush=True)
    finally:
        for relay in relays:
            relay.stop()
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def replay_standin(lab: SshLab) -> None:
    """Make the ``powershell`` launcher answer each distinct command line from the first answer
    to it (recorded by the real stand-in): a shell, md5sum and cat per fact script, instead of a
    Python start. The clock fact is then stale; the hosts are still read."""
    launcher = lab.bin / "powershell"
    real = lab.bin / "powershell-standin"
    launcher.replace(real)
    cache = lab.root / "replay"
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)  # the sessions run as the test user
    launcher.write_text(
        "#!/bin/sh\n"
        f"cache={cache}\n"
        'key=$(printf "%s\\n" "$@" | md5sum | cut -c1-32)\n'
        'if [ ! -f "$cache/$key.rc" ]; then\n'
        f'  {real} "$@" > "$cache/$key.out.$$" 2> "$cache/$key.err.$$"\n'
        '  echo $? > "$cache/$key.rc.$$"\n'
        '  mv "$cache/$key.out.$$" "$cache/$key.out"; mv "$cache/$key.err.$$" "$cache/$key.err"\n'
        '  mv "$cache/$key.rc.$$" "$cache/$key.rc"\n'
        "fi\n"
        'cat "$cache/$key.out"; cat "$cache/$key.err" >&2; exit "$(cat "$cache/$key.rc")"\n'
    )
    launcher.chmod(0o755)


@dataclass(frozen=True)
class _Relayed:
    """Where the bastion may forward to: the relay."""

    address: str
    port: int


if __name__ == "__main__":
    sys.exit(main())
