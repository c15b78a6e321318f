"""Regenerate ``inventory/lab.facts.json``: scan the built-in lab live and record what it gathered.

Run from the repository root after changing a fact, a fact script or a lab profile::

    python -m agent.lab.record            # writes inventory/lab.facts.json

The lab is started (without its directory), scanned over WinRM as ``mfa-agent demo`` does, and
stopped; the facts file then names ``inventory/lab.yaml`` (and its digest) as its inventory, since
the lab's own inventory was a temporary file. tests/test_lab_profiles.py says when the recorded
file no longer matches the profiles.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Final

from agent import factsfile
from agent.lab.control import write_atomically
from agent.lab.demo import run_demo

#: The lab inventory the recorded file is replayed with, relative to the repository root.
LAB_INVENTORY: Final = Path("inventory/lab.yaml")
LAB_FACTS: Final = Path("inventory/lab.facts.json")


def record(root: Path) -> Path:
    """Scan the built-in lab and write its facts file under `root`; return the path written."""
    from agent.connectors.common import Timeouts
    from agent.gather import GatherOptions
    from agent.inventory import load_inventory
    from agent.scan import ScanOptions, live

    # the demo's bounds: the hung host costs its 6 s deadline
    options = GatherOptions(workers=8, timeouts=Timeouts(connect=2.0, operation=2, host=6.0))

    def scan(inventory_path: Path) -> factsfile.FactsFile:
        return live(load_inventory(inventory_path), ScanOptions(), options).facts

    gathered: factsfile.FactsFile = run_demo(scan, with_directory=False, say=print)
    inventory = load_inventory(root / LAB_INVENTORY)
    facts = replace(gathered, inventory_path=str(LAB_INVENTORY),
                    inventory_digest=inventory.digest)
    target = root / LAB_FACTS
    write_atomically(target, factsfile.dumps(facts).encode("utf-8"), 0o644)
    return target


def main() -> int:
    """Record the lab's facts into the repository in the current directory."""
    root = Path.cwd()
    if not (root / LAB_INVENTORY).is_file():
        print(f"run this from the repository root ({LAB_INVENTORY} is not here)", file=sys.stderr)
        return 3
    print(f"wrote {record(root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
