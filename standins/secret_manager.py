"""Secret Manager for the real ``google-cloud-secret-manager`` client over its REST transport
(``client_options={"api_endpoint": url}``): accessing a version (``latest`` or a number) and
adding one, which is how a password is rotated."""

from __future__ import annotations

import base64
import re
import threading

import google_crc32c

from standins.httpd import HttpStandIn, Reply, Request
from standins.oauth import CLOUD_PLATFORM, TokenServer

AUDIENCE = "https://secretmanager.googleapis.com/"
_ACCESS = re.compile(r"^/v1/(projects/[^/]+/secrets/[^/]+)/versions/([^/:]+):access$")
_ADD = re.compile(r"^/v1/(projects/[^/]+/secrets/[^/:]+):addVersion$")


class SecretManager:
    """Secrets by resource name (``projects/P/secrets/S``), each a list of versions (1-based)."""

    def __init__(self, auth: TokenServer) -> None:
        self._auth = auth
        self._versions: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        self.accesses: list[str] = []  # version names read, in order
        self.http = HttpStandIn(self._handle)

    def start(self) -> SecretManager:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def add_version(self, secret: str, value: str) -> str:
        """Add a version directly (test set-up); returns its resource name."""
        with self._lock:
            versions = self._versions.setdefault(secret, [])
            versions.append(value.encode())
            return f"{secret}/versions/{len(versions)}"

    def _handle(self, request: Request) -> Reply:
        if not self._auth.accepts(request.bearer, CLOUD_PLATFORM, AUDIENCE):
            return Reply.error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        access, add = _ACCESS.match(request.path), _ADD.match(request.path)
        if request.method == "GET" and access:
            return self._access(access.group(1), access.group(2))
        if request.method == "POST" and add:
            data = base64.b64decode(request.json().get("payload", {}).get("data", ""))
            name = self.add_version(add.group(1), data.decode())
            return Reply(200, {"name": name, "state": "ENABLED"})
        return Reply.error(404, f"no such method: {request.method} {request.path}", "NOT_FOUND")

    def _access(self, secret: str, version: str) -> Reply:
        with self._lock:
            versions = self._versions.get(secret, [])
            number = len(versions) if version == "latest" else int(version) if version.isdigit() else 0
            if not 1 <= number <= len(versions):
                return Reply.error(404, f"Secret Version [{secret}/versions/{version}] not found.", "NOT_FOUND")
            data = versions[number - 1]
            name = f"{secret}/versions/{number}"
            self.accesses.append(name)
        payload = {"data": base64.b64encode(data).decode(), "dataCrc32c": str(google_crc32c.value(data))}
        return Reply(200, {"name": name, "payload": payload})
