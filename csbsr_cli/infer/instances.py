"""Crack instances: each 8-connected piece of the final mask is one crack, with its skeleton polylines and
figures in pixels of the input frame (the image the user gave), so one real crack can be told from specks.

Figures follow :mod:`.measure` (length along the skeleton with end extensions, width 2 * distance - 1,
mean width = area / length, the frame border counts as the crack's edge), measured on the mask's grid (the
SR grid) and divided by the scale. Coordinates: x right, y down, in input pixels from the frame's top-left
corner; pixel (row i, column j) covers [j, j + 1) x [i, i + 1), so an SR pixel's centre lands at
((col + 0.5) / scale, (row + 0.5) / scale), always inside the frame.

Polylines follow the skeleton's edges (the steps :mod:`.skeleton` counts in the length) between ends and
junctions, so a branching crack gives several; a closed loop repeats its first point. They stop where the
skeleton stops, about half a width short of each end, and keep one point every `scale` skeleton pixels
(about one per input pixel) plus the last; the width profile is the width at each kept point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .shape import pieces
from .skeleton import OFFSETS, SkeletonPixels, distance, skeletonize

DECIMALS = 3
STATS = (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA)
FIGURES = {  # per-crack figure in input pixels -> (its name in mm, power of the GSD)
    "length_px_input": ("length_mm", 1),
    "mean_width_px_input": ("mean_width_mm", 1),
    "max_width_px_input": ("max_width_mm", 1),
    "area_px_input": ("area_mm2", 2),
}


@dataclass(frozen=True)
class Crack:
    crack_id: int  # the piece's label: pieces numbered in raster order of their first pixel, from 1
    area_px_input: float
    length_px_input: float
    mean_width_px_input: float
    max_width_px_input: float
    bbox_px_input: tuple[int, int, int, int]  # x, y, width, height of the input pixels the crack touches
    polylines: list[list[tuple[float, float]]]  # (x, y) points, input pixels
    width_profiles_px_input: list[list[float]]  # the width at each polyline point
    # The input pixels it covers (those whose SR block holds any of its pixels), cropped to its bbox.
    mask_px_input: np.ndarray = field(compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "crack_id": self.crack_id,
            **{name: getattr(self, name) for name in FIGURES},
            "bbox_px_input": list(self.bbox_px_input),
            "polylines": [[list(p) for p in line] for line in self.polylines],
            "width_profiles_px_input": self.width_profiles_px_input,
        }


def with_mm(crack: dict[str, Any], gsd_mm: float | None) -> dict[str, Any]:
    """`crack` (as_dict) plus its figures in mm (area in mm^2), given mm per input pixel."""
    if gsd_mm is None:
        return dict(crack)
    mm = {mm: round(float(crack[px]) * gsd_mm**power, DECIMALS) for px, (mm, power) in FIGURES.items()}
    return {**crack, **mm}


def _neighbours(pixels: SkeletonPixels) -> list[list[int]]:
    """Per skeleton pixel, the indices of the pixels it shares a skeleton edge with."""
    index = np.full(pixels.skel.shape, -1, np.int64)
    index[pixels.ys, pixels.xs] = np.arange(pixels.ys.size)
    out: list[list[int]] = [[] for _ in range(pixels.ys.size)]
    for dy, dx in OFFSETS:
        src = np.nonzero(pixels.links(dy, dx))[0]
        dst = index[pixels.ys[src] + dy, pixels.xs[src] + dx]
        for a, b in zip(src.tolist(), dst.tolist(), strict=True):
            out[a].append(b)
    return out


def trace(neighbours: list[list[int]]) -> list[list[int]]:
    """Split a pixel graph into paths that use every edge once: from each end or junction (not 2 edges)
    along chains of 2-edge pixels to the next; then the closed loops left; isolated pixels alone."""
    used: set[tuple[int, int]] = set()
    paths: list[list[int]] = []

    def take(a: int, b: int) -> bool:
        edge = (min(a, b), max(a, b))
        if edge in used:
            return False
        used.add(edge)
        return True

    def walk(start: int, step: int) -> list[int]:
        path, prev, cur = [start], start, step
        while True:
            path.append(cur)
            if len(neighbours[cur]) != 2 or cur == start:
                return path
            a, b = neighbours[cur]
            nxt = b if a == prev else a
            if not take(cur, nxt):
                return path
            prev, cur = cur, nxt

    for loops in (False, True):
        for i, near in enumerate(neighbours):
            if not near and not loops:
                paths.append([i])
            elif (len(near) == 2) == loops:
                paths.extend(walk(i, j) for j in near if take(i, j))
    return paths


def find_cracks(mask: np.ndarray, scale: int) -> list[Crack]:
    """The crack instances of a bool mask on a grid `scale` times finer than the input frame."""
    if mask.shape[0] % scale or mask.shape[1] % scale:
        raise ValueError(f"a {mask.shape} mask is not an x{scale} grid")
    mask = np.ascontiguousarray(mask, dtype=bool)
    n, labels, stats = pieces(mask)
    if n <= 1:
        return []
    skel = np.pad(skeletonize(mask), 1)
    ys, xs = np.nonzero(skel)
    pixels = SkeletonPixels(skel, distance(mask, (True, True, True)), ys, xs)
    label = labels[ys - 1, xs - 1]
    length = np.bincount(label, weights=pixels.lengths(), minlength=n).tolist()
    width = pixels.widths(np.pad(mask, 1))
    max_width = np.zeros(n)
    np.maximum.at(max_width, label, width)
    lines: list[list[list[tuple[float, float]]]] = [[] for _ in range(n)]
    profiles: list[list[list[float]]] = [[] for _ in range(n)]
    for path in trace(_neighbours(pixels)):
        kept = np.array(path[::scale] + ([path[-1]] if (len(path) - 1) % scale else []))
        px, py = (xs[kept] - 0.5) / scale, (ys[kept] - 0.5) / scale  # padded index - 1 + 0.5
        lines[label[path[0]]].append(list(zip(_r(px), _r(py), strict=True)))
        profiles[label[path[0]]].append(_r(width[kept] / scale))
    cracks = []
    for k in range(1, n):
        x, y, w, h, area = (int(stats[k, c]) for c in STATS)
        x0, y0 = x // scale, y // scale
        box = (x0, y0, -(-(x + w) // scale) - x0, -(-(y + h) // scale) - y0)
        blocks = labels[y0 * scale : (y0 + box[3]) * scale, x0 * scale : (x0 + box[2]) * scale] == k
        cracks.append(
            Crack(
                crack_id=k,
                area_px_input=round(area / scale**2, DECIMALS),
                length_px_input=round(length[k] / scale, DECIMALS),
                mean_width_px_input=round(area / length[k] / scale, DECIMALS) if length[k] > 0 else 0.0,
                max_width_px_input=round(float(max_width[k]) / scale, DECIMALS),
                bbox_px_input=box,
                polylines=lines[k],
                width_profiles_px_input=profiles[k],
                mask_px_input=blocks.reshape(box[3], scale, box[2], scale).any(axis=(1, 3)),
            )
        )
    return cracks


def _r(values: np.ndarray) -> list[float]:
    return np.round(values.astype(np.float64), DECIMALS).tolist()
