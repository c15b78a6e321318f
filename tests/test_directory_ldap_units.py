"""Unit tests of the LDAP connector's pieces that need no server: filters, paging, StartTLS,
the account's domain, Kerberos binds (with a stand-in gssapi module) and the TLS name check.

Samba does not enforce AD's MaxPageSize (1,000), so a server test cannot prove that the paging
loop follows cookies to the end; a fake connection returning three pages does.
"""

from __future__ import annotations

import ssl
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import ldap3
import pytest
from pytest_mock import MockerFixture

from agent.connectors import ldap as ldap_connector
from agent.connectors.directory import (
    AccountLookup,
    DomainNames,
    account_filter,
    account_lookup,
    domain_of,
)
from agent.connectors.errors import ConnectorError, ErrorKind
from agent.connectors.ldap import _PAGED_RESULTS, connect, paged_search
from agent.inventory import DirectorySettings, Secret

# -- account_filter ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        ("LAB\\svc-adfs", "(sAMAccountName=svc-adfs)"),
        ("lab\\SVC-ADFS", "(sAMAccountName=SVC-ADFS)"),
        ("LAB\\gmsa-adfs$", "(sAMAccountName=gmsa-adfs$)"),
        ("  LAB\\svc-adfs  ", "(sAMAccountName=svc-adfs)"),
        ("svc-adfs", "(sAMAccountName=svc-adfs)"),
        ("svc-adfs@lab.example", "(userPrincipalName=svc-adfs@lab.example)"),
        ("gmsa-adfs$@lab.example", "(userPrincipalName=gmsa-adfs$@lab.example)"),
    ],
)
def test_account_filter_by_form(account: str, expected: str) -> None:
    assert account_filter(account) == expected


@pytest.mark.parametrize(
    "account",
    [
        "NT AUTHORITY\\NETWORK SERVICE",
        "nt authority\\network service",
        "NT AUTHORITY\\SYSTEM",
        "NT AUTHORITY\\LocalService",
        "NT SERVICE\\adfssrv",
        "BUILTIN\\Administrators",
        ".\\localadmin",
        "LocalSystem",
        "localsystem",
        "NetworkService",
        "LocalService",
        "",
        "   ",
    ],
)
def test_built_in_accounts_are_not_looked_up(account: str) -> None:
    assert account_filter(account) is None


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        ("LAB\\svc*", "(sAMAccountName=svc\\2a)"),
        ("LAB\\*", "(sAMAccountName=\\2a)"),
        ("LAB\\svc(x)", "(sAMAccountName=svc\\28x\\29)"),
        ("LAB\\a)(objectClass=*", "(sAMAccountName=a\\29\\28objectClass=\\2a)"),
        # Only the first backslash separates the domain; later ones belong to the name.
        ("LAB\\a\\b", "(sAMAccountName=a\\5cb)"),
        ("LAB\\svc-adf\\2a", "(sAMAccountName=svc-adf\\5c2a)"),
        ("LAB\\nul\x00", "(sAMAccountName=nul\\00)"),
        ("svc*(x)@lab.example", "(userPrincipalName=svc\\2a\\28x\\29@lab.example)"),
        ("*@lab.example", "(userPrincipalName=\\2a@lab.example)"),
    ],
)
def test_account_filter_escapes_every_metacharacter(account: str, expected: str) -> None:
    assert account_filter(account) == expected


# -- paged_search --------------------------------------------------------------------------------


def _page_result(cookie: bytes | None) -> dict[str, Any]:
    result: dict[str, Any] = {"result": 0, "description": "success"}
    if cookie is not None:
        result["controls"] = {
            _PAGED_RESULTS: {
                "description": "PagedResults",
                "criticality": False,
                "value": {"size": 0, "cookie": cookie},
            }
        }
    return result


