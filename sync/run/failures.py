"""After a page fails: free the lease, shrink a page that timed out, record a permanent failure.

Best effort by design: the lease expires on its own, so a failure here is never worth hiding
the original one. The attempt recorded before the read is cleared (the invocation lived to see
its failure), except when a one-row page's write timed out: that counts like a death, so a row
that times out every time is refused in the end (``sync/run/pacing.py``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

from sync.core.deadline import LEASE_LOCK_WAIT_SECONDS, Deadline
from sync.core.errors import PermanentError, SourceShapeError, SyncError, is_page_timeout, is_write_timeout
from sync.postgres.db import Connection
from sync.postgres.transaction import transaction
from sync.run import pacing, runlog
from sync.run import state as st
from sync.run.page_plan import PagePlan


def after_failure(
    conn: Connection,
    connect: Callable[[], Connection],
    invocation: uuid.UUID,
    failure: SyncError | None,
    p: PagePlan | None,
    deadline: Deadline,
    page_size: int,
) -> None:
    """Release what ``invocation`` holds after ``failure``, on ``conn`` or, if that is broken, a fresh one."""
    run_id = p.run_id if p is not None else None
    timed_out = p is not None and failure is not None and failure.retryable and is_page_timeout(failure)
    shrink = pacing.after_timeout(page_size, p.page_size_limit) if p is not None and timed_out else None
    one_row = p is not None and pacing.page_size(page_size, p.page_size_limit) == 1
    counts_as_death = one_row and failure is not None and is_write_timeout(failure)
    for attempt in (conn, None):
        try:
            target = attempt if attempt is not None else connect()
            try:
                with transaction(target, within=deadline.left_after_work(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
                    if p is not None and not counts_as_death:
                        st.clear_attempt(target, invocation)
                    if isinstance(failure, SourceShapeError):
                        # Retried, but the status says so: the run keeps its cursor and resumes.
                        st.mark_failed(target, invocation, str(failure))
                    elif isinstance(failure, PermanentError):
                        st.mark_failed(target, invocation, str(failure))
                        if run_id is not None:
                            runlog.fail_run(target, run_id, str(failure))
                    elif shrink is not None:
                        st.limit_page_size(target, shrink)
                        st.release_lease(target, invocation)
                    else:
                        st.release_lease(target, invocation)
            finally:
                if attempt is None:
                    _close(target)
        except Exception:  # noqa: BLE001, S112 - the lease expires on its own
            continue
        if isinstance(failure, SourceShapeError):
            runlog.log_source_unavailable(run_id, failure)
        if isinstance(failure, PermanentError):
            runlog.log_run_failed(run_id, str(failure))
        if shrink is not None and p is not None:
            runlog.log_page_shrunk(p, shrink, str(failure))
        return


def _close(conn: Connection) -> None:
    # Closing a broken connection has nothing to report.
    with contextlib.suppress(Exception):
        conn.close()
