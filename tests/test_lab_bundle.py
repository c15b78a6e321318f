"""One command line for every fact script (`agent.factscripts.bundle`), and how the lab answers
it and a line wrapped once more (Ansible's ``raw``)."""

from __future__ import annotations

import base64
import json

import pytest

from agent.connectors.common import script_entries
from agent.connectors.errors import ConnectorError
from agent.factscripts import MAX_COMMAND_LINE, SCRIPTS, bundle, by_name
from agent.lab import load_lab
from agent.lab.profiles import Faults, HostProfile
from agent.lab.simulate import run_command_line

ADFS = load_lab().host("adfs01.lab.example")


def _wrap(line: str) -> str:
    """What Ansible's powershell shell plugin sends for a ``raw`` command it does not recognise."""
    encoded = base64.b64encode(line.encode("utf-16-le")).decode()
    return ("PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted "
            f"-EncodedCommand {encoded}")


def test_every_script_fits_one_line_under_cmd_exe_limit() -> None:
    """Today every fact script of every role fits one command (plan() would split otherwise)."""
    assert bundle.plan(SCRIPTS) == [tuple(SCRIPTS)]
    line = bundle.command_line(tuple(SCRIPTS))
    assert len(line) <= MAX_COMMAND_LINE
    assert '"' not in line[line.index('"') + 1:-1]  # one quoted argument for cmd.exe
    assert "%" not in line  # nothing for cmd.exe to expand
    assert "::new" not in line  # PowerShell 4.0
    assert [name for name, _ in bundle.decode_bundle(line) or []] == [s.name for s in SCRIPTS]


def test_the_lab_answers_a_bundle_as_each_script_alone() -> None:
    scripts = (by_name("base"), by_name("adfs"))
    assert None not in scripts
    result = run_command_line(ADFS, bundle.command_line(scripts))  # type: ignore[arg-type]
    assert result.exit_code == 0
    outcomes = bundle.split_results(scripts, result.stdout, result.stderr, 0)  # type: ignore[arg-type]
    for script in scripts:
        assert script is not None
        alone = run_command_line(ADFS, script.command_line())
        got = outcomes[script.name]
        mine = json.loads(got.stdout)
        theirs = json.loads(alone.stdout)
        mine.pop("clock", None)
        theirs.pop("clock", None)
        assert (mine, got.exit_code) == (theirs, alone.exit_code)


def test_a_blocked_bootstrap_fails_every_script_alike() -> None:
    blocked = HostProfile(name="clm.lab.example", address="127.0.9.9", roles=("adfs",),
                          faults=Faults(powershell_error=True))
    scripts = tuple(SCRIPTS[:2])
    result = run_command_line(blocked, bundle.command_line(scripts))
    outcomes = bundle.split_results(scripts, result.stdout, result.stderr, result.exit_code)
    messages = set()
    for script in scripts:
        outcome = outcomes[script.name]
        with pytest.raises(ConnectorError) as failed:
            script_entries(script, "clm", outcome.stdout, outcome.stderr, outcome.exit_code,
                           None)  # type: ignore[arg-type]
        messages.add(str(failed.value).replace(script.name, "X"))
    assert len(messages) == 1 and "Method invocation is supported only" in messages.pop()


@pytest.mark.parametrize("record", [
    b"#MFA-AGENT-RESULT base 0 !!notbase64 \n",
    b"#MFA-AGENT-RESULT base 7 e30= \n",
    b"#MFA-AGENT-RESULT other 0 e30= \n",
    b"#MFA-AGENT-RESULT base 0 e30=\n",
])
def test_records_are_read_strictly(record: bytes) -> None:
    scripts = (SCRIPTS[0],)
    good = b"#MFA-AGENT-RESULT base 0 e30= \n"
    assert bundle.split_results(scripts, good, b"", 0)["base"].stdout == b"{}"
    # A malformed record counts as missing: with no record at all, the whole output stands.
    outcome = bundle.split_results(scripts, record, b"", 0)["base"]
    assert outcome.stdout == record


def test_a_duplicate_record_does_not_replace_the_first() -> None:
    scripts = (SCRIPTS[0],)
    stdout = b"#MFA-AGENT-RESULT base 0 e30= \n#MFA-AGENT-RESULT base 1 e30= ZXJy\n"
    assert bundle.split_results(scripts, stdout, b"", 0)["base"].exit_code == 0


def test_a_line_wrapped_once_more_runs_the_inner_line_or_is_too_long() -> None:
    adsync = by_name("adsync")
    base = by_name("base")
    assert adsync is not None and base is not None
    sync = load_lab().host("sync01.lab.example")
    wrapped = _wrap(adsync.command_line())
    assert len(wrapped) <= MAX_COMMAND_LINE
    inner = run_command_line(sync, wrapped)
    alone = run_command_line(sync, adsync.command_line())
    assert (inner.stdout, inner.exit_code) == (alone.stdout, alone.exit_code)
    too_long = _wrap(base.command_line())
    assert len(too_long) > MAX_COMMAND_LINE
    refused = run_command_line(sync, too_long)
    assert refused.exit_code == 1 and b"The command line is too long" in refused.stderr
