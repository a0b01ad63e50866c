"""Fivetran's webhook signature. Pure.

Fivetran signs the raw request body with HMAC-SHA256 keyed by the webhook's secret and sends the
hex digest in ``X-Fivetran-Signature-256``, with no prefix and no timestamp (seen in upper case;
either case is accepted). Anything else in the header, a ``sha256=`` prefix included, is not a
signature Fivetran makes and is refused. The comparison takes the same time wherever the first
differing byte is.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Fivetran-Signature-256"


def sign(secret: bytes, body: bytes) -> str:
    """The signature Fivetran sends for ``body`` (lower-case hex)."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def is_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of exactly these bytes under ``secret``."""
    if not header or not secret:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().lower().encode())
