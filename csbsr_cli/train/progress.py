"""The training progress display: a bar on a terminal, plain lines in cluster logs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console

from ..utils.progress import progress_bar

T = TypeVar("T")


class TrainProgress:
    """A Rich progress bar with ETA on a terminal; on a non-terminal (cluster logs), one line per log step."""

    def __init__(self, enabled: bool, total: int, start: int) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True, highlight=False)
        self.live = enabled and self.console.is_terminal
        self.progress = progress_bar(
            self.console, "[bold]{task.description}", disable=not self.live, extra="{task.fields[info]}"
        )
        self.task = self.progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def advance(self, step: int) -> None:
        self.progress.update(self.task, completed=step)

    def note(self, record: dict[str, Any]) -> None:
        keys = [k for k in ("loss", "sr", "seg", "samples_per_s") if k in record]
        info = "  ".join(f"{k} {record[k]:.4g}" for k in keys)
        self.progress.update(self.task, info=info)
        if self.enabled and not self.live:
            self.console.print(f"step {record['step']}: {info}")

    def tracked(self, items: Iterable[T], label: str) -> Iterator[T]:
        """`items` (validation batches) with a bar of their own: the validation after --max-minutes can take
        minutes, and it is shown like the training, on a terminal and in cluster logs."""
        total = len(items) if hasattr(items, "__len__") else None
        if self.enabled and not self.live:
            self.console.print(f"{label}: {total or 'unknown number of'} batches")
        task = self.progress.add_task(label, total=total, info="")
        try:
            for item in items:
                yield item
                self.progress.advance(task)
        finally:
            self.progress.remove_task(task)
