"""Run a model (or read saved probability maps) over a labelled dataset and hand the arrays to the metrics
library: the engine behind `csbsr evaluate` (datasets: data/evalsets.py; the model: infer/predictor.py;
saved maps: data/probmaps.py; panels: metrics/panels.py).

Two phases, so that each gets its own honest speed figure and both ways of scoring agree bit for bit:
1. inference: batched forward passes over equal-sized images; every probability map is written to disk in
   the `--save-predictions` format (16-bit PNG, or exact float32 TIFF) and SR quality is measured at once;
2. metrics: `evaluate_masks` in worker processes over (GT mask, saved map) pairs read back from disk.
Scoring saved maps (`--predictions DIR`) is phase 2 alone on the same files read the same way, so it gives
the same numbers as scoring through the model. Memory holds one batch, never the dataset.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data.datasets import Problems, report_problem
from .data.evalsets import EvalDataset, EvalItem, Loaded, load_item, load_mask
from .data.image_io import write_png
from .data.probmaps import (
    PROB_QUANTISATION,
    ProbFormat,
    predictions_folder,
    read_prediction,
    write_prediction,
)
from .errors import InputError
from .infer.device import describe, versions
from .infer.predictor import Predictor, equal_size_batches
from .infer.shape import ShapeRule
from .metrics import (
    ImageQuality,
    ImageResult,
    MetricPreset,
    evaluate_masks,
    image_quality,
    summarize,
    write_run,
)
from .metrics.panels import panel_image
from .metrics.segmentation import threshold_index
from .metrics.timing import PhaseTiming, timing_record


class Hooks:
    """Progress callbacks (the CLI draws bars); the defaults do nothing."""

    def start(self, phase: str, total: int) -> None: ...

    def advance(self, phase: str) -> None: ...


@dataclass(frozen=True)
class EvalOptions:
    preset: MetricPreset
    workers: int = 1
    batch: int = 4
    prob_format: ProbFormat = "png16"
    save_predictions: bool = False
    panels: int = 4
    full_tables: bool = False
    skip_bad: bool = False
    shape: ShapeRule = ShapeRule()  # the shape step, in pixels of the LR input (off by default)


@dataclass
class EvalRun:
    metrics: dict[str, Any]
    problems: list[InputError]
    warnings: list[str]


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to mix two evaluations in one folder unless asked (--overwrite replaces old outputs)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output exists and is not a folder", out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InputError("output folder is not empty: pass --overwrite or choose another -o", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _infer(
    dataset: EvalDataset,
    predictor: Predictor,
    pred_dir: Path,
    options: EvalOptions,
    timing: PhaseTiming,
    problems: Problems | None,
    warnings: list[str],
    hooks: Hooks,
) -> tuple[list[EvalItem], list[ImageQuality], list[tuple[Loaded, np.ndarray | None]]]:
    """Phase 1: predictions written to `pred_dir`; returns the images done, their SR quality, panel data."""
    done: list[EvalItem] = []
    quality: list[ImageQuality] = []
    panels: list[tuple[Loaded, np.ndarray | None]] = []

    def loaded() -> Iterator[Loaded]:
        for item in dataset.items:
            start = time.perf_counter()
            try:
                image = load_item(item, dataset, with_lr=not predictor.hr_input)
            except InputError as exc:
                report_problem(problems, exc)
                hooks.advance("inference")
                continue
            finally:
                timing.load_s += time.perf_counter() - start
            yield image

    for batch in equal_size_batches(loaded(), options.batch, predictor.hr_input):
        inputs = [image.hr if predictor.hr_input else image.lr for image in batch]
        for image, pred in zip(batch, predictor(inputs), strict=True):  # type: ignore[arg-type]
            name = image.item.name
            write_prediction(pred_dir, name, pred.prob, options.prob_format)
            if pred.sr is not None:
                start = time.perf_counter()
                kernel = pred.kernel
                if kernel is not None and image.kernel is not None and kernel.shape != image.kernel.shape:
                    warnings.append(
                        f"kernel PSNR skipped for {name}: GT kernel is {image.kernel.shape}, the model "
                        f"estimates {kernel.shape}"
                    )
                    kernel = None
                quality.append(image_quality(name, pred.sr, image.hr, options.preset, kernel, image.kernel))
                timing.quality_s += time.perf_counter() - start
            if len(panels) < options.panels:
                panels.append((image, pred.sr))
            done.append(image.item)
            hooks.advance("inference")
    return done, quality, panels


def _score(
    items: Sequence[EvalItem],
    dataset: EvalDataset,
    pred_dir: Path,
    options: EvalOptions,
    timing: PhaseTiming,
    problems: Problems | None,
    hooks: Hooks,
) -> list[ImageResult]:
    """Phase 2: every metric of every (mask, saved map) pair, in `options.workers` processes."""

    def pairs() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for item in items:
            try:
                mask = load_mask(item, dataset)
                prob = read_prediction(pred_dir, item.name)
                if prob.shape != mask.shape:
                    raise InputError(
                        f"probability map is {prob.shape[1]}x{prob.shape[0]} but the mask of {item.name} is "
                        f"{mask.shape[1]}x{mask.shape[0]}",
                        pred_dir,
                    )
            except InputError as exc:
                report_problem(problems, exc)
                hooks.advance("metrics")
                continue
            yield item.name, mask, prob

    stamps: list[float] = []

    def on_result(_: ImageResult) -> None:
        stamps.append(time.perf_counter())
        hooks.advance("metrics")

    start = time.perf_counter()
    shape = options.shape.scaled(dataset.scale) if options.shape.active else None
    results = evaluate_masks(pairs(), options.preset, options.workers, on_result=on_result, shape=shape)
    timing.metric_wall_s = time.perf_counter() - start
    if stamps:
        timing.metric_first_result_s = stamps[0] - start
        timing.metric_steady_s = stamps[-1] - stamps[0]
    return results


def run_evaluation(
    dataset: EvalDataset,
    out_dir: Path,
    options: EvalOptions,
    *,
    predictor: Predictor | None = None,
    predictions: Path | None = None,
    metadata: dict[str, Any] | None = None,
    hooks: Hooks | None = None,
) -> EvalRun:
    """Score `predictor` (phase 1 + 2) or the maps in `predictions` (phase 2 only); write the run folder."""
    if (predictor is None) == (predictions is None):
        raise ValueError("give exactly one of predictor and predictions")
    hooks = hooks or Hooks()
    problems: Problems | None = list(dataset.problems) if options.skip_bad else None
    warnings: list[str] = []
    timing = PhaseTiming()
    quality: list[ImageQuality] = []
    panel_data: list[tuple[Loaded, np.ndarray | None]] = []
    items: Sequence[EvalItem] = dataset.items
    saved = out_dir / "predictions"
    with tempfile.TemporaryDirectory(prefix=".predictions-", dir=out_dir) as tmp:
        if predictor is not None:
            pred_dir = saved if options.save_predictions else Path(tmp)
            if options.save_predictions and saved.exists():
                shutil.rmtree(saved)  # an --overwrite: maps of the earlier run must not mix in
            hooks.start("inference", len(items))
            start = time.perf_counter()
            try:
                items, quality, panel_data = _infer(
                    dataset, predictor, pred_dir, options, timing, problems, warnings, hooks
                )
            except BaseException:  # an error or Ctrl-C: no partial set of maps that looks complete
                if options.save_predictions:
                    shutil.rmtree(saved, ignore_errors=True)
                raise
            timing.inference_wall_s = time.perf_counter() - start
        else:
            assert predictions is not None
            pred_dir = predictions_folder(predictions)
        if not items:
            raise InputError("no image could be evaluated", dataset.root)
        hooks.start("metrics", len(items))
        seg = _score(items, dataset, pred_dir, options, timing, problems, hooks)
        if not seg:
            raise InputError("no image could be scored", pred_dir)
        panel_paths = _write_panels(out_dir, dataset, pred_dir, seg, panel_data, options)

    meta = dict(metadata or {})
    meta["dataset"] = dataset.record()
    meta["input"] = "predictions" if predictor is None else ("hr" if predictor.hr_input else "lr")
    meta["predictions"] = {
        "dir": str(pred_dir) if predictor is None or options.save_predictions else None,
        "format": options.prob_format if predictor is not None else "as found",
        "quantisation": PROB_QUANTISATION[options.prob_format] if predictor is not None else None,
    }
    if predictor is not None:
        meta["device"] = describe(predictor.device)
        meta["precision"] = "fp32"
        meta["batch"] = options.batch
    model_time = None if predictor is None else (predictor.seconds, predictor.images)
    meta["timing"] = timing_record(timing, seg, options.workers, model_time)
    meta["versions"] = versions()
    meta["panels"] = [p.relative_to(out_dir).as_posix() for p in panel_paths]
    meta["shape_step"] = {
        "min_length_px_input": options.shape.min_length,
        "min_elongation": options.shape.min_elongation,
    }
    meta["warnings"] = warnings
    meta["skipped"] = [str(p) for p in problems or []]
    metrics = write_run(out_dir, options.preset, seg, quality, meta, full_tables=options.full_tables)
    return EvalRun(metrics, list(problems or []), warnings)


def _write_panels(
    out_dir: Path,
    dataset: EvalDataset,
    pred_dir: Path,
    seg: Sequence[ImageResult],
    panel_data: list[tuple[Loaded, np.ndarray | None]],
    options: EvalOptions,
) -> list[Path]:
    """Panels of the first images, predictions cut at the dataset's IoU_max threshold."""
    if options.panels <= 0:
        return []
    scored = [r.name for r in seg]
    if not panel_data:  # scoring saved maps: no LR or SR to show
        wanted = set(scored[: options.panels])
        panel_data = [
            (load_item(item, dataset, False), None) for item in dataset.items if item.name in wanted
        ]
    best = threshold_index(summarize(seg, options.preset)["IoU_max_threshold"])
    folder = out_dir / "panels"
    if folder.exists():
        shutil.rmtree(folder)
    paths = []
    for image, sr in [p for p in panel_data if p[0].item.name in set(scored)][: options.panels]:
        prob = read_prediction(pred_dir, image.item.name)
        path = folder / f"{image.item.name}.png"
        write_png(path, panel_image(image, sr, prob, best, options.preset))
        paths.append(path)
    return paths
