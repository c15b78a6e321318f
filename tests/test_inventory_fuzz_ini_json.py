"""Property tests of the INI and JSON loaders: whatever the file holds, loading returns an
Inventory or an InventoryError with problems; never another exception, never a hang."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import InventoryError
from agent.inventory import Inventory, load_inventory
from agent.inventory.ini import parse_value
from tests.test_inventory_fuzz import documents, keys, scalars

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INI_WORDS = (
    "[adfs]",
    "[adfs:vars]",
    "[adfs:children]",
    "[all:vars]",
    "[g:other]",
    "[ bad ]",
    "adfs01",
    "h[1:3]",
    "h[a:c]:5986",
    "[::1]:22",
    "ansible_host=10.0.0.1",
    "ansible_port=5986",
    "ansible_password='{{ lookup(\"env\", \"X\") }}'",
    "ansible_user=CORP\\svc",
    "mfa_roles=\"['adfs']\"",
    "mfa_role_groups={'adfs': ['g']}",
    "x=[1,2",
    "y={'a':",
    "'unclosed",
    "# comment",
    "; comment",
    "=",
    "g",
    "---",
    "\\",
    "\x00",
)

ini_lines = st.lists(
    st.lists(st.one_of(st.sampled_from(INI_WORDS), st.text(max_size=12)), max_size=4).map(
        " ".join
    ),
    max_size=12,
).map("\n".join)


def _load(name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            result = load_inventory(path)
        except InventoryError as exc:
            assert exc.problems
        else:
            assert isinstance(result, Inventory)


@FUZZ
@given(ini_lines)
def test_ini_shaped_text(text: str) -> None:
    _load("hosts.ini", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_as_ini(text: str) -> None:
    _load("hosts", text.encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_ini_values_parse_to_data(text: str) -> None:
    value = parse_value(text)
    json.dumps(value)  # plain data only: strings, numbers, booleans, None, lists, dicts


hostvars = st.dictionaries(st.sampled_from(("h1", "h2", "10.0.0.1")), documents, max_size=3)
groups = st.dictionaries(
    keys,
    st.one_of(
        scalars,
        st.fixed_dictionaries(
            {},
            optional={
                "hosts": st.one_of(st.lists(st.sampled_from(("h1", "h2", "h[1:2]"))), scalars),
                "children": st.one_of(st.lists(keys, max_size=3), scalars),
                "vars": st.one_of(st.dictionaries(keys, documents, max_size=3), scalars),
            },
        ),
    ),
    max_size=4,
)


@FUZZ
@given(groups, st.one_of(hostvars, documents), st.booleans())
def test_json_list_shaped_documents(body: dict[Any, Any], meta: Any, vault: bool) -> None:
    document: dict[str, Any] = {str(k): v for k, v in body.items()}
    if vault and isinstance(meta, dict):
        meta = {k: {"__ansible_vault": "$ANSIBLE_VAULT;1.1;AES256\nzz"} for k in meta}
    document["_meta"] = {"hostvars": meta, "profile": "inventory_legacy"}
    _load("inventory.json", json.dumps(document).encode())


def _reference(text: str) -> Any:
    """ansible-core's reading of an INI value: `ast.literal_eval`, else the text."""
    import ast
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return value


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"-?[0-9a-zA-Z_.]{0,12}", fullmatch=True))
def test_ini_fast_paths_read_values_as_literal_eval_does(text: str) -> None:
    expected = _reference(text)
    if isinstance(expected, (int, float, bool, str)) or expected is None:
        value = parse_value(text)
        assert (type(value) is type(expected) and value == expected) or (
            value != value and expected != expected  # NaN
        )
