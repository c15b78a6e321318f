"""Jinja markers in inventory values, the env lookup of passwords, and masked secrets.

``{{ lookup('env', 'NAME') }}`` (also ``ansible.builtin.env``, either quote style, any spacing)
in a password becomes a `Secret` read from the environment when the connection is made. Other
templates are resolved (or refused) by `agent.inventory.resolve`, only in the variables the
agent reads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, Final, Literal

from agent.errors import InputError, Problem
from agent.inventory.yamlload import Tagged, UnsafeText

ENV_LOOKUP_HINT: Final = "{{ lookup('env', 'NAME') }}"

_ENV_LOOKUP: Final = re.compile(
    r"""^\s*\{\{\s*lookup\(\s*(['"])(?:ansible\.builtin\.)?env\1\s*,"""
    r"""\s*(['"])([A-Za-z_][A-Za-z0-9_]*)\2\s*\)\s*\}\}\s*$"""
)
_TEMPLATE_MARKERS: Final = ("{{", "{%", "{#")


def env_lookup_name(value: Any) -> str | None:
    """The variable name when `value` is exactly an env lookup, else None."""
    if not isinstance(value, str) or isinstance(value, UnsafeText):
        return None
    match = _ENV_LOOKUP.match(value)
    return match.group(3) if match else None


def is_template(value: Any) -> bool:
    """Whether Ansible would template `value` (a string holding Jinja markers, not ``!unsafe``)."""
    if not isinstance(value, str) or isinstance(value, UnsafeText):
        return False
    return any(marker in value for marker in _TEMPLATE_MARKERS)


def is_unevaluated(value: Any) -> bool:
    """Whether `value` needs Ansible to evaluate it: a template or a tagged (``!vault``) value."""
    return isinstance(value, Tagged) or is_template(value)


SecretSource = Literal["env", "vault", "inline"]


class Secret:
    """A password the inventory refers to; it never shows its value.

    Three sources: ``env`` (read from an environment variable when revealed), ``vault`` (an
    Ansible Vault value: the ciphertext, and the plaintext once decrypted) and ``inline``
    (written in the inventory). ``str()`` and ``repr()`` give ``env:NAME``, ``<vault secret>``
    or ``<inline secret>``; only `reveal` returns the value. `reference` is what may travel to
    another process in place of the value: the variable name, or the vault ciphertext (never an
    inline value). Instances are immutable and compare by source and reference (or value).
    """

    __slots__ = ("_ciphertext", "_env_name", "_value", "_whole_file")
    _env_name: str | None
    _value: str | None
    _ciphertext: str | None
    _whole_file: bool

    def __init__(
        self,
        *,
        env_name: str | None = None,
        value: str | None = None,
        ciphertext: str | None = None,
    ) -> None:
        if ciphertext is None and (env_name is None) == (value is None):
            raise ValueError("a Secret needs exactly one of env_name and value")
        if ciphertext is not None and env_name is not None:
            raise ValueError("a vault Secret has no env_name")
        object.__setattr__(self, "_env_name", env_name)
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_ciphertext", ciphertext)
        object.__setattr__(self, "_whole_file", False)

    @classmethod
    def from_env(cls, name: str) -> Secret:
        """A secret read from environment variable `name` when revealed."""
        return cls(env_name=name)

    @classmethod
    def inline(cls, value: str) -> Secret:
        """A secret written in the inventory itself."""
        return cls(value=value)

    @classmethod
    def from_vault(cls, ciphertext: str, value: str | None = None) -> Secret:
        """An Ansible Vault secret: its ciphertext, and the plaintext when decrypted here."""
        return cls(ciphertext=ciphertext, value=value)

    @classmethod
    def from_vault_file(cls, ciphertext: str, value: str) -> Secret:
        """A secret read from a wholly vault-encrypted file: `ciphertext` is the whole file's,
        so it has no `reference` (decrypting it elsewhere would give the file, not the value)."""
        secret = cls(ciphertext=ciphertext, value=value)
        object.__setattr__(secret, "_whole_file", True)
        return secret

    @classmethod
    def from_reference(
        cls, reference: str, decrypt: Callable[[str], str] | None = None
    ) -> Secret:
        """The secret a `reference` stands for: ``env:NAME``, or a vault ciphertext (decrypted
        with `decrypt` when given, e.g. with the worker's own vault password)."""
        if reference.startswith("env:") and reference[4:]:
            return cls.from_env(reference[4:])
        if reference.lstrip().startswith("$ANSIBLE_VAULT;"):
            return cls.from_vault(reference, decrypt(reference) if decrypt else None)
        raise ValueError("a secret reference is env:NAME or an $ANSIBLE_VAULT ciphertext")

    @property
    def source(self) -> SecretSource:
        """Where the value comes from: ``"env"``, ``"vault"`` or ``"inline"``."""
        if self._ciphertext is not None:
            return "vault"
        return "env" if self._env_name is not None else "inline"

    @property
    def env_name(self) -> str | None:
        """The environment variable name, for env secrets."""
        return self._env_name

    @property
    def ciphertext(self) -> str | None:
        """The vault envelope (``$ANSIBLE_VAULT;...``), for vault secrets."""
        return self._ciphertext

    def reference(self) -> str | None:
        """What may stand for this secret elsewhere: ``env:NAME``, the vault ciphertext, or
        None for an inline secret (whose only form is its value) and for one from a wholly
        encrypted vars file."""
        if self._whole_file:
            return None
        if self._ciphertext is not None:
            return self._ciphertext
        return f"env:{self._env_name}" if self._env_name is not None else None

    def is_available(self) -> bool:
        """Whether `reveal` would succeed now."""
        if self._env_name is not None:
            return self._env_name in os.environ
        return self._value is not None

    def reveal(self) -> str:
        """The value; `InputError` naming the variable when an env secret is unset."""
        if self._value is not None:
            return self._value
        if self._ciphertext is not None:
            raise InputError(
                Problem("<vault>", "this vault secret was not decrypted here (no vault password)")
            )
        name = self._env_name or ""
        value = os.environ.get(name)
        if value is None:
            raise InputError(
                Problem("<environment>", f"environment variable {name} is not set", key=name)
            )
        return value

    def __str__(self) -> str:
        if self._ciphertext is not None:
            return "<vault secret>"
        return f"env:{self._env_name}" if self._env_name is not None else "<inline secret>"

    __repr__ = __str__

    def _identity(self) -> tuple[str | None, str | None]:
        if self._ciphertext is not None:
            return ("vault", self._ciphertext)
        return (self._env_name, self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash((Secret, *self._identity()))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Secret is immutable")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_secret, (self._env_name, self._value, self._ciphertext))


def _rebuild_secret(
    env_name: str | None, value: str | None, ciphertext: str | None = None
) -> Secret:
    return Secret(env_name=env_name, value=value, ciphertext=ciphertext)
