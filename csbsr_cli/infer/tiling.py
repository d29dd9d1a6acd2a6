"""Tiling a frame into fixed-size LR windows and stitching their x`scale` outputs back, strip by strip.

One window layout serves both stitching modes: windows of `tile` pixels every `tile - overlap` pixels,
the last one shifted inward so every window is full size (one shape for batching and for fixed-shape
ONNX models); a frame smaller than a tile is reflect-padded up to it and the outputs are cropped back.

- ``crop``: each window owns the pixels up to the middle of its overlaps and only those are kept, so a
  window's kept pixels are at least ``overlap // 2`` pixels from its cut edges. For a model whose output
  is local with receptive radius <= that halo, the stitched result equals whole-image inference (up to
  float rounding): the registry's ``halo`` gives the radius. Also exact for split/merge round trips.
- ``blend``: for models with global context (the KBPN kernel estimate and PSPNet's pyramid pooling
  average over the whole input) no tiling is exact; overlapping windows are averaged with a Gaussian
  importance map (as MONAI's ``sliding_window_inference``: sigma = 0.125 * window, floor 1e-3), which
  hides the seams where a window's context is cut.

The stitcher works on the SR grid and holds one row of windows at a time: finished rows are handed to a
callback as strips (float32, channels first), so memory grows with the frame width, never its height.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError

StitchMode = Literal["crop", "blend"]
GAUSSIAN_SIGMA = 0.125  # times the window size, as MONAI
GAUSSIAN_FLOOR = 1e-3  # weights never vanish, so the frame border (one window) stays well defined


@dataclass(frozen=True)
class AxisPlan:
    """Window starts along one axis and the [a, b) range each window owns in crop mode."""

    starts: tuple[int, ...]
    cuts: tuple[tuple[int, int], ...]


def plan_axis(length: int, tile: int, overlap: int) -> AxisPlan:
    """Windows of `tile` every `tile - overlap`, the last shifted inward; `length` must be >= `tile`."""
    if length < tile:
        raise ValueError(f"axis of {length} px is shorter than the tile ({tile} px): pad it first")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    starts = tuple(min(i * stride, length - tile) for i in range(count))
    bounds = [0] + [(starts[i - 1] + tile + starts[i]) // 2 for i in range(1, count)] + [length]
    return AxisPlan(starts, tuple(zip(bounds[:-1], bounds[1:], strict=True)))


@dataclass(frozen=True)
class TilePlan:
    """Where the windows of one frame are (LR pixels) and how their outputs are stitched."""

    height: int  # the frame's size
    width: int
    padded_height: int  # after reflect padding (frames smaller than a tile; whole-frame divisor padding)
    padded_width: int
    tile_h: int
    tile_w: int
    overlap: int
    scale: int
    mode: StitchMode
    rows: AxisPlan
    cols: AxisPlan

    @property
    def n_tiles(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    @property
    def grid(self) -> tuple[int, int]:
        return len(self.rows.starts), len(self.cols.starts)

    def window(self, index: int) -> tuple[int, int]:
        """(y0, x0) of window `index` (row-major) in LR pixels."""
        r, c = divmod(index, len(self.cols.starts))
        return self.rows.starts[r], self.cols.starts[c]

    @property
    def out_size(self) -> tuple[int, int]:
        return self.height * self.scale, self.width * self.scale


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def make_plan(
    height: int, width: int, *, tile: int, overlap: int, scale: int, mode: StitchMode, divisor: int = 1
) -> TilePlan:
    """The plan for an `height` x `width` frame; `tile=0` is one whole-frame window padded to `divisor`."""
    if height < 1 or width < 1:
        raise InputError(f"empty frame ({width}x{height})")
    if tile == 0:
        ph, pw = _round_up(height, divisor), _round_up(width, divisor)
        return TilePlan(
            height, width, ph, pw, ph, pw, 0, scale, "crop", plan_axis(ph, ph, 0), plan_axis(pw, pw, 0)
        )
    if tile % divisor:
        raise InputError(f"--tile {tile} is not a multiple of the model's divisor {divisor}")
    if not 0 <= overlap < tile:
        raise InputError(f"--overlap {overlap} must be at least 0 and smaller than --tile {tile}")
    ph, pw = max(height, tile), max(width, tile)
    return TilePlan(
        height,
        width,
        ph,
        pw,
        tile,
        tile,
        overlap,
        scale,
        mode,
        plan_axis(ph, tile, overlap),
        plan_axis(pw, tile, overlap),
    )


def pad_frame(image: np.ndarray, plan: TilePlan) -> np.ndarray:
    """HxWxC frame reflect-padded at the bottom/right to the plan's padded size (numpy repeats the
    reflection when the pad exceeds the frame, so tiny frames work too)."""
    pad_h, pad_w = plan.padded_height - image.shape[0], plan.padded_width - image.shape[1]
    if pad_h == 0 and pad_w == 0:
        return image
    return np.pad(
        image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect" if min(image.shape[:2]) > 1 else "edge"
    )


def iter_batches(frame: Tensor, plan: TilePlan, batch: int) -> Iterator[tuple[range, Tensor]]:
    """(tile indices, (B, C, tile_h, tile_w) tensor) for a padded (C, H, W) frame, in row-major order."""
    for first in range(0, plan.n_tiles, batch):
        indices = range(first, min(first + batch, plan.n_tiles))
        windows = [plan.window(i) for i in indices]
        yield indices, torch.stack([frame[:, y : y + plan.tile_h, x : x + plan.tile_w] for y, x in windows])


def gaussian_window(size: int) -> np.ndarray:
    """1-D importance weights of one window side: Gaussian, peak 1, floored (the 2-D map is their product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * (x / (GAUSSIAN_SIGMA * size)) ** 2)
    return np.maximum(g / g.max(), GAUSSIAN_FLOOR).astype(np.float32)


