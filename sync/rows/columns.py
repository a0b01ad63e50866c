"""Resolve logical columns against what Fivetran actually landed.

Fivetran writes Salesforce columns in snake_case by default, but some connections land the
API names (``StageName``). BigQuery column names are case-insensitive, so a column matches a
logical name when it equals one of its spellings ignoring case. Pure: the caller supplies the
``INFORMATION_SCHEMA.COLUMNS`` rows.

BigQuery's flexible column names allow spaces, hyphens and more (``Billing Country-Code``);
the SQL builders quote only names that pass a strict allow-list. A column that fails it is
kept aside in :attr:`Table.unsafe`, never referenced: optional data simply goes without it,
and a required column spelled that way is a permanent error that names it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sync.core.errors import SourceSchemaError

_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str


@dataclass(frozen=True)
class Table:
    """A source table: its usable columns keyed by lower-case name, and the unsafe names left out."""

    dataset: str
    name: str
    columns: Mapping[str, Column]
    unsafe: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.dataset}.{self.name}"

    def find(self, logical: str) -> Column | None:
        """The column for a logical snake_case name under any accepted spelling."""
        for candidate in spellings(logical):
            found = self.columns.get(candidate.lower())
            if found is not None:
                return found
        return None

    def require(self, logical: str) -> Column:
        """Like :meth:`find`, but a missing column is a permanent, named error."""
        found = self.find(logical)
        if found is None:
            near = [u for u in self.unsafe if _squash(u) in {_squash(s) for s in spellings(logical)}]
            if near:
                msg = (
                    f"table {self.label} column {near[0]!r} would serve logical column {logical!r}, but its name is not "
                    "a safe identifier (letters, digits and underscores only); rename the column in the Fivetran "
                    "connector's schema settings"
                )
                raise SourceSchemaError(msg)
            tried = ", ".join(spellings(logical))
            msg = (
                f"table {self.label} has no column for logical column {logical!r} "
                f"(tried {tried}); check the Fivetran connector's schema"
            )
            raise SourceSchemaError(msg)
        return found


def spellings(logical: str) -> list[str]:
    """snake_case, PascalCase and flat lowercase spellings of a logical name.

    ``_fivetran_*`` bookkeeping columns only ever land in snake_case.
    """
    if logical.startswith("_"):
        return [logical]
    pascal = "".join(part[:1].upper() + part[1:] for part in logical.split("_"))
    flat = logical.replace("_", "")
    return list(dict.fromkeys([logical, pascal, flat]))


def snake_case(name: str) -> str:
    """``BillingCountry`` -> ``billing_country``; snake_case names are unchanged."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def tables_from_information_schema(dataset: str, rows: Iterable[tuple[str, str, str]]) -> dict[str, Table]:
    """Group ``(table_name, column_name, data_type)`` rows into tables keyed by lower-case name.

    Columns whose names fail the identifier allow-list go to :attr:`Table.unsafe` instead.
    """
    grouped: dict[str, dict[str, Column]] = {}
    unsafe: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for table_name, column_name, data_type in rows:
        key = table_name.lower()
        names.setdefault(key, table_name)
        columns = grouped.setdefault(key, {})
        if is_safe(column_name):
            columns[column_name.lower()] = Column(column_name, data_type.upper())
        else:
            unsafe.setdefault(key, []).append(column_name)
    return {key: Table(dataset, names[key], cols, tuple(unsafe.get(key, ()))) for key, cols in grouped.items()}


def is_safe(identifier: str) -> bool:
    """Whether a name passes the allow-list that :func:`quote` enforces."""
    return _IDENTIFIER_RE.fullmatch(identifier) is not None


def _squash(name: str) -> str:
    # "Stage Name", "stage-name" and "StageName" are one name once separators and case go.
    return re.sub(r"[^0-9a-z]", "", name.lower())


def quote(identifier: str) -> str:
    """Backtick-quote a BigQuery identifier after validating it against an allow-list pattern."""
    if not is_safe(identifier):
        msg = f"refusing unsafe BigQuery identifier {identifier!r}"
        raise SourceSchemaError(msg)
    return f"`{identifier}`"


def quote_project(project: str) -> str:
    """Backtick-quote a project id (letters, digits, hyphens, optional domain prefix)."""
    # fullmatch: "$" would let a trailing newline through.
    if not re.fullmatch(r"(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]", project):
        msg = f"refusing unsafe BigQuery project id {project!r}"
        raise SourceSchemaError(msg)
    return f"`{project}`"
