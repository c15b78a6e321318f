"""The lab's NTLM acceptor (`agent.lab.ntlm`) held to pyspnego's.

Each case runs a real handshake between pyspnego's initiator and pyspnego's acceptor, then replays
the same three messages through `verify`: both must accept or both refuse, and on acceptance both
must hold the same session key and seal alike. A handshake with the lab's own CHALLENGE must
complete for pyspnego's initiator and seal in both directions. Whatever bytes arrive, the acceptor
refuses with `NtlmError` and nothing else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import spnego
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spnego.channel_bindings import GssChannelBindings

from agent.connectors.wsman.ntlm import bindings_hash
from agent.connectors.wsman.ntlmseal import Sealer
from agent.lab.auth import USER_FILE_ENV, Account, UserFile
from agent.lab.ntlm import (
    Credential,
    NtlmAcceptor,
    NtlmError,
    challenge_message,
    verify,
)

ACCOUNT = Account("LAB\\José", "Pass-wörd-1")
CERT_HASH = bytes(range(32))
TLS_DATA = b"tls-server-end-point:" + CERT_HASH


@pytest.fixture
def user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserFile]:
    """The lab account's file, named by ``NTLM_USER_FILE`` for pyspnego's acceptor."""
    users = UserFile(tmp_path / "users", ACCOUNT)
    monkeypatch.setenv(USER_FILE_ENV, str(users.path))
    yield users
    users.remove()


@dataclass
class Handshake:
    """One pyspnego-to-pyspnego logon: its three messages and pyspnego's verdict."""

    negotiate: bytes
    challenge: bytes
    authenticate: bytes
    server: Any
    refused: Exception | None


def _client(user: str, password: str, bindings: bytes | None = None) -> Any:
    cb = GssChannelBindings(application_data=bindings) if bindings is not None else None
    return spnego.client(user, password, hostname="host", service="HTTP", protocol="ntlm",
                         channel_bindings=cb)


def _handshake(user: str, password: str, *, client_bindings: bytes | None = None,
               server_bindings: bytes | None = None, tamper: int | None = None,
               monkeypatch: pytest.MonkeyPatch | None = None,
               client_level: int | None = None) -> Handshake:
    if client_level is not None and monkeypatch is not None:
        monkeypatch.setenv("LM_COMPAT_LEVEL", str(client_level))
    client = _client(user, password, client_bindings)
    if monkeypatch is not None:
        # The acceptor as strict as the lab's: NTLMv2 only.
        monkeypatch.setenv("LM_COMPAT_LEVEL", "5")
    server = spnego.server(protocol="ntlm")
    negotiate = client.step()
    challenge = server.step(negotiate)
    authenticate = bytearray(client.step(challenge))
    if tamper is not None:
        authenticate[tamper] ^= 0x01
    cb = (GssChannelBindings(application_data=server_bindings)
          if server_bindings is not None else None)
    refused: Exception | None = None
    try:
        server.step(bytes(authenticate), channel_bindings=cb)
    except Exception as exc:  # pyspnego's verdict, whatever its class
        refused = exc
    return Handshake(negotiate, challenge, bytes(authenticate), server, refused)


def _replay(credential: Credential, shake: Handshake, bindings: bytes | None = None) -> Any:
    """`verify` on the handshake's messages: the `Accepted`, or the `NtlmError` it raised."""
    try:
        return verify(credential, shake.negotiate, shake.challenge, shake.authenticate, bindings)
    except NtlmError as exc:
        return exc


def _assert_same_keys(accepted: Any, server: Any) -> None:
    assert accepted.session_key == server.session_key
    mine, theirs = accepted.sealer(), Sealer.take(server)
    assert mine is not None and theirs is not None
    for message in (b"<s:Envelope/>", b"x" * 5000):
        assert mine.seal(message) == theirs.seal(message)


@pytest.mark.parametrize(("user", "password"), [
    ("LAB\\José", "Pass-wörd-1"),
    ("José", "Pass-wörd-1"),            # no domain: the host's own
    ("lab\\JOSÉ", "Pass-wörd-1"),       # names are case-insensitive
])
def test_the_account_is_accepted_with_pyspnegos_keys(user_file: UserFile, user: str,
                                                     password: str) -> None:
    shake = _handshake(user, password)
    assert shake.refused is None
    accepted = _replay(user_file.credential, shake)
    assert not isinstance(accepted, NtlmError)
    _assert_same_keys(accepted, shake.server)
    assert not accepted.bindings_verified


@pytest.mark.parametrize(("user", "password", "why"), [
    ("LAB\\José", "Pass-wörd-2", "wrong password"),
    ("OTHER\\José", "Pass-wörd-1", "unknown account"),
    ("LAB\\Josef", "Pass-wörd-1", "unknown account"),
])
def test_other_accounts_and_passwords_are_refused(user_file: UserFile, user: str,
                                                  password: str, why: str) -> None:
    shake = _handshake(user, password)
    assert shake.refused is not None
    refused = _replay(user_file.credential, shake)
    assert isinstance(refused, NtlmError)
    assert why in str(refused)


def _offsets(authenticate: bytes) -> dict[str, int]:
    """Where a byte of each part of an AUTHENTICATE message sits."""
    nt_length, _, nt_start = struct.unpack_from("<HHI", authenticate, 20)
    key_length, _, key_start = struct.unpack_from("<HHI", authenticate, 52)
    assert nt_length > 48 and key_length == 16
    return {
        "NTProofStr": nt_start + 3,
        "client blob timestamp": nt_start + 16 + 9,
        "client challenge": nt_start + 16 + 17,
        "MIC": 72 + 5,
        "encrypted session key": key_start + 2,
        "flags": 61,
    }


