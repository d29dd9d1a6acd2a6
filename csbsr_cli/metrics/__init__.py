"""Evaluation metrics: threshold-swept IoU/F1/AUPRC, Hausdorff and surface distances, PSNR/SSIM, reports.

Typical use (what `csbsr evaluate` does):

    preset = get_preset("default")
    seg = evaluate_masks(((name, gt_mask, prob) for ...), preset, workers=2)
    quality = [image_quality(name, sr, hr, preset) for ...]
    metrics = write_run(out_dir, preset, seg, quality, metadata={"model": ..., "dataset": ...})
    Console().print(summary_table(metrics))
"""

from csbsr_cli.metrics.distance import surface_distances
from csbsr_cli.metrics.evaluate import ImageResult, dataset_curves, evaluate_image, evaluate_masks, summarize
from csbsr_cli.metrics.image import ImageQuality, image_quality, kernel_psnr, psnr, ssim, summarize_quality
from csbsr_cli.metrics.presets import DEFAULT, PAPER, PRESETS, MetricPreset, get_preset
from csbsr_cli.metrics.report import build_metrics, summary_table, write_run
from csbsr_cli.metrics.segmentation import THRESHOLDS

__all__ = [
    "DEFAULT",
    "PAPER",
    "PRESETS",
    "THRESHOLDS",
    "ImageQuality",
    "ImageResult",
    "MetricPreset",
    "build_metrics",
    "dataset_curves",
    "evaluate_image",
    "evaluate_masks",
    "get_preset",
    "image_quality",
    "kernel_psnr",
    "psnr",
    "ssim",
    "summarize",
    "summarize_quality",
    "summary_table",
    "surface_distances",
    "write_run",
]
