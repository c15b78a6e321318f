"""NTLM sealing (`agent.connectors.wsman.ntlmseal`) against pyspnego, on either side.

The sealer seals for the fast client (taken from pyspnego's initiator) and for the lab (taken
from pyspnego's acceptor). pyspnego, on the other side, is the oracle: what the sealer seals, it
unwraps and verifies; what it wraps, the sealer unseals; a changed byte or a message out of
sequence is refused.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import pytest
import spnego

from agent.connectors.wsman.ntlmseal import Sealer, SealError, _HmacMd5
from agent.lab.auth import USER_FILE_ENV

PASSWORD = "Pass-word-1"
MESSAGES = [b"<s:Envelope/>", b"x" * 70_000, "café ©".encode(), b""]


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """An authenticated (client, server) pair of pyspnego NTLM contexts."""
    users = tmp_path / "users"
    users.write_text(f"LAB:agent:{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv(USER_FILE_ENV, str(users))
    client = spnego.client("LAB\\agent", PASSWORD, hostname="host", service="HTTP",
                           protocol="ntlm")
    server = spnego.server(protocol="ntlm")
    challenge = server.step(client.step())
    server.step(client.step(challenge))
    assert client.complete and server.complete
    return client, server


@pytest.fixture(params=["client", "server"])
def sealed(request: pytest.FixtureRequest, pair: tuple[Any, Any]) -> tuple[Sealer, Any]:
    """One side's `Sealer` (the fast client's, or the lab's), and pyspnego's context of the
    other side."""
    client, server = pair
    mine, peer = (client, server) if request.param == "client" else (server, client)
    sealer = Sealer.take(mine)
    assert sealer is not None
    return sealer, peer


def test_what_the_sealer_seals_pyspnego_unwraps(sealed: tuple[Sealer, Any]) -> None:
    sealer, peer = sealed
    for message in MESSAGES:
        signed = sealer.seal(message)
        assert signed[16:] != message or not message  # sealed, not sent in clear
        assert peer.unwrap_winrm(signed[:16], signed[16:]) == message


def test_what_pyspnego_wraps_the_sealer_unseals(sealed: tuple[Sealer, Any]) -> None:
    sealer, peer = sealed
    for message in MESSAGES:
        wrapped = peer.wrap_winrm(message)
        assert sealer.unseal(wrapped.header + wrapped.data) == message


@pytest.mark.parametrize("position", [0, 5, 13, 16, 20])
def test_a_changed_byte_is_refused(sealed: tuple[Sealer, Any], position: int) -> None:
    sealer, peer = sealed
    wrapped = peer.wrap_winrm(b"<s:Envelope>the facts</s:Envelope>")
    signed = bytearray(wrapped.header + wrapped.data)
    signed[position] ^= 0x01
    with pytest.raises(SealError):
        sealer.unseal(bytes(signed))


def test_a_message_out_of_sequence_is_refused(sealed: tuple[Sealer, Any]) -> None:
    sealer, peer = sealed
    first, second = peer.wrap_winrm(b"one"), peer.wrap_winrm(b"two")
    with pytest.raises(SealError):
        sealer.unseal(second.header + second.data)
    del first


def test_an_unknown_context_gives_no_sealer() -> None:
    class Other:
        _context_attr = 0x00000010 | 0x00000020  # no extended session security, no key exchange
        _sign_key_out = _sign_key_in = b"k" * 16

    assert Sealer.take(object()) is None
    assert Sealer.take(Other()) is None


@pytest.mark.parametrize("key_length", [0, 16, 63, 64, 65, 200])
def test_the_sealers_hmac_is_rfc_2104_hmac_md5(key_length: int) -> None:
    key = bytes(range(key_length % 256))[:key_length].ljust(key_length, b"k")
    mac = _HmacMd5(key)
    for parts in ((), (b"",), (b"\x00\x00\x00\x00", b"message"), (b"x" * 1000, b"y" * 3)):
        assert mac.digest(*parts) == hmac.digest(key, b"".join(parts), "md5")