StripCallback = Callable[[int, dict[str, np.ndarray]], None]


class Stitcher:
    """Accumulate window outputs (row-major order) on the SR grid; hand finished rows to `on_strip`.

    `channels` names the outputs and their channel counts, e.g. {"prob": 1, "sr": 3}. `on_strip(y, arrays)`
    receives SR rows [y, y + h) of the frame (cropped to the frame, float32, channels first) and owns them.
    The canvas is numpy: these small per-tile operations run single-threaded and never contend with the
    model's intra-op thread pool (torch's small ops cost milliseconds on a loaded machine).
    """

    def __init__(self, plan: TilePlan, channels: Mapping[str, int], on_strip: StripCallback) -> None:
        self.plan, self.on_strip = plan, on_strip
        s = plan.scale
        self.sh, self.sw = plan.tile_h * s, plan.tile_w * s
        self.width = plan.padded_width * s
        self.buffers = {name: np.zeros((c, self.sh, self.width), np.float32) for name, c in channels.items()}
        self.next_index = 0
        self.base = 0  # SR row of buffer row 0
        if plan.mode == "blend":
            gy, gx = gaussian_window(self.sh), gaussian_window(self.sw)
            self.weight = gy[:, None] * gx[None, :]
            self.row_norm = self._axis_norm(plan.rows.starts, gy, plan.padded_height * s)
            self.col_norm = self._axis_norm(plan.cols.starts, gx, self.width)

    def _axis_norm(self, starts: tuple[int, ...], g: np.ndarray, length: int) -> np.ndarray:
        """Sum of the 1-D weights of all windows over each SR position (the 2-D sum is their product)."""
        norm = np.zeros(length, np.float32)
        for start in starts:
            norm[start * self.plan.scale : start * self.plan.scale + g.size] += g
        return norm

    @property
    def done(self) -> bool:
        return self.next_index == self.plan.n_tiles

    def add(self, index: int, outputs: Mapping[str, np.ndarray | Tensor]) -> None:
        """Add window `index`'s outputs: name -> (C, tile_h * scale, tile_w * scale) float array (or CPU
        tensor)."""
        if index != self.next_index:
            raise ValueError(f"tiles must arrive in order: expected {self.next_index}, got {index}")
        plan, s = self.plan, self.plan.scale
        n_cols = len(plan.cols.starts)
        r, c = divmod(index, n_cols)
        y0, x0 = plan.rows.starts[r] * s, plan.cols.starts[c] * s
        if c == 0:
            self._start_row(r)
        for name, buf in self.buffers.items():
            out = np.asarray(outputs[name], dtype=np.float32)
            if out.shape[-2:] != (self.sh, self.sw):
                raise ValueError(f"{name} output of shape {tuple(out.shape)}: expected {self.sh}x{self.sw}")
            if plan.mode == "blend":
                buf[:, y0 - self.base : y0 - self.base + self.sh, x0 : x0 + self.sw] += out * self.weight
            else:
                (ya, yb), (xa, xb) = plan.rows.cuts[r], plan.cols.cuts[c]
                buf[:, ya * s - self.base : yb * s - self.base, xa * s : xb * s] = out[
                    :, ya * s - y0 : yb * s - y0, xa * s - x0 : xb * s - x0
                ]
        self.next_index += 1
        if c == n_cols - 1:
            self._finish_row(r)

    def _start_row(self, r: int) -> None:
        plan, s = self.plan, self.plan.scale
        if plan.mode == "crop":
            self.base = plan.rows.cuts[r][0] * s
            return
        new_base = plan.rows.starts[r] * s
        shift = new_base - self.base
        for buf in self.buffers.values():
            if 0 < shift < self.sh:
                buf[:, : self.sh - shift] = buf[:, shift:]  # numpy handles the overlapping copy
                buf[:, self.sh - shift :] = 0
            elif shift:
                buf[:] = 0
        self.base = new_base

    def _finish_row(self, r: int) -> None:
        plan, s = self.plan, self.plan.scale
        last = r == len(plan.rows.starts) - 1
        if plan.mode == "crop":
            start, stop = (v * s for v in plan.rows.cuts[r])
        else:
            start = plan.rows.starts[r] * s
            stop = (plan.rows.starts[r] + plan.tile_h) * s if last else plan.rows.starts[r + 1] * s
        stop = min(stop, plan.height * s)  # drop the padding rows
        if stop <= start:
            return
        rows = slice(start - self.base, stop - self.base)
        width = plan.width * s
        strips = {}
        for name, buf in self.buffers.items():
            strip = buf[:, rows, :width]
            if plan.mode == "blend":
                strip = strip / (self.row_norm[start:stop, None] * self.col_norm[None, :width])
            strips[name] = strip.copy() if plan.mode == "crop" else strip
        self.on_strip(start, strips)


def choose_stitching(
    *, halo: int | None, global_context: bool, tile: int, overlap: int | None
) -> tuple[StitchMode, int]:
    """(mode, overlap) for a model: exact crop stitching for a local model with a known halo (default
    overlap: twice the halo), Gaussian blending otherwise.

    The blend default is half a tile, not MONAI's quarter: with a quarter, KBPN + PSPNet still differ from
    whole-image inference ~15 % more along tile borders than elsewhere (straight lines that look like
    cracks); with half, every pixel has a window where it lies at least a quarter tile from the cut, and
    borders are no worse than elsewhere (tests/test_tiling.py). A quarter is about 2x faster."""
    if tile == 0:
        return "crop", 0
    if halo is None or global_context:
        return "blend", tile // 2 if overlap is None else overlap
    if overlap is None:
        overlap = 2 * halo
    if overlap < 2 * halo:
        raise InputError(
            f"--overlap {overlap} is less than twice the model's halo ({halo} px): tiles would not match "
            "whole-image inference"
        )
    if overlap >= tile:
        raise InputError(
            f"--tile {tile} leaves nothing inside the model's {halo} px halo: use a larger --tile"
        )
    return "crop", overlap
