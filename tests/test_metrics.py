"""Metrics: parity with the authors' code (reference fixtures, paper preset) and known answers (default).

The fixture values were produced by the authors' metric code and DeepMind's surface-distance 0.1; IoU and
HD are compared exactly (integer counts, distances sqrt(integer)), PSNR to 1e-4 dB, SSIM to 1e-5.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from csbsr_cli.errors import InputError
from csbsr_cli.metrics import (
    DEFAULT,
    PAPER,
    THRESHOLDS,
    evaluate_image,
    evaluate_masks,
    get_preset,
    image_quality,
    kernel_psnr,
    summarize,
    summarize_quality,
)
from csbsr_cli.metrics.distance import BOTH_EMPTY, BOTH_PRESENT, FALSE_ALARM, MISSED


@pytest.fixture(scope="module")
def fixture_data(fixtures_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    expected = json.loads((fixtures_dir / "metrics_expected.json").read_text())
    with np.load(fixtures_dir / "metrics_inputs.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return expected, arrays


@pytest.fixture(scope="module")
def paper_results(fixture_data):
    expected, arrays = fixture_data
    items = [
        (p["name"], arrays[f"{p['name']}__mask"], arrays[f"{p['name']}__prob"]) for p in expected["per_image"]
    ]
    return evaluate_masks(items, PAPER)


# ----------------------------------------------------------------------------------------------------
# Parity with the authors' code (paper preset).


def test_thresholds_match_the_authors_float32_values(fixture_data):
    _, arrays = fixture_data
    np.testing.assert_array_equal(THRESHOLDS, arrays["thresholds_float32"])


def test_paper_per_image_values_are_exact(fixture_data, paper_results):
    expected, _ = fixture_data
    assert PAPER.hd_percentiles == (50.0, 95.0)
    for exp, got in zip(expected["per_image"], paper_results, strict=True):
        assert got.name == exp["name"] and got.preset == "paper"
        assert got.gt_pixels == exp["gt_pixels_iou_rule(>0.5)"]
        assert got.gt_pixels_hd == exp["gt_pixels_hd_rule(>0)"]
        np.testing.assert_array_equal(got.iou, exp["iou"], err_msg=exp["name"])
        np.testing.assert_array_equal(got.hd[0], exp["hd50"], err_msg=exp["name"])
        np.testing.assert_array_equal(got.hd[1], exp["hd95"], err_msg=exp["name"])
        np.testing.assert_allclose(got.msd, exp["msd"], rtol=0, atol=1e-9, err_msg=exp["name"])
        outliers = np.isin(got.hd_case, (MISSED, FALSE_ALARM)).sum()
        assert outliers == exp["hd_outliers_p50"], exp["name"]


def test_paper_dataset_summary(fixture_data, paper_results):
    expected, _ = fixture_data
    summary = summarize(paper_results, PAPER)
    want = expected["dataset_summary"]
    for key in ("IoU_max", "AIU", "HD50_min", "AHD50", "HD95_min", "AHD95", "MSD_min", "AMSD"):
        assert summary[key] == pytest.approx(want[key], rel=0, abs=1e-9), key
    # The headline figures quoted in the fixture README.
    assert round(summary["IoU_max"], 5) == 0.48186 and round(summary["AIU"], 5) == 0.41116
    assert round(summary["HD50_min"], 3) == 44.064 and round(summary["AHD50"], 3) == 52.558
    assert round(summary["HD95_min"], 3) == 59.593 and round(summary["AHD95"], 3) == 73.220
    dataset = expected["dataset"]
    assert summary["IoU_max_threshold"] == dataset["IoU"]["argmax_threshold"]
    assert summary["HD50_min_threshold"] == dataset["HD50"]["argmin_threshold"]
    assert summary["HD95_min_threshold"] == pytest.approx(dataset["HD95"]["argmin_threshold"])


def test_paper_image_quality(fixture_data):
    expected, arrays = fixture_data
    rows = []
    for pair in expected["sr_pairs"]:
        name = pair["name"]
        sr = arrays[f"{name}__sr_raw"][0].transpose(1, 2, 0)  # (1,3,H,W) unclipped -> HxWx3
        rows.append(image_quality(name, sr, arrays[f"{name}__hr"], PAPER))
        assert rows[-1].psnr == pytest.approx(pair["psnr"], abs=1e-4)
        assert rows[-1].ssim == pytest.approx(pair["ssim"], abs=1e-5)
    summary = summarize_quality(rows)
    assert summary["PSNR_mean"] == pytest.approx(expected["sr_dataset"]["PSNR_mean"], abs=1e-4)
    assert summary["SSIM_mean"] == pytest.approx(expected["sr_dataset"]["SSIM_mean"], abs=1e-5)
    for pair in expected["kernel_pairs"]:
        name = pair["name"]
        got = kernel_psnr(arrays[f"{name}_pred"], arrays[f"{name}_gt_png"])
        assert got == pytest.approx(pair["psnr"], abs=1e-4)


# ----------------------------------------------------------------------------------------------------
# Known answers (default preset), no fixtures needed.


def _square(shape=(40, 40), top=10, left=10, size=10) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[top : top + size, left : left + size] = 255
    return mask


def _prob(mask: np.ndarray) -> np.ndarray:
    return (mask > 0).astype(np.float32)


def test_two_squares_iou_and_f1():
    gt, pred = _square(left=10), _square(left=15)  # overlap 10x5 = 50, union 150
    r = evaluate_image("squares", gt, _prob(pred), DEFAULT)
    np.testing.assert_allclose(r.iou, 1 / 3)
    np.testing.assert_allclose(r.f1, 0.5)
    assert (r.tp == 50).all() and (r.fp == 50).all() and (r.fn == 50).all()
    # Distance: every contour point of one square is within 5 px of the other contour.
    assert (r.hd[0] > 0).all() and (r.hd[0] <= 5).all()


@pytest.mark.parametrize("shift", [(0, 1), (0, 3), (4, 0), (0, 7)])
def test_single_pixel_shift_known_hausdorff(shift):
    """A 1-pixel GT vs the same pixel moved by k: its 4 corners lie at k and k-1 from the other's corners."""
    k = max(abs(shift[0]), abs(shift[1]))
    gt = np.zeros((30, 30), np.uint8)
    gt[10, 10] = 255
    pred = np.roll(gt, shift, axis=(0, 1))
    preset = get_preset("default")
    r = evaluate_image("pixel", gt, _prob(pred), preset)
    assert (r.hd[0] == k).all()  # HD95
    np.testing.assert_allclose(r.msd, k - 0.5)
    fifty = evaluate_image("pixel", gt, _prob(pred), PAPER)  # percentile 50 picks the nearer corners
    assert (fifty.hd[0] == k - 1).all() and (fifty.hd[1] == k).all()


