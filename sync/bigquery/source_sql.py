"""BigQuery SQL for one page of opportunities and one page of call links.

Pure builders: given the resolved source tables they return SQL text whose only variable
parts are validated, backtick-quoted identifiers; every value is a query parameter.

A row's change stamp is the greatest stamp of the opportunity and everything joined to it
(account, owner, stage history, Gong row), so a renamed account or a new owner email re-syncs
the opportunities that show it. Which version of a row counts, whether it is live, and its own
stamp, in soft-delete mode and in Fivetran's History Mode alike, is :mod:`sync.bigquery.versions`.
A joined row that is not live (a deleted account or owner) is treated as not found, but its
stamp still counts, so its deletion reaches the opportunities that showed it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sync.bigquery.shape import DECLARED, Origin, Shape, shape_of
from sync.bigquery.streams import StreamKind
from sync.bigquery.versions import active, col, current_versions, history_mode, id_expr, ref, row_live, row_stamp, timestamp
from sync.rows.columns import Table, quote, snake_case


@dataclass(frozen=True)
class SourceTables:
    """The source tables found, one per role declared in :mod:`sync.bigquery.shape`; absent ones are None."""

    project: str
    opportunity: Table
    account: Table | None
    user: Table | None
    history: Table | None
    gong_opportunity: Table | None
    links: Table | None
    origin: Origin = "salesforce"

    def by_role(self) -> dict[str, Table | None]:
        """Every declared role and its table (None when absent)."""
        return {
            "opportunity": self.opportunity,
            "account": self.account,
            "user": self.user,
            "opportunity_history": self.history,
            "gong_opportunity": self.gong_opportunity,
            "call_context_integration": self.links,
        }

    def shape(self) -> Shape:
        return shape_of(self.origin, self.by_role())

    def features(self) -> dict[str, bool]:
        features: dict[str, bool | str] = {**self.shape().features()}
        features["fivetran_synced_stamp"] = self.opportunity.find("_fivetran_synced") is not None
        # History Mode is a per-table setting in Fivetran, so it is reported per table.
        for role, table in self.by_role().items():
            if table is not None:
                features[f"history_mode_{'call_links' if role == 'call_context_integration' else role}"] = history_mode(table)
        return {k: bool(v) for k, v in features.items()}

    def stream_tables(self) -> dict[StreamKind, list[tuple[str, Table]]]:
        """Every table each stream's query reads, by role: what the probe must watch.

        Derived from the declarations, so a joined table cannot be left out. The Gong table is
        read only for its health score, so it counts only when the score is joined from it.
        """
        health = self._health_table()
        read = {role: t for role, t in self.by_role().items() if t is not None}
        if read.get("gong_opportunity") is not None and health is not read["gong_opportunity"]:
            del read["gong_opportunity"]
        return {
            stream: [(role, read[role]) for role in DECLARED if role in read and DECLARED[role].stream is stream]
            for stream in StreamKind
        }

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


@dataclass
class _Joined:
    """One table's share of the ``joined`` CTE: the CTEs it needs, its join, its columns, its stamps."""

    ctes: list[str] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    select: list[str] = field(default_factory=list)
    stamps: list[str] = field(default_factory=list)


def joined_opportunities_sql(t: SourceTables) -> str:
    """A CTE list ending in ``joined``: one row per opportunity with its change stamp.

    Each table contributes its own part (:class:`_Joined`); a missing optional table contributes
    typed NULLs, so the columns of ``joined`` never depend on which tables exist.
    """
    parts = [OPPORTUNITY_PARTS[role](t) for role, d in DECLARED.items() if d.stream is StreamKind.OPPORTUNITIES]
    ctes = [cte for part in parts for cte in part.ctes]
    joins = [join for part in parts for join in part.joins]
    select = [item for part in parts for item in part.select]
    stamps = [stamp for part in parts for stamp in part.stamps]
    greatest = "GREATEST(" + ", ".join(f"COALESCE({s}, opp.stamp)" for s in stamps) + ")"
    select.append(f"{greatest} AS change_stamp")
    ctes.append(f"joined AS (SELECT {', '.join(select)} FROM opp {' '.join(joins)})")
    return "WITH " + ",\n".join(ctes)


