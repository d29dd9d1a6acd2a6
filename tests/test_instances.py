"""Crack instances on synthetic SR-grid masks of known size: figures in input pixels and mm, polylines."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from csbsr_cli.infer.instances import find_cracks, trace, with_mm
from csbsr_cli.infer.measure import measure_mask

SCALE = 4


def bar(vertical: bool = False) -> np.ndarray:
    """An SR-grid mask (x4) with one bar 400 SR px long and 8 SR px wide: 100 x 2 input pixels."""
    mask = np.zeros((120, 480), bool)
    mask[40:48, 40:440] = True
    return np.ascontiguousarray(mask.T) if vertical else mask


@pytest.mark.parametrize("vertical", [False, True])
def test_straight_crack_of_known_length_and_width(vertical: bool) -> None:
    (crack,) = find_cracks(bar(vertical), SCALE)
    assert crack.crack_id == 1
    assert crack.length_px_input == pytest.approx(100, abs=0.5)
    assert crack.max_width_px_input == 2.0  # 8 SR px / 4, exact for an axis-aligned bar
    assert crack.mean_width_px_input == pytest.approx(2.0, rel=0.01)
    assert crack.area_px_input == 200.0
    box = (10, 10, 100, 2)
    assert crack.bbox_px_input == (box[1], box[0], box[3], box[2]) if vertical else box
    (line,) = crack.polylines
    along, across = (1, 0) if vertical else (0, 1)
    off = [abs(p[across] - 11.0) for p in line]  # from the bar's centre line
    assert max(off) <= 0.5 and sum(o <= 0.125 for o in off) >= len(line) - 2  # thinning hooks at the ends
    ends = sorted(p[along] for p in (line[0], line[-1]))
    assert ends[0] == pytest.approx(11, abs=0.5) and ends[1] == pytest.approx(109, abs=0.5)  # half a width in
    assert len(line) == pytest.approx(98 + 1, abs=1)  # one point per input pixel
    (profile,) = crack.width_profiles_px_input
    assert len(profile) == len(line) and max(profile) == 2.0 and min(profile) >= 1.5


def test_figures_agree_with_the_frame_measure() -> None:
    """One crack: its length and maximum width are the frame's figures divided by the scale."""
    mask = np.zeros((300, 300), np.uint8)
    cv2.line(mask, (20, 30), (260, 250), 1, 5)
    (crack,) = find_cracks(mask.astype(bool), SCALE)
    frame = measure_mask(mask)
    assert crack.length_px_input == pytest.approx(frame.length_px / SCALE, abs=1e-3)
    assert crack.max_width_px_input == pytest.approx(frame.max_width_px / SCALE, abs=1e-3)
    assert crack.mean_width_px_input == pytest.approx(frame.mean_width_px / SCALE, abs=1e-3)


def test_mm_conversion() -> None:
    (crack,) = find_cracks(bar(), SCALE)
    figures = with_mm(crack.as_dict(), 2.5)  # 2.5 mm per input pixel
    assert figures["length_mm"] == pytest.approx(crack.length_px_input * 2.5, abs=1e-3)
    assert figures["length_mm"] == pytest.approx(250, abs=1.25)
    assert figures["max_width_mm"] == 5.0 and figures["area_mm2"] == 200 * 2.5**2
    assert figures["mean_width_mm"] == pytest.approx(5.0, rel=0.01)
    assert "length_mm" not in with_mm(crack.as_dict(), None)


def test_pieces_are_instances_numbered_in_raster_order() -> None:
    mask = np.zeros((200, 200), bool)
    mask[150:154, 20:180] = True  # lower
    mask[20:60, 100:102] = True  # upper: first in raster order
    mask[100, 10] = True  # a speck
    cracks = find_cracks(mask, SCALE)
    assert [c.crack_id for c in cracks] == [1, 2, 3]
    upper, speck, lower = cracks
    assert upper.length_px_input == pytest.approx(10, abs=0.5) and upper.max_width_px_input == 0.5
    assert speck.length_px_input == 0.25 and speck.polylines == [[(2.625, 25.125)]]
    assert lower.length_px_input == pytest.approx(40, abs=0.3)
    assert find_cracks(np.zeros((16, 16), bool), SCALE) == []


def test_branching_crack_gives_several_polylines_covering_its_skeleton() -> None:
    """A cross: four arms meeting at a junction, every polyline point on the crack, arms reach its ends."""
    mask = np.zeros((400, 400), np.uint8)
    cv2.line(mask, (40, 200), (360, 200), 1, 3)
    cv2.line(mask, (200, 40), (200, 360), 1, 3)
    (crack,) = find_cracks(mask.astype(bool), SCALE)
    assert len(crack.polylines) >= 4
    points = np.array([p for line in crack.polylines for p in line])
    rows, cols = (points[:, 1] * SCALE).astype(int), (points[:, 0] * SCALE).astype(int)
    assert mask[rows, cols].all()
    assert points[:, 0].min() < 11 and points[:, 0].max() > 89 and points[:, 1].min() < 11
    assert crack.length_px_input == pytest.approx(2 * 320 / SCALE, rel=0.02)


def test_ring_is_one_closed_polyline() -> None:
    mask = np.zeros((200, 200), np.uint8)
    cv2.circle(mask, (100, 100), 60, 1, 3)
    (crack,) = find_cracks(mask.astype(bool), SCALE)
    (line,) = crack.polylines
    assert line[0] == line[-1] and len(line) > 20
    # 8-connected steps overestimate a circle's perimeter (by ~5 %), as the frame measure does
    assert crack.length_px_input == pytest.approx(measure_mask(mask).length_px / SCALE, abs=1e-3)
    assert crack.length_px_input == pytest.approx(2 * np.pi * 60 / SCALE, rel=0.07)


def test_trace_uses_every_edge_once() -> None:
    assert trace([[1], [0, 2], [1]]) == [[0, 1, 2]]  # a chain, from an end
    assert trace([[1, 2], [0, 2], [0, 1]]) == [[0, 1, 2, 0]]  # a loop, closed
    star = trace([[1, 2, 3], [0], [0], [0], []])  # a junction with three arms and an isolated pixel
    assert sorted(star) == [[0, 1], [0, 2], [0, 3], [4]]


def test_cracks_add_up_to_the_frame_figures() -> None:
    """Many pieces, some touching the border: lengths and areas sum to the frame's, the widest is its max."""
    rng = np.random.default_rng(3)
    mask = np.zeros((400, 600), np.uint8)
    for _ in range(12):
        x0, y0 = int(rng.integers(-20, 620)), int(rng.integers(-20, 420))
        dx, dy = (int(v) for v in rng.integers(-90, 90, 2))
        cv2.line(mask, (x0, y0), (x0 + dx, y0 + dy), 1, int(rng.integers(1, 12)))
    cracks = find_cracks(mask.astype(bool), SCALE)
    frame = measure_mask(mask)
    assert len(cracks) > 5 and any(c.bbox_px_input[0] == 0 or c.bbox_px_input[1] == 0 for c in cracks)
    assert sum(c.length_px_input for c in cracks) == pytest.approx(frame.length_px / SCALE, abs=0.01)
    assert sum(c.area_px_input for c in cracks) == frame.crack_pixels / SCALE**2
    assert max(c.max_width_px_input for c in cracks) == pytest.approx(frame.max_width_px / SCALE, abs=1e-3)
