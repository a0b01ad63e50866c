"""Poison rows of issue #9 section 1, planted in generated Fivetran data, and what the app should see then.

Each helper adds one row Postgres cannot store as is and returns how the expected projection
changes, so a test compares every other row exactly.
"""

from __future__ import annotations

import copy
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from projection import COLUMNS, expected_projection

from standins.generator import BASE_TIME, FivetranData

Projection = dict[str, tuple[Any, ...]]

# The earliest stamp in the data: the row lands on page 1 of opportunities or links.
FIRST = (BASE_TIME.replace(year=2026, month=10)).isoformat().replace("+00:00", "Z")


def random_text(n: int, seed: int) -> str:
    """Text that does not compress: Postgres stores it at full size."""
    rnd = random.Random(seed)  # noqa: S311 - reproducible test data
    return "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(n))


@dataclass
class Poisoned:
    """A data set with poison rows, and the projection the app should show."""

    data: FivetranData
    # Source ids (bounded as sync_rejections keeps them) and reasons expected in sync_rejections.
    rejections: set[tuple[str, str, str]] = field(default_factory=set)
    # Stored values the projection does not show: (source id, column, expected value).
    stored: list[tuple[str, str, Any]] = field(default_factory=list)
    _adjust: list[Callable[[Projection], None]] = field(default_factory=list)

    def expected(self) -> Projection:
        projection = expected_projection(self.data)
        for adjust in self._adjust:
            adjust(projection)
        return projection


def _opportunity(data: FivetranData, opp_id: str, **changes: Any) -> dict[str, Any]:
    row = copy.deepcopy(data.rows("opportunity")[1])
    row.update(id=opp_id, name=f"poison {opp_id[:20]}", is_deleted=False, _fivetran_synced=FIRST, **changes)
    data.rows("opportunity").append(row)
    return row


def huge_amount(p: Poisoned) -> str:
    """NUMERIC 9999999999999999.995: rounds to 1e16 and overflows numeric(18,2). Stored, amount NULL."""
    opp_id = "006POISONAMOUNT"
    _opportunity(p.data, opp_id, amount="9999999999999999.995")
    p.rejections.add((opp_id, "degraded", "amount_out_of_range"))
    p.stored.append((opp_id, "amount", None))
    return opp_id


def long_id(p: Poisoned) -> str:
    """An opportunity id of 3,000 characters: beyond any id. Skipped."""
    opp_id = "006" + random_text(2997, seed=1)
    _opportunity(p.data, opp_id)
    p.rejections.add((opp_id[:80] + "… (3000 bytes)", "skipped", "id_too_long"))
    p._adjust.append(lambda projection: projection.pop(opp_id))
    return opp_id


def random_owner_email(p: Poisoned) -> str:
    """A random 5 KB owner email: above idx_opportunities_owner's limit. Stored, owner NULL."""
    opp_id = "006POISONOWNER"
    owner = copy.deepcopy(p.data.rows("user")[0])
    owner.update(id="005POISONOWNER", email=random_text(5000, seed=2) + "@example.com")
    p.data.rows("user").append(owner)
    _opportunity(p.data, opp_id, owner_id=owner["id"])
    p.rejections.add((opp_id, "degraded", "owner_email_too_long"))
    p._adjust.append(lambda projection: _set(projection, opp_id, owner_email=None))
    return opp_id


def random_stage(p: Poisoned) -> str:
    """A random 5 KB stage name: above idx_opportunities_stage's limit. Stored, stage NULL."""
    opp_id = "006POISONSTAGE"
    _opportunity(p.data, opp_id, stage_name=random_text(5000, seed=3))
    p.rejections.add((opp_id, "degraded", "stage_too_long"))
    p._adjust.append(lambda projection: _set(projection, opp_id, stage=None))
    return opp_id


def long_call_id(p: Poisoned) -> str:
    """A 3,000-character call id on the first page of links: above the link keys' limit. Skipped."""
    target = p.data.rows("opportunity")[0]["id"]
    call_id = "call-" + random_text(2995, seed=4)
    link = copy.deepcopy(next(r for r in p.data.rows("call_context_integration") if r["object_id"] == target))
    link.update(call_id=call_id, _fivetran_synced=FIRST)
    p.data.rows("call_context_integration").append(link)
    p.rejections.add((target, "skipped", "call_id_too_long"))
    p._adjust.append(lambda projection: _set(projection, target, calls=tuple(c for c in projection[target][-1] if c != call_id)))
    return call_id


def unsafe_account_column(p: Poisoned) -> str:
    """An optional account column named ``Billing Country-Code``: left out of metadata with a warning."""
    column = "Billing Country-Code"
    p.data.schemas["account"][column] = "STRING"
    for account in p.data.rows("account"):
        account[column] = f"{account['billing_country']}-X"
    return column


EVERY_KIND = (huge_amount, long_id, random_owner_email, random_stage, long_call_id, unsafe_account_column)


def _set(projection: Projection, opp_id: str, **changes: Any) -> None:
    values = dict(zip(COLUMNS, projection[opp_id], strict=True)) | changes
    projection[opp_id] = tuple(values[c] for c in COLUMNS)
