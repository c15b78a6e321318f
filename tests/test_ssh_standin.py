"""The ``powershell`` stand-in of the SSH tests, on its own: it answers exactly as the lab does."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.factscripts import by_name, encode_command
from agent.lab import load_profile
from agent.lab import powershell_standin as standin
from agent.lab.simulate import run_command_line

REPO = Path(__file__).resolve().parent.parent
FAULTS = Path(__file__).resolve().parent / "data" / "lab-faults"
HEALTHY = FAULTS / "garbage-output" / "healthy.yaml"


def _argv(command_line: str) -> list[str]:
    """What a POSIX shell hands the program for a command line (no quoting in ours)."""
    return command_line.split()


def _adfs_command() -> str:
    script = by_name("adfs")
    assert script is not None
    return script.command_line()


@pytest.mark.parametrize("profile", [
    HEALTHY,
    FAULTS / "garbage-output" / "faulty.yaml",
    FAULTS / "powershell-error" / "faulty.yaml",
    FAULTS / "command-line-limit" / "faulty.yaml",
], ids=lambda p: f"{p.parent.name}/{p.stem}")
@pytest.mark.parametrize("command", ["adfs", "base", "not-a-fact-script"])
def test_it_answers_what_the_lab_answers(
    profile: Path, command: str, monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    script = by_name(command)
    line = script.command_line() if script is not None else encode_command("Get-Date")
    monkeypatch.setenv(standin.PROFILE_ENV, str(profile))
    now = dt.datetime.now(dt.UTC)
    code = standin.main(_argv(line))
    out, err = capsysbinary.readouterr()
    expected = run_command_line(load_profile(profile), line, now)
    if command == "base" and expected.exit_code == 0 and b'"clock"' in expected.stdout:
        # The clock fact is computed when the command runs: compare everything else.
        out, expected_out = (o.split(b'"clock"')[0] for o in (out, expected.stdout))
    else:
        expected_out = expected.stdout
    assert (out, err, code) == (expected_out, expected.stderr, expected.exit_code)


def test_the_command_line_is_rebuilt_with_the_program_name() -> None:
    line = _adfs_command()
    assert standin.command_line(["/srv/bin/powershell", *line.split()[1:]]) == line


def test_the_profile_comes_from_the_environment_or_the_home_directory(tmp_path: Path) -> None:
    assert standin.profile_path({standin.PROFILE_ENV: "/p.yaml"}, tmp_path) == Path("/p.yaml")
    assert standin.profile_path({}, tmp_path) is None
    (tmp_path / standin.PROFILE_POINTER).write_text(f"{HEALTHY}\n")
    assert standin.profile_path({}, tmp_path) == HEALTHY
    assert standin.profile_path({standin.PROFILE_ENV: " "}, tmp_path) == HEALTHY


def test_without_a_profile_it_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.delenv(standin.PROFILE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert standin.main(_argv(_adfs_command())) == standin.SETUP_ERROR
    assert b"set MFA_LAB_PROFILE" in capsysbinary.readouterr().err
    monkeypatch.setenv(standin.PROFILE_ENV, str(tmp_path / "missing.yaml"))
    assert standin.main(_argv(_adfs_command())) == standin.SETUP_ERROR
    assert b"invalid host profile" in capsysbinary.readouterr().err


def test_output_is_written_in_pieces(tmp_path: Path) -> None:
    with (tmp_path / "out").open("wb") as stream:
        standin.write_pieces(stream, b"abcdefg", 3)
        standin.write_pieces(stream, b"", 3)
    assert (tmp_path / "out").read_bytes() == b"abcdefg"


def test_a_wait_ends_when_the_reader_goes() -> None:
    read, write = os.pipe()
    with os.fdopen(write, "wb") as stream:
        assert not standin.session_gone(stream)
        assert standin.wait_while_connected(0.05, stream)
        os.close(read)
        started = time.monotonic()
        assert not standin.wait_while_connected(30, stream)
        assert time.monotonic() - started < 15  # not the 30 s: it noticed the reader leave
        assert standin.session_gone(stream)


def test_as_a_program_it_answers_with_the_exit_code(tmp_path: Path) -> None:
    line = _adfs_command()
    env = {**os.environ, standin.PROFILE_ENV: str(FAULTS / "powershell-error" / "faulty.yaml"),
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "agent.lab.powershell_standin",
                           *line.split()[1:]], cwd=tmp_path, env=env, capture_output=True,
                          timeout=60, check=False)
    expected = run_command_line(load_profile(FAULTS / "powershell-error" / "faulty.yaml"), line)
    assert (done.stdout, done.stderr, done.returncode) == (
        expected.stdout, expected.stderr, expected.exit_code)
    assert done.returncode == 1
