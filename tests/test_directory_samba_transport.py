"""The LDAP connector's transport against a real Samba AD DC: TLS, binds, fallbacks, errors.

Every connection goes to loopback: the DC's address (named in its certificate), its alias (not
named), or a closed port; the one unresolvable name is answered locally
(see `test_unresolvable_host`).
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Callable, Iterator

import ldap3.core.tls as ldap3_tls
import pytest
from pytest_mock import MockerFixture
from sambafixtures import GROUP, SambaLab, ldap_settings, samba_lab

from agent.connectors import ldap as ldap_connector
from agent.connectors.directory import read_directory
from agent.connectors.errors import ConnectorError, ErrorKind
from agent.connectors.ldap import connect, paged_search
from agent.inventory import DirectorySettings, Secret

__all__ = ["ldap_settings", "samba_lab"]  # fixtures, used by name

pytestmark = [
    pytest.mark.needs_server,
    # ldap3 2.9.1 verifies host names with ssl.match_hostname, deprecated since Python 3.7.
    pytest.mark.filterwarnings("ignore:ssl.match_hostname\\(\\) is deprecated:DeprecationWarning"),
]

Settings = Callable[..., DirectorySettings]


def read_ok(settings: DirectorySettings, samba_lab: SambaLab) -> None:
    """The connector connects and binds, and the connection reads the group.

    (`read_directory` as a whole is exercised over LDAPS by the check tests and over StartTLS
    below; Samba's transitive-membership search costs about 0.5 s, not worth repeating here.)
    """
    conn = connect(settings)
    try:
        found = list(paged_search(conn, settings.base_dn, f"(sAMAccountName={GROUP})", ["cn"]))
    finally:
        conn.unbind()
    assert [entry["dn"] for entry in found] == [samba_lab.dns[GROUP]]


def refused(settings: DirectorySettings) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        read_directory(settings, ["LAB\\svc-adfs"])
    return caught.value


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound without listen: connections are refused)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, never listening
        yield holder.getsockname()[1]


# -- what works ----------------------------------------------------------------------------------


def test_ldaps_with_the_lab_ca(ldap_settings: Settings, samba_lab: SambaLab) -> None:
    read_ok(ldap_settings(), samba_lab)


def test_starttls_on_389(ldap_settings: Settings, samba_lab: SambaLab) -> None:
    facts = read_directory(
        ldap_settings(urls=(samba_lab.dc.ldap_url,), starttls=True), ["LAB\\svc-adfs"]
    )
    assert facts["group"]["dn"] == samba_lab.dns[GROUP]
    assert facts["accounts"]["LAB\\svc-adfs"]["member_of_group"] is True


def test_the_expected_server_name_when_the_url_host_is_not_in_the_certificate(
    ldap_settings: Settings, samba_lab: SambaLab
) -> None:
    settings = ldap_settings(
        urls=(f"ldaps://{samba_lab.alias}",), server_name=samba_lab.dc.server_name
    )
    read_ok(settings, samba_lab)


def test_inline_secret(samba_lab: SambaLab) -> None:
    settings = samba_lab.settings(bind_password=Secret.inline(samba_lab.reader_password))
    read_ok(settings, samba_lab)


def test_validation_off_needs_no_ca(ldap_settings: Settings, samba_lab: SambaLab) -> None:
    read_ok(ldap_settings(ca_file=None, validate_certs=False), samba_lab)


def test_an_unreachable_controller_is_skipped_for_the_next(
    ldap_settings: Settings, samba_lab: SambaLab, closed_port: int, mocker: MockerFixture
) -> None:
    opened = mocker.spy(ldap_connector, "_open")
    settings = ldap_settings(urls=(f"ldaps://127.0.0.1:{closed_port}", samba_lab.dc.ldaps_url))
    read_ok(settings, samba_lab)
    assert [c.args[1].port for c in opened.call_args_list] == [closed_port, 636]


# -- binds ---------------------------------------------------------------------------------------


def test_wrong_password_is_refused_and_never_shown(
    samba_lab: SambaLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wr0ng-Passw0rd-7f3a"
    monkeypatch.setenv("MFA_AGENT_TEST_WRONG_PASSWORD", wrong)
    settings = samba_lab.settings(bind_password=Secret.from_env("MFA_AGENT_TEST_WRONG_PASSWORD"))
    error = refused(settings)
    assert error.kind is ErrorKind.AUTHENTICATION_REFUSED
    assert error.message == (
        f"bind refused by {samba_lab.dc.ldaps_url}: invalid credentials for {samba_lab.reader_dn}"
    )
    shown = [str(error), repr(error), error.message, *map(str, error.args)]
    shown.append("".join(traceback.format_exception(error)))
    assert not [text for text in shown if wrong in text or samba_lab.reader_password in text]


def test_a_refused_bind_is_not_retried_on_the_next_controller(
    samba_lab: SambaLab, mocker: MockerFixture
) -> None:
    """Trying the same wrong password on every DC only brings the account closer to lockout."""
    opened = mocker.spy(ldap_connector, "_open")
    settings = samba_lab.settings(
        urls=(samba_lab.dc.ldaps_url, samba_lab.dc.ldaps_url),
        bind_password=Secret.inline("Wr0ng-Passw0rd-7f3a"),
    )
    assert refused(settings).kind is ErrorKind.AUTHENTICATION_REFUSED
    assert opened.call_count == 1


def test_simple_bind_on_plain_389_needs_strong_auth(
    ldap_settings: Settings, samba_lab: SambaLab
) -> None:
    """Samba's default, like AD's hardening: "BindSimple: Transport encryption required"."""
    error = refused(ldap_settings(urls=(samba_lab.dc.ldap_url,), allow_plain=True))
    assert error.kind is ErrorKind.STRONG_AUTH_REQUIRED
    assert "use ldaps:// or starttls: true" in error.message


def test_plain_ldap_without_allow_plain_is_refused_before_connecting(
    ldap_settings: Settings, samba_lab: SambaLab, mocker: MockerFixture
) -> None:
    opened = mocker.spy(ldap_connector, "_open")
    resolved = mocker.spy(ldap_connector, "_resolve")
    error = refused(ldap_settings(urls=(samba_lab.dc.ldap_url,)))
    assert error.kind is ErrorKind.INSECURE_TRANSPORT_REFUSED
    assert error.message == (
        f"{samba_lab.dc.ldap_url} is plain LDAP: use ldaps://, starttls: true, or allow_plain: true"
    )
    assert (opened.call_count, resolved.call_count) == (0, 0)


# -- TLS verification ----------------------------------------------------------------------------


@pytest.mark.parametrize("starttls", [False, True], ids=["ldaps", "starttls"])
def test_wrong_expected_server_name(
    ldap_settings: Settings, samba_lab: SambaLab, starttls: bool
) -> None:
    url = f"ldap://{samba_lab.alias}" if starttls else f"ldaps://{samba_lab.alias}"
    error = refused(ldap_settings(urls=(url,), starttls=starttls, server_name="dc2.lab.example"))
    assert error.kind is ErrorKind.TLS_VERIFICATION_FAILED
    assert error.message == f"TLS verification failed for {url}: the certificate does not name " + (
        "dc2.lab.example"
    )


@pytest.mark.parametrize("starttls", [False, True], ids=["ldaps", "starttls"])
def test_certificate_from_an_untrusted_ca(
    ldap_settings: Settings, samba_lab: SambaLab, starttls: bool
) -> None:
    """No ca_file: the system's trust store, which does not hold the lab CA."""
    url = samba_lab.dc.ldap_url if starttls else samba_lab.dc.ldaps_url
    error = refused(ldap_settings(urls=(url,), starttls=starttls, ca_file=None))
    assert error.kind is ErrorKind.TLS_VERIFICATION_FAILED
    assert error.message.startswith(f"TLS verification failed for {url}: ")
    assert "certificate" in error.message
    assert error.message.endswith("(trust its CA with mfa_directory.ca_file)")


@pytest.mark.parametrize("starttls", [False, True], ids=["ldaps", "starttls"])
def test_server_name_is_the_only_name_accepted(
    ldap_settings: Settings, samba_lab: SambaLab, starttls: bool
) -> None:
    """The certificate names the URL's address, but server_name expects another name: refused.

    (ldap3's own check accepts the URL host *or* a valid name, so this would connect.)
    """
    url = samba_lab.dc.ldap_url if starttls else samba_lab.dc.ldaps_url
    error = refused(ldap_settings(urls=(url,), starttls=starttls, server_name="dc2.lab.example"))
    assert error.kind is ErrorKind.TLS_VERIFICATION_FAILED
    assert error.message == (
        f"TLS verification failed for {url}: the certificate does not name dc2.lab.example"
    )


def test_server_name_may_be_the_address_in_the_certificate(
    ldap_settings: Settings, samba_lab: SambaLab
) -> None:
    """An IP address as server_name is checked against the certificate's IP SANs."""
    settings = ldap_settings(urls=(f"ldaps://{samba_lab.alias}",), server_name=samba_lab.dc.address)
    read_ok(settings, samba_lab)


def test_ldap3s_own_name_check_and_ssl_match_hostname_are_never_called(
    ldap_settings: Settings, samba_lab: SambaLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenSSL checks the name in the handshake: nothing depends on ssl.match_hostname, which
    Python 3.12 removed (ldap3 2.9.1 then falls back to a backport without IP address SANs)."""

    def forbidden(*args: object) -> None:
        raise AssertionError("ldap3's host name check was called")

    monkeypatch.setattr(ldap3_tls, "check_hostname", forbidden)
    monkeypatch.setattr(ldap3_tls, "match_hostname", forbidden)
    read_ok(ldap_settings(), samba_lab)  # by address: the certificate's IP SAN
    read_ok(ldap_settings(urls=(samba_lab.dc.ldap_url,), starttls=True), samba_lab)
    settings = ldap_settings(urls=(f"ldaps://{samba_lab.alias}",), server_name="dc2.lab.example")
    assert refused(settings).kind is ErrorKind.TLS_VERIFICATION_FAILED


def test_certificate_not_naming_the_url_host(ldap_settings: Settings, samba_lab: SambaLab) -> None:
    error = refused(ldap_settings(urls=(f"ldaps://{samba_lab.alias}",)))
    assert error.kind is ErrorKind.TLS_VERIFICATION_FAILED
    assert error.message.endswith(f"the certificate does not name {samba_lab.alias}")


# -- unreachable ---------------------------------------------------------------------------------


def test_connection_refused(ldap_settings: Settings, closed_port: int) -> None:
    error = refused(ldap_settings(urls=(f"ldaps://127.0.0.1:{closed_port}",)))
    assert error.kind is ErrorKind.CONNECTION_REFUSED
    assert error.message == f"connection refused by ldaps://127.0.0.1:{closed_port}"


def test_unresolvable_host(
    ldap_settings: Settings, samba_lab: SambaLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``.invalid`` never resolves (RFC 6761); answered here so no DNS query leaves the machine."""
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if isinstance(host, str) and host.rstrip(".").endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    error = refused(ldap_settings(urls=("ldaps://nonexistent.invalid",)))
    assert error.kind is ErrorKind.NAME_NOT_RESOLVED
    assert error.message == "name not resolved: nonexistent.invalid"
    # …and an unresolvable controller is skipped like an unreachable one.
    read_ok(ldap_settings(urls=("ldaps://nonexistent.invalid", samba_lab.dc.ldaps_url)), samba_lab)


def test_connect_returns_a_bound_connection(ldap_settings: Settings) -> None:
    conn = connect(ldap_settings())
    try:
        assert conn.bound
        assert conn.server.ssl
    finally:
        conn.unbind()