class FakeConnection:
    """Answers searches from a list of pages: (entries, cookie returned with the page)."""

    def __init__(self, pages: list[tuple[list[dict[str, Any]], bytes | None]]) -> None:
        self.pages = pages
        self.calls: list[dict[str, Any]] = []
        self.response: list[dict[str, Any]] | None = None
        self.result: dict[str, Any] = {}

    def search(self, base: str, search_filter: str, **kwargs: Any) -> bool:
        self.calls.append({"base": base, "filter": search_filter, **kwargs})
        entries, cookie = self.pages[len(self.calls) - 1]
        self.response = entries
        self.result = _page_result(cookie)
        return True


def entry(dn: str) -> dict[str, Any]:
    return {"type": "searchResEntry", "dn": dn, "attributes": {"sAMAccountName": [dn]}}


def test_paged_search_follows_cookies_through_three_pages() -> None:
    conn = FakeConnection(
        [
            ([entry("a"), entry("b")], b"cookie-1"),
            ([entry("c"), {"type": "searchResRef", "uri": ["ldap://other/"]}, entry("d")], b"c2"),
            ([entry("e")], b""),
        ]
    )
    found = list(paged_search(conn, "DC=lab", "(objectClass=user)", ["sAMAccountName"], 2))
    assert [e["dn"] for e in found] == ["a", "b", "c", "d", "e"]
    assert [c["paged_cookie"] for c in conn.calls] == [None, b"cookie-1", b"c2"]
    assert {c["paged_size"] for c in conn.calls} == {2}
    assert {(c["base"], c["filter"]) for c in conn.calls} == {("DC=lab", "(objectClass=user)")}
    assert all(c["attributes"] == ["sAMAccountName"] for c in conn.calls)


def test_paged_search_stops_when_the_server_returns_no_paging_control() -> None:
    conn = FakeConnection([([entry("a")], None), ([entry("never")], b"")])
    found = list(paged_search(conn, "DC=lab", "(cn=*)", ["cn"]))
    assert [e["dn"] for e in found] == ["a"]
    assert len(conn.calls) == 1
    assert conn.calls[0]["paged_size"] == 1000


def test_paged_search_asks_for_the_next_page_only_when_the_caller_wants_it() -> None:
    conn = FakeConnection([([entry("a")], b"more"), ([entry("b")], b"")])
    pages = paged_search(conn, "DC=lab", "(cn=*)", ["cn"])
    assert next(pages)["dn"] == "a"
    assert len(conn.calls) == 1


def test_a_failed_page_is_a_directory_error() -> None:
    class Failing(FakeConnection):
        def search(self, base: str, search_filter: str, **kwargs: Any) -> bool:
            super().search(base, search_filter, **kwargs)
            if len(self.calls) == 2:
                self.response = []
                self.result = {"result": 53, "description": "unwillingToPerform"}
                return False
            return True

    conn = Failing([([entry("a")], b"next"), ([], b"")])
    pages = paged_search(conn, "DC=lab", "(cn=*)", ["cn"])
    assert next(pages)["dn"] == "a"
    with pytest.raises(ConnectorError) as caught:
        next(pages)
    assert caught.value.kind is ErrorKind.DIRECTORY_ERROR
    assert caught.value.message == "search (cn=*) under DC=lab failed: unwillingToPerform"


# -- StartTLS --------------------------------------------------------------------------------------


def test_no_simple_bind_when_starttls_did_not_start(mocker: MockerFixture) -> None:
    """ldap3's start_tls() can return False instead of raising; the password must not follow."""
    conn = mocker.MagicMock(name="Connection")
    conn.start_tls.return_value = False
    mocker.patch.object(ldap3, "Connection", return_value=conn)
    settings = DirectorySettings(
        urls=("ldap://127.0.0.1:389",),
        base_dn="DC=lab,DC=example",
        bind_dn="CN=reader,CN=Users,DC=lab,DC=example",
        bind_password=Secret.inline("Never-Sent-1"),
        starttls=True,
    )
    with pytest.raises(ConnectorError) as caught:
        connect(settings)
    assert caught.value.kind is ErrorKind.TLS_VERIFICATION_FAILED
    assert caught.value.message == (
        "StartTLS with ldap://127.0.0.1:389 failed: the connection is not encrypted"
    )
    conn.start_tls.assert_called_once()
    conn.bind.assert_not_called()


