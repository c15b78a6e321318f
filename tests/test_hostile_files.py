"""Hostile input files: FIFOs, sockets and devices, and JSON that is not strict or not bounded.

The FIFO tests run the real command line in a subprocess: before the fix, opening a FIFO for
reading blocks until a writer appears, so the subprocess timeout only bounds that failure.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent import factsfile, strictjson
from agent.connectors.common import run_scripts, script_entries
from agent.connectors.errors import ConnectorError, ErrorKind
from agent.errors import FactsFileError, InputError
from agent.facts import HostFacts
from agent.factscripts import by_name
from agent.registry import load_catalogue
from agent.waivers import load_waivers
from tests.conftest import REPO, CliRun

LAB = str(REPO / "inventory" / "lab.yaml")
FACTS = str(REPO / "inventory" / "lab.facts.json")
KNOWN = tuple(c.meta.id for c in load_catalogue())
#: Only bounds a failure (a blocked open): a passing run takes about a second.
BLOCKED = 120


def mfa_agent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=BLOCKED,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "input.fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "input.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    try:
        yield path
    finally:
        server.close()


# -- only regular files are read ------------------------------------------------------------------


def test_a_fifo_as_facts_file_is_refused_without_blocking(fifo: Path, tmp_path: Path) -> None:
    run = mfa_agent("scan", "--replay", str(fifo), "--no-history", cwd=tmp_path)
    assert run.returncode == 3, run.stderr
    assert str(fifo) in run.stderr and "FIFO" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_fifo_as_waivers_file_is_refused_without_blocking(fifo: Path, tmp_path: Path) -> None:
    run = mfa_agent(
        "scan", "-i", LAB, "--replay", FACTS, "--waivers", str(fifo), "--no-history", cwd=tmp_path
    )
    assert run.returncode == 3, run.stderr
    assert str(fifo) in run.stderr and "FIFO" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_fifo_as_history_database_is_refused_without_blocking(
    fifo: Path, tmp_path: Path
) -> None:
    run = mfa_agent("scan", "-i", LAB, "--replay", FACTS, "--db", str(fifo), cwd=tmp_path)
    assert run.returncode == 3, run.stderr
    assert str(fifo) in run.stderr and "FIFO" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_history_folder_that_is_a_file_is_refused(
    run_cli: Callable[..., CliRun], tmp_path: Path
) -> None:
    (tmp_path / "state").write_text("not a folder")
    db = tmp_path / "state" / "history.sqlite3"
    run = run_cli("scan", "-i", LAB, "--replay", FACTS, "--db", str(db))
    assert run.code == 3
    assert str(tmp_path / "state") in run.err and "not a directory" in run.err.lower()


@pytest.mark.parametrize("kind", ["socket", "device", "directory"])
def test_sockets_devices_and_directories_are_refused(
    kind: str, unix_socket: Path, tmp_path: Path
) -> None:
    # /dev/zero never ends: reading it whole would exhaust memory.
    path = {"socket": unix_socket, "device": Path("/dev/zero"), "directory": tmp_path}[kind]
    with pytest.raises(FactsFileError, match=f"{kind}") as facts:
        factsfile.load(path)
    assert facts.value.problems[0].file == str(path)
    with pytest.raises(InputError, match=f"{kind}") as waivers:
        load_waivers(path, KNOWN)
    assert waivers.value.problems[0].file == str(path)


# -- strict, bounded JSON -------------------------------------------------------------------------

_NOT_STRICT = {
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "overflowing float": "1e400",
    "huge integer": "1" * 5000,
    "big integer": "9" * 101,
    "deep nesting": "[" * 100 + "]" * 100,
    "very deep nesting": "[" * 100_000 + "]" * 100_000,
}


def facts_document(value: str) -> str:
    """A valid facts file whose one fact value is `value` (JSON text)."""
    return (
        '{"schema": "mfa-agent/facts", "version": 1, "hosts": {"h": {"facts": '
        '{"os": {"value": ' + value + "}}}}}"
    )


def test_the_facts_document_used_below_is_otherwise_valid(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(facts_document("[[1, 2.5, 99999999999999999999]]"))
    loaded = factsfile.load(path)
    assert loaded.hosts[0].facts["os"] == {"value": [[1, 2.5, 99999999999999999999]]}


@pytest.mark.parametrize("value", list(_NOT_STRICT.values()), ids=list(_NOT_STRICT))
def test_facts_files_must_be_strict_bounded_json(
    value: str, tmp_path: Path, run_cli: Callable[..., CliRun]
) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(facts_document(value))
    with pytest.raises(FactsFileError) as caught:
        factsfile.load(path)
    assert caught.value.problems[0].file == str(path)
    run = run_cli("scan", "--replay", str(path))
    assert run.code == 3
    assert str(path) in run.err and "Traceback" not in run.err


@pytest.mark.parametrize("value", list(_NOT_STRICT.values()), ids=list(_NOT_STRICT))
def test_json_waivers_files_must_be_strict_bounded_json(
    value: str, tmp_path: Path, run_cli: Callable[..., CliRun]
) -> None:
    path = tmp_path / "waivers.json"
    path.write_text(
        '{"waivers": [{"check": "adfs-os-version", "hosts": ' + value + ', "justification": "j",'
        ' "approver": "a", "expires": "2026-12-31"}]}'
    )
    run = run_cli("scan", "-i", LAB, "--replay", FACTS, "--waivers", str(path))
    assert run.code == 3
    assert str(path) in run.err and "Traceback" not in run.err


@pytest.mark.parametrize(
    "value",
    [".nan", ".inf", "-.inf", "1" * 5000, "[" * 100 + "]" * 100, "[" * 100_000 + "]" * 100_000],
    ids=["nan", "inf", "-inf", "huge integer", "deep nesting", "very deep nesting"],
)
def test_yaml_waivers_files_refuse_hostile_values(
    value: str, tmp_path: Path, run_cli: Callable[..., CliRun]
) -> None:
    path = tmp_path / "waivers.yaml"
    path.write_text(
        "waivers:\n  - check: adfs-os-version\n    hosts: " + value + "\n"
        "    justification: j\n    approver: a\n    expires: 2026-12-31\n"
    )
    run = run_cli("scan", "-i", LAB, "--replay", FACTS, "--waivers", str(path))
    assert run.code == 3
    assert str(path) in run.err and "Traceback" not in run.err


def test_save_facts_never_writes_nan_or_infinity(tmp_path: Path) -> None:
    host = HostFacts("h", frozenset(), "h", facts={"os": {"value": {"x": math.nan}}})
    with pytest.raises(ValueError, match="JSON compliant"):
        factsfile.dumps(factsfile.FactsFile(hosts=(host,)))
    finite = HostFacts("h", frozenset(), "h", facts={"os": {"value": {"x": 1.5}}})
    text = factsfile.dumps(factsfile.FactsFile(hosts=(finite,)))
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c))["hosts"]["h"]["facts"]


def test_a_saved_facts_file_holding_nan_is_not_written(
    tmp_path: Path, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = factsfile.to_document

    def with_nan(facts: factsfile.FactsFile) -> dict[str, Any]:
        document = original(facts)
        document["deployment"] = {"weight": math.inf}
        return document

    monkeypatch.setattr(factsfile, "to_document", with_nan)
    out = tmp_path / "saved.json"
    run = run_cli("scan", "-i", LAB, "--replay", FACTS, "--save-facts", str(out), "--no-history")
    assert run.code == 3
    assert str(out) in run.err and not out.exists()


# -- a fact script's output -----------------------------------------------------------------------


@pytest.mark.parametrize("value", list(_NOT_STRICT.values()), ids=list(_NOT_STRICT))
def test_hostile_script_output_costs_that_scripts_facts_only(value: str) -> None:
    base, adfs = by_name("base"), by_name("adfs")
    assert base is not None and adfs is not None
    good = {fact: {"value": {"ok": True}} for fact in adfs.facts}
    outputs = {
        "base": ('{"' + base.facts[0] + '": {"value": ' + value + "}}").encode(),
        "adfs": json.dumps(good).encode(),
    }

    def run(script: Any) -> dict[str, Any]:
        return script_entries(script, "h1", outputs[script.name], b"", 0, datetime.now())

    with pytest.raises(ConnectorError) as caught:
        run(base)
    assert caught.value.kind is ErrorKind.UNREADABLE_OUTPUT
    assert "unreadable output from h1: the base script did not print JSON" in caught.value.message
    facts = run_scripts([base, adfs], run, where="h1", deadline=math.inf, host_seconds=120)
    assert all(set(facts[f]) == {"error"} for f in base.facts)
    assert all(facts[f] == {"value": {"ok": True}} for f in adfs.facts)


def test_strict_json_names_what_was_wrong() -> None:
    with pytest.raises(strictjson.StrictJsonError, match="NaN is not a JSON number"):
        strictjson.loads("[NaN]")
    with pytest.raises(strictjson.StrictJsonError, match="more than 100 digits"):
        strictjson.loads("1" * 101)
    with pytest.raises(strictjson.StrictJsonError, match="nested deeper than 64"):
        strictjson.loads("[" * 65 + "]" * 65)
    assert strictjson.loads("[" * 64 + "]" * 64) is not None
    # The deepest branch counts wherever it is: behind wide siblings, objects and arrays mixed.
    for levels, refused in ((64, False), (65, True)):
        pairs, odd = divmod(levels - 1, 2)  # the outer object is the first level
        deep = '{"k": [' * pairs + ("[]" if odd else "null") + "]}" * pairs
        text = '{"wide": [1, "[", {}], "deep": ' + deep + ', "after": [[[]]]}'
        if refused:
            with pytest.raises(strictjson.StrictJsonError, match="nested deeper than 64"):
                strictjson.loads(text)
        else:
            assert strictjson.loads(text)["after"] == [[[]]]
    # Brackets inside strings count towards "maybe deep" only: the value is then walked.
    assert strictjson.loads('{"a": "' + "[{" * 40 + '", "b": [[1]]}')["b"] == [[1]]
    with pytest.raises(strictjson.StrictJsonError, match="nested deeper than 64"):
        strictjson.loads('["' + "[" * 70 + '", ' + "[" * 64 + "]" * 64 + "]")
    with pytest.raises(strictjson.StrictJsonError, match="Unexpected UTF-8 BOM"):
        strictjson.loads("\ufeff{}")
    # Bytes are decoded as json.loads decodes them (a UTF-8 BOM, UTF-16); nothing else is text.
    assert strictjson.loads(b"[1]") == strictjson.loads(bytearray(b"\xef\xbb\xbf[1]")) == [1]
    assert strictjson.loads('{"a": "é"}'.encode("utf-16")) == {"a": "é"}
    with pytest.raises(TypeError, match="must be str, bytes or bytearray, not int"):
        strictjson.loads(5)  # type: ignore[arg-type]
    with pytest.raises(strictjson.StrictJsonError) as caught:
        strictjson.loads('{\n "a": oops}')
    assert caught.value.line == 2
