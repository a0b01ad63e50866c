"""One exception root, two branches, and the single place that classifies foreign errors.

The Pub/Sub contract makes retryability a data-loss question: a handler that returns acks the
message, a handler that raises gets it redelivered with backoff. So every failure is decided
here, once, and the rest of the code only raises :class:`RetryableError` or
:class:`PermanentError` (or lets a driver error reach :func:`classify`).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass


class SyncError(Exception):
    """Root of every error this package raises on purpose."""

    retryable: bool = True


class RetryableError(SyncError):
    """Transient: raise so Pub/Sub redelivers the message with backoff."""

    retryable = True


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


def sqlstate_is_retryable(code: str) -> bool:
    """Whether a Postgres SQLSTATE denotes a transient failure."""
    return code[:2] in _RETRYABLE_SQLSTATE_CLASSES or code in _RETRYABLE_SQLSTATES


def http_status_is_retryable(status: int) -> bool:
    """Whether an HTTP status from a Google API denotes a transient failure."""
    return status in _RETRYABLE_HTTP


def classify(err: BaseException) -> SyncError:
    """Map any exception onto the retryable or permanent branch.

    Unknown errors default to retryable: acking them would lose the page silently, and
    Pub/Sub's bounded retry policy (dead-letter / 24 h expiry) ends the loop.
    """
    if isinstance(err, SyncError):
        return err
    sqlstate = _sqlstate(err)
    if sqlstate is not None:
        cls: type[SyncError] = RetryableError if sqlstate_is_retryable(sqlstate) else PermanentError
        return _wrap(cls, f"postgres error {sqlstate}", err)
    if _is_pg_interface_error(err) or isinstance(err, (ConnectionError, socket.timeout, TimeoutError, ssl.SSLError)):
        return _wrap(RetryableError, "connection failure", err)
    status = _http_status(err)
    if status is not None:
        cls = RetryableError if http_status_is_retryable(status) else PermanentError
        return _wrap(cls, f"google api error {status}", err)
    if _is_google_retry_error(err):
        return _wrap(RetryableError, "google api transient failure", err)
    return _wrap(RetryableError, "unexpected error", err)


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
    sqlstate = _sqlstate(err)
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
        if isinstance(seen, (TimeBudgetError, TimeoutError)) or _sqlstate(seen) == "57014":
            return True
        seen = seen.__cause__
    return False


def _wrap(cls: type[SyncError], what: str, err: BaseException) -> SyncError:
    wrapped = cls(f"{what}: {type(err).__name__}: {err}")
    wrapped.__cause__ = err
    return wrapped


def _sqlstate(err: BaseException) -> str | None:
    # pg8000 puts the server's error fields in args[0] as a dict keyed by field code.
    args = getattr(err, "args", ())
    if args and isinstance(args[0], dict):
        code = args[0].get("C")
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def _is_pg_interface_error(err: BaseException) -> bool:
    try:
        import pg8000.exceptions
    except ImportError:  # pragma: no cover - pg8000 is a runtime dependency
        return False
    return isinstance(err, pg8000.exceptions.InterfaceError)


def _http_status(err: BaseException) -> int | None:
    try:
        from google.api_core import exceptions as gexc
    except ImportError:  # pragma: no cover - google-api-core is a runtime dependency
        return None
    if isinstance(err, gexc.GoogleAPICallError) and err.code is not None:
        return int(err.code)
    return None


def _is_google_retry_error(err: BaseException) -> bool:
    try:
        from google.api_core import exceptions as gexc
    except ImportError:  # pragma: no cover
        return False
    return isinstance(err, gexc.RetryError)
