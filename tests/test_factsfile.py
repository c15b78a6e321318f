"""The facts file: round trip, validation errors that name file and key, and fuzzing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import factsfile
from agent.errors import FactsFileError
from agent.facts import FactUnavailable

LAB_FACTS = Path(__file__).resolve().parent.parent / "inventory" / "lab.facts.json"


def minimal(**host: Any) -> dict[str, Any]:
    entry = {"address": "10.0.0.1", "roles": ["adfs"], "facts": {}}
    entry.update(host)
    return {"schema": "mfa-agent/facts", "version": 1, "hosts": {"adfs01": entry}}


def problems_of(document: Any) -> list[str]:
    with pytest.raises(FactsFileError) as caught:
        factsfile.parse(document, "f.json")
    return [str(p) for p in caught.value.problems]


def test_lab_facts_round_trip() -> None:
    loaded = factsfile.load(LAB_FACTS)
    again = factsfile.parse(json.loads(factsfile.dumps(loaded)), "again")
    assert factsfile.to_document(again) == factsfile.to_document(loaded)
    assert loaded.hosts[0].name == "adfs01.lab.example"


def test_fact_entries_keep_errors_apart_from_values() -> None:
    os = {"caption": "Windows", "version": "6.3.9600", "build_number": "9600", "product_type": 3}
    doc = minimal(facts={"os": {"value": os}, "iis": {"error": "access denied"}})
    host = factsfile.parse(doc).hosts[0]
    assert host.fact("os").text("version") == "6.3.9600"
    with pytest.raises(FactUnavailable, match="access denied"):
        host.fact("iis")
    with pytest.raises(FactUnavailable, match="not collected"):
        host.fact("clock")


def test_host_error_is_kept() -> None:
    doc = minimal(error={"kind": "timeout", "message": "timed out"})
    host = factsfile.parse(doc).hosts[0]
    assert host.error is not None and host.error.kind == "timeout"
    with pytest.raises(FactUnavailable, match="timed out"):
        host.fact("os")


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "schema": "mfa-agent/facts",\n  "version": 1,\n  oops\n}\n')
    with pytest.raises(FactsFileError) as caught:
        factsfile.load(path)
    problem = caught.value.problems[0]
    assert problem.file == str(path) and problem.line == 4


def test_unreadable_file_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(FactsFileError, match="cannot read"):
        factsfile.load(tmp_path / "absent.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(FactsFileError, match="not UTF-8"):
        factsfile.load(binary)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "(top level)"),
        ({"schema": "other"}, "[schema]"),
        (
            {"schema": "mfa-agent/facts", "version": 2, "hosts": {}},
            "unsupported facts file version 2",
        ),
        ({"schema": "mfa-agent/facts", "version": 1, "hosts": []}, "[hosts] expected an object"),
        ({"schema": "mfa-agent/facts", "version": 1}, "[hosts] required key is missing"),
        (
            {"schema": "mfa-agent/facts", "version": 1, "hosts": {}, "extra": 1},
            "[extra] unknown key",
        ),
        (minimal(facts={"os": {"value": 1, "error": "x"}}), "[hosts['adfs01'].facts.os]"),
        (minimal(facts={"os": {"error": 5}}), "[hosts['adfs01'].facts.os]"),
        (
            minimal(declared={"perimeter": ["10.0.0.0/33"]}),
            "[hosts['adfs01'].declared.perimeter[0]]",
        ),
        (minimal(declared={"clock_skew_max_seconds": -1}), "clock_skew_max_seconds"),
        (minimal(roles="adfs"), "[hosts['adfs01'].roles]"),
        (minimal(error={"kind": "x"}), "[hosts['adfs01'].error.message] required key"),
    ],
)
def test_structural_problems_name_the_key(document: Any, expected: str) -> None:
    assert any(expected in p for p in problems_of(document)), problems_of(document)


def test_all_problems_are_reported_at_once() -> None:
    doc = minimal(roles="adfs", declared={"perimeter": ["nope"]}, facts={"os": 3})
    assert len(problems_of(doc)) == 3


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_is_accepted_or_cleanly_rejected(value: Any) -> None:
    try:
        factsfile.parse(value)
    except FactsFileError as exc:
        assert exc.problems


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["address", "roles", "declared", "error", "facts", "x"]), json_values
    )
)
def test_arbitrary_host_entries_are_accepted_or_cleanly_rejected(entry: dict[str, Any]) -> None:
    doc = {"schema": "mfa-agent/facts", "version": 1, "hosts": {"h": entry}}
    try:
        factsfile.parse(doc)
    except FactsFileError as exc:
        assert exc.problems


@settings(max_examples=100)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_cleanly_rejected(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "facts.json"
    path.write_bytes(data)
    try:
        factsfile.load(path)
    except FactsFileError as exc:
        assert exc.problems
