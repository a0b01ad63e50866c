"""Reads pages from BigQuery through the real client (or the emulator behind the same API).

The schema is discovered once per process from ``INFORMATION_SCHEMA.COLUMNS`` and cached:
a Cloud Function instance serves many invocations, and each look-up is a billed query.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sync.columns import Table, quote, quote_project, tables_from_information_schema
from sync.config import Settings
from sync.cursor import Keyset
from sync.errors import SourceSchemaError
from sync.source_sql import SourceTables, all_ids_sql, link_page_sql, opportunity_page_sql

if TYPE_CHECKING:
    from google.cloud import bigquery

log = logging.getLogger(__name__)

LINK_KEY_SEPARATOR = "\x1f"


@dataclass
class SourcePage:
    """Rows of one keyset page, in cursor order."""

    rows: list[dict[str, Any]]
    upper_bound: dt.datetime | None
    truncated: bool = False
    last: Keyset | None = None


# A warm instance runs queries for days; keep only the latest timings.
_TIMINGS_KEPT = 100


@dataclass
class SourceStats:
    """Query counts and timings of this process, for benchmarks and diagnosis."""

    queries: int = 0
    rows: int = 0
    seconds: float = 0.0
    per_query: deque[float] = field(default_factory=lambda: deque(maxlen=_TIMINGS_KEPT))


class Source(Protocol):
    """Where opportunities and links come from; BigQuery in production and in tests."""

    def read_opportunities(self, after: Keyset, upper_bound: dt.datetime | None, limit: int, deadline: float) -> SourcePage: ...

    def read_links(self, after: Keyset, upper_bound: dt.datetime | None, limit: int, deadline: float) -> SourcePage | None: ...

    def all_opportunity_ids(self) -> Iterator[str]: ...


def link_keyset(stamp: dt.datetime, call_id: str, object_id: str) -> Keyset:
    return Keyset(stamp, f"{call_id}{LINK_KEY_SEPARATOR}{object_id}")


def split_link_key(key: str) -> tuple[str, str]:
    call_id, _, object_id = key.partition(LINK_KEY_SEPARATOR)
    return call_id, object_id


def make_client(settings: Settings) -> bigquery.Client:
    """A BigQuery client; anonymous against ``BIGQUERY_API_ENDPOINT`` (the local emulator)."""
    from google.cloud import bigquery

    if settings.bigquery_api_endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=settings.bigquery_project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=settings.bigquery_api_endpoint),
            location=settings.bigquery_location,
        )
    return bigquery.Client(project=settings.bigquery_project, location=settings.bigquery_location)


class BigQuerySource:
    """:class:`Source` over Fivetran's Salesforce and Gong datasets."""

    def __init__(self, client: bigquery.Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._tables: SourceTables | None = None
        self._lock = threading.Lock()
        self.stats = SourceStats()

    # -- schema ---------------------------------------------------------------------------

    def tables(self) -> SourceTables:
        """Resolved source tables, discovered once."""
        with self._lock:
            if self._tables is None:
                self._tables = self._discover()
            return self._tables

    def _discover(self) -> SourceTables:
        s = self._settings
        salesforce = self._dataset_tables(s.salesforce_dataset)
        gong = self._dataset_tables(s.gong_dataset)
        opportunity = salesforce.get("opportunity")
        if opportunity is None:
            opportunity = gong.get("opportunity")
            if opportunity is None:
                msg = (
                    f"neither {s.salesforce_dataset}.opportunity nor {s.gong_dataset}.opportunity exists "
                    f"in project {s.bigquery_project}; check SALESFORCE_DATASET and GONG_DATASET"
                )
                raise SourceSchemaError(msg)
            log.warning("salesforce opportunity table missing; reading %s instead", opportunity.label)
        for logical in ("id", "name", "stage_name", "amount", "close_date"):
            opportunity.require(logical)
        tables = SourceTables(
            project=s.bigquery_project,
            opportunity=opportunity,
            account=_checked(salesforce, s.salesforce_dataset, "account", ("id", "name")),
            user=_checked(salesforce, s.salesforce_dataset, "user", ("id", "email")),
            history=_checked(
                salesforce, s.salesforce_dataset, "opportunity_history", ("opportunity_id", "stage_name", "created_date")
            ),
            gong_opportunity=gong.get("opportunity") if gong.get("opportunity") is not opportunity else None,
            links=_checked(gong, s.gong_dataset, "call_context_integration", ("call_id", "object_type", "object_id")),
        )
        if tables.account is not None:
            _warn_unsafe_details(tables.account)
        log.info("source schema resolved", extra={"source_table": opportunity.label, "features": tables.features()})
        return tables

    def _dataset_tables(self, dataset: str) -> dict[str, Table]:
        sql = (
            "SELECT table_name, column_name, data_type FROM "
            f"{quote_project(self._settings.bigquery_project)}.{quote(dataset)}.INFORMATION_SCHEMA.COLUMNS "
            "ORDER BY table_name, ordinal_position"
        )
        try:
            rows = self._query(sql, [], time.monotonic() + 60)
        except Exception as err:
            from google.api_core import exceptions as gexc

            if isinstance(err, gexc.NotFound):
                log.warning("dataset %s not found in project %s", dataset, self._settings.bigquery_project)
                return {}
            raise
        return tables_from_information_schema(dataset, ((r["table_name"], r["column_name"], r["data_type"]) for r in rows))

    # -- pages ----------------------------------------------------------------------------

    def read_opportunities(self, after: Keyset, upper_bound: dt.datetime | None, limit: int, deadline: float) -> SourcePage:
        from google.cloud import bigquery

        sql = opportunity_page_sql(self.tables(), bound_known=upper_bound is not None)
        params = [
            bigquery.ScalarQueryParameter("after_stamp", "TIMESTAMP", after.stamp),
            bigquery.ScalarQueryParameter("after_id", "STRING", after.key),
            bigquery.ScalarQueryParameter("upper_bound", "TIMESTAMP", upper_bound),
            bigquery.ScalarQueryParameter("page_limit", "INT64", limit),
        ]
        return self._page(sql, params, deadline, upper_bound, lambda r: Keyset(r["change_stamp"], r["id"]))

    def read_links(self, after: Keyset, upper_bound: dt.datetime | None, limit: int, deadline: float) -> SourcePage | None:
        from google.cloud import bigquery

        tables = self.tables()
        if tables.links is None:
            return None
        call_id, object_id = split_link_key(after.key)
        params = [
            bigquery.ScalarQueryParameter("after_stamp", "TIMESTAMP", after.stamp),
            bigquery.ScalarQueryParameter("after_call", "STRING", call_id),
            bigquery.ScalarQueryParameter("after_object", "STRING", object_id),
            bigquery.ScalarQueryParameter("upper_bound", "TIMESTAMP", upper_bound),
            bigquery.ScalarQueryParameter("page_limit", "INT64", limit),
            bigquery.ScalarQueryParameter("object_type", "STRING", "opportunity"),
        ]
        sql = link_page_sql(tables, bound_known=upper_bound is not None)
        return self._page(sql, params, deadline, upper_bound, lambda r: link_keyset(r["stamp"], r["call_id"], r["object_id"]))

    def all_opportunity_ids(self) -> Iterator[str]:
        for row in self._query(all_ids_sql(self.tables()), [], time.monotonic() + 300):
            if row["id"] is not None:
                yield str(row["id"])

    def _page(self, sql: str, params: list[Any], deadline: float, upper_bound: dt.datetime | None, key: Any) -> SourcePage:
        rows: list[dict[str, Any]] = []
        truncated = False
        bound = upper_bound
        for row in self._query(sql, params, deadline):
            rows.append(row)
            if bound is None:
                bound = row["run_upper_bound"]
            # Stop early rather than overrun the budget: the keyset cursor makes a partial
            # page as good as a full one.
            if time.monotonic() > deadline:
                truncated = True
                break
        return SourcePage(rows, bound, truncated, key(rows[-1]) if rows else None)

    def _query(self, sql: str, params: list[Any], deadline: float) -> Iterator[dict[str, Any]]:
        from google.cloud import bigquery

        remaining = max(5.0, deadline - time.monotonic())
        config = bigquery.QueryJobConfig(query_parameters=params, use_legacy_sql=False)
        config.job_timeout_ms = int(remaining * 1000)
        started = time.monotonic()
        job = self._client.query(sql, job_config=config, timeout=remaining)
        result = job.result(timeout=remaining)
        self.stats.queries += 1
        for row in result:
            self.stats.rows += 1
            yield dict(row.items())
        elapsed = time.monotonic() - started
        self.stats.seconds += elapsed
        self.stats.per_query.append(elapsed)


def _warn_unsafe_details(account: Table) -> None:
    """Say once (discovery is cached per process) which account columns the details leave out."""
    for name in account.unsafe:
        log.warning(
            "account column %r of %s is not a safe identifier (letters, digits and underscores only); "
            "it is left out of the account details",
            name,
            account.label,
            extra={"event": "column_skipped", "table": account.label, "column": name},
        )


def _checked(tables: Mapping[str, Table], dataset: str, name: str, required: tuple[str, ...]) -> Table | None:
    """An optional table; when it exists it must still have its required columns."""
    table = tables.get(name)
    if table is None:
        log.warning("optional source table %s.%s is absent; its feature is off", dataset, name, extra={"event": "feature_off"})
        return None
    for logical in required:
        table.require(logical)
    return table
