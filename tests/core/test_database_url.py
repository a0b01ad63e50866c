"""DATABASE_URL: parsed when the settings are read, every option honoured or refused, never echoed;
then honoured for real against a server that checks passwords and speaks TLS."""

from __future__ import annotations

import ssl
import uuid

import pytest
from pg8000.exceptions import DatabaseError, InterfaceError

from sync.core.database_url import DatabaseUrl, SslMode, parse_database_url
from sync.core.errors import ConfigurationError
from sync.postgres.db import connect_url

SECRET = "Pw-LEAK-9f3e"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # the minimal form: libpq's defaults for everything left out
        ("postgresql://db.internal/app", DatabaseUrl(host="db.internal", database="app")),
        # both scheme spellings libpq accepts
        ("postgres://u@h:6543/d", DatabaseUrl(host="h", port=6543, database="d", user="u")),
        # a percent-encoded password with every reserved character decodes exactly
        (
            f"postgresql://sync:{SECRET}%2Fx%3Fy%23z%40w%3Av@127.0.0.1:5432/db",
            DatabaseUrl(database="db", user="sync", password=f"{SECRET}/x?y#z@w:v"),
        ),
        # an '@' in the password is unambiguous even unencoded: the host follows the last one
        ("postgresql://u:p@ss@h/d", DatabaseUrl(host="h", database="d", user="u", password="p@ss")),
        # IPv6 literal
        ("postgresql://u@[::1]:5433/d", DatabaseUrl(host="::1", port=5433, database="d", user="u")),
        # every supported option is carried, not dropped
        (
            "postgresql://h/d?sslmode=require&connect_timeout=7&application_name=x&options=-c%20lock_timeout%3D5s",
            DatabaseUrl(
                host="h",
                database="d",
                sslmode=SslMode.REQUIRE,
                connect_timeout=7.0,
                application_name="x",
                options="-c lock_timeout=5s",
            ),
        ),
        ("postgresql://h/d?sslmode=disable", DatabaseUrl(host="h", database="d", sslmode=SslMode.DISABLE)),
    ],
)
def test_valid_urls(url, expected):
    assert parse_database_url(url) == expected


@pytest.mark.parametrize(
    ("url", "named"),
    [
        # the repro from the issue: an unencoded '/' ends the host part inside the password
        (f"postgresql://postgres:{SECRET}/x@127.0.0.1:5432/db", ["port that is not a number", "percent-encode"]),
        # '#' starts a fragment: everything after it would be silently dropped
        (f"postgresql://postgres:{SECRET}#x@127.0.0.1:5432/db", ["contains a '#'"]),
        # '?' starts the query: the rest of the password becomes an "option"
        (f"postgresql://postgres:{SECRET}?x@127.0.0.1/db", ["port that is not a number"]),
        # not Postgres at all
        (f"mysql://root:{SECRET}@db/app", ["must start with postgresql://"]),
        # libpq modes pg8000 cannot honour are refused, not approximated
        (f"postgresql://u:{SECRET}@h/d?sslmode=allow", ["sslmode must be one of disable, prefer, require"]),
        (f"postgresql://u:{SECRET}@h/d?sslmode=verify_full", ["sslmode must be one of"]),
        # a real libpq option this program does not implement is named...
        (f"postgresql://u:{SECRET}@h/d?target_session_attrs=read-write", ["option target_session_attrs is not supported"]),
        # ...an unknown one is not (it could be a mistyped password)
        (f"postgresql://u:x@h/d?{SECRET}=1", ["an option this program does not know"]),
        (f"postgresql://u:{SECRET}@h/d?connect_timeout=soon", ["connect_timeout must be a number of seconds"]),
        (f"postgresql://u:{SECRET}@h/d?sslrootcert=/nonexistent/ca.pem&sslmode=verify-ca", ["sslrootcert must name"]),
        (f"postgresql://u:{SECRET}@h/d?sslmode=require&sslmode=disable", ["option sslmode is given twice"]),
        (f"postgresql://u:{SECRET}@h1,h2/d", ["names several hosts"]),
    ],
)
def test_invalid_urls_are_named_and_never_echoed(url, named):
    with pytest.raises(ConfigurationError) as info:
        parse_database_url(url)
    text = str(info.value)
    for fragment in named:
        assert fragment in text
    assert "DATABASE_URL" in text
    assert SECRET not in text
    assert "Pw-" not in text


def test_the_password_is_not_in_the_repr():
    url = parse_database_url(f"postgresql://u:{SECRET}@h/d")
    assert url.password == SECRET
    assert SECRET not in repr(url)


# Against a real server that checks passwords and speaks TLS (tests/conftest.py::secure_postgres).


def _one(url: str, sql: str) -> object:
    conn = connect_url(url)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        row = cur.fetchone()
        assert row is not None
        return row[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def role(secure_postgres):
    """A login role whose password needs every kind of percent-encoding."""
    name, password = f"r_{uuid.uuid4().hex[:8]}", f"{SECRET}/x?y#z@w:v %"
    admin = connect_url(secure_postgres.admin_url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    admin.close()
    return name, password


def test_percent_encoded_password_logs_in(secure_postgres, role):
    name, password = role
    assert _one(secure_postgres.url("postgres", name, password), "SELECT current_user") == name


def test_the_server_really_checks_passwords(secure_postgres, role):
    name, _ = role
    with pytest.raises(DatabaseError) as info:
        connect_url(secure_postgres.url("postgres", name, "not-the-password"))
    assert info.value.args[0]["C"] == "28P01"


@pytest.mark.parametrize(
    ("query", "encrypted"),
    [
        ("?sslmode=disable", False),  # disable means plaintext even when the server offers TLS
        ("", True),  # libpq's and pg8000's default, prefer: TLS when offered
        ("?sslmode=require", True),
        ("?sslmode=verify-ca&sslrootcert={ca}", True),
        ("?sslmode=verify-full&sslrootcert={ca}", True),  # the server certificate names 127.0.0.1
    ],
)
def test_sslmode_is_honoured(secure_postgres, role, query, encrypted):
    name, password = role
    url = secure_postgres.url("postgres", name, password) + query.format(ca=secure_postgres.ca_file)
    assert _one(url, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is encrypted


def test_verify_full_refuses_a_server_it_cannot_verify(secure_postgres, role):
    name, password = role
    # The system trust store does not know the test CA: verification must fail, not pass quietly.
    with pytest.raises(ssl.SSLCertVerificationError):
        connect_url(secure_postgres.url("postgres", name, password) + "?sslmode=verify-full")


def test_require_refuses_a_server_without_tls(pg_admin_url):
    # The machine's own server (or the throwaway trust cluster) has ssl=off: no silent plaintext.
    with pytest.raises(InterfaceError, match="Server refuses SSL"):
        connect_url(pg_admin_url + "?sslmode=require")


def test_options_and_application_name_reach_the_server(secure_postgres, role):
    name, password = role
    url = secure_postgres.url("postgres", name, password) + "?options=-c%20lock_timeout%3D4321ms&application_name=probe"
    assert _one(url, "SELECT current_setting('lock_timeout') || ' ' || current_setting('application_name')") == ("4321ms probe")
