"""`csbsr pretrain-sr | finetune | joint-train`: the paper's three training steps, one engine.

Each command reads a TOML config (``--config``; every key has the paper's default), applies the flags
below on top, validates, and calls :func:`csbsr_cli.train.engine.train`. Under ``torchrun`` the same
command trains with DDP: ``torchrun --nproc-per-node 8 $(which csbsr) joint-train --config run.toml``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from ..errors import InputError
from .common import ModelsDirOption, QuietOption, device_option, overwrite_option, resume_option

if TYPE_CHECKING:
    from ..train.engine import RunResult

console = Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class Flag:
    """One CLI option: its parameter, the config key it overrides (None: a control flag) and its type."""

    param: str
    key: str | None
    annotation: Any
    option: Any
    value: Callable[[Any], Any] | None = None  # converts the option value for the config


def _beta(text: str) -> float | str:
    if text == "increasing":
        return text
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"expected a number in [0, 1] or 'increasing', got {text!r}") from None


def _true_or_none(flag: bool) -> bool | None:
    return True if flag else None


COMMON = (
    Flag(
        "config",
        None,
        Path | None,
        typer.Option(None, "--config", "-c", help="TOML config (see docs/training.md)."),
    ),
    Flag(
        "name",
        "name",
        str | None,
        typer.Option(None, "--name", "-n", help="Run name: runs/<command>/<name>; also the model name."),
    ),
    Flag(
        "init",
        "model.init",
        str | None,
        typer.Option(
            None,
            "--init",
            help="Start model: registry name, model card, finished run folder or weights file (with --arch).",
        ),
    ),
    Flag(
        "arch",
        "model.arch",
        str | None,
        typer.Option(None, "--arch", help="Registry architecture of a weights file given to --init."),
    ),
    Flag(
        "data",
        "data.train",
        list[Path] | None,
        typer.Option(None, "--data", "-d", help="Training folder (repeatable)."),
    ),
    Flag(
        "val",
        "data.val",
        list[Path] | None,
        typer.Option(None, "--val", help="Validation folder (repeatable); default: the split CSV or 5 %."),
    ),
    Flag(
        "split_csv",
        "data.split_csv",
        Path | None,
        typer.Option(None, "--split-csv", help="CSV with stem[,dataset],split columns."),
    ),
    Flag(
        "data_kind",
        "data.kind",
        str | None,
        typer.Option(
            None,
            "--data-kind",
            help="pairs (images/+masks/), khanhha, images or boxes (images/+labels/ YOLO).",
        ),
    ),
    Flag(
        "boxes",
        "data.boxes",
        list[Path] | None,
        typer.Option(None, "--boxes", help="YOLO-box tile folder trained together with --data (repeatable)."),
    ),
    Flag(
        "coco",
        "data.coco",
        list[Path] | None,
        typer.Option(None, "--coco", help="COCO file of corrected masks (segment's coco.json), repeatable."),
    ),
    Flag(
        "coco_images",
        "data.coco_images",
        Path | None,
        typer.Option(None, "--coco-images", help="Folder the COCO file_names are relative to."),
    ),
    Flag(
        "box_val",
        "data.box_val",
        list[Path] | None,
        typer.Option(None, "--box-val", help="YOLO-box tile folder scored at validation (repeatable)."),
    ),
    Flag(
        "iterations",
        "optim.iterations",
        int | None,
        typer.Option(None, "--iterations", help="Optimiser steps."),
    ),
    Flag(
        "batch_size",
        "optim.batch_size",
        int | None,
        typer.Option(None, "--batch-size", help="Per-process batch (paper: 6)."),
    ),
    Flag("lr", "optim.lr", float | None, typer.Option(None, "--lr", help="Adam learning rate.")),
    Flag(
        "crop",
        "data.hr_crop",
        int | None,
        typer.Option(None, "--crop", help="HR training crop (paper: 224)."),
    ),
    Flag("workers", "data.workers", int | None, typer.Option(None, "--workers", help="DataLoader workers.")),
    Flag("seed", "seed", int | None, typer.Option(None, "--seed")),
    Flag("device", "run.device", str | None, device_option(None)),
    Flag("amp", "run.amp", str | None, typer.Option(None, "--amp", help="auto, bf16, fp16 or off.")),
    Flag(
        "compile",
        "run.compile",
        bool,
        typer.Option(False, "--compile", help="torch.compile the model."),
        _true_or_none,
    ),
    Flag(
        "max_minutes",
        "run.max_minutes",
        float | None,
        typer.Option(None, "--max-minutes", help="Stop gracefully after this time (checkpoint + model)."),
    ),
    Flag(
        "runs_dir",
        "run.runs_dir",
        Path | None,
        typer.Option(None, "--runs-dir", help="Parent of runs/<command>/<name> (default: runs)."),
    ),
    Flag("models_dir", "model.models_dirs", list[Path] | None, ModelsDirOption),
    Flag(
        "export_dir",
        "model.export_dir",
        Path | None,
        typer.Option(
            None, "--export-dir", help="Where the trained model's card goes (default: <run>/models)."
        ),
    ),
    Flag(
        "val_every",
        "run.val_every",
        int | None,
        typer.Option(None, "--val-every", help="Validate every N steps (0: only at the end)."),
    ),
    Flag(
        "ckpt_every",
        "run.ckpt_every",
        int | None,
        typer.Option(None, "--ckpt-every", help="Checkpoint every N steps."),
    ),
    Flag(
        "log_every", "run.log_every", int | None, typer.Option(None, "--log-every", help="Log every N steps.")
    ),
    Flag("quiet", "run.progress", bool, QuietOption, lambda f: False if f else None),
    Flag("resume", None, bool, resume_option("Continue runs/<command>/<name> from its last checkpoint.")),
    Flag("overwrite", None, bool, overwrite_option("Replace an existing run directory.")),
)
FINETUNE = (
    Flag(
        "gt_kernel_iters",
        "finetune.gt_kernel_iters",
        int | None,
        typer.Option(None, "--gt-kernel-iters", help="Warm-up steps fed the GT kernel (authors: 10000)."),
    ),
    Flag(
        "kernel_only_iters",
        "finetune.kernel_only_iters",
        int | None,
        typer.Option(
            None,
            "--kernel-only-iters",
            help="Then steps training only the kernel predictors (authors: 10000).",
        ),
    ),
)
JOINT = (
    Flag(
        "beta",
        "joint.beta",
        str | None,
        typer.Option(None, "--beta", help="Task weight in [0, 1], or 'increasing' (0 -> 1)."),
        lambda v: None if v is None else _beta(v),
    ),
    Flag(
        "seg_loss",
        "loss.seg",
        str | None,
        typer.Option(
            None,
            "--seg-loss",
            help="auto (the segmenter's own: focal-iou for SCNet, else bc), bc, gbc, combo, dice, gdice, "
            "wce or focal-iou.",
        ),
    ),
    Flag(
        "no_joint",
        "joint.joint",
        bool,
        typer.Option(False, "--no-joint", help="Keep SR frozen: the paper's 'w/o joint learning'."),
        lambda f: False if f else None,
    ),
    Flag(
        "blur_skip",
        "joint.blur_skip",
        bool,
        typer.Option(False, "--blur-skip", help="Train only a blur-skip branch added to a trained model."),
        _true_or_none,
    ),
)


def run_training(command: str, flags: tuple[Flag, ...], values: dict[str, Any]) -> RunResult:
    """Config file (or the run's saved one on --resume) <- flags -> validated config -> train()."""
    from ..train.config import RunConfig, load, make_config
    from ..train.engine import train
    from ..train.rundir import CONFIG_FILE

    overrides: dict[str, Any] = {}
    for flag in flags:
        if flag.key is None:
            continue
        value = values[flag.param]
        value = flag.value(value) if flag.value else value
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list):
            value = [str(v) for v in value]
        overrides[flag.key] = value
    config_path: Path | None = values["config"]
    if config_path is None and values["resume"]:  # the run's own resolved config
        if "name" not in overrides:
            raise InputError("--resume needs the run's --name (or its --config)")
        run_dir = Path(overrides.get("run.runs_dir", RunConfig.runs_dir)) / command / overrides["name"]
        config_path = run_dir / CONFIG_FILE
        if not config_path.is_file():
            raise InputError("nothing to resume: no run here (start it without --resume)", run_dir)
    if config_path is not None:
        cfg = load(config_path, command, overrides)
    else:
        cfg = make_config(command, None, overrides, source="command line")
    result = train(cfg, resume=values["resume"], overwrite=values["overwrite"])
    _report(result)
    return result


