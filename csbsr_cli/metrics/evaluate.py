"""Per-image rows of all 99 thresholds, a bounded process-pool driver, and the dataset summary.

An image's row is independent of every other image, so `evaluate_masks` farms images out to worker
processes; results come back in input order. Only a few images are in flight at a time, so a caller
may stream a whole test set through it without holding it in memory.
"""

from __future__ import annotations

import collections
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from csbsr_cli.errors import InputError
from csbsr_cli.infer.shape import ShapeRule, shaped_level_map
from csbsr_cli.metrics import distance, segmentation
from csbsr_cli.metrics.presets import DEFAULT, MetricPreset, hd_label

MaskItem = tuple[str, np.ndarray, np.ndarray]  # (name, GT mask uint8 HxW, probability float HxW)


@dataclass(frozen=True)
class ImageResult:
    """All metrics of one image at every threshold (arrays of length 99, HD as (n_percentiles, 99))."""

    name: str
    preset: str
    height: int
    width: int
    gt_pixels: int  # crack pixels under the preset's segmentation rule (0: crack-free image)
    gt_pixels_hd: int  # crack pixels under the preset's distance rule
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    iou: np.ndarray
    hd: np.ndarray
    msd: np.ndarray
    hd_case: np.ndarray  # distance.BOTH_PRESENT / BOTH_EMPTY / MISSED / FALSE_ALARM per threshold

    @property
    def crack_free(self) -> bool:
        return self.gt_pixels == 0

    @property
    def f1(self) -> np.ndarray:
        return segmentation.f1(self.tp, self.fp, self.fn)

    @property
    def fpr(self) -> np.ndarray:
        return segmentation.false_positive_rate(self.fp, self.height * self.width - self.gt_pixels)


def evaluate_image(
    name: str,
    mask: np.ndarray,
    prob: np.ndarray,
    preset: MetricPreset = DEFAULT,
    shape: ShapeRule | None = None,
) -> ImageResult:
    """Every per-threshold metric of one image under `preset` (the unit of work of a worker process);
    with `shape` (on the map's grid), the predicted masks pass the shape step at every threshold first."""
    try:
        mask = segmentation.as_uint8_mask(mask)
        if np.shape(prob) != mask.shape:
            raise InputError(f"probability map shape {np.shape(prob)} differs from GT mask {mask.shape}")
        level = segmentation.level_map(prob)
    except InputError as err:
        raise InputError(str(err), path=name) from None
    if shape is not None:
        level = shaped_level_map(level, shape)
    gt = mask >= preset.seg_gt_min
    gt_hd = gt if preset.hd_gt_min == preset.seg_gt_min else mask >= preset.hd_gt_min
    tp, fp, fn = segmentation.confusion_counts(gt, level)
    sweep = distance.distance_sweep(
        gt_hd,
        level,
        segmentation.N_THRESHOLDS,
        preset.hd_percentiles,
        distance.one_empty_distance(preset.one_empty, mask.shape),
    )
    return ImageResult(
        name=name,
        preset=preset.name,
        height=mask.shape[0],
        width=mask.shape[1],
        gt_pixels=int(gt.sum()),
        gt_pixels_hd=int(gt_hd.sum()),
        tp=tp,
        fp=fp,
        fn=fn,
        iou=segmentation.iou(tp, fp, fn, preset.iou_smooth),
        hd=sweep.hd,
        msd=sweep.msd,
        hd_case=sweep.case,
    )


def _init_worker() -> None:
    # One OpenCV thread per worker: the workers are the parallelism; oversubscribing the cores slows all.
    cv2.setNumThreads(1)


def _ordered_parallel(
    items: Iterable[MaskItem], preset: MetricPreset, workers: int, window: int, shape: ShapeRule | None
) -> Iterator[ImageResult]:
    ctx = multiprocessing.get_context("spawn")  # safe when the caller holds torch/OpenMP threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
        pending: collections.deque[Future[ImageResult]] = collections.deque()
        try:
            for name, mask, prob in items:
                pending.append(pool.submit(evaluate_image, name, mask, prob, preset, shape))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def evaluate_masks(
    items: Iterable[MaskItem],
    preset: MetricPreset = DEFAULT,
    workers: int = 1,
    on_result: Callable[[ImageResult], None] | None = None,
    shape: ShapeRule | None = None,
) -> list[ImageResult]:
    """Evaluate (name, mask, prob) items, serially or in `workers` processes; results in input order.

    At most 4 images per worker are in flight, so `items` may be a lazy generator over a large set.
    `on_result` is called for each finished image (progress bars). Workers are spawned (not forked,
    which is unsafe once torch has started its thread pools), so a calling script needs the usual
    `if __name__ == "__main__":` guard; the CLI entry point and pytest have it.
    """
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    results = (
        (evaluate_image(name, mask, prob, preset, shape) for name, mask, prob in items)
        if workers == 1
        else _ordered_parallel(items, preset, workers, window=4 * workers, shape=shape)
    )
    out = []
    for result in results:
        if on_result is not None:
            on_result(result)
        out.append(result)
    return out