def _opportunity(t: SourceTables) -> _Joined:
    o = t.opportunity
    columns = [
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
    return _Joined(
        ctes=[_cte("opp", o, "o", ", ".join(columns), t.project)],
        select=[
            "opp.id",
            "opp.name",
            "opp.account_id",
            "opp.owner_id",
            "opp.stage_name",
            "opp.amount",
            "opp.close_date",
            "NOT opp.live AS is_deleted",
            "opp.last_modified",
        ],
        stamps=["opp.stamp"],
    )


def _account(t: SourceTables) -> _Joined:
    if t.account is None:
        nulls = ["CAST(NULL AS STRING) AS account_name", "CAST(NULL AS STRING) AS account_details", "FALSE AS account_found"]
        return _Joined(select=nulls)
    a = t.account
    details = f"{id_expr('a', a)} AS id, {col('a', a.require('name'))} AS name, {_account_json('a', a)} AS details"
    return _Joined(
        ctes=[_cte("acct", a, "a", details, t.project)],
        joins=["LEFT JOIN acct ON acct.id = opp.account_id"],
        select=[
            _if_live("acct", "acct.name", "account_name"),
            _if_live("acct", "acct.details", "account_details"),
            "COALESCE(acct.live, FALSE) AS account_found",
        ],
        stamps=["acct.stamp"],
    )


def _owner(t: SourceTables) -> _Joined:
    if t.user is None:
        nulls = ["CAST(NULL AS STRING) AS owner_email", "FALSE AS owner_found", "CAST(NULL AS BOOL) AS owner_active"]
        return _Joined(select=nulls)
    u = t.user
    owner = f"{id_expr('u', u)} AS id, {col('u', u.require('email'))} AS email, {_optional('u', u, 'is_active')} AS is_active"
    return _Joined(
        ctes=[_cte("usr", u, "u", owner, t.project)],
        joins=["LEFT JOIN usr ON usr.id = opp.owner_id"],
        select=[
            _if_live("usr", "usr.email", "owner_email"),
            "COALESCE(usr.live, FALSE) AS owner_found",
            _if_live("usr", "usr.is_active", "owner_active"),
        ],
        stamps=["usr.stamp"],
    )


def _stage_history(t: SourceTables) -> _Joined:
    if t.history is None:
        return _Joined(select=["CAST(NULL AS STRING) AS stage_history"])
    h = t.history
    table_ref = ref(t.project, h)
    opp_id = id_expr("h", h, "opportunity_id")
    created = timestamp("h", h.require("created_date"))
    # Aggregate live history rows, but take the stamp over all rows so that deleting a
    # history row also counts as a change.
    return _Joined(
        ctes=[
            f"hist AS (SELECT {opp_id} AS opportunity_id, "
            f"TO_JSON_STRING(ARRAY_AGG(STRUCT({col('h', h.require('stage_name'))} AS stage, {created} AS changed_at) "
            f"ORDER BY {created}, {id_expr('h', h)})) AS stages "
            f"FROM {table_ref} AS h WHERE {row_live('h', h)} GROUP BY opportunity_id), "
            f"hist_stamp AS (SELECT {opp_id} AS opportunity_id, MAX({row_stamp('h', h)}) AS stamp "
            f"FROM {table_ref} AS h GROUP BY opportunity_id)"
        ],
        joins=["LEFT JOIN hist ON hist.opportunity_id = opp.id", "LEFT JOIN hist_stamp ON hist_stamp.opportunity_id = opp.id"],
        select=["hist.stages AS stage_history"],
        stamps=["hist_stamp.stamp"],
    )


def _health(t: SourceTables) -> _Joined:
    g = t._health_table()
    if g is None or g is t.opportunity:
        # No Gong table, or the score lives on the opportunity itself: nothing to join.
        return _Joined(select=["opp.own_health_score AS health_score"])
    score = f"{id_expr('g', g)} AS id, {col('g', g.require('health_score'))} AS health_score"
    return _Joined(
        ctes=[_cte("gong", g, "g", score, t.project)],
        joins=["LEFT JOIN gong ON gong.id = opp.id"],
        select=[_if_live("gong", "gong.health_score", "health_score")],
        stamps=["gong.stamp"],
    )


# Each declared table of the opportunity stream contributes one part (sync/bigquery/shape.py).
OPPORTUNITY_PARTS: dict[str, Callable[[SourceTables], _Joined]] = {
    "opportunity": _opportunity,
    "account": _account,
    "user": _owner,
    "opportunity_history": _stage_history,
    "gong_opportunity": _health,
}


def opportunity_result_sql(t: SourceTables) -> str:
    """The run's single evaluation of the join, ordered by ``(cursor_stamp, id)``.

    Parameters: ``after_stamp``, ``after_id`` (the keyset to read after), ``upper_bound`` (the
    run's frozen bound, NULL on its first evaluation) and ``skew_seconds``. See
    :func:`_result_tail` for what the result holds.
    """
    after = "(placed.cursor_stamp > @after_stamp OR (placed.cursor_stamp = @after_stamp AND placed.id > @after_id))"
    return joined_opportunities_sql(t) + _result_tail("joined", "change_stamp", ("id",), after)


def link_groups_sql(t: SourceTables) -> str:
    """A CTE ``links``: one row per (call, opportunity) link with its stamp; ``@object_type`` parameter.

    Gong writes one row per CRM field per link, so rows are grouped to (call, object); the
    link is gone when none of its rows is live (flagged deleted, or an inactive version in
    History Mode).
    """
    if t.links is None:
        msg = "call link table is not present"
        raise ValueError(msg)
    c = t.links
    return (
        f"WITH links AS (SELECT CAST({col('c', c.require('call_id'))} AS STRING) AS call_id, "
        f"CAST({col('c', c.require('object_id'))} AS STRING) AS object_id, "
        f"LOGICAL_AND(NOT {row_live('c', c)}) AS deleted, MAX({row_stamp('c', c)}) AS stamp "
        f"FROM {ref(t.project, c)} AS c WHERE LOWER({col('c', c.require('object_type'))}) = @object_type "
        "GROUP BY call_id, object_id)"
    )


def link_result_sql(t: SourceTables) -> str:
    """The run's single evaluation of call links, ordered by ``(cursor_stamp, call_id, object_id)``.

    Parameters: those of :func:`opportunity_result_sql` with ``after_call`` and ``after_object``
    in place of ``after_id``, plus ``object_type``.
    """
    after = (
        "(placed.cursor_stamp > @after_stamp OR (placed.cursor_stamp = @after_stamp AND (placed.call_id > @after_call"
        " OR (placed.call_id = @after_call AND placed.object_id > @after_object))))"
    )
    return link_groups_sql(t) + _result_tail("links", "stamp", ("call_id", "object_id"), after)


def _result_tail(source: str, stamp: str, keys: tuple[str, ...], after: str) -> str:
    """Every row of ``source`` after the keyset, each placed at ``LEAST(stamp, bound)``.

    - ``cap`` is the source's own clock plus the skew allowance, read in this very query: no
      stamp beyond it can be one the run has seen happen, so the bound never passes it. On the
      first evaluation the bound is the greatest stamp up to the cap (the start stamp when there
      is none); a later evaluation keeps the run's bound, capped again.
    - ``cursor_stamp`` is where a row sits in the run's order: its stamp, or the bound for a
      row stamped beyond it. A future-stamped row therefore takes its place at the bound among
      the rows stamped there, and the keyset walks through all of them page by page like any
      others: none is starved, and the cursor and watermark stop at the bound. A row that lands
      mid-run beyond the bound is placed there too when the result is evaluated again; the
      watermark still stops at the bound, so the next run reads it again.
    - ``beyond_cap`` marks a future-stamped row (degraded ``future_stamp``); the first of them
      in the result carries ``future_total``, their number after the keyset.
    - The first row carries ``run_upper_bound`` and ``run_cap``; these are NULL on the others to
      keep rows lean.
    """
    order = ", ".join(f"picked.{c}" for c in ("cursor_stamp", *keys))
    return (
        ",\nclock AS (SELECT TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @skew_seconds SECOND) AS cap),"
        "\nfrozen AS (SELECT clock.cap, LEAST(clock.cap, COALESCE(@upper_bound,"
        f" (SELECT MAX(s.{stamp}) FROM {source} AS s CROSS JOIN clock AS c WHERE s.{stamp} <= c.cap),"
        " @after_stamp)) AS bound FROM clock),"
        f"\nplaced AS (SELECT {source}.*, LEAST({source}.{stamp}, frozen.bound) AS cursor_stamp,"
        f" {source}.{stamp} > frozen.cap AS beyond_cap, frozen.bound, frozen.cap FROM {source} CROSS JOIN frozen),"
        f"\npicked AS (SELECT placed.* FROM placed WHERE {after}),"
        f"\nranked AS (SELECT picked.*, ROW_NUMBER() OVER (ORDER BY {order}) AS seq,"
        f" SUM(IF(picked.beyond_cap, 1, 0)) OVER (ORDER BY {order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
        " AS beyond_seq, SUM(IF(picked.beyond_cap, 1, 0)) OVER () AS beyond_total FROM picked)"
        "\nSELECT ranked.* EXCEPT (bound, cap, seq, beyond_seq, beyond_total),"
        " IF(ranked.seq = 1, ranked.bound, NULL) AS run_upper_bound, IF(ranked.seq = 1, ranked.cap, NULL) AS run_cap,"
        " IF(ranked.beyond_cap AND ranked.beyond_seq = 1, ranked.beyond_total, NULL) AS future_total"
        "\nFROM ranked ORDER BY ranked.seq"
    )


def probe_sql(tables: Sequence[Table], project: str) -> str:
    """Per table, in order: the greatest write stamp up to the cap, the row, active-version and
    beyond-the-cap counts; the capped clock.

    Only Fivetran's own columns are read: Fivetran sets ``_fivetran_synced`` on every row it
    writes, so it shows whether a table was written, and ``COUNT(*)`` reads nothing. In History
    Mode a deletion moves no ``_fivetran_synced``: it ends the active version, so
    ``_fivetran_end`` enters the stamp (the join's own rule) and the active count drops, even
    when the version ended before the table's newest stamp. Row ``part`` is the table's index in
    ``tables``; part -1 carries the clock even when ``tables`` is empty. A stamp beyond the cap
    is counted, not taken as the greatest (``sync/bigquery/probe.py``). Parameter: ``skew_seconds``.
    """
    cap = "TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @skew_seconds SECOND)"
    parts = [
        f"SELECT -1 AS part, CAST(NULL AS TIMESTAMP) AS latest, 0 AS row_count, 0 AS active_count,"
        f" 0 AS future_count, {cap} AS cap"
    ]
    for i, table in enumerate(tables):
        own = Table(table.dataset, table.name, {k: c for k, c in table.columns.items() if k.startswith("_fivetran")})
        parts.append(
            f"SELECT {i} AS part, MAX(IF(p.stamp <= {cap}, p.stamp, NULL)) AS latest, COUNT(*) AS row_count,"
            f" COUNTIF(p.active) AS active_count, COUNTIF(p.stamp > {cap}) AS future_count, {cap} AS cap"
            f" FROM (SELECT {row_stamp('t', own)} AS stamp, {active('t', own)} AS active FROM {ref(project, table)} AS t) AS p"
        )
    return "\nUNION ALL\n".join(parts)
