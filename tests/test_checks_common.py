"""Checks on every host: mfa-server-retired and clock-skew."""

from __future__ import annotations

import json
from typing import Any

import pytest
from checks_helpers import error, host_fn, make_host, run_host, value

from agent.facts import Declared
from agent.model import Status
from agent.roles import ROLES
from checks.common import parse_utc

RETIRED = host_fn("mfa-server-retired")
SKEW = host_fn("clock-skew")


def mfa_server(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "installed": False,
        "display_name": None,
        "version": None,
        "install_path": None,
    }
    return value(**(base | fields))


# -- mfa-server-retired ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_not_installed_passes_on_any_role(role: str) -> None:
    outcome = run_host(RETIRED, make_host(roles=[role], mfa_server=mfa_server()))
    assert outcome.status is Status.PASS
    assert outcome.evidence["installed"] is False


def test_installed_fails_with_what_was_found() -> None:
    host = make_host(
        roles=["mfa_server"],
        mfa_server=mfa_server(
            installed=True,
            display_name="Multi-Factor Authentication Server",
            version="8.0.1.1",
            install_path="C:\\Program Files\\Multi-Factor Authentication Server\\",
        ),
    )
    outcome = run_host(RETIRED, host)
    assert outcome.status is Status.FAIL
    assert "2024-09-30" in outcome.reason
    assert "8.0.1.1" in outcome.reason
    assert dict(outcome.evidence) == {
        "installed": True,
        "display_name": "Multi-Factor Authentication Server",
        "version": "8.0.1.1",
        "install_path": "C:\\Program Files\\Multi-Factor Authentication Server\\",
    }
    json.dumps(dict(outcome.evidence))


def test_registry_trace_only_still_fails_without_naming_a_product() -> None:
    host = make_host(mfa_server=mfa_server(installed=True, install_path="D:\\MFA\\"))
    outcome = run_host(RETIRED, host)
    assert outcome.status is Status.FAIL
    assert outcome.reason.startswith("MFA Server components are present (at D:\\MFA\\)")


@pytest.mark.parametrize(
    "entry",
    [
        error("Get-ItemProperty: access denied"),
        value(installed="yes"),
        value(installed=True, display_name=7),
        value(),
        {"value": ["installed"]},
        "garbage",
    ],
)
def test_unreadable_or_malformed_is_an_error(entry: Any) -> None:
    outcome = run_host(RETIRED, make_host(mfa_server=entry))
    assert outcome.status is Status.ERROR
    assert outcome.evidence["fact"] == "mfa_server"


def test_missing_fact_and_unreachable_host_are_errors() -> None:
    assert run_host(RETIRED, make_host()).status is Status.ERROR
    unreachable = make_host(unreachable=True, mfa_server=mfa_server())
    outcome = run_host(RETIRED, unreachable)
    assert outcome.status is Status.ERROR
    assert "connection refused" in outcome.reason


# -- clock-skew -----------------------------------------------------------------------------------


def clock(host_utc: Any, agent_utc: Any = "2024-05-01T10:00:00Z") -> dict[str, Any]:
    return value(host_utc=host_utc, agent_utc=agent_utc)


@pytest.mark.parametrize(
    ("host_utc", "status", "skew"),
    [
        ("2024-05-01T10:00:00Z", Status.PASS, 0.0),
        ("2024-05-01T10:00:02.5000000Z", Status.PASS, 2.5),  # PowerShell 'o': 7 fraction digits
        ("2024-05-01T09:58:00Z", Status.PASS, -120.0),
        ("2024-05-01T10:05:00Z", Status.PASS, 300.0),  # the limit itself passes
        ("2024-05-01T10:05:00.001Z", Status.FAIL, 300.001),
        ("2024-05-01T09:50:00Z", Status.FAIL, -600.0),
        ("2024-05-01T12:00:00+02:00", Status.PASS, 0.0),  # same instant, another offset
        ("2024-05-01T10:00:30", Status.PASS, 30.0),  # no offset: taken as UTC
        ("2024-05-02T10:00:00Z", Status.FAIL, 86400.0),
    ],
)
def test_skew_against_the_default_limit(host_utc: str, status: Status, skew: float) -> None:
    outcome = run_host(SKEW, make_host(clock=clock(host_utc)))
    assert outcome.status is status, outcome.reason
    assert outcome.evidence["skew_seconds"] == pytest.approx(skew)
    assert outcome.evidence["max_seconds"] == 300
    assert ("ahead of" if skew >= 0 else "behind") in outcome.reason


