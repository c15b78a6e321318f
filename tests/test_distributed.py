"""Zoned scans through Celery on a real Redis, with real worker processes, against the lab.

Two zones (``default``: AD FS, MFA Server, sync; ``dmz``: the User Portals) served by one worker
each; the coordinator has no lab password (only the workers do). The report equals a
single-process scan of the same lab, and nothing the broker carried holds the password. Faults:
a zone without a worker, a worker SIGKILLed mid-host (with and without another worker of its
zone), Ctrl-C, a broker that is down, a pickled message.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("labfixtures", "celeryfixtures")  # before importing: they assert
from celeryfixtures import (  # noqa: E402
    RedisServer,
    Worker,
    broker_texts,
    running_redis,
    start_worker,
    wait_for,
)
from labfixtures import (  # noqa: E402
    FAST_TIMEOUTS,
    PASSWORD_ENV,
    REPO,
    LabProcess,
    Report,
    clean_environment,
    inventory_variant,
    read_password,
    run_agent,
    unused_port,
)

pytest_plugins = ("labfixtures",)
pytestmark = pytest.mark.needs_server

PORTALS = ("portal01.lab.example", "portal02.lab.example")  # portal02 never answers (hang)
CLAIMS = "mfa-agent:claim:*"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def password(builtin_lab: LabProcess) -> str:
    return read_password(builtin_lab.state_dir / "lab.env")


@pytest.fixture(scope="module")
def workers(
    broker: RedisServer, password: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Worker]]:
    logs = tmp_path_factory.mktemp("workers")
    started = {}
    try:
        for zone in ("default", "dmz"):
            started[zone] = start_worker(broker.url, [zone], f"w-{zone}", logs, password)
        yield started
    finally:
        for worker in started.values():
            worker.stop()


def zoned(lab: LabProcess, dest: Path, zone: str = "dmz", **extra: Any) -> Path:
    """The lab's inventory with the User Portals in `zone`."""
    host_vars = {name: {"mfa_zone": zone} for name in PORTALS}
    for name, changes in extra.get("host_vars", {}).items():
        host_vars.setdefault(name, {}).update(changes)
    return inventory_variant(lab.inventory, dest, host_vars=host_vars)


def comparable(report: Report) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Every result's status, reason and evidence (clock-skew: status; its times differ)."""
    return {
        (r["check_id"], r["target"]): (
            (r["status"],) if r["check_id"] == "clock-skew"
            else (r["status"], r["reason"], json.dumps(r["evidence"], sort_keys=True))
        )
        for r in report.document["results"]
    }


def scan(*args: str, password: str | None = None, timeout: float = 180) -> tuple[Report, str, int]:
    result = run_agent("scan", *FAST_TIMEOUTS, "--format", "json", *args, password=password,
                       timeout=timeout)
    assert result.stdout, result.stderr
    return Report.parse(result.stdout), result.stderr, result.returncode


def test_two_zones_equal_a_local_scan_and_no_secret_crosses_the_broker(
    builtin_lab: LabProcess, broker: RedisServer, workers: dict[str, Worker], password: str,
    tmp_path: Path,
) -> None:
    inventory = zoned(builtin_lab, tmp_path / "zoned.yaml")
    db = tmp_path / "history.sqlite3"
    # The coordinator has no password: the workers hold it.
    remote, err, code = scan("-i", str(inventory), "--broker", broker.url, "--db", str(db))
    local, _, local_code = scan("-i", str(inventory), "--no-history", password=password)

    assert comparable(remote) == comparable(local)
    assert {h: remote.error(h) for h in remote.hosts} == {h: local.error(h) for h in local.hosts}
    assert code == local_code == remote.exit_code == 1, err
    for name, host in remote.hosts.items():
        zone = "dmz" if name in PORTALS else "default"
        assert f"read by worker w-{zone}@test (zone {zone})" in host["trust_notes"], name
        assert not any("read by worker" in n for n in local.hosts[name]["trust_notes"])
    assert any("not enforced without --broker" in w for w in local.document["warnings"])
    assert not any("not enforced" in w for w in remote.document["warnings"])

    history = run_agent("history", "--db", str(db), "--format", "json", password=None)
    assert len(json.loads(history.stdout)) == 1, history.stdout

    carried = broker_texts(broker.monitor_log)
    assert any("portal01.lab.example" in t for t in carried)  # the decoding works...
    assert any(PASSWORD_ENV in t for t in carried)  # ...and the reference travelled,
    assert not [t for t in carried if password in t]  # never the password itself
    for worker in workers.values():
        assert password not in worker.text()


