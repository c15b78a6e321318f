"""Ansible Vault: the passwords the user gives, and decryption of the documented format.

The envelope is ``$ANSIBLE_VAULT;1.1;AES256`` (or ``1.2;AES256;<label>``) followed by lines of
hex; unhexlified they are three lines of hex: salt, HMAC and ciphertext. The keys come from
PBKDF2-HMAC-SHA256 (10,000 iterations, 80 bytes: AES key, HMAC key, CTR counter block); the HMAC
(SHA-256 over the ciphertext) is checked in constant time before AES-256-CTR decryption and
PKCS#7 unpadding. Written from the format's documentation; ansible-core is never imported.

Passwords come from ``--vault-password-file`` (or ``ANSIBLE_VAULT_PASSWORD_FILE``; an executable
file is run and its output used), ``--ask-vault-pass`` and ``--vault-id [label@]SOURCE``. As in
Ansible, passwords whose label matches the envelope's are tried first, then every other.
"""

from __future__ import annotations

import binascii
import hmac
import os
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from agent.errors import InputError, Problem
from agent.safeio import UnreadableFile, read_regular_file

HEADER: Final = "$ANSIBLE_VAULT"
DEFAULT_LABEL: Final = "default"
#: How to give a vault password, for messages.
VAULT_OPTIONS: Final = (
    "--vault-password-file FILE (or ANSIBLE_VAULT_PASSWORD_FILE), --ask-vault-pass "
    "or --vault-id LABEL@FILE"
)
_ITERATIONS: Final = 10_000
_MAX_PASSWORD_FILE: Final = 64 * 1024
_SCRIPT_TIMEOUT: Final = 60.0


class VaultFormatError(ValueError):
    """Text that claims to be a vault but does not follow the format."""


class WrongPassword(Exception):
    """No vault password given opens this vault."""


class NoPassword(Exception):
    """A vault must be opened but no vault password was given."""


def is_vault_text(text: str | bytes) -> bool:
    """Whether `text` starts with a vault envelope header."""
    start = text.lstrip()[: len(HEADER)]
    return (start.decode("ascii", "replace") if isinstance(start, bytes) else start) == HEADER


@dataclass(frozen=True)
class Envelope:
    """A parsed vault: its label (None for 1.1) and the three binary parts."""

    label: str | None
    salt: bytes
    mac: bytes
    ciphertext: bytes


def parse_envelope(text: str) -> Envelope:
    """Split vault `text` into its parts; `VaultFormatError` says what is wrong."""
    lines = text.strip().splitlines()
    if not lines:
        raise VaultFormatError("empty vault")
    header = lines[0].strip().split(";")
    if header[0] != HEADER or len(header) < 3:
        raise VaultFormatError("not an $ANSIBLE_VAULT header")
    version, cipher = header[1].strip(), header[2].strip()
    if version not in ("1.1", "1.2"):
        raise VaultFormatError(f"vault format version {version[:10]} is not supported")
    if cipher != "AES256":
        raise VaultFormatError(f"vault cipher {cipher[:20]} is not supported (only AES256)")
    label = header[3].strip() if version == "1.2" and len(header) > 3 else None
    try:
        body = binascii.unhexlify("".join(line.strip() for line in lines[1:]))
        parts = body.split(b"\n")
        if len(parts) != 3:
            raise VaultFormatError("the vault body does not hold salt, HMAC and ciphertext")
        salt, mac, ciphertext = (binascii.unhexlify(part) for part in parts)
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, VaultFormatError):
            raise
        raise VaultFormatError("the vault body is not valid hex") from None
    return Envelope(label, salt, mac, ciphertext)


def _keys(password: bytes, salt: bytes) -> tuple[bytes, bytes, bytes]:
    derived = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=80, salt=salt, iterations=_ITERATIONS
    ).derive(password)
    return derived[:32], derived[32:64], derived[64:]


