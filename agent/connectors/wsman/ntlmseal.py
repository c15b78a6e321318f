"""NTLM message sealing for the fast client, with the keys its sign-in negotiated.

`agent.connectors.wsman.ntlm.Initiator` hands out a `Sealer` with its keys; a pyspnego context
(the fallback) gives one through `Sealer.take`, since sealing through pyspnego's
``wrap``/``unwrap`` costs more than the cryptography itself (flag enums, property lookups:
about a sixth of the client's CPU per host). `Sealer` does MS-NLMP's sealing with extended
session security and key exchange (what Windows and the lab negotiate) directly:

* seal: ``RC4(out, message)``; signature = version 1, ``RC4(out, HMAC_MD5(sign_key,
  seq + message)[:8])``, seq (MS-NLMP 3.4.4.2 and 3.4.6);
* unseal: the same with the server's keys, the signature compared in constant time.

Anything else (another pyspnego layout, other flags) gives no `Sealer`, and the session keeps
using pyspnego's own ``wrap``/``unwrap``. The keys are the context's own, so an acceptor's
context works the same way (the lab's server side seals with it). ``tests/test_ntlmseal.py``
checks every direction against pyspnego's ``wrap``/``unwrap``.
"""

from __future__ import annotations

import hmac
import struct
from hashlib import md5
from typing import Any, Final

#: NTLMSSP_NEGOTIATE_SIGN | SEAL | EXTENDED_SESSIONSECURITY | KEY_EXCH (MS-NLMP 2.2.2.5).
_REQUIRED: Final = 0x00000010 | 0x00000020 | 0x00080000 | 0x40000000
_VERSION: Final = b"\x01\x00\x00\x00"


class SealError(Exception):
    """A sealed message whose signature does not match (tampered, or out of sequence)."""


_IPAD: Final = bytes(b ^ 0x36 for b in range(256))
_OPAD: Final = bytes(b ^ 0x5C for b in range(256))


class _HmacMd5:
    """HMAC-MD5 (RFC 2104) under one key, its two padded key blocks hashed once: about half
    the cost of ``hmac.digest`` per message, which looks the digest up and pads the key on
    every call (a connection signs eight messages with the same two keys)."""

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = md5(key).digest()  # noqa: S324 - MS-NLMP's HMAC_MD5
        block = key.ljust(64, b"\x00")
        self._inner = md5(block.translate(_IPAD))  # noqa: S324
        self._outer = md5(block.translate(_OPAD))  # noqa: S324

    def digest(self, *parts: bytes) -> bytes:
        """The MAC of the parts, concatenated."""
        inner = self._inner.copy()
        for part in parts:
            inner.update(part)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class Sealer:
    """Seals and unseals one authenticated connection's messages, in order."""

    def __init__(self, out_key: bytes, out_rc4: Any, in_key: bytes, in_rc4: Any) -> None:
        self._out_mac, self._out = _HmacMd5(out_key), out_rc4
        self._in_mac, self._in = _HmacMd5(in_key), in_rc4
        self._out_seq = self._in_seq = 0

    @classmethod
    def take(cls, context: Any) -> Sealer | None:
        """The sealer of an NTLM context that has sealed nothing yet; None when its layout or
        flags are not the ones this module implements."""
        try:
            flags = int(context._context_attr)
            keys = (context._sign_key_out, context._sign_key_in)
            streams = (context._handle_out._handle, context._handle_in._handle)
        except (AttributeError, TypeError, ValueError):
            return None
        if flags & _REQUIRED != _REQUIRED or not all(isinstance(k, bytes) for k in keys):
            return None
        if not all(callable(getattr(s, "update", None)) for s in streams):
            return None
        return cls(keys[0], streams[0], keys[1], streams[1])

    def seal(self, message: bytes) -> bytes:
        """The 16-byte signature followed by the sealed message."""
        sealed = self._out.update(message)
        seq = struct.pack("<I", self._out_seq)
        self._out_seq += 1
        checksum = self._out.update(self._out_mac.digest(seq, message)[:8])
        return _VERSION + bytes(checksum) + seq + bytes(sealed)

    def unseal(self, signed: bytes) -> bytes:
        """The message of a 16-byte signature followed by the sealed message (`SealError`)."""
        signature, sealed = signed[:16], signed[16:]
        message = self._in.update(sealed)
        seq = struct.pack("<I", self._in_seq)
        self._in_seq += 1
        checksum = self._in.update(self._in_mac.digest(seq, message)[:8])
        if not hmac.compare_digest(_VERSION + checksum + seq, signature):
            raise SealError("the signature does not match")
        return bytes(message)
