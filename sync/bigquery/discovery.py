"""Which source tables exist and how their columns are spelled, from ``INFORMATION_SCHEMA.COLUMNS``.

Required tables and columns missing are a permanent error that names them; optional tables
(account, user, stage history, Gong) switch their feature off with one warning. When the
Salesforce ``opportunity`` table is absent, the Gong dataset's is read instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from sync.bigquery.source_sql import SourceTables
from sync.core.config import Settings
from sync.core.errors import SourceSchemaError
from sync.rows.columns import Table

log = logging.getLogger(__name__)

DatasetTables = Callable[[str], Mapping[str, Table]]


def resolve(settings: Settings, dataset_tables: DatasetTables) -> SourceTables:
    """The source tables, given a look-up of one dataset's tables (an INFORMATION_SCHEMA query)."""
    s = settings
    salesforce = dataset_tables(s.salesforce_dataset)
    gong = dataset_tables(s.gong_dataset)
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
