"""The shape step: crack-like pieces stay, short pieces and blobs go, at one threshold or all of them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from csbsr_cli.infer.shape import ShapeRule, clean_mask, piece_lengths, shaped_level_map
from csbsr_cli.metrics.segmentation import N_THRESHOLDS, level_map


def line_and_blob() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2 px wide, 60 px long line and a disc of about the same area, apart."""
    line = np.zeros((80, 160), bool)
    line[20:22, 10:70] = True
    blob = np.zeros_like(line)
    cv2.circle(blob.view(np.uint8), (120, 40), 6, 1, -1)
    assert abs(int(blob.sum()) - int(line.sum())) < 15
    return line, blob, line | blob


def test_piece_lengths_follow_the_measure_convention():
    line, blob, both = line_and_blob()
    n, labels = cv2.connectedComponents(both.view(np.uint8), connectivity=8)
    lengths = piece_lengths(both, labels, n)
    assert lengths[labels[20, 30]] == pytest.approx(60, abs=1.5)  # a bar of L pixels measures L
    assert lengths[labels[40, 120]] < 20


def test_shape_step_keeps_a_thin_line_and_drops_a_blob_of_the_same_area():
    line, _, both = line_and_blob()
    cleaned, report = clean_mask(both, ShapeRule(min_length=5, min_elongation=4))  # the disc is long enough
    np.testing.assert_array_equal(cleaned, line)
    assert report.pieces == 2 and report.removed_pieces == 1 and report.removed_blobs == 1
    assert report.removed_pixels == int((both & ~line).sum())


def test_min_length_alone_drops_short_pieces_and_zero_keeps_everything():
    line, _, both = line_and_blob()
    short = both.copy()
    short[60, 10:25] = True  # a 15 px crack
    cleaned, report = clean_mask(short, ShapeRule(min_length=20))
    assert not cleaned[60].any() and cleaned[20:22].sum() == line.sum()
    assert report.removed_short == 2  # the 15 px line and the disc (its skeleton is short too)
    kept, nothing = clean_mask(short, ShapeRule())
    np.testing.assert_array_equal(kept, short)
    assert nothing.removed_pieces == 0


def test_shaped_level_map_is_the_step_at_every_threshold():
    line, blob, _ = line_and_blob()
    prob = np.where(line, 0.9, 0.0) + np.where(blob, 0.6, 0.0)
    prob[50, 10:70] = 0.3  # a faint long crack: kept up to 0.29
    level = level_map(prob.astype(np.float32))
    rule = ShapeRule(min_length=20, min_elongation=4)
    shaped = shaped_level_map(level, rule)
    for s in (0, 29, 59, 89, N_THRESHOLDS - 1):
        expected, _ = clean_mask(level > s, rule)
        np.testing.assert_array_equal(shaped > s, expected)
    assert not (shaped[blob] > 0).any()  # the blob is gone at every threshold
    np.testing.assert_array_equal(shaped_level_map(level, ShapeRule()), level)
