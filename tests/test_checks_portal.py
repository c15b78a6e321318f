"""User Portal checks: portal-iis-version, portal-aspnet-v2, portal-in-perimeter."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from checks_helpers import error, host_fn, make_host, nets, run_host, value

from agent.facts import Declared
from agent.model import Status
from checks.portal import place

IIS = host_fn("portal-iis-version")
ASPNET = host_fn("portal-aspnet-v2")
PERIMETER = host_fn("portal-in-perimeter")


def portal(**facts: Any) -> Any:
    return make_host("portal1", ["user_portal"], **facts)


# -- portal-iis-version ---------------------------------------------------------------------------


def iis(installed: Any, major: Any = None, minor: Any = None, feature: Any = None) -> Any:
    return value(installed=installed, major=major, minor=minor, feature_install_state=feature)


@pytest.mark.parametrize(
    ("entry", "status", "said"),
    [
        (iis(True, 5, 1), Status.FAIL, "IIS 5.1 is older than IIS 6"),
        (iis(True, 6, 0), Status.PASS, "asks for IIS 7.0 or greater"),
        (iis(True, 7, 5, "Installed"), Status.PASS, "IIS 7.5 meets the guidance"),
        (iis(True, 10, 0, "Installed"), Status.PASS, "IIS 10.0 meets the guidance"),
        (iis(True, 10, None, "Installed"), Status.PASS, "IIS 10.0"),
        (iis(False, None, None, "Available"), Status.FAIL, "IIS is not installed"),
        (iis(False), Status.FAIL, "IIS is not installed"),
        (iis(True, None, None, "Installed"), Status.ERROR, "version"),
    ],
)
def test_iis_version(entry: Any, status: Status, said: str) -> None:
    outcome = run_host(IIS, portal(iis=entry))
    assert outcome.status is status
    assert said in outcome.reason


def test_iis_6_passes_but_records_the_disagreement() -> None:
    outcome = run_host(IIS, portal(iis=iis(True, 6, 0)))
    assert outcome.evidence["disagreement"] == "MFA Server install page requires IIS 7.0 or greater"
    assert "disagreement" not in run_host(IIS, portal(iis=iis(True, 7, 0))).evidence


@pytest.mark.parametrize(
    "entry", [iis("yes", 10), iis(True, "10"), iis(True, 10.0), error("InetStp unreadable")]
)
def test_iis_bad_fact_is_an_error(entry: Any) -> None:
    assert run_host(IIS, portal(iis=entry)).status is Status.ERROR


# -- portal-aspnet-v2 -----------------------------------------------------------------------------

FRAMEWORK = "C:\\Windows\\Microsoft.NET\\Framework64"
#: What ``aspnet_regiis -lv`` prints (the fact script trims each line).
REGISTERED = [
    f"2.0.50727.0\t\tValid (Root)\t{FRAMEWORK}\\v2.0.50727\\aspnet_isapi.dll",
    f"4.0.30319.0\t\tValid\t{FRAMEWORK}\\v4.0.30319\\aspnet_isapi.dll",
]
ONLY_V4 = REGISTERED[1:]


def aspnet(registry: Any, registered: Any, feature: Any = None) -> Any:
    return value(
        registry_installed=registry,
        path="C:\\Windows\\Microsoft.NET\\Framework64\\v2.0.50727\\" if registry is True else None,
        dll_full_path=None,
        registered_versions=registered,
        feature_install_state=feature,
    )


@pytest.mark.parametrize(
    ("entry", "status", "missing"),
    [
        (aspnet(True, REGISTERED, "Installed"), Status.PASS, []),  # IIS 7+
        (aspnet(True, REGISTERED, None), Status.PASS, []),  # IIS 6: no Web-Asp-Net feature
        (aspnet(True, ["  2.0.50727.0 Valid"], None), Status.PASS, []),
        # Listed, but not Valid (e.g. a broken registration): not registered.
        (aspnet(True, ["2.0.50727.0\tInvalid\tC:\\x"], None), Status.FAIL, ["as Valid"]),
        (aspnet(True, ONLY_V4, "Installed"), Status.FAIL, ["registration with IIS"]),
        (aspnet(True, [], "Installed"), Status.FAIL, ["registration with IIS"]),
        (aspnet(True, REGISTERED, "Available"), Status.FAIL, ["Web-Asp-Net (it is Available)"]),
        (aspnet(False, [], "Available"), Status.FAIL, ["installation", "registration", "Web-Asp"]),
        (aspnet(False, REGISTERED, None), Status.FAIL, ["installation"]),
        (aspnet(False, None, None), Status.FAIL, ["installation"]),  # certain without regiis
    ],
)
def test_aspnet(entry: Any, status: Status, missing: list[str]) -> None:
    outcome = run_host(ASPNET, portal(aspnet_v2=entry))
    assert outcome.status is status, outcome.reason
    if missing:
        parts = outcome.evidence["missing"]
        assert len(parts) == len(missing)
        assert all(word in part for word, part in zip(missing, parts, strict=True))
        assert all(part in outcome.reason for part in parts)
    else:
        assert "missing" not in outcome.evidence


def test_aspnet_registration_unknown_is_an_error() -> None:
    outcome = run_host(ASPNET, portal(aspnet_v2=aspnet(True, None, "Installed")))
    assert outcome.status is Status.ERROR
    assert "aspnet_regiis" in outcome.reason


@pytest.mark.parametrize(
    "entry",
    [
        aspnet(True, "2.0.50727.0 Valid"),  # a string, not a list
        aspnet(True, [2.0]),
        aspnet(1, REGISTERED),
        aspnet(True, REGISTERED, 1),
        error("aspnet_regiis crashed"),
    ],
)
def test_aspnet_bad_fact_is_an_error(entry: Any) -> None:
    assert run_host(ASPNET, portal(aspnet_v2=entry)).status is Status.ERROR


# -- portal-in-perimeter --------------------------------------------------------------------------

DMZ = Declared(
    perimeter=nets("192.0.2.0/24", "2001:db8:d::/64"),
    internal=nets("10.0.0.0/8", "2001:db8:1::/48"),
)


def addresses(*items: Any) -> Any:
    return value(addresses=list(items))


def on_network(declared: Declared, *items: str) -> Any:
    return run_host(PERIMETER, portal(declared=declared, ip_addresses=addresses(*items)))


def test_no_perimeter_declared_is_manual_without_reading_facts() -> None:
    outcome = run_host(PERIMETER, portal(ip_addresses=error("never read")))
    assert outcome.status is Status.MANUAL
    assert "mfa_networks.perimeter" in outcome.reason
    internal_only = Declared(internal=nets("10.0.0.0/8"))
    assert on_network(internal_only, "10.1.1.1").status is Status.MANUAL


def test_several_addresses_all_in_the_perimeter_pass() -> None:
    outcome = on_network(DMZ, "192.0.2.10", "192.0.2.11", "2001:db8:d::10")
    assert outcome.status is Status.PASS
    assert [p["network"] for p in outcome.evidence["placements"]] == [
        "192.0.2.0/24",
        "192.0.2.0/24",
        "2001:db8:d::/64",
    ]


def test_loopback_and_link_local_are_ignored() -> None:
    outcome = on_network(
        DMZ, "127.0.0.1", "::1", "fe80::1c2d:3e4f:5a6b:7c8d%12", "169.254.10.20", "192.0.2.10"
    )
    assert outcome.status is Status.PASS
    assert outcome.evidence["ignored"] == [
        "127.0.0.1",
        "::1",
        "fe80::1c2d:3e4f:5a6b:7c8d%12",
        "169.254.10.20",
    ]
    assert [p["address"] for p in outcome.evidence["placements"]] == ["192.0.2.10"]


def test_an_address_in_an_internal_network_fails() -> None:
    outcome = on_network(DMZ, "192.0.2.10", "10.20.30.40")
    assert outcome.status is Status.FAIL
    assert outcome.evidence["offending"] == ["10.20.30.40 (internal network 10.0.0.0/8)"]
    assert "10.20.30.40" in outcome.reason


def test_ipv6_addresses_are_judged_too() -> None:
    internal_v6 = on_network(DMZ, "192.0.2.10", "2001:db8:1:5::20")
    assert internal_v6.status is Status.FAIL
    assert internal_v6.evidence["offending"] == [
        "2001:db8:1:5::20 (internal network 2001:db8:1::/48)"
    ]
    undeclared_v6 = on_network(DMZ, "192.0.2.10", "2001:db8:ffff::1")
    assert undeclared_v6.status is Status.FAIL
    assert "in no declared perimeter network" in undeclared_v6.reason


def test_an_address_in_no_declared_network_fails() -> None:
    outcome = on_network(DMZ, "198.51.100.7")
    assert outcome.status is Status.FAIL
    assert outcome.evidence["placements"] == [
        {"address": "198.51.100.7", "network": None, "in": "undeclared"}
    ]


def test_the_more_specific_declaration_wins_where_networks_overlap() -> None:
    carved = Declared(perimeter=nets("10.99.0.0/24"), internal=nets("10.0.0.0/8"))
    assert on_network(carved, "10.99.0.5").status is Status.PASS
    assert on_network(carved, "10.98.0.5").status is Status.FAIL
    inverse = Declared(perimeter=nets("10.0.0.0/8"), internal=nets("10.0.5.0/24"))
    assert on_network(inverse, "10.0.5.3").status is Status.FAIL
    same = Declared(perimeter=nets("10.0.0.0/8"), internal=nets("10.0.0.0/8"))
    assert on_network(same, "10.0.0.1").status is Status.FAIL  # a tie: internal


def test_place() -> None:
    address = ipaddress.ip_address("192.0.2.9")
    assert place(address, nets("192.0.2.0/24"), ()) == ("perimeter", nets("192.0.2.0/24")[0])
    assert place(address, (), ()) == ("undeclared", None)


@pytest.mark.parametrize("items", [(), ("127.0.0.1", "fe80::1", "::1")])
def test_nothing_left_to_judge_is_an_error(items: tuple[str, ...]) -> None:
    assert on_network(DMZ, *items).status is Status.ERROR


@pytest.mark.parametrize(
    "entry",
    [
        addresses("192.0.2.10", "not-an-address"),
        addresses("192.0.2.10/24"),
        value(addresses="192.0.2.10"),  # a string, not a list
        value(addresses=[3221225994]),
        value(),
        error("Get-NetIPAddress failed"),
    ],
)
def test_bad_addresses_are_an_error(entry: Any) -> None:
    outcome = run_host(PERIMETER, portal(declared=DMZ, ip_addresses=entry))
    assert outcome.status is Status.ERROR


# -- portal-tls-certificate -----------------------------------------------------------------------

TLS = host_fn("portal-tls-certificate")
WEB = host_fn("mfa-web-services-https")
NOW = "2026-11-30T10:00:00+00:00"
OFF = [{"protocol": p, "enabled": 0, "disabled_by_default": 1}
       for p in ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1")]


def binding(**fields: Any) -> dict[str, Any]:
    base = {"site": "Default Web Site", "binding": "*:443:", "thumbprint": "AB" * 20,
            "subject": "CN=mfa.example", "issuer": "CN=CA", "key_algorithm": "RSA",
            "not_before": "2026-01-01T00:00:00.0000000Z",
            "not_after": "2027-06-01T00:00:00.0000000Z", "key_size": 2048}
    return base | fields


def tls_host(bindings: list[dict[str, Any]], schannel: list[dict[str, Any]] | None = None,
             version: str = "10.0.17763") -> Any:
    return make_host(
        "portal", ["user_portal"],
        portal_tls=value(bindings=bindings, schannel=OFF if schannel is None else schannel),
        clock=value(host_utc=NOW, agent_utc=NOW),
        os=value(caption="Windows Server", version=version, build_number="1",
                 product_type=3))


@pytest.mark.parametrize(("host", "status", "said"), [
    (tls_host([binding()]), Status.PASS, "sound certificates"),
    (tls_host([]), Status.FAIL, "no https binding"),
    (tls_host([binding(subject=None)]), Status.FAIL, "no certificate found"),
    (tls_host([binding(not_after="2026-12-15T00:00:00Z")]), Status.FAIL, "within 30 days"),
    (tls_host([binding(not_after="2026-11-01T00:00:00Z")]), Status.FAIL, "expired on 2026-11-01"),
    (tls_host([binding(not_before="2027-01-01T00:00:00Z")]), Status.FAIL, "not valid before"),
    (tls_host([binding(key_size=1024)]), Status.FAIL, "1024-bit RSA key"),
    (tls_host([binding(key_algorithm="ECC", key_size=256)]), Status.PASS, "sound"),
    (tls_host([binding()], [{"protocol": "TLS 1.0", "enabled": 1, "disabled_by_default": 0}]),
     Status.FAIL, "TLS 1.0, TLS 1.1 on"),
    # no SCHANNEL keys: 2016+ has SSL 2.0/3.0 off by default, TLS 1.0/1.1 on
    (tls_host([binding()], []), Status.FAIL, "leaves TLS 1.0, TLS 1.1 on"),
    (tls_host([binding()], [], version="6.3.9600"), Status.FAIL,
     "leaves SSL 2.0, SSL 3.0, TLS 1.0, TLS 1.1 on"),
    (tls_host([binding(not_after="soon")]), Status.FAIL, "validity could not be read"),
])
def test_portal_tls_certificate(host: Any, status: Status, said: str) -> None:
    outcome = run_host(TLS, host)
    assert outcome.status is status, outcome.reason
    assert said in outcome.reason


def test_portal_tls_errors_without_its_facts() -> None:
    assert run_host(TLS, make_host("p", ["user_portal"])).status is Status.ERROR
    no_clock = make_host("p", ["user_portal"], portal_tls=value(bindings=[], schannel=[]),
                         clock=value(host_utc=NOW))
    assert run_host(TLS, no_clock).status is Status.ERROR


# -- mfa-web-services-https -----------------------------------------------------------------------


def app(path: str = "/MultiFactorAuth", http: tuple[str, ...] = (),
        sdk: str | None = "https://mfa/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx") -> Any:
    return {"site": "Default Web Site", "path": path, "http_bindings": list(http),
            "https_bindings": ["*:443:"], "use_web_service_sdk": "true", "sdk_url": sdk}


@pytest.mark.parametrize(("apps", "status", "said"), [
    ([app()], Status.PASS, "over HTTPS only"),
    ([app(sdk=None), app("/MultiFactorAuthWebServiceSdk", sdk=None)], Status.PASS, "HTTPS only"),
    ([app(http=("*:80:",))], Status.FAIL, "reachable over http (*:80:)"),
    ([app("/MultiFactorAuthMobileAppWebService", sdk="HTTP://mfa/sdk.asmx")], Status.FAIL,
     "reaches the Web Service SDK over HTTP"),
    ([], Status.SKIP, "no MFA Server web application"),
])
def test_mfa_web_services_https(apps: list[Any], status: Status, said: str) -> None:
    host = make_host("w", ["mobile_app_ws"], mfa_web_apps=value(apps=apps))
    outcome = run_host(WEB, host)
    assert outcome.status is status, outcome.reason
    assert said in outcome.reason
