"""The two Cloud SQL Admin API methods the connector calls (``connectSettings`` and
``generateEphemeralCert``), as the connector's own test suite fakes them, over real HTTP.

The instance's CA signs the connector's public key into a short-lived client certificate; for
IAM database login the request also carries the caller's login-scoped OAuth token, which the
certificate carries on to the instance (as Cloud SQL's does), where the TLS front presents it
to Postgres as the password.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from standins.certs import CertificateAuthority, pem
from standins.httpd import HttpStandIn, Reply, Request
from standins.oauth import SQL_ADMIN, SQL_LOGIN, TokenServer

# Where the certificate carries the IAM login token: an OID under the UUID arc (2.25), which
# anyone may mint, so it cannot collide with a real extension.
IAM_TOKEN_OID = x509.ObjectIdentifier("2.25." + str(uuid.UUID("6f0c3a1e-5b7d-4e43-9a51-0c2d7e8f1a42").int))
_ROUTE = re.compile(r"^/sql/v1beta4/projects/([^/]+)/instances/([^/:]+)(/connectSettings|:generateEphemeralCert)$")


@dataclass(frozen=True)
class Instance:
    project: str
    region: str
    name: str
    database_version: str = "POSTGRES_15"

    @property
    def connection_name(self) -> str:
        return f"{self.project}:{self.region}:{self.name}"


def iam_token(cert: x509.Certificate) -> str | None:
    """The IAM login token an ephemeral certificate carries, if it was issued for IAM login."""
    try:
        extension = cert.extensions.get_extension_for_oid(IAM_TOKEN_OID)
    except x509.ExtensionNotFound:
        return None
    value = extension.value
    return value.value.decode() if isinstance(value, x509.UnrecognizedExtension) else None


class AdminApi:
    """``cert_lifetime`` is how long ephemeral certificates live (Cloud SQL: one hour); a test
    shortens it to make the connector's cached certificate go stale.

    ``connectivity`` is how the instance is reachable, as ``connectSettings`` reports it:
    ``public`` (an address of type ``PRIMARY``), ``private`` (only ``PRIVATE``: private services
    access with ``ipv4_enabled = false``) or ``psc`` (no addresses; ``pscEnabled`` and the
    endpoint's DNS name in ``dnsNames``/``dnsName``). The connector picks the entry its
    ``ip_type`` names and refuses when there is none.
    """

    def __init__(self, auth: TokenServer, ca: CertificateAuthority, instance: Instance, ip_address: str) -> None:
        self._auth = auth
        self._ca = ca
        self.instance = instance
        self.ip_address = ip_address
        self.cert_lifetime = dt.timedelta(hours=1)
        self.connectivity = "public"
        self.issued: list[x509.Certificate] = []
        self._lock = threading.Lock()
        self.http = HttpStandIn(self._handle)

    def start(self) -> AdminApi:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def _handle(self, request: Request) -> Reply:
        if not self._auth.accepts(request.bearer, SQL_ADMIN):
            return Reply.error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        route = _ROUTE.match(request.path)
        if route is None:
            return Reply.error(404, f"no such method: {request.method} {request.path}", "NOT_FOUND")
        project, name, method = route.groups()
        if (project, name) != (self.instance.project, self.instance.name):
            return Reply.error(404, "The Cloud SQL instance does not exist.", "NOT_FOUND")
        if method == "/connectSettings" and request.method == "GET":
            return self._connect_settings()
        if method == ":generateEphemeralCert" and request.method == "POST":
            return self._ephemeral_cert(request)
        return Reply.error(405, "method not allowed", "INVALID_ARGUMENT")

    def _connect_settings(self) -> Reply:
        answer = {
            "kind": "sql#connectSettings",
            "serverCaCert": {"kind": "sql#sslCert", "cert": self._ca.cert_pem, "instance": self.instance.name},
            "region": self.instance.region,
            "databaseVersion": self.instance.database_version,
            "backendType": "SECOND_GEN",
            "pscEnabled": self.connectivity == "psc",
        }
        if self.connectivity == "psc":
            # Cloud SQL answers a DNS name under sql-psc.goog that the VPC's private zone resolves to
            # the endpoint. No resolver here knows such a name, so the stand-in answers the front's
            # address in its place; the connector dials whatever this field holds the same way.
            name = f"{self.ip_address}."
            answer["dnsName"] = name
            answer["dnsNames"] = [{"name": name, "connectionType": "PRIVATE_SERVICE_CONNECT", "dnsScope": "INSTANCE"}]
        else:
            kind = "PRIVATE" if self.connectivity == "private" else "PRIMARY"
            answer["ipAddresses"] = [{"type": kind, "ipAddress": self.ip_address}]
        return Reply(200, answer)

    def _ephemeral_cert(self, request: Request) -> Reply:
        body = request.json()
        try:
            public_key = serialization.load_pem_public_key(str(body.get("public_key", "")).encode())
        except ValueError:
            return Reply.error(400, "Invalid public key.", "INVALID_ARGUMENT")
        extensions: tuple[x509.ExtensionType, ...] = ()
        token = body.get("access_token")
        if token is not None:
            if not self._auth.accepts(token, SQL_LOGIN):
                return Reply.error(400, "Invalid access token for IAM database login.", "INVALID_ARGUMENT")
            extensions = (x509.UnrecognizedExtension(IAM_TOKEN_OID, str(token).encode()),)
        cert = self._ca.issue(
            "Google Cloud SQL Client",
            public_key,  # type: ignore[arg-type]
            lifetime=self.cert_lifetime,
            extensions=extensions,
        )
        with self._lock:
            self.issued.append(cert)
        expires = cert.not_valid_after_utc.isoformat().replace("+00:00", "Z")
        return Reply(200, {"ephemeralCert": {"kind": "sql#sslCert", "cert": pem(cert), "expirationTime": expires}})