# -- the account's domain ------------------------------------------------------------------------

LAB = DomainNames("lab.example", "LAB")


@pytest.mark.parametrize(
    ("base_dn", "expected"),
    [
        ("DC=lab,DC=example", ("lab.example", "DC=lab,DC=example")),
        ("dc=LAB, dc=Example", ("lab.example", "DC=LAB,DC=Example")),
        ("OU=Service Accounts,DC=corp,DC=example", ("corp.example", "DC=corp,DC=example")),
        ("DC=single", ("single", "DC=single")),
        ("O=Example,C=NL", (None, None)),
        ("not a dn", (None, None)),
    ],
)
def test_the_domain_is_the_base_dns_trailing_dc_components(
    base_dn: str, expected: tuple[str | None, str | None]
) -> None:
    assert domain_of(base_dn) == expected


@pytest.mark.parametrize(
    "account",
    ["LAB\\svc-adfs", "lab\\svc-adfs", "lab.example\\svc-adfs", "LAB.EXAMPLE.\\svc-adfs"],
)
def test_this_domain_by_netbios_or_dns_name_is_looked_up(account: str) -> None:
    assert account_lookup(account, LAB) == AccountLookup(("(sAMAccountName=svc-adfs)",))


@pytest.mark.parametrize("account", ["OTHERDOM\\svc-adfs", "other.example\\svc-adfs", "LA\\x"])
def test_another_domain_is_not_looked_up_and_says_why(account: str) -> None:
    lookup = account_lookup(account, LAB)
    assert lookup.filters == ()
    domain = account.split("\\")[0]
    assert lookup.reason == (
        f"the account belongs to another domain, {domain}: this directory is the domain "
        "LAB (lab.example)"
    )


def test_without_the_netbios_name_no_domain_is_judged_foreign() -> None:
    """The crossRef could not be read: looking the account up beats calling it foreign."""
    unknown = DomainNames("lab.example", None)
    assert account_lookup("OTHERDOM\\svc-adfs", unknown).filters == ("(sAMAccountName=svc-adfs)",)


@pytest.mark.parametrize(
    ("account", "filters"),
    [
        (
            "svc-nested@lab.example",
            ("(userPrincipalName=svc-nested@lab.example)", "(sAMAccountName=svc-nested)"),
        ),
        (
            "svc-nested@LAB.Example",
            ("(userPrincipalName=svc-nested@LAB.Example)", "(sAMAccountName=svc-nested)"),
        ),
        ("svc-nested@other.example", ("(userPrincipalName=svc-nested@other.example)",)),
        ("svc-nested@sub.lab.example", ("(userPrincipalName=svc-nested@sub.lab.example)",)),
        (
            "svc*(x)@lab.example",
            (
                "(userPrincipalName=svc\\2a\\28x\\29@lab.example)",
                "(sAMAccountName=svc\\2a\\28x\\29)",
            ),
        ),
        (
            "a@b)(cn=*@lab.example",
            (
                "(userPrincipalName=a@b\\29\\28cn=\\2a@lab.example)",
                "(sAMAccountName=a@b\\29\\28cn=\\2a)",
            ),
        ),
        (
            "gmsa-adfs$@lab.example",
            ("(userPrincipalName=gmsa-adfs$@lab.example)", "(sAMAccountName=gmsa-adfs$)"),
        ),
    ],
)
def test_a_upn_of_this_domain_falls_back_to_the_implicit_upn(
    account: str, filters: tuple[str, ...]
) -> None:
    assert account_lookup(account, LAB).filters == filters


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        ("NT AUTHORITY\\NETWORK SERVICE", "a built-in or local Windows account"),
        (".\\localadmin", "a built-in or local Windows account"),
        ("LocalSystem", "a built-in Windows account"),
        ("LAB\\", "the account name is empty"),
        ("@lab.example", "the account name is empty"),
        ("svc@", "the account name is empty"),
    ],
)
def test_accounts_that_are_not_looked_up_say_why(account: str, reason: str) -> None:
    lookup = account_lookup(account, LAB)
    assert lookup.filters == ()
    assert lookup.reason is not None and lookup.reason.startswith(reason)


