"""Line-aware, bounded, safe YAML loading for inventory and vars files.

PyYAML composes the document (with a depth limit, so no input reaches `RecursionError`); this
module then builds the Python values itself, which lets it

* remember the 1-based line of every mapping key and sequence item (`YamlMap`, `YamlSeq`),
* report duplicate keys, non-scalar keys, recursive aliases and alias bombs as `Problem`s,
* keep Ansible's ``!vault`` and any other unknown tag as an opaque `Tagged` value instead of
  failing, and ``!unsafe`` strings as `UnsafeText` (never treated as a template).

Error messages never quote the document: PyYAML's own messages embed a snippet of the offending
line, which could be a password, so only its problem/context phrases are kept.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agent.errors import Problem
from agent.safeio import UnreadableFile, read_regular_file

#: Deepest nesting accepted, counting every mapping and sequence level.
MAX_DEPTH: Final = 64
#: Most values one document may produce once aliases are expanded (alias bombs stop here).
MAX_VALUES: Final = 200_000
#: Largest file read, in bytes.
MAX_FILE_BYTES: Final = 8 * 1024 * 1024

_STD: Final = "tag:yaml.org,2002:"
_SCALAR_TAGS: Final = frozenset(
    _STD + t for t in ("null", "bool", "int", "float", "binary", "timestamp", "str")
)
_MAP_TAGS: Final = frozenset({_STD + "map", _STD + "set"})
_SEQ_TAGS: Final = frozenset({_STD + "seq", _STD + "omap", _STD + "pairs"})
_MERGE_TAG: Final = _STD + "merge"


class YamlMap(dict[Any, Any]):
    """A mapping read from YAML that remembers the line of each of its keys."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int | None] = {}

    def line_of(self, key: Any) -> int | None:
        """The 1-based line of `key`, else of the mapping itself."""
        return self.key_lines.get(key, self.line)


class YamlSeq(list[Any]):
    """A sequence read from YAML that remembers the line of each item."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int | None] = []

    def line_of(self, index: int) -> int | None:
        """The 1-based line of item `index`, else of the sequence itself."""
        if 0 <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


class UnsafeText(str):
    """A string tagged ``!unsafe``: Ansible never templates it, so neither do we."""

    __slots__ = ()


@dataclass(frozen=True)
class Tagged:
    """A value with a tag the agent does not interpret (Ansible's ``!vault``, custom tags).

    Its content is kept for equality only and never shown.
    """

    tag: str
    content: Hashable = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"<{self.tag} value>"

    __str__ = __repr__


def line_of(value: Any, key: Any) -> int | None:
    """The line of `key` (a mapping key or sequence index) inside `value`, when known."""
    if isinstance(value, YamlMap | YamlSeq):
        return value.line_of(key)
    return None


def kind_of(value: Any) -> str:
    """A reader-friendly name of a value's type (never the value itself)."""
    if value is None:
        return "empty (null)"
    if isinstance(value, Tagged):
        return f"a {value.tag}-tagged value"
    names: tuple[tuple[type, str], ...] = (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (Mapping, "a mapping"),
        (list, "a list"),
    )
    for kind, name in names:
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__} value"


@dataclass
class Parsed:
    """What parsing one file produced: its value (None when empty or unusable) and problems."""

    value: Any = None
    problems: list[Problem] = field(default_factory=list)


class _TooDeep(Exception):
    def __init__(self, line: int | None) -> None:
        self.line = line


