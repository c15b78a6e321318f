"""`python -m agent` runs the same command line as `mfa-agent`."""

from __future__ import annotations

from agent.cli import run

if __name__ == "__main__":
    run()