def _open(envelope: Envelope, password: bytes) -> bytes | None:
    """The plaintext, or None when the HMAC shows the password is wrong."""
    key, mac_key, counter = _keys(password, envelope.salt)
    signer = hmac.new(mac_key, envelope.ciphertext, "sha256")
    if not hmac.compare_digest(signer.digest(), envelope.mac):
        return None
    decryptor = Cipher(algorithms.AES(key), modes.CTR(counter)).decryptor()
    padded = decryptor.update(envelope.ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise VaultFormatError("the decrypted vault has invalid padding") from None


@dataclass(frozen=True)
class VaultPassword:
    """One vault password and its label; its value never shows."""

    label: str
    value: bytes = field(repr=False)


@dataclass
class VaultKeys:
    """Every vault password given, in order; decrypts vaults (results cached per text)."""

    passwords: list[VaultPassword] = field(default_factory=list)
    #: Without a password, leave ``!vault`` secrets encrypted instead of refusing them (a scan
    #: whose workers hold the vault password: `agent.distributed`).
    defer: bool = False
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return bool(self.passwords)

    def decrypt(self, text: str) -> bytes:
        """Decrypt vault `text`: `NoPassword`, `WrongPassword` or `VaultFormatError` if not."""
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        envelope = parse_envelope(text)
        if not self.passwords:
            raise NoPassword
        matching = [p for p in self.passwords if p.label == envelope.label]
        others = [p for p in self.passwords if p.label != envelope.label]
        for password in matching + others:
            plain = _open(envelope, password.value)
            if plain is not None:
                self._cache[text] = plain
                return plain
        raise WrongPassword


class VaultFileError(Exception):
    """A wholly vault-encrypted file that cannot be opened; the message completes "FILE …"."""


def decrypt_file(keys: VaultKeys, text: str) -> str:
    """The plaintext of a wholly vault-encrypted file, or `VaultFileError` saying why not."""
    try:
        return keys.decrypt(text).decode("utf-8")
    except NoPassword:
        message = f"is vault-encrypted and no vault password was given: use {VAULT_OPTIONS}"
    except WrongPassword:
        message = "is vault-encrypted and no vault password given decrypts it"
    except VaultFormatError as exc:
        message = f"is not a valid vault file: {exc}"
    except UnicodeDecodeError:
        message = "decrypts to text that is not UTF-8"
    raise VaultFileError(message)


def _password_problem(where: str, message: str) -> InputError:
    return InputError(Problem(where, message, key="vault password"))


def read_password_source(path: Path, label: str = DEFAULT_LABEL) -> VaultPassword:
    """The password in file `path`, or printed by it when it is executable."""
    where = str(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise _password_problem(where, f"cannot read vault password file: {exc.strerror}") from None
    if stat.S_ISREG(mode) and mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        value = _run_script(path)
    else:
        try:
            value = read_regular_file(path, _MAX_PASSWORD_FILE).strip()
        except UnreadableFile as exc:
            raise _password_problem(where, f"vault password file {exc.reason}") from None
    if not value:
        raise _password_problem(where, "the vault password is empty")
    return VaultPassword(label, value)


def _run_script(path: Path) -> bytes:
    where = str(path)
    try:
        done = subprocess.run(
            [str(path.resolve())],
            capture_output=True,
            timeout=_SCRIPT_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = "timed out" if isinstance(exc, subprocess.TimeoutExpired) else exc.strerror
        raise _password_problem(where, f"vault password script failed: {reason}") from None
    if done.returncode != 0:
        raise _password_problem(
            where, f"vault password script exited with code {done.returncode}"
        )
    return done.stdout[:_MAX_PASSWORD_FILE].strip(b"\r\n")


def parse_vault_id(text: str) -> tuple[str, str]:
    """``label@source`` → (label, source); a bare source has the label ``default``."""
    label, at, source = text.partition("@")
    if not at:
        return DEFAULT_LABEL, text
    return label or DEFAULT_LABEL, source


def collect_passwords(
    password_files: Sequence[str],
    vault_ids: Sequence[str],
    ask: bool,
    prompt: Callable[[str], str] | None,
) -> VaultKeys:
    """Every vault password the options give, in the order Ansible tries them."""
    keys = VaultKeys()
    for text in vault_ids:
        label, source = parse_vault_id(text)
        if source == "prompt":
            keys.passwords.append(_prompted(label, prompt))
        else:
            keys.passwords.append(read_password_source(Path(source).expanduser(), label))
    files = list(password_files)
    if not files and not vault_ids and os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE"):
        files.append(os.environ["ANSIBLE_VAULT_PASSWORD_FILE"])
    for name in files:
        keys.passwords.append(read_password_source(Path(name).expanduser()))
    if ask:
        keys.passwords.append(_prompted(DEFAULT_LABEL, prompt))
    return keys


def _prompted(label: str, prompt: Callable[[str], str] | None) -> VaultPassword:
    if prompt is None:
        raise _password_problem(
            "<arguments>", "--ask-vault-pass needs a terminal; use --vault-password-file FILE"
        )
    value = prompt("Vault password" + ("" if label == DEFAULT_LABEL else f" ({label})") + ": ")
    if not value:
        raise _password_problem("<terminal>", "the vault password is empty")
    return VaultPassword(label, value.encode())
