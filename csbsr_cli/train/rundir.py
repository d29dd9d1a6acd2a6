"""A run's folder: runs/<command>/<name>, created or checked for --resume / --overwrite, its metrics log
kept consistent with the checkpoint it resumes from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import InputError
from ..registry import RESULT_FILE
from ..utils.atomic import remove_stale_parts, write_text_atomic
from . import checkpoint
from .config import TrainConfig, check_resume, dumps, load

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
PROBLEMS_FILE = "skipped.txt"


def run_dir_of(cfg: TrainConfig) -> Path:
    return Path(cfg.run.runs_dir) / cfg.command / cfg.name


def prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Rank 0: create / check the run directory; returns the resume checkpoint, if any."""
    if resume:
        saved_path = run_dir / CONFIG_FILE
        if not saved_path.is_file():
            raise InputError("nothing to resume: no run here (start it without --resume)", run_dir)
        check_resume(load(saved_path, cfg.command), cfg, str(saved_path))
        remove_stale_parts(run_dir)  # a killed run's half-written checkpoints and exports
        state = checkpoint.load(run_dir / checkpoint.LAST) if (run_dir / checkpoint.LAST).is_file() else None
        if state is None:
            note(f"{run_dir}: no checkpoint yet (stopped before the first one): resuming from step 0")
        truncate_metrics(run_dir / METRICS_FILE, 0 if state is None else int(state["step"]))
    else:
        if run_dir.exists():
            if not overwrite:
                raise InputError(
                    "run directory exists (use --resume to continue it or --overwrite to replace it)", run_dir
                )
            shutil.rmtree(run_dir)
        state = None
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / CONFIG_FILE, dumps(cfg))
    return state


def note(message: str) -> None:
    Console(stderr=True, highlight=False).print(f"note: {message}", markup=False)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after the checkpoint (a crash between checkpoints), so the log stays consistent;
    a torn line (power loss, full disk mid-write) is dropped with a note."""
    if not path.is_file():
        return
    kept, torn = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            torn += 1
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    if torn:
        note(f"{path}: dropped {torn} torn line(s)")
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


def write_result(run_dir: Path, record: dict[str, Any]) -> None:
    """result.json: how the run ended and the card it exported (`model_card`), which a run folder given as
    a model reference stands for (registry.folder_card)."""
    write_text_atomic(run_dir / RESULT_FILE, json.dumps(record, indent=2) + "\n")
