"""Crack figures from a binary mask: pixels, area fraction, skeleton length, maximum and mean width.

Conventions (pixels of the mask's grid; the frame border counts as the crack's edge):
- length: the 8-connected skeleton (scikit-image's ``skeletonize``, Zhang's thinning; OpenCV's
  headless build has no thinning) with unit orthogonal and sqrt(2) diagonal steps (a diagonal step
  beside an orthogonal corner is not counted twice), plus, at each skeleton end, the distance from
  the end to the crack's edge (thinning stops half a width short of each end). A bar of L pixels measures L.
- width at a skeleton pixel: 2 * distance-to-background - 1 (OpenCV's exact Euclidean distance
  transform), plus 1 where the skeleton runs beside an equally deep non-skeleton pixel (even widths,
  whose centre line lies between two pixel rows). Axis-aligned bars measure their width exactly.
- maximum width: over skeleton pixels; mean width: crack pixels / length (area over length).

The mask arrives in row strips (the tiler stitches one tile row at a time) and is measured in chunks
with a margin of rows above and below, so memory stays flat for frames of any height; results equal
whole-mask measurement as long as cracks are narrower than twice the margin.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .skeleton import SkeletonPixels, distance, skeletonize

MARGIN = 64  # rows of context around each chunk: exact for cracks up to 2 * MARGIN pixels wide
CHUNK = 256  # rows measured per step


@dataclass(frozen=True)
class CrackMeasures:
    crack_pixels: int
    crack_area_fraction: float
    length_px: float
    max_width_px: float
    mean_width_px: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class _Totals:
    pixels: int = 0
    length: float = 0.0
    max_width: float = 0.0


def _measure_window(win: np.ndarray, core: slice, top_is_border: bool, bottom_is_border: bool, acc: _Totals):
    """Add the figures of rows `core` of the window `win` (bool) to `acc`; the other rows are context.

    Beyond the distance transform and the skeleton, everything is gathered at the core's skeleton pixels
    only, so memory stays a few window-sized arrays."""
    acc.pixels += int(np.count_nonzero(win[core]))
    if not win[core].any():
        return
    # The frame border bounds the distances; the window's cut edges stay open (context rows cover them).
    dist = distance(win, (top_is_border, bottom_is_border, True))
    skel = np.pad(skeletonize(win), 1)
    ys, xs = np.nonzero(skel[core.start + 1 : core.stop + 1])
    if ys.size == 0:
        return
    pixels = SkeletonPixels(skel, dist, ys + core.start + 1, xs)
    acc.length += float(pixels.lengths().sum())
    acc.max_width = max(acc.max_width, float(pixels.widths(np.pad(win, 1)).max()))


class CrackMeter:
    """Measure a mask fed as consecutive row strips (top to bottom) without holding the whole mask."""

    def __init__(self, height: int, width: int, margin: int = MARGIN, chunk: int = CHUNK) -> None:
        self.height, self.width, self.margin, self.chunk = height, width, margin, chunk
        self._rows: list[np.ndarray] = []
        self._buf_start = 0  # frame row of the first buffered row
        self._buffered = 0
        self._done = 0  # frame rows measured so far
        self._acc = _Totals()

    def feed(self, rows: np.ndarray) -> None:
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"expected mask rows of width {self.width}, got shape {rows.shape}")
        self._rows.append(rows.astype(bool, copy=False))
        self._buffered += rows.shape[0]
        if self._buf_start + self._buffered > self.height:
            raise ValueError(f"more than {self.height} mask rows fed")
        while self._done < self.height and self._available() >= min(
            self._done + self.chunk + self.margin, self.height
        ):
            self._step()

    def _available(self) -> int:
        return self._buf_start + self._buffered

    def _step(self) -> None:
        buf = np.concatenate(self._rows) if len(self._rows) > 1 else self._rows[0]
        end = min(self._done + self.chunk, self.height)
        lo = max(0, self._done - self.margin)
        hi = min(self._available(), end + self.margin)
        win = buf[lo - self._buf_start : hi - self._buf_start]
        core = slice(self._done - lo, end - lo)
        _measure_window(win, core, lo == 0, hi == self.height, self._acc)
        self._done = end
        keep_from = max(0, end - self.margin)
        self._rows = [buf[keep_from - self._buf_start :]]
        self._buffered -= keep_from - self._buf_start
        self._buf_start = keep_from

    def result(self) -> CrackMeasures:
        if self._available() != self.height:
            raise ValueError(f"mask incomplete: {self._available()} of {self.height} rows fed")
        acc = self._acc
        return CrackMeasures(
            crack_pixels=acc.pixels,
            crack_area_fraction=acc.pixels / float(self.height * self.width),
            length_px=round(float(acc.length), 3),
            max_width_px=round(float(acc.max_width), 3),
            mean_width_px=round(float(acc.pixels / acc.length), 3) if acc.length > 0 else 0.0,
        )


def measure_mask(mask: np.ndarray) -> CrackMeasures:
    """Figures of a whole HxW mask (bool or 0/nonzero)."""
    meter = CrackMeter(*mask.shape)
    meter.feed(np.asarray(mask) != 0)
    return meter.result()