class _Abort(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _DepthComposer(yaml.composer.Composer):
    """PyYAML's composer, refusing nesting deeper than `MAX_DEPTH`."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[attr-defined]
                raise _TooDeep(_mark_line(event.start_mark))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _BoundedLoader(_DepthComposer, yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than `MAX_DEPTH` (pure Python)."""


#: libyaml's loader where PyYAML was built with it (its wheels are), else the pure-Python one.
_C_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _FastLoader(_DepthComposer, _C_LOADER):  # type: ignore[misc]
    """The same composer over libyaml's scanner and parser (C), where PyYAML has them: ten
    times faster on a large inventory. Its error messages are libyaml's, so a document it
    refuses is parsed again by `_BoundedLoader`, whose messages the tests and docs know."""

    def __init__(self, stream: str) -> None:
        _C_LOADER.__init__(self, stream)
        self.anchors = {}  # Composer's own state: CSafeLoader's constructor does not set it


def _mark_line(mark: yaml.Mark | None) -> int | None:
    return None if mark is None else mark.line + 1


def _short(key: Any) -> str:
    text = repr(key) if not isinstance(key, str) else key
    return text if len(text) <= 80 else text[:77] + "..."


class _Builder:
    """Turns a composed node tree into `YamlMap`/`YamlSeq`/scalars, collecting problems."""

    def __init__(self, file: str, loader: Any) -> None:
        self.file = file
        self.loader = loader
        self.problems: list[Problem] = []
        self._budget = MAX_VALUES
        self._active: set[int] = set()

    def problem(self, message: str, line: int | None, key: str | None = None) -> None:
        self.problems.append(Problem(self.file, message, line, key))

    def build(self, node: Node, depth: int = 0) -> Any:
        line = _mark_line(node.start_mark)
        self._budget -= 1
        if self._budget < 0:
            raise _Abort(Problem(self.file, "document too large once aliases are expanded", line))
        if depth > MAX_DEPTH:
            raise _Abort(Problem(self.file, f"nested deeper than {MAX_DEPTH} levels", line))
        if isinstance(node, ScalarNode):
            return self._scalar(node, line)
        if id(node) in self._active:
            raise _Abort(Problem(self.file, "recursive YAML alias (a node contains itself)", line))
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, line, depth)
            if isinstance(node, SequenceNode):
                return self._sequence(node, line, depth)
            return Tagged(node.tag)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: ScalarNode, line: int | None) -> Any:
        tag = node.tag
        if tag == "!unsafe":
            return UnsafeText(node.value)
        if tag not in _SCALAR_TAGS:
            return Tagged(tag, str(node.value))
        try:
            return self.loader.construct_object(node)
        except Exception:  # any construction failure is one input problem
            # The library message may quote the value, so it is not passed on.
            self.problem(f"value is not a valid {tag.removeprefix(_STD)}", line)
            return None

    def _sequence(self, node: SequenceNode, line: int | None, depth: int) -> Any:
        if node.tag not in _SEQ_TAGS:
            return Tagged(node.tag)
        seq = YamlSeq(line)
        for item in node.value:
            seq.append(self.build(item, depth + 1))
            seq.item_lines.append(_mark_line(item.start_mark))
        return seq

    def _mapping(self, node: MappingNode, line: int | None, depth: int) -> Any:
        if node.tag not in _MAP_TAGS:
            return Tagged(node.tag)
        result = YamlMap(line)
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            self._add_entry(result, key_node, value_node, depth)
        for merge in merges:
            self._merge(result, merge, depth)
        return result

    def _add_entry(self, result: YamlMap, key_node: Node, value_node: Node, depth: int) -> None:
        key_line = _mark_line(key_node.start_mark)
        if not isinstance(key_node, ScalarNode):
            self.problem("mapping keys must be plain scalars, not collections", key_line)
            return
        key = self._scalar(key_node, key_line)
        if key in result:
            first = result.key_lines.get(key)
            self.problem(f"duplicate key (first defined on line {first})", key_line, _short(key))
            return
        result[key] = self.build(value_node, depth + 1)
        result.key_lines[key] = key_line

    def _merge(self, result: YamlMap, merge: Node, depth: int) -> None:
        """Apply a ``<<`` merge key: explicit keys win, then earlier merged mappings win."""
        line = _mark_line(merge.start_mark)
        sources = merge.value if isinstance(merge, SequenceNode) else [merge]
        for source in sources:
            merged = self.build(source, depth + 1)
            if not isinstance(merged, YamlMap):
                self.problem("a '<<' merge key needs a mapping or a list of mappings", line, "<<")
                continue
            for key, value in merged.items():
                if key not in result:
                    result[key] = value
                    result.key_lines[key] = merged.key_lines.get(key)


