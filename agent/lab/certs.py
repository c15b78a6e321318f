"""TLS material for an HTTPS lab: a throw-away lab CA and one server certificate.

The CA's private key never leaves memory; only its certificate is written (``ca.pem``) so that
clients can verify the lab with ``ca_trust_path`` / ``ansible_winrm_ca_trust_path``. The server
certificate carries an IP SAN for every lab address and a DNS SAN for every host name, so
hostname verification works whether a client connects by address or by name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"


@dataclass(frozen=True)
class LabCertificates:
    """Where the lab's TLS files are, and the server certificate itself."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    cert_der: bytes

    def channel_binding_hash(self) -> bytes:
        """RFC 5929 ``tls-server-end-point`` hash of the server certificate (SHA-256 signed)."""
        return hashlib.sha256(self.cert_der).digest()


def _write(path: Path, data: bytes, mode: int) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def create_certificates(
    directory: Path,
    *,
    names: Iterable[str],
    addresses: Iterable[str],
    days: int = 30,
) -> LabCertificates:
    """Generate a lab CA and a server certificate for these names and addresses into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mfa-agent lab"),
        x509.NameAttribute(NameOID.COMMON_NAME, "mfa-agent lab CA"),
    ])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    dns = sorted({n.lower() for n in names})
    ips = sorted({ipaddress.ip_address(a) for a in addresses}, key=str)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(ip) for ip in ips]
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mfa-agent lab"),
        x509.NameAttribute(NameOID.COMMON_NAME, dns[0] if dns else "mfa-agent lab host"),
    ])
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    result = LabCertificates(
        ca_file=directory / CA_FILE,
        cert_file=directory / CERT_FILE,
        key_file=directory / KEY_FILE,
        cert_der=server_cert.public_bytes(serialization.Encoding.DER),
    )
    _write(result.ca_file, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(result.cert_file, server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(result.key_file, key_pem, 0o600)
    return result
