"""The few OpenSSH options mfa-agent honours in ``ansible_ssh_common_args`` (Ansible's idiom).

``-o ProxyJump=user@bastion:port`` (or ``-J``), ``-o UserKnownHostsFile=FILE`` and
``-o StrictHostKeyChecking=yes|accept-new|no``. Other options are ignored, as they only tune the
OpenSSH client that Ansible would run.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Literal

HostKeyPolicy = Literal["yes", "accept-new", "no"]
_POLICIES: dict[str, HostKeyPolicy] = {
    "yes": "yes",
    "ask": "yes",
    "true": "yes",
    "accept-new": "accept-new",
    "no": "no",
    "off": "no",
    "false": "no",
}


class SshArgsError(ValueError):
    """``ansible_ssh_common_args`` holds an option mfa-agent honours in a form it cannot use."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Jump:
    """One bastion of a ProxyJump chain."""

    host: str
    port: int = 22
    user: str | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"


@dataclass(frozen=True)
class SshOptions:
    """The options that change what mfa-agent does."""

    jumps: tuple[Jump, ...] = ()
    known_hosts_file: str | None = None
    host_key_policy: HostKeyPolicy = "yes"


def _bad(message: str) -> SshArgsError:
    return SshArgsError(message)


def parse_jump(text: str) -> Jump:
    """``[user@]host[:port]`` (IPv6 as ``[addr]:port``)."""
    user, _, hostport = text.rpartition("@")
    host, port = hostport, 22
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif hostport.count(":") == 1:
        host, _, raw = hostport.partition(":")
        port = _port(raw, text)
    if not host:
        raise _bad(f"ProxyJump '{text}' names no host")
    return Jump(host=host, port=port, user=user or None)


def _port(raw: str, text: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise _bad(f"ProxyJump '{text}' has an invalid port")
    return int(raw)


def parse_ssh_args(text: str | None) -> SshOptions:
    """The options in an ``ansible_ssh_common_args`` string."""
    if not text:
        return SshOptions()
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise _bad(f"cannot be split like a shell command line ({exc})") from None
    options: dict[str, str] = {}
    jumps: str | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("-o", "-J"):
            if i + 1 >= len(tokens):
                raise _bad(f"{token} needs a value")
            value, i = tokens[i + 1], i + 2
        elif token.startswith(("-o", "-J")) and len(token) > 2:
            value, i = token[2:], i + 1
        else:
            i += 1
            continue
        if token.startswith("-J"):
            jumps = value
            continue
        key, sep, val = value.partition("=")
        if not sep:
            key, _, val = value.partition(" ")
        options[key.strip().lower()] = val.strip()
    jumps = options.get("proxyjump", jumps)
    chain = (
        ()
        if not jumps or jumps.lower() == "none"
        else tuple(parse_jump(j) for j in jumps.split(","))
    )
    policy_raw = options.get("stricthostkeychecking", "yes").lower()
    if policy_raw not in _POLICIES:
        raise _bad(f"StrictHostKeyChecking '{policy_raw}' is not yes, accept-new or no")
    known = options.get("userknownhostsfile")
    return SshOptions(
        jumps=chain, known_hosts_file=known or None, host_key_policy=_POLICIES[policy_raw]
    )
