"""The one classification table: what is retried and what is acknowledged; and what of a
driver error may be written down."""

from __future__ import annotations

import logging

import aiohttp
import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from pg8000.exceptions import DatabaseError, InterfaceError

from sync.core.errors import (
    ConfigurationError,
    LeaseBusyError,
    MessageError,
    PermanentError,
    RetryableError,
    SourceSchemaError,
    TimeBudgetError,
    UnknownError,
    classify,
    data_error,
    is_page_timeout,
)
from sync.core.logs import JsonFormatter
from sync.postgres.db import connect_url


def _pg(code: str) -> DatabaseError:
    return DatabaseError({"S": "ERROR", "C": code, "M": "boom"})


def _admin_api(status: int) -> aiohttp.ClientResponseError:
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    url = URL("http://127.0.0.1/sql/v1beta4/projects/p/instances/i/connectSettings")
    request = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.ClientResponseError(request, (), status=status, message="from the Admin API")


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (_pg("08006"), True),  # connection failure
        (_pg("40001"), True),  # serialization failure
        (_pg("40P01"), True),  # deadlock
        (_pg("57P01"), True),  # admin shutdown: a Postgres restart
        (_pg("53300"), True),  # too many connections
        (_pg("55P03"), True),  # lock not available
        (_pg("42P01"), False),  # undefined table: needs a migration, retrying will not help
        (_pg("23505"), False),  # unique violation: a bug, not weather
        (_pg("28P01"), False),  # bad password
        (InterfaceError("network error"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (gexc.TooManyRequests("slow down"), True),  # BigQuery 429
        (gexc.ServiceUnavailable("try later"), True),
        (gexc.InternalServerError("oops"), True),
        (gexc.BadRequest("syntax error"), False),  # a query that can never work
        (gexc.NotFound("no such table"), False),
        (gexc.Forbidden("no access"), False),
        (ValueError("surprise"), True),  # unknown: retry, bounded by Pub/Sub's retry policy
        (requests.ConnectionError("reset"), True),  # BigQuery / Secret Manager over REST lost the connection
        (requests.Timeout("slow"), True),
        (aiohttp.ClientConnectionError("refused"), True),  # Cloud SQL Admin API unreachable
        (_admin_api(503), True),  # Admin API overloaded
        (_admin_api(429), True),  # Admin API quota
        (_admin_api(404), False),  # no such instance: see sync.postgres.db, which names the variable
        (auth_exceptions.TransportError("token endpoint unreachable"), True),
        (auth_exceptions.RefreshError("temporarily unavailable", retryable=True), True),
        (auth_exceptions.RefreshError("invalid_grant"), False),  # a revoked key needs a human
        (auth_exceptions.DefaultCredentialsError("no credentials"), False),
        (MessageError("bad"), False),
        (ConfigurationError(["X is required"]), False),
        (SourceSchemaError("no column"), False),
        (LeaseBusyError("busy"), True),
    ],
)
def test_classification_table(error, retryable):
    result = classify(error)
    assert result.retryable is retryable
    assert isinstance(result, RetryableError if retryable else PermanentError)


def test_classified_error_keeps_its_cause():
    original = _pg("40001")
    assert classify(original).__cause__ is original


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (_pg("40001"), RetryableError, ("40001", None)),
        (gexc.ServiceUnavailable("try later"), RetryableError, (None, 503)),
        (_admin_api(429), RetryableError, (None, 429)),
        (ConnectionResetError(), RetryableError, (None, None)),
        (ValueError("surprise"), UnknownError, (None, None)),  # the one kind a human should look at
        (auth_exceptions.DefaultCredentialsError("none"), ConfigurationError, (None, None)),
    ],
)
def test_classified_error_says_what_it_was(error, kind, code):
    result = classify(error)
    assert type(result) is kind
    assert (result.sqlstate, result.http_status) == code


def test_known_transients_are_not_unknown():
    # The entry point logs UnknownError with a traceback; a connection reset must not look like one.
    assert not isinstance(classify(ConnectionResetError()), UnknownError)
    assert not isinstance(classify(_pg("57P01")), UnknownError)


