"""Deletes are guarded: a run that would soft-delete too much of the live replica holds those deletes.

A source can lose rows for reasons that are not deletions: a Fivetran re-sync that truncates
and reloads a table, a connector pointed at the wrong org, a History Mode table re-created.
Applied blindly, a full resync against such a source soft-deletes most of the replica, and a
wave of ``is_deleted`` rows does the same page by page. So before a page is written, and before
a full resync's purge, the deletes it would make are counted and compared with a limit:

    hold when   this run's deletes so far (made or held) + these   >   limit
    limit     = max(floor(SYNC_DELETE_GUARD_PERCENT% of live), SYNC_DELETE_GUARD_MIN_ROWS - 1)
                + whatever an operator approved for this run

``live`` is the live rows now plus the deletes this run has already made: the replica as the
run found it, with what the run itself added. Not the live rows at the run's first page: that
would cost a count on every run, deletes or not, where this one is counted only when a page
holds a delete of a live row. Not the live rows now alone: each page's deletes would shrink it,
so a run's later pages would look bigger than its first.

Held deletes are not applied: a held ``is_deleted`` row stays live with its old content hash
(the pipeline leaves it out of the page it writes, and the rest of the page is written), a held
purge is not run. Each is recorded in ``sync_delete_holds`` (``sync/postgres/holds.py``) and
logged at ERROR (``deletes_held``). While a hold of a kind is open, every later delete of that
kind is held too: a guard that tripped stays tripped until an operator looks (``python -m sync
release-deletes``), unless the run carries an approval. An approved run re-derives its deletes
from the source as it is then; it never applies a list recorded earlier.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sync.core.config import Settings
from sync.postgres.db import Connection
from sync.rows.parse import flag, source_id
from sync.rows.transform import transform_row

log = logging.getLogger(__name__)


class HoldKind(StrEnum):
    """What a hold keeps back: a full resync's purge, or rows the source flags deleted."""

    PURGE = "purge"
    SOURCE_DELETES = "source_deletes"


@dataclass(frozen=True)
class Guard:
    """The limit: ``percent`` of the live replica (None: the guard is off), never below ``min_rows``."""

    percent: float | None
    min_rows: int

    @classmethod
    def of(cls, settings: Settings) -> Guard:
        return cls(settings.delete_guard.percent, settings.delete_guard.min_rows)

    def limit(self, live: int, approved: int = 0) -> int | None:
        """The most deletes a run may make against ``live`` rows; None when the guard is off."""
        if self.percent is None:
            return None
        return approved + max(math.floor(live * self.percent / 100), self.min_rows - 1)


# Where the run stands before these deletes, in one round trip: an open hold of the kind, the
# run's deletes made and held so far (its committed pages), the live rows, and what operators
# approved for it (a released hold whose re-read request this run took).
_STANDING = """
SELECT EXISTS (SELECT 1 FROM sync_delete_holds WHERE kind = %s AND released_at IS NULL),
       coalesce((SELECT rows_deleted FROM sync_runs WHERE run_id = %s), 0),
       coalesce((SELECT rows_held FROM sync_runs WHERE run_id = %s), 0),
       (SELECT count(*) FROM opportunities WHERE deleted_at IS NULL),
       coalesce((SELECT sum(h.approved) FROM sync_delete_holds h JOIN sync_requests r ON r.id = h.request_id
                 WHERE r.run_id = %s), 0)
"""
# The page's deleted ids that Postgres holds live: the deletes its write would make.
_LIVE = """
SELECT gong_opportunity_id FROM opportunities
WHERE deleted_at IS NULL AND gong_opportunity_id IN (SELECT jsonb_array_elements_text(%s::jsonb))
"""


@dataclass(frozen=True)
class Verdict:
    """What the guard decided about ``deletes`` more deletes of ``kind`` by ``run_id``."""

    run_id: uuid.UUID
    kind: HoldKind
    deletes: int
    # This run's deletes before these, made or held.
    before: int
    live: int
    limit: int | None
    approved: int
    # An earlier hold of this kind is still open (and this run carries no approval).
    tripped: bool

    @property
    def hold(self) -> bool:
        if self.deletes == 0 or self.limit is None:
            return False
        return self.tripped or self.before + self.deletes > self.limit