def test_perfect_prediction():
    gt = _square()
    r = evaluate_image("perfect", gt, _prob(gt), DEFAULT)
    assert (r.iou == 1).all() and (r.f1 == 1).all() and (r.hd == 0).all() and (r.msd == 0).all()
    assert (r.hd_case == BOTH_PRESENT).all()
    summary = summarize([r], DEFAULT)
    assert summary["IoU_max"] == 1 and summary["AIU"] == 1 and summary["AUPRC"] == 1
    assert summary["ODS_F1"] == 1 and summary["OIS_F1"] == 1 and summary["HD95_min"] == 0


def test_both_empty():
    empty = np.zeros((20, 30), np.uint8)
    r = evaluate_image("empty", empty, np.zeros((20, 30), np.float32), DEFAULT)
    assert (r.iou == 1).all() and (r.f1 == 1).all() and (r.hd == 0).all() and (r.fpr == 0).all()
    assert (r.hd_case == BOTH_EMPTY).all() and r.crack_free


def test_exactly_one_empty_scores_the_diagonal_and_is_counted():
    shape = (30, 40)
    diagonal = math.hypot(*shape)
    crack = _square(shape, size=5)
    missed = evaluate_image("missed", crack, np.zeros(shape, np.float32), DEFAULT)
    assert (missed.iou == 0).all() and (missed.hd == diagonal).all() and (missed.hd_case == MISSED).all()
    alarm = evaluate_image("alarm", np.zeros(shape, np.uint8), _prob(crack), DEFAULT)
    assert (alarm.iou == 0).all() and (alarm.hd == diagonal).all() and (alarm.hd_case == FALSE_ALARM).all()
    np.testing.assert_allclose(alarm.fpr, 25 / (30 * 40))
    summary = summarize([missed, alarm], DEFAULT)
    cases = summary["empty_mask_cases"]
    assert cases["missed"] == {"image_thresholds": 99, "images": 1}
    assert cases["false_alarm"] == {"image_thresholds": 99, "images": 1}
    assert summary["crack_free"]["images"] == 1 and summary["crack_free"]["images_with_false_positives"] == 1


