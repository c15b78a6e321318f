"""End-to-end live scans over Basic: HTTPS with the lab's CA, without it, without validation, and
Basic over plain HTTP only where the inventory allows it for that host.

The labs run as their own processes on 127.0.1.x (see `labfixtures`) and are stopped by PID.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CliRun

from agent.report import FILENAMES

pytest.register_assert_rewrite("labfixtures")  # before importing it: its helpers assert
from labfixtures import (  # noqa: E402
    BUILTIN_STATUSES,
    FAST_TIMEOUTS,
    WITHOUT_HUNG_HOST,
    LabProcess,
    Report,
    assert_builtin_results,
    inventory_variant,
    terminal_trust_notes,
)

pytest_plugins = ("labfixtures",)
pytestmark = pytest.mark.needs_server

Runner = Callable[..., CliRun]
UseLab = Callable[[LabProcess], str]

BASIC = {"ansible_winrm_transport": "basic"}
NO_VALIDATION = "TLS certificate validation disabled (ansible_winrm_server_cert_validation: ignore)"
PLAIN_HTTP = "WinRM over plain HTTP without TLS (ansible_winrm_scheme: http)"
INSECURE_ALLOWED = "insecure transport allowed (mfa_allow_insecure_transport)"


def _delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
           ) -> dict[str, dict[str, int]]:
    return {host: {k: v - before.get(host, {}).get(k, 0) for k, v in counts.items()}
            for host, counts in after.items()}


def test_basic_over_https_with_the_lab_ca(
    builtin_https_lab: LabProcess, run_cli: Runner, use_lab: UseLab, tmp_path: Path
) -> None:
    use_lab(builtin_https_lab)
    inventory = inventory_variant(builtin_https_lab.inventory, tmp_path / "basic.yaml",
                                  common=BASIC)
    before = builtin_https_lab.stats()
    result = run_cli("scan", "-i", str(inventory), "--limit", WITHOUT_HUNG_HOST, "--format",
                     "json", *FAST_TIMEOUTS)
    delta = _delta(before, builtin_https_lab.stats())
    assert result.code == 1, result.err
    report = Report.parse(result.out)
    assert "portal02.lab.example" not in report.hosts
    assert_builtin_results(report)
    for name, host in report.hosts.items():
        port = builtin_https_lab.address(name)[1]
        assert host["connection"] == f"winrm/basic over https:{port}"
        assert host["trust_notes"] == []
    for name in BUILTIN_STATUSES:
        assert delta[name]["basic"] > 0, name
        assert delta[name].get("ntlm_logons", 0) == 0, name


def test_https_without_the_ca_fails_verification_on_every_host(
    builtin_https_lab: LabProcess, run_cli: Runner, use_lab: UseLab, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_lab(builtin_https_lab)
    # pywinrm's default trust store ("legacy_requests") also reads these: keep them out.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    inventory = inventory_variant(builtin_https_lab.inventory, tmp_path / "no-ca.yaml",
                                  common=BASIC, drop=["ansible_winrm_ca_trust_path"])
    before = builtin_https_lab.stats()
    result = run_cli("scan", "-i", str(inventory), "--format", "json", *FAST_TIMEOUTS)
    delta = _delta(before, builtin_https_lab.stats())
    assert result.code == 1, result.err  # the (deployment) checks still FAIL
    report = Report.parse(result.out)
    assert list(report.hosts) == builtin_https_lab.hosts  # the hung host too: TLS fails before HTTP
    for name in report.hosts:
        assert report.host_error_kind(name) == "tls-verification-failed", name
        assert report.error(name) == (
            f"TLS verification failed for {name}: unable to get local issuer certificate "
            "(trust its CA with ansible_winrm_ca_trust_path)"
        )
        assert delta[name].get("requests", 0) == 0, name  # not one request, no credentials sent
    assert {r["status"] for r in report.document["results"]
            if r["target"] in report.hosts} == {"ERROR", "MANUAL"}


def test_https_without_validation_works_and_says_so(
    builtin_https_lab: LabProcess, run_cli: Runner, use_lab: UseLab, tmp_path: Path
) -> None:
    use_lab(builtin_https_lab)
    inventory = inventory_variant(
        builtin_https_lab.inventory, tmp_path / "ignore.yaml",
        common={**BASIC, "ansible_winrm_server_cert_validation": "ignore"},
        drop=["ansible_winrm_ca_trust_path"],
    )
    result = run_cli("scan", "-i", str(inventory), "--limit", WITHOUT_HUNG_HOST,
                     "-o", str(tmp_path / "out"), "--format", "json", *FAST_TIMEOUTS)
    assert result.code == 1, result.err
    report = Report.parse((tmp_path / "out" / FILENAMES["json"]).read_text())
    assert_builtin_results(report)
    shown = terminal_trust_notes(result.out)
    for name, host in report.hosts.items():
        assert host["trust_notes"] == [NO_VALIDATION], name
        assert shown[name] == {NO_VALIDATION}, name


def test_basic_over_plain_http_only_where_the_host_allows_it(
    unencrypted_lab: LabProcess, run_cli: Runner, use_lab: UseLab, tmp_path: Path
) -> None:
    use_lab(unencrypted_lab)
    allowed, refused = "adfs01.lab.example", "sync01.lab.example"
    inventory = inventory_variant(
        unencrypted_lab.inventory, tmp_path / "plain.yaml", common=BASIC,
        host_vars={allowed: {"mfa_allow_insecure_transport": True}},
    )
    before = unencrypted_lab.stats()
    result = run_cli("scan", "-i", str(inventory), "--limit", f"{allowed},{refused}",
                     "-o", str(tmp_path / "out"), "--format", "json", *FAST_TIMEOUTS)
    delta = _delta(before, unencrypted_lab.stats())
    assert result.code == 1, result.err
    report = Report.parse((tmp_path / "out" / FILENAMES["json"]).read_text())

    assert_builtin_results(report, [allowed])
    assert report.hosts[allowed]["trust_notes"] == [PLAIN_HTTP, INSECURE_ALLOWED]
    assert delta[allowed]["basic"] > 0
    assert delta[allowed]["plaintext"] > 0  # really unencrypted, as the trust note says

    assert report.host_error_kind(refused) == "insecure-transport-refused"
    error = report.error(refused)
    assert error is not None
    assert error.startswith("basic over plain http would send credentials unencrypted")
    assert "mfa_allow_insecure_transport: true" in error
    assert report.hosts[refused]["trust_notes"] == [PLAIN_HTTP]
    assert delta[refused].get("requests", 0) == 0  # refused before connecting

    assert terminal_trust_notes(result.out) == {allowed: {PLAIN_HTTP, INSECURE_ALLOWED},
                                                refused: {PLAIN_HTTP}}
