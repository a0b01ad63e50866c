"""Realistic Fivetran-shaped Salesforce and Gong data, shared by tests, the demo and benchmarks.

What real connectors land and this reproduces: snake_case or API-name columns; batches that
share one ``_fivetran_synced`` stamp (ties); deleted rows; opportunities whose account or
owner is missing; placeholder or non-numeric values; unicode names; history rows; Gong's
one-row-per-CRM-field call links; tables in Fivetran's History Mode (:func:`to_history_mode`).
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

BASE_TIME = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)
STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Proposal", "Negotiation", "Closed Won", "Closed Lost")
_NAMES = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Müller GmbH",
    "Société Générale",
    "東京商事",
    "Ørsted",
    "Zürich Re",
    "O'Brien & Co",
)

# Column types per table, by logical snake_case name.
SCHEMAS: dict[str, dict[str, str]] = {
    "opportunity": {
        "id": "STRING",
        "name": "STRING",
        "account_id": "STRING",
        "owner_id": "STRING",
        "stage_name": "STRING",
        "amount": "NUMERIC",
        "close_date": "DATE",
        "is_deleted": "BOOL",
        "last_modified_date": "TIMESTAMP",
        "system_modstamp": "TIMESTAMP",
        "_fivetran_synced": "TIMESTAMP",
    },
    "account": {
        "id": "STRING",
        "name": "STRING",
        "industry": "STRING",
        "billing_country": "STRING",
        "annual_revenue": "NUMERIC",
        "is_deleted": "BOOL",
        "last_modified_date": "TIMESTAMP",
        "_fivetran_synced": "TIMESTAMP",
    },
    "user": {
        "id": "STRING",
        "email": "STRING",
        "name": "STRING",
        "is_active": "BOOL",
        "last_modified_date": "TIMESTAMP",
        "_fivetran_synced": "TIMESTAMP",
    },
    "opportunity_history": {
        "id": "STRING",
        "opportunity_id": "STRING",
        "stage_name": "STRING",
        "amount": "NUMERIC",
        "close_date": "DATE",
        "created_date": "TIMESTAMP",
        "is_deleted": "BOOL",
        "_fivetran_synced": "TIMESTAMP",
    },
    "gong_opportunity": {"id": "STRING", "name": "STRING", "health_score": "FLOAT64", "_fivetran_synced": "TIMESTAMP"},
    "call_context_integration": {
        "call_id": "STRING",
        "object_type": "STRING",
        "object_id": "STRING",
        "name": "STRING",
        "value": "STRING",
        "_fivetran_deleted": "BOOL",
        "_fivetran_synced": "TIMESTAMP",
    },
}


@dataclass
class FivetranData:
    """Source tables as lists of rows keyed by logical column name."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    schemas: dict[str, dict[str, str]] = field(default_factory=lambda: copy.deepcopy(SCHEMAS))

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables.setdefault(table, [])

    def opportunity(self, opp_id: str) -> dict[str, Any]:
        return next(r for r in self.rows("opportunity") if r["id"] == opp_id)