def judge(conn: Connection, guard: Guard, run_id: uuid.UUID, kind: HoldKind, deletes: int) -> Verdict:
    """Weigh ``deletes`` more deletes by the run against the limit; writes nothing."""
    if guard.percent is None or deletes == 0:
        return Verdict(run_id, kind, deletes, 0, 0, None, 0, tripped=False)
    cur = conn.cursor()
    run = str(run_id)
    cur.execute(_STANDING, (kind.value, run, run, run))
    row = cur.fetchone()
    if row is None:  # a SELECT without FROM always returns its row; this is a driver fault
        msg = "expected one result row, got none"
        raise RuntimeError(msg)
    is_open, made, held, live, approved = (bool(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))
    limit = guard.limit(live + made, approved)
    return Verdict(run_id, kind, deletes, made + held, live + made, limit, approved, tripped=is_open and approved == 0)


@dataclass(frozen=True)
class GuardedPage:
    """A page's source rows with the held deletes left out, and the ids held."""

    rows: Sequence[Mapping[str, Any]]
    held: list[str]
    verdict: Verdict | None = None


def deleted_ids(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids whose row in the page (the last, when one repeats) the write would store as deleted.

    Only the flagged rows are mapped, so a page of live rows costs one look at a column.
    """
    last: dict[str, Mapping[str, Any]] = {}
    for raw in rows:
        key = source_id(raw.get("id"))
        if key is not None:
            last[key] = raw
    found = []
    for key, raw in last.items():
        if flag(raw.get("is_deleted")):
            row, _ = transform_row(raw)
            if row is not None and row.deleted:
                found.append(key)
    return found


def page_deletes(conn: Connection, guard: Guard, run_id: uuid.UUID, rows: Sequence[Mapping[str, Any]]) -> GuardedPage:
    """The page to write: all of ``rows``, or without the deleted rows of live ids when they are held."""
    flagged = [i for i in deleted_ids(rows) if "\x00" not in i] if guard.percent is not None else []
    if not flagged:
        return GuardedPage(rows, [])
    cur = conn.cursor()
    cur.execute(_LIVE, (json.dumps(flagged),))
    live = [str(r[0]) for r in cur.fetchall()]
    verdict = judge(conn, guard, run_id, HoldKind.SOURCE_DELETES, len(live))
    if not verdict.hold:
        return GuardedPage(rows, [])
    held = set(live)
    kept = [raw for raw in rows if source_id(raw.get("id")) not in held]
    return GuardedPage(kept, live, verdict)


def log_held(verdict: Verdict, hold_id: int, total: int, samples: Sequence[str], *, fresh: bool = True) -> None:
    """The ERROR line an alert keys on: what was held, against what, and what to do.

    Rows a hold already kept (re-read by a later run's lookback) are held again without a new
    ERROR: a WARNING ``deletes_still_held`` says so, and the alert does not fire again for them.
    """
    what = "a full resync's purge" if verdict.kind is HoldKind.PURGE else "rows the source flags deleted"
    weighed = verdict.before + verdict.deletes
    reason = (
        f"{weighed} with this run's earlier deletes, more than the limit of {verdict.limit}"
        if verdict.limit is not None and weighed > verdict.limit
        else "a hold of this kind is still open"
    )
    fields = {
        "run_id": str(verdict.run_id),
        "kind": verdict.kind.value,
        "rows_held": verdict.deletes,
        "run_deletes_before": verdict.before,
        "live_rows": verdict.live,
        "limit_rows": verdict.limit,
        "approved": verdict.approved,
        "hold_id": hold_id,
        "hold_rows": total,
        "sample_ids": list(samples),
    }
    message = (
        "%d deletes held (%s): run %s would soft-delete them from %d live rows (%s); everything else was written."
        " Look, then release them with `python -m sync release-deletes`"
    )
    args = (verdict.deletes, what, verdict.run_id, verdict.live, reason)
    if fresh:
        log.error(message, *args, extra={"event": "deletes_held", **fields})
    else:
        log.warning(message, *args, extra={"event": "deletes_still_held", **fields})
