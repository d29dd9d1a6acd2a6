"""Crack instances as GeoJSON: valid structure, input-frame pixel coordinates, measures as properties."""

from __future__ import annotations

import json

import numpy as np

from csbsr_cli.infer.annotations import frame_geojson
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
