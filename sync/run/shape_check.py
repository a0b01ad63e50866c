"""Before a page is read: the source still has what the replica was built from.

The shape (``sync/bigquery/shape.py``) is recorded in ``source_shape``:

- **A new, empty replica** records the source as found: it chooses Salesforce's opportunity
  table if it exists, else the Gong fallback, and absent optional tables are features off.
- **A replica synced by an earlier release** (rows, no shape) records the source as found too,
  but only if the source has every table its rows show was read: account names, owner emails,
  stage history, health scores and call links each prove one. A table missing at the upgrade
  is then a failure that names it, as it would be later, never a feature recorded as off.
- **Every later invocation** resolves the source under the recorded shape: a recorded table or
  column that is gone raises :class:`SourceShapeError` (retryable, nothing written). A feature
  that appeared is recorded, and the run it starts re-reads every row of the stream it changes
  (``sync/postgres/requests.py``), not only rows stamped since the watermark.

Only ``python -m sync source --accept`` or ``--switch`` records a shape that drops a table or
changes the opportunity table (``sync/ops/sources.py``).
"""

from __future__ import annotations

import logging

from sync.bigquery.shape import DECLARED, Shape, compare
from sync.bigquery.source import Source
from sync.core.config import Settings
from sync.core.deadline import LEASE_LOCK_WAIT_SECONDS, Deadline
from sync.core.errors import SourceShapeError
from sync.postgres import requests, shapes
from sync.postgres.db import Connection
from sync.postgres.requests import Request
from sync.postgres.transaction import transaction
from sync.run.page_plan import PagePlan

log = logging.getLogger(__name__)

# Which held value proves which declared table was read.
_PROVES = {
    "account_names": "account",
    "owner_emails": "user",
    "stage_history": "opportunity_history",
    "call_links": "call_context_integration",
}


def check(conn: Connection, source: Source, settings: Settings, plan: PagePlan, deadline: Deadline) -> list[Request]:
    """Resolve the source under the recorded shape (recording the first one); the requests it added.

    Raises:
        SourceShapeError: a recorded table or column is missing or unreadable.
    """
    with transaction(conn, within=deadline.left(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
        stored = shapes.load(conn)
        recorded = Shape.from_json(stored) if stored is not None else None
        held = shapes.held(conn) if recorded is None else None
    if held is not None:
        current = source.shape(None, fresh=True)
        _require_held(current, held, settings)
        with transaction(conn, within=deadline.left(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
            shapes.save(conn, current.to_json(), "upgrade" if held.rows else "first run")
        log.info("source shape recorded", extra={"event": "source_shape_recorded", "shape": current.to_json()})
        return []
    assert recorded is not None  # noqa: S101 - either held or recorded is set above
    current = source.shape(recorded, fresh=plan.new_run)
    appeared = compare(recorded, current)
    if not plan.new_run or not appeared.changed:
        return []
    if not appeared.appeared:
        with transaction(conn, within=deadline.left(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
            shapes.save(conn, current.to_json(), "columns spelled anew or added")
        return []
    streams = sorted(s.value for s in appeared.reread)
    reason = f"feature turned on: {', '.join(appeared.appeared)}"
    with transaction(conn, within=deadline.left(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
        shapes.save(conn, current.to_json(), reason)
        requests.add(conn, "reread", reason=reason, requested_by="source shape", streams=streams)
        added = requests.pending(conn)
    log.warning(
        "%s; this run re-reads every row of %s",
        reason,
        ", ".join(streams),
        extra={"event": "feature_appeared", "features": list(appeared.appeared), "streams": streams},
    )
    return added


def follow_record(conn: Connection, source: Source) -> None:
    """Have ``source`` read what the replica was built from, recording nothing (``preview``, ``verify``).

    Raises:
        SourceShapeError: a recorded table or column is missing or unreadable.
    """
    with transaction(conn):
        stored = shapes.load(conn)
    source.shape(Shape.from_json(stored) if stored is not None else None, fresh=True)


def _require_held(current: Shape, held: shapes.Held, settings: Settings) -> None:
    """An upgrade records the source only if it has every table the replica's rows show was read."""
    if not held.rows:
        return
    features = current.features()
    shown = {
        "account_names": held.account_names,
        "owner_emails": held.owner_emails,
        "stage_history": held.stage_history,
        "health_score": held.health_score,
        "call_links": held.call_links,
    }
    datasets = {"salesforce": settings.salesforce_dataset, "gong": settings.gong_dataset}
    tables = {f: DECLARED[_PROVES.get(f, "gong_opportunity")] for f in shown}
    missing = [
        f"table {datasets[tables[f].origin]}.{tables[f].table} (the replica's rows carry {f.replace('_', ' ')})"
        for f, on in shown.items()
        if on and not features.get(f, False)
    ]
    if current.origin == "gong" and any(DECLARED[r].origin == "salesforce" for r in current.tables if r != "opportunity"):
        missing.append(f"table {settings.salesforce_dataset}.opportunity (the replica holds {held.rows} rows)")
    if missing:
        msg = (
            f"the source lacks what this replica was built from: {', '.join(missing)}; nothing is written until it "
            "returns. If the change is intended, record the source as it is with `python -m sync source --accept`"
        )
        raise SourceShapeError(msg, missing)
