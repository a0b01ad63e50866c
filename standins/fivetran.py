"""Fivetran's side of the webhook, locally: event bodies as Fivetran sends them, signed as it signs
them, and the Secret Manager (with its OAuth endpoint) that holds the signing key.

Used by the webhook's tests and by ``python -m bench --only webhook``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from standins.oauth import ServiceAccount, TokenServer
from standins.secret_manager import SecretManager

PROJECT = "local-project"
WEBHOOK_SECRET = f"projects/{PROJECT}/secrets/fivetran-webhook"


def event(
    name: str = "sync_end",
    *,
    connector_id: str = "decent_dropsy",
    group_id: str = "projected_sickle",
    status: str = "SUCCESSFUL",
    created: dt.datetime | None = None,
) -> dict[str, Any]:
    """A webhook body with the fields Fivetran documents (``data`` as a ``sync_end`` has it)."""
    stamp = created or dt.datetime.now(dt.UTC)
    body: dict[str, Any] = {
        "event": name,
        "created": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "connector_type": "salesforce",
        "connector_id": connector_id,
        "connector_name": f"{connector_id}_salesforce",
        "sync_id": "3f0e1b52-0000-4000-8000-000000000000",
        "destination_group_id": group_id,
        "data": {},
    }
    if name == "sync_end":
        body["data"] = {"status": status}
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def signature(key: str, raw: bytes) -> str:
    """``X-Fivetran-Signature-256`` for ``raw``: upper-case hex, as Fivetran has been seen to send it."""
    return hmac.new(key.encode(), raw, hashlib.sha256).hexdigest().upper()


@dataclass
class SigningKeyStore:
    """The webhook's signing key in a Secret Manager stand-in, behind a stand-in OAuth endpoint."""

    oauth: TokenServer
    secrets: SecretManager
    key_file: Path
    key: str

    @classmethod
    def start(cls, key: str, workdir: Path | None = None) -> SigningKeyStore:
        account = ServiceAccount(name="fivetran-webhook", project=PROJECT)
        oauth = TokenServer(account).start()
        secrets = SecretManager(oauth).start()
        secrets.add_version(WEBHOOK_SECRET, key)
        folder = workdir or Path(tempfile.mkdtemp(prefix="webhook-standin-"))
        return cls(oauth, secrets, account.write_key_file(folder / "service-account.json", oauth.token_uri), key)

    def env(self) -> dict[str, str]:
        """What the webhook function needs to read the key, as Terraform sets it plus the endpoint."""
        return {
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.key_file),
            "SECRET_MANAGER_API_ENDPOINT": self.secrets.http.url,
            "FIVETRAN_WEBHOOK_SECRET": f"{WEBHOOK_SECRET}/versions/latest",
        }

    def stop(self) -> None:
        self.secrets.stop()
        self.oauth.stop()
