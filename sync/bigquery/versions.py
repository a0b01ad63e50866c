"""Which row of a Fivetran table stands for an id, whether it is live, and when it changed.

Fivetran lands each table in one of two modes, told apart per table by its columns:

- **Soft-delete mode**: one row per id. A deletion sets ``is_deleted`` (Salesforce's own flag)
  or ``_fivetran_deleted`` (Fivetran's), and ``_fivetran_synced`` moves with it.
- **History Mode** (the table has ``_fivetran_active``): one row per *version* of an id.
  ``_fivetran_active`` marks the current version, ``_fivetran_start`` is when a version began
  and ``_fivetran_end`` when it stopped (``9999-12-31 23:59:59`` while current). A record
  deleted in the source keeps its versions but none of them is active, and Fivetran does not
  move ``_fivetran_synced`` for it: only ``_fivetran_active`` and ``_fivetran_end`` change.

The rules, the same for every table:

- The **current version** of an id is an active one if any, else its newest (by row stamp).
  A NULL ``_fivetran_active`` counts as active: not knowing is no proof of a deletion.
- An id is **live** when its current version is active and not flagged deleted. So in History
  Mode an id with no active version is deleted, exactly like an ``is_deleted`` row.
- A row's **stamp** is ``_fivetran_synced``, else the source's last-modified time; in History
  Mode the greatest of that, ``_fivetran_start`` and a finite ``_fivetran_end``, so that a
  deletion, which only sets ``_fivetran_end``, still moves it.
- An id's stamp is the greatest row stamp over all its versions.

Pure SQL builders: identifiers are validated and quoted by :func:`sync.rows.columns.quote`.
"""

from __future__ import annotations

from sync.rows.columns import Column, Table, quote, quote_project

EPOCH_SQL = "TIMESTAMP '1970-01-01 00:00:00+00'"
# Fivetran marks a current version with 9999-12-31 23:59:59(.999); anything in year 9999 is
# "still current", not a time something ended.
_OPEN_END_SQL = "TIMESTAMP '9999-01-01 00:00:00+00'"


def ref(project: str, table: Table) -> str:
    """The quoted ``project.dataset.table`` reference."""
    return f"{quote_project(project)}.{quote(table.dataset)}.{quote(table.name)}"


def col(alias: str, column: Column) -> str:
    return f"{alias}.{quote(column.name)}"


def timestamp(alias: str, column: Column | None) -> str:
    """A column as a TIMESTAMP, whatever type Fivetran gave it."""
    if column is None:
        return "CAST(NULL AS TIMESTAMP)"
    expr = col(alias, column)
    if column.data_type == "TIMESTAMP":
        return expr
    if column.data_type in {"DATETIME", "DATE"}:
        return f"TIMESTAMP({expr})"
    return f"SAFE_CAST({expr} AS TIMESTAMP)"


def id_expr(alias: str, table: Table, logical: str = "id") -> str:
    return f"CAST({col(alias, table.require(logical))} AS STRING)"


def history_mode(table: Table) -> bool:
    """Whether Fivetran lands this table in History Mode."""
    return table.find("_fivetran_active") is not None


def active(alias: str, table: Table) -> str:
    """Whether a row is an active version; every row is, outside History Mode."""
    flag = table.find("_fivetran_active")
    return f"COALESCE({col(alias, flag)}, TRUE)" if flag is not None else "TRUE"


def flagged(alias: str, table: Table) -> str:
    """Whether a row carries a deletion flag (``is_deleted`` or ``_fivetran_deleted``)."""
    flags = [col(alias, c) for c in (table.find("is_deleted"), table.find("_fivetran_deleted")) if c is not None]
    if not flags:
        return "FALSE"
    return "(" + " OR ".join(f"COALESCE({f}, FALSE)" for f in flags) + ")"


def row_live(alias: str, table: Table) -> str:
    """Whether a row is an active, unflagged version."""
    return f"({active(alias, table)} AND NOT {flagged(alias, table)})"


def row_stamp(alias: str, table: Table) -> str:
    """The change stamp of one row, never NULL."""
    parts = [
        timestamp(alias, table.find(name))
        for name in ("_fivetran_synced", "last_modified_date", "system_modstamp")
        if table.find(name) is not None
    ]
    base = f"COALESCE({', '.join([*parts, EPOCH_SQL])})"
    if not history_mode(table):
        return base
    greatest = [base]
    start, end = table.find("_fivetran_start"), table.find("_fivetran_end")
    if start is not None:
        greatest.append(f"COALESCE({timestamp(alias, start)}, {EPOCH_SQL})")
    if end is not None:
        finite = f"IF({timestamp(alias, end)} < {_OPEN_END_SQL}, {timestamp(alias, end)}, NULL)"
        greatest.append(f"COALESCE({finite}, {EPOCH_SQL})")
    return f"GREATEST({', '.join(greatest)})" if len(greatest) > 1 else base


def current_versions(table: Table, alias: str, select: str, project: str) -> str:
    """One row per id, its current version, plus ``live`` and the id's ``stamp``.

    ``select`` lists the caller's columns of the current version; it must not name ``live``
    or ``stamp``.
    """
    key = id_expr(alias, table)
    stamp = row_stamp(alias, table)
    order = f"{active(alias, table)} DESC, {stamp} DESC" if history_mode(table) else f"{stamp} DESC"
    # BigQuery requires a WHERE, GROUP BY or HAVING beside QUALIFY. The window MAX runs before
    # QUALIFY, so the stamp covers every version, including the inactive ones of a deletion.
    return (
        f"SELECT {select}, {row_live(alias, table)} AS live, MAX({stamp}) OVER (PARTITION BY {key}) AS stamp "
        f"FROM {ref(project, table)} AS {alias} WHERE TRUE "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {order}) = 1"
    )
