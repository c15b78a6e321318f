"""The fact scripts are checked by a real PowerShell grammar (tree-sitter-powershell).

Every ``.ps1`` file, and every script as it is sent (prelude + body + epilogue, minified), must
parse without a syntax error; the ``Read-Fact`` names of each script are exactly the facts declared
for it (agent.factscripts.FACTS); nothing newer than PowerShell 4.0/5.1 is used (PowerShell 7's
``?.``, ``??``, ``??=``, ``a ? b : c``, ``&&``, ``||``, ``ForEach-Object -Parallel``; 5.0's
``[T]::new()``); and no script reads input, so nothing from the inventory can reach its source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

from agent.factscripts import FACTS, SCRIPTS, FactScript, by_name

SCRIPT_DIR = Path(resources.files("agent.factscripts"))  # type: ignore[arg-type]
PS1_FILES = sorted(SCRIPT_DIR.glob("*.ps1"))
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))

#: Commands and automatic variables through which a script could read what it is given.
INPUT_READERS = {"read-host", "$args", "$input", "[console]::in", "param("}


@dataclass(frozen=True)
class Finding:
    """Something the parser found: where (1-based line) and what."""

    line: int
    what: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


def _nodes(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        yield from _nodes(child)


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def parse(source: str) -> tree_sitter.Tree:
    """The syntax tree of PowerShell source."""
    return PARSER.parse(source.encode("utf-8"))


def syntax_errors(tree: tree_sitter.Tree) -> list[Finding]:
    """Every ERROR or MISSING node; PowerShell 7's ``?.``, ``??`` and ternary land here too."""
    found = []
    for node in _nodes(tree.root_node):
        if node.type == "ERROR" or node.is_missing:
            text = " ".join(_text(node).split())[:60]
            hint = " (a PowerShell 7 operator: ?. ?? ??= or a ? b : c)" if "?" in text else ""
            kind = "missing " + node.type if node.is_missing else "syntax error"
            found.append(Finding(node.start_point[0] + 1, f"{kind} at {text!r}{hint}"))
    return found


def newer_constructs(tree: tree_sitter.Tree) -> list[Finding]:
    """Constructs that PowerShell 4.0 or 5.1 does not run (those that still parse)."""
    found = []
    for node in _nodes(tree.root_node):
        line = node.start_point[0] + 1
        if node.type in {"&&", "||"}:
            found.append(Finding(line, f"pipeline chain operator {node.type} (PowerShell 7)"))
        elif node.type == "command":
            name = node.child_by_field_name("command_name")
            elements = node.child_by_field_name("command_elements")
            # its own parameters only (not those of commands in its script blocks), and any
            # unambiguous abbreviation of -Parallel
            params = [_text(n).lower() for n in (elements.children if elements else ())
                      if n.type == "command_parameter"]
            if name is not None and _text(name).lower() in {"foreach-object", "%"} and any(
                len(p) >= 4 and "-parallel".startswith(p) for p in params
            ):
                found.append(Finding(line, "ForEach-Object -Parallel (PowerShell 7)"))
        elif node.type == "invokation_expression":
            names = [_text(n).lower() for n in node.children if n.type == "member_name"]
            if any(c.type == "::" for c in node.children) and names == ["new"]:
                found.append(Finding(line, "[T]::new() (PowerShell 5.0; 4.0 has New-Object)"))
    return found


def read_fact_names(tree: tree_sitter.Tree) -> list[str]:
    """The names given to ``Read-Fact`` calls, in order (a name that is not a literal: ``?``)."""
    names = []
    for node in _nodes(tree.root_node):
        if node.type != "command":
            continue
        name = node.child_by_field_name("command_name")
        if name is None or _text(name).lower() != "read-fact":
            continue
        strings = [n for n in _nodes(node) if n.type == "string_literal"]
        literal = _text(strings[0]) if strings else "?"
        if literal[:1] == "'" and literal[-1:] == "'" and "''" not in literal[1:-1]:
            names.append(literal[1:-1])
        else:
            names.append(f"? {literal}")
    return names


# -- every file and every assembled script parses -------------------------------------------------


