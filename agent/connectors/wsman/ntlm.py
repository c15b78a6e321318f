"""The fast client's NTLM initiator: the messages pyspnego builds, byte for byte, without pyspnego.

`Initiator` sends NEGOTIATE and answers a CHALLENGE with an AUTHENTICATE carrying an NTLMv2
response, a MIC and an encrypted random session key, then hands out the connection's `Sealer`
(MS-NLMP 3.1.5.1 and 3.4). It takes only the CHALLENGE every Windows host sends to what it
asks for: Unicode, extended session security, 128-bit keys, key exchange, signing and sealing
(granted over https too), version, and target information holding names and a timestamp. Any
other well-formed CHALLENGE raises `Unsupported`, and the session authenticates the host with
pyspnego instead (`agent.connectors.wsman.session`), on a new connection; one that is no NTLM
CHALLENGE at all (wrong signature or type, fields out of bounds) raises `Malformed`.

Why not pyspnego, which pywinrm uses and which this path used before: importing it costs about
0.16 s of start-up (it loads GSSAPI, CredSSP and TLS support a WinRM scan does not need), and
its context about 0.3 ms of CPU per host, a tenth of the client's. What it builds stays the
truth: ``tests/test_wsman_ntlm.py`` requires byte-identical messages from both for the same
random numbers, over every CHALLENGE shape this module takes, and pyspnego's acceptor and the
lab's accept what this module sends.

MD5, MD4 and RC4 here are MS-NLMP's (2.2.2.7, 3.3.2, 3.4.5), not a choice: NTLM is defined
with them.
"""

from __future__ import annotations

import hmac
import os
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import md5
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers import Cipher

from agent.connectors.wsman.ntlmseal import Sealer

try:  # cryptography 43 moved ARC4 to "decrepit"
    from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import ARC4

SIGNATURE: Final = b"NTLMSSP\x00"

# NegotiateFlags (MS-NLMP 2.2.2.5).
UNICODE: Final = 0x00000001
OEM: Final = 0x00000002
REQUEST_TARGET: Final = 0x00000004
SIGN: Final = 0x00000010
SEAL: Final = 0x00000020
NTLM: Final = 0x00000200
ALWAYS_SIGN: Final = 0x00008000
TARGET_TYPE_DOMAIN: Final = 0x00010000
EXTENDED_SESSION_SECURITY: Final = 0x00080000
TARGET_INFO: Final = 0x00800000
VERSION: Final = 0x02000000
KEY_128: Final = 0x20000000
KEY_EXCH: Final = 0x40000000
KEY_56: Final = 0x80000000

#: What the client asks for: pyspnego's defaults at ``LM_COMPAT_LEVEL`` 3 and above.
NEGOTIATE_FLAGS: Final = (UNICODE | OEM | REQUEST_TARGET | SIGN | SEAL | NTLM | ALWAYS_SIGN
                          | EXTENDED_SESSION_SECURITY | VERSION | KEY_128 | KEY_EXCH | KEY_56)
#: What a CHALLENGE must grant for this module to answer it.
_GRANTED: Final = (UNICODE | EXTENDED_SESSION_SECURITY | TARGET_INFO | VERSION | KEY_128
                   | KEY_EXCH | SIGN | SEAL)

# AV_PAIR ids (MS-NLMP 2.2.2.1).
AV_EOL: Final = 0
AV_NB_COMPUTER: Final = 1
AV_NB_DOMAIN: Final = 2
AV_DNS_COMPUTER: Final = 3
AV_DNS_DOMAIN: Final = 4
AV_DNS_TREE: Final = 5
AV_FLAGS: Final = 6
AV_TIMESTAMP: Final = 7
AV_TARGET_NAME: Final = 9
AV_CHANNEL_BINDINGS: Final = 10
AV_FLAG_MIC: Final = 0x2
#: The pairs a Windows host's CHALLENGE holds, and their sizes (None: UTF-16 text).
_TAKEN_PAIRS: Final[dict[int, int | None]] = {
    AV_NB_COMPUTER: None, AV_NB_DOMAIN: None, AV_DNS_COMPUTER: None, AV_DNS_DOMAIN: None,
    AV_DNS_TREE: None, AV_FLAGS: 4, AV_TIMESTAMP: 8,
}

