"""Panels for a glance at an evaluation: LR, SR, HR, GT and the thresholded prediction side by side."""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from ..data.image_io import quantise
from .presets import MetricPreset
from .segmentation import THRESHOLDS


class PanelImages(Protocol):
    """One labelled image's arrays (data/evalsets.Loaded): float [0, 1] images, 8-bit mask levels."""

    hr: np.ndarray
    mask: np.ndarray
    lr: np.ndarray | None


PANEL_HEADER = 18
PANEL_GAP = 4


LEGEND = (("TP", (255, 255, 255)), ("FP", (255, 40, 40)), ("FN", (40, 110, 255)))  # RGB, as drawn


def _legend(width: int) -> np.ndarray:
    """A strip under the panels: the prediction column's colours and what they mean."""
    strip = np.full((PANEL_HEADER, width, 3), 255, np.uint8)
    x = 3
    for name, rgb in LEGEND:
        cv2.rectangle(strip, (x, 3), (x + 11, PANEL_HEADER - 4), rgb, -1)
        cv2.rectangle(strip, (x, 3), (x + 11, PANEL_HEADER - 4), (0, 0, 0), 1)
        cv2.putText(strip, name, (x + 15, PANEL_HEADER - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        x += 50
    return strip


def _label(img: np.ndarray, text: str) -> np.ndarray:
    header = np.full((PANEL_HEADER, img.shape[1], 3), 255, np.uint8)
    cv2.putText(header, text, (3, PANEL_HEADER - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, img])


def panel_image(
    images: PanelImages, sr: np.ndarray | None, prob: np.ndarray, threshold: int, preset: MetricPreset
) -> np.ndarray:
    """LR (nearest), SR, HR, GT and the prediction at `threshold` (TP white, FP red, FN blue) side by side,
    with a colour legend underneath."""
    h, w = images.mask.shape
    columns = []
    if images.lr is not None:
        columns.append(
            ("LR", cv2.resize(quantise(images.lr, np.uint8), (w, h), interpolation=cv2.INTER_NEAREST))
        )
    if sr is not None:
        columns.append(("SR", quantise(sr, np.uint8)))
    columns += [("HR", quantise(images.hr, np.uint8)), ("GT", np.repeat(images.mask[:, :, None], 3, axis=2))]
    gt = images.mask >= preset.seg_gt_min
    pred = prob.astype(np.float32) > THRESHOLDS[threshold]
    colour = np.zeros((h, w, 3), np.uint8)
    colour[gt & pred] = (255, 255, 255)
    colour[~gt & pred] = (255, 40, 40)
    colour[gt & ~pred] = (40, 110, 255)
    columns.append((f"pred > {THRESHOLDS[threshold]:.2f}", colour))
    gap = np.full((h + PANEL_HEADER, PANEL_GAP, 3), 255, np.uint8)
    parts = []
    for label, img in columns:
        parts += [_label(img, label), gap]
    row = np.hstack(parts[:-1])
    return np.vstack([row, _legend(row.shape[1])])
