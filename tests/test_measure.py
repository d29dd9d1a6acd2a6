"""Crack figures on synthetic bars of known size, and strip-wise measurement == whole-mask measurement."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from csbsr_cli.infer.measure import CrackMeter, measure_mask


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 6, 9])
@pytest.mark.parametrize("vertical", [False, True])
def test_bar_of_known_size(width: int, vertical: bool) -> None:
    length = 200
    mask = np.zeros((120, 300), bool)
    mask[50 : 50 + width, 40 : 40 + length] = True
    if vertical:
        mask = np.ascontiguousarray(mask.T)
    m = measure_mask(mask)
    assert m.crack_pixels == width * length
    assert m.crack_area_fraction == pytest.approx(width * length / mask.size)
    assert m.max_width_px == width  # exact for axis-aligned bars, odd and even widths
    assert abs(m.length_px - length) <= 2  # thinning's end effects, corrected by the end extension
    assert m.mean_width_px == pytest.approx(width, rel=0.03)


def test_diagonal_line_length() -> None:
    mask = np.zeros((300, 300), np.uint8)
    cv2.line(mask, (20, 20), (220, 220), 1, 1)
    assert measure_mask(mask).length_px == pytest.approx(200 * np.sqrt(2) + 1, rel=0.02)


def test_empty_and_dot() -> None:
    empty = measure_mask(np.zeros((50, 60), bool))
    assert (empty.crack_pixels, empty.length_px, empty.max_width_px, empty.mean_width_px) == (0, 0, 0, 0)
    dot = np.zeros((50, 60), bool)
    dot[10, 10] = True
    m = measure_mask(dot)
    assert (m.crack_pixels, m.length_px, m.max_width_px) == (1, 1.0, 1.0)


def test_frame_border_bounds_the_crack() -> None:
    """A crack running along the frame edge is measured as ending there (the border counts as its edge)."""
    mask = np.zeros((100, 100), bool)
    mask[:3, 10:90] = True
    assert measure_mask(mask).max_width_px == 3


def test_strips_equal_whole_mask() -> None:
    """Fed in uneven strips with a small chunk and margin, the figures equal whole-mask measurement."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        mask = np.zeros((600, 400), np.uint8)
        for _ in range(8):
            x0, y0, x1, y1 = (int(v) for v in rng.integers(0, 400, 4))
            cv2.line(mask, (x0, y0), (x1, y1 + 200), 1, int(rng.integers(1, 8)))
        meter = CrackMeter(600, 400, margin=24, chunk=50)
        y = 0
        while y < 600:
            step = int(rng.integers(1, 90))
            meter.feed(mask[y : y + step] != 0)
            y += step
        assert meter.result() == measure_mask(mask)


def test_meter_rejects_wrong_input() -> None:
    meter = CrackMeter(10, 20)
    with pytest.raises(ValueError, match="width"):
        meter.feed(np.zeros((2, 19), bool))
    meter.feed(np.zeros((5, 20), bool))
    with pytest.raises(ValueError, match="incomplete"):
        meter.result()