def test_progress_is_fed_by_task_results(
    builtin_lab: LabProcess, broker: RedisServer, workers: dict[str, Worker], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.connectors.common import Timeouts
    from agent.distributed.dispatch import DispatchOptions, ZoneGather
    from agent.gather import GatherOptions
    from agent.inventory import load_inventory

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    inventory = load_inventory(str(zoned(builtin_lab, tmp_path / "zoned.yaml")))
    done: list[str] = []
    gathered = ZoneGather(DispatchOptions(broker=broker.url))(
        inventory.hosts,
        GatherOptions(timeouts=Timeouts(connect=2, operation=1, host=4)),
        lambda facts: done.append(facts.name),
    )
    assert sorted(done) == sorted(h.name for h in inventory.hosts)
    assert [h.name for h in gathered.hosts] == [h.name for h in inventory.hosts]


def test_zone_without_worker_and_inline_password(
    builtin_lab: LabProcess, broker: RedisServer, workers: dict[str, Worker], tmp_path: Path,
) -> None:
    inline = "Inline-Pw-7f3a91"
    inventory = zoned(
        builtin_lab, tmp_path / "nowhere.yaml", zone="nowhere",
        host_vars={"sync01.lab.example": {"ansible_password": inline}},
    )
    report, err, code = scan("-i", str(inventory), "--broker", broker.url, "--no-history",
                             "--zone-timeout", "3600")
    assert code == 1, err  # the scan completed (FAILs elsewhere)
    for name in PORTALS:
        assert report.error(name) == "no worker for zone nowhere"
    sync_error = report.error("sync01.lab.example") or ""
    assert "never sent to a worker" in sync_error
    assert "lookup('env'" in sync_error
    assert report.error("adfs01.lab.example") is None
    assert not [t for t in broker_texts(broker.monitor_log) if inline in t]


def _claims(broker: RedisServer) -> dict[str, str]:
    client: Any = broker.client()
    keys = client.keys(CLAIMS)
    return {k.decode(): (client.get(k) or b"").decode() for k in keys}


def _kill_mid_host(
    lab: LabProcess, broker: RedisServer, names: list[str], tmp_path: Path, password: str
) -> tuple[Report, str, list[Worker], str]:
    """Scan portal02 (it never answers) in zone 'k<N>' served by `names`; SIGKILL its reader."""
    zone = f"k{unused_port()}"
    started = [start_worker(broker.url, [zone], n, tmp_path, password, concurrency=1)
               for n in names]
    before = set(_claims(broker))
    inventory = zoned(lab, tmp_path / "k.yaml", zone=zone)
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "scan", "-i", str(inventory), "--broker", broker.url,
         "--limit", "portal02.lab.example", "--no-history", "--format", "json", *FAST_TIMEOUTS],
        cwd=REPO, env=clean_environment(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: set(_claims(broker)) - before, "a worker to claim portal02")
        (claim,) = set(_claims(broker)) - before
        reader = _claims(broker)[claim]
        victim = next(w for w in started if w.name == reader)
        os.kill(victim.process.pid, signal.SIGKILL)
        out, err = process.communicate(timeout=120)  # a bound: "within 60 s" plus the rescan
        return Report.parse(out), err, started, zone
    finally:
        if process.poll() is None:
            process.kill()
        for worker in started:
            worker.stop()


