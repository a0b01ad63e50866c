"""One deadline per invocation, from the platform timeout down. Pure, apart from the clock.

The function has ``SYNC_FUNCTION_TIMEOUT_SECONDS`` before the platform kills it. Of that, the
work (lease, read, transform, isolation of refused rows, write) gets ``SYNC_TIME_BUDGET_SECONDS``
from the moment the invocation starts, and :data:`RESERVE_SECONDS` more are kept for what comes
after it: the commit and the continuation publish. No phase sets its own clock: each asks this
one value how long it has, so nothing can run past the platform's kill.

Within the work budget the read stops early (a page cut by the budget is continued by the next
message) so that the write keeps :data:`WRITE_SHARE` of the budget. Postgres is told the same
bound per transaction (``sync/postgres/transaction.py``), so a statement or a lock wait that would outlast
the invocation is cancelled by the server instead of running on after the platform killed us.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Commit plus the continuation publish: the publish waits at most PUBLISH_TIMEOUT_SECONDS (30 s,
# sync/run/publisher.py) and a commit or the lease release get the other 30 s.
RESERVE_SECONDS = 60.0
# The share of the work budget the read leaves to the write (and to isolating refused rows).
WRITE_SHARE = 1 / 3
# How long a transaction waits for a row lock on ``sync_status`` before the invocation answers
# "busy": an orphaned session of a killed invocation must not make the next one hang.
LEASE_LOCK_WAIT_SECONDS = 5.0
# Freeing the lease after a failure is tried with at least this long, even past ``ends``: the
# alternative is a lease that blocks the next delivery until it expires.
CLEANUP_SECONDS = 1.0


@dataclass(frozen=True)
class Deadline:
    """The invocation's clock: ``work_ends`` for the work, ``ends`` for commit and publish."""

    started: float
    work_ends: float
    ends: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def starting(cls, budget: float, *, started: float | None = None, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The deadline of an invocation that started at ``started`` (default: now)."""
        start = clock() if started is None else started
        return cls(start, start + budget, start + budget + RESERVE_SECONDS, clock)

    @property
    def read_ends(self) -> float:
        """When the read stops taking rows, so the write keeps its share of the budget."""
        return self.work_ends - (self.work_ends - self.started) * WRITE_SHARE

    def left(self) -> float:
        """Seconds of the work budget left (negative once it is spent)."""
        return self.work_ends - self.clock()

    def left_after_work(self) -> float:
        """Seconds until the invocation's end, for the commit, publish and cleanup."""
        return max(CLEANUP_SECONDS, self.ends - self.clock())
