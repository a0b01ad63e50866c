"""Progress for the CLI's long commands: on stderr, and only when stderr is a terminal.

stdout stays the command's own output (a table, JSON, a summary line) whatever happens here;
piped or captured stderr (CI, cron, a log file) gets no progress at all. The display is
``rich.progress``, imported only by the CLI, never by ``main.py``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class Tracker:
    """What a command reports as it goes: a description, and how far it is (of ``total``, when known)."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def update(self, description: str | None = None, *, completed: int | None = None, total: int | None = None) -> None:
        self._progress.update(self._task, description=description, completed=completed, total=total)

    def advance(self, steps: int = 1) -> None:
        self._progress.advance(self._task, steps)


@contextlib.contextmanager
def tracking(description: str, *, total: int | None = None, stream: TextIO | None = None) -> Iterator[Tracker]:
    """A spinner (no ``total``) or a bar (``total`` steps) on ``stream``, gone when the block ends."""
    stream = sys.stderr if stream is None else stream
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    progress = Progress(
        *columns,
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=True,
        disable=not _is_terminal(stream),
    )
    with progress:
        yield Tracker(progress, progress.add_task(description, total=total))


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False
