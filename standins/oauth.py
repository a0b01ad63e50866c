"""Google credentials without the internet: a service-account key file whose ``token_uri`` points
at a local OAuth 2.0 token endpoint.

The real ``google-auth`` loads the key file (``GOOGLE_APPLICATION_CREDENTIALS``), signs a
JWT-bearer grant with the private key and posts it here; this endpoint checks the signature,
issuer, audience and expiry before it issues an access token for the requested scopes. The
other stand-ins accept only tokens issued here, or a self-signed JWT made with the same key
(what Google's generated clients, such as Secret Manager's, send for a service account).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from standins.httpd import HttpStandIn, Reply, Request

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth addresses its grant to Google's token URL whatever token_uri says; accept that
# audience, as Google's endpoint does, and our own URL.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
SQL_ADMIN = "https://www.googleapis.com/auth/sqlservice.admin"
SQL_LOGIN = "https://www.googleapis.com/auth/sqlservice.login"
TOKEN_SECONDS = 3600


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class ServiceAccount:
    """A service account and its (freshly generated) key."""

    name: str = "opportunity-sync"
    project: str = "local-project"
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    key_id: str = field(default_factory=lambda: secrets.token_hex(20))

    @property
    def email(self) -> str:
        return f"{self.name}@{self.project}.iam.gserviceaccount.com"

    def write_key_file(self, path: Path, token_uri: str) -> Path:
        """The JSON key file, in the format ``gcloud iam service-accounts keys create`` writes."""
        private_key = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        info = {
            "type": "service_account",
            "project_id": self.project,
            "private_key_id": self.key_id,
            "private_key": private_key,
            "client_email": self.email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "universe_domain": "googleapis.com",
        }
        path.write_text(json.dumps(info))
        path.chmod(0o600)
        return path

    def verify_jwt(self, token: str) -> dict[str, Any] | None:
        """The claims of an unexpired RS256 JWT signed with this account's key, else None."""
        try:
            header_b64, claims_b64, signature_b64 = token.split(".")
            header = json.loads(_b64url_decode(header_b64))
            claims: dict[str, Any] = json.loads(_b64url_decode(claims_b64))
            if header.get("alg") != "RS256":
                return None
            self.key.public_key().verify(
                _b64url_decode(signature_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, InvalidSignature):
            return None
        if claims.get("iss") != self.email or float(claims.get("exp", 0)) < time.time():
            return None
        return claims


@dataclass(frozen=True)
class Issued:
    scopes: frozenset[str]
    expires_at: float


class TokenServer:
    """The OAuth 2.0 token endpoint for one service account.

    ``login_token`` is what a grant for the Cloud SQL login scope receives (the IAM database
    login token): tests configure a Postgres role to accept exactly that value, and change it
    to show that a different token is refused.
    """

    def __init__(self, account: ServiceAccount) -> None:
        self.account = account
        self.login_token = "ya29.login-" + secrets.token_urlsafe(32)
        self.grants: list[frozenset[str]] = []
        self._issued: dict[str, Issued] = {}
        self._lock = threading.Lock()
        self.http = HttpStandIn(self._handle)

    def start(self) -> TokenServer:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    @property
    def token_uri(self) -> str:
        return f"{self.http.url}/token"

    def accepts(self, token: str | None, scope: str, audience: str | None = None) -> bool:
        """Whether ``token`` authorises ``scope``: issued here, or self-signed for ``audience``."""
        if not token:
            return False
        with self._lock:
            issued = self._issued.get(token)
        if issued is not None:
            return issued.expires_at > time.time() and bool({scope, CLOUD_PLATFORM} & issued.scopes)
        claims = self.account.verify_jwt(token)
        if claims is None:
            return False
        scopes = set(str(claims.get("scope", "")).split())
        return (audience is not None and claims.get("aud") == audience) or bool({scope, CLOUD_PLATFORM} & scopes)

    def _handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/token":
            return Reply(404, {"error": "not_found"})
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != JWT_BEARER:
            return Reply(400, {"error": "unsupported_grant_type"})
        claims = self.account.verify_jwt(form.get("assertion", ""))
        if claims is None or claims.get("aud") not in {self.token_uri, GOOGLE_TOKEN_AUDIENCE}:
            return Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        scopes = frozenset(str(claims.get("scope", "")).split())
        token = self.login_token if scopes == {SQL_LOGIN} else "ya29.standin-" + secrets.token_urlsafe(32)
        with self._lock:
            self._issued[token] = Issued(scopes, time.time() + TOKEN_SECONDS)
            self.grants.append(scopes)
        return Reply(200, {"access_token": token, "expires_in": TOKEN_SECONDS, "token_type": "Bearer"})
