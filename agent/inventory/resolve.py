"""Templates and vault values in the variables the agent reads, resolved as Ansible would.

Only a small, fixed part of Jinja is understood, and it is parsed, never evaluated as code:
``{{ name }}`` (another variable, after precedence, resolved lazily in the host's context;
``inventory_hostname`` and ``inventory_hostname_short`` too), ``{{ x | default('v') }}`` (also
``d``, with a literal or a variable, and ``true`` as second argument), ``{{ lookup('env',
'NAME') }}`` and ``{{ lookup('file', 'path') }}``, text around them, and string, number and
boolean literals. Anything else (``{%``, other filters, arithmetic, attribute access) is an
error naming the expression. ``!vault`` values are decrypted; in a password they become vault
`Secret`s, elsewhere their text. Cycles between variables are reported with their path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agent.errors import Problem
from agent.inventory.parse import VarDef
from agent.inventory.templates import Secret, env_lookup_name, is_template
from agent.inventory.vault import VAULT_OPTIONS, NoPassword, VaultFormatError, VaultKeys
from agent.inventory.vault import WrongPassword as WrongVaultPassword
from agent.inventory.yamlload import Tagged, UnsafeText, YamlMap, YamlSeq, line_of
from agent.safeio import UnreadableFile, read_regular_file

SUPPORTED: Final = (
    "{{ var }}, {{ var | default('x') }}, {{ lookup('env', 'NAME') }}, "
    "{{ lookup('file', 'path') }}"
)
_MAX_FILE_LOOKUP: Final = 1024 * 1024
_TOKEN: Final = re.compile(
    r"""\s*(?:(?P<string>'[^'\\]*'|"[^"\\]*")|(?P<number>-?[0-9]+)|"""
    r"""(?P<name>[A-Za-z_][A-Za-z0-9_.]*)|(?P<punct>[|(),]))"""
)
_BLOCK: Final = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


class Unresolvable(Exception):
    """A value cannot be resolved; its problem is already recorded."""


