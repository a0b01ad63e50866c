"""Write a page, and when Postgres refuses a value in it, find that row and write the rest.

Postgres refuses a whole statement for one value it cannot hold, and COPY refuses the whole
stream. The transform checks the limits it knows (``sync/rows/limits.py``); this is the fallback
for every cause nobody listed (a new CHECK constraint, a trigger, a type the source started
sending). Kafka Connect's ``errors.tolerance`` with a dead-letter queue is the model: keep
going past a bad record, and keep the record.

How: the page is written under a SAVEPOINT. If that raises a data error (SQLSTATE class 22 or
23, or 54000), it is rolled back to the savepoint and the rows are split in halves, each tried
under its own savepoint, down to single rows, all in the caller's transaction. A single row
that still fails is offered to ``repair`` (the same row with the offending value NULL); the
first variant that writes is kept, else the row is refused. ``k`` bad rows in ``n`` cost about
``2k log2 n`` attempts; the clean path costs one savepoint.

Any other error (connection, serialization, permission, a bug) propagates at once: it is not
about a row, and the caller's retry rules apply. Isolation stops with
:class:`~sync.core.errors.TimeBudgetError` at ``deadline``, so the page is retried smaller instead
of overrunning the invocation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sync.core.errors import DataErrorInfo, TimeBudgetError, data_error
from sync.postgres.db import Connection

T = TypeVar("T")
R = TypeVar("R")

# One name serves every attempt: attempts are sequential, never nested.
_SAVEPOINT = "isolate_rows"


@dataclass(frozen=True)
class Refusal(Generic[T]):
    """A row Postgres refused, why, and what was written instead (None: nothing, it was skipped)."""

    item: T
    error: DataErrorInfo
    stored: T | None = None
    repair: str | None = None


@dataclass
class Isolated(Generic[T, R]):
    """What a page write did: the result of every attempt that was kept, and the refused rows."""

    results: list[R] = field(default_factory=list)
    refused: list[Refusal[T]] = field(default_factory=list)
    attempts: int = 0


Repairs = Callable[[T, DataErrorInfo], Iterable[tuple[str, T]]]


def write_isolating(
    conn: Connection,
    items: Sequence[T],
    write: Callable[[Sequence[T]], R],
    *,
    deadline: float,
    repairs: Repairs[T] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Isolated[T, R]:
    """Write ``items`` with ``write`` inside the caller's open transaction, refusing only bad rows.

    Args:
        conn: the connection whose transaction is open; nothing here commits.
        items: the page, in the order it should be written.
        write: writes a subset of ``items`` and returns its counts; must behave the same for
            any subset (it is called on halves, quarters, ... of the page).
        deadline: a ``clock()`` value after which no further attempt starts.
        repairs: variants of a refused row to try in order, each with a label of what changed;
            None refuses a bad row outright.
        clock: monotonic seconds; tests replace it.

    Raises:
        TimeBudgetError: isolation needed more time than ``deadline`` left.
        Exception: any error that is not a data error, unchanged; the transaction is then
            aborted and the caller must roll it back.
    """
    run = _Isolation(conn, write, deadline, repairs, clock)
    error = run.attempt(items)
    if error is not None:
        run.resolve(items, error)
    return run.outcome


class _Isolation(Generic[T, R]):
    def __init__(
        self,
        conn: Connection,
        write: Callable[[Sequence[T]], R],
        deadline: float,
        repairs: Repairs[T] | None,
        clock: Callable[[], float],
    ) -> None:
        self._cur = conn.cursor()
        self._write = write
        self._deadline = deadline
        self._repairs = repairs
        self._clock = clock
        self.outcome: Isolated[T, R] = Isolated()

    def attempt(self, items: Sequence[T]) -> DataErrorInfo | None:
        """Write ``items`` under a savepoint; the data error that undid it, or None."""
        if self.outcome.attempts and self._clock() > self._deadline:
            msg = (
                f"isolating refused rows ran out of the time budget after {self.outcome.attempts} attempts"
                f" ({len(self.outcome.refused)} rows refused so far); the page will be retried smaller"
            )
            raise TimeBudgetError(msg)
        self.outcome.attempts += 1
        self._cur.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            result = self._write(items)
        except Exception as err:
            info = data_error(err)
            if info is None:
                raise
            self._cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            self._cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            return info
        self._cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        self.outcome.results.append(result)
        return None

    def resolve(self, items: Sequence[T], error: DataErrorInfo) -> None:
        """``items`` failed together with ``error``: refuse it if it is one row, else split."""
        if len(items) == 1:
            self._refuse(items[0], error)
        else:
            self._split(items)

    def _split(self, items: Sequence[T]) -> None:
        middle = len(items) // 2
        left, right = items[:middle], items[middle:]
        left_error = self.attempt(left)
        if left_error is not None:
            self.resolve(left, left_error)
        elif len(right) > 1:
            # The left half wrote, so the failure is on the right: trying it whole again
            # would only repeat it. If it was an interaction between the halves, every part
            # of the right half now writes and nothing is refused, which is also correct.
            self._split(right)
            return
        right_error = self.attempt(right)
        if right_error is not None:
            self.resolve(right, right_error)

    def _refuse(self, item: T, error: DataErrorInfo) -> None:
        for label, variant in self._repairs(item, error) if self._repairs else ():
            if self.attempt([variant]) is None:
                self.outcome.refused.append(Refusal(item, error, variant, label))
                return
        self.outcome.refused.append(Refusal(item, error))
