"""The overlay an inspector looks at: cracks tinted by severity over the input (or SR) frame, each crack's id
(as in cracks.csv) beside it and a legend of the colours, encoded as JPEG.

Everything is uint8 and OpenCV (BGR inside, RGB in): a frame is a few full-size copies at most.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from ..report.severity import DEFAULT_NAMES, UNKNOWN

ALPHA = 0.6  # tint weight over the image
QUALITY = 85  # JPEG quality: 20 % smaller than 92 on drone frames, the tint and text as clear
CRACK = "crack"  # the class of a crack without a GSD
COLOURS: dict[str, tuple[int, int, int]] = {  # RGB per severity class
    DEFAULT_NAMES[0]: (255, 220, 0),
    DEFAULT_NAMES[1]: (255, 128, 0),
    DEFAULT_NAMES[2]: (230, 0, 40),
    UNKNOWN: (255, 32, 32),
}
FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_LABELLED_HEIGHT = 240  # px: smaller images (tiles, tests) get the tint only, text would hide them
MAX_IDS = 40  # ids drawn for the longest cracks only: thousands of specks would bury the image in numbers


def _text(img: np.ndarray, text: str, org: tuple[int, int], size: float) -> None:
    """White text with a black outline: readable on any background. The outline is the text shifted by a
    pixel each way (a thicker stroke would be laid out wider and drift off the letters)."""
    thick = max(1, round(size * 2))
    x, y = org
    for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
        cv2.putText(img, text, (x + dx, y + dy), FONT, size, (0, 0, 0), thick, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, size, (255, 255, 255), thick, cv2.LINE_AA)


def _legend(img: np.ndarray, lines: Sequence[tuple[str, tuple[int, int, int] | None]], size: float) -> None:
    """A dark box at the bottom-left with a colour swatch and a line of text per entry."""
    thick = max(1, round(size * 2))
    (_, th), _ = cv2.getTextSize("Ag", FONT, size, thick)
    step, pad = int(th * 1.9), int(th * 0.6) + 2
    width = max(cv2.getTextSize(t, FONT, size, thick)[0][0] for t, _ in lines) + 3 * pad + th
    height = step * len(lines) + pad
    y0 = max(0, img.shape[0] - height - pad)
    box = img[y0 : y0 + height, pad : pad + width]
    box[:] = (box * 0.35).astype(np.uint8)
    for i, (text, colour) in enumerate(lines):
        y = y0 + pad + step * i + th
        if colour is not None:
            cv2.rectangle(img, (2 * pad, y - th), (2 * pad + th, y), colour[::-1], -1)
        _text(img, text, (3 * pad + th, y), size)


def render(
    base_rgb: np.ndarray,
    ids: np.ndarray,
    cracks: Sequence[Mapping[str, Any]],
    zoom: int,
    limits_mm: Sequence[float],
    gsd_mm: float | None,
) -> bytes:
    """JPEG bytes of `base_rgb` (uint8) with the pixels of each crack (`ids`: its crack id per pixel, 0 for
    none) tinted by its severity, its id drawn at its bounding box and a legend (from MIN_LABELLED_HEIGHT).
    `zoom`: base pixels per input pixel (1, or the SR scale), for the boxes given in input pixels."""
    bgr = cv2.cvtColor(base_rgb, cv2.COLOR_RGB2BGR)
    classes = {int(c["crack_id"]): str(c.get("severity", UNKNOWN)) for c in cracks}
    lut = np.zeros((max(classes, default=0) + 1, 3), np.uint8)
    for crack_id, name in classes.items():
        lut[crack_id] = COLOURS.get(name, COLOURS[UNKNOWN])[::-1]
    tinted = cv2.addWeighted(bgr, 1 - ALPHA, lut[ids], ALPHA, 0)
    np.copyto(bgr, tinted, where=(ids > 0)[:, :, None])
    if bgr.shape[0] >= MIN_LABELLED_HEIGHT:
        _labels(bgr, cracks, zoom, limits_mm, gsd_mm)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise ValueError("cannot encode the overlay as JPEG")
    return buf.tobytes()


def _labels(
    bgr: np.ndarray,
    cracks: Sequence[Mapping[str, Any]],
    zoom: int,
    limits_mm: Sequence[float],
    gsd_mm: float | None,
) -> None:
    """The ids of the MAX_IDS longest cracks at their bounding box's top-left corner, and the legend."""
    size = max(0.35, bgr.shape[0] / 1400)
    longest = sorted(cracks, key=lambda c: -float(c.get("length_px_input", 0)))[:MAX_IDS]
    for crack in longest:
        x, y = crack["bbox_px_input"][:2]
        _text(bgr, str(crack["crack_id"]), (int(x * zoom), max(int(y * zoom) - 3, 12)), size)
    counts = Counter(str(c.get("severity", UNKNOWN)) for c in cracks)
    if gsd_mm is None:
        lines = [(f"{CRACK} ({len(cracks)}), no GSD: no severity", COLOURS[UNKNOWN])]
    else:
        lo, hi = (f"{t:g}" for t in limits_mm)
        spans = [f"< {lo}", f"{lo}-{hi}", f">= {hi}"]
        lines = [
            (f"{name} {span} mm ({counts[name]})", COLOURS[name])
            for name, span in zip(DEFAULT_NAMES, spans, strict=True)
        ]
    shown = "crack ids" if len(longest) == len(cracks) else f"ids of the {len(longest)} longest cracks"
    lines.append((f"numbers: {shown} (cracks.csv){'' if gsd_mm is None else f'; {gsd_mm:g} mm/px'}", None))
    _legend(bgr, lines, size)
