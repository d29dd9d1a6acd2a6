"""Scores of crack predictions against crack boxes (no pixel masks), at every threshold of the sweep.

- box precision: marked pixels inside some box / all marked pixels;
- box recall: boxes whose long side is covered >= `cover` by the marked pixels inside the box projected onto
  it, over all boxes;
- outside rate: marked pixels outside every box / pixels outside every box;
- marked free images: box-free images (windows) with any marked pixel, over all box-free images.

Counts are kept per threshold (the 99 of :mod:`.segmentation`) so one pass scores any threshold; a binary
mask enters as the level map ``mask * N_THRESHOLDS`` (marked at every threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .segmentation import N_THRESHOLDS

COVER = 0.5


def _marked_counts(level: np.ndarray) -> np.ndarray:
    """(99,) pixels marked at each threshold (level > index)."""
    hist = np.bincount(level.ravel(), minlength=N_THRESHOLDS + 1)
    return np.cumsum(hist[::-1])[::-1][1:].astype(np.int64)


@dataclass
class BoxCounts:
    inside_marked: np.ndarray = field(default_factory=lambda: np.zeros(N_THRESHOLDS, np.int64))
    outside_marked: np.ndarray = field(default_factory=lambda: np.zeros(N_THRESHOLDS, np.int64))
    boxes_hit: np.ndarray = field(default_factory=lambda: np.zeros(N_THRESHOLDS, np.int64))
    free_marked: np.ndarray = field(default_factory=lambda: np.zeros(N_THRESHOLDS, np.int64))
    outside_pixels: int = 0
    n_boxes: int = 0
    n_free: int = 0

    def add(self, level: np.ndarray, boxes: np.ndarray, cover: float = COVER) -> None:
        """One image: `level` (H, W) uint8 level map, `boxes` (n, 4) x0, y0, x1, y1 on its grid."""
        h, w = level.shape
        inside = np.zeros((h, w), bool)
        for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
            c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
            c1, r1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
            if c1 <= c0 or r1 <= r0:
                continue
            inside[r0:r1, c0:c1] = True
            part = level[r0:r1, c0:c1]
            along = part.max(0) if c1 - c0 >= r1 - r0 else part.max(1)  # max over the short side
            covered = (along[None, :] > np.arange(N_THRESHOLDS)[:, None]).mean(1)
            self.boxes_hit += covered >= cover
            self.n_boxes += 1
        marked_in = _marked_counts(level[inside])
        marked_out = _marked_counts(level[~inside])
        self.inside_marked += marked_in
        self.outside_marked += marked_out
        self.outside_pixels += int((~inside).sum())
        if not inside.any():
            self.n_free += 1
            self.free_marked += marked_out > 0

    def __iadd__(self, other: BoxCounts) -> BoxCounts:
        for name in ("inside_marked", "outside_marked", "boxes_hit", "free_marked"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.outside_pixels += other.outside_pixels
        self.n_boxes += other.n_boxes
        self.n_free += other.n_free
        return self

    def scores(self, index: int) -> dict[str, float]:
        """The four scores at threshold `index` (NaN where undefined: none marked, no box, no free image)."""
        marked = self.inside_marked[index] + self.outside_marked[index]
        return {
            "box_precision": _ratio(self.inside_marked[index], marked),
            "box_recall": _ratio(self.boxes_hit[index], self.n_boxes),
            "outside_rate": _ratio(self.outside_marked[index], self.outside_pixels),
            "free_marked": _ratio(self.free_marked[index], self.n_free),
        }


def _ratio(count: int, total: int) -> float:
    return float(count / total) if total else float("nan")
