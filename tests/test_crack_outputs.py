"""What `segment` writes about crack instances: the list in each frame's JSON and cracks.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_segment import _DarkIsCrack, _tiny_job, cli

from csbsr_cli.data.image_io import write_png
from csbsr_cli.infer.gsd import GsdOptions
from csbsr_cli.infer.inputs import discover
from csbsr_cli.infer.outputs import (
    CRACK_FIELDS,
    CRACK_MM_FIELDS,
    GSD_FIELDS,
    MM_FIELDS,
    SUMMARY_FIELDS,
    OutputOptions,
    parse_outputs,
)
from csbsr_cli.infer.pipeline import segment
from csbsr_cli.infer.runner import TorchRunner


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """Two frames: one dark line 50 input px long (a crack) and a dot; nothing dark at all."""
    folder = tmp_path_factory.mktemp("frames")
    img = np.full((40, 60, 3), 0.7, np.float32)
    img[20, 5:55] = 0.05
    img[8:10, 40:42] = 0.05
    write_png(folder / "a.png", img)
    write_png(folder / "b.png", np.full((40, 60, 3), 0.7, np.float32))
    return folder


def run(frames: Path, out: Path, gsd_mm: float | None) -> list[dict[str, str]]:
    runner = TorchRunner(_DarkIsCrack(), torch.device("cpu"), None, 4)
    options = OutputOptions(0.5, gsd=GsdOptions(mm_per_px=gsd_mm), outputs=parse_outputs("mask,geojson,coco"))
    result = segment(discover([str(frames)]), out, runner, _tiny_job(options))
    assert result.processed == 2
    with open(out / "cracks.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cracks_csv_and_json_list_every_crack_in_input_pixels_and_mm(frames: Path, tmp_path: Path) -> None:
    rows = run(frames, tmp_path / "mm", gsd_mm=2.0)
    assert list(rows[0]) == [*CRACK_FIELDS, *CRACK_MM_FIELDS]
    assert [(r["frame"], r["crack_id"]) for r in rows] == [("a", "1"), ("a", "2")]  # b has none
    dot, line = sorted(rows, key=lambda r: float(r["length_px_input"]))
    assert float(line["length_px_input"]) == pytest.approx(50, abs=2)
    assert float(line["length_mm"]) == pytest.approx(2 * float(line["length_px_input"]), abs=1e-3)
    assert float(line["max_width_mm"]) == pytest.approx(2 * float(line["max_width_px_input"]), abs=1e-3)
    assert (
        0
        <= int(line["bbox_y_px_input"])
        <= 20
        < int(line["bbox_y_px_input"]) + int(line["bbox_height_px_input"])
    )
    assert int(line["bbox_width_px_input"]) == pytest.approx(50, abs=2)
    assert float(dot["length_px_input"]) < 5
    record = json.loads((tmp_path / "mm" / "json" / "a.json").read_text())
    assert record["crack_count"] == 2
    by_id = {str(c["crack_id"]): c for c in record["cracks"]}
    assert by_id[line["crack_id"]]["length_px_input"] == float(line["length_px_input"])
    assert by_id[line["crack_id"]]["bbox_px_input"][2] == int(line["bbox_width_px_input"])
    assert json.loads((tmp_path / "mm" / "json" / "b.json").read_text())["cracks"] == []


def test_geojson_per_frame_parses_and_lies_inside_the_frame(frames: Path, tmp_path: Path) -> None:
    run(frames, tmp_path, gsd_mm=None)
    record = json.loads((tmp_path / "json" / "a.json").read_text())
    assert record["outputs"]["geojson"] == "geojson/a.geojson"
    doc = json.loads((tmp_path / "geojson" / "a.geojson").read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection"
    assert {f["properties"]["crack_id"] for f in doc["features"]} == {c["crack_id"] for c in record["cracks"]}
    points = []
    for feature in doc["features"]:
        geometry = feature["geometry"]
        points += geometry["coordinates"] if geometry["type"] == "LineString" else [geometry["coordinates"]]
    xs, ys = np.array(points).T
    assert xs.min() >= 0 and xs.max() <= 60 and ys.min() >= 0 and ys.max() <= 40  # the 60 x 40 frame
    line = max(doc["features"], key=lambda f: f["properties"]["length_px_input"])
    assert np.allclose(np.array(line["geometry"]["coordinates"])[:, 1], 20.5, atol=0.5)  # the dark row 20
    assert json.loads((tmp_path / "geojson" / "b.geojson").read_text())["features"] == []


def test_cracks_csv_without_gsd_has_no_mm_columns(frames: Path, tmp_path: Path) -> None:
    rows = run(frames, tmp_path / "px", gsd_mm=None)
    assert list(rows[0]) == list(CRACK_FIELDS) and len(rows) == 2


def test_every_column_is_documented_and_help_links_the_docs(capsys) -> None:
    docs = (Path(__file__).parents[1] / "docs" / "outputs.md").read_text(encoding="utf-8")
    for column in (*CRACK_FIELDS, *CRACK_MM_FIELDS, *SUMMARY_FIELDS, *GSD_FIELDS, *MM_FIELDS):
        assert f"`{column}`" in docs, column
    code, text = cli(capsys, "segment", "--help")
    assert code == 0 and "docs/outputs.md" in text


def test_coco_file_decodes_to_exactly_the_input_scale_mask(frames: Path, tmp_path: Path) -> None:
    mask_api = pytest.importorskip("pycocotools.mask")
    run(frames, tmp_path, gsd_mm=None)
    doc = json.loads((tmp_path / "coco.json").read_text(encoding="utf-8"))
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in doc["images"]] == [
        (1, "a.png", 60, 40),
        (2, "b.png", 60, 40),
    ]
    assert doc["categories"][0]["name"] == "crack" and len(doc["annotations"]) == 2
    union = np.zeros((40, 60), bool)
    for ann in doc["annotations"]:
        assert ann["image_id"] == 1 and ann["segmentation"]["size"] == [40, 60]
        rle = {**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()}
        decoded = mask_api.decode(rle).astype(bool)
        assert decoded.sum() == ann["area"] and mask_api.toBbox(rle).tolist() == ann["bbox"]
        union |= decoded
    sr_mask = cv2.imread(str(tmp_path / "mask" / "a.png"), cv2.IMREAD_UNCHANGED) > 0
    np.testing.assert_array_equal(union, sr_mask.reshape(40, 4, 60, 4).any(axis=(1, 3)))
