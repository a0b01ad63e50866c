"""The read path before one-evaluation-per-run, kept for the bench only: every page re-runs the join.

Plugged into the real pipeline in place of :class:`sync.bigquery.source.BigQuerySource`, so the
comparison differs in the read path and nothing else. The SQL is the per-page query as it
was: the joined CTEs, the keyset condition, the frozen bound computed on the first page,
``LIMIT`` one page. There is no probe and no stored result.
"""

from __future__ import annotations

from typing import Any

from sync.bigquery import results
from sync.bigquery.cursor import page_is_last
from sync.bigquery.results import Cost
from sync.bigquery.source import BigQuerySource, SourcePage, StreamRead
from sync.bigquery.source_sql import SourceTables, joined_opportunities_sql, link_groups_sql
from sync.bigquery.streams import SHAPES, StreamKind, split_link_key


def opportunity_page_sql(t: SourceTables, *, bound_known: bool) -> str:
    bound = "@upper_bound" if bound_known else "(SELECT MAX(change_stamp) FROM joined)"
    return (
        joined_opportunities_sql(t)
        + f"\nSELECT joined.*, joined.change_stamp AS cursor_stamp, {bound} AS run_upper_bound FROM joined"
        + "\nWHERE (joined.change_stamp > @after_stamp"
        + " OR (joined.change_stamp = @after_stamp AND joined.id > @after_id))"
        + f" AND joined.change_stamp <= {bound}"
        + "\nORDER BY joined.change_stamp, joined.id\nLIMIT @page_limit"
    )


def link_page_sql(t: SourceTables, *, bound_known: bool) -> str:
    bound = "@upper_bound" if bound_known else "(SELECT MAX(stamp) FROM links)"
    return (
        link_groups_sql(t)
        + f"\nSELECT links.*, links.stamp AS cursor_stamp, {bound} AS run_upper_bound FROM links"
        + "\nWHERE (links.stamp > @after_stamp OR (links.stamp = @after_stamp AND (links.call_id > @after_call"
        + " OR (links.call_id = @after_call AND links.object_id > @after_object))))"
        + f" AND links.stamp <= {bound}"
        + "\nORDER BY links.stamp, links.call_id, links.object_id\nLIMIT @page_limit"
    )


class PerPageSource:
    """A :class:`sync.bigquery.source.Source` that evaluates the join once per page, as before."""

    def __init__(self, source: BigQuerySource) -> None:
        self._source = source
        self.stats = source.stats

    def probe(self) -> None:
        return None

    def read(self, request: StreamRead) -> SourcePage | None:
        from google.cloud import bigquery

        cost = Cost()
        tables = self._source.tables(cost)
        p = bigquery.ScalarQueryParameter
        known = request.upper_bound is not None
        params: list[Any] = [
            p("after_stamp", "TIMESTAMP", request.after.stamp),
            p("upper_bound", "TIMESTAMP", request.upper_bound),
            p("page_limit", "INT64", request.limit),
        ]
        if request.stream is StreamKind.OPPORTUNITIES:
            sql = opportunity_page_sql(tables, bound_known=known)
            params.append(p("after_id", "STRING", request.after.key))
        else:
            if tables.links is None:
                return None
            call_id, object_id = split_link_key(request.after.key)
            sql = link_page_sql(tables, bound_known=known)
            params += [
                p("after_call", "STRING", call_id),
                p("after_object", "STRING", object_id),
                p("object_type", "STRING", "opportunity"),
            ]
        job = self._source.jobs.evaluate(sql, params, request.deadline, cost)
        rows = list(results.read_slice(self._source.jobs.client, job, 0, None, request.deadline).rows)
        bound = request.upper_bound if known else (rows[0]["run_upper_bound"] if rows else None)
        return SourcePage(
            rows=rows,
            upper_bound=bound,
            last=SHAPES[request.stream].keyset(rows[-1]) if rows else None,
            exhausted=page_is_last(len(rows), request.limit, truncated=False),
            reevaluated=True,
            cost=cost,
        )
