"""Pure mapping from a joined source row to the row we store, with validation.

Nothing here touches I/O. Each stored column is parsed by the rule ``sync/rows/stored.py`` declares
for it, then checked against what Postgres can hold (``sync/rows/limits.py``). A row whose required
value is missing or cannot be stored is skipped; a present value that does not parse or cannot
be stored becomes NULL; an unresolved account or owner leaves its column NULL. Every such
decision is returned as an :class:`Issue` with a bounded excerpt of the value, never raised,
so one bad row cannot abort a page.

Ids (the opportunity id and both ids of a call link) are taken exactly as the source holds
them, unstripped: the keyset cursor and a full resync's purge list come from BigQuery verbatim,
and all four must agree on what one id is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sync.rows import limits, stored
from sync.rows.limits import excerpt
from sync.rows.parse import has_nul, jsonable, source_id
from sync.rows.stored import OpportunityRow

IssueKind = Literal["skipped", "degraded"]

# (source key, parse rule, reason when invalid, required, key for the recorded value, check), per column.
_STEPS = tuple((c.source, c.parse, c.invalid, c.required, c.source or c.name, c.check) for c in stored.PARSED)
_REQUIRED = tuple(c.source or c.name for c in stored.PARSED if c.required)
# A join that found nothing leaves its columns NULL: (id key, found flag, reason).
_JOINS = (("account_id", "account_found", "account_not_found"), ("owner_id", "owner_found", "owner_not_found"))


@dataclass(frozen=True)
class Issue:
    """Why a row was skipped or a value blanked, with the offending values."""

    source_id: str | None
    kind: IssueKind
    reason: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LinkRow:
    """A call-to-opportunity link from Gong, live or removed."""

    call_id: str
    gong_opportunity_id: str
    deleted: bool
    synced_at: dt.datetime | None


@dataclass
class PageResult:
    rows: list[OpportunityRow]
    issues: list[Issue]

    @property
    def skipped(self) -> int:
        return sum(1 for i in self.issues if i.kind == "skipped")

    @property
    def degraded(self) -> int:
        return len(self.issues) - self.skipped


def transform_page(source_rows: Iterable[Mapping[str, Any]]) -> PageResult:
    """Map a page of joined source rows; later duplicates of an id win (they sort later)."""
    return PageMapping(list(source_rows)).result()


class PageMapping:
    """:func:`transform_page`, done row by row as the writer needs the rows, each row at most once.

    The writer (``sync/postgres/writer.py``) pulls a page's new rows through its COPY, so
    Postgres stores the first rows while Python still maps the later ones. :meth:`result`
    maps whatever is left and answers what ``transform_page`` answers.
    """

    def __init__(self, source_rows: Sequence[Mapping[str, Any]]) -> None:
        self._source = source_rows
        self._given: list[OpportunityRow] = []  # rows handed over mapped already (PageMapping.of)
        self._mapped: list[OpportunityRow] = []
        self._issues: list[Issue] = []
        self._done = 0
        self._result: PageResult | None = None

    @classmethod
    def of(cls, rows: Sequence[OpportunityRow], issues: Sequence[Issue] = ()) -> PageMapping:
        """A page mapped already (a preview, a test sending values the transform would stop)."""
        mapping = cls([])
        mapping._given, mapping._mapped, mapping._issues = list(rows), list(rows), list(issues)
        return mapping

    def ids(self) -> list[str | None]:
        """The id each row carries, before any mapping: what its stored row is keyed by."""
        return [row.source_id for row in self._given] + [source_id(raw.get("id")) for raw in self._source]

    def rows(self) -> Iterator[OpportunityRow]:
        """Every row that maps, in source order: those mapped already, then the rest as they are pulled."""
        position = 0
        while True:
            if position < len(self._mapped):
                yield self._mapped[position]
                position += 1
            elif self._done < len(self._source):
                self._map_next()
            else:
                return

    def result(self) -> PageResult:
        """Every row mapped; later duplicates of an id win (they sort later)."""
        if self._result is None:
            while self._done < len(self._source):
                self._map_next()
            by_id = {row.source_id: row for row in self._mapped}
            self._result = PageResult(list(by_id.values()), self._issues)
        return self._result

    def _map_next(self) -> None:
        row, issues = transform_row(self._source[self._done])
        self._done += 1
        self._issues.extend(issues)
        if row is not None:
            self._mapped.append(row)


def transform_row(raw: Mapping[str, Any]) -> tuple[OpportunityRow | None, list[Issue]]:
    """Map one joined source row, or return why it cannot be stored."""
    get = raw.get
    values: list[Any] = []
    issues: list[Issue] = []
    nul = False
    for source, parse, invalid, required, label, check in _STEPS:
        given = raw if source is None else get(source)
        value = parse(given)
        if value is None:
            if required:
                return None, [Issue(values[0] if values else None, "skipped", f"missing_{label}", _required(raw))]
            if given is not None and invalid is not None:
                issues.append(Issue(values[0], "degraded", invalid, {label: _bounded(jsonable(given))}))
        elif check is not None and (refused := check(value)) is not None:
            if required:
                return None, [Issue(_bounded(values[0] if values else value), "skipped", refused, _required(raw))]
            issues.append(Issue(values[0], "degraded", refused, {label: _bounded(jsonable(value))}))
            value = None
        elif required:
            nul = nul or has_nul(given)
        values.append(value)
    row_id = values[0]
    if nul:
        issues.append(Issue(row_id, "degraded", "nul_character_removed"))
    for id_key, found_key, reason in _JOINS:
        if get(id_key) is not None and not get(found_key):
            issues.append(Issue(row_id, "degraded", reason, {id_key: _bounded(get(id_key))}))
    content = stored.content_text(values)
    return OpportunityRow(tuple(values), content, hashlib.blake2b(content.encode("utf-8"), digest_size=16).digest()), issues


def _required(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _bounded(raw.get(key)) for key in _REQUIRED}


def _bounded(value: Any) -> Any:
    """Strings as a bounded excerpt: a rejection record must not carry a 5 KB value."""
    return excerpt(value) if isinstance(value, str) else value


@dataclass
class LinkResult:
    links: list[LinkRow]
    issues: list[Issue]


def transform_links(source_rows: Iterable[Mapping[str, Any]]) -> LinkResult:
    """Map link rows exactly as the source holds their ids.

    A row without a call or opportunity id cannot link anything and is passed over; an id
    that cannot be stored exactly (``limits.CALL_ID``) skips the link with an issue.
    """
    links: dict[tuple[str, str], LinkRow] = {}
    issues: list[Issue] = []
    for raw in source_rows:
        call_id, opp_id = source_id(raw.get("call_id")), source_id(raw.get("object_id"))
        if call_id is None or opp_id is None:
            continue
        refused = limits.CALL_ID(call_id) or limits.LINKED_ID(opp_id)
        if refused is not None:
            issues.append(Issue(excerpt(opp_id), "skipped", refused, {"call_id": excerpt(call_id)}))
            continue
        links[(call_id, opp_id)] = LinkRow(call_id, opp_id, bool(raw.get("deleted")), raw.get("stamp"))
    return LinkResult(list(links.values()), issues)
