"""A real Redis broker and real ``mfa-agent worker`` processes, for tests of zoned scans.

`RedisServer` runs Debian's ``redis-server`` on 127.0.0.1 (a free port, no persistence) with a
``redis-cli MONITOR`` beside it that writes every command the broker receives to a file:
`broker_texts` turns that file back into every string the broker carried (message bodies
base64-decoded), so a test can prove that no secret went through the broker. Workers are
``python -m agent worker`` subprocesses. Everything is stopped by PID.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_or_fail
from labfixtures import REPO, clean_environment, unused_port

START_TIMEOUT = 60.0


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaped either way."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


@dataclass
class RedisServer:
    """A redis-server on 127.0.0.1:`port`, and the MONITOR recording every command it ran."""

    process: subprocess.Popen[bytes]
    monitor: subprocess.Popen[bytes]
    port: int
    monitor_log: Path

    @property
    def url(self) -> str:
        """The broker URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> object:
        """A redis-py client of this server."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        """Stop the monitor and the server, by PID."""
        stop(self.monitor)
        stop(self.process)


def start_redis(directory: Path) -> RedisServer:
    """Start redis-server on a free loopback port, and its MONITOR."""
    require_or_fail(shutil.which("redis-server") is not None, "redis-server")
    require_or_fail(shutil.which("redis-cli") is not None, "redis-cli (redis-tools)")
    directory.mkdir(parents=True, exist_ok=True)
    port = unused_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--protected-mode", "yes"],
        stdout=(directory / "redis.log").open("wb"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                              text=True, check=False)
        if ping.stdout.strip() == "PONG":
            break
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            log = (directory / "redis.log").read_text()
            raise AssertionError(f"redis-server did not start: {log}")
        time.sleep(0.05)
    log = directory / "monitor.log"
    monitor = subprocess.Popen(["redis-cli", "-p", str(port), "monitor"],
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    while "OK" not in log.read_text(errors="replace"):
        if monitor.poll() is not None or time.monotonic() > deadline:
            stop(monitor)
            stop(process)
            raise AssertionError("redis-cli monitor did not start")
        time.sleep(0.05)
    return RedisServer(process, monitor, port, log)


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    """A `RedisServer` for the duration of the block."""
    server = start_redis(directory)
    try:
        yield server
    finally:
        server.stop()


# -- what the broker carried ------------------------------------------------------------------

_ARGUMENT = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _unescape(text: str) -> str:
    """redis-cli's quoting of one argument (\\xNN, \\", \\\\, \\n …) back to its text."""
    raw = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def broker_texts(monitor_log: Path) -> list[str]:
    """Every argument of every command the broker received, message bodies decoded too."""
    texts: list[str] = []
    for line in monitor_log.read_text(errors="replace").splitlines():
        for quoted in _ARGUMENT.findall(line):
            text = _unescape(quoted)
            texts.append(text)
            texts.extend(_decoded_bodies(text))
    return texts


def _decoded_bodies(text: str) -> list[str]:
    """A kombu message envelope's body, base64-decoded (and nothing for anything else)."""
    try:
        envelope = json.loads(text)
    except ValueError:
        return []
    if not isinstance(envelope, dict) or not isinstance(envelope.get("body"), str):
        return []
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body).decode("utf-8", "replace")
    return [body]


# -- workers ----------------------------------------------------------------------------------


@dataclass
class Worker:
    """An ``mfa-agent worker`` process."""

    process: subprocess.Popen[bytes]
    name: str
    log: Path

    def text(self) -> str:
        """What the worker logged so far."""
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        stop(self.process, grace=5.0)


def start_worker(
    broker: str, zones: list[str], name: str, directory: Path, password: str | None,
    concurrency: int = 4, extra_env: dict[str, str] | None = None,
) -> Worker:
    """Start ``python -m agent worker`` and wait until Celery says it is ready."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / f"{name}.log"
    args = [sys.executable, "-m", "agent", "worker", "--broker", broker,
            "--concurrency", str(concurrency), "--name", f"{name}@test"]
    for zone in zones:
        args += ["--zone", zone]
    env = clean_environment(password) | (extra_env or {})
    process = subprocess.Popen(args, cwd=REPO, env=env,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    worker = Worker(process, f"{name}@test", log)
    deadline = time.monotonic() + START_TIMEOUT
    while f"{name}@test ready." not in worker.text():
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            pytest.fail(f"worker {name} did not start:\n{worker.text()[-3000:]}")
        time.sleep(0.1)
    return worker


def wait_for(condition: object, what: str, timeout: float = 60.0) -> None:
    """Poll `condition()` until true; fail naming `what` after `timeout` (a bound, not a test)."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def environment_without(name: str) -> dict[str, str]:
    """The test environment without variable `name` (the coordinator has no lab password)."""
    env = clean_environment(None)
    env.pop(name, None)
    return {k: v for k, v in env.items() if k != name} | {"PATH": os.environ.get("PATH", "")}


def write_signing_identity(directory: Path, name: str) -> tuple[Path, Path]:
    """A private key and self-signed certificate (PEM files) for Celery message signing."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = directory / f"{name}.key", directory / f"{name}.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file
