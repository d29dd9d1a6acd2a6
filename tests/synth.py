"""Synthetic crack images for tests: no real data is needed (and none may be shipped)."""

from __future__ import annotations

import cv2
import numpy as np


def make_crack_image(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 HxWx3, mask uint8 HxW in {0, 255}): 1-3 dark random polylines, 1-5 px wide, on concrete-like
    texture (smooth shading plus grain), so blur and resizing have real structure to act on."""
    rng = np.random.default_rng(seed)
    shading = cv2.resize(
        rng.uniform(0.45, 0.7, (4, 4, 1)).repeat(3, 2), (w, h), interpolation=cv2.INTER_CUBIC
    )
    grain = rng.normal(0.0, 0.04, (h, w, 1))
    tint = rng.uniform(0.95, 1.05, 3)
    image = np.clip((shading + grain) * tint, 0.0, 1.0)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        points = np.cumsum(rng.normal(0.0, max(h, w) / 6, (int(rng.integers(3, 7)), 2)), axis=0)
        points += rng.uniform((0, 0), (w, h)) - points.mean(axis=0)
        cv2.polylines(mask, [points.astype(np.int32)], False, 255, int(rng.integers(1, 6)))
    image[mask > 0] *= rng.uniform(0.2, 0.45)
    return (image * 255 + 0.5).astype(np.uint8), mask
