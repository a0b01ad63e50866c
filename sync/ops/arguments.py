"""Argument types the commands share, so every ``--limit`` refuses the same slips the same way."""

from __future__ import annotations

import argparse
import re

_COUNT_RE = re.compile(r"^[0-9]+$")


def count(text: str) -> int:
    """A ``--limit``: a whole number of at least 1, in the digits 0-9.

    0 is refused rather than read as "none" or "no limit": ``runs --limit 0`` would show an empty
    table and ``dead-letters --replay --limit 0`` would replay nothing, neither of which anyone asks
    for on purpose, and a negative number reached Postgres as ``LIMIT -1`` and came back as its
    raw error. argparse turns the refusal into a usage error (exit 2) naming the option.
    """
    if not _COUNT_RE.match(text) or int(text) < 1:
        msg = f"must be a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)