def test_worker_killed_mid_host_is_retried_on_another(
    builtin_lab: LabProcess, broker: RedisServer, password: str, tmp_path: Path,
    workers: dict[str, Worker],
) -> None:
    report, err, (first, second), zone = _kill_mid_host(
        builtin_lab, broker, ["kill-a", "kill-b"], tmp_path, password
    )
    local, _, _ = scan("-i", str(builtin_lab.inventory), "--limit", "portal02.lab.example",
                       "--no-history", password=password)
    assert list(report.hosts) == ["portal02.lab.example"]
    assert report.error("portal02.lab.example") == local.error("portal02.lab.example"), err
    assert comparable(report) == comparable(local)
    notes = report.hosts["portal02.lab.example"]["trust_notes"]
    readers = [n for n in notes if n.startswith("read by worker")]
    survivor = second if first.process.returncode == -signal.SIGKILL else first
    assert readers == [f"read by worker {survivor.name} (zone {zone})"]


def test_only_worker_of_zone_killed_mid_host_is_worker_lost(
    builtin_lab: LabProcess, broker: RedisServer, password: str, tmp_path: Path,
    workers: dict[str, Worker],
) -> None:
    report, err, _, _ = _kill_mid_host(builtin_lab, broker, ["kill-solo"], tmp_path, password)
    assert list(report.hosts) == ["portal02.lab.example"]
    assert (report.error("portal02.lab.example") or "").startswith("worker lost"), err
    assert report.exit_code != 0  # never OK when a host was not read


