"""The read step: one page of each stream a plan still needs, and where the streams stand after it.

The pipeline and the dry run (``sync/preview.py``) read through the same :class:`Reader`, so a
preview shows exactly the page a tick would write. A different way of reading (a run's query
result kept between pages, say) plugs in as another :class:`Reader`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sync.cursor import Stream
from sync.runs import TRIGGER_FULL, PagePlan
from sync.source import Source, SourcePage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageRead:
    """Rows read for one plan, and each stream after them.

    ``source_ids`` is every opportunity id the source has now, read only when this page ends a
    full resync (the rows it no longer has are soft-deleted); None otherwise.
    """

    opportunity_rows: Sequence[dict[str, Any]]
    link_rows: Sequence[dict[str, Any]]
    opportunities: Stream
    links: Stream
    source_ids: Sequence[str] | None = None

    @property
    def run_done(self) -> bool:
        return self.opportunities.done and self.links.done


class Reader(Protocol):
    """Reads the page a plan asks for, stopping early when ``deadline`` (monotonic) passes."""

    def read(self, plan: PagePlan, deadline: float) -> PageRead: ...


class SourceReader:
    """:class:`Reader` running one keyset query per stream against a :class:`Source`."""

    def __init__(self, source: Source, page_size: int) -> None:
        self._source = source
        self._page_size = page_size

    def read(self, plan: PagePlan, deadline: float) -> PageRead:
        opportunity_rows: list[dict[str, Any]] = []
        opportunities = plan.opportunities
        if not opportunities.done:
            page = self._source.read_opportunities(opportunities.cursor, opportunities.upper_bound, self._page_size, deadline)
            opportunity_rows, opportunities = page.rows, self._after(opportunities, page)
        link_rows: list[dict[str, Any]] = []
        links = plan.links
        if not links.done:
            link_page = self._source.read_links(links.cursor, links.upper_bound, self._page_size, deadline)
            # No link table in the source: there is nothing to read, now or later in the run.
            links = links.finished() if link_page is None else self._after(links, link_page)
            link_rows = link_page.rows if link_page is not None else []
        read = PageRead(opportunity_rows, link_rows, opportunities, links)
        if read.run_done and plan.trigger == TRIGGER_FULL:
            return PageRead(opportunity_rows, link_rows, opportunities, links, self._source_ids())
        return read

    def _after(self, stream: Stream, page: SourcePage) -> Stream:
        returned, limit = len(page.rows), self._page_size
        return stream.after_page(page.last, page.upper_bound, returned=returned, limit=limit, truncated=page.truncated)

    def _source_ids(self) -> list[str] | None:
        ids = list(self._source.all_opportunity_ids())
        if not ids:
            # An empty source is far likelier a broken connector than a deleted CRM.
            log.error(
                "full resync found no opportunity ids in the source; not purging anything", extra={"event": "purge_skipped"}
            )
            return None
        return ids