def test_declared_limit_is_used() -> None:
    tight = Declared(clock_skew_max_seconds=60)
    host = make_host(declared=tight, clock=clock("2024-05-01T10:01:01Z"))
    outcome = run_host(SKEW, host)
    assert outcome.status is Status.FAIL
    assert outcome.evidence["max_seconds"] == 60
    assert "60 s" in outcome.reason


@pytest.mark.parametrize(
    ("host_utc", "agent_utc"),
    [
        ("yesterday", "2024-05-01T10:00:00Z"),
        ("2024-05-01", "2024-05-01T10:00:00Z"),  # a date is not a clock reading
        ("2024-05-01T10:00:00Z", "2024-13-01T10:00:00Z"),
        ("", ""),
        ("0001-01-01T00:00:00+14:00", "2024-05-01T10:00:00Z"),  # before year 1 in UTC
        ("٢٠٢٤-05-01T10:00:00Z", "2024-05-01T10:00:00Z"),  # non-ASCII digits
    ],
)
def test_unparsable_timestamps_are_errors(host_utc: str, agent_utc: str) -> None:
    outcome = run_host(SKEW, make_host(clock=clock(host_utc, agent_utc)))
    assert outcome.status is Status.ERROR
    assert outcome.evidence["host_utc"] == host_utc


@pytest.mark.parametrize(
    "entry",
    [clock(1714557600), clock("2024-05-01T10:00:00Z", None), value(), error("w32tm failed")],
)
def test_wrong_shape_or_missing_clock_is_an_error(entry: Any) -> None:
    assert run_host(SKEW, make_host(clock=entry)).status is Status.ERROR


def test_parse_utc_normalises_to_utc() -> None:
    moment = parse_utc("2024-05-01T12:00:00+02:00")
    assert moment is not None
    assert moment.isoformat() == "2024-05-01T10:00:00+00:00"
    assert parse_utc("not a time") is None


NO_ADAPTER = value(product=None, version=None, gac_assemblies=[])


@pytest.mark.parametrize(("providers", "install", "status"), [
    (["AzureMfaServerAuthentication"], NO_ADAPTER, Status.FAIL),
    (["FormsAuthentication", "WindowsAzureMultiFactorAuthentication"], NO_ADAPTER, Status.FAIL),
    (["AzureMfaAuthentication"], value(product=None, version=None,
                                       gac_assemblies=["MultiFactorAuthenticationAdfsAdapter"]),
     Status.FAIL),
    (["AzureMfaAuthentication"], NO_ADAPTER, Status.PASS),
])
def test_an_ad_fs_farm_on_mfa_server_adapter_is_part_of_the_retired_estate(
    providers: list[str], install: Any, status: Status
) -> None:
    host = make_host(roles=["adfs"], mfa_server=mfa_server(),
                     adfs_providers=value(names=providers), adfs_adapter_install=install)
    outcome = run_host(RETIRED, host)
    assert outcome.status is status
    if status is Status.FAIL:
        assert "retired MFA Server estate" in outcome.reason
        assert "AzureMfaAuthentication" in outcome.reason


def test_an_ad_fs_node_whose_adapter_reads_failed_is_judged_on_mfa_server_alone() -> None:
    host = make_host(roles=["adfs"], mfa_server=mfa_server(), adfs_providers=error(),
                     adfs_adapter_install=error())
    assert run_host(RETIRED, host).status is Status.PASS


def test_the_version_found_is_in_the_evidence() -> None:
    found = mfa_server(installed=True, display_name="Multi-Factor Authentication Server",
                       version="8.1.1.0")
    outcome = run_host(RETIRED, make_host(roles=["mfa_server"], mfa_server=found))
    assert outcome.evidence["version"] == "8.1.1.0"
    assert "version 8.1.1.0" in outcome.reason