#: The last FILETIME a date can hold (9999-12-31): pyspnego refuses a later timestamp.
_LAST_FILETIME: Final = 2_650_467_743_999_999_999
#: The VERSION structure (2.2.2.10): product 0.1.0, NTLM revision 15. Informational only.
VERSION_FIELD: Final = struct.pack("<BBH3xB", 0, 1, 0, 15)
#: pyspnego's workstation variable (gss-ntlmssp's), read the same way.
WORKSTATION_ENV: Final = "NETBIOS_COMPUTER_NAME"
#: pyspnego's compatibility variable: levels below 3 (LM, NTLMv1) are left to pyspnego.
COMPAT_ENV: Final = "LM_COMPAT_LEVEL"
_HASH_PASSWORD: Final = re.compile(r"[a-fA-F0-9]{32}:[a-fA-F0-9]{32}")


class Unsupported(Exception):
    """A well-formed CHALLENGE this module does not answer; pyspnego may."""


class Malformed(Exception):
    """Bytes that are no NTLM CHALLENGE message."""


@dataclass(frozen=True)
class Credential:
    """Who signs in: the NetBIOS domain (None when the user names none), user and NT hash."""

    domain: str | None
    user: str
    nt_hash: bytes = field(repr=False)

    @classmethod
    def of(cls, username: str, password: str) -> Credential:
        """The credential of an inventory's ``DOMAIN\\user`` (or ``user@domain``) and password,
        split and hashed as pyspnego does (an ``LMHASH:NTHASH`` password is the hash itself)."""
        domain, user = username.split("\\", 1) if "\\" in username else ("", username)
        return cls(domain or None, user, nt_hash(password))


def nt_hash(password: str) -> bytes:
    """NTOWFv1: MD4 of the UTF-16LE password (MS-NLMP 3.3.1), or the hash a password gives."""
    if _HASH_PASSWORD.fullmatch(password):
        return bytes.fromhex(password.split(":")[1])
    return md4(password.encode("utf-16-le", errors="surrogatepass"))


def workstation() -> str | None:
    """The workstation name the AUTHENTICATE carries, as pyspnego chooses it."""
    if WORKSTATION_ENV in os.environ:
        name = os.environ[WORKSTATION_ENV]
    else:
        name = socket.gethostname().upper()
    return name or None


def takes_environment() -> bool:
    """Whether this module builds what pyspnego would under this process's settings: not with
    ``LM_COMPAT_LEVEL`` set to anything but 3, 4 or 5 (pyspnego then sends LM or NTLMv1
    responses, or refuses the value)."""
    return os.environ.get(COMPAT_ENV, "3") in {"3", "4", "5"}


