"""What one page costs in memory, and whether the function's memory holds it. Pure.

An instance's peak RSS grows with the page: the result slice as the client parsed it, the
transformed rows, their COPY text. ``bench/page_memory.py`` measures a warm instance (``python
-m sync run --until-done``, every import and client loaded) at several page sizes; the peak
fits ``BASE_MIB + MIB_PER_ROW * page_size``. The constants below lie above every point measured,
so the model overstates what a page needs rather than understates it.

That fit holds for rows like the bench's, which carry about :data:`MODELLED_TEXT_CHARS` of text.
A row carries more (an opportunity with years of stage history is JSON text of hundreds of KB)
costs :data:`MIB_PER_TEXT_MIB` more per MiB beyond that (``bench/heavy_pages.py``): the text is
held as the client's raw JSON, as the parsed row, as the stored row's metadata and content
text, and as COPY text. So a page is bounded by bytes as well as rows: the reader ends it once
its rows' :func:`row_mib` add up to :func:`page_budget_mib`, what the function's memory leaves
above the base with :data:`HEADROOM` (``sync/bigquery/slices.py``). Rows like the bench's reach
it exactly at :func:`largest_page`; heavier rows reach it sooner, and a row heavier than the
whole budget is a page of its own.
"""

from __future__ import annotations

import math
import re

# bench/page_memory.py, 2026-12-06, 100k rows with ~500 B of metadata each: peak 153 / 263 / 491 /
# 784 MiB at pages of 2,000 / 10,000 / 25,000 / 50,000 (least squares: 136 MiB + 0.0132 MiB a row).
# The model: 170 / 290 / 515 / 890 MiB.
BASE_MIB = 140.0
MIB_PER_ROW = 0.015
# The text a row of the bench above carries (about 930 characters), and what each MiB of text
# beyond it adds to the peak: above the slope bench/heavy_pages.py measures (bench/README.md).
MODELLED_TEXT_CHARS = 900
MIB_PER_TEXT_MIB = 7.0
#: Memory the function must have beyond the modelled peak: the model is a fit, Python's
#: allocator keeps freed arenas, and a page of long text columns weighs more than the bench's.
HEADROOM = 1.25

# Cloud Functions' available_memory units: M and G are powers of ten, Mi and Gi of two.
_UNITS = {"M": 1000**2, "Mi": 1024**2, "G": 1000**3, "Gi": 1024**3}
_MEMORY_RE = re.compile(r"^([0-9]+)(M|Mi|G|Gi)$")


def parse_memory_mib(text: str) -> float | None:
    """``256M``, ``512Mi``, ``1G``, ``2Gi`` in MiB; None when the text is not one of those forms."""
    match = _MEMORY_RE.match(text)
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)] / 1024**2


def peak_mib(page_size: int) -> float:
    """The modelled peak RSS of an instance reading pages of ``page_size`` rows."""
    return BASE_MIB + MIB_PER_ROW * page_size


def largest_page(memory_mib: float) -> int:
    """The largest page whose modelled peak, with :data:`HEADROOM`, fits ``memory_mib`` (0 if none does)."""
    return max(math.floor((memory_mib / HEADROOM - BASE_MIB) / MIB_PER_ROW), 0)


def row_mib(text_chars: int) -> float:
    """The modelled peak one row adds: the per-row cost, and its text beyond what the bench's rows carried."""
    return MIB_PER_ROW + MIB_PER_TEXT_MIB * max(text_chars - MODELLED_TEXT_CHARS, 0) / 2**20


def page_budget_mib(memory_mib: float | None) -> float | None:
    """What a page's rows may add to the base, with :data:`HEADROOM`; None when no memory is set (the CLI, tests)."""
    if memory_mib is None:
        return None
    return memory_mib / HEADROOM - BASE_MIB
