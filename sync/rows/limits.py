"""What Postgres can store, decided before a value reaches it. Pure.

Postgres refuses a whole statement for one value it cannot hold, so the transform checks the
limits it can know in advance (the second line of defence, for causes nobody listed, is
``sync/postgres/isolate.py``):

- **ids**: a source or call id is at most :data:`MAX_ID_BYTES` UTF-8 bytes and holds no NUL
  (text cannot hold one, and dropping it would make another id). Salesforce ids are
  15 or 18 characters and Gong's are about 19 digits; 255 bytes leaves room for any CRM's key
  while every key built from two ids (call links, their staging table, the cursor) stays far
  below the btree limit. A declared limit, so the rule does not move with index layout.
- **btree keys**: an index entry must fit in a third of an 8 KB page, 2,704 bytes for btree
  version 4 (``BTMaxItemSize``), or the insert fails with 54000. :func:`index_tuple_size`
  reproduces ``index_form_tuple`` byte for byte for uncompressed keys (header, null bitmap,
  varlena headers, alignment); ``tests/rows/test_limits.py`` pins it against a real server at the
  exact boundary. Postgres may compress a key above ~512 bytes first, so repetitive text can
  pass that the uncompressed size refuses. We cannot prove what pglz will save, so we are
  conservative: a key is accepted only when its uncompressed size fits. That refuses, say, a
  3 KB run of one character as an owner email; no real email or stage name comes near.
- **numeric(p, s)**: checked **after** rounding to the stored scale, the way Postgres rounds
  (half away from zero): ``9999999999999999.995`` becomes ``1e16`` and overflows
  ``numeric(18,2)``.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

MAX_ID_BYTES = 255
# BTMaxItemSize for 8 KB pages, btree version 4 (PostgreSQL 12 and later).
BTREE_MAX_ITEM_BYTES = 2704
# A character is at most 4 UTF-8 bytes: below this many characters no encoding is needed.
_MAX_UTF8_BYTES_PER_CHAR = 4
# What a rejection record keeps of a refused value.
EXCERPT_CHARS = 80

_MAXALIGN = 8
# IndexTupleData: a 6-byte heap pointer and 2 bytes of t_info.
_INDEX_TUPLE_HEADER = 8
# IndexAttributeBitMapData (INDEX_MAX_KEYS = 32 bits), present only when a key column is NULL.
_INDEX_NULL_BITMAP = 4
# A varlena of up to 126 data bytes gets a 1-byte header and no alignment (VARATT_SHORT_MAX).
_SHORT_VARLENA_MAX = 127
# Beyond this many integer digits no column of ours can hold a number, rounded or not.
_MAX_ROUNDED_DIGITS = 60
# Below this many integer digits, rounding to a few places fits decimal's default 28 digits.
_DEFAULT_CONTEXT_DIGITS = 20
# 1, 0.1, 0.01, ...: what quantize rounds to, for each scale numeric allows up to 16.
_QUANTA = tuple(Decimal(1).scaleb(-scale) for scale in range(17))


class KeyType(enum.Enum):
    """A key column's storage: (typlen, typalign); typlen -1 is a varlena such as text."""

    TEXT = (-1, 4)
    DATE = (4, 4)
    BIGINT = (8, 8)
    TIMESTAMPTZ = (8, 8)


@dataclass(frozen=True)
class BtreeIndex:
    """A btree index's key columns in order, as the migrations declare them."""

    name: str
    columns: tuple[tuple[str, KeyType], ...]

    def tuple_size(self, values: Mapping[str, object]) -> int:
        """The entry's size in bytes, uncompressed; a column absent from ``values`` is NULL."""
        return index_tuple_size([(kind, _stored_length(kind, values.get(column))) for column, kind in self.columns])

    def fits(self, values: Mapping[str, object]) -> bool:
        return self.tuple_size(values) <= BTREE_MAX_ITEM_BYTES


# The indexes whose keys carry synced values. Non-text columns (updated_at, close_date, the
# bigint opportunity id) only matter for their size and alignment, never their value.
OPPORTUNITY_ID_INDEX = BtreeIndex("opportunities_gong_opportunity_id_key", (("gong_opportunity_id", KeyType.TEXT),))
OWNER_INDEX = BtreeIndex("idx_opportunities_owner", (("owner_email", KeyType.TEXT), ("updated_at", KeyType.TIMESTAMPTZ)))
STAGE_INDEX = BtreeIndex("idx_opportunities_stage", (("stage", KeyType.TEXT), ("close_date", KeyType.DATE)))
CALL_LINK_INDEX = BtreeIndex("call_links_pkey", (("gong_opportunity_id", KeyType.TEXT), ("call_id", KeyType.TEXT)))
CALL_OPPORTUNITY_INDEX = BtreeIndex("call_opportunities_pkey", (("call_id", KeyType.TEXT), ("opportunity_id", KeyType.BIGINT)))
INDEXES = (OPPORTUNITY_ID_INDEX, OWNER_INDEX, STAGE_INDEX, CALL_LINK_INDEX, CALL_OPPORTUNITY_INDEX)


def index_tuple_size(key: Sequence[tuple[KeyType, int | None]]) -> int:
    """``MAXALIGN(IndexTupleSize)`` of an entry whose columns hold values of these stored lengths.

    Each element is a column's type and the byte length of its value (for text, the UTF-8
    length without the varlena header), or None for NULL. Mirrors ``index_form_tuple`` and
    ``heap_compute_data_size`` for uncompressed, non-external values.
    """
    has_null = any(length is None for _, length in key)
    offset = _align(_INDEX_TUPLE_HEADER + (_INDEX_NULL_BITMAP if has_null else 0), _MAXALIGN)
    data = 0
    for kind, length in key:
        if length is None:
            continue
        typlen, typalign = kind.value
        if typlen == -1 and length + 1 <= _SHORT_VARLENA_MAX:
            data += 1 + length
        elif typlen == -1:
            data = _align(data, typalign) + 4 + length
        else:
            data = _align(data, typalign) + typlen
    return _align(offset + data, _MAXALIGN)


