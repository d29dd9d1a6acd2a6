"""bench/drone_quality.py: tiles stitched into windows with their boxes, and the offline scoring."""

from __future__ import annotations

import numpy as np
import pytest
from bench_modules import load_bench

from csbsr_cli.data.image_io import write_png
from csbsr_cli.infer.shape import ShapeRule

dq = load_bench("drone_quality")


@pytest.fixture
def tiles(tmp_path):
    """Frame F: 3 x 6 tiles of 16 px (one full 3 x 5 window, a partial column); one box in tile (1, 2)."""
    root = tmp_path / "tiles"
    for r in range(3):
        for c in range(6):
            write_png(root / "images" / f"F_{r}_{c}.png", np.full((16, 16, 3), (r * 6 + c) / 20, np.float32))
            label = "0 0.5 0.5 0.5 0.25\n" if (r, c) == (1, 2) else ""
            (root / "labels").mkdir(exist_ok=True)
            (root / "labels" / f"F_{r}_{c}.txt").write_text(label)
    return root


def test_windows_are_stitched_in_tile_order_with_shifted_boxes(tiles):
    windows = dq.windows_of(tiles)
    assert list(windows) == ["F_w0_0"]
    paths, boxes = windows["F_w0_0"]
    image = dq.stitch(paths)
    assert image.shape == (48, 80, 3)
    assert image[20, 40, 0] == pytest.approx(8 / 20, abs=1 / 255)  # tile (1, 2)
    np.testing.assert_allclose(boxes, [[2 * 16 + 4, 16 + 6, 2 * 16 + 12, 16 + 10]])


def test_scores_of_a_mark_in_the_box_and_a_blob_outside(tiles, tmp_path):
    windows = dq.windows_of(tiles)
    prob = np.zeros((48 * 4, 80 * 4), np.float32)
    prob[(16 + 8) * 4, (32 + 4) * 4 : (32 + 12) * 4] = 0.9  # along the box's long side, all of it
    prob[4:8, 4:8] = 0.9  # a 4 x 4 blob far outside
    run = tmp_path / "run"
    write_png(run / "prob" / "F_w0_0.png", prob, bits=16)
    raw = dq.score(run, windows, 0.5, ShapeRule())
    assert raw["box_recall"] == 1.0 and raw["box_precision"] == pytest.approx(32 / 48)
    assert raw["outside_rate"] == pytest.approx(16 / (48 * 80 * 16 - 8 * 4 * 4 * 4))
    shaped = dq.score(run, windows, 0.5, ShapeRule(min_length=3))  # 12 SR px: the blob goes, the line stays
    assert shaped["box_precision"] == 1.0 and shaped["outside_rate"] == 0.0 and shaped["box_recall"] == 1.0
