"""Crack instances as GeoJSON (structure, input-frame pixel coordinates, measures) and as COCO RLE masks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from csbsr_cli.infer.annotations import coco_fields, frame_geojson, rle_counts, rle_string
from csbsr_cli.infer.instances import find_cracks

SCALE = 4


def test_geojson_features_carry_each_polyline_and_its_crack() -> None:
    mask = np.zeros((120, 480), bool)  # SR grid of a 120 x 30 input frame
    mask[40:48, 40:440] = True  # a crack 100 x 2 input px
    mask[100, 8] = True  # a one-pixel speck
    cracks = find_cracks(mask, SCALE)
    doc = json.loads(json.dumps(frame_geojson("f", (120, 30), cracks)))
    assert doc["type"] == "FeatureCollection" and doc["csbsr"]["size_px_input"] == [120, 30]
    bar, speck = doc["features"]
    assert bar["geometry"]["type"] == "LineString" and speck["geometry"]["type"] == "Point"
    assert bar["geometry"]["coordinates"] == [list(p) for p in cracks[0].polylines[0]]
    assert speck["geometry"]["coordinates"] == [2.125, 25.125]
    props = bar["properties"]
    assert (props["frame"], props["crack_id"], props["polyline"]) == ("f", 1, 0)
    assert props["length_px_input"] == cracks[0].length_px_input and props["max_width_px_input"] == 2.0
    assert len(props["width_profile_px_input"]) == len(bar["geometry"]["coordinates"])
    xs, ys = np.array(bar["geometry"]["coordinates"]).T
    assert xs.min() > 10 and xs.max() < 110 and np.all(np.abs(ys - 11) <= 0.5)
    assert frame_geojson("g", (8, 8), [])["features"] == []


def test_rle_known_answers() -> None:
    """Hand-computed: column-major runs, zeros first; 5-bit characters offset by 48, 32 = more follow."""
    two = np.array([[0, 1], [0, 1]], bool)  # column 0 empty, column 1 full
    assert rle_counts(two, (0, 0), (2, 2)) == [2, 2] and rle_string([2, 2]) == "22"
    dot = np.ones((1, 1), bool)  # pixel (row 5, column 3) of a 10 x 10 frame: index 3 * 10 + 5
    assert rle_counts(dot, (3, 5), (10, 10)) == [35, 1, 64]
    assert rle_string([35, 1, 64]) == "S11P2"  # 35 = 3 + 32 * 1; 64 = 0 + 32 * 2
    # From the fourth run on, the count minus the one two before: 4 - 5 = -1 -> 31 (two's complement) + 48
    assert rle_string([0, 5, 3, 4]) == "053O"
    # 30 has the sign bit (16) of its 5 set: a 0 follows (30 + 32 + 48 = "n", then "0") to keep it positive
    assert rle_string([1, 2, 30, 1]) == "12n0O"
    assert rle_counts(np.zeros((2, 2), bool), (0, 0), (3, 4)) == [12]


def test_rle_matches_pycocotools() -> None:
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        ch, cw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = rng.random((ch, cw)) < rng.random()
        frame = np.zeros((h, w), np.uint8)
        frame[y : y + ch, x : x + cw] = crop
        expected = mask_api.encode(np.asfortranarray(frame))["counts"].decode()
        assert rle_string(rle_counts(crop, (x, y), (h, w))) == expected


def test_coco_masks_decode_to_exactly_each_cracks_input_pixels() -> None:
    """Each crack's RLE is the input pixels whose 4 x 4 SR block holds its pixels; together, the input-scale
    mask (as --mask-scale input writes it)."""
    mask_api = pytest.importorskip("pycocotools.mask")
    sr = np.zeros((160, 240), np.uint8)  # a 60 x 40 input frame
    cv2.line(sr, (10, 10), (230, 150), 1, 3)
    cv2.circle(sr, (60, 110), 30, 1, 2)
    sr[5, 200] = 1
    n, labels = cv2.connectedComponents(sr, connectivity=8)
    cracks = find_cracks(sr.astype(bool), SCALE)
    assert len(cracks) == n - 1 == 3
    union = np.zeros((40, 60), bool)
    for crack in cracks:
        fields = coco_fields(crack, (40, 60))
        decoded = mask_api.decode({**fields["rle"], "counts": fields["rle"]["counts"].encode()}).astype(bool)
        blocks = (labels == crack.crack_id).reshape(40, SCALE, 60, SCALE).any(axis=(1, 3))
        np.testing.assert_array_equal(decoded, blocks)
        assert fields["mask_pixels_input"] == blocks.sum()
        x, y, w, h = crack.bbox_px_input
        assert blocks[y : y + h, x : x + w].sum() == blocks.sum() and blocks[y, x : x + w].any()
        union |= decoded
    np.testing.assert_array_equal(union, sr.reshape(40, SCALE, 60, SCALE).any(axis=(1, 3)))