def test_paper_rules_width_smoothing_and_hd_binarisation():
    shape = (50, 20)  # H > W: the authors score one-empty with the width, not max(H, W)
    alarm = evaluate_image("alarm", np.zeros(shape, np.uint8), _prob(_square(shape, size=4)), PAPER)
    assert (alarm.hd == 20).all()
    np.testing.assert_allclose(alarm.iou, 1e-5 / (16 + 1e-5))
    faint = np.zeros(shape, np.uint8)
    faint[10:14, 5:9] = 60  # crack for HD (> 0) but not for IoU (>= 128)
    r = evaluate_image("faint", faint, _prob(faint), PAPER)
    assert r.gt_pixels == 0 and r.gt_pixels_hd == 16
    assert (r.hd == 0).all() and (r.hd_case == BOTH_PRESENT).all()
    assert (evaluate_image("faint", faint, _prob(faint), DEFAULT).hd_case == FALSE_ALARM).all()


def test_strict_threshold_comparison():
    gt = _square(size=4)
    prob = np.where(gt > 0, np.float32(THRESHOLDS[49]), np.float32(0)).astype(np.float32)  # exactly 0.5
    r = evaluate_image("ties", gt, prob, DEFAULT)
    assert (r.iou[:49] == 1).all() and (r.iou[49:] == 0).all()  # prob > 0.5 is false at t = 0.5


def test_input_validation():
    with pytest.raises(InputError, match="uint8"):
        evaluate_image("x", np.zeros((4, 4), np.uint16), np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="^x: probability map must be floating"):
        evaluate_image("x", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        evaluate_image("x", np.zeros((4, 4), np.uint8), np.full((4, 4), np.nan, np.float32))
    with pytest.raises(InputError, match="differs"):
        evaluate_image("x", np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.float32))
    with pytest.raises(InputError, match="unknown metric preset"):
        get_preset("nope")
    with pytest.raises(InputError, match="preset"):
        summarize([evaluate_image("x", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.float32))], PAPER)


def test_image_metrics_known_answers():
    hr = np.zeros((16, 16, 3), np.uint8)
    sr = np.full((16, 16, 3), 0.1, np.float32)
    q = image_quality("flat", sr, hr, DEFAULT)
    assert q.psnr == pytest.approx(20.0) and q.preset == "default"
    same = image_quality("same", hr.astype(np.float32) / 255, hr, DEFAULT)
    assert same.psnr == math.inf and same.ssim == pytest.approx(1.0)
    uniform = np.full((21, 21), 255, np.uint8)
    assert kernel_psnr(np.zeros((21, 21)), uniform) == pytest.approx(20 * math.log10(441))
    assert kernel_psnr(np.full((21, 21), 1 / 441), uniform) == math.inf
