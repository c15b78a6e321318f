"""``group_vars/`` and ``host_vars/`` beside the inventory file, found as Ansible finds them.

For a name, Ansible's ``host_group_vars`` plugin tries ``<name>``, ``<name>.yml``,
``<name>.yaml`` and ``<name>.json`` in that order and uses only the first that exists; a
directory is read recursively, files in sorted order, hidden files and ``~`` backups skipped,
later files replacing earlier keys. Names that could escape the directory are never looked up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from agent.errors import Problem
from agent.inventory.model import Location
from agent.inventory.parse import VarDef, Vars
from agent.inventory.vault import (
    VaultFileError,
    VaultKeys,
    decrypt_file,
    is_vault_text,
)
from agent.inventory.yamlload import Parsed, SourceFile, YamlMap, parse_source_text, read_source

EXTENSIONS: Final = ("", ".yml", ".yaml", ".json")
_MAX_DIR_DEPTH: Final = 16


@dataclass
class VarsFiles:
    """The variables read from one of ``group_vars``/``host_vars``, per group or host name."""

    layers: dict[str, Vars] = field(default_factory=dict)
    #: Every definition read, including those a later file in the same directory replaced.
    definitions: list[VarDef] = field(default_factory=list)
    sources: list[SourceFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def layer(self, name: str) -> Vars:
        """The merged variables for `name` (empty when it has no file)."""
        return self.layers.get(name, {})


def _safe_name(name: str) -> bool:
    separators = {"/", "\\", os.sep, "\0"}
    return bool(name) and name not in (".", "..") and not separators.intersection(name)


def _skipped(entry: str) -> bool:
    return entry.startswith(".") or entry.endswith("~")


class _Reader:
    def __init__(self, base: Path, keys: VaultKeys) -> None:
        self.base = base
        self.keys = keys
        self.result = VarsFiles()

    def problem(self, path: Path, message: str) -> None:
        self.result.problems.append(Problem(str(path), message))

    def candidates(self, name: str) -> list[Path]:
        found = [self.base / f"{name}{ext}" for ext in EXTENSIONS]
        return [path for path in found if os.path.lexists(path)]

    def files(self, path: Path, depth: int, seen: set[str]) -> list[Path]:
        """`path` itself, or the vars files of directory `path` in Ansible's order."""
        if not path.is_dir():
            return [path]
        real = os.path.realpath(path)
        if depth > _MAX_DIR_DEPTH or real in seen:
            self.problem(path, "directory nesting too deep or looping (symbolic links?)")
            return []
        seen.add(real)
        try:
            entries = sorted(os.listdir(path))
        except OSError as exc:
            self.problem(path, f"cannot read directory: {exc.strerror or type(exc).__name__}")
            return []
        result: list[Path] = []
        for entry in entries:
            if _skipped(entry):
                continue
            child = path / entry
            ext = os.path.splitext(entry)[1]
            if child.is_dir() and not ext:
                result.extend(self.files(child, depth + 1, seen))
            elif not ext or ext in EXTENSIONS:
                result.append(child)
        return result

    def load(self, name: str, owner: str, group: str | None) -> None:
        if not _safe_name(name):
            return
        found = self.candidates(name)
        if not found:
            return
        for shadowed in found[1:]:
            self.result.warnings.append(
                f"{shadowed} is ignored because {found[0]} exists (Ansible reads only the first)"
            )
        merged: Vars = {}
        for path in self.files(found[0], 0, set()):
            merged.update(self.read(path, owner, group))
        self.result.layers[name] = merged

    def parse(self, source: SourceFile) -> str | None:
        """Parse `source` into `source.parsed`, decrypting a vault file; its envelope or None."""
        path, text = source.path, source.text
        if text is None:
            return None
        if not is_vault_text(text):
            source.parsed = parse_source_text(text, path)
            return None
        try:
            plain = decrypt_file(self.keys, text)
        except VaultFileError as exc:
            source.parsed = Parsed(None, [Problem(str(path), str(exc))])
            return None
        source.parsed = parse_source_text(plain, path)
        return text

    def read(self, path: Path, owner: str, group: str | None) -> Vars:
        source = read_source(path)
        envelope = self.parse(source)
        self.result.sources.append(source)
        self.result.problems.extend(source.parsed.problems)
        data, file = source.parsed.value, str(path)
        if data is None:
            return {}
        if not isinstance(data, YamlMap):
            self.problem(path, "a vars file must be a mapping of variable names to values")
            return {}
        result: Vars = {}
        for key, value in data.items():
            line = data.line_of(key)
            if not isinstance(key, str):
                self.result.problems.append(
                    Problem(file, f"{owner}: variable names must be strings", line, str(key))
                )
                continue
            result[key] = VarDef(key, value, Location(file, line), owner, group, False, envelope)
        self.result.definitions.extend(result.values())
        return result

    def warn_unmatched(self, names: set[str], what: str) -> None:
        try:
            entries = sorted(os.listdir(self.base))
        except OSError:
            return
        for entry in entries:
            stem = os.path.splitext(entry)[0]
            if not _skipped(entry) and stem not in names and entry not in names:
                self.result.warnings.append(
                    f"{self.base / entry} matches no {what} in the inventory and is ignored"
                )


def read_vars_dir(
    base: Path,
    kind: str,
    names: dict[str, tuple[str, str | None]],
    keys: VaultKeys | None = None,
) -> VarsFiles:
    """Read ``base`` (a group_vars or host_vars directory) for every name in `names`.

    `names` maps each group or host name to its owner label and group (None for hosts).
    Vault-encrypted files are decrypted with `keys`.
    """
    reader = _Reader(base, keys if keys is not None else VaultKeys())
    if not os.path.lexists(base):
        return reader.result
    if not base.is_dir():
        reader.result.warnings.append(f"{base} is not a directory and is ignored")
        return reader.result
    for name, (owner, group) in names.items():
        reader.load(name, owner, group)
    reader.warn_unmatched(set(names), "group" if kind == "group_vars" else "host")
    return reader.result
