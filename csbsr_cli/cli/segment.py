"""`csbsr segment`: super-resolve x4 and segment cracks in images, folders, globs and videos."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer
from rich.console import Console
from rich.table import Table

from ..errors import EXIT_PARTIAL
from ..infer.outputs import DEFAULT_OUTPUTS, OUTPUTS
from ..infer.shard import COUNT_VAR
from ..registry import DEFAULT_MODEL
from ..report.severity import DEFAULT_THRESHOLDS_MM
from ..utils.folders import contained
from .common import (
    ModelsDirOption,
    QuietOption,
    batch_option,
    device_option,
    err_console,
    output_option,
    overwrite_option,
    registry_for,
    resume_option,
)

if TYPE_CHECKING:
    from ..infer.pipeline import RunResult

MAX_FAILURES_SHOWN = 20


def _default_out(inputs: list[str], name: str | None) -> Path:
    stem = name or Path(inputs[0].rstrip("/\\")).stem.strip("*?[]") or "segment"
    return contained(Path("runs") / "segment", stem, "--name")


def _report(result: RunResult, out_dir: Path, console: Console) -> None:
    failed = result.failed
    t = result.timings
    console.print(
        f"{result.processed} frame(s) segmented, {result.resumed} already complete, {len(failed)} failed "
        f"-> {out_dir}  ({t.wall_s:.1f} s; model {t.model_s:.1f} s, tiling {t.tiling_s:.2f} s)"
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", markup=True)
    if failed:
        table = Table("frame", "error", title=f"{len(failed)} input(s) failed (also in summary.csv)")
        for record in failed[:MAX_FAILURES_SHOWN]:
            table.add_row(str(record.get("frame")), str(record.get("error")))
        console.print(table)
        if len(failed) > MAX_FAILURES_SHOWN:
            console.print(f"... and {len(failed) - MAX_FAILURES_SHOWN} more")


def segment_command(
    inputs: list[str] = typer.Argument(
        ..., help="Image or video files, folders (recursive) or quoted globs."
    ),
    output: Path | None = output_option("Run folder (default: runs/segment/<name>)."),
    name: str | None = typer.Option(
        None, "--name", help="Run name for the default folder (default: the first input's name)."
    ),
    model: str = typer.Option(
        DEFAULT_MODEL,
        "-m",
        "--model",
        help="Registry name (`csbsr models list`), a model card .json or a folder holding one.",
    ),
    models_dir: list[Path] = ModelsDirOption,
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Crack where probability > this (default: the model card's).",
    ),
    min_length: float | None = typer.Option(
        None,
        "--min-length",
        min=0.0,
        help="Shape step: drop mask pieces whose skeleton is shorter than this, in input-frame pixels "
        "(default: the model card's; 0 keeps all).",
    ),
    min_elongation: float | None = typer.Option(
        None,
        "--min-elongation",
        min=0.0,
        help="Shape step: drop blob-like pieces, length / mean width below this (default: the card's).",
    ),
    tile: int | None = typer.Option(
        None, "--tile", min=0, help="LR tile side in pixels; 0 = whole frame (default: the model's)."
    ),
    overlap: int | None = typer.Option(
        None,
        "--overlap",
        min=0,
        help="Tile overlap in LR pixels (default: the model card's at its default tile, else 2 x halo "
        "for local models and tile/2 for global-context ones).",
    ),
    batch: int = batch_option("Tiles per forward pass (halved on out-of-memory)."),
    device: str = device_option(),
    precision: Literal["auto", "fp32", "fp16", "bf16"] = typer.Option(
        "auto", "--precision", help="auto = fp16 autocast on CUDA, fp32 on a CPU."
    ),
    backend: Literal["torch", "onnxruntime"] = typer.Option("torch", "--backend", help="Inference engine."),
    onnx: Path | None = typer.Option(
        None,
        "--onnx",
        help="Exported model for --backend onnxruntime (default: where `models export` writes).",
    ),
    require_gpu: bool = typer.Option(False, "--require-gpu", help="Fail instead of running on the CPU."),
    every: int = typer.Option(1, "--every", min=1, help="Videos: segment every N-th frame."),
    ext: list[str] | None = typer.Option(
        None, "--ext", help="Only these extensions in folders and globs (repeat or comma-separate)."
    ),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Search folders recursively."),
    mask_scale: Literal["sr", "input"] = typer.Option(
        "sr", "--mask-scale", help="Mask on the SR or input grid."
    ),
    outputs: str = typer.Option(
        ",".join(DEFAULT_OUTPUTS),
        "--outputs",
        help=f"What to write, comma-separated, of {','.join(OUTPUTS)}: prob = the SR-grid probability map, "
        "prob8 = 8-bit at input scale, sr = the x4 frame, kernel = the blur estimate, video = an mp4 of "
        "the overlays per input video; json always.",
    ),
    prob_format: Literal["png16", "tiff"] = typer.Option(
        "png16", "--prob-format", help="The prob output: 16-bit PNG or float32 TIFF."
    ),
    overlay_on: Literal["input", "sr"] = typer.Option(
        "input", "--overlay-on", help="Draw the overlay on the input frame or on the x4 SR frame."
    ),
    gsd: float | None = typer.Option(
        None,
        "--gsd",
        min=0.0,
        help="Millimetres per input pixel (GSD) of every frame that gets none from --gsd-csv or EXIF: adds "
        "figures in mm and severity classes.",
    ),
    gsd_csv: Path | None = typer.Option(
        None,
        "--gsd-csv",
        help="Per-frame GSD: a CSV with columns frame (the frame's key or its input file's name), gsd_mm.",
        dir_okay=False,
    ),
    sensor_width_mm: float | None = typer.Option(
        None,
        "--sensor-width-mm",
        min=0.001,
        help="Camera sensor width in mm: GSD from each photo's EXIF focal length and XMP RelativeAltitude "
        "(DJI, Autel), nadir view.",
    ),
    severity_mm: str = typer.Option(
        ",".join(str(t) for t in DEFAULT_THRESHOLDS_MM),
        "--severity-mm",
        help="Maximum-width limits in mm between insignificant, moderate and wide cracks "
        "(default: AASHTO MBEI defect 1130).",
    ),
    resume: bool = resume_option("Skip frames whose outputs are complete."),
    overwrite: bool = overwrite_option("Write into a non-empty run folder, replacing files."),
    shard: str | None = typer.Option(
        None,
        "--shard",
        envvar="CSBSR_SHARD",
        help="K/N (0-based) or auto (job-array index): only shard K's inputs, into <output>/shard-K-of-N.",
    ),
    shard_count: int | None = typer.Option(
        None, "--shard-count", envvar=COUNT_VAR, min=1, help="N for --shard auto."
    ),
    quiet: bool = QuietOption,
) -> None:
    """Super-resolve x4 and segment cracks in images, folders, globs and videos.

    Writes mask/, overlay/ and json/ by default (--outputs adds geojson/, prob/, prob8/, sr/, kernel/,
    coco.json, video/), mirroring the input folders, plus summary.csv (per frame; lengths and widths in SR
    pixels, input px x 4), cracks.csv (one row per crack, in input pixels; mm and severity with a GSD) and
    run.json. Every file and column: docs/outputs.md.

    A frame that cannot be read or processed does not stop the batch: it is listed at the end (exit code 3).
    """
    from ..infer.gsd import GsdOptions, read_sidecar
    from ..infer.inputs import count_frames, discover
    from ..infer.outputs import OutputOptions, check_out_dir, parse_outputs
    from ..infer.pipeline import Job, segment
    from ..infer.runner import make_runner, tiling_for
    from ..infer.shape import ShapeRule
    from ..infer.shard import resolve_shard
    from ..report.severity import parse_thresholds
    from ..utils.folders import run_folder
    from ..utils.progress import phase, progress_bar
    from .hooks import SegmentHooks

    spec = registry_for(models_dir).resolve(model)
    run_dir = output or _default_out(inputs, name)
    part = resolve_shard(shard, shard_count)
    out_dir = run_dir / part.folder if part else run_dir
    check_out_dir(out_dir, resume, overwrite)
    sidecar, sidecar_sha256 = read_sidecar(gsd_csv) if gsd_csv is not None else ({}, None)
    severity_limits = parse_thresholds(severity_mm)
    kinds = parse_outputs(outputs)
    extensions = [e for item in ext or [] for e in item.split(",") if e.strip()]
    sources = discover(inputs, recursive=recursive, extensions=extensions, exclude=run_dir)
    if part:
        sources = part.select(sources)
    with phase(err_console, f"loading {spec.name}", disable=quiet):
        runner, info = make_runner(
            spec, backend=backend, device=device, precision=precision, batch=batch, onnx_path=onnx,
            tile=tile, require_gpu=require_gpu,
        )  # fmt: skip
    tile_px, mode, overlap_px = tiling_for(spec, info, tile, overlap)
    options = OutputOptions(
        threshold=spec.threshold if threshold is None else threshold,
        shape=ShapeRule(
            spec.min_length if min_length is None else min_length,
            spec.min_elongation if min_elongation is None else min_elongation,
        ),
        mask_scale=mask_scale,
        prob_format=prob_format, outputs=kinds, overlay_on=overlay_on,
        gsd=GsdOptions(gsd, sidecar_sha256, sensor_width_mm), severity_mm=severity_limits,
    )  # fmt: skip
    job = Job(
        model=spec.name, weights=info.weights, backend=info.backend, precision=info.precision,
        scale=spec.scale, divisor=spec.divisor, tile=tile_px, overlap=overlap_px, mode=mode, options=options,
    )  # fmt: skip
    if spec.weights is None:
        err_console.print(
            f"[bold yellow]warning:[/] model {spec.name!r} has no trained weights: it runs with random "
            "weights and its masks are meaningless (train or import weights; see `csbsr models list`)",
            markup=True,
        )
    tiling = "whole frame" if tile_px == 0 else f"{tile_px} px tiles, overlap {overlap_px}, {mode} stitching"
    err_console.print(
        f"{spec.name} on {info.device} ({info.backend}, {info.precision}); {tiling}; "
        f"threshold {options.threshold}; shape step: min length {options.shape.min_length} px, "
        f"min elongation {options.shape.min_elongation}; {len(sources)} input(s)"
        + (f" (shard {part})" if part else "")
        + f" -> {out_dir}"
    )
    progress = progress_bar(err_console, disable=quiet)
    with run_folder(out_dir), progress:  # one run per folder; a killed run's .part files removed
        hooks = SegmentHooks(progress, err_console, count_frames(sources, every))
        result = segment(
            sources, out_dir, runner, job, batch=batch, every=every, resume=resume, gsd_sidecar=sidecar,
            run_info={
                "device": info.device, "inputs": inputs, "shard": str(part) if part else None,
                "gsd_sidecar": str(gsd_csv) if gsd_csv else None,
            },
            hooks=hooks,
        )  # fmt: skip
    _report(result, out_dir, err_console)
    if result.failed:
        raise typer.Exit(EXIT_PARTIAL)