def parse_text(text: str, file: str) -> Parsed:
    """Parse one YAML document; syntax errors and structural problems become `Problem`s."""
    if _C_LOADER is not yaml.SafeLoader:
        fast = _FastLoader(text)
        try:
            parsed: Parsed | None = _parse(fast, text, file)
        except yaml.YAMLError:  # named below, by the pure-Python loader
            parsed = None
        finally:
            fast.dispose()
        if parsed is not None and not parsed.problems:
            return parsed
    try:
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as exc:  # the reader checks every character up front
        return Parsed(None, [_reader_problem(exc, text, file)])
    try:
        return _parse(loader, text, file)
    finally:
        loader.dispose()


def _parse(loader: _DepthComposer, text: str, file: str) -> Parsed:
    try:
        node = loader.get_single_node()
    except _TooDeep as exc:
        return Parsed(None, [Problem(file, f"nested deeper than {MAX_DEPTH} levels", exc.line)])
    except yaml.MarkedYAMLError as exc:
        return Parsed(None, [_syntax_problem(exc, file)])
    except yaml.reader.ReaderError as exc:
        return Parsed(None, [_reader_problem(exc, text, file)])
    except yaml.YAMLError:
        return Parsed(None, [Problem(file, "YAML syntax error")])
    if node is None:
        return Parsed()
    builder = _Builder(file, loader)
    try:
        value = builder.build(node)
    except _Abort as exc:
        return Parsed(None, [*builder.problems, exc.problem])
    return Parsed(value, builder.problems)


def _reader_problem(exc: yaml.reader.ReaderError, text: str, file: str) -> Problem:
    line = text.count("\n", 0, max(exc.position, 0)) + 1
    return Problem(file, f"YAML syntax error: {exc.reason}", line)


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    phrases = [p for p in (exc.context, exc.problem) if p]
    detail = ", ".join(phrases) if phrases else "invalid YAML"
    return Problem(file, f"YAML syntax error: {detail}", _mark_line(mark))


@dataclass
class SourceFile:
    """One file as read from disk: its bytes (for the digest), text and parsed content."""

    path: Path
    data: bytes | None
    parsed: Parsed
    text: str | None = None


def read_source(path: Path) -> SourceFile:
    """Read a file as UTF-8 text (regular files only, bounded); problems in `parsed`."""
    file = str(path)
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
    except UnreadableFile as exc:
        problem = Problem(file, f"cannot read file: {exc.reason}")
        return SourceFile(path, None, Parsed(None, [problem]))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problem = Problem(file, "file is not valid UTF-8 text", line)
        return SourceFile(path, data, Parsed(None, [problem]))
    return SourceFile(path, data, Parsed(), text)


def parse_source_text(text: str, path: Path) -> Parsed:
    """Parse YAML `text` read from `path` (JSON files too)."""
    if path.suffix == ".json":
        text = _json_as_yaml(text)
    return parse_text(text, str(path))


def read_file(path: Path, parse: bool = True) -> SourceFile:
    """Read and (unless `parse` is false) parse a YAML or JSON file; problems in `parsed`."""
    source = read_source(path)
    if parse and source.text is not None:
        source.parsed = parse_source_text(source.text, path)
    return source


def _json_as_yaml(text: str) -> str:
    """Make valid JSON parseable as YAML without moving any line.

    Valid JSON never holds a literal tab inside a string, so every tab is insignificant
    whitespace; YAML, however, rejects tabs where JSON indents with them.
    """
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return text
    return text.replace("\t", " ")
