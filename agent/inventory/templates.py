"""Jinja templates in inventory values: the one lookup we support, and masked secrets.

The agent evaluates no templates. The single exception is ``{{ lookup('env', 'NAME') }}``
(also ``ansible.builtin.env``, either quote style, any spacing) for passwords, which becomes a
`Secret` read from the environment when the connection is made. Everything else that Ansible
would template (``{{``, ``{%``, ``{#``) or decrypt (``!vault``) is reported where the agent reads
the value, and kept untouched where it does not.
"""

from __future__ import annotations

import os
import re
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


class Secret:
    """A password the inventory refers to; it never shows its value.

    ``str()`` and ``repr()`` give ``env:NAME`` or ``<inline secret>``; only `reveal` returns the
    value. Instances are immutable and compare by source and name (or value, for inline ones).
    """

    __slots__ = ("_env_name", "_value")
    _env_name: str | None
    _value: str | None

    def __init__(self, *, env_name: str | None = None, value: str | None = None) -> None:
        if (env_name is None) == (value is None):
            raise ValueError("a Secret needs exactly one of env_name and value")
        object.__setattr__(self, "_env_name", env_name)
        object.__setattr__(self, "_value", value)

    @classmethod
    def from_env(cls, name: str) -> Secret:
        """A secret read from environment variable `name` when revealed."""
        return cls(env_name=name)

    @classmethod
    def inline(cls, value: str) -> Secret:
        """A secret written in the inventory itself."""
        return cls(value=value)

    @property
    def source(self) -> Literal["env", "inline"]:
        """Where the value comes from: ``"env"`` or ``"inline"``."""
        return "env" if self._env_name is not None else "inline"

    @property
    def env_name(self) -> str | None:
        """The environment variable name, for env secrets."""
        return self._env_name

    def is_available(self) -> bool:
        """Whether `reveal` would succeed now."""
        return self._env_name is None or self._env_name in os.environ

    def reveal(self) -> str:
        """The value; `InputError` naming the variable when an env secret is unset."""
        if self._value is not None:
            return self._value
        name = self._env_name or ""
        value = os.environ.get(name)
        if value is None:
            raise InputError(
                Problem("<environment>", f"environment variable {name} is not set", key=name)
            )
        return value

    def __str__(self) -> str:
        return f"env:{self._env_name}" if self._env_name is not None else "<inline secret>"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return (self._env_name, self._value) == (other._env_name, other._value)

    def __hash__(self) -> int:
        return hash((Secret, self._env_name, self._value))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Secret is immutable")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_secret, (self._env_name, self._value))


def _rebuild_secret(env_name: str | None, value: str | None) -> Secret:
    return Secret(env_name=env_name, value=value)
