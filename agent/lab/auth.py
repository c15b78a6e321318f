"""Authentication and message encryption for the lab's WS-Management servers.

*Basic* is checked against the lab account on every request. A raw NTLMSSP token starts a logon
with the lab's own NTLM acceptor (`agent.lab.ntlm`: NTLMv2, MIC, channel bindings the way
Windows' default ``CbtHardeningLevel=Relaxed`` checks them over HTTPS); a SPNEGO token
(``0x60``/``0xa1`` first byte) one with pyspnego's ``negotiate`` acceptor. The context
authenticates the TCP connection (one `SecurityContext` per connection) and then seals and
unseals the ``multipart/encrypted`` bodies of MS-WSMV message encryption, with
`agent.connectors.wsman.ntlmseal.Sealer` wherever the keys are NTLM's (pyspnego's
``wrap``/``unwrap`` spend most of their time on flag enums) and pyspnego's own otherwise.

pyspnego's acceptor has no way to be handed a credential: it reads the file named by the
environment variable ``NTLM_USER_FILE``. It looks the variable up when the acceptor is created
(it refuses to start without an existing file) and reads the file again when it checks the
client's AUTHENTICATE message. The environment is per process, so every server here owns its own
`UserFile` and every pyspnego call that may read it runs under one process-wide lock with
``NTLM_USER_FILE`` pointing at that server's file, restored afterwards. That is what lets several
lab servers with different accounts (or a wrong-password host) live in one process. A caller's
own ``NTLM_USER_FILE`` is left as it was outside those calls.

pyspnego stays the oracle all the same: ``tests/test_lab_ntlm.py`` holds the NTLM acceptor to
pyspnego's, ``tests/test_ntlmseal.py`` holds `Sealer` to pyspnego's sealing in both directions,
and every pywinrm request of the test suite is authenticated and sealed by pyspnego on the
client's side.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import spnego

from agent.connectors.wsman.ntlm import bindings_hash
from agent.connectors.wsman.ntlmseal import Sealer
from agent.lab.ntlm import Credential, NtlmAcceptor, NtlmError

#: The environment variable pyspnego's NTLM acceptor reads its credentials from.
USER_FILE_ENV: Final = "NTLM_USER_FILE"
ENCRYPTION_PROTOCOL: Final = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY: Final = b"--Encrypted Boundary"
ENCRYPTED_CONTENT_TYPE: Final = (
    f'multipart/encrypted;protocol="{ENCRYPTION_PROTOCOL}";boundary="Encrypted Boundary"'
)
_OCTET_HEADER: Final = b"\tContent-Type: application/octet-stream\r\n"
_NTLMSSP: Final = b"NTLMSSP\x00"

_ENV_LOCK = threading.Lock()


class AuthFailed(Exception):
    """The client's token was refused; the message says why (for the server log only)."""


class SealError(Exception):
    """An encrypted body that cannot be unsealed (bad framing, signature or length)."""


def check_password(password: str) -> None:
    """Raise ValueError if the password cannot be used by the lab."""
    if not password:
        raise ValueError("the lab password may not be empty")
    if any(c in password for c in ":\r\n\x00"):
        raise ValueError("the lab password may not contain ':', line breaks or NUL "
                         "(pyspnego's NTLM_USER_FILE format)")


@dataclass(frozen=True)
class Account:
    """The one account a lab host accepts: ``DOMAIN\\user`` (or ``user``) and its password."""

    user: str
    password: str

    def __post_init__(self) -> None:
        check_password(self.password)
        if not self.user or any(c in self.user for c in ":\r\n\x00"):
            raise ValueError("the lab user may not be empty or contain ':' or line breaks")

    @property
    def domain(self) -> str:
        """The NetBIOS domain part ("" when none)."""
        return self.user.split("\\", 1)[0] if "\\" in self.user else ""

    @property
    def name(self) -> str:
        """The user name without its domain."""
        return self.user.split("\\", 1)[1] if "\\" in self.user else self.user

    def check_basic(self, credentials: str) -> bool:
        """Whether the base64 part of an ``Authorization: Basic`` header names this account."""
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            text = decoded.decode("latin-1")
        user, sep, password = text.partition(":")
        if not sep:
            return False
        same_user = user.lower() == self.user.lower()
        same_password = hmac.compare_digest(password.encode(), self.password.encode())
        return same_user and same_password


