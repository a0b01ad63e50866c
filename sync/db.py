"""Postgres connections: a direct URL locally, the Cloud SQL connector in production.

The connector and Secret Manager client are created lazily and once per process, because a
Cloud Function instance serves many invocations and cold-start time is billed latency.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

import pg8000.dbapi

from sync.config import CloudSqlSettings, Settings
from sync.errors import ConfigurationError

if TYPE_CHECKING:
    from google.cloud.sql.connector import Connector

log = logging.getLogger(__name__)


class Cursor(Protocol):
    """The slice of pg8000's DB-API cursor this package uses."""

    rowcount: int

    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...

    def execute(self, operation: str, args: Sequence[Any] = (), stream: Iterable[str] | None = None) -> Any: ...

    def fetchone(self) -> Sequence[Any] | None: ...

    def fetchall(self) -> Sequence[Sequence[Any]]: ...


class Connection(Protocol):
    """A pg8000 DB-API connection, whether opened directly or by the Cloud SQL connector."""

    autocommit: bool

    def cursor(self) -> Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


_lock = threading.Lock()
_connector: Connector | None = None
_password_cache: dict[str, str] = {}


def connect(settings: Settings) -> Connection:
    """Open a new connection with autocommit off."""
    if settings.database_url is not None:
        return connect_url(settings.database_url)
    if settings.cloud_sql is None:  # Settings.from_env guarantees one of the two
        msg = "no database configured: set DATABASE_URL or INSTANCE_CONNECTION_NAME"
        raise ConfigurationError([msg])
    return _connect_cloud_sql(settings.cloud_sql)


def connect_url(url: str, *, timeout: float = 30.0) -> Connection:
    """Connect from a ``postgresql://user:pass@host:port/db`` URL."""
    parts = urlparse(url)
    kwargs: dict[str, Any] = {
        "user": unquote(parts.username or "postgres"),
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "database": unquote(parts.path.lstrip("/")) or "postgres",
        "timeout": timeout,
        "application_name": "opportunity-sync",
    }
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    conn: Connection = pg8000.dbapi.connect(**kwargs)
    return conn


def _connect_cloud_sql(cfg: CloudSqlSettings) -> Connection:
    global _connector
    with _lock:
        if _connector is None:
            from google.cloud.sql.connector import Connector

            # "lazy" refreshes certificates on demand: background refresh threads are
            # throttled between Cloud Functions invocations and then fail.
            _connector = Connector(refresh_strategy="lazy")
        connector = _connector
    kwargs: dict[str, Any] = {"user": cfg.user, "db": cfg.database}
    if cfg.iam_auth or cfg.password_secret is None:
        kwargs["enable_iam_auth"] = True
        conn: Connection = connector.connect(cfg.instance_connection_name, "pg8000", **kwargs)
        return conn
    try:
        conn = connector.connect(cfg.instance_connection_name, "pg8000", password=_secret(cfg.password_secret), **kwargs)
    except pg8000.dbapi.DatabaseError as err:
        if not _is_bad_password(err):
            raise
        # The secret was rotated while this instance kept the old value: read it again once.
        with _lock:
            _password_cache.pop(cfg.password_secret, None)
        conn = connector.connect(cfg.instance_connection_name, "pg8000", password=_secret(cfg.password_secret), **kwargs)
    return conn


def _is_bad_password(err: Exception) -> bool:
    fields = err.args[0] if err.args and isinstance(err.args[0], dict) else {}
    return fields.get("C") == "28P01"


def _secret(resource: str) -> str:
    with _lock:
        cached = _password_cache.get(resource)
    if cached is not None:
        return cached
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    value = client.access_secret_version(name=resource).payload.data.decode("utf-8")
    with _lock:
        _password_cache[resource] = value
    # Log the resource name only: the value never reaches a log line.
    log.info("database password read from Secret Manager", extra={"secret": resource})
    return value
