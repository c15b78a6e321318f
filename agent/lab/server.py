"""Run a lab as a process (what ``mfa-agent lab serve`` runs)::

    python -m agent.lab.server --state-dir DIR [--profiles DIR] [--port N] [--scheme http|https]
                               [--latency SECONDS]

It writes into DIR: ``inventory.yaml`` (no password in it), ``lab.env`` (mode 0600,
``MFA_LAB_PASSWORD=…``: env MFA_LAB_PASSWORD when set, else generated with `secrets`), for HTTPS
``ca.pem`` (with each host's certificate ``server-N.pem`` and their key ``server-key.pem``,
mode 0600), and last ``ready``: JSON with the pid, scheme,
file paths and every host's address, port and endpoint. It serves until SIGTERM or SIGINT, then
removes ``ready`` and the credential files and exits 0 (3 for invalid profiles or arguments, 2
when a server cannot start).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Final

from agent.errors import AgentError
from agent.lab import directory
from agent.lab.control import DEFAULT_USER, PASSWORD_ENV, start_lab, write_atomically
from agent.lab.samba import SambaError

INVENTORY_FILE: Final = "inventory.yaml"
ENV_FILE: Final = "lab.env"
READY_FILE: Final = "ready"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agent.lab.server",
        description="Serve a simulated Windows lab (WS-Management on loopback) until SIGTERM.",
    )
    parser.add_argument("--profiles", type=Path, default=None,
                        help="directory of host profiles (default: the built-in lab)")
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="where inventory.yaml, lab.env, ready and TLS files are written")
    parser.add_argument("--port", type=int, default=0,
                        help="port for every host (default 0: an ephemeral port each)")
    parser.add_argument("--scheme", choices=("http", "https"), default="http")
    parser.add_argument("--user", default=DEFAULT_USER,
                        help=f"lab account (default {DEFAULT_USER})")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                        help="add this many seconds to every answer (a WAN; costs no CPU)")
    parser.add_argument("--allow-unencrypted", action="store_true",
                        help="accept plain SOAP over http (Basic over http)")
    parser.add_argument("--directory", action="store_true",
                        help="also run the lab's directory (a Samba AD DC; needs Samba and root)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the lab until SIGTERM/SIGINT; the exit code (0, 2 or 3)."""
    args = _arguments(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    ready = state_dir / READY_FILE
    ready.unlink(missing_ok=True)
    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(18)
    try:
        lab = start_lab(args.profiles, scheme=args.scheme, port=args.port, password=password,
                        user=args.user, state_dir=state_dir,
                        allow_unencrypted=args.allow_unencrypted, latency=args.latency)
    except AgentError as exc:
        print(f"mfa-agent lab: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    lab_dc: directory.LabDirectory | None = None
    try:
        env = {PASSWORD_ENV: password}
        if args.directory:
            if not directory.available():
                print(f"mfa-agent lab: {directory.unavailable_reason()}", file=sys.stderr)
                return 3
            try:
                lab_dc = directory.start_directory(
                    state_dir / "samba", directory.service_accounts(lab.definition)
                )
            except (SambaError, OSError) as exc:
                print(f"mfa-agent lab: the directory did not start: {exc}", file=sys.stderr)
                return 2
            env[directory.LDAP_PASSWORD_ENV] = lab_dc.reader_password
        extra = lab_dc.inventory_vars() if lab_dc else None
        inventory = lab.write_inventory(state_dir / INVENTORY_FILE, extra_vars=extra)
        lines = "".join(f"{name}={shlex.quote(value)}\n" for name, value in env.items())
        write_atomically(state_dir / ENV_FILE, lines.encode(), 0o600)
        (state_dir / ENV_FILE).chmod(0o600)
        description = {
            "pid": os.getpid(),
            "scheme": lab.scheme,
            "user": lab.user,
            "inventory": str(inventory),
            "env_file": str(state_dir / ENV_FILE),
            "ca_file": str(lab.ca_file) if lab.ca_file else None,
            "hosts": {
                h.name: {"address": h.address, "port": h.port, "endpoint": h.endpoint,
                         "roles": list(h.roles)}
                for h in lab.hosts.values()
            },
        }
        write_atomically(ready, json.dumps(description, indent=2).encode(), 0o644)
        for index, host in enumerate(lab.hosts.values()):
            if index == 50:
                print(f"… and {len(lab.hosts) - 50} more hosts (all in {READY_FILE})")
                break
            print(f"{host.name:<28} {host.endpoint}")
        print(f"inventory: {inventory}  (password: {PASSWORD_ENV} in {state_dir / ENV_FILE})",
              flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        ready.unlink(missing_ok=True)
        if lab_dc is not None:
            lab_dc.stop()
        lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