class _Undefined:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def contains_vault(value: Any) -> bool:
    """Whether `value` holds a ``!vault`` value anywhere."""
    if isinstance(value, Tagged):
        return value.tag == "!vault"
    if isinstance(value, dict):
        return any(contains_vault(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_vault(v) for v in value)
    return False


def needs_resolving(value: Any, secret_path: Callable[[tuple[str | int, ...]], bool]) -> bool:
    """Whether `value` holds a template or vault value (an env lookup in a password is not)."""

    def walk(item: Any, path: tuple[str | int, ...]) -> bool:
        if isinstance(item, Tagged):
            return item.tag == "!vault"
        if isinstance(item, str):
            if not is_template(item):
                return False
            return not (secret_path(path) and env_lookup_name(item) is not None)
        if isinstance(item, dict):
            return any(walk(v, (*path, str(k))) for k, v in item.items())
        if isinstance(item, list):
            return any(walk(v, (*path, i)) for i, v in enumerate(item))
        return False

    return walk(value, ())


@dataclass
class Resolver:
    """Resolves definitions in the context of one host (or of the ``all`` group)."""

    keys: VaultKeys
    #: The winning definition of a variable by name, in this context.
    lookup: Callable[[str], VarDef | None]
    problems: list[Problem]
    host: str | None = None
    _stack: list[str] = field(default_factory=list)
    #: What the last `resolve` depended on: each variable looked up and the definition found,
    #: and whether it used the host's name. Equal dependencies give an equal result.
    depends: list[tuple[str, VarDef | None]] = field(default_factory=list)
    used_host: bool = False

    def resolve(
        self, definition: VarDef, secret_path: Callable[[tuple[str | int, ...]], bool]
    ) -> Any:
        """The definition's value with templates and vaults resolved; `Unresolvable` if not."""
        self.depends = []
        self.used_host = False
        self._stack.append(definition.key)
        try:
            return self._walk(definition, definition.value, (), secret_path)
        finally:
            self._stack.pop()

    def fail(self, definition: VarDef, message: str, line: int | None = None) -> Unresolvable:
        where = definition.location
        self.problems.append(
            Problem(where.file, message, line or where.line, definition.key)
        )
        return Unresolvable(message)

    def _walk(
        self,
        definition: VarDef,
        value: Any,
        path: tuple[str | int, ...],
        secret_path: Callable[[tuple[str | int, ...]], bool],
        line: int | None = None,
    ) -> Any:
        if isinstance(value, Tagged) and value.tag == "!vault":
            text = str(value.content or "")
            if secret_path(path) and self.keys.defer and not self.keys:
                return Secret.from_vault(text)  # decrypted by the worker that reads the host
            plain = self.decrypt(definition, text, line)
            return Secret.from_vault(text, plain) if secret_path(path) else plain
        if isinstance(value, str) and not isinstance(value, UnsafeText) and is_template(value):
            return self.template(definition, value, secret_path(path), line)
        if isinstance(value, str) and definition.vault is not None and secret_path(path):
            return Secret.from_vault_file(definition.vault, value)
        if isinstance(value, dict):
            result = YamlMap(getattr(value, "line", None))
            for key, item in value.items():
                sub = line_of(value, key)
                result[key] = self._walk(definition, item, (*path, str(key)), secret_path, sub)
                result.key_lines[key] = sub
            return result
        if isinstance(value, list):
            seq = YamlSeq(getattr(value, "line", None))
            for index, item in enumerate(value):
                sub = line_of(value, index)
                seq.append(self._walk(definition, item, (*path, index), secret_path, sub))
                seq.item_lines.append(sub)
            return seq
        return value

    def decrypt(self, definition: VarDef, text: str, line: int | None = None) -> str:
        """The plaintext of a ``!vault`` value of `definition`."""
        try:
            return self.keys.decrypt(text).decode("utf-8", errors="replace")
        except NoPassword:
            raise self.fail(
                definition,
                f"{definition.key} is vault-encrypted and no vault password was given: "
                f"use {VAULT_OPTIONS}",
                line,
            ) from None
        except WrongVaultPassword:
            raise self.fail(
                definition,
                f"no vault password given decrypts this !vault value of {definition.key} "
                "(wrong vault password?)",
                line,
            ) from None
        except VaultFormatError as exc:
            raise self.fail(definition, f"invalid !vault value: {exc}", line) from None

    # -- templates ---------------------------------------------------------------------

    def template(self, definition: VarDef, text: str, secret: bool, line: int | None) -> Any:
        shown = _shown(text, secret)
        for marker in ("{%", "{#"):
            if marker in text:
                raise self.fail(
                    definition,
                    f"{shown}: Jinja statements and comments are not evaluated here; "
                    f"supported: {SUPPORTED}",
                    line,
                )
        parts: list[Any] = []
        position = 0
        for block in _BLOCK.finditer(text):
            if block.start() > position:
                parts.append(text[position : block.start()])
            parts.append(self.expression(definition, block.group(1), secret, line))
            position = block.end()
        if position < len(text):
            parts.append(text[position:])
        if "{{" in "".join(p for p in parts if isinstance(p, str)):
            raise self.fail(definition, f"{shown}: unclosed '{{{{'", line)
        if len(parts) == 1:
            return parts[0]
        if any(isinstance(p, Secret) for p in parts):
            raise self.fail(
                definition,
                f"{shown}: a secret (vault or environment) cannot be joined with "
                "other text here",
                line,
            )
        return "".join(_as_text(p) for p in parts)

    def expression(self, definition: VarDef, source: str, secret: bool, line: int | None) -> Any:
        tokens = _tokens(source)
        shown = _shown("{{" + source + "}}", secret)
        if tokens is None:
            raise self._unsupported(definition, shown, line)
        parser = _Expr(tokens)
        try:
            tree = parser.parse()
        except ValueError:
            raise self._unsupported(definition, shown, line) from None
        value = self.evaluate(definition, tree, shown, secret, line)
        if isinstance(value, _Undefined):
            raise self.fail(
                definition,
                f"{shown}: variable '{value.name}' is not defined"
                + (f" for host {self.host}" if self.host else " for the 'all' group"),
                line,
            )
        return value

    def _unsupported(self, definition: VarDef, shown: str, line: int | None) -> Unresolvable:
        return self.fail(
            definition,
            f"{shown} is not a template mfa-agent resolves (it never "
            f"evaluates code); supported: {SUPPORTED}",
            line,
        )

    def evaluate(
        self, definition: VarDef, node: tuple[Any, ...], source: str, secret: bool, line: int | None
    ) -> Any:
        kind = node[0]
        if kind == "literal":
            return node[1]
        if kind == "name":
            return self.variable(definition, node[1], secret, line)
        if kind == "lookup":
            return self.lookup_plugin(definition, node[1], node[2], source, secret, line)
        # default filter
        base = self.evaluate(definition, node[1], source, secret, line)
        fallback_node, falsy = node[2], node[3]
        if isinstance(base, _Undefined) or (falsy and not base):
            return self.evaluate(definition, fallback_node, source, secret, line)
        return base

    def variable(self, definition: VarDef, name: str, secret: bool, line: int | None) -> Any:
        if name == "inventory_hostname" and self.host is not None:
            self.used_host = True
            return self.host
        if name == "inventory_hostname_short" and self.host is not None:
            self.used_host = True
            return self.host.split(".")[0]
        if name in self._stack:
            cycle = " -> ".join([*self._stack[self._stack.index(name) :], name])
            raise self.fail(definition, f"templates refer to each other in a cycle: {cycle}", line)
        target = self.lookup(name)
        self.depends.append((name, target))
        if target is None:
            return _Undefined(name)
        self._stack.append(name)
        try:
            return self._walk(target, target.value, (), lambda path: secret and not path)
        finally:
            self._stack.pop()

    def lookup_plugin(
        self,
        definition: VarDef,
        plugin: str,
        term: str,
        source: str,
        secret: bool,
        line: int | None,
    ) -> Any:
        if plugin == "env":
            if secret:
                return Secret.from_env(term)
            return os.environ.get(term, "")
        try:
            data = read_regular_file(Path(term).expanduser(), _MAX_FILE_LOOKUP)
        except UnreadableFile as exc:
            raise self.fail(definition, f"{source}: {term}: {exc.reason}", line) from None
        text = data.decode("utf-8", errors="replace").rstrip()
        return Secret.inline(text) if secret else text


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "None"
    return str(value)


def _shown(text: str, secret: bool) -> str:
    """The template as quoted in a message; a password's is never shown."""
    return "the template (not shown: it is a password)" if secret else f"'{_short(text)}'"


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= 80 else text[:77] + "..."


def _tokens(source: str) -> list[tuple[str, str]] | None:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(source):
        if source[position:].strip() == "":
            break
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            return None
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Expr:
    """Parses ``primary ('|' default(...))*`` from tokens into a small tuple tree."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, kind: str, text: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (text is not None and token[1] != text):
            raise ValueError("unexpected token")
        self.index += 1
        return token[1]

    def parse(self) -> tuple[Any, ...]:
        node = self.primary()
        while self.peek() == ("punct", "|"):
            self.take("punct", "|")
            name = self.take("name")
            if name not in ("default", "d", "ansible.builtin.default"):
                raise ValueError("unsupported filter")
            fallback: tuple[Any, ...] = ("literal", "")
            falsy = False
            if self.peek() == ("punct", "("):
                self.take("punct", "(")
                if self.peek() != ("punct", ")"):
                    fallback = self.primary()
                    if self.peek() == ("punct", ","):
                        self.take("punct", ",")
                        flag = self.primary()
                        if flag[0] != "literal" or not isinstance(flag[1], bool):
                            raise ValueError("default's second argument is a boolean")
                        falsy = flag[1]
                self.take("punct", ")")
            node = ("default", node, fallback, falsy)
        if self.peek() is not None:
            raise ValueError("trailing tokens")
        return node

    def primary(self) -> tuple[Any, ...]:
        token = self.peek()
        if token is None:
            raise ValueError("empty expression")
        kind, text = token
        if kind == "string":
            self.index += 1
            return ("literal", text[1:-1])
        if kind == "number":
            self.index += 1
            return ("literal", int(text))
        if kind == "name":
            self.index += 1
            if text in ("true", "True", "false", "False"):
                return ("literal", text.lower() == "true")
            if text in ("lookup", "ansible.builtin.lookup") and self.peek() == ("punct", "("):
                return self.lookup()
            if "." in text or self.peek() == ("punct", "("):
                raise ValueError("attribute access and calls are not supported")
            return ("name", text)
        raise ValueError("unexpected token")

    def lookup(self) -> tuple[Any, ...]:
        self.take("punct", "(")
        plugin = self.take("string")[1:-1].removeprefix("ansible.builtin.")
        if plugin not in ("env", "file"):
            raise ValueError("unsupported lookup")
        self.take("punct", ",")
        term = self.take("string")[1:-1]
        self.take("punct", ")")
        return ("lookup", plugin, term)
