"""A small certificate authority for the stand-ins: Cloud SQL's per-instance CA, which signs the
server certificate of the instance's TLS front and the connector's ephemeral client
certificates, and the CA behind the test Postgres cluster's own TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "opportunity-sync stand-in"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass
class CertificateAuthority:
    """A self-signed CA (EC P-256 keys: quick to generate, accepted by every client here)."""

    common_name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(self.common_name))
            .issuer_name(_name(self.common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> str:
        return pem(self.cert)

    def issue(
        self,
        common_name: str,
        public_key: CertificatePublicKeyTypes,
        *,
        lifetime: dt.timedelta = dt.timedelta(hours=1),
        server: bool = False,
        extensions: tuple[x509.ExtensionType, ...] = (),
    ) -> x509.Certificate:
        """Sign ``public_key`` into a leaf certificate valid from a minute ago for ``lifetime``."""
        now = dt.datetime.now(dt.UTC)
        usage = x509.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            # Key identifiers as RFC 5280 asks: Python 3.13's default context verifies strictly
            # (VERIFY_X509_STRICT) and refuses a leaf without an authority key identifier.
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def server_pair(self, common_name: str) -> tuple[str, bytes]:
        """A fresh key and a server certificate for it, both PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        return pem(self.issue(common_name, key.public_key(), lifetime=dt.timedelta(days=1), server=True)), key_pem(key)