# -- Kerberos: the optional extra, the bind, its errors ------------------------------------------

KERBEROS = DirectorySettings(
    urls=("ldaps://dc1.lab.example:636",),
    base_dn="DC=lab,DC=example",
    auth="kerberos",
    timeout_seconds=3,
)


def test_kerberos_without_gssapi_is_a_missing_extra(
    monkeypatch: pytest.MonkeyPatch, mocker: MockerFixture
) -> None:
    monkeypatch.setitem(sys.modules, "gssapi", None)  # `import gssapi` raises ImportError
    opened = mocker.patch.object(ldap3, "Connection")
    resolved = mocker.spy(ldap_connector, "_resolve")
    with pytest.raises(ConnectorError) as caught:
        connect(KERBEROS)
    assert caught.value.kind is ErrorKind.MISSING_EXTRA
    assert "pip install 'mfa-agent[kerberos]'" in caught.value.message
    assert caught.value.message.startswith("auth: kerberos needs the Python package gssapi")
    assert (opened.call_count, resolved.call_count) == (0, 0)


class FakeGSSError(Exception):
    """gssapi.exceptions.GSSError as far as the connector uses it."""

    def __init__(self, minor: str) -> None:
        super().__init__(f"Major (1): Unspecified GSS failure, Minor (2): {minor}")
        self.maj_code, self.min_code, self.minor = 1, 2, minor

    def get_all_statuses(self, code: int, is_major: bool) -> list[str]:
        return ["Unspecified GSS failure"] if is_major else [self.minor]


class FakeMissingCredentials(FakeGSSError):
    pass


class FakeExpiredCredentials(FakeGSSError):
    pass


