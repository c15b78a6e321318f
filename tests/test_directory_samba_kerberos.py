"""Kerberos (SASL GSSAPI) binds against the real Samba AD DC and its KDC, on loopback.

Each test gets the reader's ticket with MIT ``kinit`` into a credential cache of its own, with a
krb5.conf that names the DC's address as the realm's KDC (`sambafixtures.kerberos_env`), then
reads the directory with ``auth: kerberos``: no password anywhere in the settings. The service
ticket is for ``ldap/dc1.lab.example``, the DC's DNS name, given as server_name (the URL holds
the address, which no service principal names).

Needs the optional extra (``pip install 'mfa-agent[kerberos]'``: the gssapi package, built
against libkrb5-dev) and krb5-user's kinit; skipped locally without them, a failure in CI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sambafixtures import (
    GROUP,
    KerberosEnv,
    SambaLab,
    kerberos_env,
    ldap_settings,
    samba_lab,
)

from agent.connectors.directory import read_directory
from agent.connectors.errors import ConnectorError, ErrorKind
from agent.connectors.ldap import connect, paged_search
from agent.inventory import DirectorySettings

__all__ = ["kerberos_env", "ldap_settings", "samba_lab"]  # fixtures, used by name

pytestmark = pytest.mark.needs_server

Settings = Callable[..., DirectorySettings]


def kerberos(samba_lab: SambaLab, **changes: object) -> DirectorySettings:
    """The lab's settings with ``auth: kerberos``: no bind DN, no password; `changes` override."""
    base: dict[str, object] = {
        "auth": "kerberos",
        "bind_dn": None,
        "bind_password": None,
        "server_name": samba_lab.dc.server_name,
    }
    return samba_lab.settings(**{**base, **changes})


def refused(settings: DirectorySettings) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        read_directory(settings, ["LAB\\svc-adfs"])
    return caught.value


def test_kerberos_bind_over_ldaps_reads_the_directory(
    kerberos_env: KerberosEnv, samba_lab: SambaLab
) -> None:
    assert "ldap/" not in kerberos_env.tickets()  # only the TGT so far
    facts = read_directory(kerberos(samba_lab), ["LAB\\svc-adfs", "svc-nested@lab.example"])
    assert facts["group"]["dn"] == samba_lab.dns[GROUP]
    assert facts["accounts"]["LAB\\svc-adfs"]["member_of_group"] is True
    assert facts["accounts"]["svc-nested@lab.example"]["member_of_group"] is True
    # The bind used Kerberos: the cache now holds the service ticket for the DC's LDAP service.
    assert f"ldap/{samba_lab.dc.server_name}@LAB.EXAMPLE" in kerberos_env.tickets()


def test_kerberos_bind_after_starttls(kerberos_env: KerberosEnv, samba_lab: SambaLab) -> None:
    conn = connect(kerberos(samba_lab, urls=(samba_lab.dc.ldap_url,), starttls=True))
    try:
        assert conn.bound
        assert conn.tls_started
        found = paged_search(conn, samba_lab.dc.base_dn, "(sAMAccountName=mfa-reader)", ["cn"])
        assert [entry["dn"] for entry in found] == [samba_lab.reader_dn]
    finally:
        conn.unbind()


def test_kerberos_on_plain_ldap_needs_strong_auth(
    kerberos_env: KerberosEnv, samba_lab: SambaLab
) -> None:
    """No TLS and no SASL signing (ldap3 has none): refused, like AD with LDAP signing required."""
    error = refused(kerberos(samba_lab, urls=(samba_lab.dc.ldap_url,), allow_plain=True))
    assert error.kind is ErrorKind.STRONG_AUTH_REQUIRED
    assert error.message == (
        f"{samba_lab.dc.ldap_url} requires strong authentication: a Kerberos bind needs an "
        "encrypted connection, as mfa-agent does not sign or seal LDAP itself (use ldaps:// or "
        "starttls: true)"
    )


def test_without_a_ticket_the_bind_is_refused_with_a_hint(
    kerberos_env: KerberosEnv, samba_lab: SambaLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-such-ccache"
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{empty}")
    error = refused(kerberos(samba_lab))
    assert error.kind is ErrorKind.AUTHENTICATION_REFUSED
    assert error.message.startswith(
        f"Kerberos bind to {samba_lab.dc.ldaps_url} (service ldap/dc1.lab.example) failed: "
    )
    assert str(empty) in error.message  # the library's own words name the cache it looked in
    assert error.message.endswith(
        ": get a ticket with kinit first (or point KRB5CCNAME at a credential cache)"
    )


def test_a_service_principal_the_kdc_does_not_know(
    kerberos_env: KerberosEnv, samba_lab: SambaLab
) -> None:
    """server_name names no ldap/ principal (certificate checks off, to get as far as Kerberos)."""
    settings = kerberos(samba_lab, server_name="dc9.lab.example", validate_certs=False)
    error = refused(settings)
    assert error.kind is ErrorKind.AUTHENTICATION_REFUSED
    assert error.message == (
        f"Kerberos bind to {samba_lab.dc.ldaps_url} (service ldap/dc9.lab.example) failed: "
        "Server not found in Kerberos database"
    )


def test_the_certificate_is_still_checked_against_server_name(
    kerberos_env: KerberosEnv, samba_lab: SambaLab
) -> None:
    error = refused(kerberos(samba_lab, server_name="dc9.lab.example"))
    assert error.kind is ErrorKind.TLS_VERIFICATION_FAILED
    assert error.message.endswith("the certificate does not name dc9.lab.example")
