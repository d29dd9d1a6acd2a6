"""Validation during training: PSNR and the IoU scores on the held-out split, box scores on box tiles; the
metrics package's default preset, so a run's numbers match `csbsr evaluate`'s conventions."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ..infer.device import autocast
from ..metrics import segmentation as segmetrics
from ..metrics.boxes import BoxCounts
from ..metrics.image import psnr
from ..metrics.presets import DEFAULT as METRIC_PRESET

THRESHOLD_05 = int(np.argmin(np.abs(segmetrics.THRESHOLDS - 0.5)))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for one validation pass; the model's mode is restored afterwards, even after an error."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def psnr_per_image(sr: Tensor, hr: Tensor) -> list[float]:
    """Per-image PSNR under the metrics package's default preset (RGB, no crop)."""
    p = METRIC_PRESET
    return [
        psnr(s.transpose(1, 2, 0), h.transpose(1, 2, 0), p.image_channel, p.image_crop, p.image_dtype)
        for s, h in zip(sr.float().cpu().numpy(), hr.float().cpu().numpy(), strict=True)
    ]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, Tensor]],
    device: torch.device,
    dtype: torch.dtype | None,
    segment: bool,
) -> dict[str, float]:
    """PSNR of the clipped SR and, with masks, IoU at 0.5, IoU_max and AIU over the 99 thresholds."""
    psnrs: list[float] = []
    rows: dict[str, list[np.ndarray]] = defaultdict(list)
    with eval_mode(model):
        for batch in loader:
            lr, hr = batch["lr"].to(device), batch["hr"].to(device)
            with autocast(device, dtype):
                if segment:
                    out = model(lr)
                    sr, prob = out.sr, out.prob
                else:
                    sr, prob = model.sr_model(lr).sr.clamp(0, 1), None
            psnrs += psnr_per_image(sr.float(), hr)
            if prob is None or "mask" not in batch:
                continue
            for p, m in zip(prob.float().cpu().numpy(), batch["mask"].numpy(), strict=True):
                tp, fp, fn = segmetrics.confusion_counts(m[0] > 0.5, segmetrics.level_map(p[0]))
                rows["tp"].append(tp)
                rows["fp"].append(fp)
                rows["fn"].append(fn)
                rows["iou"].append(segmetrics.iou(tp, fp, fn, METRIC_PRESET.iou_smooth))
    result = {"psnr": float(np.mean(psnrs)), "n_images": float(len(psnrs))}
    if rows:
        tables = {k: np.stack(v) for k, v in rows.items()}
        summary = segmetrics.dataset_summary(tables["tp"], tables["fp"], tables["fn"], tables["iou"])
        result |= {
            "iou@0.5": float(tables["iou"][:, THRESHOLD_05].mean()),
            "IoU_max": summary["IoU_max"],
            "IoU_max_threshold": summary["IoU_max_threshold"],
            "AIU": summary["AIU"],
        }
    return result


@torch.no_grad()
def evaluate_boxes(
    model: nn.Module,
    loader: Iterable[Mapping[str, Tensor]],
    device: torch.device,
    dtype: torch.dtype | None,
    threshold: float,
) -> dict[str, float]:
    """Box scores (metrics/boxes.py) of whole box-labelled tiles at `threshold`, pooled over the tiles."""
    counts = BoxCounts()
    with eval_mode(model):
        for batch in loader:
            with autocast(device, dtype):
                prob = model(batch["lr"].to(device)).prob
            for p, boxes in zip(prob.float().cpu().numpy(), batch["boxes"].numpy(), strict=True):
                counts.add(segmetrics.level_map(p[0]), boxes[boxes[:, 2] > boxes[:, 0]])
    scores = counts.scores(segmetrics.threshold_index(threshold))
    return {f"val_{k}": v for k, v in scores.items()} | {"box_threshold": threshold}