def _stack(results: Sequence[ImageResult], field: str) -> np.ndarray:
    return np.stack([getattr(r, field) for r in results])


def summarize(results: Sequence[ImageResult], preset: MetricPreset) -> dict[str, Any]:
    """Dataset-level numbers (paper's IoU_max/AIU/HD_min/AHD plus F1/AUPRC/empty-mask accounting)."""
    if not results:
        raise InputError("no images to summarise")
    mixed = {r.preset for r in results} - {preset.name}
    if mixed:
        raise InputError(f"results were computed with preset(s) {sorted(mixed)}, not {preset.name!r}")
    tp, fp, fn, iou_table = (_stack(results, f) for f in ("tp", "fp", "fn", "iou"))
    out: dict[str, Any] = {"preset": preset.name, "n_images": len(results)}
    out.update(segmentation.dataset_summary(tp, fp, fn, iou_table))

    hd = _stack(results, "hd")  # (images, percentiles, thresholds)
    for k, pct in enumerate(preset.hd_percentiles):
        out.update(_min_and_mean(hd[:, k], hd_label(pct)))
    out.update(_min_and_mean(_stack(results, "msd"), "MSD"))

    cases = _stack(results, "hd_case")
    best = segmentation.threshold_index(out["IoU_max_threshold"])
    out["empty_mask_cases"] = {
        "rule_one_empty": preset.one_empty,
        **{
            label: {
                "image_thresholds": int((cases == code).sum()),
                "images": int((cases == code).any(1).sum()),
            }
            for label, code in (
                ("missed", distance.MISSED),
                ("false_alarm", distance.FALSE_ALARM),
                ("both_empty", distance.BOTH_EMPTY),
            )
        },
    }
    free = [r for r in results if r.crack_free]
    fpr_free = np.stack([r.fpr for r in free]) if free else np.zeros((0, segmentation.N_THRESHOLDS))
    out["crack_free"] = {
        "images": len(free),
        "threshold": segmentation.threshold_label(best),
        "FPR_mean": float(fpr_free[:, best].mean()) if free else None,
        "images_with_false_positives": int((fpr_free[:, best] > 0).sum()),
    }
    return out


def _min_and_mean(table: np.ndarray, label: str) -> dict[str, float]:
    """{label}_min over thresholds of the per-threshold mean, and A{label}, the mean of everything."""
    curve = table.mean(axis=0)
    best = int(np.argmin(curve))
    return {
        f"{label}_min": float(curve[best]),
        f"{label}_min_threshold": segmentation.threshold_label(best),
        f"A{label}": float(table.mean()),
    }


def dataset_curves(results: Sequence[ImageResult], preset: MetricPreset) -> dict[str, list[Any]]:
    """Per-threshold dataset curves: IoU, aggregate F1/precision/recall/IoU, HD, MSD, FPR, empty cases."""
    tp, fp, fn, iou_table = (_stack(results, f) for f in ("tp", "fp", "fn", "iou"))
    curves: dict[str, list[Any]] = {"threshold": [segmentation.threshold_label(i) for i in range(len(tp[0]))]}
    curves.update(segmentation.threshold_curves(tp, fp, fn, iou_table))
    hd = _stack(results, "hd")
    for k, pct in enumerate(preset.hd_percentiles):
        curves[f"{hd_label(pct)}_mean"] = hd[:, k].mean(axis=0).tolist()
    curves["MSD_mean"] = _stack(results, "msd").mean(axis=0).tolist()
    cases = _stack(results, "hd_case")
    curves["one_empty_images"] = (
        ((cases == distance.MISSED) | (cases == distance.FALSE_ALARM)).sum(axis=0).tolist()
    )
    free = [r.fpr for r in results if r.crack_free]
    curves["FPR_crack_free_mean"] = np.stack(free).mean(axis=0).tolist() if free else [None] * len(tp[0])
    return curves
