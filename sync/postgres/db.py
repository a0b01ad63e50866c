"""Postgres connections: ``DATABASE_URL`` locally, the Cloud SQL connector in production.

Every connection, on either path, is set up so that the server ends the session of a client
that died (kill -9, out of memory, the platform's timeout) within seconds, and its locks with
it: Postgres 14+ polls the client's socket while a statement runs
(``client_connection_check_interval``), TCP keepalives find a peer that vanished without closing
(on the server's side through ``tcp_keepalives_*``, on ours on the socket), and a transaction
left idle is ended (``idle_in_transaction_session_timeout``). See :data:`SESSION_SETTINGS`.

The connector and the Secret Manager client are created lazily and once per process, because a
Cloud Function instance serves many invocations and cold-start time is billed latency. The
tests drive this same code against local stand-ins of the Admin API, Secret Manager and the
instance's TLS front; only the endpoints differ (``CloudSqlSettings``), never the path.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pg8000.dbapi

from sync.core import secrets
from sync.core.config import CloudSqlSettings, Settings
from sync.core.database_url import DatabaseUrl, SslMode, parse_database_url
from sync.core.errors import ConfigurationError, sqlstate_of

if TYPE_CHECKING:
    from google.cloud.sql.connector import Connector

log = logging.getLogger(__name__)

APPLICATION_NAME = "opportunity-sync"
_INVALID_PASSWORD_SQLSTATE = "28P01"  # noqa: S105 - a SQLSTATE, not a password


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


#: Session settings applied to every connection (values in milliseconds or seconds, as Postgres
#: takes them). Each is settable by any role, so they work on Cloud SQL without a flag.
SESSION_SETTINGS: dict[str, str] = {
    # No transaction of ours waits on the client between statements for more than moments;
    # the BigQuery read happens outside any transaction.
    "idle_in_transaction_session_timeout": "30000",
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
#: Postgres 14+ only; older servers do not know the setting and skip it.
CLIENT_CHECK_INTERVAL_MS = "2000"
# The client's side of the keepalive: a server (or the connector's proxy) that vanished is
# noticed after about 5 + 3 * 2 s instead of the kernel's two hours.
_KEEPALIVE_OPTIONS = (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3))
_SESSION_SQL = (
    "SELECT "
    + ", ".join(f"set_config('{name}', %s, false)" for name in SESSION_SETTINGS)
    + ", CASE WHEN current_setting('server_version_num')::int >= 140000"
    " THEN set_config('client_connection_check_interval', %s, false) END"
)

_lock = threading.Lock()
_connector: Connector | None = None
_password_cache: dict[str, str] = {}


def connect(settings: Settings) -> Connection:
    """Open a new connection with autocommit off."""
    if settings.database_url is not None:
        return connect_database(settings.database_url)
    if settings.cloud_sql is None:  # Settings.from_env guarantees one of the two
        msg = "no database configured: set DATABASE_URL or INSTANCE_CONNECTION_NAME"
        raise ConfigurationError([msg])
    return _prepared(_connect_cloud_sql(settings.cloud_sql))


def _prepared(conn: Connection) -> Connection:
    """Apply :data:`SESSION_SETTINGS` and socket keepalives to a new connection."""
    try:
        _keepalive(conn)
        cur = conn.cursor()
        cur.execute(_SESSION_SQL, (*SESSION_SETTINGS.values(), CLIENT_CHECK_INTERVAL_MS))
        conn.commit()  # set_config(..., false) lasts for the session once committed
    except BaseException:
        conn.close()
        raise
    return conn


def _keepalive(conn: Connection) -> None:
    # pg8000 turns SO_KEEPALIVE on (with the kernel's 2 h idle) only on a socket it opens itself;
    # the connector hands it an open TLS socket, on which it sets nothing. Its socket is private
    # (``_usock``), so a driver without one is left as it is.
    sock = getattr(conn, "_usock", None)
    if not isinstance(sock, socket.socket) or sock.family not in {socket.AF_INET, socket.AF_INET6}:
        return
    # Nagle off as well: pg8000 sends a COPY's last data message and CopyDone + Sync as separate
    # small writes, and with Nagle on the kernel holds the last one back until the server's
    # delayed acknowledgement, about 40 ms per COPY, several per page (bench/README.md). libpq
    # sets TCP_NODELAY for the same reason.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in _KEEPALIVE_OPTIONS:
        option = getattr(socket, name, None)  # Linux names; other platforms may lack some
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def connect_url(url: str, *, timeout: float = 30.0) -> Connection:
    """Connect from a ``postgresql://`` URL string (tests, benchmarks, the demo)."""
    return connect_database(parse_database_url(url), timeout=timeout)


def connect_database(url: DatabaseUrl, *, timeout: float = 30.0) -> Connection:
    """Connect as a parsed ``DATABASE_URL`` says, honouring every option it carries."""
    conn: Connection = pg8000.dbapi.connect(
        user=url.user,
        host=url.host,
        port=url.port,
        database=url.database,
        password=url.password,
        timeout=url.connect_timeout or timeout,
        application_name=url.application_name or APPLICATION_NAME,
        ssl_context=_ssl_context(url),
        startup_params={"options": url.options} if url.options else None,
        tcp_keepalive=True,
    )
    return _prepared(conn)