ROW_SECRET = "JaneRoe, jane.roe@customer.example, 1234567.89"


@pytest.mark.parametrize(
    ("statement", "code", "kept"),
    [
        # 23502: Postgres puts the whole row in the detail ("Failing row contains (...)")
        (
            f"INSERT INTO leaky (id, note) VALUES (NULL, '{ROW_SECRET}')",
            "23502",
            ["23502", "table leaky", "column id", 'null value in column "id"'],
        ),
        # 23514: the same for a CHECK constraint, which also names the constraint
        (
            f"INSERT INTO leaky (id, note) VALUES (1, '{ROW_SECRET}!')",
            "23514",
            ["23514", "table leaky", "constraint leaky_note_check"],
        ),
        # 22P02: a data exception quotes the input in the message itself
        (f"SELECT '{ROW_SECRET}'::numeric", "22P02", ["22P02", "invalid input syntax for type numeric"]),
        # JSON input errors put the text in the detail and the context
        (f"SELECT '{{\"name\": {ROW_SECRET}}}'::jsonb", "22P02", ["22P02", "invalid input syntax for type json"]),
    ],
)
def test_postgres_errors_keep_the_reason_and_drop_row_contents(pg_admin_url, statement, code, kept):
    conn = connect_url(pg_admin_url)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TEMP TABLE leaky (id int NOT NULL, note text CHECK (note NOT LIKE '%!'))")
        with pytest.raises(DatabaseError) as info:
            cur.execute(statement)
    finally:
        conn.rollback()
        conn.close()
    original = info.value
    assert "JaneRoe" in repr(original.args)  # the server did send the row: the test can fail
    failure = classify(original)
    assert failure.sqlstate == code
    # What the entry point and pipeline log, and what sync_status.last_error stores.
    record = logging.LogRecord("sync", logging.ERROR, __file__, 1, "failed: %s", (failure,), (type(failure), failure, None))
    written = [str(failure), JsonFormatter().format(record), repr(original), str(failure.__cause__)]
    for text in written:
        assert "JaneRoe" not in text
        assert "customer.example" not in text
    for fragment in kept:
        assert fragment in str(failure)


@pytest.mark.parametrize(
    ("code", "is_data"),
    [
        ("22003", True),  # numeric overflow
        ("22001", True),  # string too long for varchar(n)
        ("22P02", True),  # invalid input syntax
        ("23514", True),  # CHECK constraint
        ("23502", True),  # NOT NULL
        ("23505", True),  # unique violation
        ("54000", True),  # index row size above the btree limit
        ("54001", False),  # statement too complex: about the SQL, not a row
        ("08006", False),  # connection failure
        ("40001", False),  # serialization failure
        ("42501", False),  # permission denied
        ("57014", False),  # statement timeout: handled by shrinking the page
        ("XX000", False),  # internal error
    ],
)
def test_data_error_table(code, is_data):
    assert (data_error(_pg(code)) is not None) is is_data


def test_data_error_keeps_where_but_not_what():
    err = DatabaseError(
        {
            "S": "ERROR",
            "C": "23514",
            "M": "new row violates check",
            "D": "Failing row contains (secret)",
            "t": "opportunities",
            "n": "no_test_rows",
            "c": "name",
        }
    )
    info = data_error(err)
    assert (info.sqlstate, info.table, info.column, info.constraint) == ("23514", "opportunities", "name", "no_test_rows")
    assert "secret" not in repr(info)


def test_data_error_ignores_what_is_not_a_postgres_error():
    assert data_error(ValueError("22003")) is None


@pytest.mark.parametrize(
    ("error", "timed_out"),
    [
        (TimeBudgetError("out of time"), True),
        (_pg("57014"), True),  # statement_timeout
        (classify(_pg("57014")), True),  # found through the classified error's cause
        (TimeoutError(), True),  # a client-side wait gave up (BigQuery result(timeout=...))
        (_pg("40001"), False),
        (classify(_pg("08006")), False),
        (ValueError("slow"), False),
    ],
)
def test_page_timeout_table(error, timed_out):
    assert is_page_timeout(error) is timed_out
