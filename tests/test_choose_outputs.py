"""`segment --outputs`: lean defaults (a 1280x720 frame under 2 MB), the optional maps, and the overlay."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from test_segment import _DarkIsCrack, _tiny_job, cli

from csbsr_cli.data.image_io import quantise, read_image, write_png
from csbsr_cli.errors import InputError
from csbsr_cli.infer.inputs import discover
from csbsr_cli.infer.outputs import DEFAULT_OUTPUTS, OutputOptions, parse_outputs
from csbsr_cli.infer.overlay import COLOURS, MIN_LABELLED_HEIGHT, render
from csbsr_cli.infer.pipeline import segment
from csbsr_cli.infer.runner import TorchRunner
from csbsr_cli.report.severity import DEFAULT_THRESHOLDS_MM

MB = 1 << 20


def _lines(h: int, w: int) -> np.ndarray:
    """A grey frame with a few dark lines (cracks for _DarkIsCrack) over some texture."""
    rng = np.random.default_rng(0)
    img = (0.55 + 0.15 * cv2.resize(rng.random((h // 8, w // 8)), (w, h)))[:, :, None].repeat(3, 2)
    for i in range(4):
        cv2.line(img, (40 + 150 * i, 30), (300 + 200 * i, h - 40), (0.05, 0.05, 0.05), 2 + i)
    return img.astype(np.float32)


def _run(tmp_path: Path, image: np.ndarray, **options) -> Path:
    write_png(tmp_path / "in" / "a.png", image)
    runner = TorchRunner(_DarkIsCrack(), torch.device("cpu"), None, 1)
    job = _tiny_job(OutputOptions(0.5, **options), tile=0, overlap=0)
    result = segment(discover([str(tmp_path / "in")]), tmp_path / "out", runner, job)
    assert result.processed == 1, result.records
    return tmp_path / "out"


def test_default_outputs_of_a_1280x720_frame_are_lean(tmp_path: Path) -> None:
    out = _run(tmp_path, _lines(720, 1280))
    files = {p.relative_to(out).as_posix(): p.stat().st_size for p in out.rglob("*") if p.is_file()}
    per_frame = {k: v for k, v in files.items() if "/" in k}
    assert sorted(per_frame) == ["json/a.json", "mask/a.png", "overlay/a.jpg"]
    assert sorted(set(files) - set(per_frame)) == ["cracks.csv", "run.json", "summary.csv"]
    assert sum(per_frame.values()) <= 2 * MB, per_frame  # the 16-bit SR probability map alone is ~20 MB
    record = json.loads((out / "json" / "a.json").read_text(encoding="utf-8"))
    assert record["crack_count"] == 4 and record["settings"]["options"]["outputs"] == list(DEFAULT_OUTPUTS)
    assert "rle" not in record["cracks"][0]  # kept for coco.json only


def test_prob8_is_the_block_maximum_of_the_probability(tmp_path: Path) -> None:
    out = _run(tmp_path, _lines(60, 80)[:60, :80], outputs=("prob", "prob8", "json"), prob_format="tiff")
    prob = tifffile.imread(out / "prob" / "a.tiff")
    prob8 = cv2.imread(str(out / "prob8" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert prob8.shape == (60, 80) and prob8.dtype == np.uint8 and prob8.max() > 200
    np.testing.assert_array_equal(prob8, quantise(prob.reshape(60, 4, 80, 4).max(axis=(1, 3)), np.uint8))
    assert not (out / "mask").exists() and not (out / "overlay").exists() and not (out / "coco.json").exists()


def test_overlay_on_the_sr_frame(tmp_path: Path) -> None:
    out = _run(tmp_path, _lines(60, 80), outputs=("overlay", "json"), overlay_on="sr")
    assert read_image(out / "overlay" / "a.jpg").shape[:2] == (240, 320)
    assert not (out / "sr").exists()  # the SR frame is drawn on, not saved


def test_overlay_colours_cracks_by_severity_with_ids_and_a_legend() -> None:
    base = np.full((MIN_LABELLED_HEIGHT, 400, 3), 128, np.uint8)
    ids = np.zeros(base.shape[:2], np.int32)
    ids[100:120, 250:390] = 1
    ids[150:170, 250:390] = 2
    cracks = [
        {"crack_id": 1, "bbox_px_input": [250, 100, 140, 20], "severity": "insignificant"},
        {"crack_id": 2, "bbox_px_input": [250, 150, 140, 20], "severity": "wide"},
    ]
    image = cv2.imdecode(np.frombuffer(render(base, ids, cracks, 1, DEFAULT_THRESHOLDS_MM, 0.5), np.uint8), 1)
    rgb = image[:, :, ::-1].astype(float)
    for crack_id, name in ((1, "insignificant"), (2, "wide")):
        expected = 0.4 * 128 + 0.6 * np.array(COLOURS[name])
        assert np.abs(np.median(rgb[ids == crack_id], axis=0) - expected).max() < 12, name
    assert (rgb[85:99, 250:262] > 200).any() and rgb[:85, 250:262].std() < 3  # the id "1" above crack 1
    assert rgb[-30:, :60].mean() < 80 and rgb[:40, :200].std() < 3  # the legend darkens the bottom-left
    small = render(base[:60], ids[:60], cracks, 1, DEFAULT_THRESHOLDS_MM, 0.5)
    assert np.abs(cv2.imdecode(np.frombuffer(small, np.uint8), 1).astype(float) - 128).max() < 4  # no text


def test_outputs_are_parsed_and_fingerprinted(tmp_path: Path, capsys) -> None:
    assert parse_outputs("prob, mask") == ("mask", "prob", "json")
    assert parse_outputs("json") == ("json",)
    with pytest.raises(InputError, match="--outputs: unknown output 'pdf'"):
        parse_outputs("mask,pdf")
    code, text = cli(capsys, "segment", str(tmp_path), "-o", str(tmp_path / "o"), "--outputs", "probb")
    assert code == 2 and "unknown output 'probb'" in text
    out = _run(tmp_path, _lines(60, 80), outputs=("mask", "json"))
    runner = TorchRunner(_DarkIsCrack(), torch.device("cpu"), None, 1)
    sources = discover([str(tmp_path / "in")])
    for outputs, redone in ((("mask", "json"), 0), (("mask", "prob", "json"), 1)):
        job = _tiny_job(OutputOptions(0.5, outputs=outputs), tile=0, overlap=0)
        assert segment(sources, out, runner, job, resume=True).processed == redone


def test_overlay_draws_the_ids_of_the_longest_cracks_only(monkeypatch) -> None:
    monkeypatch.setattr("csbsr_cli.infer.overlay.MAX_IDS", 1)
    base = np.full((MIN_LABELLED_HEIGHT, 400, 3), 128, np.uint8)
    ids = np.zeros(base.shape[:2], np.int32)
    cracks = [
        {"crack_id": 1, "bbox_px_input": [250, 60, 20, 2], "length_px_input": 20.0},
        {"crack_id": 2, "bbox_px_input": [250, 150, 100, 2], "length_px_input": 100.0},
    ]
    jpeg = render(base, ids, cracks, 1, DEFAULT_THRESHOLDS_MM, None)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1)
    assert np.abs(image[40:60, 240:280].astype(float) - 128).max() < 6  # crack 1 (short): no id
    assert (image[135:150, 250:262] > 200).any()  # crack 2 (longest): its id