@pytest.fixture
def fake_gssapi(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in gssapi module, so these tests run whether the extra is installed or not."""
    module = types.ModuleType("gssapi")
    module.exceptions = types.SimpleNamespace(  # type: ignore[attr-defined]
        GSSError=FakeGSSError,
        MissingCredentialsError=FakeMissingCredentials,
        ExpiredCredentialsError=FakeExpiredCredentials,
    )
    monkeypatch.setitem(sys.modules, "gssapi", module)
    return module


@pytest.fixture
def fake_connection(mocker: MockerFixture) -> Any:
    """ldap3.Connection replaced: opening works; what bind() does is up to the test."""
    conn = mocker.MagicMock(name="Connection")
    conn.bind.return_value = True
    mocker.patch.object(ldap3, "Connection", return_value=conn)
    mocker.patch.object(ldap_connector, "_resolve")
    return conn


@pytest.mark.parametrize(
    ("server_name", "principal_host"),
    [(None, "dc1.lab.example"), ("dc1-alias.lab.example", "dc1-alias.lab.example")],
)
def test_kerberos_binds_with_sasl_gssapi_for_ldap_at_the_expected_host(
    fake_gssapi: types.ModuleType,
    fake_connection: Any,
    server_name: str | None,
    principal_host: str,
) -> None:
    assert connect(replace(KERBEROS, server_name=server_name)) is fake_connection
    (server,), kwargs = ldap3.Connection.call_args  # type: ignore[attr-defined]
    assert kwargs["authentication"] == ldap3.SASL
    assert kwargs["sasl_mechanism"] == ldap3.KERBEROS == "GSSAPI"
    assert kwargs["sasl_credentials"] == (principal_host,)
    assert "password" not in kwargs and "user" not in kwargs  # the ticket cache, nothing else
    assert server.tls.expected == principal_host


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            FakeMissingCredentials("No Kerberos credentials available (default cache: FILE:/x)"),
            "No Kerberos credentials available (default cache: FILE:/x): get a ticket with "
            "kinit first (or point KRB5CCNAME at a credential cache)",
        ),
        (FakeExpiredCredentials("Ticket expired"), "Ticket expired: get a ticket with kinit"),
        (
            FakeGSSError("Server not found in Kerberos database"),
            "failed: Server not found in Kerberos database",
        ),
    ],
)
def test_a_kerberos_failure_is_an_authentication_error_and_not_retried(
    fake_gssapi: types.ModuleType, fake_connection: Any, error: FakeGSSError, words: str
) -> None:
    fake_connection.bind.side_effect = error
    settings = replace(KERBEROS, urls=("ldaps://dc1.lab.example", "ldaps://dc2.lab.example"))
    with pytest.raises(ConnectorError) as caught:
        connect(settings)
    assert caught.value.kind is ErrorKind.AUTHENTICATION_REFUSED
    assert caught.value.message.startswith(
        "Kerberos bind to ldaps://dc1.lab.example (service ldap/dc1.lab.example) failed: "
    )
    assert words in caught.value.message
    assert fake_connection.bind.call_count == 1


@pytest.mark.parametrize(
    ("url", "starttls", "words"),
    [
        ("ldap://dc1.lab.example", False, "a Kerberos bind needs an encrypted connection"),
        ("ldaps://dc1.lab.example", False, "a Samba DC needs 'ldap server require strong auth"),
        ("ldap://dc1.lab.example", True, "even over TLS"),
    ],
)
def test_strong_auth_required_explains_itself_for_kerberos(
    fake_gssapi: types.ModuleType, fake_connection: Any, url: str, starttls: bool, words: str
) -> None:
    fake_connection.bind.return_value = False
    fake_connection.result = {"result": 8, "description": "strongerAuthRequired"}
    settings = replace(KERBEROS, urls=(url,), starttls=starttls, allow_plain=not starttls)
    with pytest.raises(ConnectorError) as caught:
        connect(settings)
    assert caught.value.kind is ErrorKind.STRONG_AUTH_REQUIRED
    assert caught.value.message.startswith(f"{url} requires strong authentication: ")
    assert words in caught.value.message


# -- TLS -------------------------------------------------------------------------------------------


def test_an_unreadable_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    settings = replace(KERBEROS, auth="simple", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConnectorError) as caught:
        connect(settings)
    assert caught.value.kind is ErrorKind.CONFIGURATION
    assert caught.value.message == (
        f"cannot use mfa_directory.ca_file {tmp_path / 'missing.pem'}: No such file or directory"
    )
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    with pytest.raises(ConnectorError) as caught:
        connect(replace(settings, ca_file=str(tmp_path / "empty.pem")))
    assert caught.value.kind is ErrorKind.CONFIGURATION
    assert caught.value.message.endswith("empty.pem: it holds no usable PEM certificate")


def test_the_expected_name_is_server_name_alone_else_the_url_host(
    fake_connection: Any,
) -> None:
    settings = replace(KERBEROS, auth="simple")
    connect(settings)
    server = ldap3.Connection.call_args.args[0]  # type: ignore[attr-defined]
    assert (server.tls.expected, server.tls.sni) == ("dc1.lab.example", "dc1.lab.example")
    assert server.tls.context.check_hostname is True
    assert server.tls.valid_names is None  # ldap3's own, more lenient, name check is not used
    connect(replace(settings, server_name="ldap.lab.example"))
    server = ldap3.Connection.call_args.args[0]  # type: ignore[attr-defined]
    assert server.tls.expected == "ldap.lab.example"
    connect(replace(settings, validate_certs=False))
    server = ldap3.Connection.call_args.args[0]  # type: ignore[attr-defined]
    assert server.tls.context.verify_mode == ssl.CERT_NONE
