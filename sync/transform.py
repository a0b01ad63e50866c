"""Pure mapping from a joined source row to the row we store, with validation.

Nothing here touches I/O. A row without id or name is skipped; a bad amount, close date or
health score becomes NULL; an unresolved account or owner leaves its column NULL. Every such
decision is returned as an :class:`Issue`, never raised, so one bad row cannot abort a page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

# numeric(18,2): 16 digits before the point.
_AMOUNT_LIMIT = Decimal("1e16")
_CENTS = Decimal("0.01")
# Dates outside this window are placeholders ("0001-01-01", "9999-12-31"), not forecasts.
_MIN_YEAR, _MAX_YEAR = 1900, 2999

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

IssueKind = Literal["skipped", "degraded"]


@dataclass(frozen=True)
class Issue:
    """Why a row was skipped or a value blanked, with the offending values."""

    source_id: str | None
    kind: IssueKind
    reason: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OpportunityRow:
    """One row of ``opportunities`` as the sync writes it."""

    gong_opportunity_id: str
    name: str
    account_name: str | None
    owner_email: str | None
    stage: str | None
    close_date: dt.date | None
    amount: Decimal | None
    health_score: Decimal | None
    metadata: Mapping[str, Any]
    source_modified_at: dt.datetime | None
    deleted: bool
    content_hash: bytes


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


def transform_page(source_rows: Iterable[Mapping[str, Any]]) -> PageResult:
    """Map a page of joined source rows; later duplicates of an id win (they sort later)."""
    by_id: dict[str, OpportunityRow] = {}
    issues: list[Issue] = []
    for raw in source_rows:
        row, row_issues = transform_row(raw)
        issues.extend(row_issues)
        if row is not None:
            by_id[row.gong_opportunity_id] = row
    return PageResult(list(by_id.values()), issues)


def transform_row(raw: Mapping[str, Any]) -> tuple[OpportunityRow | None, list[Issue]]:
    """Map one joined source row, or return why it cannot be stored."""
    issues: list[Issue] = []
    source_id = _text(raw.get("id"))
    name = _text(raw.get("name"))
    if source_id is None or name is None:
        missing = "id" if source_id is None else "name"
        issues.append(Issue(source_id, "skipped", f"missing_{missing}", {"id": raw.get("id"), "name": raw.get("name")}))
        return None, issues

    def degrade(reason: str, **values: Any) -> None:
        issues.append(Issue(source_id, "degraded", reason, values))

    if _has_nul(raw.get("id")) or _has_nul(raw.get("name")):
        degrade("nul_character_removed")
    amount = parse_amount(raw.get("amount"))
    if amount is None and raw.get("amount") is not None:
        degrade("invalid_amount", amount=_jsonable(raw.get("amount")))
    close_date = parse_close_date(raw.get("close_date"))
    if close_date is None and raw.get("close_date") is not None:
        degrade("invalid_close_date", close_date=_jsonable(raw.get("close_date")))
    health = parse_health_score(raw.get("health_score"))
    if health is None and raw.get("health_score") is not None:
        degrade("invalid_health_score", health_score=_jsonable(raw.get("health_score")))

    account_name = _text(raw.get("account_name"))
    if raw.get("account_id") is not None and not raw.get("account_found"):
        degrade("account_not_found", account_id=raw.get("account_id"))
    owner_email = _text(raw.get("owner_email"))
    if raw.get("owner_id") is not None and not raw.get("owner_found"):
        degrade("owner_not_found", owner_id=raw.get("owner_id"))

    metadata = build_metadata(raw)
    values = (
        source_id,
        name,
        account_name,
        owner_email,
        _text(raw.get("stage_name")),
        close_date,
        amount,
        health,
        bool(raw.get("is_deleted")),
    )
    row = OpportunityRow(
        gong_opportunity_id=source_id,
        name=name,
        account_name=account_name,
        owner_email=owner_email,
        stage=values[4],
        close_date=close_date,
        amount=amount,
        health_score=health,
        metadata=metadata,
        source_modified_at=raw.get("last_modified"),
        deleted=bool(raw.get("is_deleted")),
        content_hash=content_hash(values, metadata),
    )
    return row, issues


def transform_links(source_rows: Iterable[Mapping[str, Any]]) -> list[LinkRow]:
    """Map link rows; rows without a call or opportunity id cannot link anything."""
    links: dict[tuple[str, str], LinkRow] = {}
    for raw in source_rows:
        call_id, opp_id = _text(raw.get("call_id")), _text(raw.get("object_id"))
        if call_id is None or opp_id is None:
            continue
        links[(call_id, opp_id)] = LinkRow(call_id, opp_id, bool(raw.get("deleted")), raw.get("stamp"))
    return list(links.values())


def parse_amount(value: Any) -> Decimal | None:
    """NUMERIC, FLOAT64 or numeric text to ``numeric(18,2)``; None when not representable."""
    amount = _decimal(value)
    if amount is None or abs(amount) >= _AMOUNT_LIMIT:
        return None
    # Postgres numeric rounds half away from zero; match it so hashes agree with stored values.
    return amount.quantize(_CENTS, rounding=ROUND_HALF_UP)


def parse_close_date(value: Any) -> dt.date | None:
    """DATE, TIMESTAMP (taken in UTC) or ISO text to a date; None for junk or placeholders."""
    result: dt.date | None
    if isinstance(value, dt.datetime):
        result = (value.astimezone(dt.UTC) if value.tzinfo else value).date()
    elif isinstance(value, dt.date):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = dt.date.fromisoformat(text[:10]) if len(text) >= 10 else None
        except ValueError:
            result = None
    else:
        result = None
    if result is None or not _MIN_YEAR <= result.year <= _MAX_YEAR:
        return None
    return result


def parse_health_score(value: Any) -> Decimal | None:
    """A 0-100 score with two decimals; None when absent, not a number, or out of range."""
    # Range-check before rounding: 100.001 is out of range, not 100.00.
    score = _decimal(value)
    if score is None or not Decimal(0) <= score <= Decimal(100):
        return None
    return score.quantize(_CENTS, rounding=ROUND_HALF_UP)


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    try:
        # str() first: Decimal(0.1) would carry the float's binary expansion.
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def build_metadata(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Account details and stage history for the ``metadata`` JSONB column."""
    metadata: dict[str, Any] = {}
    details = raw.get("account_details")
    if isinstance(details, str):
        try:
            parsed = json.loads(details)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            # Fivetran bookkeeping changes on every re-sync; keeping it would make every
            # re-read look like a change.
            # Keys in snake_case whatever spelling the connector landed, so the app reads one shape.
            metadata["account"] = {snake_case(k): v for k, v in sorted(parsed.items()) if not k.startswith("_fivetran")}
    history = raw.get("stage_history")
    if isinstance(history, Sequence) and not isinstance(history, str):
        metadata["stage_history"] = [
            {"stage": _text(h.get("stage")), "changed_at": _iso(h.get("changed_at"))} for h in history if isinstance(h, Mapping)
        ]
    for key in ("account_id", "owner_id"):
        if raw.get(key) is not None:
            metadata[key] = str(raw[key])
    if raw.get("owner_active") is not None:
        metadata["owner_active"] = bool(raw["owner_active"])
    return metadata


def snake_case(name: str) -> str:
    """``BillingCountry`` -> ``billing_country``; snake_case names are unchanged."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def content_hash(values: Sequence[Any], metadata: Mapping[str, Any]) -> bytes:
    """A stable digest of everything we store for a row."""
    canonical = json.dumps([_jsonable(v) for v in values] + [metadata], sort_keys=True, default=str)
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).digest()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    # Postgres text cannot hold NUL; strip it rather than fail the whole COPY.
    text = str(value).replace("\x00", "").strip()
    return text or None


def _has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _iso(value: Any) -> str | None:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return None if value is None else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