def _ssl_context(url: DatabaseUrl) -> ssl.SSLContext | bool | None:
    """libpq's sslmode semantics in pg8000's terms (``require`` with a root certificate verifies
    the CA, as libpq does)."""
    if url.sslmode is SslMode.DISABLE:
        return False  # pg8000: never ask for TLS
    if url.sslmode is SslMode.PREFER:
        return None  # pg8000: TLS, unverified, if the server offers it; else plaintext
    context = ssl.create_default_context(cafile=url.sslrootcert)
    context.check_hostname = url.sslmode is SslMode.VERIFY_FULL
    if url.sslmode is SslMode.REQUIRE and url.sslrootcert is None:
        context.verify_mode = ssl.CERT_NONE
    return context


def close() -> None:
    """Close the process-wide connector and forget the cached password (tests; process exit)."""
    global _connector
    with _lock:
        connector, _connector = _connector, None
        _password_cache.clear()
    secrets.close()
    if connector is not None:
        connector.close()


def _connect_cloud_sql(cfg: CloudSqlSettings) -> Connection:
    connector = _get_connector(cfg)
    if cfg.iam_auth or cfg.password_secret is None:
        try:
            return _open(connector, cfg, enable_iam_auth=True)
        except pg8000.dbapi.DatabaseError as err:
            if sqlstate_of(err) != _INVALID_PASSWORD_SQLSTATE:
                raise
            msg = (
                f"Postgres refused IAM database login for DB_USER {cfg.user!r} (28P01): create the IAM database user"
                " for the function's service account, grant it roles/cloudsql.instanceUser, and check that"
                " DB_USER is that service account's email"
            )
            raise ConfigurationError([msg]) from err
    secret = cfg.password_secret
    try:
        return _open(connector, cfg, password=_password(cfg))
    except pg8000.dbapi.DatabaseError as err:
        if sqlstate_of(err) != _INVALID_PASSWORD_SQLSTATE:
            raise
    # The password was rotated while this instance kept the old value: read the secret again,
    # once. A second refusal means the secret and the database disagree; retrying cannot help.
    log.info(
        "Postgres refused the cached database password (28P01); reading DB_PASSWORD_SECRET again",
        extra={"event": "db_password_reread", "secret": secret},
    )
    with _lock:
        _password_cache.pop(secret, None)
    try:
        return _open(connector, cfg, password=_password(cfg))
    except pg8000.dbapi.DatabaseError as err:
        if sqlstate_of(err) != _INVALID_PASSWORD_SQLSTATE:
            raise
        msg = (
            f"Postgres refused the password in DB_PASSWORD_SECRET for DB_USER {cfg.user!r} (28P01), also after"
            " reading the secret again: add the database user's current password as a new secret version"
            " (DB_PASSWORD_SECRET should end in /versions/latest)"
        )
        raise ConfigurationError([msg]) from err


def _open(connector: Connector, cfg: CloudSqlSettings, **kwargs: Any) -> Connection:
    """One ``connector.connect``; an instance the Admin API does not know is a configuration error."""
    import aiohttp  # the connector's HTTP client, already loaded with it
    from google.cloud.sql.connector.exceptions import CloudSQLIPTypeError

    try:
        conn: Connection = connector.connect(
            cfg.instance_connection_name, "pg8000", user=cfg.user, db=cfg.database, ip_type=cfg.ip_type.value, **kwargs
        )
    except CloudSQLIPTypeError as err:
        # The instance has no address of the chosen kind (a private-only instance dialled as public,
        # say); no retry gives it one.
        msg = (
            f"DB_IP_TYPE={cfg.ip_type.value} but instance {cfg.instance_connection_name!r} has no address of that kind"
            f" ({err}): set DB_IP_TYPE to the connectivity the instance has (Terraform: sql_connectivity)"
        )
        raise ConfigurationError([msg]) from err
    except ValueError as err:
        # The connector raises ValueError for a malformed name and for a region that is not
        # the instance's region; its message names the instance, never a credential.
        msg = f"INSTANCE_CONNECTION_NAME {cfg.instance_connection_name!r} does not match the instance: {err}"
        raise ConfigurationError([msg]) from err
    except aiohttp.ClientResponseError as err:
        if err.status in {403, 404}:
            msg = (
                f"the Cloud SQL Admin API answered {err.status} for INSTANCE_CONNECTION_NAME"
                f" {cfg.instance_connection_name!r}: check the name (PROJECT:REGION:INSTANCE) and that the"
                " function's service account has roles/cloudsql.client on that project"
            )
            raise ConfigurationError([msg]) from err
        raise
    return conn


def _get_connector(cfg: CloudSqlSettings) -> Connector:
    global _connector
    with _lock:
        if _connector is None:
            from google.cloud.sql.connector import Connector

            # "lazy" refreshes certificates on demand: background refresh threads are
            # throttled between Cloud Functions invocations and then fail. The endpoint is
            # None (Google's) everywhere but the tests.
            _connector = Connector(refresh_strategy="lazy", sqladmin_api_endpoint=cfg.admin_api_endpoint)
        return _connector


def _password(cfg: CloudSqlSettings) -> str:
    resource = cfg.password_secret
    assert resource is not None  # noqa: S101 - password mode only
    with _lock:
        cached = _password_cache.get(resource)
    if cached is not None:
        return cached
    value = secrets.access(resource, variable="DB_PASSWORD_SECRET", endpoint=cfg.secret_manager_endpoint)
    with _lock:
        _password_cache[resource] = value
    # Log the resource name only: the value never reaches a log line.
    log.info("database password read from Secret Manager", extra={"event": "db_password_read", "secret": resource})
    return value
