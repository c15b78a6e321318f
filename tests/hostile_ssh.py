"""A hostile SSH server for black-box tests of the SSH connector: paramiko's server side on a
127.x address in this process, accepting one password and answering every command with a flood
(or whatever `answer` writes), or, with ``silent=True``, never answering a request to forward a
connection after sign-in (a stalled bastion). It records whether the client went away.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import yaml

#: What the server does with one exec channel (the command line is passed along).
Answer = Callable[[paramiko.Channel, str], None]
USER = "audit"


def flood(total: int, chunk: int = 256 * 1024) -> Answer:
    """Write `total` bytes to stdout, then exit 0 (stops when the client closes the channel)."""

    def answer(channel: paramiko.Channel, command: str) -> None:
        block = b"A" * chunk
        sent = 0
        while sent < total and not channel.closed:
            channel.sendall(block)
            sent += len(block)
        channel.send_exit_status(0)

    return answer


class _Interface(paramiko.ServerInterface):
    def __init__(self, password: str, answer: Answer, server: HostileSshServer) -> None:
        self.password = password
        self.answer = answer
        self.server = server

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = username == USER and password == self.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid: int, origin: tuple[str, int],
                                           destination: tuple[str, int]) -> int:
        if self.server.silent:
            self.server.stopping.wait()  # stalls this connection until the server stops
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=self._run, args=(channel, command.decode("utf-8", "replace")),
                         daemon=True).start()
        return True

    def _run(self, channel: paramiko.Channel, command: str) -> None:
        try:
            self.answer(channel, command)
        except (OSError, EOFError, paramiko.SSHException):
            self.server.hung_up.set()
        finally:
            # EOF, not close: closing could overtake paramiko's reply to the exec request, and
            # the client would see "Channel closed" instead of the answer. The client closes.
            with contextlib.suppress(Exception):
                channel.shutdown_write()


class HostileSshServer:
    """An SSH server on `address` whose every command gets `answer`."""

    def __init__(self, address: str, answer: Answer, *, password: str, state_dir: Path,
                 silent: bool = False) -> None:
        self.address = address
        self.silent = silent
        self.answer = answer
        self.password = password
        self.key = paramiko.ECDSAKey.generate()
        self.known_hosts = state_dir / "known_hosts"
        self.hung_up = threading.Event()
        self._sock = socket.create_server((address, 0))
        self._sock.settimeout(0.2)
        self.known_hosts.write_text(
            f"[{address}]:{self.port} {self.key.get_name()} {self.key.get_base64()}\n"
        )
        self.stopping = threading.Event()
        self._transports: list[paramiko.Transport] = []
        self._thread = threading.Thread(target=self._serve, daemon=True, name="hostile-ssh")
        self._thread.start()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._sock.getsockname()[1])

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.key)
            self._transports.append(transport)
            try:
                transport.start_server(server=_Interface(self.password, self.answer, self))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self.stopping.set()
        self._sock.close()
        for transport in self._transports:
            transport.close()
        self._thread.join(timeout=5)

    def inventory(self, path: Path, password_env: str) -> Path:
        """An inventory of one AD FS host over SSH to this server (password sign-in)."""
        host: dict[str, Any] = {
            "ansible_host": self.address,
            "ansible_port": self.port,
            "ansible_connection": "ssh",
            "ansible_user": USER,
            "ansible_password": f"{{{{ lookup('env', '{password_env}') }}}}",
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts}",
        }
        data = {"all": {"children": {"adfs": {"hosts": {"hostile-ssh.lab.example": host}}}}}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path


@contextlib.contextmanager
def running_ssh(
    address: str, answer: Answer, *, password: str, state_dir: Path, silent: bool = False
) -> Iterator[HostileSshServer]:
    """A `HostileSshServer`, stopped afterwards."""
    server = HostileSshServer(address, answer, password=password, state_dir=state_dir,
                              silent=silent)
    try:
        yield server
    finally:
        server.stop()