def utf8_length(value: str) -> int:
    return len(value.encode("utf-8"))


def text_fits(value: str, max_bytes: int) -> bool:
    """Whether ``value`` is at most ``max_bytes`` UTF-8 bytes, without encoding short strings."""
    if len(value) * _MAX_UTF8_BYTES_PER_CHAR <= max_bytes:
        return True
    return len(value) <= max_bytes and utf8_length(value) <= max_bytes


def id_fits(value: str) -> bool:
    return text_fits(value, MAX_ID_BYTES)


@functools.cache
def text_key_limit(index: BtreeIndex, column: str, null_columns: frozenset[str] = frozenset()) -> int:
    """The most UTF-8 bytes text ``column`` may hold in ``index``, other key columns set except ``null_columns``.

    Only for indexes whose other key columns are fixed-width: a second text column would make
    the limit depend on its value.
    """
    key: list[tuple[KeyType, int | None]] = []
    for name, kind in index.columns:
        if name != column and kind is KeyType.TEXT:
            msg = f"index {index.name} has a second text column {name!r}; check it with BtreeIndex.fits"
            raise ValueError(msg)
        key.append((kind, None if name in null_columns else kind.value[0]))
    position = [name for name, _ in index.columns].index(column)
    low, high = 0, BTREE_MAX_ITEM_BYTES
    while low < high:
        mid = (low + high + 1) // 2
        key[position] = (KeyType.TEXT, mid)
        if index_tuple_size(key) <= BTREE_MAX_ITEM_BYTES:
            low = mid
        else:
            high = mid - 1
    return low


def round_half_up(value: Decimal, scale: int) -> Decimal:
    """``value`` rounded to ``scale`` places the way Postgres' numeric rounds: half away from zero.

    A value too large for any column we have is returned unrounded (a range check refuses it):
    rounding it would need a decimal context as wide as its exponent.
    """
    magnitude = value.adjusted()
    if magnitude < _DEFAULT_CONTEXT_DIGITS:
        # Every real amount: the default 28-digit context holds the result (the hot path).
        return value.quantize(_QUANTA[scale], rounding=ROUND_HALF_UP)
    if magnitude > _MAX_ROUNDED_DIGITS:
        return value
    context = Context(prec=magnitude + scale + 2)
    return value.quantize(_QUANTA[scale], rounding=ROUND_HALF_UP, context=context)


def round_numeric(value: Decimal, precision: int, scale: int) -> Decimal | None:
    """``value`` as ``numeric(precision, scale)`` stores it, or None when it would overflow.

    Postgres rounds to the scale first and checks the integer digits of the rounded value,
    so the check must come after rounding: ``9999999999999999.995`` overflows ``numeric(18,2)``.
    """
    if not value.is_finite():
        return None
    rounded = round_half_up(value, scale)
    return rounded if abs(rounded) < Decimal(10) ** (precision - scale) else None


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str | None:
    """A bounded, printable-length excerpt of a refused value for the rejection record."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({utf8_length(text)} bytes)"


def _stored_length(kind: KeyType, value: object) -> int | None:
    if value is None:
        return None
    if kind is KeyType.TEXT:
        return utf8_length(value if isinstance(value, str) else str(value))
    typlen: int = kind.value[0]
    return typlen


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


# ---- checks a stored column declares (sync/rows/stored.py) ---------------------------------------------
# Each is called with a parsed, non-NULL value and returns why it cannot be stored, or None.
# They run for every row, so each answers the common case from a length or a comparison alone.

Check = Callable[[Any], "str | None"]


def id_check(name: str) -> Check:
    """An id is stored exactly as the source holds it, so it must be storable exactly."""
    too_long, contains_nul = f"{name}_too_long", f"{name}_contains_nul"

    def check(value: str) -> str | None:
        if "\x00" in value:
            # Postgres text cannot hold NUL; dropping it would make a different id.
            return contains_nul
        return None if text_fits(value, MAX_ID_BYTES) else too_long

    return check


def text_check(max_bytes: int, reason: str) -> Check:
    """Text that is an index key: at most ``max_bytes`` UTF-8 bytes."""

    def check(value: str) -> str | None:
        return None if text_fits(value, max_bytes) else reason

    return check


def numeric_check(precision: int, scale: int, reason: str) -> Check:
    """A value already rounded to ``scale`` places, checked against ``numeric(precision, scale)``."""
    limit = Decimal(10) ** (precision - scale)

    def check(value: Decimal) -> str | None:
        return None if -limit < value < limit else reason

    return check


SOURCE_ID = id_check("id")
CALL_ID = id_check("call_id")
LINKED_ID = id_check("object_id")
OWNER_EMAIL_MAX_BYTES = text_key_limit(OWNER_INDEX, "owner_email")
# The stage's limit depends on whether close_date, its neighbour in the key, is NULL (2,684 or
# 2,688 bytes). The smaller one is provably safe either way, and keeps one column's limit from
# depending on another's value.
STAGE_MAX_BYTES = min(text_key_limit(STAGE_INDEX, "stage"), text_key_limit(STAGE_INDEX, "stage", frozenset({"close_date"})))
OWNER_EMAIL = text_check(OWNER_EMAIL_MAX_BYTES, "owner_email_too_long")
STAGE = text_check(STAGE_MAX_BYTES, "stage_too_long")
AMOUNT = numeric_check(18, 2, "amount_out_of_range")
