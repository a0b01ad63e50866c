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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from sync import encoding

# numeric(18,2): 16 digits before the point.
_AMOUNT_LIMIT = Decimal("1e16")
_CENTS = Decimal("0.01")
# Dates outside this window are placeholders ("0001-01-01", "9999-12-31"), not forecasts.
_MIN_YEAR, _MAX_YEAR = 1900, 2999

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
    metadata_json: str
    source_modified_at: dt.datetime | None
    deleted: bool
    content_hash: bytes
    # The synced values in COPY text form, in _STAGE_COLUMNS order; the hash digests exactly this.
    content_text: str = field(default="", repr=False, compare=False)


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
    get = raw.get
    raw_id, raw_name = get("id"), get("name")
    source_id, name = _text(raw_id), _text(raw_name)
    if source_id is None or name is None:
        missing = "id" if source_id is None else "name"
        return None, [Issue(source_id, "skipped", f"missing_{missing}", {"id": raw_id, "name": raw_name})]

    issues: list[Issue] = []
    if _has_nul(raw_id) or _has_nul(raw_name):
        issues.append(Issue(source_id, "degraded", "nul_character_removed"))
    raw_amount, raw_close, raw_health = get("amount"), get("close_date"), get("health_score")
    amount = parse_amount(raw_amount)
    if amount is None and raw_amount is not None:
        issues.append(Issue(source_id, "degraded", "invalid_amount", {"amount": _jsonable(raw_amount)}))
    close_date = parse_close_date(raw_close)
    if close_date is None and raw_close is not None:
        issues.append(Issue(source_id, "degraded", "invalid_close_date", {"close_date": _jsonable(raw_close)}))
    health = parse_health_score(raw_health)
    if health is None and raw_health is not None:
        issues.append(Issue(source_id, "degraded", "invalid_health_score", {"health_score": _jsonable(raw_health)}))
    if get("account_id") is not None and not get("account_found"):
        issues.append(Issue(source_id, "degraded", "account_not_found", {"account_id": get("account_id")}))
    if get("owner_id") is not None and not get("owner_found"):
        issues.append(Issue(source_id, "degraded", "owner_not_found", {"owner_id": get("owner_id")}))

    account_name, owner_email, stage = _text(get("account_name")), _text(get("owner_email")), _text(get("stage_name"))
    metadata = metadata_json(raw)
    deleted = bool(get("is_deleted"))
    content = content_text(source_id, name, account_name, owner_email, stage, close_date, amount, health, metadata, deleted)
    row = OpportunityRow(
        gong_opportunity_id=source_id,
        name=name,
        account_name=account_name,
        owner_email=owner_email,
        stage=stage,
        close_date=close_date,
        amount=amount,
        health_score=health,
        metadata_json=metadata,
        source_modified_at=get("last_modified"),
        deleted=deleted,
        content_hash=hashlib.blake2b(content.encode("utf-8"), digest_size=16).digest(),
        content_text=content,
    )
    return row, issues


def content_text(
    source_id: str,
    name: str,
    account_name: str | None,
    owner_email: str | None,
    stage: str | None,
    close_date: dt.date | None,
    amount: Decimal | None,
    health: Decimal | None,
    metadata: str,
    deleted: bool,
) -> str:
    """Every synced value in COPY text form: written to Postgres as is, and digested for change detection."""
    t = encoding.text
    return (
        f"{t(source_id)}\t{t(name)}\t{t(account_name)}\t{t(owner_email)}\t{t(stage)}\t"
        f"{close_date.isoformat() if close_date else encoding.NULL}\t{amount if amount is not None else encoding.NULL}\t"
        f"{health if health is not None else encoding.NULL}\t{t(metadata)}\t{'t' if deleted else 'f'}"
    )


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


def metadata_json(raw: Mapping[str, Any]) -> str:
    """The ``metadata`` JSONB text: account details and stage history as BigQuery rendered them.

    Assembled from JSON fragments rather than parsed and re-serialised: per-row JSON work was
    most of the write path's cost (bench/README.md).
    """
    parts: list[str] = []
    details = raw.get("account_details")
    if isinstance(details, str) and details.startswith("{"):
        parts.append(f'"account":{details}')
    history = raw.get("stage_history")
    if isinstance(history, str) and history.startswith("["):
        parts.append(f'"stage_history":{history}')
    parts.extend(
        f'"{key}":{json.dumps(str(raw[key]), ensure_ascii=False)}'
        for key in ("account_id", "owner_id")
        if raw.get(key) is not None
    )
    if raw.get("owner_active") is not None:
        parts.append(f'"owner_active":{"true" if raw["owner_active"] else "false"}')
    text = "{" + ",".join(parts) + "}"
    if "\\u0000" in text:
        # jsonb rejects the NUL escape: drop NULs from every string, the slow but exact way.
        text = json.dumps(_strip_nul(json.loads(text)), ensure_ascii=False, separators=(",", ":"))
    return text


def _json_string(value: str) -> str:
    # Salesforce ids are plain ASCII; skip the encoder for them (a measurable share per row).
    if value.isalnum() and value.isascii():
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=False)


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


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