def generate(
    n: int,
    *,
    seed: int = 7,
    batch_size: int = 500,
    messy: bool = True,
    metadata_bytes: int = 0,
) -> FivetranData:
    """``n`` opportunities with their accounts, owners, history, Gong rows and call links.

    Args:
        n: number of opportunities.
        seed: makes the data reproducible.
        batch_size: rows per Fivetran batch; a batch shares one ``_fivetran_synced``.
        messy: include the bad rows real connectors land (missing names, unknown accounts, ...).
        metadata_bytes: pad each account with a description of about this size.
    """
    rnd = random.Random(seed)
    data = FivetranData()
    n_accounts = max(1, n // 5)
    for i in range(n_accounts):
        data.rows("account").append(
            {
                "id": f"001{i:012d}",
                "name": f"{rnd.choice(_NAMES)} {i}",
                "industry": rnd.choice(["Software", "Banking", "Retail", "Energy"]),
                "billing_country": rnd.choice(["DE", "US", "FR", "JP", "DK"]),
                "annual_revenue": str(Decimal(rnd.randint(10**5, 10**9))),
                "is_deleted": False,
                "last_modified_date": _iso(BASE_TIME - dt.timedelta(days=30)),
                "_fivetran_synced": _iso(BASE_TIME),
            }
        )
        if metadata_bytes:
            data.rows("account")[-1]["description"] = ("lorem ipsum " * (metadata_bytes // 12 + 1))[:metadata_bytes]
    if metadata_bytes:
        data.schemas["account"]["description"] = "STRING"
    n_users = max(2, min(200, n // 10 + 2))
    for i in range(n_users):
        data.rows("user").append(
            {
                "id": f"005{i:012d}",
                "email": f"rep{i}@example.com",
                "name": f"Rep {i}",
                "is_active": i % 7 != 0,  # some reps have left; their deals must keep an owner
                "last_modified_date": _iso(BASE_TIME - dt.timedelta(days=60)),
                "_fivetran_synced": _iso(BASE_TIME),
            }
        )
    for i in range(n):
        stamp = BASE_TIME + dt.timedelta(minutes=i // batch_size)
        opp_id = f"006{i:012d}"
        account_id = f"001{rnd.randrange(n_accounts):012d}"
        owner_id = f"005{rnd.randrange(n_users):012d}"
        amount: str | None = str(Decimal(rnd.randint(1000, 5_000_000)) / 100)
        close: str | None = (BASE_TIME.date() + dt.timedelta(days=rnd.randint(-90, 180))).isoformat()
        name: str | None = f"{rnd.choice(_NAMES)} – renewal {i}"
        deleted = False
        if messy:
            roll = rnd.random()
            if roll < 0.005:
                name = None  # skipped and counted
            elif roll < 0.025:
                account_id = f"001MISSING{i:06d}"  # account never landed
            elif roll < 0.045:
                owner_id = f"005MISSING{i:06d}"  # owner never landed
            elif roll < 0.055:
                close = "0001-01-01"  # Salesforce placeholder date
            elif roll < 0.065:
                amount = None
            elif roll < 0.085:
                deleted = True
        stage = rnd.choice(STAGES)
        data.rows("opportunity").append(
            {
                "id": opp_id,
                "name": name,
                "account_id": account_id,
                "owner_id": owner_id,
                "stage_name": stage,
                "amount": amount,
                "close_date": close,
                "is_deleted": deleted,
                "last_modified_date": _iso(stamp - dt.timedelta(minutes=5)),
                "system_modstamp": _iso(stamp - dt.timedelta(minutes=5)),
                "_fivetran_synced": _iso(stamp),
            }
        )
        for h, hist_stage in enumerate(STAGES[: rnd.randint(1, 3)]):
            data.rows("opportunity_history").append(
                {
                    "id": f"008{i:010d}{h:02d}",
                    "opportunity_id": opp_id,
                    "stage_name": hist_stage,
                    "amount": amount,
                    "close_date": close,
                    "created_date": _iso(BASE_TIME - dt.timedelta(days=30 - h)),
                    "is_deleted": False,
                    "_fivetran_synced": _iso(stamp),
                }
            )
        score: float | None = round(rnd.uniform(0, 100), 2)
        if messy and rnd.random() < 0.01:
            score = rnd.choice([-5.0, 140.0])  # out of range: stored as NULL with a warning
        data.rows("gong_opportunity").append({"id": opp_id, "name": name, "health_score": score, "_fivetran_synced": _iso(stamp)})
        if i % 3 == 0:
            call_id = f"call-{i:08d}"
            for field_name in ("Name", "StageName"):
                data.rows("call_context_integration").append(
                    {
                        "call_id": call_id,
                        "object_type": "Opportunity",
                        "object_id": opp_id,
                        "name": field_name,
                        "value": stage,
                        "_fivetran_deleted": False,
                        "_fivetran_synced": _iso(stamp),
                    }
                )
    # A call whose opportunity never lands: it must link nothing.
    data.rows("call_context_integration").append(
        {
            "call_id": "call-orphan",
            "object_type": "Opportunity",
            "object_id": "006DOESNOTEXIST",
            "name": "Name",
            "value": "x",
            "_fivetran_deleted": False,
            "_fivetran_synced": _iso(BASE_TIME),
        }
    )
    return data


# Fivetran's _fivetran_end for the current version of a record in History Mode.
OPEN_END = "9999-12-31T23:59:59.999Z"
HISTORY_COLUMNS = {"_fivetran_active": "BOOL", "_fivetran_start": "TIMESTAMP", "_fivetran_end": "TIMESTAMP"}


def to_history_mode(data: FivetranData, *tables: str) -> FivetranData:
    """Land these tables as Fivetran's History Mode does: each id has one version so far, active.

    A version starts at the source's own modification time, as Fivetran's ``_fivetran_start`` does.
    """
    for table in tables:
        data.schemas[table].update(HISTORY_COLUMNS)
        for row in data.rows(table):
            start = row.get("last_modified_date") or row.get("created_date") or row["_fivetran_synced"]
            row.update(_fivetran_active=True, _fivetran_start=start, _fivetran_end=OPEN_END)
    return data


def pascal_case(name: str) -> str:
    """Salesforce API spelling of a snake_case column (``stage_name`` -> ``StageName``)."""
    if name.startswith("_"):
        return name
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
