"""Host profiles of the simulated lab: strict loading, the built-in lab, and what a host answers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from expectations import lab_statuses

from agent.errors import InputError
from agent.factscripts import SCRIPTS, by_name, encode_command, fact
from agent.inventory import load_inventory
from agent.lab import HostProfile, builtin_profiles_dir, load_lab, load_profile
from agent.lab.profiles import Faults
from agent.lab.simulate import run_command_line, utc_o_format

REPO = Path(__file__).resolve().parent.parent


def _profile(directory: Path, text: str, name: str = "host.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


GOOD = "name: h1.lab.example\naddress: 127.0.3.1\nroles: [adfs]\n"


# -- the built-in lab --


def test_builtin_lab_matches_the_lab_inventory() -> None:
    lab = load_lab()
    assert lab.directory == builtin_profiles_dir()
    inventory = yaml.safe_load((REPO / "inventory" / "lab.yaml").read_text())
    expected: dict[str, tuple[str, set[str]]] = {}
    for group, body in inventory["all"]["children"].items():
        for name, host_vars in body["hosts"].items():
            address, roles = expected.get(name, (host_vars["ansible_host"], set()))
            expected[name] = (address, roles | {group})
    assert {h.name: (h.address, set(h.roles)) for h in lab.hosts} == expected
    for key in ("mfa_networks", "mfa_deployment"):
        assert lab.inventory_vars[key] == inventory["all"]["vars"][key]


REGENERATE = "stale: regenerate it with `python -m agent.lab.record` (README, 'The simulated lab')"


def test_builtin_lab_matches_the_recorded_facts() -> None:
    """inventory/lab.facts.json is what the profiles (and the fact declarations) make today."""
    lab = load_lab()
    document = json.loads((REPO / "inventory" / "lab.facts.json").read_text())
    recorded = document["hosts"]
    assert set(recorded) == {h.name for h in lab.hosts}, REGENERATE
    inventory = load_inventory(REPO / "inventory" / "lab.yaml")
    assert document["inventory"] == {"path": "inventory/lab.yaml",
                                     "digest": inventory.digest}, REGENERATE
    for host in lab.hosts:
        record = recorded[host.name]
        if record["error"] is not None:
            kind = record["error"]["kind"]
            assert (kind, host.faults) in {
                ("authentication-refused", Faults(wrong_password=True)),
                ("timed-out", Faults(hang=True)),
            }
            continue
        assert host.faults == Faults()
        facts = dict(record["facts"])
        clock = facts.pop("clock")["value"]
        skew = (dt.datetime.fromisoformat(clock["host_utc"])
                - dt.datetime.fromisoformat(clock["agent_utc"])).total_seconds()
        # Recorded from a live scan: the skew carries a few ms of command time.
        assert host.clock_skew_seconds == pytest.approx(skew, abs=1.0)
        assert dict(host.facts) == {k: v["value"] for k, v in facts.items()}, REGENERATE


def test_builtin_highlights() -> None:
    lab = load_lab()
    assert lab.host("adfs01.lab.example").facts["os"]["version"] == "6.2.9200"
    assert lab.host("adfs02.lab.example").facts["adfs"]["service_account"] == "LAB\\gmsa-adfs$"
    assert lab.host("mfa01.lab.example").clock_skew_seconds == 450
    assert lab.host("mfa02.lab.example").faults.wrong_password
    portal = lab.host("portal01.lab.example")
    assert portal.facts["ip_addresses"]["addresses"][0] == "10.10.2.31"
    assert (portal.facts["iis"]["major"], portal.facts["iis"]["minor"]) == (8, 5)
    assert lab.host("portal02.lab.example").faults.hang
    assert lab.host("sync01.lab.example").facts["adsync"] == {"service_status": "Running"}


def test_a_profile_extends_the_healthy_base_host_of_a_role(tmp_path: Path) -> None:
    text = ("name: h1.lab.example\naddress: 127.0.3.1\nextends: adfs\n"
            "facts: {os: {version: '6.2.9200'}}\nfact_errors: {adfs_providers: denied}\n")
    profile = load_profile(_profile(tmp_path, text))
    assert profile.roles == ("adfs",)
    healthy_os = dict(fact("os").healthy)  # type: ignore[union-attr]
    assert profile.facts["os"] == {**healthy_os, "version": "6.2.9200"}
    assert profile.facts["adfs"] == fact("adfs").healthy  # type: ignore[union-attr]
    assert "adfs_providers" not in profile.facts
    assert profile.fact_errors == {"adfs_providers": "denied"}
    assert "clock" not in profile.facts  # computed by the lab


# -- strict loading --


def _problems(path: Path) -> list[str]:
    with pytest.raises(InputError) as raised:
        load_profile(path)
    return [str(p) for p in raised.value.problems]


def test_a_good_profile_loads(tmp_path: Path) -> None:
    profile = load_profile(_profile(tmp_path, GOOD + "faults: {slow_seconds: 1, hang: false}\n"))
    assert profile == HostProfile("h1.lab.example", "127.0.3.1", ("adfs",),
                                  faults=Faults(slow_seconds=1.0), source=profile.source)


@pytest.mark.parametrize(("extra", "expected"), [
    ("colour: red\n", "host.yaml:4: [colour] unknown key 'colour'"),
    ("faults: {explode: true}\n", "[faults.explode] unknown fault 'explode'"),
    ("faults: {hang: 1}\n", "[faults.hang] must be true or false, not int"),
    ("faults: {slow_seconds: -1}\n", "[faults.slow_seconds] must be a number of seconds"),
    ("faults: {max_command_line: 0}\n", "[faults.max_command_line] must be at least 1"),
    ("facts: {clock: {host_utc: x}}\n", "[facts.clock] 'clock' is computed by the lab"),
    ("facts: {shoe_size: {}}\n", "[facts.shoe_size] unknown fact 'shoe_size'"),
    ("facts: {os: [1]}\n", "[facts.os] a fact value must be a mapping, not list"),
    ("facts: {os: {when: 2024-01-01}}\n", "[facts.os] a fact value must be plain JSON data"),
    ("facts: {os: {}}\nfact_errors: {os: boom}\n", "[fact_errors.os] 'os' has both a value"),
    ("fact_errors: {os: ''}\n", "[fact_errors.os] the error must be a non-empty string"),
    ("clock_skew_seconds: soon\n", "[clock_skew_seconds] must be a number of seconds"),
    ("roles: [adfs]\n", "duplicate key"),
    ("extends: toaster\n", "[extends] extends 'toaster', not a role"),
    ("extends: adfs\nfacts: {os: {product_type: '3'}}\n",
     "[facts.os] 'os' does not fit its schema at 'product_type': expected integer"),
])
def test_profile_problems_name_file_line_and_key(tmp_path: Path, extra: str,
                                                 expected: str) -> None:
    problems = _problems(_profile(tmp_path, GOOD + extra))
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(str(tmp_path / "host.yaml")) for p in problems)


@pytest.mark.parametrize(("text", "expected"), [
    ("name: h\naddress: 10.0.0.1\n", "[address] must be a loopback address"),
    ("name: h\naddress: nowhere\n", "[address] is not an IP address"),
    ("name: h\n", "missing required key 'address'"),
    ("name: 'a b'\naddress: 127.0.0.9\n", "[name] must be a host name"),
    ("name: h\naddress: 127.0.0.9\nroles: [dns]\n", "[roles[0]] unknown role 'dns'"),
    ("- a\n- b\n", "a host profile must be a mapping, not list"),
    ("name: [unclosed\n", "invalid YAML"),
    ("", "the file is empty"),
])
def test_more_profile_problems(tmp_path: Path, text: str, expected: str) -> None:
    problems = _problems(_profile(tmp_path, text))
    assert any(expected in p for p in problems), problems
    if expected in {"invalid YAML", "the file is empty"}:
        assert len(problems) == 1, problems


def test_a_lab_directory_rejects_clashes_and_generated_vars(tmp_path: Path) -> None:
    _profile(tmp_path, GOOD, "a.yaml")
    _profile(tmp_path, GOOD.replace("127.0.3.1", "127.0.3.2"), "b.yaml")
    _profile(tmp_path, GOOD.replace("h1.", "h3."), "c.yaml")
    _profile(tmp_path, "ansible_password: hunter2\nmfa_networks: {}\n", "_lab.yaml")
    with pytest.raises(InputError) as raised:
        load_lab(tmp_path)
    text = str(raised.value)
    assert "b.yaml:1: [name] host 'h1.lab.example' is also defined in" in text
    assert "c.yaml:2: [address] address 127.0.3.1 is also used by h1.lab.example" in text
    assert "_lab.yaml:1: [ansible_password] 'ansible_password' is written by the lab" in text
    assert "hunter2" not in text


def test_an_empty_lab_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="contains no host profiles"):
        load_lab(tmp_path)
    with pytest.raises(InputError, match="is not a directory"):
        load_lab(tmp_path / "missing")


# -- what a host answers --


def _host(**faults: Any) -> HostProfile:
    return HostProfile(
        "h.lab.example", "127.0.3.9", ("adfs",),
        facts={"os": {"caption": "W", "version": "10.0.17763", "build_number": "17763",
                      "product_type": 3}},
        fact_errors={"mfa_server": "Access is denied."},
        clock_skew_seconds=-90.5,
        faults=Faults(**faults),
    )


def test_a_fact_script_gets_values_errors_not_found_and_the_clock() -> None:
    base = by_name("base")
    assert base is not None
    now = dt.datetime(2026, 11, 28, 3, 0, 0, 123456, tzinfo=dt.UTC)
    result = run_command_line(_host(), base.command_line(), now)
    assert (result.exit_code, result.stderr) == (0, b"")
    assert result.stdout.endswith(b"\r\n")
    document = json.loads(result.stdout)
    assert document["os"] == {"value": _host().facts["os"]}
    assert document["mfa_server"] == {"error": "Access is denied."}
    assert "not found" in document["ip_addresses"]["error"]
    assert document["clock"] == {"value": {"host_utc": "2026-11-28T02:58:29.6234560Z"}}


def test_utc_o_format_is_dotnet_round_trip() -> None:
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    assert utc_o_format(moment) == "2026-01-02T03:04:05.0000060Z"
    assert dt.datetime.fromisoformat(utc_o_format(moment)) == moment


def test_commands_that_are_not_fact_scripts() -> None:
    host = _host()
    ipconfig = run_command_line(host, "ipconfig /all")
    assert ipconfig.exit_code == 1
    assert ipconfig.stderr.startswith(b"'ipconfig' is not recognized as an internal or external")
    unknown = run_command_line(host, encode_command("Get-Thing -Id 1"))
    assert unknown.exit_code == 1
    assert b"The term 'Get-Thing' is not recognized as the name of a cmdlet" in unknown.stderr
    assert unknown.stderr.startswith(b"#< CLIXML\r\n")
    tagged = run_command_line(host, encode_command("$MfaAgentScript = 'nosuch/1'\nFoo-Bar"))
    assert b"'Foo-Bar' is not recognized" in tagged.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_the_command_line_limit(script: Any) -> None:
    limit = len(script.command_line())
    assert run_command_line(_host(max_command_line=limit), script.command_line()).exit_code == 0
    too_long = run_command_line(_host(max_command_line=limit - 1), script.command_line())
    assert (too_long.exit_code, too_long.stderr) == (1, b"The command line is too long.\r\n")


def test_powershell_error_text_can_be_given() -> None:
    base = by_name("base")
    assert base is not None
    result = run_command_line(_host(powershell_error="Out of memory."), base.command_line())
    assert (result.stdout, result.exit_code) == (b"", 1)
    assert b'<S S="Error">Out of memory._x000D__x000A_</S>' in result.stderr


def test_the_built_in_scenarios_show() -> None:
    """What each built-in profile is there to show (its comment), evaluated in-process; the full
    expected results are derived (tests/expectations.py), these are the scenarios' point."""
    statuses = lab_statuses(load_lab())
    assert statuses["adfs01.lab.example"]["adfs-os-version"] == "FAIL"  # 2012, not 2012 R2
    assert statuses["adfs02.lab.example"]["adfs-adapter-registered"] == "FAIL"  # no adapter
    assert statuses["mfa01.lab.example"]["mfa-server-retired"] == "FAIL"
    assert statuses["mfa01.lab.example"]["clock-skew"] == "FAIL"  # 7.5 minutes fast
    assert statuses["portal01.lab.example"]["portal-in-perimeter"] == "FAIL"
    assert statuses["portal01.lab.example"]["portal-aspnet-v2"] == "FAIL"
    assert statuses["sync01.lab.example"]["directory-sync-component"] == "PASS"
    assert set(statuses["mfa02.lab.example"].values()) == {"ERROR"}  # refuses the password
    assert set(statuses["portal02.lab.example"].values()) == {"ERROR"}  # never answers