@pytest.mark.parametrize("part", ["NTProofStr", "client blob timestamp", "client challenge",
                                  "MIC", "encrypted session key", "flags"])
def test_a_changed_byte_is_refused_by_both(user_file: UserFile, part: str) -> None:
    template = _handshake(ACCOUNT.user, ACCOUNT.password)
    shake = _handshake(ACCOUNT.user, ACCOUNT.password,
                       tamper=_offsets(template.authenticate)[part])
    assert shake.refused is not None
    assert isinstance(_replay(user_file.credential, shake), NtlmError)


def test_channel_bindings_relaxed(user_file: UserFile) -> None:
    expected = bindings_hash(TLS_DATA)
    right = _handshake(ACCOUNT.user, ACCOUNT.password, client_bindings=TLS_DATA,
                       server_bindings=TLS_DATA)
    assert right.refused is None
    accepted = _replay(user_file.credential, right, expected)
    assert not isinstance(accepted, NtlmError) and accepted.bindings_verified
    _assert_same_keys(accepted, right.server)

    other = b"tls-server-end-point:" + bytes(32)
    wrong = _handshake(ACCOUNT.user, ACCOUNT.password, client_bindings=other,
                       server_bindings=TLS_DATA)
    assert wrong.refused is not None
    assert "channel bindings" in str(_replay(user_file.credential, wrong, expected))

    # None sent: pyspnego calls that a mismatch, Windows' Relaxed level (and the lab) accepts;
    # the oracle for the keys is then pyspnego without bindings.
    none = _handshake(ACCOUNT.user, ACCOUNT.password)
    accepted = _replay(user_file.credential, none, expected)
    assert not isinstance(accepted, NtlmError) and not accepted.bindings_verified
    _assert_same_keys(accepted, none.server)


def test_ntlmv1_and_lm_are_refused_by_both(user_file: UserFile,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for level, why in ((1, "NTLMv1"), (2, "NTLMv1")):
        shake = _handshake(ACCOUNT.user, ACCOUNT.password, monkeypatch=monkeypatch,
                           client_level=level)
        assert shake.refused is not None
        assert why in str(_replay(user_file.credential, shake))


def test_a_client_without_ntlmv2_session_security_gets_no_challenge(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LM_COMPAT_LEVEL", "0")
    negotiate = _client(ACCOUNT.user, ACCOUNT.password).step()
    with pytest.raises(NtlmError, match="NTLMv2 session security"):
        challenge_message(negotiate, computer="HOST", domain="LAB")


@pytest.mark.parametrize("bindings", [None, TLS_DATA])
def test_the_labs_own_challenge_completes_and_seals_both_ways(user_file: UserFile,
                                                              bindings: bytes | None) -> None:
    acceptor = NtlmAcceptor(user_file.credential, computer="ADFS01",
                            bindings=bindings_hash(TLS_DATA))
    client = _client(ACCOUNT.user, ACCOUNT.password, bindings)
    challenge = acceptor.step(client.step())
    assert challenge is not None
    assert acceptor.step(client.step(challenge)) is None
    assert client.complete and acceptor.accepted is not None
    assert acceptor.accepted.bindings_verified is (bindings is not None)
    assert acceptor.accepted.session_key == client.session_key
    sealer = acceptor.accepted.sealer()
    assert sealer is not None
    sealed = sealer.seal(b"<s:Envelope>reply</s:Envelope>")
    assert client.unwrap_winrm(sealed[:16], sealed[16:]) == b"<s:Envelope>reply</s:Envelope>"
    wrapped = client.wrap_winrm(b"<s:Envelope>request</s:Envelope>")
    assert sealer.unseal(wrapped.header + wrapped.data) == b"<s:Envelope>request</s:Envelope>"
    with pytest.raises(NtlmError, match="already complete"):
        acceptor.step(b"NTLMSSP\x00")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Credential, bytes, bytes, bytes]:
    """One valid logon's three messages, and the account, for the hostile-bytes tests."""
    users = UserFile(tmp_path_factory.mktemp("ntlm") / "users", ACCOUNT)
    try:
        acceptor = NtlmAcceptor(users.credential, computer="HOST")
        client = _client(ACCOUNT.user, ACCOUNT.password)
        negotiate = client.step()
        challenge = acceptor.step(negotiate)
        assert challenge is not None
        authenticate = client.step(challenge)
        verify(users.credential, negotiate, challenge, authenticate)
        return users.credential, negotiate, challenge, authenticate
    finally:
        users.remove()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_bytes_are_refused_with_ntlm_error_only(
        recorded: tuple[Credential, bytes, bytes, bytes], data: st.DataObject) -> None:
    credential, negotiate, challenge, authenticate = recorded
    message = bytearray(authenticate)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(message) - 1))
        message[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message)))
    forged = bytes(message[:cut])
    try:
        verify(credential, negotiate, challenge, forged)
    except NtlmError:
        pass
    else:  # the MIC covers every byte of the message: only the message itself passes
        assert forged == authenticate


@pytest.mark.parametrize("length", [0, 8, 15, 16, 40, 63, 64, 71, 87, 88, 120])
def test_truncated_messages_are_refused(recorded: tuple[Credential, bytes, bytes, bytes],
                                        length: int) -> None:
    credential, negotiate, challenge, authenticate = recorded
    with pytest.raises(NtlmError):
        verify(credential, negotiate, challenge, authenticate[:length])
    with pytest.raises(NtlmError):
        verify(credential, negotiate, challenge[:length // 4], authenticate)
    if length < 16:
        with pytest.raises(NtlmError, match="not an NTLM NEGOTIATE"):
            challenge_message(negotiate[:length], computer="HOST", domain="LAB")
