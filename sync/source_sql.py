"""BigQuery SQL for one page of opportunities and one page of call links.

Pure builders: given the resolved source tables they return SQL text whose only variable
parts are validated, backtick-quoted identifiers; every value is a query parameter.

A row's change stamp is the greatest stamp of the opportunity and everything joined to it
(account, owner, stage history, Gong row), so a renamed account or a new owner email re-syncs
the opportunities that show it. Which version of a row counts, whether it is live, and its own
stamp, in soft-delete mode and in Fivetran's History Mode alike, is :mod:`sync.versions`.
A joined row that is not live (a deleted account or owner) is treated as not found, but its
stamp still counts, so its deletion reaches the opportunities that showed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.columns import Table, quote, snake_case
from sync.versions import col, current_versions, history_mode, id_expr, ref, row_live, row_stamp, timestamp


@dataclass(frozen=True)
class SourceTables:
    """Which source tables exist; optional ones switch features on."""

    project: str
    opportunity: Table
    account: Table | None
    user: Table | None
    history: Table | None
    gong_opportunity: Table | None
    links: Table | None

    def features(self) -> dict[str, bool]:
        features = {
            "account_names": self.account is not None,
            "owner_emails": self.user is not None,
            "stage_history": self.history is not None,
            "health_score": self._health_table() is not None,
            "call_links": self.links is not None,
            "fivetran_synced_stamp": self.opportunity.find("_fivetran_synced") is not None,
        }
        # History Mode is a per-table setting in Fivetran, so it is reported per table.
        tables = {
            "opportunity": self.opportunity,
            "account": self.account,
            "user": self.user,
            "opportunity_history": self.history,
            "gong_opportunity": self.gong_opportunity,
            "call_links": self.links,
        }
        features |= {f"history_mode_{name}": history_mode(table) for name, table in tables.items() if table is not None}
        return features

    def _health_table(self) -> Table | None:
        if self.opportunity.find("health_score") is not None:
            return self.opportunity
        if self.gong_opportunity is not None and self.gong_opportunity.find("health_score") is not None:
            return self.gong_opportunity
        return None


def _cte(name: str, table: Table, alias: str, select: str, project: str) -> str:
    return f"{name} AS ({current_versions(table, alias, select, project)})"


def _account_json(alias: str, table: Table) -> str:
    """The account row as JSON text with snake_case keys, rendered by BigQuery.

    Fivetran's bookkeeping columns change on every re-sync and are left out, or every re-read
    would look like a change. Rendering here keeps per-row JSON work out of Python.
    """
    fields = [
        f"{col(alias, c)} AS {quote(snake_case(c.name))}"
        for c in table.columns.values()
        if not c.name.lower().startswith("_fivetran")
    ]
    return f"TO_JSON_STRING(STRUCT({', '.join(fields)}))"


def _optional(alias: str, table: Table, logical: str, default: str = "NULL") -> str:
    column = table.find(logical)
    return col(alias, column) if column is not None else default


def _if_live(cte: str, expr: str, alias: str) -> str:
    return f"CASE WHEN {cte}.live THEN {expr} END AS {alias}"


def joined_opportunities_sql(t: SourceTables) -> str:
    """A CTE list ending in ``joined``: one row per opportunity with its change stamp."""
    o = t.opportunity
    health = t._health_table()
    ctes = [
        _cte(
            "opp",
            o,
            "o",
            ", ".join(
                [
                    f"{id_expr('o', o)} AS id",
                    f"{col('o', o.require('name'))} AS name",
                    f"CAST({_optional('o', o, 'account_id')} AS STRING) AS account_id",
                    f"CAST({_optional('o', o, 'owner_id')} AS STRING) AS owner_id",
                    f"{col('o', o.require('stage_name'))} AS stage_name",
                    f"{col('o', o.require('amount'))} AS amount",
                    f"{col('o', o.require('close_date'))} AS close_date",
                    f"{timestamp('o', o.find('last_modified_date') or o.find('system_modstamp'))} AS last_modified",
                    f"{_optional('o', o, 'health_score')} AS own_health_score",
                ]
            ),
            t.project,
        )
    ]
    select = [
        "opp.id",
        "opp.name",
        "opp.account_id",
        "opp.owner_id",
        "opp.stage_name",
        "opp.amount",
        "opp.close_date",
        "NOT opp.live AS is_deleted",
        "opp.last_modified",
    ]
    stamps = ["opp.stamp"]
    joins = []
    if t.account is not None:
        a = t.account
        details = f"{id_expr('a', a)} AS id, {col('a', a.require('name'))} AS name, {_account_json('a', a)} AS details"
        ctes.append(_cte("acct", a, "a", details, t.project))
        joins.append("LEFT JOIN acct ON acct.id = opp.account_id")
        select += [
            _if_live("acct", "acct.name", "account_name"),
            _if_live("acct", "acct.details", "account_details"),
            "COALESCE(acct.live, FALSE) AS account_found",
        ]
        stamps.append("acct.stamp")
    else:
        select += ["CAST(NULL AS STRING) AS account_name", "CAST(NULL AS STRING) AS account_details", "FALSE AS account_found"]
    if t.user is not None:
        u = t.user
        owner = f"{id_expr('u', u)} AS id, {col('u', u.require('email'))} AS email, {_optional('u', u, 'is_active')} AS is_active"
        ctes.append(_cte("usr", u, "u", owner, t.project))
        joins.append("LEFT JOIN usr ON usr.id = opp.owner_id")
        select += [
            _if_live("usr", "usr.email", "owner_email"),
            "COALESCE(usr.live, FALSE) AS owner_found",
            _if_live("usr", "usr.is_active", "owner_active"),
        ]
        stamps.append("usr.stamp")
    else:
        select += ["CAST(NULL AS STRING) AS owner_email", "FALSE AS owner_found", "CAST(NULL AS BOOL) AS owner_active"]
    if t.history is not None:
        h = t.history
        table_ref = ref(t.project, h)
        opp_id = id_expr("h", h, "opportunity_id")
        created = timestamp("h", h.require("created_date"))
        # Aggregate live history rows, but take the stamp over all rows so that deleting a
        # history row also counts as a change.
        ctes.append(
            f"hist AS (SELECT {opp_id} AS opportunity_id, "
            f"TO_JSON_STRING(ARRAY_AGG(STRUCT({col('h', h.require('stage_name'))} AS stage, {created} AS changed_at) "
            f"ORDER BY {created}, {id_expr('h', h)})) AS stages "
            f"FROM {table_ref} AS h WHERE {row_live('h', h)} GROUP BY opportunity_id), "
            f"hist_stamp AS (SELECT {opp_id} AS opportunity_id, MAX({row_stamp('h', h)}) AS stamp "
            f"FROM {table_ref} AS h GROUP BY opportunity_id)"
        )
        joins.append("LEFT JOIN hist ON hist.opportunity_id = opp.id")
        joins.append("LEFT JOIN hist_stamp ON hist_stamp.opportunity_id = opp.id")
        select.append("hist.stages AS stage_history")
        stamps.append("hist_stamp.stamp")
    else:
        select.append("CAST(NULL AS STRING) AS stage_history")
    if health is not None and health is not o:
        g = health
        score = f"{id_expr('g', g)} AS id, {col('g', g.require('health_score'))} AS health_score"
        ctes.append(_cte("gong", g, "g", score, t.project))
        joins.append("LEFT JOIN gong ON gong.id = opp.id")
        select.append(_if_live("gong", "gong.health_score", "health_score"))
        stamps.append("gong.stamp")
    else:
        select.append("opp.own_health_score AS health_score")
    greatest = "GREATEST(" + ", ".join(f"COALESCE({s}, opp.stamp)" for s in stamps) + ")"
    select.append(f"{greatest} AS change_stamp")
    ctes.append(f"joined AS (SELECT {', '.join(select)} FROM opp {' '.join(joins)})")
    return "WITH " + ",\n".join(ctes)


def opportunity_page_sql(t: SourceTables, *, bound_known: bool) -> str:
    """One keyset page. Parameters: ``after_stamp``, ``after_id``, ``upper_bound``, ``page_limit``.

    On a run's first page (``bound_known=False``) the upper bound is computed in the same
    query as the source's greatest change stamp and returned on every row.
    """
    bound = "@upper_bound" if bound_known else "(SELECT MAX(change_stamp) FROM joined)"
    return (
        joined_opportunities_sql(t)
        + f"\nSELECT joined.*, {bound} AS run_upper_bound FROM joined"
        + "\nWHERE (joined.change_stamp > @after_stamp"
        + " OR (joined.change_stamp = @after_stamp AND joined.id > @after_id))"
        + f" AND joined.change_stamp <= {bound}"
        + "\nORDER BY joined.change_stamp, joined.id\nLIMIT @page_limit"
    )


def all_ids_sql(t: SourceTables) -> str:
    """Every opportunity id the source holds live now: the purge list of a full resync.

    A row counts when it is an active version (History Mode) and not flagged deleted. An id
    whose versions are all inactive was deleted in Salesforce; counting it as present would
    keep it live for good.
    """
    o = t.opportunity
    return f"SELECT DISTINCT {id_expr('o', o)} AS id FROM {ref(t.project, o)} AS o WHERE {row_live('o', o)}"


def link_page_sql(t: SourceTables, *, bound_known: bool) -> str:
    """One keyset page of call links, ordered by ``(stamp, call_id, object_id)``.

    Parameters: ``after_stamp``, ``after_call``, ``after_object``, ``upper_bound``,
    ``page_limit`` and ``object_type``.

    Gong writes one row per CRM field per link, so rows are grouped to (call, object); the
    link is gone when none of its rows is live (flagged deleted, or an inactive version in
    History Mode).
    """
    if t.links is None:
        msg = "call link table is not present"
        raise ValueError(msg)
    c = t.links
    grouped = (
        f"WITH links AS (SELECT CAST({col('c', c.require('call_id'))} AS STRING) AS call_id, "
        f"CAST({col('c', c.require('object_id'))} AS STRING) AS object_id, "
        f"LOGICAL_AND(NOT {row_live('c', c)}) AS deleted, MAX({row_stamp('c', c)}) AS stamp "
        f"FROM {ref(t.project, c)} AS c WHERE LOWER({col('c', c.require('object_type'))}) = @object_type "
        "GROUP BY call_id, object_id)"
    )
    bound = "@upper_bound" if bound_known else "(SELECT MAX(stamp) FROM links)"
    return (
        grouped
        + f"\nSELECT links.*, {bound} AS run_upper_bound FROM links"
        + "\nWHERE (links.stamp > @after_stamp OR (links.stamp = @after_stamp AND (links.call_id > @after_call"
        + " OR (links.call_id = @after_call AND links.object_id > @after_object))))"
        + f" AND links.stamp <= {bound}"
        + "\nORDER BY links.stamp, links.call_id, links.object_id\nLIMIT @page_limit"
    )
