"""When Fivetran says a sync ended: one tick in flight, and no ``sync_end`` left for the scheduler.

A run covers every change Fivetran committed before the run's first read froze its bound
(``sync/bigquery/cursor.py``). Fivetran sends ``sync_end`` after it committed, so a run that began
after the webhook accepted a ``sync_end`` covers it. Three timestamps, all on the database's clock:

- ``sync_status.run_begun_at``: the newest run began, committed before its first read
  (:func:`run_began`, from the pipeline's attempt record). On ``sync_status`` because the pipeline
  holds that row then anyway: stamping it never waits for the webhook.
- ``sync_wakeups.requested_at``: the newest ``sync_end`` the webhook accepted.
- ``sync_wakeups.tick_published_at``: the newest tick published for such a request.

The rules:

1. **The webhook** (:func:`request`) records the request and publishes a tick unless one is
   *outstanding*: published after the newest run began. That tick will begin a run (which covers
   the request if it begins later, and otherwise ends in rule 3), or it lands on the run in
   progress, whose end sees the request (rule 3). So a burst of ``sync_end`` events costs one tick.
2. **The pipeline** stamps ``run_begun_at`` when a run begins (:func:`run_began`).
3. **When a run ends** (:func:`follow_up`), a request recorded at or after the newest run began
   is not covered yet: the pipeline publishes one tick, the follow-up, which counts as outstanding.
   This is what keeps a ``sync_end`` that lands while a run is reading (its tick is then dropped as
   "busy" or continues that run, whose bound is already frozen) from waiting for the scheduler.

Rules 1 and 3 decide and publish while holding the ``sync_wakeups`` row lock, so they cannot pass
each other: either the run's end sees the request, or the webhook sees a tick that is not
outstanding and publishes. The webhook publishes before it commits: a crash in between leaves an
extra tick (a run with nothing to do), never a request nobody acts on. A run that fails or is
stopped follows nothing up; its requests wait for the next scheduled tick, which begins a run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sync.postgres.db import Connection, Cursor
from sync.postgres.schema import ENTITY

# How long the webhook may hold the row while it publishes, and how long a run's end waits for it.
WAKE_PUBLISH_TIMEOUT_SECONDS = 10.0
LOCK_WAIT_SECONDS = WAKE_PUBLISH_TIMEOUT_SECONDS + 5.0

# The row is seeded by migration 0015; recreating it keeps a deleted row from failing every request.
_ENSURE_ROW = "INSERT INTO sync_wakeups (id) VALUES (true) ON CONFLICT (id) DO NOTHING"
_LOCK_ROW = "SELECT requested_at, tick_published_at FROM sync_wakeups WHERE id FOR UPDATE"


def run_began(conn: Connection) -> None:
    """A new run begins: requests recorded before now are covered by its first read."""
    conn.cursor().execute("UPDATE sync_status SET run_begun_at = now() WHERE entity_type = %s", (ENTITY,))


def request(conn: Connection, publish: Callable[[], None]) -> bool:
    """Record an accepted ``sync_end``; call ``publish`` unless a tick is outstanding.

    Runs in the caller's transaction and holds the row lock until it commits; if ``publish``
    raises, nothing is recorded and the error propagates (the caller answers so Fivetran retries).

    Returns:
        Whether a tick was published.
    """
    cur = conn.cursor()
    _requested, published = _lock(cur)
    began = _run_begun(cur)
    outstanding = published is not None and (began is None or published > began)
    if not outstanding:
        publish()
    cur.execute(
        "UPDATE sync_wakeups SET requested_at = now(),"
        " tick_published_at = CASE WHEN %s THEN now() ELSE tick_published_at END WHERE id",
        (not outstanding,),
    )
    return not outstanding


def follow_up(conn: Connection, publish: Callable[[], None]) -> bool:
    """At a run's end: call ``publish`` if a request arrived at or after the newest run began.

    Runs in the caller's transaction, like :func:`request`.

    Returns:
        Whether a follow-up tick was published.
    """
    cur = conn.cursor()
    requested, _published = _lock(cur)
    began = _run_begun(cur)
    if requested is None or (began is not None and requested < began):
        return False
    publish()
    cur.execute("UPDATE sync_wakeups SET tick_published_at = now() WHERE id")
    return True


def _lock(cur: Cursor) -> tuple[dt.datetime | None, dt.datetime | None]:
    cur.execute(_ENSURE_ROW)
    cur.execute(_LOCK_ROW)
    row = cur.fetchone()
    assert row is not None  # noqa: S101 - ensured by the statement before
    return row[0], row[1]


def _run_begun(cur: Cursor) -> dt.datetime | None:
    # A fresh snapshot, taken after the lock: a run that began while we waited is seen.
    cur.execute("SELECT run_begun_at FROM sync_status WHERE entity_type = %s", (ENTITY,))
    row = cur.fetchone()
    return row[0] if row is not None else None
