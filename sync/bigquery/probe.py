"""The run-start probe: has anything landed since the last run read the source? Pure.

Before a run evaluates the join, one small query reads only the stamp columns of every
source table the join uses: per table the greatest row stamp up to the cap, the row count, and
how many rows are stamped beyond the cap (a *mark*), and the source's clock plus the skew
allowance (the *cap*).

- **Nothing landed.** A tick skips a stream when every one of its tables shows the mark the
  last completed run recorded. ``_fivetran_synced`` is Fivetran's write time, so a row that
  lands, however late its own last-modified time, moves its table's greatest stamp or adds a
  row. Marks are compared per table, not against the watermark, so a table written a little
  after another within one Fivetran sync is still seen. In History Mode a deletion moves no
  ``_fivetran_synced``; it ends a version, which the active-version count shows. Only streams whose every table has
  ``_fivetran_synced`` are skipped; without it a stamp is the source's last-modified time,
  which a late row does not move, and the stream is read as before (with its lookback).
- **Future stamps do not blind it.** The greatest stamp is taken up to the cap: one row
  stamped in 2099 would otherwise stay the greatest forever, and an update Fivetran writes to
  any other row of that table (a new ``_fivetran_synced``, no new row) would go unseen. The
  count beyond the cap shows a row entering or leaving the future.
- **No gap.** A run records the marks of the probe that ran *before* its evaluation, so a row
  landing between the probe and the evaluation changes the next probe's marks, and the next
  tick reads it even when this run already did.
- **A watermark beyond the cap** (stored before future stamps were capped) is repaired: the
  stream re-reads from the beginning, because every row that landed while it stood in the
  future was passed over and nothing records since when. Unchanged rows cost no writes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.bigquery.results import Cost
from sync.bigquery.streams import StreamKind

#: How far a stamp may lie ahead of the source's clock and still count as seen happening:
#: clocks of Salesforce, Fivetran and BigQuery drift by seconds, not minutes.
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Mark:
    """A table at one moment: its greatest row stamp up to the cap, its rows, how many are active
    versions, and how many are stamped beyond the cap."""

    latest: dt.datetime | None
    rows: int
    active: int | None = None
    future: int = 0


@dataclass(frozen=True)
class Probe:
    """What the probe saw."""

    cap: dt.datetime
    marks: Mapping[str, Mark]
    tables: Mapping[StreamKind, tuple[str, ...]]
    eligible: frozenset[StreamKind]
    cost: Cost = field(default_factory=Cost, compare=False)


@dataclass(frozen=True)
class RunStart:
    """How a new run treats each stream."""

    skip: frozenset[StreamKind] = frozenset()
    repair: frozenset[StreamKind] = frozenset()


def decide(
    probe: Probe,
    *,
    full: bool,
    watermarks: Mapping[StreamKind, dt.datetime | None],
    committed: Mapping[str, Mark] | None,
) -> RunStart:
    """Which streams a new run skips (nothing landed) and which it repairs (watermark in the future)."""
    repair = frozenset(s for s, w in watermarks.items() if w is not None and w > probe.cap)
    if full or committed is None:
        return RunStart(frozenset(), repair)
    skip = frozenset(
        stream
        for stream in probe.eligible - repair
        if watermarks.get(stream) is not None
        and probe.tables.get(stream)
        and all(name in committed and committed[name] == probe.marks.get(name) for name in probe.tables[stream])
    )
    return RunStart(skip, repair)


def marks_json(marks: Mapping[str, Mark]) -> str:
    """Marks as stored in ``sync_status`` (jsonb)."""
    return json.dumps(
        {
            name: {"latest": m.latest.isoformat() if m.latest else None, "rows": m.rows, "active": m.active, "future": m.future}
            for name, m in sorted(marks.items())
        }
    )


def marks_from_json(value: Any) -> dict[str, Mark] | None:
    """Stored marks back; None when nothing usable is stored."""
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        return None
    marks: dict[str, Mark] = {}
    for name, raw in value.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("rows"), int):
            return None
        latest, active, future = raw.get("latest"), raw.get("active"), raw.get("future")
        marks[str(name)] = Mark(
            dt.datetime.fromisoformat(latest) if isinstance(latest, str) else None,
            raw["rows"],
            active if isinstance(active, int) else None,
            # Marks stored before the count existed read as 0: at worst one tick more evaluates.
            future if isinstance(future, int) else 0,
        )
    return marks
