"""Inventory sources: ``-i`` files and directories, each read in the format its content has.

As Ansible: a directory stands for every inventory file in it (sorted, recursively; hidden
entries, ``group_vars``, ``host_vars`` and Ansible's ignored extensions skipped), and its
group_vars/host_vars are those of the directory itself; a file's are those beside it. The
format is chosen by content as Ansible's plugins try them: a ``.yml``/``.yaml``/``.json`` file or
one without extension that parses as a YAML mapping is YAML, or Ansible's JSON inventory (the
``ansible-inventory --list`` output, ``_meta.hostvars``); anything else is INI. All sources
are merged into one `Tree`, later sources replacing earlier definitions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from agent.errors import Problem
from agent.inventory.ini import parse_ini
from agent.inventory.jsonlist import is_list_output, parse_list_output
from agent.inventory.parse import Tree, parse_tree
from agent.inventory.vault import (
    VaultFileError,
    VaultKeys,
    decrypt_file,
    is_vault_text,
)
from agent.inventory.yamlload import SourceFile, YamlMap, parse_source_text, read_file

#: Ansible's INVENTORY_IGNORE_EXTS (REJECT_EXTS + .orig, .cfg, .retry) and always-ignored names.
_IGNORED: Final = re.compile(
    r"^\.|^host_vars$|^group_vars$|^vars_plugins$|"
    r"(\.pyc|\.pyo|\.swp|\.bak|~|\.rpm|\.md|\.txt|\.rst|\.orig|\.cfg|\.retry)$"
)
_YAML_EXTENSIONS: Final = ("", ".yml", ".yaml", ".json")
_MAX_DIR_DEPTH: Final = 16


@dataclass
class Sources:
    """Every inventory file read, in order, and the directories whose vars files apply."""

    files: list[SourceFile] = field(default_factory=list)
    #: Where group_vars/ and host_vars/ are looked up, in order (later wins).
    bases: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: The format each file was read as, by path.
    formats: dict[str, str] = field(default_factory=dict)


def _inventory_files(path: Path, sources: Sources, depth: int = 0) -> list[Path]:
    if not path.is_dir():
        return [path]
    if depth > _MAX_DIR_DEPTH:
        sources.problems.append(Problem(str(path), "inventory directories nested too deep"))
        return []
    try:
        entries = sorted(os.listdir(path))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        sources.problems.append(Problem(str(path), f"cannot read directory: {reason}"))
        return []
    result: list[Path] = []
    for entry in entries:
        if not _IGNORED.search(entry):
            result.extend(_inventory_files(path / entry, sources, depth + 1))
    return result


def read_sources(paths: list[Path], tree: Tree, keys: VaultKeys | None = None) -> Sources:
    """Read every source in `paths` into `tree`; what was read, and vars-file bases.

    A vault-encrypted inventory file is decrypted with `keys`, as Ansible does.
    """
    sources = Sources()
    keys = keys if keys is not None else VaultKeys()
    for path in paths:
        if not os.path.lexists(path):
            missing = "cannot read: no such inventory file or directory"
            sources.problems.append(Problem(str(path), missing))
            continue
        base = path if path.is_dir() else path.parent
        files = _inventory_files(path, sources)
        if path.is_dir() and not files:
            sources.problems.append(Problem(str(path), "the directory holds no inventory file"))
        for file in files:
            _read_one(file, tree, sources, keys)
        if base in sources.bases:
            sources.bases.remove(base)  # applying it again later is the same as applying it last
        sources.bases.append(base)
    return sources


def _read_one(path: Path, tree: Tree, sources: Sources, keys: VaultKeys) -> None:
    source = read_file(path, parse=False)
    sources.files.append(source)
    if source.text is None:
        sources.problems.extend(source.parsed.problems)
        return
    file = str(path)
    if is_vault_text(source.text):
        text = _decrypt(path, source.text, keys, sources)
        if text is None:
            return
        source.text = text
    if path.suffix.lower() in _YAML_EXTENSIONS:
        parsed = parse_source_text(source.text, path)
        source.parsed = parsed
        if isinstance(parsed.value, YamlMap) or (
            path.suffix.lower() in (".yml", ".yaml", ".json") and parsed.value is not None
        ):
            if is_list_output(parsed.value):
                sources.formats[file] = "json"
                parse_list_output(parsed.value, file, tree)
            else:
                sources.formats[file] = "yaml"
                tree.problems.extend(parsed.problems)
                parse_tree(parsed.value, file, tree)
            return
        if path.suffix.lower() in (".yml", ".yaml", ".json"):
            sources.formats[file] = "yaml"
            tree.problems.extend(parsed.problems)
            if not parsed.problems:
                parse_tree(parsed.value, file, tree)
            return
    sources.formats[file] = "ini"
    parse_ini(source.text, file, tree)


def _decrypt(path: Path, text: str, keys: VaultKeys, sources: Sources) -> str | None:
    try:
        return decrypt_file(keys, text)
    except VaultFileError as exc:
        sources.problems.append(Problem(str(path), str(exc)))
        return None
