"""The fast client's NTLM initiator (`agent.connectors.wsman.ntlm`) held to pyspnego's.

pyspnego's initiator is what pywinrm signs in with against Windows, so it defines the truth here:
given the same random numbers (client challenge, session key), the same version field and the
same workstation name, both must send byte-identical NEGOTIATE and AUTHENTICATE messages for
every CHALLENGE the module takes — the lab's, pyspnego's acceptor's and any Windows-shaped one
Hypothesis makes up. Whatever else arrives, the module declines with `Unsupported` (the session
then signs in with pyspnego) or, for bytes that are no CHALLENGE at all, `Malformed`, and never
answers differently. What it sends, pyspnego's acceptor and the lab's accept with the same
session key, and both sides seal to each other.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Callable
from typing import Any

import pytest
import spnego
import spnego._ntlm_raw.messages as messages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spnego._ntlm_raw.crypto import ntowfv1
from spnego.channel_bindings import GssChannelBindings
from test_lab_ntlm import ACCOUNT, user_file  # noqa: F401 - the lab account and its fixture

from agent.connectors.wsman import ntlm
from agent.lab import ntlm as lab_ntlm

HOST = "adfs01.corp.example"
TLS_DATA = b"tls-server-end-point:" + bytes(range(32))
WORKSTATION = "SCANNER01"
#: Flags a CHALLENGE may carry on top of what the module requires.
OPTIONAL_FLAGS = [ntlm.OEM, ntlm.REQUEST_TARGET, ntlm.NTLM, ntlm.ALWAYS_SIGN,
                  ntlm.TARGET_TYPE_DOMAIN, ntlm.KEY_56, 0x00020000, 0x00400000]
REQUIRED_FLAGS = (ntlm.UNICODE | ntlm.EXTENDED_SESSION_SECURITY | ntlm.TARGET_INFO
                  | ntlm.VERSION | ntlm.KEY_128 | ntlm.KEY_EXCH | ntlm.SIGN | ntlm.SEAL)


def _randoms(seed: int) -> Callable[[int], bytes]:
    """A reproducible stand-in for ``os.urandom``."""
    counter = itertools.count(seed)
    return lambda n: bytes((next(counter) * 37 + i) % 256 for i in range(n))


@pytest.fixture(autouse=True)
def same_workstation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ntlm.WORKSTATION_ENV, WORKSTATION)
    monkeypatch.delenv(ntlm.COMPAT_ENV, raising=False)


def _pyspnego(user: str, password: str, challenge: bytes, bindings: bytes | None,
              seed: int, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes, Any]:
    """pyspnego's NEGOTIATE and AUTHENTICATE for `challenge`, with the module's version field
    and `_randoms(seed)` for its random numbers."""
    version = messages.Version.unpack(ntlm.VERSION_FIELD)
    with monkeypatch.context() as patch:
        patch.setattr(messages.Version, "get_current", staticmethod(lambda: version))
        patch.setattr(os, "urandom", _randoms(seed))
        cb = GssChannelBindings(application_data=bindings) if bindings is not None else None
        client = spnego.client(user, password, hostname=HOST, service="HTTP", protocol="ntlm",
                               channel_bindings=cb)
        negotiate = client.step()
        authenticate = client.step(challenge)
    return negotiate, authenticate, client


def _ours(user: str, password: str, challenge: bytes, bindings: bytes | None,
          seed: int) -> tuple[bytes, bytes, ntlm.Initiator]:
    initiator = ntlm.Initiator(ntlm.Credential.of(user, password), spn=f"HTTP/{HOST}",
                               bindings=bindings, random=_randoms(seed))
    negotiate = initiator.negotiate()
    return negotiate, initiator.authenticate(challenge), initiator


def _challenge(flags: int, pairs: list[tuple[int, bytes]], *, target: bytes = b"L\x00A\x00B\x00",
               server_challenge: bytes = b"\x11" * 8) -> bytes:
    info = b"".join(struct.pack("<HH", i, len(v)) + v for i, v in pairs) + b"\x00" * 4
    return b"".join((
        ntlm.SIGNATURE, struct.pack("<I", 2), struct.pack("<HHI", len(target), len(target), 56),
        struct.pack("<I", flags), server_challenge, b"\x00" * 8,
        struct.pack("<HHI", len(info), len(info), 56 + len(target)),
        struct.pack("<BBH3xB", 10, 0, 17763, 15), target, info,
    ))


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


WINDOWS_PAIRS = [
    (ntlm.AV_NB_DOMAIN, _utf16("CORP")), (ntlm.AV_NB_COMPUTER, _utf16("ADFS01")),
    (ntlm.AV_DNS_DOMAIN, _utf16("corp.example")),
    (ntlm.AV_DNS_COMPUTER, _utf16("adfs01.corp.example")),
    (ntlm.AV_DNS_TREE, _utf16("corp.example")),
    (ntlm.AV_TIMESTAMP, struct.pack("<Q", 134_000_000_000_000_000)),
]
#: What Windows Server 2019 answers pyspnego's NEGOTIATE with.
WINDOWS_FLAGS = 0xE28A8235


@pytest.mark.parametrize("user", ["LAB\\José", "corp\\José", "josé@lab.example", "agent",
                                  "\\agent"])
@pytest.mark.parametrize("bindings", [None, TLS_DATA])
def test_a_windows_challenge_gets_pyspnegos_bytes(user: str, bindings: bytes | None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    challenge = _challenge(WINDOWS_FLAGS, WINDOWS_PAIRS)
    theirs = _pyspnego(user, ACCOUNT.password, challenge, bindings, 7, monkeypatch)
    ours = _ours(user, ACCOUNT.password, challenge, bindings, 7)
    assert ours[:2] == theirs[:2]
    assert ours[2].sealer().seal(b"x" * 300) == bytes(theirs[2].wrap(b"x" * 300).data)


@pytest.mark.usefixtures("user_file")
@pytest.mark.parametrize("source", ["lab", "pyspnego"])
def test_the_labs_and_pyspnegos_challenges_get_pyspnegos_bytes(
        source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    negotiate = ntlm.Initiator(ntlm.Credential.of(ACCOUNT.user, ACCOUNT.password),
                               spn=f"HTTP/{HOST}").negotiate()
    challenge = (lab_ntlm.challenge_message(negotiate, computer="HOST", domain="LAB")
                 if source == "lab" else spnego.server(protocol="ntlm").step(negotiate))
    assert challenge is not None
    theirs = _pyspnego(ACCOUNT.user, ACCOUNT.password, challenge, TLS_DATA, 5, monkeypatch)
    assert _ours(ACCOUNT.user, ACCOUNT.password, challenge, TLS_DATA, 5)[:2] == theirs[:2]


def test_the_workstation_is_the_host_name_without_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ntlm.WORKSTATION_ENV)
    challenge = _challenge(WINDOWS_FLAGS, WINDOWS_PAIRS)
    theirs = _pyspnego(ACCOUNT.user, ACCOUNT.password, challenge, None, 3, monkeypatch)
    assert _ours(ACCOUNT.user, ACCOUNT.password, challenge, None, 3)[:2] == theirs[:2]


def test_a_hash_password_is_the_hash() -> None:
    hashed = "0" * 32 + ":" + ntowfv1(ACCOUNT.password).hex()
    assert ntlm.nt_hash(hashed) == ntlm.nt_hash(ACCOUNT.password)
    # Anything more (pyspnego fails on the newline) is a password like any other.
    assert ntlm.nt_hash(hashed + "\n") == ntlm.md4((hashed + "\n").encode("utf-16-le"))


@settings(max_examples=200, deadline=None)
@given(password=st.text(max_size=200))
def test_the_nt_hash_is_pyspnegos(password: str) -> None:
    assert ntlm.nt_hash(password) == ntowfv1(password)


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).map(_utf16)
_pair = st.one_of(
    st.tuples(st.sampled_from([ntlm.AV_NB_COMPUTER, ntlm.AV_NB_DOMAIN, ntlm.AV_DNS_COMPUTER,
                               ntlm.AV_DNS_DOMAIN, ntlm.AV_DNS_TREE]), _text),
    st.tuples(st.just(ntlm.AV_FLAGS), st.integers(0, 2**32 - 1).map(lambda v:
                                                                     struct.pack("<I", v))),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=st.lists(st.sampled_from(OPTIONAL_FLAGS), unique=True),
       pairs=st.lists(_pair, max_size=6, unique_by=lambda p: p[0]),
       stamp=st.integers(0, 2_650_467_743_999_999_999), at=st.integers(0, 6),
       server_challenge=st.binary(min_size=8, max_size=8), seed=st.integers(0, 10**6),
       bindings=st.sampled_from([None, TLS_DATA]))
def test_every_windows_shaped_challenge_gets_pyspnegos_bytes(
        extra: list[int], pairs: list[tuple[int, bytes]], stamp: int, at: int,
        server_challenge: bytes, seed: int, bindings: bytes | None) -> None:
    flags = REQUIRED_FLAGS
    for flag in extra:
        flags |= flag
    pairs.insert(min(at, len(pairs)), (ntlm.AV_TIMESTAMP, struct.pack("<Q", stamp)))
    challenge = _challenge(flags, pairs, server_challenge=server_challenge)
    with pytest.MonkeyPatch.context() as monkeypatch:
        theirs = _pyspnego(ACCOUNT.user, ACCOUNT.password, challenge, bindings, seed,
                           monkeypatch)
    assert _ours(ACCOUNT.user, ACCOUNT.password, challenge, bindings, seed)[:2] == theirs[:2]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_other_challenge_is_declined_or_answered_as_pyspnego_does(data: st.DataObject) -> None:
    message = bytearray(_challenge(WINDOWS_FLAGS, WINDOWS_PAIRS))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["byte", "cut", "append"]))
        if kind == "byte" and message:
            message[data.draw(st.integers(0, len(message) - 1))] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del message[data.draw(st.integers(0, len(message))):]
        else:
            message += data.draw(st.binary(max_size=12))
    challenge = bytes(message)
    try:
        ours = _ours(ACCOUNT.user, ACCOUNT.password, challenge, None, 1)
    except (ntlm.Unsupported, ntlm.Malformed):
        return
    with pytest.MonkeyPatch.context() as monkeypatch:
        theirs = _pyspnego(ACCOUNT.user, ACCOUNT.password, challenge, None, 1, monkeypatch)
    assert ours[:2] == theirs[:2]


@pytest.mark.parametrize(("why", "challenge"), [
    ("no timestamp", _challenge(WINDOWS_FLAGS, WINDOWS_PAIRS[:-1])),
    ("no key exchange", _challenge(WINDOWS_FLAGS & ~ntlm.KEY_EXCH, WINDOWS_PAIRS)),
    ("no extended session security",
     _challenge(WINDOWS_FLAGS & ~ntlm.EXTENDED_SESSION_SECURITY, WINDOWS_PAIRS)),
    ("OEM strings", _challenge(WINDOWS_FLAGS & ~ntlm.UNICODE | ntlm.OEM, WINDOWS_PAIRS)),
    ("a target name pair", _challenge(WINDOWS_FLAGS, [(ntlm.AV_TARGET_NAME, _utf16("x")),
                                                      *WINDOWS_PAIRS])),
    ("a pair twice", _challenge(WINDOWS_FLAGS, [*WINDOWS_PAIRS, WINDOWS_PAIRS[0]])),
    ("a lone surrogate", _challenge(WINDOWS_FLAGS, [(ntlm.AV_NB_DOMAIN, b"\x00\xd8"),
                                                    *WINDOWS_PAIRS[1:]])),
    ("a timestamp past 9999", _challenge(WINDOWS_FLAGS, [
        *WINDOWS_PAIRS[:-1], (ntlm.AV_TIMESTAMP, struct.pack("<Q", 2_650_467_744_000_000_000))])),
    ("target information over the version", _challenge(WINDOWS_FLAGS, WINDOWS_PAIRS)[:44]
     + struct.pack("<I", 40) + _challenge(WINDOWS_FLAGS, WINDOWS_PAIRS)[48:]),
])
def test_what_windows_does_not_send_is_declined(why: str, challenge: bytes) -> None:
    initiator = ntlm.Initiator(ntlm.Credential.of(ACCOUNT.user, ACCOUNT.password), spn="HTTP/h")
    initiator.negotiate()
    with pytest.raises(ntlm.Unsupported):
        initiator.authenticate(challenge)


@pytest.mark.parametrize(("why", "challenge"), [
    ("a negotiate message", ntlm.Initiator(ntlm.Credential.of("u", "p"), spn="HTTP/h")
     .negotiate()),
    ("another signature", b"NTLMSSQ\x00" + _challenge(WINDOWS_FLAGS, WINDOWS_PAIRS)[8:]),
    ("too short", _challenge(WINDOWS_FLAGS, WINDOWS_PAIRS)[:47]),
    ("target information past the end", _challenge(WINDOWS_FLAGS, WINDOWS_PAIRS)[:-1]),
    ("text", b"<html>Sign in</html>"),
])
def test_what_is_no_challenge_is_malformed(why: str, challenge: bytes) -> None:
    """No second sign-in for a host that sends garbage: the session reports it at once."""
    initiator = ntlm.Initiator(ntlm.Credential.of(ACCOUNT.user, ACCOUNT.password), spn="HTTP/h")
    initiator.negotiate()
    with pytest.raises(ntlm.Malformed):
        initiator.authenticate(challenge)


def test_out_of_order_calls_raise() -> None:
    initiator = ntlm.Initiator(ntlm.Credential.of(ACCOUNT.user, ACCOUNT.password), spn="HTTP/h")
    with pytest.raises(RuntimeError):
        initiator.authenticate(_challenge(WINDOWS_FLAGS, WINDOWS_PAIRS))
    with pytest.raises(RuntimeError):
        initiator.sealer()


def test_the_credential_does_not_show_its_hash() -> None:
    credential = ntlm.Credential.of(ACCOUNT.user, ACCOUNT.password)
    assert credential.nt_hash.hex() not in repr(credential)
    assert repr(credential.nt_hash) not in repr(credential)


@pytest.mark.parametrize(("level", "takes"), [(None, True), ("3", True), ("5", True),
                                              ("2", False), ("0", False), ("x", False)])
def test_weaker_compatibility_levels_are_left_to_pyspnego(
        level: str | None, takes: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if level is not None:
        monkeypatch.setenv(ntlm.COMPAT_ENV, level)
    assert ntlm.takes_environment() is takes


@pytest.mark.usefixtures("user_file")
@pytest.mark.parametrize("bindings", [None, TLS_DATA])
def test_pyspnegos_acceptor_takes_it_and_both_seal(bindings: bytes | None) -> None:
    server = spnego.server(protocol="ntlm", channel_bindings=(
        GssChannelBindings(application_data=bindings) if bindings is not None else None))
    client = ntlm.Initiator(ntlm.Credential.of(ACCOUNT.user, ACCOUNT.password),
                            spn="HTTP/host", bindings=bindings)
    server.step(client.authenticate(server.step(client.negotiate())))
    assert server.complete
    sealer = client.sealer()
    for message in (b"<s:Envelope/>", b"y" * 70_000):
        signed = sealer.seal(message)
        assert server.unwrap_winrm(signed[:16], signed[16:]) == message
        wrapped = server.wrap_winrm(message)
        assert sealer.unseal(wrapped.header + wrapped.data) == message


@pytest.mark.usefixtures("user_file")
def test_pyspnegos_acceptor_refuses_a_wrong_password() -> None:
    server = spnego.server(protocol="ntlm")
    client = ntlm.Initiator(ntlm.Credential.of(ACCOUNT.user, "wrong"), spn="HTTP/host")
    with pytest.raises(spnego.exceptions.SpnegoError):
        server.step(client.authenticate(server.step(client.negotiate())))


@pytest.mark.parametrize(("client_bindings", "accepted"), [
    (TLS_DATA, True), (None, True), (b"tls-server-end-point:" + b"\x00" * 32, False)])
def test_the_labs_acceptor_checks_its_bindings(client_bindings: bytes | None,
                                               accepted: bool) -> None:
    credential = lab_ntlm.Credential("LAB", "José", ntlm.nt_hash(ACCOUNT.password))
    acceptor = lab_ntlm.NtlmAcceptor(credential, computer="HOST",
                                     bindings=ntlm.bindings_hash(TLS_DATA))
    client = ntlm.Initiator(ntlm.Credential.of(ACCOUNT.user, ACCOUNT.password),
                            spn="HTTP/host", bindings=client_bindings)
    challenge = acceptor.step(client.negotiate())
    assert challenge is not None
    if not accepted:
        with pytest.raises(lab_ntlm.NtlmError, match="channel bindings"):
            acceptor.step(client.authenticate(challenge))
        return
    acceptor.step(client.authenticate(challenge))
    assert acceptor.accepted is not None
    assert acceptor.accepted.bindings_verified is (client_bindings is not None)
    server = acceptor.accepted.sealer()
    assert server is not None
    assert server.unseal(client.sealer().seal(b"hello")) == b"hello"


def test_the_bindings_hash_is_pyspnegos() -> None:
    from hashlib import md5
    packed = GssChannelBindings(application_data=TLS_DATA).pack()
    assert ntlm.bindings_hash(TLS_DATA) == md5(packed).digest()  # noqa: S324
