"""The progress displays of `segment` and `evaluate`: rich bars behind the library's hook classes.

A module of its own, imported when a command runs: the hook classes live beside torch code, and the
command modules must import without torch for `csbsr --help`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID

from .. import evaluation
from ..infer import pipeline


class SegmentHooks(pipeline.Hooks):
    """Frames and the current frame's tiles as two rich progress bars; failures printed as they happen."""

    def __init__(self, progress: Progress, console: Console, total: int) -> None:
        self.progress, self.console = progress, console
        self.frames = progress.add_task("frames", total=total)
        self.tiles = progress.add_task("tiles", total=None, visible=False)

    def frame_started(self, key: str, tiles: int) -> None:
        self.progress.reset(self.tiles, total=tiles, description=f"  {key}", visible=True)

    def tiles_done(self, count: int) -> None:
        self.progress.advance(self.tiles, count)

    def frame_done(self, record: dict[str, Any]) -> None:  # type: ignore[override]
        self.progress.advance(self.frames, 1)
        if record.get("status") != "ok":
            self.console.print(f"[red]failed[/] {record.get('frame')}: {record.get('error')}", markup=True)


class EvaluateHooks(evaluation.Hooks):
    """One progress bar per phase (inference, then metrics)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def start(self, phase: str, total: int) -> None:
        self.tasks[phase] = self.progress.add_task(phase, total=total)

    def advance(self, phase: str) -> None:
        self.progress.advance(self.tasks[phase])
