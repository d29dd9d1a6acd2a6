"""Resume checkpoints that load with ``torch.load(weights_only=True)``: nothing is ever unpickled.

A checkpoint is a dict of tensors, numbers, strings and lists only: model, optimiser, scheduler and AMP
scaler state, the step, the best validation score and the resolved config (as TOML text). Random number
states need no saving: every random draw of a run is seeded from (seed, step, micro-batch slot) or
(seed, epoch, sample), so restoring the step restores them (see ``engine.step_seed``). Writes are atomic:
a crash while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..utils.atomic import atomic_path

FORMAT = "csbsr-train-checkpoint/1"
LAST = "last.pt"
BEST = "best.safetensors"


def save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(path: Path) -> dict[str, Any]:
    """Read a resume checkpoint (weights only) onto the CPU; one-line errors for anything else."""
    if not path.is_file():
        raise InputError("no checkpoint to resume from (start without --resume)", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"unreadable checkpoint ({reason[:160]})", path) from None
    except Exception as exc:  # weights_only refuses anything but plain data with UnpicklingError
        raise InputError(
            f"refused: checkpoint holds more than plain data ({type(exc).__name__})", path
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"not a csbsr training checkpoint (expected format {FORMAT})", path)
    return state
