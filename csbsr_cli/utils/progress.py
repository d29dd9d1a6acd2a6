"""The one progress-bar layout every command uses (rich): label, bar, n/total, elapsed, remaining."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(
    console: Console,
    label: str = "{task.description}",
    *,
    disable: bool = False,
    extra: str | None = None,
    transient: bool = False,
) -> Progress:
    """A rich Progress on `console`; `label` and `extra` are TextColumn formats (e.g. "{task.fields[x]}")."""
    columns: list[ProgressColumn] = [
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    if extra is not None:
        columns.append(TextColumn(extra))
    return Progress(*columns, console=console, disable=disable, transient=transient)


@contextmanager
def phase(console: Console, label: str, *, disable: bool = False) -> Iterator[None]:
    """A pulsing bar with the elapsed time while one step of unknown length runs (loading a model, exporting
    it): a phase of seconds or minutes never passes in silence on a terminal. Transient: gone once done,
    and nothing in logs, where an error stays the one line on stderr."""
    progress = progress_bar(console, disable=disable or not console.is_terminal, transient=True)
    with progress:
        progress.add_task(label, total=None)
        yield
