"""Resolve logical columns against what Fivetran actually landed.

Fivetran writes Salesforce columns in snake_case by default, but some connections land the
API names (``StageName``). BigQuery column names are case-insensitive, so a column matches a
logical name when it equals one of its spellings ignoring case. Pure: the caller supplies the
``INFORMATION_SCHEMA.COLUMNS`` rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sync.errors import SourceSchemaError

_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str


@dataclass(frozen=True)
class Table:
    """A source table and its columns, keyed by lower-case name."""

    dataset: str
    name: str
    columns: Mapping[str, Column]

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
    """Group ``(table_name, column_name, data_type)`` rows into tables keyed by lower-case name."""
    grouped: dict[str, dict[str, Column]] = {}
    names: dict[str, str] = {}
    for table_name, column_name, data_type in rows:
        key = table_name.lower()
        names.setdefault(key, table_name)
        grouped.setdefault(key, {})[column_name.lower()] = Column(column_name, data_type.upper())
    return {key: Table(dataset, names[key], cols) for key, cols in grouped.items()}


def quote(identifier: str) -> str:
    """Backtick-quote a BigQuery identifier after validating it against an allow-list pattern."""
    if not _IDENTIFIER_RE.match(identifier):
        msg = f"refusing unsafe BigQuery identifier {identifier!r}"
        raise SourceSchemaError(msg)
    return f"`{identifier}`"


def quote_project(project: str) -> str:
    """Backtick-quote a project id (letters, digits, hyphens, optional domain prefix)."""
    if not re.match(r"^(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$", project):
        msg = f"refusing unsafe BigQuery project id {project!r}"
        raise SourceSchemaError(msg)
    return f"`{project}`"
