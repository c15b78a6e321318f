"""The lab's NTLM acceptor: the server side of MS-NLMP, NTLMv2 only.

A lab host answers a client's NEGOTIATE with a CHALLENGE and checks its AUTHENTICATE against the
lab account (`Credential`), the way a Windows host does:

* the NTLMv2 response: ``NTProofStr = HMAC_MD5(NTOWFv2, ServerChallenge + temp)`` with
  ``NTOWFv2 = HMAC_MD5(NT hash, UTF-16LE(UPPER(user) + domain))`` (MS-NLMP 3.3.2);
* the session key: ``HMAC_MD5(NTOWFv2, NTProofStr)``, decrypted with RC4 under key exchange;
* the MIC over the three messages, when the client's ``MsvAvFlags`` says it sent one;
* channel bindings (``MsvAvChannelBindings``) as Windows' default ``CbtHardeningLevel=Relaxed``:
  wrong bindings are refused, none (absent or zero) accepted and not counted as verified.

What it takes is what a host with ``NtlmMinServerSec = 0x20080000`` (NTLMv2 session security and
128-bit keys) and ``LmCompatibilityLevel = 5`` takes: LM and NTLMv1 responses, OEM strings,
anonymous logons and sealing without key exchange are refused. Every client the project meets
(pyspnego under pywinrm, the fast client's `agent.connectors.wsman.ntlm`, Windows' SSPI)
negotiates more than that. SPNEGO-wrapped logons are not this module's: `agent.lab.auth` hands
them to pyspnego's acceptor, as before. The MS-NLMP primitives (flags, key derivation, RC4)
are the client module's, held to pyspnego's on both sides.

Once accepted, the connection's messages are sealed with `Sealer` and the derived keys.

Why not pyspnego's acceptor, which the lab used before: it costs 0.86 ms of CPU per logon against
this module's 0.17 ms, a quarter of the lab's CPU per host; it reads the account from a
file named by a process-wide environment variable; and it also accepts NTLMv1. pyspnego stays
the oracle: ``tests/test_lab_ntlm.py`` replays its initiator's handshakes with its acceptor through
`verify` and requires the same verdicts and the same keys, and every pywinrm request of the test
suite authenticates against this module.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Final

from agent.connectors.wsman.ntlm import (
    ALWAYS_SIGN,
    AV_CHANNEL_BINDINGS,
    AV_DNS_COMPUTER,
    AV_DNS_DOMAIN,
    AV_EOL,
    AV_FLAG_MIC,
    AV_FLAGS,
    AV_NB_COMPUTER,
    AV_NB_DOMAIN,
    AV_TIMESTAMP,
    EXTENDED_SESSION_SECURITY,
    KEY_56,
    KEY_128,
    KEY_EXCH,
    NTLM,
    REQUEST_TARGET,
    SEAL,
    SIGN,
    SIGNATURE,
    TARGET_INFO,
    TARGET_TYPE_DOMAIN,
    UNICODE,
    VERSION,
    rc4,
    session_sealer,
)
from agent.connectors.wsman.ntlmseal import Sealer

#: What a client must ask for (NtlmMinServerSec 0x20080000, and Unicode strings).
REQUIRED: Final = UNICODE | EXTENDED_SESSION_SECURITY | KEY_128
#: What the lab grants of a client's request.
_GRANTABLE: Final = (UNICODE | REQUEST_TARGET | SIGN | SEAL | ALWAYS_SIGN
                     | EXTENDED_SESSION_SECURITY | VERSION | KEY_128 | KEY_EXCH | KEY_56)
#: What the lab's CHALLENGE always sets.
_SERVER: Final = REQUEST_TARGET | NTLM | TARGET_INFO | TARGET_TYPE_DOMAIN

#: Windows Server 2019 (10.0.17763), NTLM revision 15.
_VERSION_FIELD: Final = struct.pack("<BBH3xB", 10, 0, 17763, 15)
_FILETIME_EPOCH: Final = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
_NO_BINDINGS: Final = b"\x00" * 16
#: Where an AUTHENTICATE message's MIC sits, and where its payload may start when it has one.
_MIC_AT: Final = 72
_MIC_END: Final = 88


class NtlmError(Exception):
    """A token the acceptor refuses; the message says why (for the server's log only)."""


@dataclass(frozen=True)
class Credential:
    """The account a lab host accepts: its NetBIOS domain ("" when none), name and NT hash."""

    domain: str
    user: str
    nt_hash: bytes

    def accepts(self, domain: str, user: str) -> bool:
        """Whether the names a client sent are this account's (case-insensitively; a client
        that sends no domain is taken to mean the host's own)."""
        return user.upper() == self.user.upper() and domain.upper() in {"", self.domain.upper()}


@dataclass(frozen=True)
class Accepted:
    """What a successful AUTHENTICATE established."""

    domain: str
    user: str
    flags: int
    session_key: bytes
    #: Whether the client's channel bindings were checked and matched.
    bindings_verified: bool

    def sealer(self) -> Sealer | None:
        """The connection's `Sealer` (server side), or None when the client negotiated none."""
        if self.flags & (SIGN | SEAL | KEY_EXCH) != SIGN | SEAL | KEY_EXCH:
            return None
        return session_sealer(self.session_key, client=False)


def challenge_message(negotiate: bytes, *, computer: str, domain: str,
                      now: dt.datetime | None = None) -> bytes:
    """The CHALLENGE answering a NEGOTIATE message (`NtlmError` if it is not one the lab takes)."""
    _check_header(negotiate, 1, "NEGOTIATE", 16)
    asked = _required(_u32(negotiate, 12), "the client's")
    flags = (asked & _GRANTABLE) | _SERVER
    if flags & KEY_128:
        flags &= ~KEY_56
    stamp = int(((now or dt.datetime.now(dt.UTC)) - _FILETIME_EPOCH).total_seconds() * 10**7)
    target, names = _names(computer, domain)
    info = names + _av(AV_TIMESTAMP, struct.pack("<Q", stamp)) + _av(AV_EOL, b"")
    header = 56
    return b"".join((
        SIGNATURE, struct.pack("<I", 2),
        struct.pack("<HHI", len(target), len(target), header),
        struct.pack("<I", flags), os.urandom(8), b"\x00" * 8,
        struct.pack("<HHI", len(info), len(info), header + len(target)),
        _VERSION_FIELD if flags & VERSION else b"\x00" * 8,
        target, info,
    ))


@functools.lru_cache(maxsize=1024)
def _names(computer: str, domain: str) -> tuple[bytes, bytes]:
    """The CHALLENGE's target name and the AV pairs naming the host and its domain (the same
    for every logon on a host)."""
    target = _utf16(domain)
    return target, b"".join((
        _av(AV_NB_DOMAIN, target),
        _av(AV_NB_COMPUTER, _utf16(computer)),
        _av(AV_DNS_DOMAIN, _utf16(domain.lower() + ".lab")),
        _av(AV_DNS_COMPUTER, _utf16(f"{computer.lower()}.{domain.lower()}.lab")),
    ))


def verify(credential: Credential, negotiate: bytes, challenge: bytes, authenticate: bytes,
           bindings: bytes | None = None) -> Accepted:
    """Check an AUTHENTICATE message against the NEGOTIATE and CHALLENGE before it.

    `bindings` is the channel-bindings hash the connection expects (`bindings_hash`), or None
    over plain HTTP. Raises `NtlmError` for anything the lab does not accept.
    """
    _check_header(challenge, 2, "CHALLENGE", 32)
    _check_header(authenticate, 3, "AUTHENTICATE", 64)
    flags = _required(_u32(authenticate, 60), "the AUTHENTICATE")
    if flags & SEAL and flags & (SIGN | KEY_EXCH) != SIGN | KEY_EXCH:
        raise NtlmError("sealing without signing and key exchange is not taken")
    nt_response = _field(authenticate, 20)
    domain = _text(_field(authenticate, 28))
    user = _text(_field(authenticate, 36))
    if not user:
        raise NtlmError("anonymous logons are refused")
    if len(nt_response) <= 24:
        raise NtlmError("LM and NTLMv1 responses are refused (NTLMv2 only)")
    if not credential.accepts(domain, user):
        raise NtlmError(f"unknown account {domain}\\{user}")

    proof, client_blob = nt_response[:16], nt_response[16:]
    pairs = _av_pairs(client_blob)
    key_v2 = hmac.digest(credential.nt_hash, (user.upper() + domain).encode("utf-16-le"), "md5")
    expected = hmac.digest(key_v2, challenge[24:32] + client_blob, "md5")
    if not hmac.compare_digest(proof, expected):
        raise NtlmError(f"wrong password for {domain}\\{user}")
    key_exchange_key = hmac.digest(key_v2, proof, "md5")
    if flags & KEY_EXCH and flags & (SIGN | SEAL):
        encrypted = _field(authenticate, 52)
        if len(encrypted) != 16:
            raise NtlmError("the encrypted session key is not 16 bytes")
        session_key = bytes(rc4(key_exchange_key).update(encrypted))
    else:
        session_key = key_exchange_key

    av_flags = pairs.get(AV_FLAGS, b"\x00" * 4)
    if len(av_flags) != 4:
        raise NtlmError("the NTLMv2 response's MsvAvFlags is not 4 bytes")
    if _u32(av_flags, 0) & AV_FLAG_MIC:
        if _payload_start(authenticate) < _MIC_END:
            raise NtlmError("the AUTHENTICATE message has no room for its MIC")
        zeroed = authenticate[:_MIC_AT] + b"\x00" * 16 + authenticate[_MIC_END:]
        mic = hmac.digest(session_key, negotiate + challenge + zeroed, "md5")
        if not hmac.compare_digest(mic, authenticate[_MIC_AT:_MIC_END]):
            raise NtlmError("the MIC does not match")

    verified = False
    sent = pairs.get(AV_CHANNEL_BINDINGS)
    if bindings is not None and sent is not None and sent != _NO_BINDINGS:
        if not hmac.compare_digest(sent, bindings):
            raise NtlmError("the channel bindings do not match this TLS connection")
        verified = True
    return Accepted(domain, user, flags, session_key, verified)


class NtlmAcceptor:
    """One connection's NTLM logon: NEGOTIATE in, CHALLENGE out, AUTHENTICATE in."""

    def __init__(self, credential: Credential, *, computer: str,
                 bindings: bytes | None = None) -> None:
        self._credential = credential
        self._computer = computer
        self._bindings = bindings
        self._negotiate: bytes | None = None
        self._challenge: bytes | None = None
        #: What the logon established, once complete.
        self.accepted: Accepted | None = None

    @property
    def complete(self) -> bool:
        """Whether the logon succeeded."""
        return self.accepted is not None

    def step(self, token: bytes) -> bytes | None:
        """The CHALLENGE for a NEGOTIATE; None once an AUTHENTICATE is accepted (`NtlmError`)."""
        if self.accepted is not None:
            raise NtlmError("the logon is already complete")
        if self._negotiate is None or self._challenge is None:
            self._challenge = challenge_message(
                token, computer=self._computer, domain=self._credential.domain or "WORKGROUP")
            self._negotiate = token
            return self._challenge
        self.accepted = verify(self._credential, self._negotiate, self._challenge, token,
                               self._bindings)
        return None


def _check_header(message: bytes, kind: int, name: str, minimum: int) -> None:
    """`NtlmError` unless `message` is an NTLMSSP message of that type and at least that long."""
    if len(message) < minimum or not message.startswith(SIGNATURE) or _u32(message, 8) != kind:
        raise NtlmError(f"not an NTLM {name} message")


def _required(flags: int, whose: str) -> int:
    """`flags`, or `NtlmError` when they lack what the lab requires (`REQUIRED`)."""
    if flags & REQUIRED != REQUIRED:
        raise NtlmError(f"{whose} flags {flags:#010x} lack Unicode, NTLMv2 session security or "
                        "128-bit keys")
    return flags


def _u32(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<I", data, offset)[0]
    return value


def _field(message: bytes, offset: int) -> bytes:
    """A payload field of a message: (length, max length, offset) at `offset`."""
    length, _, start = struct.unpack_from("<HHI", message, offset)
    if start + length > len(message):
        raise NtlmError("a field of the message points past its end")
    return message[start:start + length]


def _payload_start(message: bytes) -> int:
    """Where the first non-empty field of an AUTHENTICATE message starts."""
    starts = [struct.unpack_from("<HHI", message, at) for at in range(12, 60, 8)]
    return min((start for length, _, start in starts if length), default=len(message))


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-16-le")
    except UnicodeDecodeError:
        raise NtlmError("a name in the message is not UTF-16") from None


def _av_pairs(blob: bytes) -> dict[int, bytes]:
    """The AV pairs of an NTLMv2 client blob (``NTLMv2_CLIENT_CHALLENGE``, MS-NLMP 2.2.2.7)."""
    if len(blob) < 32 or blob[0] != 1 or blob[1] != 1:
        raise NtlmError("the NTLMv2 response is malformed")
    pairs: dict[int, bytes] = {}
    at = 28
    while True:
        if at + 4 > len(blob):
            raise NtlmError("the NTLMv2 response's AV pairs have no end")
        av_id, length = struct.unpack_from("<HH", blob, at)
        if av_id == AV_EOL:
            return pairs
        pairs.setdefault(av_id, blob[at + 4:at + 4 + length])
        at += 4 + length


def _av(av_id: int, value: bytes) -> bytes:
    return struct.pack("<HH", av_id, len(value)) + value


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")
