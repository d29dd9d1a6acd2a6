"""Skeleton pixels of a crack mask and the per-pixel figures that :mod:`.measure`, :mod:`.shape` and
:mod:`.instances` add up in their own ways: one place for the length and width conventions (documented in
:mod:`.measure`).

All arrays here are padded with one ring of zeros, so every 8-neighbour gather stays inside them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def skeletonize(mask: np.ndarray) -> np.ndarray:
    """Zhang's thinning (8-connected); scikit-image's, since OpenCV's headless build has none."""
    from skimage.morphology import skeletonize as thin  # lazy: scikit-image costs ~0.6 s to import

    return thin(mask)


def distance(mask: np.ndarray, edges: tuple[bool, bool, bool]) -> np.ndarray:
    """Exact Euclidean distance to the background, padded by one zero ring. ``edges`` = (top, bottom,
    sides): which borders of `mask` count as the crack's edge (OpenCV treats outside as infinitely far)."""
    top, bottom, sides = (int(e) for e in edges)
    padded = np.pad(np.ascontiguousarray(mask, dtype=bool), ((top, bottom), (sides, sides)))
    dist = cv2.distanceTransform(padded.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.pad(dist[top : padded.shape[0] - bottom, sides : padded.shape[1] - sides], 1)


class SkeletonPixels:
    """Chosen skeleton pixels (`ys`, `xs` in padded coordinates) with their 8 neighbourhoods."""

    def __init__(self, skel: np.ndarray, dist: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> None:
        self.skel, self.dist, self.ys, self.xs = skel, dist, ys, xs
        self.steps = {o: self.at(skel, *o) for o in OFFSETS}
        self.d = dist[ys, xs]

    def at(self, arr: np.ndarray, dy: int, dx: int) -> np.ndarray:
        return arr[self.ys + dy, self.xs + dx]

    def links(self, dy: int, dx: int) -> np.ndarray:
        """Whether each pixel's step to (dy, dx) is a skeleton edge: a diagonal step beside an orthogonal
        corner is not one (the path goes through the corner), so no length is counted twice."""
        link = self.steps[(dy, dx)]
        if dy and dx:
            link = link & ~self.steps[(dy, 0)] & ~self.steps[(0, dx)]
        return link

    def neighbours(self) -> np.ndarray:
        """Per pixel, its skeleton-edge neighbour count (1 at an end, 0 for an isolated pixel)."""
        return sum(self.steps[o].astype(np.int32) for o in OFFSETS)

    def lengths(self) -> np.ndarray:
        """Each pixel's share of the skeleton length: its edges right, down-left and down-right, down (each
        edge counted once), plus at an end the distance from it to the crack's edge."""
        step = self.links(0, 1).astype(np.float64) + self.links(1, 0)
        step += math.sqrt(2.0) * (self.links(1, 1).astype(np.float64) + self.links(1, -1))
        n = self.neighbours()
        d = self.d - 0.5
        return step + np.where(n == 1, d, 0.0) + np.where(n == 0, 2.0 * d, 0.0)

    def widths(self, crack: np.ndarray) -> np.ndarray:
        """Crack width at each pixel: 2 * distance - 1, plus 1 on an even width's plateau.

        Even widths: the centre line runs between two rows of equal depth and the skeleton keeps one of
        them. The equally deep neighbour must lie across the skeleton (its offset orthogonal to every
        skeleton step at that pixel), not along it where the skeleton turns. `crack`: the padded mask."""
        plateau = np.zeros(self.ys.size, bool)
        for o in OFFSETS:
            across = self.at(crack, *o) & ~self.steps[o] & (self.at(self.dist, *o) == self.d)
            for step in OFFSETS:
                if o[0] * step[0] + o[1] * step[1] != 0:
                    across &= ~self.steps[step]
            plateau |= across
        return 2.0 * self.d - 1.0 + plateau
