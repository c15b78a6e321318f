"""The lab serves every host from one event loop: no thread per host, latency as a timer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from agent.lab import start_lab

pytestmark = pytest.mark.needs_server


def _hosts(directory: Path, count: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        # Anywhere in 127/8, beyond the old 254-host range of 127.0.1.x.
        address = f"127.{20 + index // 250}.{index % 250}.{7 + index % 3}"
        (directory / f"h{index}.yaml").write_text(yaml.safe_dump({
            "name": f"h{index}.lab.example", "address": address, "roles": ["aad_connect"],
            "facts": {"adsync": {"service_status": "Running"}},
        }))
    return directory


def test_many_hosts_add_no_threads(tmp_path: Path) -> None:
    warm = start_lab(_hosts(tmp_path / "one", 1), password="Pw-loop-1", state_dir=tmp_path / "s1")
    before = threading.active_count()
    lab = start_lab(_hosts(tmp_path / "many", 300), password="Pw-loop-1",
                    state_dir=tmp_path / "s2")
    try:
        assert len(lab.hosts) == 300
        assert threading.active_count() == before  # the shared loop serves them all
        answers = [requests.post(h.endpoint, timeout=10).status_code
                   for h in list(lab.hosts.values())[::50]]
        assert answers == [401] * len(answers)
    finally:
        lab.stop()
        warm.stop()


def test_latency_is_added_to_every_answer(tmp_path: Path) -> None:
    lab = start_lab(_hosts(tmp_path / "p", 2), password="Pw-loop-1", state_dir=tmp_path / "s",
                    latency=0.4)
    try:
        for host in lab.hosts.values():
            started = time.monotonic()
            assert requests.post(host.endpoint, timeout=30).status_code == 401
            assert time.monotonic() - started >= 0.4  # a lower bound: never flaky
    finally:
        lab.stop()
