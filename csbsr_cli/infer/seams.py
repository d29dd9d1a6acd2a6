"""How visible tile borders are: tiled vs whole-image inference, on and off the window edges.

Blended tiles of a global-context model differ from whole-image inference (each window sees less
context) but must differ no more along window borders than elsewhere, or stitched maps show straight
lines that look like cracks. Used by the tests and by bench/seams.py to pick a model's tile and overlap.
"""

from __future__ import annotations

import numpy as np

from .pipeline import infer_image
from .runner import Runner
from .tiling import StitchMode, TilePlan, make_plan


def border_band(plan: TilePlan, width: int) -> np.ndarray:
    """SR pixels within `width` of a window edge inside the frame (where a naive tiler shows seams)."""
    s = plan.scale
    h, w = plan.out_size
    band = np.zeros((h, w), bool)
    for starts, size, axis in ((plan.rows.starts, plan.tile_h, 0), (plan.cols.starts, plan.tile_w, 1)):
        n = h if axis == 0 else w
        for edge in {e * s for start in starts for e in (start, start + size)} - {0, n}:
            sl = slice(max(0, edge - width), edge + width)
            if axis == 0:
                band[sl, :] = True
            else:
                band[:, sl] = True
    return band


def seam_levels(
    runner: Runner,
    img: np.ndarray,
    tile: int,
    overlap: int,
    mode: StitchMode,
    scale: int = 4,
    divisor: int = 2,
) -> tuple[float, float]:
    """(level, jump) of the probability map: border / elsewhere mean |tiled - whole| within 4 SR px of
    interior window edges, and border / elsewhere mean jump of (tiled - whole) between neighbouring pixels
    across those edges. 1.0 means the borders are like anywhere else."""
    h, w = img.shape[:2]
    plan = make_plan(h, w, tile=tile, overlap=overlap, scale=scale, mode=mode, divisor=divisor)
    whole_plan = make_plan(h, w, tile=0, overlap=0, scale=scale, mode="crop", divisor=divisor)
    whole = infer_image(runner, img, whole_plan)["prob"][0]
    diff = infer_image(runner, img, plan)["prob"][0] - whole
    band = border_band(plan, 4)
    level = np.abs(diff[band]).mean() / np.abs(diff[~band]).mean()
    line = border_band(plan, 1)
    jumps = [np.abs(np.diff(diff, axis=a)) for a in (0, 1)]
    on_line = [line[1:] & line[:-1], line[:, 1:] & line[:, :-1]]
    across = sum(j[m].mean() for j, m in zip(jumps, on_line, strict=True))
    elsewhere = sum(j[~m].mean() for j, m in zip(jumps, on_line, strict=True))
    return float(level), float(across / elsewhere)
