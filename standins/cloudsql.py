"""The production connection path, locally: Google credentials, Secret Manager, the Cloud SQL
Admin API and the instance's mTLS front, all stand-ins, in front of a real Postgres.

``CloudSql.start(backend)`` starts them; :meth:`CloudSql.env` is what the function or the CLI
needs to take the deployed code path (``INSTANCE_CONNECTION_NAME`` and friends) against them.
Used by the tests and by ``make demo-cloudsql``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from standins.certs import CertificateAuthority
from standins.cloudsql_admin import AdminApi, Instance
from standins.cloudsql_front import TlsFront
from standins.oauth import ServiceAccount, TokenServer
from standins.secret_manager import SecretManager

PROJECT, REGION, INSTANCE = "local-project", "europe-west1", "crm"
SECRET = f"projects/{PROJECT}/secrets/db-password"


@dataclass
class CloudSql:
    """Every stand-in of the connection path, started; :meth:`stop` stops them all."""

    account: ServiceAccount
    ca: CertificateAuthority
    oauth: TokenServer
    secrets: SecretManager
    admin: AdminApi
    front: TlsFront
    key_file: Path

    @classmethod
    def start(cls, backend: tuple[str, int], workdir: Path | None = None) -> CloudSql:
        """Stand-ins in front of the Postgres at ``backend`` (host, port)."""
        account = ServiceAccount(project=PROJECT)
        oauth = TokenServer(account).start()
        secrets = SecretManager(oauth).start()
        instance = Instance(PROJECT, REGION, INSTANCE)
        ca = CertificateAuthority(f"Google Cloud SQL Server CA {instance.connection_name}")
        front = TlsFront(ca, backend, instance.connection_name).start()
        admin = AdminApi(oauth, ca, instance, front.host).start()
        folder = workdir or Path(tempfile.mkdtemp(prefix="cloudsql-standin-"))
        key_file = account.write_key_file(folder / "service-account.json", oauth.token_uri)
        return cls(account, ca, oauth, secrets, admin, front, key_file)

    @property
    def connection_name(self) -> str:
        return self.admin.instance.connection_name

    @property
    def iam_database_user(self) -> str:
        """The Postgres role of the service account: its email without .gserviceaccount.com."""
        return self.account.email.removesuffix(".gserviceaccount.com")

    def env(
        self, database: str, user: str, *, iam: bool = False, secret: str = SECRET, ip_type: str = "public"
    ) -> dict[str, str]:
        """The function's connection settings: exactly what Terraform sets, plus the endpoints.

        ``ip_type`` is ``DB_IP_TYPE``; set ``admin.connectivity`` to match the instance it describes.
        """
        settings = {
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.key_file),
            "CLOUD_SQL_ADMIN_API_ENDPOINT": self.admin.http.url,
            "INSTANCE_CONNECTION_NAME": self.connection_name,
            "DB_USER": user,
            "DB_NAME": database,
            "DB_IP_TYPE": ip_type,
        }
        if iam:
            return {**settings, "DB_IAM_AUTH": "true"}
        return {
            **settings,
            "SECRET_MANAGER_API_ENDPOINT": self.secrets.http.url,
            "DB_PASSWORD_SECRET": f"{secret}/versions/latest",
        }

    def stop(self) -> None:
        for part in (self.admin, self.front, self.secrets, self.oauth):
            part.stop()
