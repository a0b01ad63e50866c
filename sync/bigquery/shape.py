"""The source shape a replica is built from: which tables it reads and how their columns are spelled. Pure.

Every table the sync reads is declared once here (:data:`OPPORTUNITY`, :data:`JOINED`); the
SQL's parts, the probe's table list and the features all derive from these declarations
(``sync/bigquery/source_sql.py``), so a joined table cannot escape the probe.

The replica records the shape it was built from (``source_shape``, ``sync/run/shape_check.py``).
Later runs :func:`compare` the source with it: a recorded table or column that is gone is a
retryable failure that names it, never a feature silently switched off (which would store NULL
over good values); a table that appeared turns its feature on and asks for a re-read of the
rows it affects. Which opportunity table the replica reads (Salesforce's, or the Gong fallback)
is part of the shape and changes only by an operator's command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sync.bigquery.streams import StreamKind
from sync.rows.columns import Table

Origin = Literal["salesforce", "gong"]
ORIGINS: tuple[Origin, ...] = ("salesforce", "gong")

# Columns that decide which version of a row counts, whether it is live and when it changed
# (sync/bigquery/versions.py); every table may carry them.
_BOOKKEEPING = (
    "is_deleted",
    "_fivetran_synced",
    "_fivetran_deleted",
    "_fivetran_active",
    "_fivetran_start",
    "_fivetran_end",
    "last_modified_date",
    "system_modstamp",
)


@dataclass(frozen=True)
class Declared:
    """One source table the sync reads: where it lives, the columns it needs, what it switches on."""

    role: str
    origin: Origin
    table: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = _BOOKKEEPING
    feature: str | None = None
    stream: StreamKind = StreamKind.OPPORTUNITIES

    @property
    def logical(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


OPPORTUNITY = Declared(
    "opportunity",
    "salesforce",
    "opportunity",
    ("id", "name", "stage_name", "amount", "close_date"),
    ("account_id", "owner_id", "health_score", *_BOOKKEEPING),
)
JOINED: tuple[Declared, ...] = (
    Declared("account", "salesforce", "account", ("id", "name"), feature="account_names"),
    Declared("user", "salesforce", "user", ("id", "email"), ("is_active", *_BOOKKEEPING), feature="owner_emails"),
    Declared(
        "opportunity_history",
        "salesforce",
        "opportunity_history",
        ("id", "opportunity_id", "stage_name", "created_date"),
        feature="stage_history",
    ),
    Declared("gong_opportunity", "gong", "opportunity", ("id",), ("health_score", *_BOOKKEEPING), feature="health_score"),
    Declared(
        "call_context_integration",
        "gong",
        "call_context_integration",
        ("call_id", "object_type", "object_id"),
        feature="call_links",
        stream=StreamKind.CALL_LINKS,
    ),
)
DECLARED: dict[str, Declared] = {d.role: d for d in (OPPORTUNITY, *JOINED)}


@dataclass(frozen=True)
class TableShape:
    """A table as found: its ``dataset.table`` label and the spelling of each logical column it has."""

    label: str
    columns: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Shape:
    """Which opportunity table, and every table read by role (absent roles are features off)."""

    origin: Origin
    tables: Mapping[str, TableShape]

    def features(self) -> dict[str, bool]:
        own_score = "health_score" in self.tables.get("opportunity", TableShape("")).columns
        gong = self.tables.get("gong_opportunity")
        features = {d.feature: d.role in self.tables for d in JOINED if d.feature is not None}
        features["health_score"] = own_score or (gong is not None and "health_score" in gong.columns)
        return features

    def to_json(self) -> dict[str, Any]:
        return {
            "opportunity_table": self.origin,
            "tables": {role: {"table": t.label, "columns": dict(t.columns)} for role, t in sorted(self.tables.items())},
            "features": self.features(),
        }

    @classmethod
    def from_json(cls, value: Any) -> Shape | None:
        """A stored shape back; None when what is stored is not one (then it is recorded again)."""
        if not isinstance(value, dict) or value.get("opportunity_table") not in ORIGINS:
            return None
        raw = value.get("tables")
        if not isinstance(raw, dict) or not all(isinstance(t, dict) and isinstance(t.get("table"), str) for t in raw.values()):
            return None
        tables = {
            role: TableShape(t["table"], {str(k): str(v) for k, v in (t.get("columns") or {}).items()}) for role, t in raw.items()
        }
        return cls(value["opportunity_table"], tables)


def table_shape(declared: Declared, table: Table) -> TableShape:
    """How ``table`` spells each of the declared table's logical columns it has."""
    columns = {logical: column.name for logical in declared.logical if (column := table.find(logical)) is not None}
    return TableShape(table.label, columns)


def shape_of(origin: Origin, found: Mapping[str, Table | None]) -> Shape:
    """The shape of the tables found by role."""
    return Shape(origin, {role: table_shape(DECLARED[role], t) for role, t in found.items() if t is not None})


@dataclass(frozen=True)
class Difference:
    """What changed from the recorded shape: gone (a failure) and appeared (a re-read)."""

    missing: tuple[str, ...] = ()
    appeared: tuple[str, ...] = ()
    reread: frozenset[StreamKind] = frozenset()
    # Anything else differs (a column spelled anew, an optional column added): record it again.
    changed: bool = False


def compare(recorded: Shape, current: Shape) -> Difference:
    """``missing``: every recorded table or column the source no longer has, each named; ``appeared``:
    features now on that were off, with the streams whose rows they change."""
    missing: list[str] = []
    for role, was in sorted(recorded.tables.items()):
        now = current.tables.get(role)
        if now is None:
            missing.append(f"table {was.label}")
            continue
        for logical, spelling in sorted(was.columns.items()):
            # A column Fivetran now lands under another spelling (StageName for stage_name) still
            # serves: only a logical column with no spelling at all is gone.
            if logical not in now.columns:
                missing.append(f"column {was.label}.{spelling}")
    before, after = recorded.features(), current.features()
    appeared = tuple(sorted(f for f, on in after.items() if on and not before.get(f, False)))
    streams = {d.stream for d in JOINED if d.feature in appeared}
    return Difference(tuple(missing), appeared, frozenset(streams), changed=current != recorded)