def test_ctrl_c_cancels_tasks_not_started(
    builtin_lab: LabProcess, broker: RedisServer, tmp_path: Path, workers: dict[str, Worker],
) -> None:
    zone = f"idle{unused_port()}"
    queue = f"mfa-agent.{zone}"
    inventory = zoned(builtin_lab, tmp_path / "idle.yaml", zone=zone)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "scan", "-i", str(inventory), "--broker", broker.url,
         "--no-history", "-q", "-o", str(out), "--format", "json", "--zone-timeout", "3600",
         *FAST_TIMEOUTS],
        cwd=REPO, env=clean_environment(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    client: Any = broker.client()
    try:
        wait_for(lambda: client.llen(queue) == len(PORTALS), "both portals to be queued")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    report = Report.parse((out / "mfa-agent-report.json").read_text())
    for name in PORTALS:
        assert "interrupted" in (report.error(name) or ""), report.error(name)
    queued = [json.loads(m)["headers"]["id"] for m in client.lrange(queue, 0, -1)]
    assert len(queued) == len(PORTALS)
    assert {client.get(f"mfa-agent:claim:{i}") for i in queued} == {b"!cancelled"}


class _Explode:
    """Unpickling this creates a directory: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


def test_pickled_message_is_refused_and_never_executed(
    broker: RedisServer, workers: dict[str, Worker], tmp_path: Path
) -> None:
    from agent.distributed.app import make_app
    from agent.distributed.payload import TASK_NAME

    app = make_app(broker.url)
    marker = tmp_path / "unpickled"
    app.send_task(TASK_NAME, args=[_Explode(marker)], serializer="pickle",
                  queue="mfa-agent.default")
    worker = workers["default"]
    wait_for(lambda: "Refusing to deserialize untrusted content of type pickle" in worker.text(),
             "the worker to refuse the pickle")
    # A JSON task after it is still served (here: refused as not an mfa-agent task).
    reply = app.send_task(TASK_NAME, args=[{"version": 0}], queue="mfa-agent.default")
    result = reply.get(timeout=60)
    assert result["host"]["error"]["kind"] == "bad-task"
    assert not marker.exists()


def test_broker_down_exits_3_naming_it_without_password(tmp_path: Path) -> None:
    port = unused_port()
    result = run_agent(
        "scan", "-i", str(REPO / "inventory" / "example.yaml"),
        "--broker", f"redis://:Sekr1t-pw@127.0.0.1:{port}/0", "--no-history", password=None,
    )
    assert result.returncode == 3, result.stderr
    assert f"redis://127.0.0.1:{port}/0" in result.stderr
    assert "Sekr1t" not in result.stderr + result.stdout


def test_a_task_delivered_twice_reads_its_host_once(
    builtin_lab: LabProcess, broker: RedisServer, workers: dict[str, Worker]
) -> None:
    """What Redis redelivers (visibility timeout) after a worker took it is not read again."""
    import uuid

    from agent.connectors.common import Timeouts
    from agent.distributed.app import make_app
    from agent.distributed.payload import TASK_NAME, task_for
    from agent.inventory import load_inventory

    host = next(h for h in load_inventory(builtin_lab.inventory).hosts
                if h.name == "adfs01.lab.example")
    document = task_for(host, Timeouts(connect=2, operation=1, host=4))
    app = make_app(broker.url)
    task_id = f"mfa-agent-twice-{uuid.uuid4()}"
    first = app.send_task(TASK_NAME, args=[document], queue="mfa-agent.default", task_id=task_id)
    app.send_task(TASK_NAME, args=[document], queue="mfa-agent.default", task_id=task_id)
    worker = workers["default"]
    wait_for(lambda: f"task {task_id} already claimed" in worker.text(), "the second delivery")
    reply = first.get(timeout=60)
    assert reply["host"]["error"] is None and reply["host"]["facts"]
    succeeded = f"Task {TASK_NAME}[{task_id}] succeeded"
    wait_for(lambda: succeeded in worker.text(), "the first delivery's log line")
    assert worker.text().count(succeeded) == 1
    assert worker.text().count(f"Task {TASK_NAME}[{task_id}] ignored") == 1


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_broker_lost_mid_scan_reports_the_hosts_not_read(
    builtin_lab: LabProcess, tmp_path: Path, fault: str
) -> None:
    """A broker that dies, or stops answering (SIGSTOP), mid-scan: every host not read is
    reported, and the scan ends (a frozen broker within `BROKER_SOCKET_TIMEOUT`)."""
    zone = "nobody"
    inventory = zoned(builtin_lab, tmp_path / "nobody.yaml", zone=zone)
    with running_redis(tmp_path / "redis") as lost:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent", "scan", "-i", str(inventory), "--broker", lost.url,
             "--limit", "user_portal", "--no-history", "--format", "json",
             "--zone-timeout", "3600", *FAST_TIMEOUTS],
            cwd=REPO, env=clean_environment(None), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        client: Any = lost.client()
        try:
            wait_for(lambda: client.llen(f"mfa-agent.{zone}") == len(PORTALS), "the dispatch")
            # The coordinator polls: it holds no pub/sub subscription that would reconnect, with
            # retries, from a finaliser once the broker is gone.
            assert client.pubsub_channels() == [] and client.pubsub_numpat() == 0
            if fault == "killed":
                lost.process.kill()
            else:
                lost.process.send_signal(signal.SIGSTOP)
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
            lost.process.kill()
    report = Report.parse(out)
    assert process.returncode in (1, 2), err  # the scan completed and reported
    for name in PORTALS:
        assert (report.error(name) or "").startswith(f"lost the broker {lost.url} "), name


def test_a_forged_or_oversized_reply_cannot_change_a_host(
    builtin_lab: LabProcess, broker: RedisServer, tmp_path: Path
) -> None:
    """Whoever writes results on the broker can claim facts, never who a host is."""
    import threading

    from agent.connectors.common import Timeouts
    from agent.distributed.dispatch import DispatchOptions, ZoneGather
    from agent.gather import Gathered, GatherOptions
    from agent.inventory import load_inventory

    zone = f"forge{unused_port()}"
    inventory = load_inventory(zoned(builtin_lab, tmp_path / "forge.yaml", zone=zone))
    hosts = [h for h in inventory.hosts if h.name in PORTALS]
    done: list[Gathered] = []
    thread = threading.Thread(target=lambda: done.append(ZoneGather(
        DispatchOptions(broker=broker.url, zone_timeout=3600))(
            hosts, GatherOptions(timeouts=Timeouts(connect=2, operation=1, host=4)), None)))
    thread.start()
    client: Any = broker.client()
    wait_for(lambda: client.llen(f"mfa-agent.{zone}") == 2, "the dispatch")
    ids = {}
    for message in client.lrange(f"mfa-agent.{zone}", 0, -1):
        envelope = json.loads(message)
        (document,), _, _ = json.loads(base64.b64decode(envelope["body"]))
        ids[document["host"]["name"]] = envelope["headers"]["id"]
    forged = {"host": {"address": "203.0.113.7", "roles": ["adfs"], "error": None,
                       "facts": {"os": {"value": {"caption": "forged"}}}},
              "notes": [], "worker": "evil@nowhere"}
    client.set(f"celery-task-meta-{ids['portal01.lab.example']}",
               json.dumps({"status": "SUCCESS", "result": forged}))
    client.set(f"celery-task-meta-{ids['portal02.lab.example']}", "x" * (4 * 2**20 + 1))
    thread.join(timeout=120)
    (gathered,) = done
    portal01, portal02 = gathered.hosts
    assert (portal01.roles, portal01.address) == (hosts[0].roles, hosts[0].address)
    assert portal01.facts == {"os": {"value": {"caption": "forged"}}}
    assert portal02.error is not None and "larger than 4 MiB" in portal02.error.message


def _signing(key: Path, cert: Path, trust: Path) -> dict[str, str]:
    return {"MFA_AGENT_SIGNING_KEY": str(key), "MFA_AGENT_SIGNING_CERT": str(cert),
            "MFA_AGENT_SIGNING_TRUST": str(trust / "*.pem")}


def test_signed_messages_only_from_trusted_parties(
    builtin_lab: LabProcess, broker: RedisServer, password: str, tmp_path: Path,
) -> None:
    """With signing on, a worker reads for a trusted coordinator only (in processes of their
    own: Celery's signing setup changes serializer registries process-wide). The worker is alive
    and consumes the zone, but refuses every task of the others: no host of the zone is started
    within --zone-timeout."""
    from celeryfixtures import write_signing_identity

    trust = tmp_path / "trust"
    coordinator = write_signing_identity(trust, "coordinator")
    worker_identity = write_signing_identity(trust, "worker")
    intruder = write_signing_identity(tmp_path / "elsewhere", "intruder")
    zone = f"signed{unused_port()}"
    inventory = zoned(builtin_lab, tmp_path / "signed.yaml", zone=zone)
    worker = start_worker(broker.url, [zone], "w-signed", tmp_path, password,
                          extra_env=_signing(*worker_identity, trust))

    def scan_as(identity: tuple[Path, Path] | None) -> Report:
        env = clean_environment(None) | (_signing(*identity, trust) if identity else {})
        result = subprocess.run(
            [sys.executable, "-m", "agent", "scan", "-i", str(inventory), "--broker", broker.url,
             "--limit", "portal01.lab.example", "--no-history", "--format", "json",
             "--zone-timeout", "15", *FAST_TIMEOUTS],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False,
        )
        return Report.parse(result.stdout)

    try:
        trusted = scan_as(coordinator)
        assert trusted.error("portal01.lab.example") is None
        assert (f"read by worker w-signed@test (zone {zone})"
                in trusted.hosts["portal01.lab.example"]["trust_notes"])
        for identity in (None, intruder):
            refused = scan_as(identity)
            assert refused.error("portal01.lab.example") == f"no worker for zone {zone}"
        log = worker.text()
        assert "Refusing to deserialize untrusted content of type json" in log
        assert "Unknown certificate: b'intruder" in log
    finally:
        worker.stop()
