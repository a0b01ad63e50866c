"""Tables for the CLI's human output: sized to the terminal, one line per row, long values cut with "…".

Rendering is ``rich``'s; ``main.py`` never imports this module, so the function's cold start
does not pay for it. Every cell passes through :func:`report.printable` first, and is handed to
rich as plain :class:`~rich.text.Text`, so a source value can neither drive the terminal nor be
read as rich markup (``[bold]``).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sync.ops import report

#: The width a table fits when stdout is not a terminal and ``COLUMNS`` is unset.
DEFAULT_WIDTH = 100
#: The most characters one cell shows, even with ``--wide``.
CELL_CAP = 60
_GAP = 2  # spaces between columns


@dataclass(frozen=True)
class Column:
    """One column: the row key it shows, its header, and how it is drawn.

    ``flex``: this column takes whatever width the others leave (at least ``min_width``) and
    cuts its values to fit; ``cap``: the most characters a cell shows; ``show`` turns the
    row's value into the cell's text.
    """

    key: str
    header: str
    justify: Literal["left", "right"] = "left"
    flex: bool = False
    min_width: int = 8
    cap: int = CELL_CAP
    show: Callable[[Any], str] | None = None


def all_columns(rows: Sequence[Mapping[str, Any]]) -> list[Column]:
    """Every key of the rows, headed by its own name: what ``--wide`` shows."""
    return [Column(key, key, "right" if _numeric(rows, key) else "left") for key in (rows[0] if rows else {})]


def render(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], out: TextIO, *, width: int | None) -> None:
    """Print ``rows`` as a table within ``width`` characters (None: as wide as the cells need)."""
    if not rows:
        print("(none)", file=out)
        return
    cells = [[_text(column, row.get(column.key)) for column in columns] for row in rows]
    natural = [max(len(c.header), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, _GAP, 0, 0), header_style="bold")
    for column, size in zip(columns, _widths(columns, natural, width), strict=True):
        table.add_column(column.header, justify=column.justify, no_wrap=True, overflow="ellipsis", width=size)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    _print(table, out, width=width if width is not None else sum(natural) + _GAP * len(natural))


def width_for(out: TextIO, environ: Mapping[str, str] | None = None) -> int:
    """The terminal's width when ``out`` is one; else ``COLUMNS``, else :data:`DEFAULT_WIDTH`."""
    environ = os.environ if environ is None else environ
    if out.isatty():
        try:
            return os.get_terminal_size(out.fileno()).columns
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
    columns = environ.get("COLUMNS", "")
    # isascii too: isdigit() is true for other scripts' digits, which int() would read.
    return int(columns) if columns.isascii() and columns.isdigit() and int(columns) > 0 else DEFAULT_WIDTH


def _widths(columns: Sequence[Column], natural: list[int], width: int | None) -> list[int]:
    """Each column's natural width; a flex column gets what is left of ``width`` (rich squeezes the rest)."""
    if width is None:
        return natural
    fixed = sum(n for c, n in zip(columns, natural, strict=True) if not c.flex) + _GAP * len(columns)
    flexible = [i for i, c in enumerate(columns) if c.flex]
    spare = max(0, width - fixed) // max(1, len(flexible))
    sizes = list(natural)
    for i in flexible:
        sizes[i] = min(natural[i], max(columns[i].min_width, spare))
    return sizes


def _text(column: Column, value: Any) -> str:
    if value is None:
        return "-"
    if column.show is not None:
        text = column.show(value)
    elif isinstance(value, (dict, list)):
        text = json.dumps(report.jsonable(value), default=str)
    else:
        text = str(report.jsonable(value))
    # Escape before cutting, so the width counts what the terminal shows.
    text = report.printable(text)
    return text if len(text) <= column.cap else text[: column.cap - 1] + "…"


def _numeric(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    values = [r.get(key) for r in rows if r.get(key) is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _print(table: Table, out: TextIO, *, width: int) -> None:
    # Rendered to a buffer, then written line by line without the padding rich adds at the
    # end of a line, so piped output carries no trailing blanks.
    buffer = io.StringIO()
    terminal = out.isatty()
    console = Console(file=buffer, width=width, force_terminal=terminal, color_system="standard" if terminal else None)
    console.print(table)
    for line in buffer.getvalue().splitlines():
        print(line.rstrip(), file=out)
