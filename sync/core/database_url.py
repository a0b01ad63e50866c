"""``DATABASE_URL``: parsed and validated when the settings are read, never echoed.

The URL carries a password, so no error built here contains the URL or any part of it: each
one says which part is wrong and how to fix it. Query options are honoured or refused by
name, never silently ignored (an ignored ``sslmode=require`` would mean a plaintext
connection the operator believes is encrypted).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from sync.core.errors import ConfigurationError

NAME = "DATABASE_URL"
_SCHEMES = ("postgresql", "postgres")
_DEFAULT_HOST, _DEFAULT_PORT, _DEFAULT_USER, _DEFAULT_DATABASE = "127.0.0.1", 5432, "postgres", "postgres"
_ENCODE_HINT = f"{NAME}: percent-encode / ? # @ : in the user name and password (/ as %2F, ? as %3F, # as %23)"
# libpq's own option names: an unsupported one is named in the error. Anything else is not
# named, because a mistyped URL can put a password where an option name belongs.
_LIBPQ_OPTIONS = frozenset(
    {
        "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "channel_binding", "gssencmode",
        "sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir", "sslsni", "sslcompression", "ssl_min_protocol_version",
        "ssl_max_protocol_version", "requirepeer", "krbsrvname", "gsslib", "service", "target_session_attrs",
        "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
        "client_encoding", "fallback_application_name", "replication", "load_balance_hosts", "require_auth",
    }
)  # fmt: skip
_SUPPORTED = "sslmode, sslrootcert, connect_timeout, application_name, options"


class SslMode(enum.StrEnum):
    """The ``sslmode`` values pg8000 can honour exactly, with libpq's meaning and default.

    ``prefer`` (TLS when the server offers it, unverified) is what pg8000 and libpq do when
    nothing is said. ``allow`` (plaintext first) is refused: pg8000 cannot try plaintext first.
    """

    DISABLE = "disable"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"

    @classmethod
    def _missing_(cls, value: object) -> SslMode:
        valid = ", ".join(m.value for m in cls)
        msg = f"{NAME} option sslmode must be one of {valid} (allow cannot be honoured: use prefer or disable)"
        raise ConfigurationError([msg])


@dataclass(frozen=True)
class DatabaseUrl:
    """A validated ``postgresql://user:password@host:port/database?options`` URL.

    The password is left out of ``repr`` so that logging a settings object cannot leak it.
    """

    host: str = _DEFAULT_HOST
    port: int = _DEFAULT_PORT
    database: str = _DEFAULT_DATABASE
    user: str = _DEFAULT_USER
    password: str | None = field(default=None, repr=False)
    sslmode: SslMode = SslMode.PREFER
    sslrootcert: str | None = None
    connect_timeout: float | None = None
    application_name: str | None = None
    options: str | None = None


def parse_database_url(text: str) -> DatabaseUrl:
    """Parse and validate a ``DATABASE_URL`` value.

    Raises:
        ConfigurationError: naming every problem, without echoing any part of the URL.
    """
    problems: list[str] = []
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        raise ConfigurationError([f"{NAME} is not a valid URL", _ENCODE_HINT]) from None
    if parts.scheme not in _SCHEMES:
        problems.append(f"{NAME} must start with postgresql://")
    if parts.fragment or text.rstrip().endswith("#"):
        problems.append(f"{NAME} contains a '#', which ends a URL")
    host, port = _host_and_port(parts, problems)
    database = unquote(parts.path.removeprefix("/")) or _DEFAULT_DATABASE
    if "/" in database:
        problems.append(f"{NAME} has a '/' in the database name")
    url = dataclasses.replace(
        _options(parts.query, problems),
        host=host,
        port=port,
        database=database,
        user=unquote(parts.username) if parts.username else _DEFAULT_USER,
        password=unquote(parts.password) if parts.password else None,
    )
    if problems:
        # Nearly every malformed URL is a password with a reserved character in it.
        raise ConfigurationError([*problems, _ENCODE_HINT])
    return url


def _host_and_port(parts: SplitResult, problems: list[str]) -> tuple[str, int]:
    try:
        port = parts.port
    except ValueError:
        # The usual cause is a password with an unencoded '/', '?' or '#': the URL's host
        # part then ends inside the password, and what follows its ':' is taken as a port.
        problems.append(f"{NAME} has a port that is not a number from 1 to 65535")
        port = None
    hostname = parts.hostname or _DEFAULT_HOST
    if "," in hostname:
        problems.append(f"{NAME} names several hosts; give exactly one")
    elif not re.fullmatch(r"[A-Za-z0-9._:%-]+", hostname):
        problems.append(f"{NAME} has a host that is not a host name or IP address")
    return hostname, port or _DEFAULT_PORT


def _options(query: str, problems: list[str]) -> DatabaseUrl:
    """The query options as a :class:`DatabaseUrl` whose other fields are still defaults."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        problems.append(f"{NAME} has a query string that is not name=value pairs")
        return DatabaseUrl()
    url, seen = DatabaseUrl(), set[str]()
    for name, value in pairs:
        if name in seen:
            problems.append(f"{NAME} option {name} is given twice")
        elif name == "sslmode":
            try:
                url = dataclasses.replace(url, sslmode=SslMode(value))
            except ConfigurationError as err:
                problems.extend(err.problems)
        elif name == "sslrootcert":
            if not Path(value).is_file():
                problems.append(f"{NAME} option sslrootcert must name a readable CA certificate file")
            url = dataclasses.replace(url, sslrootcert=value)
        elif name == "connect_timeout":
            url = dataclasses.replace(url, connect_timeout=_timeout(value, problems))
        elif name == "application_name":
            url = dataclasses.replace(url, application_name=value)
        elif name == "options":
            # Sent as the startup packet's `options`, as libpq does: `-c lock_timeout=5s`.
            url = dataclasses.replace(url, options=value)
        elif name in _LIBPQ_OPTIONS:
            problems.append(f"{NAME} option {name} is not supported here (supported: {_SUPPORTED})")
        else:
            problems.append(f"{NAME} has an option this program does not know (supported: {_SUPPORTED})")
        seen.add(name)
    if url.sslrootcert is not None and url.sslmode in {SslMode.DISABLE, SslMode.PREFER}:
        problems.append(f"{NAME} option sslrootcert needs sslmode=require, verify-ca or verify-full")
    return url


def _timeout(value: str, problems: list[str]) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        problems.append(f"{NAME} option connect_timeout must be a number of seconds from 1 to 3600")
        return None
    return seconds
