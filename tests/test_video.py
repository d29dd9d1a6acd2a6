"""Videos in `segment`: each frame's time and the stream's fps in the JSON and CSVs, and the annotated mp4."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_segment import _DarkIsCrack, _tiny_job

from csbsr_cli.errors import InputError
from csbsr_cli.infer.inputs import discover
from csbsr_cli.infer.outputs import OutputOptions, parse_outputs
from csbsr_cli.infer.pipeline import segment
from csbsr_cli.infer.runner import TorchRunner
from csbsr_cli.infer.video import write_videos

FPS, FRAMES, EVERY = 5.0, 6, 2
SIZE = (64, 48)  # width, height


def _clip(path: Path) -> None:
    """FRAMES frames at FPS, each with a dark line that moves down by 4 px per frame."""
    path.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    for i in range(FRAMES):
        frame = np.full((SIZE[1], SIZE[0], 3), 180, np.uint8)
        frame[10 + 4 * i : 12 + 4 * i, 4:60] = 10
        writer.write(frame)
    writer.release()


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_video_frames_carry_time_and_fps_and_make_an_annotated_mp4(tmp_path: Path) -> None:
    _clip(tmp_path / "in" / "clip.avi")
    options = OutputOptions(0.5, outputs=parse_outputs("mask,overlay,json,video"))
    runner = TorchRunner(_DarkIsCrack(), torch.device("cpu"), None, 4)
    out = tmp_path / "out"
    result = segment(discover([str(tmp_path / "in")]), out, runner, _tiny_job(options), every=EVERY)
    assert result.processed == FRAMES // EVERY
    times = {"clip/000000": 0.0, "clip/000002": 0.4, "clip/000004": 0.8}  # index / fps
    for key, time_s in times.items():
        record = json.loads((out / "json" / f"{key}.json").read_text(encoding="utf-8"))
        assert (record["time_s"], record["fps"]) == (time_s, FPS)
    summary = _read(out / "summary.csv")
    assert [(r["frame"], float(r["time_s"]), float(r["fps"])) for r in summary] == [
        (k, t, FPS) for k, t in times.items()
    ]
    cracks = _read(out / "cracks.csv")
    assert {(r["frame"], float(r["time_s"])) for r in cracks} == set(times.items())
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["videos"] == {"video/clip.mp4": 3}
    cap = cv2.VideoCapture(str(out / "video" / "clip.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS / EVERY)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    stamps, rows = [], []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        stamps.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
        assert frame.shape[:2] == (SIZE[1], SIZE[0])
        rows.append(int(np.argmax(frame[:, :, 2].astype(int) - frame[:, :, 1])))  # the red-tinted crack row
    cap.release()
    assert stamps == pytest.approx(list(times.values()), abs=1e-3)  # the output's times are the input's
    assert rows[0] < rows[1] < rows[2]  # the frames in order: the crack moves down


def test_a_failed_frame_repeats_the_one_before(tmp_path: Path) -> None:
    colours = {0: 30, 2: 0, 4: 220}  # frame 2 failed (no overlay)
    records = []
    for index, grey in colours.items():
        record = {"frame": f"v/{index:06d}", "video_frame": index, "fps": 10.0, "status": "ok"}
        if grey:
            cv2.imwrite(str(tmp_path / f"{index}.jpg"), np.full((32, 48, 3), grey, np.uint8))
            record["outputs"] = {"overlay": f"{index}.jpg"}
        else:
            record["status"] = "failed"
        records.append(record)
    assert write_videos(tmp_path, records, EVERY) == {"video/v.mp4": 3}
    cap = cv2.VideoCapture(str(tmp_path / "video" / "v.mp4"))
    means = []
    while (frame := cap.read())[0]:
        means.append(frame[1].mean())
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    assert means == pytest.approx([30, 30, 220], abs=6)


def test_video_needs_the_overlays() -> None:
    with pytest.raises(InputError, match="video is made of the overlays: add overlay"):
        parse_outputs("mask,video")
