"""`csbsr evaluate`: score a model (or saved probability maps) on a labelled dataset (thin CLI layer)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console

from ..errors import InputError, PartialFailure
from ..metrics.presets import PRESETS
from ..utils.progress import phase, progress_bar
from .common import (
    ModelsDirOption,
    QuietOption,
    batch_option,
    device_option,
    err_console,
    output_option,
    overwrite_option,
    registry_for,
)

console = Console(highlight=False)
MAX_LISTED = 20


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def evaluate_command(
    model: str | None = typer.Argument(
        None,
        help="Registry name (`csbsr models list`), a model card .json or a folder holding one. "
        "Omit with --predictions.",
    ),
    dataset: Path = typer.Option(
        ...,
        "--dataset",
        help="Khanhha folder with test_blured/ (LR as stored), an images/+masks/ folder, or a folder of such "
        "folders (like the dev set).",
    ),
    layout: Literal["auto", "khanhha", "folder"] = typer.Option(
        "auto", "--layout", help="auto: khanhha when a degraded test set (test_blured/gt) is found."
    ),
    split: str | None = typer.Option(
        None, "--split", help="Only this split of the split CSV (folder layout), e.g. val."
    ),
    split_csv: Path | None = typer.Option(
        None,
        "--split-csv",
        help="Split CSV (columns stem, split, optional dataset); default DATASET/split.csv.",
    ),
    lr_dir: Path | None = typer.Option(
        None,
        "--lr-dir",
        help="Folder layout: LR images from a `csbsr degrade` output (lr/ + kernels/) or a folder of LR "
        "images, instead of degrading on the fly.",
    ),
    blur_name: str | None = typer.Option(
        None, "--blur-name", help="Khanhha: degradation folder (default: the only one, e.g. 02_40)."
    ),
    seed: int = typer.Option(5, "--seed", help="Seed of the on-the-fly degradation (as `csbsr degrade`)."),
    padding: Literal["zero", "reflect"] | None = typer.Option(
        None,
        "--padding",
        help="Blur border of the on-the-fly degradation: reflect, as `csbsr degrade` (default), or zero, "
        "as the authors (default with --preset paper).",
    ),
    scale: int | None = typer.Option(
        None, "--scale", min=1, help="Downscaling factor of the LR (default: the model's, 4)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N images."),
    hr: bool = typer.Option(
        False, "--hr", help="Segment the HR images directly: the paper's 'segmentation in HR' upper bound."
    ),
    predictions: Path | None = typer.Option(
        None,
        "--predictions",
        help="Score saved probability maps (<name>.png or .tiff, e.g. an evaluate run's predictions/).",
    ),
    save_predictions: bool = typer.Option(
        False, "--save-predictions", help="Keep the probability maps in OUT/predictions/ (scored as saved)."
    ),
    prob_format: Literal["png16", "tiff"] = typer.Option(
        "png16",
        "--prob-format",
        help="Probability maps: 16-bit PNG (p rounded to 1/65535) or exact float32 TIFF. The model path "
        "scores the stored values, so --predictions gives identical numbers.",
    ),
    preset: str = typer.Option(
        "default",
        "--preset",
        help=f"Metric conventions: {', '.join(PRESETS)} (paper = the authors' code exactly).",
    ),
    batch: int = batch_option("Images per forward pass (equal sizes are batched)."),
    device: str = device_option(note=" (always fp32)"),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Processes computing the metrics (default: CPU count, at most 8)."
    ),
    panels: int = typer.Option(4, "--panels", min=0, help="Side-by-side panels of the first N images."),
    min_length: float = typer.Option(
        0.0,
        "--min-length",
        min=0.0,
        help="Shape step before scoring: drop predicted pieces shorter than this (LR input pixels; "
        "applied at every threshold). 0: off.",
    ),
    min_elongation: float = typer.Option(
        0.0, "--min-elongation", min=0.0, help="Shape step: drop pieces with length / mean width below this."
    ),
    full_tables: bool = typer.Option(
        False, "--full-tables", help="Also write per_image_thresholds.csv (every image x threshold)."
    ),
    output: Path | None = output_option("Run folder (default: runs/evaluate/<model>-<dataset>)."),
    overwrite: bool = overwrite_option("Replace the outputs of an earlier run."),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Leave out unusable images (listed at the end, exit code 3)."
    ),
    models_dir: list[Path] = ModelsDirOption,
    quiet: bool = QuietOption,
) -> None:
    """IoU_max, AIU, HD95_min/AHD95, ODS/OIS F1, AUPRC, PSNR/SSIM and kernel PSNR of a model on a dataset.

    Writes metrics.json (every number with its conventions, model, data and versions), per_image.csv,
    curves.csv, curves.png and panels/ into the run folder, and prints the headline numbers.
    """
    from ..data.evalsets import open_dataset
    from ..evaluation import EvalOptions, prepare_out_dir, run_evaluation
    from ..infer.device import resolve_device
    from ..infer.predictor import Predictor, model_record
    from ..infer.shape import ShapeRule
    from ..metrics import get_preset, summary_table
    from .hooks import EvaluateHooks

    if (model is None) == (predictions is None):
        raise InputError("give a MODEL to run, or --predictions DIR to score saved maps (not both)")
    if predictions is not None and (hr or save_predictions or lr_dir is not None):
        raise InputError("--hr, --save-predictions and --lr-dir need a model, not --predictions")
    if hr and lr_dir is not None:
        raise InputError("--hr segments the HR images: --lr-dir would be unused")
    metric_preset = get_preset(preset)
    spec = None if model is None else registry_for(models_dir).resolve(model)
    data_scale = scale or (4 if spec is None else spec.scale)
    if spec is not None and not hr and spec.scale != data_scale:
        raise InputError(f"model {spec.name!r} upsamples x{spec.scale} but --scale is {data_scale}")
    data = open_dataset(
        dataset, layout, split=split, split_csv=split_csv, lr_dir=lr_dir, blur_name=blur_name, seed=seed,
        scale=data_scale, padding=padding or ("zero" if preset == "paper" else "reflect"), limit=limit,
        skip_bad=skip_bad,
    )  # fmt: skip
    run_name = f"{spec.name if spec else 'predictions'}-{data.root.resolve().name}" + (
        f"-{split}" if split else ""
    )
    out_dir = output or Path("runs") / "evaluate" / run_name
    prepare_out_dir(out_dir, overwrite)
    options = EvalOptions(
        preset=metric_preset, workers=workers or _default_workers(), batch=batch, prob_format=prob_format,
        save_predictions=save_predictions, panels=panels, full_tables=full_tables, skip_bad=skip_bad,
        shape=ShapeRule(min_length, min_elongation),
    )  # fmt: skip

    predictor = None
    metadata = {}
    if spec is not None:
        if spec.weights is None:
            err_console.print(
                f"[bold yellow]warning:[/] model {spec.name!r} has no trained weights: it runs with random "
                "weights and its numbers are meaningless (train or import weights; see `csbsr models list`)",
                markup=True,
            )
        with phase(err_console, f"loading {spec.name}", disable=quiet):
            predictor = Predictor(spec, resolve_device(device), hr_input=hr)
        metadata["model"] = model_record(spec)
    source = "saved maps" if spec is None else f"{spec.name} ({'HR input' if hr else 'LR input'})"
    lr_note = (
        "" if spec is None or hr else ("; LR degraded on the fly" if data.degradation else "; LR as stored")
    )
    err_console.print(
        f"evaluate {source}: {len(data.items)} images of {data.root} ({data.layout}"
        f"{f', split {split}' if split else ''}{lr_note}); preset {metric_preset.name}; "
        f"{options.workers} metric worker(s) -> {out_dir}",
        markup=False,
    )
    progress = progress_bar(err_console, "{task.description:<9}", disable=quiet)
    with progress:
        run = run_evaluation(
            data, out_dir, options, predictor=predictor, predictions=predictions, metadata=metadata,
            hooks=EvaluateHooks(progress),
        )  # fmt: skip

    console.print(summary_table(run.metrics))
    timing = run.metrics["metadata"]["timing"]
    if predictor is not None:
        console.print(
            f"model: {timing['model_images_per_s']:.2f} images/s ({timing['model_seconds']:.1f} s on "
            f"{run.metrics['metadata']['device']}); phase total {timing['inference_seconds']:.1f} s"
        )
    steady = timing["metric_images_per_s_steady"]
    console.print(
        f"metrics: {timing['metric_images_per_s']:.2f} images/s overall ({timing['metric_seconds']:.1f} s, "
        f"{timing['metric_workers']} worker(s))"
        + ("" if steady is None else f", {steady:.2f} images/s after worker start-up")
        + f"; sizes {', '.join(timing['image_sizes'])}"
    )
    console.print(f"run folder: {out_dir}")
    for warning in run.warnings[:MAX_LISTED]:
        err_console.print(f"warning: {warning}", style="yellow", markup=False)
    if run.problems:
        err_console.print("images left out:", style="bold yellow")
        for problem in run.problems[:MAX_LISTED]:
            err_console.print(f"  {problem}", markup=False)
        raise PartialFailure(
            f"{len(run.problems)} image(s) could not be evaluated (see metrics.json 'skipped')"
        )
