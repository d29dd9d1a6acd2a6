"""The one progress-bar layout every command uses (rich): label, bar, n/total, elapsed, remaining."""

from __future__ import annotations

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
    console: Console, label: str = "{task.description}", *, disable: bool = False, extra: str | None = None
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
    return Progress(*columns, console=console, disable=disable)