class Initiator:
    """One connection's NTLM sign-in, client side."""

    def __init__(self, credential: Credential, *, spn: str, bindings: bytes | None = None,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        """`spn` is ``HTTP/<host>``; `bindings` the channel-bindings application data
        (``tls-server-end-point:`` and the certificate hash) over https, else None."""
        self._credential = credential
        self._spn = spn
        self._bindings = bindings
        self._random = random
        self._negotiate = b""
        self._session_key = b""

    def negotiate(self) -> bytes:
        """The NEGOTIATE message (2.2.1.1): flags and version, no names."""
        self._negotiate = (SIGNATURE + struct.pack("<II", 1, NEGOTIATE_FLAGS)
                           + _field(b"", 40) + _field(b"", 40) + VERSION_FIELD)
        return self._negotiate

    def authenticate(self, challenge: bytes) -> bytes:
        """The AUTHENTICATE answering `challenge`, after `negotiate` (`Unsupported` if it is not
        one this module answers, `Malformed` if it is no CHALLENGE)."""
        if not self._negotiate:
            raise RuntimeError("authenticate() before negotiate()")
        flags, server_challenge, pairs = _parse_challenge(challenge)
        if self._bindings is not None:
            pairs[AV_CHANNEL_BINDINGS] = bindings_hash(self._bindings)
        pairs[AV_TARGET_NAME] = self._spn.encode("utf-16-le")
        av_flags = _u32(pairs[AV_FLAGS], 0) if AV_FLAGS in pairs else 0
        pairs[AV_FLAGS] = struct.pack("<I", av_flags | AV_FLAG_MIC)

        c = self._credential
        key_v2 = hmac.digest(c.nt_hash, (c.user.upper() + (c.domain or "")).encode("utf-16-le"),
                             "md5")
        client_challenge = self._random(8)
        temp = (b"\x01\x01" + b"\x00" * 6 + pairs[AV_TIMESTAMP] + client_challenge + b"\x00" * 4
                + b"".join(_av(i, v) for i, v in pairs.items()) + _av(AV_EOL, b"")
                + b"\x00" * 4)
        proof = hmac.digest(key_v2, server_challenge + temp, "md5")
        key_exchange_key = hmac.digest(key_v2, proof, "md5")
        self._session_key = self._random(16)
        encrypted_key = bytes(rc4(key_exchange_key).update(self._session_key))

        host = workstation()
        payload = [VERSION_FIELD, b"\x00" * 16, b"\x00" * 24, proof + temp,
                   (c.domain or "").encode("utf-16-le"), c.user.encode("utf-16-le"),
                   (host or "").encode("utf-16-le"), encrypted_key]
        fields, offset = [], 88  # after the version and the MIC
        for value in payload[2:]:
            fields.append(_field(value, offset))
            offset += len(value)
        message = (SIGNATURE + struct.pack("<I", 3) + b"".join(fields)
                   + struct.pack("<I", flags) + b"".join(payload))
        mic = hmac.digest(self._session_key, self._negotiate + challenge + message, "md5")
        return message[:72] + mic + message[88:]

    def sealer(self) -> Sealer:
        """The connection's `Sealer`, once `authenticate` has run."""
        key = self._session_key
        if not key:
            raise RuntimeError("sealer() before authenticate()")
        return session_sealer(key, client=True)


def _parse_challenge(challenge: bytes) -> tuple[int, bytes, dict[int, bytes]]:
    """Flags, server challenge and target information of a CHALLENGE this module answers."""
    if len(challenge) < 48 or not challenge.startswith(SIGNATURE) or _u32(challenge, 8) != 2:
        raise Malformed("not an NTLM CHALLENGE message")
    length, _, start = struct.unpack_from("<HHI", challenge, 40)
    if start + length > len(challenge):
        raise Malformed("the CHALLENGE's target information is out of bounds")
    flags = _u32(challenge, 20)
    if flags & _GRANTED != _GRANTED:
        raise Unsupported(f"the CHALLENGE's flags {flags:#010x} are not a Windows host's")
    if start < 56:
        raise Unsupported("the CHALLENGE's target information overlaps its version")
    info = challenge[start:start + length]
    pairs: dict[int, bytes] = {}
    at = 0
    while True:
        if at + 4 > len(info):
            raise Unsupported("the CHALLENGE's target information has no end")
        av_id, size = struct.unpack_from("<HH", info, at)
        value = info[at + 4:at + 4 + size]
        at += 4 + size
        if av_id == AV_EOL:
            break
        expected = _TAKEN_PAIRS.get(av_id, -1)
        if av_id in pairs or len(value) != size or (expected is not None and size != expected):
            raise Unsupported(f"the CHALLENGE's target information pair {av_id} is not taken")
        if expected is None:
            try:
                value.decode("utf-16-le")
            except UnicodeDecodeError:
                raise Unsupported("a name in the CHALLENGE is not UTF-16") from None
        pairs[av_id] = value
    if at != len(info) or size != 0 or AV_TIMESTAMP not in pairs:
        raise Unsupported("the CHALLENGE's target information is not a Windows host's")
    if struct.unpack("<Q", pairs[AV_TIMESTAMP])[0] > _LAST_FILETIME:
        raise Unsupported("the CHALLENGE's timestamp is past the year 9999")
    return flags, challenge[24:32], pairs


def bindings_hash(application_data: bytes) -> bytes:
    """``MsvAvChannelBindings`` for a ``gss_channel_bindings_struct`` holding only
    `application_data` (what HTTP clients send: ``tls-server-end-point:`` and the hash)."""
    structure = struct.pack("<IIIII", 0, 0, 0, 0, len(application_data)) + application_data
    return md5(structure).digest()  # noqa: S324


def session_sealer(session_key: bytes, *, client: bool) -> Sealer:
    """The `Sealer` of one side (`client`, or the server) of a connection with `session_key`:
    it seals with that side's keys and unseals with the other's."""
    sides = [b"client-to-server", b"server-to-client"]
    out, into = sides if client else sides[::-1]
    return Sealer(sign_key(session_key, out), rc4(seal_key(session_key, out)),
                  sign_key(session_key, into), rc4(seal_key(session_key, into)))


def sign_key(session_key: bytes, direction: bytes) -> bytes:
    """SIGNKEY with extended session security (3.4.5.2); `direction` e.g. ``client-to-server``."""
    return md5(session_key + b"session key to %s signing key magic constant\x00"  # noqa: S324
               % direction).digest()


def seal_key(session_key: bytes, direction: bytes) -> bytes:
    """SEALKEY with extended session security and 128-bit keys (3.4.5.3)."""
    return md5(session_key + b"session key to %s sealing key magic constant\x00"  # noqa: S324
               % direction).digest()


def rc4(key: bytes) -> Any:
    """An RC4 stream (``update`` encrypts and decrypts)."""
    return Cipher(ARC4(key), mode=None).encryptor()  # noqa: S304


def md4(data: bytes) -> bytes:
    """MD4 (RFC 1320), which OpenSSL 3 no longer offers by default; used once per password."""
    def rotl(x: int, n: int) -> int:
        return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF

    message = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", len(data) * 8)
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for block in range(0, len(message), 64):
        x = struct.unpack_from("<16I", message, block)
        a, b, c, d = h
        for i in range(16):
            k = i
            a, b, c, d = d, rotl((a + ((b & c) | (~b & d)) + x[k]) & 0xFFFFFFFF,
                                 (3, 7, 11, 19)[i % 4]), b, c
        for i in range(16):
            k = (i % 4) * 4 + i // 4
            a, b, c, d = d, rotl((a + ((b & c) | (b & d) | (c & d)) + x[k] + 0x5A827999)
                                 & 0xFFFFFFFF, (3, 5, 9, 13)[i % 4]), b, c
        for i in range(16):
            k = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)[i]
            a, b, c, d = d, rotl((a + (b ^ c ^ d) + x[k] + 0x6ED9EBA1) & 0xFFFFFFFF,
                                 (3, 9, 11, 15)[i % 4]), b, c
        h = [(v + w) & 0xFFFFFFFF for v, w in zip(h, (a, b, c, d), strict=True)]
    return struct.pack("<4I", *h)


def _field(value: bytes, offset: int) -> bytes:
    """A message's (length, maximum length, offset) field (2.2.1)."""
    return struct.pack("<HHI", len(value), len(value), offset)


def _av(av_id: int, value: bytes) -> bytes:
    return struct.pack("<HH", av_id, len(value)) + value


def _u32(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<I", data, offset)[0]
    return value
