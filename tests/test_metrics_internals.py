"""Metrics internals against slow, obviously-correct references: level map, exact EDT, the 99-threshold
distance sweep vs a transcription of DeepMind's surface-distance, the worker pool, and the run directory."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from rich.console import Console

from csbsr_cli.metrics import DEFAULT, PAPER, evaluate_masks, image_quality, summary_table, write_run
from csbsr_cli.metrics.distance import (
    CONTOUR_LENGTH,
    _distance_map,
    _exact_sq,
    distance_sweep,
    one_empty_distance,
    surface_distances,
)
from csbsr_cli.metrics.segmentation import N_THRESHOLDS, THRESHOLDS, level_map


def test_level_map_matches_searchsorted_at_and_around_every_threshold():
    rng = np.random.default_rng(0)
    near = np.concatenate([THRESHOLDS, np.nextafter(THRESHOLDS, 0), np.nextafter(THRESHOLDS, 1)])
    values = np.concatenate([near, rng.random(5000, dtype=np.float32), [-0.5, 0, 1, 1.5, 0.995, 0.005]])
    values = values.astype(np.float32)
    want = np.searchsorted(THRESHOLDS, values, side="left")
    np.testing.assert_array_equal(level_map(values.reshape(1, -1))[0], want)


def test_opencv_distance_transform_gives_exact_squared_distances():
    rng = np.random.default_rng(1)
    for shape, n in (((37, 53), 3), ((120, 90), 40), ((449, 449), 6)):
        rows, cols = rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)
        got = _exact_sq(_distance_map(rows, cols, (0, 0, *shape)), np.int64)
        gr, gc = np.mgrid[: shape[0], : shape[1]]
        brute = ((gr[..., None] - rows) ** 2 + (gc[..., None] - cols) ** 2).min(axis=-1)
        np.testing.assert_array_equal(got, brute)


def _deepmind_reference(gt: np.ndarray, pred: np.ndarray, percentiles) -> tuple[list[float], float]:
    """surface-distance 0.1 transcribed (2-D, spacing 1), with brute-force distances: the test oracle."""

    def contour(mask):
        p = np.pad(mask.astype(int), 1)
        code = 8 * p[:-1, :-1] + 4 * p[:-1, 1:] + 2 * p[1:, :-1] + p[1:, 1:]
        border = (code != 0) & (code != 15)
        return np.argwhere(border), CONTOUR_LENGTH[code[border]]

    (pg, lg), (pp, lp) = contour(gt), contour(pred)
    dist = np.sqrt(((pg[:, None, :] - pp[None, :, :]) ** 2).sum(-1))
    directions = [(dist.min(axis=1), lg), (dist.min(axis=0), lp)]
    hds, means = [], []
    for d, lengths in directions:
        srt = np.array(sorted(zip(d, lengths, strict=True)))
        d, lengths = srt[:, 0], srt[:, 1]
        cum = np.cumsum(lengths) / np.sum(lengths)
        hds.append([d[min(np.searchsorted(cum, p / 100.0), len(d) - 1)] for p in percentiles])
        means.append(np.sum(d * lengths) / np.sum(lengths))
    return [max(a, b) for a, b in zip(*hds, strict=True)], (means[0] + means[1]) / 2


def test_sweep_matches_the_surface_distance_algorithm_at_every_threshold():
    rng = np.random.default_rng(2)
    gt = np.zeros((28, 33), bool)
    gt[5:9, 3:30] = True
    gt[9:25, 20:23] = True
    prob = cv2.GaussianBlur(np.roll(gt, (1, 2), (0, 1)).astype(np.float32), (0, 0), 1.5) * 1.3
    prob = np.clip(prob + rng.normal(0, 0.08, gt.shape).astype(np.float32), 0, 1)
    prob[0, 0] = 0.995  # an isolated corner pixel, alive up to the last threshold
    pct = (50.0, 95.0, 100.0)
    sweep = distance_sweep(gt, level_map(prob), N_THRESHOLDS, pct, one_empty_distance("diagonal", gt.shape))
    for s in range(0, N_THRESHOLDS, 7):
        want_hd, want_msd = _deepmind_reference(gt, prob > THRESHOLDS[s], pct)
        np.testing.assert_array_equal(sweep.hd[:, s], want_hd, err_msg=f"threshold index {s}")
        assert sweep.msd[s] == pytest.approx(want_msd, rel=1e-12)
        hd, msd = surface_distances(gt, prob > THRESHOLDS[s], pct)  # the single-pair API agrees
        np.testing.assert_array_equal(hd, want_hd)


def test_one_empty_distance_rules():
    assert one_empty_distance("width", (160, 112)) == 112
    assert one_empty_distance("diagonal", (3, 4)) == 5
    hd, msd = surface_distances(np.zeros((3, 4), bool), np.ones((3, 4), bool))
    assert hd[0] == 5 and msd == 5


def _synthetic(n: int, size: int = 64) -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    items = []
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        if i % 3:
            cv2.line(
                mask,
                tuple(rng.integers(0, size, 2).tolist()),
                tuple(rng.integers(0, size, 2).tolist()),
                255,
                3,
            )
        prob = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 1.2) + rng.normal(0, 0.1, mask.shape)
        items.append((f"img{i}", mask, np.clip(prob, 0, 1).astype(np.float32)))
    return items


def test_worker_pool_gives_the_serial_numbers_in_order():
    items = _synthetic(6)
    serial = evaluate_masks(items, PAPER)
    seen: list[str] = []
    parallel = evaluate_masks(iter(items), PAPER, workers=2, on_result=lambda r: seen.append(r.name))
    assert [r.name for r in parallel] == [r.name for r in serial] == seen
    for a, b in zip(serial, parallel, strict=True):
        for field in ("tp", "fp", "fn", "iou", "hd", "msd", "hd_case"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_write_run_directory(tmp_path):
    items = _synthetic(4)
    seg = evaluate_masks(items, DEFAULT)
    hr = np.zeros((8, 8, 3), np.uint8)
    quality = [image_quality(name, np.full((8, 8, 3), 0.1), hr, DEFAULT) for name, _, _ in items[:2]]
    quality.append(image_quality("identical", hr, hr, DEFAULT))  # PSNR inf -> null in JSON
    meta = {"model": "synthetic", "dataset": "unit-test"}
    metrics = write_run(tmp_path / "run", DEFAULT, seg, quality, metadata=meta, full_tables=True)

    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["preset"]["name"] == "default" and on_disk["metadata"] == meta
    assert on_disk["segmentation"]["preset"] == on_disk["image_quality"]["preset"] == "default"
    assert on_disk["segmentation"]["n_images"] == 4 and on_disk["image_quality"]["PSNR_mean"] is None
    assert set(on_disk["files"].values()) == {p.name for p in (tmp_path / "run").iterdir()}
    per_image = (tmp_path / "run" / "per_image.csv").read_text().splitlines()
    assert per_image[0].startswith("name,preset,") and "HD95_at_best" in per_image[0]
    assert len(per_image) == 1 + 5 and per_image[1].split(",")[1] == "default"
    curves = (tmp_path / "run" / "curves.csv").read_text().splitlines()
    assert len(curves) == 1 + 99 and curves[0].startswith("threshold,IoU_mean")
    assert len((tmp_path / "run" / "per_image_thresholds.csv").read_text().splitlines()) == 1 + 4 * 99
    png = cv2.imread(str(tmp_path / "run" / "curves.png"))
    assert png is not None and png.shape[1] > 2 * png.shape[0]

    console = Console(record=True, width=120)
    console.print(summary_table(metrics))
    text = console.export_text()
    assert "preset: default" in text and "IoU_max" in text and "HD95_min" in text and "PSNR" in text
    assert not math.isnan(metrics["segmentation"]["AUPRC"])


def test_summary_table_says_how_ods_ois_are_pooled_and_names_the_papers_hd95(tmp_path):
    metrics = write_run(tmp_path / "run", PAPER, evaluate_masks(_synthetic(3), PAPER), [], metadata={})
    console = Console(record=True, width=200)
    console.print(summary_table(metrics))
    lines = console.export_text().splitlines()
    hd50 = next(line for line in lines if line.lstrip("│ ").startswith("HD50_min"))
    hd95 = next(line for line in lines if line.lstrip("│ ").startswith("HD95_min"))
    assert "the paper's 'HD95'" in hd50 and "paper" not in hd95
    assert any("ODS F1" in line and "pixels pooled over all images" in line for line in lines)
    assert any("OIS F1" in line and "each image's best-threshold F1" in line for line in lines)
