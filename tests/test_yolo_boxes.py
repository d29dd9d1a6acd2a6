"""bench/yolo_boxes.py on synthetic masks and box files with hand-counted answers (no model run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from bench_modules import load_bench

from csbsr_cli.errors import InputError

yb = load_bench("yolo_boxes")


def _write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask.astype(np.uint8) * 255)


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path]:
    """Three 40x40 tiles on a 'SR grid' (boxes are normalised, so any grid works):

    a: box 1 = top-left quadrant (rows/cols 0-19), box 2 = bottom-right 10x10 (30-39), box 3 inside box 1
       (overlap: counted once in the union); 4 crack pixels in box 1, 4 outside every box.
    b: no .txt; 3 crack pixels.
    c: one box (left half), empty mask.
    """
    masks, boxes = tmp_path / "run" / "mask", tmp_path / "boxes"
    boxes.mkdir()
    a = np.zeros((40, 40), bool)
    a[5, 5:9] = True  # inside box 1
    a[25, 5:9] = True  # below box 1, left of box 2: outside
    _write_mask(masks / "a.png", a)
    (boxes / "a.txt").write_text("0 0.25 0.25 0.5 0.5\n\n0 0.875 0.875 0.25 0.25\n0 0.125 0.125 0.25 0.25\n")
    b = np.zeros((40, 40), bool)
    b[0, :3] = True
    _write_mask(masks / "b.png", b)
    _write_mask(masks / "c.png", np.zeros((40, 40), bool))
    (boxes / "c.txt").write_text("0 0.25 0.5 0.5 1.0\n")
    (boxes / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # a frame missing from the run
    return tmp_path / "run", boxes


def test_tiles_and_overall(run: tuple[Path, Path]) -> None:
    scores, unmatched = yb.score_run(*run)
    by = {s.tile: s for s in scores}
    assert unmatched == ["orphan"]

    a = by["a"]
    assert (a.crack_pixels, a.inside_pixels, a.boxes, a.boxes_hit) == (8, 4, 3, 2)  # box 3 holds 5,5-8
    assert a.box_pixels == 400 + 100
    assert a.inside_fraction == 0.5 and a.box_area_fraction == 500 / 1600
    assert a.boxes_hit_fraction == pytest.approx(2 / 3)

    b = by["b"]
    assert not b.has_box_file and b.boxes == 0 and b.box_pixels == 0
    assert b.inside_fraction == 0.0 and b.boxes_hit_fraction is None
    assert b.as_dict()["lift_over_chance"] is None  # chance level 0: no ratio

    c = by["c"]
    assert c.crack_pixels == 0 and c.inside_fraction is None  # undefined, not a division by zero
    assert c.box_area_fraction == 0.5 and c.boxes_hit == 0

    total = yb.overall(scores)
    assert total["crack_pixels"] == 11 and total["inside_pixels"] == 4
    assert total["inside_fraction"] == pytest.approx(4 / 11)
    assert total["box_area_fraction"] == pytest.approx((500 + 0 + 800) / 4800)
    chance = (8 * 500 / 1600 + 3 * 0.0) / 11  # c has no crack pixel: weight 0
    assert total["chance_inside_fraction"] == pytest.approx(chance)
    assert total["lift_over_chance"] == pytest.approx((4 / 11) / chance)
    assert (total["boxes"], total["boxes_hit"]) == (4, 2)
    assert (total["tiles_without_box_file"], total["tiles_without_crack_pixels"]) == (1, 1)


def test_boxes_scale_with_the_grid() -> None:
    """The same box covers the same share of a 256 input tile and of its 1024 SR grid, edge for edge."""
    box = (0.501953, 0.839844, 0.996094, 0.140625)  # a box from sample_data/drone_tiles
    small = yb.box_slices(box, 256, 256)
    large = yb.box_slices(box, 1024, 1024)
    for s, lg in zip(small, large, strict=True):
        assert (4 * s.start, 4 * s.stop) == (lg.start, lg.stop)
    assert yb.box_slices((0.5, 0.5, 2.0, 2.0), 10, 20) == (slice(0, 10), slice(0, 20))  # clipped


def test_all_empty_and_no_boxes(tmp_path: Path) -> None:
    _write_mask(tmp_path / "run" / "mask" / "x.png", np.zeros((8, 8), bool))
    (tmp_path / "boxes").mkdir()
    total = yb.overall(yb.score_run(tmp_path / "run", tmp_path / "boxes")[0])
    assert total["inside_fraction"] is None and total["chance_inside_fraction"] is None
    assert total["boxes_hit_fraction"] is None and total["box_area_fraction"] == 0.0


def test_bad_box_line(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("0 0.5 0.5\n")
    with pytest.raises(InputError, match="t.txt.*line 1"):
        yb.read_boxes(tmp_path / "t.txt")


def test_threshold_reads_prob_maps(tmp_path: Path) -> None:
    prob = np.zeros((20, 20), np.uint16)
    prob[:10] = 30000  # p ~ 0.46: top half
    (tmp_path / "run" / "prob").mkdir(parents=True)
    assert cv2.imwrite(str(tmp_path / "run" / "prob" / "p.png"), prob)
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "p.txt").write_text("0 0.5 0.25 1.0 0.5\n")  # the top half
    (score,), _ = yb.score_run(tmp_path / "run", tmp_path / "boxes", threshold=0.45)
    assert (score.crack_pixels, score.inside_pixels) == (200, 200)


def test_cli_table_and_json(run: tuple[Path, Path], tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "yolo.json"
    monkeypatch.setattr(sys, "argv", ["yolo_boxes.py", str(run[0]), str(run[1]), "--json", str(out)])
    yb.main()
    text = capsys.readouterr().out
    assert "n/a" in text and "no .txt" in text and "1 box file(s) without a mask" in text
    figures = json.loads(out.read_text())
    assert [t["tile"] for t in figures["tiles"]] == ["a", "b", "c"]
    assert figures["tiles"][2]["inside_fraction"] is None
    assert figures["overall"]["boxes_hit"] == 2
