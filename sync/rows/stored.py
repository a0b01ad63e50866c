"""The stored opportunity row, declared once. Pure.

:data:`COLUMNS` lists every column of ``opportunities`` that the sync writes: its Postgres type,
what the merge does with it, and the parse rule that fills it from a joined source row. The
transform, the staging table, the COPY stream, the merge and the content hash all follow from
it, so adding a synced column is a migration, the source select, and one entry here.

The content text (every hashed value in COPY text form, which is both streamed to Postgres
and digested for change detection) and the COPY lines are rendered by a loop over per-column
renderers chosen from the declaration at import. An earlier release generated these three
functions as f-strings with ``exec``; the plain loops measured 0.2-0.7 µs a row slower (about
0.9 µs for a new row's content text and insert line, next to ~17 µs of transform), which does
not pay for code a reader cannot see.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sync.rows import encoding, limits, parse
from sync.rows.parse import as_is


class Role(enum.Enum):
    """What the merge does with a column."""

    KEY = "key"  # the source id: conflict target, hashed, never updated
    DATA = "data"  # a synced value: hashed, compared and updated
    DELETED = "deleted"  # soft delete: staged as a flag, stored as the time it was first seen
    STAMP = "stamp"  # the source's own change stamp: stored and updated, neither hashed nor compared
    HASH = "hash"  # the digest of the content text: compared and updated


@dataclass(frozen=True)
class Column:
    """One column of ``opportunities`` that the sync writes.

    Attributes:
        name: the column in ``opportunities``.
        pg_type: its type as Postgres's ``format_type`` spells it (a schema test compares them).
        role: how the merge treats it.
        source: the joined source row's key that ``parse`` reads; None hands it the whole row.
        parse: source value to stored value; None stores NULL.
        invalid: the reason recorded when a present source value parses to None.
        required: a row whose value parses to None is skipped (reason ``missing_<source>``).
        staged_as: ``(name, type)`` in the staging table, where they differ from the stored column.
        check: what Postgres can hold (``sync/rows/limits.py``): called with a parsed, non-NULL
            value, returns the reason it cannot be stored, or None. A refused value is stored
            as NULL, or skips the row when the column is required.
        nullable: a data column the sync may store as NULL when Postgres refuses its value for
            a reason no check foresaw (``sync/postgres/isolate.py``); the schema test pins it to the table.
    """

    name: str
    pg_type: str
    role: Role = Role.DATA
    source: str | None = None
    parse: Callable[[Any], Any] = as_is
    invalid: str | None = None
    required: bool = False
    staged_as: tuple[str, str] | None = None
    check: Callable[[Any], str | None] | None = None
    nullable: bool = True

    @property
    def hashed(self) -> bool:
        return self.role in {Role.KEY, Role.DATA, Role.DELETED}

    @property
    def compared(self) -> bool:
        return self.role in {Role.DATA, Role.DELETED, Role.HASH}

    @property
    def stage_name(self) -> str:
        return self.staged_as[0] if self.staged_as else self.name

    @property
    def stage_type(self) -> str:
        return self.staged_as[1] if self.staged_as else self.pg_type


_TIMESTAMP = "timestamp with time zone"

COLUMNS: tuple[Column, ...] = (
    # Taken exactly as the source holds it (parse.source_id), so it must be storable exactly.
    Column("gong_opportunity_id", "text", Role.KEY, "id", parse.source_id, required=True, check=limits.SOURCE_ID, nullable=False),
    Column("name", "text", Role.DATA, "name", parse.text, required=True, nullable=False),
    Column("account_name", "text", Role.DATA, "account_name", parse.text),
    # owner_email and stage lead a btree key: limited to what fits the index entry.
    Column("owner_email", "text", Role.DATA, "owner_email", parse.text, check=limits.OWNER_EMAIL),
    Column("stage", "text", Role.DATA, "stage_name", parse.text, check=limits.STAGE),
    Column("close_date", "date", Role.DATA, "close_date", parse.close_date, "invalid_close_date"),
    Column("amount", "numeric(18,2)", Role.DATA, "amount", parse.amount, "invalid_amount", check=limits.AMOUNT),
    Column("health_score", "numeric(5,2)", Role.DATA, "health_score", parse.health_score, "invalid_health_score"),
    # Staged as text: only rows that really changed pay for the jsonb parse, in the merge.
    Column("metadata", "jsonb", Role.DATA, None, parse.metadata_json, staged_as=("metadata", "text"), nullable=False),
    Column("deleted_at", _TIMESTAMP, Role.DELETED, "is_deleted", parse.flag, staged_as=("deleted", "boolean")),
    Column("source_modified_at", _TIMESTAMP, Role.STAMP, "last_modified"),
    Column("content_hash", "bytea", Role.HASH),
)

# Filled by Postgres itself, never by the sync.
DATABASE_OWNED = ("id", "created_at", "updated_at")


def _only(role: Role) -> Column:
    found = [c for c in COLUMNS if c.role is role]
    if len(found) != 1:
        msg = f"stored.COLUMNS must declare exactly one {role.name} column, found {[c.name for c in found]}"
        raise ValueError(msg)
    return found[0]


KEY, DELETED, HASH = _only(Role.KEY), _only(Role.DELETED), _only(Role.HASH)
# What the transform fills, in declaration order; the key comes first, so it is known for
# every issue recorded after it.
PARSED = tuple(c for c in COLUMNS if c.role is not Role.HASH)
# The staging table's and the COPY stream's order: the content text, the rest, the digest.
COPY_ORDER = (*(c for c in PARSED if c.hashed), *(c for c in PARSED if not c.hashed), HASH)
# A row no stored row holds is copied straight into ``opportunities`` (``sync/postgres/writer.py``), live
# rows only, so without the soft-delete column: it stays NULL.
INSERT_ORDER = tuple(c for c in COPY_ORDER if c.role is not Role.DELETED)
# Data columns whose value may be stored as NULL to save a row Postgres refuses.
NULLABLE = tuple(c for c in PARSED if c.role is Role.DATA and c.nullable and not c.required)
_POSITION = {c.name: i for i, c in enumerate(PARSED)}

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


def _validate() -> None:
    """Refuse a declaration the derived SQL and transform could not serve, at import."""
    for column in COLUMNS:
        # Names go into SQL text unquoted.
        if not _NAME_RE.match(column.name) or not _NAME_RE.match(column.stage_name):
            msg = f"stored column names must be lower-case SQL identifiers, got {column.name!r}"
            raise ValueError(msg)
    if PARSED[0] is not KEY:
        msg = f"the key column must be declared first, got {PARSED[0].name!r}"
        raise ValueError(msg)
    hashed = [c for c in COPY_ORDER if c.hashed]
    if hashed[-1] is not DELETED:
        # insert_line reuses the content text up to the soft-delete flag, its last field.
        msg = f"the soft-delete column must be the last hashed column, got {hashed[-1].name!r}"
        raise ValueError(msg)


_validate()


@dataclass(frozen=True, slots=True)
class OpportunityRow:
    """One row of ``opportunities`` as the sync writes it.

    ``values`` holds the parsed columns in :data:`PARSED` order; ``content_text`` is the hashed
    ones in COPY text form and ``content_hash`` digests exactly that text.
    """

    values: tuple[Any, ...]
    content_text: str
    content_hash: bytes

    def __getitem__(self, column: str) -> Any:
        return self.values[_POSITION[column]]

    @property
    def source_id(self) -> str:
        return str(self.values[0])

    @property
    def deleted(self) -> bool:
        return bool(self[DELETED.name])

    def with_null(self, column: str) -> OpportunityRow:
        """This row with ``column`` stored as NULL, keeping the digest of what the source holds.

        The kept digest makes a re-read of the same source row "unchanged", so the value
        Postgres refused is not sent to it again.
        """
        values = list(self.values)
        values[_POSITION[column]] = None
        return OpportunityRow(tuple(values), content_text(values), self.content_hash)


def _flag(value: Any) -> str:
    return "t" if value else "f"


def _bytea(value: bytes) -> str:
    return "\\\\x" + value.hex()


def _iso(value: Any) -> str:
    return encoding.NULL if value is None else str(value.isoformat())


def _plain(value: Any) -> str:
    return encoding.NULL if value is None else str(value)


def _renderer(column: Column) -> Callable[[Any], str]:
    """How one value of ``column`` is written in COPY text form, by its staged type."""
    kind = column.stage_type
    if kind == "text":
        return encoding.text
    if kind == "boolean":
        return _flag
    if kind == "bytea":
        return _bytea
    if kind in {"date", _TIMESTAMP}:
        return _iso
    if kind.startswith("numeric"):
        return _plain
    msg = f"no COPY text rendering for {column.name} of type {kind!r}"
    raise ValueError(msg)


# (position in ``values``, renderer) per field, in COPY order.
_CONTENT = tuple((_POSITION[c.name], _renderer(c)) for c in COPY_ORDER if c.hashed)
_COPY_REST = tuple((_POSITION[c.name], _renderer(c)) for c in COPY_ORDER if not c.hashed and c is not HASH)
_INSERT_REST = tuple((_POSITION[c.name], _renderer(c)) for c in INSERT_ORDER if not c.hashed and c is not HASH)


def content_text(values: Sequence[Any]) -> str:
    """Every hashed value of a row's ``values`` in COPY text form, tab-separated, in COPY order."""
    return "\t".join([render(values[i]) for i, render in _CONTENT])


def copy_line(row: OpportunityRow) -> str:
    """A row as one line of ``COPY stage_opportunities (COPY_ORDER) FROM STDIN``."""
    values = row.values
    rest = "".join(["\t" + render(values[i]) for i, render in _COPY_REST])
    return f"{row.content_text}{rest}\t{_bytea(row.content_hash)}\n"


def insert_line(row: OpportunityRow) -> str:
    """A live row as one line of ``COPY opportunities (INSERT_ORDER) FROM STDIN``.

    The content text without its last field, the soft-delete flag ("f": the row is live).
    """
    values = row.values
    rest = "".join(["\t" + render(values[i]) for i, render in _INSERT_REST])
    return f"{row.content_text[:-2]}{rest}\t{_bytea(row.content_hash)}\n"
