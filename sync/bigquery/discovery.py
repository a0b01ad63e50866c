"""Which source tables exist and how their columns are spelled, from ``INFORMATION_SCHEMA.COLUMNS``.

The tables are those declared in :mod:`sync.bigquery.shape`. With no recorded shape (a new,
empty replica) the source decides: a missing optional table switches its feature off, and the
Gong dataset's ``opportunity`` is read when Salesforce's is absent. Once a shape is recorded,
it decides: the same opportunity table is read whatever else exists, and a recorded table or
column that is gone raises :class:`SourceShapeError` (retryable) naming every such piece.
Required columns missing from a table never recorded are a permanent error that names them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from sync.bigquery.shape import DECLARED, JOINED, OPPORTUNITY, Origin, Shape, compare, shape_of
from sync.bigquery.source_sql import SourceTables
from sync.core.config import Settings
from sync.core.errors import SourceSchemaError, SourceShapeError
from sync.rows.columns import Table

log = logging.getLogger(__name__)

DatasetTables = Callable[[str], Mapping[str, Table]]


def resolve(settings: Settings, dataset_tables: DatasetTables, recorded: Shape | None = None) -> SourceTables:
    """The source tables, given a look-up of one dataset's tables (an INFORMATION_SCHEMA query)."""
    s = settings
    datasets = {"salesforce": dataset_tables(s.salesforce_dataset), "gong": dataset_tables(s.gong_dataset)}
    origin = _origin(settings, datasets, recorded)
    found: dict[str, Table | None] = {"opportunity": datasets[origin].get(OPPORTUNITY.table)}
    for declared in JOINED:
        found[declared.role] = datasets[declared.origin].get(declared.table)
    if origin == "gong":
        found["gong_opportunity"] = None  # the same table: its score is the opportunity's own
    if recorded is not None:
        difference = compare(recorded, shape_of(origin, found))
        if difference.missing:
            msg = (
                f"the source no longer has what this replica was built from: {', '.join(difference.missing)}; nothing "
                "is written until it returns (retried each tick). If the change is intended, record the new shape "
                "with `python -m sync source --accept`"
            )
            raise SourceShapeError(msg, difference.missing)
    return _checked(settings, origin, found)


def _origin(settings: Settings, datasets: Mapping[str, Mapping[str, Table]], recorded: Shape | None) -> Origin:
    """Which dataset's opportunity table to read: the recorded one, else Salesforce's if it exists."""
    s = settings
    if recorded is not None:
        return recorded.origin
    if OPPORTUNITY.table in datasets["salesforce"]:
        return "salesforce"
    if OPPORTUNITY.table in datasets["gong"]:
        log.warning(
            "salesforce opportunity table missing; this new replica reads %s.opportunity",
            s.gong_dataset,
            extra={"event": "gong_fallback"},
        )
        return "gong"
    msg = (
        f"neither {s.salesforce_dataset}.opportunity nor {s.gong_dataset}.opportunity exists "
        f"in project {s.bigquery_project}; check SALESFORCE_DATASET and GONG_DATASET"
    )
    raise SourceSchemaError(msg)


def _checked(settings: Settings, origin: Origin, found: Mapping[str, Table | None]) -> SourceTables:
    """Require every present table's columns; optional tables that are absent switch their feature off."""
    opportunity = found["opportunity"]
    if opportunity is None:  # only when a recorded origin's table is gone, which compare() reports first
        msg = f"the {origin} opportunity table is missing"
        raise SourceShapeError(msg, [f"table {origin}.opportunity"])
    for role, table in found.items():
        if table is None:
            if role != "gong_opportunity" or origin == "salesforce":
                log.warning("optional source table for %s is absent; its feature is off", role, extra={"event": "feature_off"})
            continue
        for logical in DECLARED[role].required:
            table.require(logical)
    tables = SourceTables(
        project=settings.bigquery_project,
        opportunity=opportunity,
        account=found["account"],
        user=found["user"],
        history=found["opportunity_history"],
        gong_opportunity=found["gong_opportunity"],
        links=found["call_context_integration"],
        origin=origin,
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