@pytest.mark.parametrize("path", PS1_FILES, ids=lambda p: p.name)
def test_every_ps1_file_parses(path: Path) -> None:
    tree = parse(path.read_text(encoding="utf-8"))
    assert syntax_errors(tree) == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_every_script_as_sent_parses(script: FactScript) -> None:
    """Minifying (comments and indentation dropped) must not break a statement."""
    tree = parse(script.text())
    assert syntax_errors(tree) == []


@pytest.mark.parametrize("path", PS1_FILES, ids=lambda p: p.name)
def test_nothing_newer_than_powershell_4(path: Path) -> None:
    assert newer_constructs(parse(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize(("source", "expected"), [
    ("$a = $b?.Name", "PowerShell 7 operator"),
    ("$a = $b ?? 'x'", "PowerShell 7 operator"),
    ("$a ??= 1", "PowerShell 7 operator"),
    ("$a = $b ? 1 : 2", "PowerShell 7 operator"),
    ("git fetch && git pull", "pipeline chain operator &&"),
    ("git fetch || exit 1", "pipeline chain operator ||"),
    ("1..3 | ForEach-Object -Parallel { $_ }", "ForEach-Object -Parallel"),
    ("1..3 | % -Para { $_ } -ThrottleLimit 2", "ForEach-Object -Parallel"),
    ("$sb = [Text.StringBuilder]::new()", "[T]::new()"),
    ("if ($x -eq 1) { $y = 2", "missing"),
])
def test_the_checks_catch_what_they_look_for(source: str, expected: str) -> None:
    tree = parse(source)
    findings = [str(f) for f in syntax_errors(tree) + newer_constructs(tree)]
    assert any(expected in f for f in findings), findings


def test_powershell_4_constructs_pass() -> None:
    source = ("$sb = New-Object Text.StringBuilder\n"
              "$x = $(if ($a) { $a.Name } else { $null })\n"
              "1..3 | ForEach-Object { Get-Item -Path $_ }\n[DateTime]::UtcNow.ToString('o')\n")
    tree = parse(source)
    assert syntax_errors(tree) + newer_constructs(tree) == []


# -- Read-Fact names are the declared facts --------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_read_fact_names_are_the_declared_facts(script: FactScript) -> None:
    names = read_fact_names(parse((SCRIPT_DIR / f"{script.name}.ps1").read_text("utf-8")))
    assert len(names) == len(set(names)), f"a fact is read twice: {names}"
    assert set(names) == set(script.facts)


def test_every_ps1_file_is_a_script_or_a_shared_part() -> None:
    shared = {"_prelude.ps1", "_epilogue.ps1"}
    assert {p.name for p in PS1_FILES} == shared | {f"{s.name}.ps1" for s in SCRIPTS}
    for name in shared:
        assert read_fact_names(parse((SCRIPT_DIR / name).read_text("utf-8"))) == []
    assert {f.script for f in FACTS} == {s.name for s in SCRIPTS}
    assert all(by_name(f.script) is not None for f in FACTS)


def test_a_misspelt_read_fact_name_is_caught() -> None:
    tree = parse("Read-Fact 'adfs_provider' { @{ names = @() } }\nRead-Fact \"os\" { @{} }\n")
    assert read_fact_names(tree) == ["adfs_provider", "? \"os\""]


# -- nothing from the inventory reaches a script ---------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_a_script_reads_no_input(script: FactScript) -> None:
    """The script text is a constant of its name: it takes no parameters and reads no input, so
    no inventory value (host name, user, group) can be interpolated into it."""
    text = script.text().lower()
    assert not [reader for reader in INPUT_READERS if reader in text]
    assert script.command_line() == by_name(script.name).command_line()  # type: ignore[union-attr]


def test_parser_findings_on_todays_scripts() -> None:
    """The report the closing note quotes: per script, syntax errors and newer constructs."""
    findings = {}
    for path in PS1_FILES:
        tree = parse(path.read_text(encoding="utf-8"))
        findings[path.name] = [str(f) for f in syntax_errors(tree) + newer_constructs(tree)]
    assert findings == {p.name: [] for p in PS1_FILES}
