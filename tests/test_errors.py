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
    classify,
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
