"""TLS material for an HTTPS lab: a throw-away lab CA and the server certificates it issues.

The CA's private key never leaves memory; only its certificate is written (``ca.pem``) so that
clients can verify the lab with ``ca_trust_path`` / ``ansible_winrm_ca_trust_path``. Each lab host
presents a certificate of its own, as a real host does, with a DNS SAN for its name and an IP SAN
for its address, so hostname verification works whether a client connects by address or by
name. One certificate naming every host would be read whole by every client on every
connection: 1,000 hosts made it 17 KB, about 1 ms of client CPU and 0.2 MB per connection.
The certificates share one key pair (``server-key.pem``): a key per host would only slow the
start of a 10,000-host lab.
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


_LAB_ORG = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mfa-agent lab")


class LabCA:
    """A lab CA (``ca.pem`` written into `directory`) and the key pair of the certificates it
    issues (``server-key.pem``, mode 0600)."""

    def __init__(self, directory: Path, days: int = 30) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        now = dt.datetime.now(dt.UTC)
        self._not_before = now - dt.timedelta(hours=1)
        self._not_after = now + dt.timedelta(days=days)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([
            _LAB_ORG, x509.NameAttribute(NameOID.COMMON_NAME, "mfa-agent lab CA"),
        ])
        self._ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(self._ski, critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = directory / CA_FILE
        _write(self.ca_file, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        self._server_key = ec.generate_private_key(ec.SECP256R1())
        self.key_file = directory / KEY_FILE
        key_pem = self._server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(self.key_file, key_pem, 0o600)

    def issue(self, names: Iterable[str], addresses: Iterable[str],
              file_name: str = CERT_FILE) -> LabCertificates:
        """A server certificate for these names and addresses, written as `file_name`."""
        dns = sorted({n.lower() for n in names})
        ips = sorted({ipaddress.ip_address(a) for a in addresses}, key=str)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
        sans += [x509.IPAddress(ip) for ip in ips]
        subject = x509.Name([
            _LAB_ORG,
            x509.NameAttribute(NameOID.COMMON_NAME, dns[0] if dns else "mfa-agent lab host"),
        ])
        public_key = self._server_key.public_key()
        server_cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=True, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        result = LabCertificates(
            ca_file=self.ca_file,
            cert_file=self.directory / file_name,
            key_file=self.key_file,
            cert_der=server_cert.public_bytes(serialization.Encoding.DER),
        )
        _write(result.cert_file, server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return result


def create_certificates(
    directory: Path,
    *,
    names: Iterable[str],
    addresses: Iterable[str],
    days: int = 30,
) -> LabCertificates:
    """Generate a lab CA and one server certificate for these names and addresses into
    `directory`."""
    return LabCA(directory, days).issue(names, addresses)