# -- output encoding --


@pytest.mark.parametrize("caption", ["Microsoft Windows Server 2019 Standard ©",
                                     "Майкрософт Windows Server 2012 R2 Datacenter",
                                     "Microsoft Windows Server 2019 Standard 評価版"])
def test_a_non_ascii_caption_leaves_the_host_as_utf8(tmp_path: Path, caption: str) -> None:
    text = GOOD + f"extends: adfs\nfacts: {{os: {{caption: '{caption}'}}}}\n"
    profile = load_profile(_profile(tmp_path, text.replace("roles: [adfs]\n", "")))
    base = by_name("base")
    assert base is not None
    result = run_command_line(profile, base.command_line())
    assert json.loads(result.stdout.decode("utf-8"))["os"]["value"]["caption"] == caption


def test_without_the_utf8_statement_the_console_code_page_garbles_it(tmp_path: Path) -> None:
    """Why the prelude sets UTF-8: without it, what the console's code page lacks becomes '?'."""
    from agent.lab.simulate import UTF8_OUTPUT

    base = by_name("base")
    assert base is not None
    assert UTF8_OUTPUT in base.text()  # the prelude's statement, as the simulator recognises it
    text = GOOD + "extends: adfs\nfacts: {os: {caption: 'Windows Server 2019 Standard ©'}}\n"
    profile = load_profile(_profile(tmp_path, text.replace("roles: [adfs]\n", "")))
    without = encode_command(base.text().replace(UTF8_OUTPUT, "$null = 0"))
    result = run_command_line(profile, without)
    assert json.loads(result.stdout.decode("utf-8"))["os"]["value"]["caption"] == (
        "Windows Server 2019 Standard ?")
