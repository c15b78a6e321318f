"""Unit tests of the inventory's building blocks: line-aware YAML and host patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.inventory.ranges import MAX_HOSTS, RangeError, expand, split_port
from agent.inventory.templates import env_lookup_name, is_template
from agent.inventory.yamlload import (
    MAX_DEPTH,
    Tagged,
    UnsafeText,
    YamlMap,
    YamlSeq,
    parse_text,
)

REPO = Path(__file__).resolve().parent.parent

# -- YAML -----------------------------------------------------------------------------------


def test_lines_of_keys_and_items_are_remembered() -> None:
    parsed = parse_text("a: 1\nb:\n  c: x\n  d:\n    - 10.0.0.0/8\n    - y\n", "f.yaml")
    assert parsed.problems == []
    data = parsed.value
    assert isinstance(data, YamlMap)
    assert data.line_of("a") == 1
    assert data.line_of("b") == 2
    assert data["b"].line_of("d") == 4
    items = data["b"]["d"]
    assert isinstance(items, YamlSeq)
    assert items == ["10.0.0.0/8", "y"]
    assert [items.line_of(0), items.line_of(1)] == [5, 6]


def test_duplicate_keys_are_problems_with_both_lines() -> None:
    parsed = parse_text("a: 1\nb: 2\na: 3\n", "f.yaml")
    [problem] = parsed.problems
    assert (problem.file, problem.line, problem.key) == ("f.yaml", 3, "a")
    assert "duplicate key" in problem.message
    assert "line 1" in problem.message
    assert parsed.value == {"a": 1, "b": 2}


def test_syntax_error_reports_line_without_quoting_the_document() -> None:
    parsed = parse_text("a: 1\nb: 'Pa55-unterminated\n", "f.yaml")
    [problem] = parsed.problems
    assert problem.line is not None
    assert problem.line >= 2
    assert "YAML syntax error" in problem.message
    assert "Pa55" not in problem.message


def test_vault_and_unknown_tags_are_opaque_values() -> None:
    parsed = parse_text(
        "pw: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n"
        "x: !custom {a: 1}\nu: !unsafe '{{ x }}'\n",
        "f.yaml",
    )
    assert parsed.problems == []
    assert isinstance(parsed.value["pw"], Tagged)
    assert parsed.value["pw"].tag == "!vault"
    assert "ANSIBLE_VAULT" not in repr(parsed.value["pw"])
    assert isinstance(parsed.value["x"], Tagged)
    assert isinstance(parsed.value["u"], UnsafeText)
    assert not is_template(parsed.value["u"])


def test_python_tags_are_never_constructed() -> None:
    parsed = parse_text("a: !!python/object/apply:os.system ['true']\n", "f.yaml")
    assert parsed.problems == []
    assert isinstance(parsed.value["a"], Tagged)


def test_invalid_standard_tag_value_is_a_problem_without_the_value() -> None:
    parsed = parse_text("a: !!int Secret-Xyzzy\n", "f.yaml")
    [problem] = parsed.problems
    assert problem.line == 1
    assert "Xyzzy" not in problem.message


def test_merge_keys_explicit_keys_win() -> None:
    parsed = parse_text("base: &b {x: 1, y: 2}\nthing:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert parsed.problems == []
    assert parsed.value["thing"] == {"x": 1, "y": 3}


def test_recursive_alias_is_a_problem() -> None:
    parsed = parse_text("a: &x [1, *x]\n", "f.yaml")
    assert parsed.value is None
    assert any("recursive" in p.message for p in parsed.problems)


def test_alias_bomb_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    parsed = parse_text("\n".join(lines) + "\n", "f.yaml")
    assert parsed.value is None
    assert any("too large" in p.message for p in parsed.problems)


@pytest.mark.parametrize(
    "text", ["[" * 5000 + "]" * 5000, "a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 300))]
)
def test_absurd_nesting_is_a_problem_not_a_recursion_error(text: str) -> None:
    parsed = parse_text(text, "f.yaml")
    assert parsed.value is None
    assert any(f"deeper than {MAX_DEPTH}" in p.message for p in parsed.problems)


def test_non_scalar_keys_are_problems() -> None:
    parsed = parse_text("? [a, b]\n: 1\n", "f.yaml")
    assert [p.line for p in parsed.problems] == [1]


def test_control_characters_are_a_syntax_problem_with_line() -> None:
    parsed = parse_text("a: 1\nb: \x00\n", "f.yaml")
    [problem] = parsed.problems
    assert problem.line == 2


# -- env lookups -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "{{ lookup('env', 'MFA_PW') }}",
        '{{lookup("env","MFA_PW")}}',
        "  {{  lookup( 'env' ,  'MFA_PW' )  }} ",
        "{{ lookup('ansible.builtin.env', 'MFA_PW') }}",
    ],
)
def test_env_lookup_forms(value: str) -> None:
    assert env_lookup_name(value) == "MFA_PW"


@pytest.mark.parametrize(
    "value",
    [
        "{{ lookup('env', \"MFA_PW') }}",
        "{{ lookup('file', 'MFA_PW') }}",
        "{{ lookup('env', 'MFA_PW') | default('x') }}",
        "{{ lookup('env', 'MFA-PW') }}",
        UnsafeText("{{ lookup('env', 'MFA_PW') }}"),
        42,
    ],
)
def test_not_env_lookups(value: object) -> None:
    assert env_lookup_name(value) is None


# -- host patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "hosts"),
    [
        (
            "adfs[01:03].corp.example",
            ["adfs01.corp.example", "adfs02.corp.example", "adfs03.corp.example"],
        ),
        ("web[8:10]", ["web8", "web9", "web10"]),
        ("db[008:010]", ["db008", "db009", "db010"]),
        ("node-[a:c]", ["node-a", "node-b", "node-c"]),
        ("n[1:10:3]", ["n1", "n4", "n7", "n10"]),
        ("n[a:g:2]", ["na", "nc", "ne", "ng"]),
        ("n[:2]", ["n0", "n1", "n2"]),
        ("r[1:2]c[a:b]", ["r1ca", "r1cb", "r2ca", "r2cb"]),
        ("plain.example", ["plain.example"]),
    ],
)
def test_expand(pattern: str, hosts: list[str]) -> None:
    assert expand(pattern) == hosts


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("a[3:1]", "begin <= end"),
        ("a[c:a]", "begin <= end"),
        ("a[01:3]", "same width"),
        ("a[1:3:0]", "step"),
        ("a[1:3:x]", "step"),
        ("a[1:]", "end value"),
        ("a[1]", "[begin:end]"),
        ("a[1:2:3:4]", "[begin:end]"),
        ("a[1:c]", "numbers or both be single letters"),
        ("a[aa:bb]", "numbers or both be single letters"),
        ("a[1:2", "without"),
        ("a1:2]", "without"),
        ("a[[1:2]]", "nested"),
        (f"a[0:{MAX_HOSTS}]", "more than"),
        ("a[0:400]b[0:400]", "more than"),
        ("a[0:99999999999999999999999]", "numbers or both"),
    ],
)
def test_invalid_ranges(pattern: str, reason: str) -> None:
    with pytest.raises(RangeError, match=reason.replace("[", r"\[")):
        expand(pattern)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("adfs01.corp.example:5986", ("adfs01.corp.example", 5986)),
        ("10.0.0.5:22", ("10.0.0.5", 22)),
        ("[2001:db8::5]:5986", ("2001:db8::5", 5986)),
        ("[2001:db8::5]", ("2001:db8::5", None)),
        ("2001:db8::5", ("2001:db8::5", None)),
        ("adfs[01:03].corp.example:5986", ("adfs[01:03].corp.example", 5986)),
        ("adfs[01:03]", ("adfs[01:03]", None)),
        ("[1:3]:22", ("[1:3]", 22)),
        ("plain", ("plain", None)),
    ],
)
def test_split_port(pattern: str, expected: tuple[str, int | None]) -> None:
    assert split_port(pattern) == expected


def _shape(value: object) -> object:
    """A parsed value with the lines it remembers, for comparing two loaders."""
    if isinstance(value, YamlMap):
        return ("map", value.line, [(k, value.line_of(k), _shape(v)) for k, v in value.items()])
    if isinstance(value, YamlSeq):
        return ("seq", value.line, [(value.line_of(i), _shape(v)) for i, v in enumerate(value)])
    return (type(value).__name__, value)


def test_libyaml_and_pure_python_parsing_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid documents go through libyaml's parser (fast); every shipped inventory, with
    anchors, merges, tags and ranges too, reads the same as through PyYAML's own."""
    import yaml

    from agent.inventory import yamlload

    assert yamlload._C_LOADER is yaml.CSafeLoader  # the wheels ship libyaml: the fast path runs
    documents = [p.read_text(encoding="utf-8") for p in sorted(REPO.glob("inventory/*.yaml"))]
    documents.append(
        "base: &b {a: 1, 'b': [x, y]}\n"
        "secret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n"
        "merged:\n  <<: *b\n  c: !unsafe '{{ x }}'\n  d: 2024-05-01\n  e: 0x1F\n  f: ~\n"
        "list:\n- one\n- {k: v}\n- [1, 2.5, yes]\n"
    )
    for text in documents:
        fast = parse_text(text, "f.yaml")
        monkeypatch.setattr(yamlload, "_C_LOADER", yaml.SafeLoader)
        slow = parse_text(text, "f.yaml")
        monkeypatch.undo()
        assert not fast.problems and not slow.problems
        assert _shape(fast.value) == _shape(slow.value)
