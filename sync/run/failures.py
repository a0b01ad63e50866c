"""After a page fails: free the lease, weigh the attempt against the page, record a permanent failure.

Best effort by design: the lease expires on its own, so a failure here is never worth hiding
the original one. The attempt recorded before the read counted as a death; the invocation lived
to see its failure, so it re-weighs it (``sync/run/pacing.py``: the one rule that shrinks a page).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sync.core.deadline import LEASE_LOCK_WAIT_SECONDS, Deadline
from sync.core.errors import PermanentError, SourceShapeError, SyncError
from sync.postgres.db import Connection, close_quietly
from sync.postgres.transaction import transaction
from sync.run import pacing, sync_runs
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
    # A death already weighs 1 as recorded; only another weight changes the record.
    weight = pacing.weight(failure, pacing.page_size(page_size, p.page_size_limit)) if p is not None else 1
    for attempt in (conn, None):
        try:
            target = attempt if attempt is not None else connect()
            try:
                with transaction(target, within=deadline.left_after_work(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
                    if weight != 1:
                        st.weigh_attempt(target, invocation, weight)
                    if isinstance(failure, SourceShapeError):
                        # Retried, but the status says so: the run keeps its cursor and resumes.
                        st.mark_failed(target, invocation, str(failure))
                    elif isinstance(failure, PermanentError):
                        st.mark_failed(target, invocation, str(failure))
                        if run_id is not None:
                            sync_runs.fail_run(target, run_id, str(failure))
                    else:
                        st.release_lease(target, invocation)
            finally:
                if attempt is None:
                    close_quietly(target)
        except Exception:  # noqa: BLE001, S112 - the lease expires on its own
            continue
        if isinstance(failure, SourceShapeError):
            sync_runs.log_source_unavailable(run_id, failure)
        if isinstance(failure, PermanentError):
            sync_runs.log_run_failed(run_id, str(failure))
        return
