"""Secret Manager: a secret version's value, through one client per process, built on first use.

The database password (``DB_PASSWORD_SECRET``) and the Fivetran webhook's signing key
(``FIVETRAN_WEBHOOK_SECRET``) are both read here. Values never reach a log line or an error
message; the variable that names the version does.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from sync.core.errors import ConfigurationError

if TYPE_CHECKING:
    from google.cloud.secretmanager import SecretManagerServiceClient

_lock = threading.Lock()
_clients: dict[str | None, SecretManagerServiceClient] = {}


def access(resource: str, *, variable: str, endpoint: str | None = None) -> str:
    """The value of the secret version ``resource`` (``projects/P/secrets/S/versions/V``).

    Args:
        resource: the version to read.
        variable: the setting that named it, for the error message.
        endpoint: test-only: a local stand-in's URL (``SECRET_MANAGER_API_ENDPOINT``).

    Raises:
        ConfigurationError: the version does not exist, is disabled, or may not be read.
    """
    from google.api_core import exceptions as gexc

    try:
        response = _client(endpoint).access_secret_version(name=resource)
    except (gexc.NotFound, gexc.PermissionDenied, gexc.InvalidArgument) as err:
        msg = (
            f"Secret Manager answered {err.code} for {variable}: it must name an enabled secret version"
            " that the function's service account may read (roles/secretmanager.secretAccessor)"
        )
        raise ConfigurationError([msg]) from err
    value: str = response.payload.data.decode("utf-8")
    return value


def close() -> None:
    """Forget the clients (tests; process exit)."""
    with _lock:
        _clients.clear()


def _client(endpoint: str | None) -> SecretManagerServiceClient:
    with _lock:
        client = _clients.get(endpoint)
        if client is None:
            from google.cloud import secretmanager

            # REST rather than gRPC, here and in the tests alike, so the transport the tests
            # drive is the one that deploys (and cold start skips building a gRPC channel).
            options = {"api_endpoint": endpoint} if endpoint else None
            client = secretmanager.SecretManagerServiceClient(transport="rest", client_options=options)
            _clients[endpoint] = client
        return client
