"""One exception root, two branches, and the single place that classifies foreign errors.

The Pub/Sub contract makes retryability a data-loss question: a handler that returns acks the
message, a handler that raises gets it redelivered with backoff. So every failure is decided
here, once, and the rest of the code only raises :class:`RetryableError` or
:class:`PermanentError` (or lets a driver error reach :func:`classify`).

This is also the one place that turns a driver error into text: Postgres puts row contents in
its error details (``Failing row contains (...)``), and those must never reach a log line or
``sync_status.last_error``.
"""

from __future__ import annotations

import re
import socket
import ssl
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class SyncError(Exception):
    """Root of every error this package raises on purpose.

    ``sqlstate`` and ``http_status`` say what a classified driver or API error was, so a log
    line can carry the code without the driver's text.
    """

    retryable: bool = True
    sqlstate: str | None = None
    http_status: int | None = None


class RetryableError(SyncError):
    """Transient: raise so Pub/Sub redelivers the message with backoff."""

    retryable = True


class UnknownError(RetryableError):
    """Not recognised: retried (Pub/Sub's retry window bounds it), and worth a human's look."""


class PermanentError(SyncError):
    """Will fail the same way on every retry: log the reason and acknowledge."""

    retryable = False


class ConfigurationError(PermanentError):
    """One or more environment variables are missing or malformed."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration: " + "; ".join(self.problems))


class SourceSchemaError(PermanentError):
    """A BigQuery table or a required logical column is missing."""


class SourceShapeError(RetryableError):
    """A table or column the replica was built from is missing or unreadable in the source.

    Retryable: a Fivetran re-sync or a lost permission usually ends within the hour, and
    nothing is written meanwhile. ``missing`` names each piece, for the log line and the alert.
    """

    def __init__(self, message: str, missing: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(missing)


class MessageError(PermanentError):
    """A Pub/Sub message that can never be processed (malformed JSON, unknown type, bad field)."""


class LeaseBusyError(RetryableError):
    """Another invocation holds the sync lease."""


class StaleLeaseError(RetryableError):
    """This invocation lost its lease before committing: another one took over."""


class TimeBudgetError(RetryableError):
    """A page did not finish within its time budget; the next attempt reads a smaller page."""


# SQLSTATE classes/codes that succeed on retry. Class 08 is connection trouble, 40 is
# serialization/deadlock, 53 is resource exhaustion, 57P0x is an admin shutdown or crash
# recovery (what a Postgres restart mid-run looks like), 55P03 a lock timeout.
_RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "58"})
_RETRYABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "55P03", "57014"})

# HTTP statuses Google APIs use for transient trouble.
_RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})

# Postgres error fields that name things (severity, code, message, hint, schema, table, column,
# data type, constraint). Everything else is dropped: D (detail) holds "Failing row contains
# (...)" and key values, W (where) holds JSON input and statement text, q the internal query.
_PG_KEPT_FIELDS = ("S", "V", "C", "M", "H", "s", "t", "c", "d", "n")
# In class 22 (data exception) Postgres appends the offending input to the message after a
# colon (`invalid input syntax for type numeric: "12,5"`); the reason is the part before it.
_PG_DATA_VALUE = re.compile(r":\s.*\Z", re.DOTALL)
# Class 22 and 23 hints can quote input too.
_PG_DATA_CLASSES = frozenset({"22", "23"})


def sqlstate_is_retryable(code: str) -> bool:
    """Whether a Postgres SQLSTATE denotes a transient failure."""
    return code[:2] in _RETRYABLE_SQLSTATE_CLASSES or code in _RETRYABLE_SQLSTATES


def http_status_is_retryable(status: int) -> bool:
    """Whether an HTTP status from a Google API denotes a transient failure."""
    return status in _RETRYABLE_HTTP


def classify(err: BaseException) -> SyncError:
    """Map any exception onto the retryable or permanent branch.

    Unknown errors default to retryable (:class:`UnknownError`): acking them would lose the
    page silently, and the push subscription's dead-letter policy (``max_delivery_attempts``) ends the loop.
    A Postgres error is scrubbed in place (see :func:`scrub_postgres_error`), so the original
    kept as ``__cause__`` cannot leak row contents through a traceback either.
    """
    if isinstance(err, SyncError):
        return err
    sqlstate = sqlstate_of(err)
    if sqlstate is not None:
        fields = scrub_postgres_error(err)
        cls: type[SyncError] = RetryableError if sqlstate_is_retryable(sqlstate) else PermanentError
        return _wrap(cls, f"postgres error {sqlstate}{_pg_where(fields)}: {fields.get('M', '')}", err, sqlstate=sqlstate)
    credentials = _google_auth_failure(err)
    if credentials is not None:
        return credentials
    if _is_connection_failure(err):
        return _wrap(RetryableError, f"connection failure: {type(err).__name__}: {err}", err)
    status = _http_status(err)
    if status is not None:
        cls = RetryableError if http_status_is_retryable(status) else PermanentError
        return _wrap(cls, f"google api error {status}: {type(err).__name__}: {err}", err, http_status=status)
    if _is_google_retry_error(err):
        return _wrap(RetryableError, f"google api transient failure: {type(err).__name__}: {err}", err)
    return _wrap(UnknownError, f"unexpected error: {type(err).__name__}: {err}", err)


# SQLSTATEs that mean "this value cannot be stored": class 22 (data exception: overflow, bad
# input, string too long), class 23 (integrity: CHECK, NOT NULL, unique, foreign key) and 54000
# (an index entry above the btree limit). Only these are worth isolating row by row; a row
# cannot cause a connection, serialization or permission error.
_DATA_SQLSTATE_CLASSES = frozenset({"22", "23"})
_DATA_SQLSTATES = frozenset({"54000"})


@dataclass(frozen=True)
class DataErrorInfo:
    """Where Postgres refused a value. The message and detail are left out: they quote row data."""

    sqlstate: str
    table: str | None = None
    column: str | None = None
    constraint: str | None = None


def data_error(err: BaseException) -> DataErrorInfo | None:
    """The fields of a Postgres error caused by a value, or None for any other error."""
    sqlstate = sqlstate_of(err)
    if sqlstate is None or not (sqlstate[:2] in _DATA_SQLSTATE_CLASSES or sqlstate in _DATA_SQLSTATES):
        return None
    fields = err.args[0]
    return DataErrorInfo(sqlstate, fields.get("t"), fields.get("c"), fields.get("n"))


def is_page_timeout(err: BaseException) -> bool:
    """Whether a failure says the page took too long, so a smaller page may get through.

    That is the time budget, Postgres' ``statement_timeout`` (57014) or a client-side timeout
    (BigQuery's ``result(timeout=...)`` raises ``TimeoutError``), anywhere in the cause chain.
    """
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, (TimeBudgetError, TimeoutError)) or sqlstate_of(seen) == "57014":
            return True
        seen = seen.__cause__
    return False


def is_write_timeout(err: BaseException) -> bool:
    """Whether Postgres or the isolation of refused rows ran out of time, not the BigQuery read.

    Only such a timeout on a one-row page counts against that row (``sync/run/pacing.py``).
    """
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, TimeBudgetError) or sqlstate_of(seen) == "57014":
            return True
        seen = seen.__cause__
    return False


def scrub_postgres_error(err: BaseException) -> dict[str, str]:
    """Drop row contents from a pg8000 error, in place, and return the fields that are left.

    Keeps the reason, SQLSTATE, schema, table, column, data type and constraint; drops the
    detail, context and query, and for data exceptions the input value quoted in the message.
    """
    args = getattr(err, "args", ())
    if not args or not isinstance(args[0], dict):
        return {}
    raw: dict[str, Any] = args[0]
    code = str(raw.get("C", ""))
    kept = {k: str(raw[k]) for k in _PG_KEPT_FIELDS if k in raw}
    if code[:2] in _PG_DATA_CLASSES:
        kept.pop("H", None)
        if code[:2] == "22" and "M" in kept:
            kept["M"] = _PG_DATA_VALUE.sub("", kept["M"])
    err.args = (kept, *args[1:])
    return kept


def _pg_where(fields: dict[str, str]) -> str:
    names = (("table", "t"), ("column", "c"), ("constraint", "n"))
    where = ", ".join(f"{label} {fields[key]}" for label, key in names if fields.get(key))
    return f" ({where})" if where else ""


def _wrap(
    cls: type[SyncError], text: str, err: BaseException, *, sqlstate: str | None = None, http_status: int | None = None
) -> SyncError:
    wrapped = cls(text)
    wrapped.sqlstate = sqlstate
    wrapped.http_status = http_status
    wrapped.__cause__ = err
    return wrapped


def sqlstate_of(err: BaseException) -> str | None:
    """The SQLSTATE of a Postgres error, None for anything else."""
    # pg8000 puts the server's error fields in args[0] as a dict keyed by field code.
    args = getattr(err, "args", ())
    if args and isinstance(args[0], dict):
        code = args[0].get("C")
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def _is_connection_failure(err: BaseException) -> bool:
    if isinstance(err, (ConnectionError, socket.timeout, TimeoutError, ssl.SSLError)):
        return True
    # Look modules up instead of importing them: if a library was never imported, none of its
    # errors can be in flight, and importing it here would cost cold-start time for nothing.
    pg8000_exceptions = sys.modules.get("pg8000.exceptions")
    if pg8000_exceptions is not None and isinstance(err, pg8000_exceptions.InterfaceError):
        return True
    requests_exceptions = sys.modules.get("requests.exceptions")  # BigQuery and Secret Manager (REST)
    if requests_exceptions is not None and isinstance(err, (requests_exceptions.ConnectionError, requests_exceptions.Timeout)):
        return True
    aiohttp = sys.modules.get("aiohttp")  # the Cloud SQL connector's Admin API client
    return aiohttp is not None and isinstance(err, aiohttp.ClientConnectionError)


def _http_status(err: BaseException) -> int | None:
    gexc = sys.modules.get("google.api_core.exceptions")
    if gexc is not None and isinstance(err, gexc.GoogleAPICallError) and err.code is not None:
        return int(err.code)
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(err, aiohttp.ClientResponseError):
        return int(err.status)
    return None


def _is_google_retry_error(err: BaseException) -> bool:
    gexc = sys.modules.get("google.api_core.exceptions")
    return gexc is not None and isinstance(err, gexc.RetryError)


def _google_auth_failure(err: BaseException) -> SyncError | None:
    auth = sys.modules.get("google.auth.exceptions")
    if auth is None or not isinstance(err, auth.GoogleAuthError):
        return None
    if isinstance(err, auth.DefaultCredentialsError):
        # No credentials at all: every redelivery fails the same way until someone fixes the
        # deployment (the function's service account) or GOOGLE_APPLICATION_CREDENTIALS locally.
        problem = (
            f"Google credentials are not available ({type(err).__name__}: {err}); the function uses its service"
            " account, a local run needs GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`"
        )
        failure: SyncError = ConfigurationError([problem])
        failure.__cause__ = err
        return failure
    if isinstance(err, auth.TransportError) or err.retryable:
        return _wrap(RetryableError, f"google credentials refresh failed, will retry: {type(err).__name__}: {err}", err)
    problem = f"Google credentials were refused ({type(err).__name__}: {err}); check the service account and its key"
    failure = ConfigurationError([problem])
    failure.__cause__ = err
    return failure
