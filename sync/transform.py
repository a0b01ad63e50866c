"""Pure mapping from a joined source row to the row we store, with validation.

Nothing here touches I/O. Each stored column is parsed by the rule ``sync/stored.py`` declares
for it. A row whose required value is missing is skipped; a present value that does not parse
becomes NULL; an unresolved account or owner leaves its column NULL. Every such decision is
returned as an :class:`Issue`, never raised, so one bad row cannot abort a page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sync import stored
from sync.parse import has_nul, jsonable, text
from sync.stored import OpportunityRow

IssueKind = Literal["skipped", "degraded"]

# (source key, parse rule, reason when invalid, required, key for the recorded value), per column.
_STEPS = tuple((c.source, c.parse, c.invalid, c.required, c.source or c.name) for c in stored.PARSED)
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
    by_id: dict[str, OpportunityRow] = {}
    issues: list[Issue] = []
    for raw in source_rows:
        row, row_issues = transform_row(raw)
        issues.extend(row_issues)
        if row is not None:
            by_id[row.source_id] = row
    return PageResult(list(by_id.values()), issues)


def transform_row(raw: Mapping[str, Any]) -> tuple[OpportunityRow | None, list[Issue]]:
    """Map one joined source row, or return why it cannot be stored."""
    get = raw.get
    values: list[Any] = []
    issues: list[Issue] = []
    nul = False
    for source, parse, invalid, required, label in _STEPS:
        given = raw if source is None else get(source)
        value = parse(given)
        if required:
            if value is None:
                return None, [_skipped(raw, values[0] if values else None, label)]
            nul = nul or has_nul(given)
        elif value is None and given is not None and invalid is not None:
            issues.append(Issue(values[0], "degraded", invalid, {label: jsonable(given)}))
        values.append(value)
    source_id = values[0]
    if nul:
        issues.append(Issue(source_id, "degraded", "nul_character_removed"))
    for id_key, found_key, reason in _JOINS:
        if get(id_key) is not None and not get(found_key):
            issues.append(Issue(source_id, "degraded", reason, {id_key: get(id_key)}))
    content = stored.content_text(values)
    return OpportunityRow(tuple(values), content, hashlib.blake2b(content.encode("utf-8"), digest_size=16).digest()), issues


def _skipped(raw: Mapping[str, Any], source_id: str | None, missing: str) -> Issue:
    return Issue(source_id, "skipped", f"missing_{missing}", {key: raw.get(key) for key in _REQUIRED})


def transform_links(source_rows: Iterable[Mapping[str, Any]]) -> list[LinkRow]:
    """Map link rows; rows without a call or opportunity id cannot link anything."""
    links: dict[tuple[str, str], LinkRow] = {}
    for raw in source_rows:
        call_id, opp_id = text(raw.get("call_id")), text(raw.get("object_id"))
        if call_id is None or opp_id is None:
            continue
        links[(call_id, opp_id)] = LinkRow(call_id, opp_id, bool(raw.get("deleted")), raw.get("stamp"))
    return list(links.values())
