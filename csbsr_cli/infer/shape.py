"""The shape step: drop connected pieces of a crack mask that are not crack-like.

A concrete pore, a speck of texture or a stain marks a compact blob; a crack marks a long thin piece. Each
8-connected piece is measured as :mod:`.measure` measures cracks (skeleton length with end extensions,
area) and kept only if

- its length >= ``min_length`` (pixels of the mask's grid), and
- its elongation, length / mean width = length^2 / area, >= ``min_elongation`` (a disc scores about 1.3,
  a crack 1 px wide and 10 px long about 10).

Probability maps stay raw; masks and crack figures use the cleaned mask. Plain numpy + OpenCV (no torch or I/O
imports), so the metrics can apply the step too. :func:`shaped_level_map` applies
the step at every threshold of the metric sweep (nested: a pixel counts at threshold s only if its piece
passed at every threshold up to s, so the result is again a level map).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .skeleton import SkeletonPixels, distance, skeletonize


@dataclass(frozen=True)
class ShapeRule:
    min_length: float = 0.0  # pixels of the mask's grid (segment converts from input pixels)
    min_elongation: float = 0.0

    @property
    def active(self) -> bool:
        return self.min_length > 0 or self.min_elongation > 0

    def scaled(self, factor: float) -> ShapeRule:
        """The rule for a grid `factor` times finer: lengths scale, elongation does not."""
        return ShapeRule(self.min_length * factor, self.min_elongation)


@dataclass(frozen=True)
class ShapeReport:
    """What the step removed (for the frame's JSON)."""

    pieces: int
    removed_pieces: int
    removed_pixels: int
    removed_short: int  # pieces shorter than min_length
    removed_blobs: int  # long enough, but not elongated enough

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def pieces(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count including the background, labels, cv2 stats) of the 8-connected pieces of a bool mask."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    return n, labels, stats


def piece_lengths(mask: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """(n,) skeleton length of each labelled piece, by :mod:`.measure`'s convention (label 0 = background)."""
    skel = np.pad(skeletonize(mask), 1)
    ys, xs = np.nonzero(skel)
    if ys.size == 0:
        return np.zeros(n)
    pixels = SkeletonPixels(skel, distance(mask, (False, False, False)), ys, xs)
    return np.bincount(labels[ys - 1, xs - 1], weights=pixels.lengths(), minlength=n)[:n]


def clean_mask(mask: np.ndarray, rule: ShapeRule) -> tuple[np.ndarray, ShapeReport]:
    """The mask without its pieces that fail `rule`, and what was removed."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    n, labels, stats = pieces(mask)
    if n <= 1 or not rule.active:
        return mask, ShapeReport(n - 1, 0, 0, 0, 0)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    length = piece_lengths(mask, labels, n)
    short = length < rule.min_length
    blob = ~short & (length * length < rule.min_elongation * area)
    drop = short | blob
    drop[0] = False
    cleaned = mask & ~drop[labels]
    report = ShapeReport(
        pieces=n - 1,
        removed_pieces=int(drop.sum()),
        removed_pixels=int(area[drop].sum()),
        removed_short=int(short[1:].sum()),
        removed_blobs=int(blob[1:].sum()),
    )
    return cleaned, report


def shaped_level_map(level: np.ndarray, rule: ShapeRule) -> np.ndarray:
    """A level map (see metrics.segmentation.level_map) with the shape step applied at every threshold."""
    if not rule.active:
        return level
    out = np.zeros_like(level)
    alive = np.ones(level.shape, bool)
    for s in range(int(level.max())):
        marked = (level > s) & alive
        if not marked.any():
            break
        alive, _ = clean_mask(marked, rule)
        out[alive] = s + 1
    return out
