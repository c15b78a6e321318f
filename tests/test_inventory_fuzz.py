"""Property tests: whatever the files contain, loading returns an Inventory or InventoryError."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import InventoryError
from agent.inventory import Inventory, load_inventory
from agent.inventory.ranges import RangeError, expand, split_port

#: Keys that steer generated documents into the loader's interesting paths.
VOCABULARY = (
    "all",
    "hosts",
    "vars",
    "children",
    "adfs",
    "mfa_server",
    "user_portal",
    "ungrouped",
    "adfs[01:03].corp.example",
    "h1",
    "h1:5986",
    "10.0.0.1",
    "ansible_host",
    "ansible_port",
    "ansible_password",
    "ansible_connection",
    "ansible_winrm_scheme",
    "ansible_group_priority",
    "mfa_directory",
    "mfa_networks",
    "mfa_deployment",
    "mfa_clock_skew_max_seconds",
    "mfa_phonefactor_admins_allowed",
    "mfa_allow_insecure_transport",
    "perimeter",
    "internal",
    "url",
    "urls",
    "base_dn",
    "bind_dn",
    "bind_password",
    "licensing",
    "trusted_ips",
    "ranges",
    "enabled",
    "starttls",
)
SCALAR_VALUES = (
    "winrm",
    "ssh",
    "http",
    "ldap://dc01",
    "ldaps://dc01",
    "10.0.0.0/8",
    "10.0.0.1/8",
    "",
    "{{ lookup('env', 'X') }}",
    "{{ x }}",
    "licenses",
    "none",
    "adfs",
)

keys = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=12), st.integers(-5, 70000))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 70000),
    st.floats(allow_nan=False),
    st.sampled_from(SCALAR_VALUES),
    st.text(max_size=20),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=30,
)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load(inventory: bytes, group_vars: bytes | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hosts.yaml"
        path.write_bytes(inventory)
        if group_vars is not None:
            (Path(tmp) / "group_vars").mkdir()
            (Path(tmp) / "group_vars" / "all.yml").write_bytes(group_vars)
        problems = None
        try:
            result = load_inventory(path)
        except InventoryError as exc:
            problems = exc.problems
        if problems is None:
            assert isinstance(result, Inventory)
        else:
            assert problems


def _dump(document: Any) -> bytes:
    return yaml.safe_dump(document, allow_unicode=True).encode()


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    _load(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    _load(data)


@FUZZ
@given(documents)
def test_arbitrary_yaml_structures(document: Any) -> None:
    _load(_dump(document))


@settings(FUZZ, max_examples=60)
@given(st.dictionaries(keys, documents, max_size=4), documents)
def test_inventory_shaped_documents_with_group_vars(inventory: Any, group_vars: Any) -> None:
    _load(_dump({"all": inventory}), _dump(group_vars))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab01239:[]-.", max_size=16))
def test_host_patterns_expand_or_raise_range_error(pattern: str) -> None:
    host, port = split_port(pattern)
    assert port is None or port >= 0
    try:
        names = expand(host)
    except RangeError:
        return
    assert names