def _report(result: RunResult) -> None:
    if result.model_card is None:  # not rank 0
        return
    how = "finished" if result.status == "completed" else f"stopped at the time limit (step {result.step})"
    console.print(f"{how}: {result.run_dir}")
    if result.validation:
        shown = {k: round(v, 4) for k, v in result.validation.items() if k != "n_images"}
        console.print(f"validation: {shown}")
    console.print(
        f"model {result.model_name!r}: {result.model_card}\n"
        f"use it by name with --models-dir {result.model_card.parent} (or add that folder to $CSBSR_MODELS)"
    )


def _command(command: str, flags: tuple[Flag, ...], doc: str) -> Callable[..., None]:
    """A command function whose signature Typer reads as the flags' options."""

    def command_fn(**values: Any) -> None:
        run_training(command, flags, values)

    command_fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                f.param, inspect.Parameter.KEYWORD_ONLY, default=f.option, annotation=f.annotation
            )
            for f in flags
        ]
    )
    command_fn.__doc__ = doc
    return command_fn


COMMANDS = {
    "pretrain-sr": _command(
        "pretrain-sr",
        COMMON,
        "Step 1: pre-train the SR network alone on unlabelled images (paper: DIV2K+Flickr2K, 200k its, "
        "lr 2e-4).",
    ),
    "finetune": _command(
        "finetune",
        COMMON + FINETUNE,
        "Step 2: fine-tune the SR network alone on the crack images (beta = 0; paper: 30k steps, lr 2e-5).",
    ),
    "joint-train": _command(
        "joint-train",
        COMMON + JOINT,
        "Step 3: train SR and segmentation jointly, L = (1 - beta) L_S + beta L_C (paper: 150k steps, "
        "lr 2e-5).",
    ),
}
