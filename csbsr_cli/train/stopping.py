"""How a run stops early: a signal (finish the step, checkpoint, exit 130) or a non-finite loss (keep the
last good checkpoint)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from ..errors import EXIT_INTERRUPTED, CsbsrError


class TrainingStopped(CsbsrError):
    """Ctrl-C / SIGTERM: the checkpoint was saved; ``--resume`` continues."""

    exit_code = EXIT_INTERRUPTED


class TrainingDiverged(CsbsrError):
    """The loss became NaN or infinite; the last good checkpoint is kept untouched."""


class StopSignals:
    """First Ctrl-C / SIGTERM: finish cleanly at the next step (checkpoint, exit 130). Second: abort."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