class UserFile:
    """An account's NT hash (`credential`, for the NTLM acceptor) and an ``NTLM_USER_FILE``
    holding it (mode 0600, for pyspnego's SPNEGO acceptor), removed by `remove`.

    Written in the ``smbpasswd`` form pyspnego also reads (``USER:UID:LM:NT:FLAGS:LCT``) with the
    NT hash computed once here: the ``DOMAIN:USER:PASSWORD`` form makes pyspnego derive the
    hashes (pure-Python MD4 and DES) at every logon.
    """

    def __init__(self, path: Path, account: Account) -> None:
        from spnego._ntlm_raw.crypto import ntowfv1

        self.path = path
        raw_hash = bytes(ntowfv1(account.password))
        #: What the NTLM acceptor checks logons against.
        self.credential = Credential(account.domain, account.name, raw_hash)
        nt_hash = raw_hash.hex().upper()
        names = [account.user]
        if account.domain:
            # A client that sends no domain name ("mfa-scan") is accepted too.
            names.append(account.name)
        lines = [f"{name}:1000:{'0' * 32}:{nt_hash}:[U]:LCT-00000000" for name in names]
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")

    def remove(self) -> None:
        """Delete the file (it holds a password)."""
        self.path.unlink(missing_ok=True)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Point ``NTLM_USER_FILE`` at this file, under the process-wide lock, for one call."""
        with _ENV_LOCK:
            previous = os.environ.get(USER_FILE_ENV)
            os.environ[USER_FILE_ENV] = str(self.path)
            try:
                yield
            finally:
                if previous is None:
                    os.environ.pop(USER_FILE_ENV, None)
                else:
                    os.environ[USER_FILE_ENV] = previous


class SecurityContext:
    """One connection's logon: NTLM with the lab's own acceptor (`agent.lab.ntlm`), SPNEGO with
    pyspnego's."""

    def __init__(
        self, user_file: UserFile, first_token: bytes, channel_bindings: bytes | None = None,
        *, computer: str = "LAB-HOST",
    ) -> None:
        self._user_file = user_file
        self.protocol = "ntlm" if first_token.startswith(_NTLMSSP) else "negotiate"
        self._ntlm: NtlmAcceptor | None = None
        self._context: Any = None
        if self.protocol == "ntlm":
            self._ntlm = NtlmAcceptor(
                user_file.credential, computer=computer,
                bindings=(bindings_hash(b"tls-server-end-point:" + channel_bindings)
                          if channel_bindings is not None else None))
        else:
            try:
                with user_file.active():
                    self._context = spnego.server(
                        hostname="lab", service="HTTP", protocol="negotiate",
                        options=spnego.NegotiateOptions.use_negotiate)
            except Exception as exc:
                raise AuthFailed(f"cannot create the negotiate acceptor: {exc}") from exc
        self._sealer: Sealer | None = None

    @property
    def complete(self) -> bool:
        """Whether the handshake has finished successfully."""
        if self._ntlm is not None:
            return self._ntlm.complete
        return bool(self._context.complete)

    @property
    def bindings_verified(self) -> bool:
        """Whether the client's channel bindings were checked and matched (HTTPS, NTLM)."""
        accepted = self._ntlm.accepted if self._ntlm is not None else None
        return accepted is not None and accepted.bindings_verified

    def step(self, token: bytes) -> bytes | None:
        """Feed the client's token; the answer token (None when there is none)."""
        if self._ntlm is not None:
            try:
                out = self._ntlm.step(token)
            except NtlmError as exc:
                raise AuthFailed(f"ntlm authentication failed: {exc}") from exc
            if self._ntlm.accepted is not None:
                self._sealer = self._ntlm.accepted.sealer()
            return out
        try:
            with self._user_file.active():
                answer = self._context.step(token)
        except Exception as exc:
            raise AuthFailed(f"negotiate authentication failed: {exc}") from exc
        if self.complete:
            self._sealer = Sealer.take(self._context)
        return bytes(answer) if answer else None

    def seal(self, message: bytes) -> bytes:
        """A ``multipart/encrypted`` body carrying `message` sealed with this context."""
        if self._sealer is not None:
            wrapped = self._sealer.seal(message)
        elif self._context is not None:
            wrapped = bytes(self._context.wrap(message, encrypt=True).data)
        else:
            raise SealError("the client negotiated no message encryption")
        signature, sealed = wrapped[:16], wrapped[16:]
        return (
            BOUNDARY + b"\r\n"
            + b"\tContent-Type: " + ENCRYPTION_PROTOCOL.encode() + b"\r\n"
            + b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(message)).encode() + b"\r\n"
            + BOUNDARY + b"\r\n"
            + _OCTET_HEADER
            + struct.pack("<I", len(signature)) + signature + sealed
            + BOUNDARY + b"--\r\n"
        )

    def unseal(self, body: bytes) -> bytes:
        """The SOAP message inside a ``multipart/encrypted`` body (`SealError` if it is not one)."""
        start = BOUNDARY + b"\r\n"
        end = BOUNDARY + b"--\r\n"
        if not body.startswith(start) or not body.endswith(end):
            raise SealError("not a multipart/encrypted body")
        header_end = body.find(start, len(start))
        if header_end < 0:
            raise SealError("the encrypted body has no data part")
        header = body[len(start):header_end].decode("ascii", "replace")
        length_text = header.rpartition("Length=")[2].strip()
        if "Length=" not in header or not length_text.isdigit():
            raise SealError("the encrypted body has no OriginalContent length")
        payload = body[header_end + len(start):-len(end)]
        if not payload.startswith(_OCTET_HEADER):
            raise SealError("the encrypted data part is not application/octet-stream")
        payload = payload[len(_OCTET_HEADER):]
        if len(payload) < 4:
            raise SealError("the encrypted data part is truncated")
        (sig_len,) = struct.unpack("<I", payload[:4])
        if sig_len != 16 or len(payload) < 4 + sig_len:
            raise SealError("the encrypted data part has a bad signature length")
        try:
            if self._sealer is not None:
                message = self._sealer.unseal(payload[4:])
            elif self._context is not None:
                message = bytes(self._context.unwrap(payload[4:]).data)
            else:
                raise SealError("the client negotiated no message encryption")
        except Exception as exc:
            raise SealError(f"cannot unseal the message: {exc}") from exc
        if len(message) != int(length_text):
            raise SealError("the unsealed length does not match OriginalContent")
        return message
