"""The correction loop: COCO masks (segment's coco.json, or CVAT's polygons) back as training labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_segment import _DarkIsCrack, _tiny_job
from test_train_engine import make_workspace, run_config

from csbsr_cli.data.boxes import BoxCrops
from csbsr_cli.data.coco import coco_samples
from csbsr_cli.data.degrade import DegradeConfig
from csbsr_cli.data.image_io import write_png
from csbsr_cli.data.rle import decode_segmentation, rle_counts_from_string
from csbsr_cli.errors import InputError
from csbsr_cli.infer.annotations import rle_counts, rle_string
from csbsr_cli.infer.inputs import discover
from csbsr_cli.infer.outputs import OutputOptions
from csbsr_cli.infer.pipeline import segment
from csbsr_cli.infer.runner import TorchRunner
from csbsr_cli.train.config import make_config
from csbsr_cli.train.data import build_data
from csbsr_cli.train.engine import train


@pytest.mark.parametrize("seed", range(5))
def test_compressed_rle_decodes_what_segment_encodes(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((23, 31)) < rng.uniform(0.05, 0.6)
    counts = rle_counts(mask, (0, 0), mask.shape)
    assert rle_counts_from_string(rle_string(counts)) == counts
    rle = {"size": list(mask.shape), "counts": rle_string(counts)}
    np.testing.assert_array_equal(decode_segmentation(rle, *mask.shape), mask)
    np.testing.assert_array_equal(decode_segmentation({"counts": counts}, *mask.shape), mask)  # plain RLE


def test_polygons_fill_their_pixels():
    mask = decode_segmentation([[2, 1, 6, 1, 6, 4, 2, 4]], 8, 10)
    assert mask.sum() == 5 * 4 and mask[1:5, 2:7].all()


def frames_with_coco(tmp_path):
    """Two frames with a dark line each, segmented with `--outputs coco`: a real coco.json."""
    frames = tmp_path / "frames"
    for i in range(2):
        img = np.full((48, 64, 3), 0.7, np.float32)
        img[20 + 4 * i, 4:60] = 0.05
        write_png(frames / f"f{i}.png", img)
    runner = TorchRunner(_DarkIsCrack(), torch.device("cpu"), None, 4)
    options = OutputOptions(0.5, outputs=("mask", "json", "coco"))
    segment(discover([str(frames)]), tmp_path / "run", runner, _tiny_job(options))
    return frames, tmp_path / "run" / "coco.json"


def test_coco_frames_train_as_lr_inputs_with_the_mask_on_the_sr_grid(tmp_path):
    frames, coco = frames_with_coco(tmp_path)
    samples = coco_samples(coco, frames)
    assert [s.name for s in samples] == ["coco/f0.png", "coco/f1.png"] and all(s.positive for s in samples)
    crops = BoxCrops(
        samples, crop=64, config=DegradeConfig(scale=4), presentation="lr", augment=False, focus=1
    )
    item = crops[0]
    assert int(item["sup"]) == 0 and float(item["has_hr"]) == 0 and item["lr"].shape == (3, 16, 16)
    mask = item["mask"][0].numpy()
    assert mask.shape == (64, 64) and mask.any()
    blocks = mask.reshape(16, 4, 16, 4)
    assert (blocks.min(axis=(1, 3)) == blocks.max(axis=(1, 3))).all()  # one label per input pixel
    dark = item["lr"].numpy().mean(0) < 0.3
    np.testing.assert_array_equal(blocks[:, 0, :, 0] > 0, dark)  # the mask is the line segment found


def test_missing_image_and_bad_file_are_named(tmp_path):
    _, coco = frames_with_coco(tmp_path)
    with pytest.raises(InputError, match="not found under"):
        coco_samples(coco, tmp_path / "elsewhere")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="bad.json.*not a readable COCO"):
        coco_samples(tmp_path / "bad.json")


def test_joint_train_takes_a_coco_file(tmp_path):
    frames, coco = frames_with_coco(tmp_path)
    ws = make_workspace(tmp_path / "ws", n=4)
    seen: list[dict[str, float]] = []
    cfg = make_config(
        "joint-train",
        run_config(ws, "joint-train", "coco", data={"coco": [str(coco)], "coco_images": str(frames),
                                                    "coco_fraction": 0.5, "box_presentation": "lr"}),
    )  # fmt: skip
    stream = build_data(cfg, 4).train
    names = [stream[i]["name"] for i in range(len(stream))]
    assert sum(n.startswith("coco/") for n in names) == len(names) // 2  # coco_fraction 0.5 of each epoch
    train(cfg, on_step=lambda step, model, losses: seen.append(losses))
    assert len(seen) == 2 and all(np.isfinite(v) for losses in seen for v in losses.values())
    assert json.loads(coco.read_text())["annotations"]  # the loop had masks to learn from
