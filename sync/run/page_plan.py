"""What one invocation was decided to do: the plan :func:`sync.run.runs.plan` returns.

Its own module because both sides of a page use it: ``runs`` makes it from the stored state,
``state`` and ``runlog`` write what the page did under it. Kept apart, the arrows run
``runs -> state -> page_plan`` with no cycle.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from sync.bigquery.cursor import Stream
from sync.bigquery.probe import Mark
from sync.bigquery.streams import StreamKind


@dataclass(frozen=True)
class PagePlan:
    """Read and write one page of ``run_id``."""

    run_id: uuid.UUID
    trigger: str
    page: int
    new_run: bool
    opportunities: Stream
    links: Stream
    superseded_run: uuid.UUID | None = None
    resync_message_id: str | None = None
    # Read at most this many rows per stream (sync/run/pacing.py); None: SYNC_PAGE_SIZE.
    page_size_limit: int | None = None
    # What a new run starts from, for its probe (sync/bigquery/probe.py): the stored watermarks and the
    # marks the last completed run recorded.
    watermarks: Mapping[StreamKind, dt.datetime | None] = field(default_factory=dict)
    source_marks: Mapping[str, Mark] | None = None
    # Pending requests (sync/postgres/requests.py) this new run takes with its first page.
    requests: tuple[int, ...] = ()
