"""The one classification table: what is retried and what is acknowledged."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc
from pg8000.exceptions import DatabaseError, InterfaceError

from sync.errors import (
    ConfigurationError,
    LeaseBusyError,
    MessageError,
    PermanentError,
    RetryableError,
    SourceSchemaError,
    TimeBudgetError,
    classify,
    data_error,
    is_page_timeout,
)


def _pg(code: str) -> DatabaseError:
    return DatabaseError({"S": "ERROR", "C": code, "M": "boom"})


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
