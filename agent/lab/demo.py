"""`mfa-agent demo`: start the built-in lab (and its directory, when Samba can run), scan it, stop.

Everything lives in a temporary directory that is removed afterwards; the passwords are made up
for the run and reach the scan only through environment variables, as a real inventory would
have them.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal

from agent.lab import directory
from agent.lab.control import PASSWORD_ENV, start_lab
from agent.lab.samba import SambaError


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration, restoring what was there before."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def run_demo(
    scan: Callable[[Path], Any],
    *,
    scheme: Literal["http", "https"] = "http",
    with_directory: bool = True,
    say: Callable[[str], None] = print,
) -> Any:
    """Start the lab, call `scan(inventory_path)` while it runs, stop everything, return its result.

    The directory is added when `with_directory` and Samba can run here; otherwise `say` gets one
    line on how to add it, and the rest of the lab is scanned all the same.
    """
    with tempfile.TemporaryDirectory(prefix="mfa-agent-demo-") as state, ExitStack() as stack:
        state_dir = Path(state)
        password = secrets.token_urlsafe(18)
        lab = stack.enter_context(start_lab(scheme=scheme, password=password, state_dir=state_dir))
        env = {PASSWORD_ENV: password}
        extra: dict[str, Any] = {}
        if with_directory and directory.available():
            say("starting the lab's directory (a Samba AD domain controller) …")
            try:
                lab_dc = directory.start_directory(
                    state_dir / "samba", directory.service_accounts(lab.definition)
                )
            except (SambaError, OSError) as exc:
                say(f"the lab's directory did not start ({exc}); scanning without it")
            else:
                stack.callback(lab_dc.stop)
                extra = lab_dc.inventory_vars()
                env[directory.LDAP_PASSWORD_ENV] = lab_dc.reader_password
        elif with_directory:
            say(directory.unavailable_reason())
        inventory = lab.write_inventory(state_dir / "lab-inventory.yaml", extra_vars=extra)
        with environment(env):
            return scan(inventory)
