"""Unit tests of the LDAP connector's pieces that need no server: filters, paging, StartTLS.

Samba does not enforce AD's MaxPageSize (1,000), so a server test cannot prove that the paging
loop follows cookies to the end; a fake connection returning three pages does.
"""

from __future__ import annotations

from typing import Any

import ldap3
import pytest
from pytest_mock import MockerFixture

from agent.connectors.errors import ConnectorError, ErrorKind
from agent.connectors.ldap import _PAGED_RESULTS, account_filter, connect, paged_search
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
