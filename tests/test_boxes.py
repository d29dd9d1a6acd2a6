"""Box-labelled tiles: the YOLO reader, the crops, the weak-supervision loss and the box scores."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from synth import make_crack_image
from torch.utils.data import DataLoader

from csbsr_cli.data.boxes import MAX_BOXES, BoxCrops, box_samples, read_yolo_boxes
from csbsr_cli.data.degrade import DegradeConfig
from csbsr_cli.errors import InputError
from csbsr_cli.losses.boxes import BoxLossConfig, box_loss, box_masks
from csbsr_cli.metrics.boxes import BoxCounts
from csbsr_cli.metrics.segmentation import N_THRESHOLDS
from csbsr_cli.train.data import Mixture


def box_folder(root: Path, n: int = 4, size: int = 64) -> Path:
    """`n` synthetic crack tiles; even ones get a YOLO box around their crack, odd ones an empty label."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        image, mask = make_crack_image(size, size, seed=i)
        cv2.imwrite(str(root / "images" / f"t_{i}.png"), image[:, :, ::-1])
        label = ""
        if i % 2 == 0:
            ys, xs = np.nonzero(mask)
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            label = f"0 {(x0 + x1) / 2 / size} {(y0 + y1) / 2 / size} {(x1 - x0) / size} {(y1 - y0) / size}\n"
        (root / "labels" / f"t_{i}.txt").write_text(label)
    return root


# ---- the reader -------------------------------------------------------------------------------------------


def test_yolo_line_becomes_pixel_corners(tmp_path):
    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.25 0.5 0.25\n\n1 0.5 0.5 0.1 0.1\n")  # class 1 is not a crack box
    np.testing.assert_allclose(read_yolo_boxes(label, 200, 100), [[50, 12.5, 150, 37.5]])
    assert read_yolo_boxes(tmp_path / "missing.txt", 10, 10).shape == (0, 4)


@pytest.mark.parametrize("line", ["0 0.5 0.5 0.1", "0 a b c d", "0 1.5 0.5 0.1 0.1", "0 0.5 0.5 0 0.1"])
def test_bad_yolo_line_names_the_file_and_line(tmp_path, line):
    label = tmp_path / "bad.txt"
    label.write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    with pytest.raises(InputError, match=r"bad\.txt.*line 2"):
        read_yolo_boxes(label, 64, 64)


def test_box_folder_lists_every_tile_with_its_boxes(tmp_path):
    samples = box_samples(box_folder(tmp_path / "tiles"))
    assert [s.name for s in samples] == ["tiles/t_0", "tiles/t_1", "tiles/t_2", "tiles/t_3"]
    assert [s.positive for s in samples] == [True, False, True, False]
    with pytest.raises(InputError, match="labels/ is missing"):
        (tmp_path / "x" / "images").mkdir(parents=True)
        box_samples(tmp_path / "x")


# ---- crops ------------------------------------------------------------------------------------------------


def test_lr_presentation_keeps_the_tile_scale_and_scales_boxes(tmp_path):
    """The tile is the LR input (as segment sees frames): boxes land on the x4 grid, no HR target."""
    samples = box_samples(box_folder(tmp_path / "tiles"))
    crops = BoxCrops(samples, crop=128, config=DegradeConfig(scale=4), presentation="lr", augment=False)
    item = crops[0]
    assert item["lr"].shape == (3, 32, 32) and item["hr"].shape == (3, 128, 128)
    assert float(item["has_hr"]) == 0 and int(item["sup"]) == 1
    boxes = item["boxes"]
    real = boxes[boxes[:, 2] > boxes[:, 0]]
    assert len(real) == 1 and boxes.shape == (MAX_BOXES, 4)
    assert (real % 4 == 0).all() and real.max() <= 128  # integer LR pixels times the scale


def test_hr_presentation_degrades_and_keeps_box_scale(tmp_path):
    samples = box_samples(box_folder(tmp_path / "tiles"))
    crops = BoxCrops(samples, crop=48, config=DegradeConfig(scale=4), presentation="hr", augment=False)
    item = crops[0]
    assert item["lr"].shape == (3, 12, 12) and item["hr"].shape == (3, 48, 48)
    assert float(item["has_hr"]) == 1 and float(item["kernel"].sum()) == pytest.approx(1, abs=1e-5)


def test_augmented_box_still_encloses_the_crack(tmp_path):
    """Flips and turns move the box with the image: every dark crack pixel of the crop stays inside it."""
    samples = box_samples(box_folder(tmp_path / "tiles", size=48))[:1]
    crops = BoxCrops(samples, crop=192, config=DegradeConfig(scale=4), presentation="lr", focus=0)
    _, mask = make_crack_image(48, 48, seed=0)
    for epoch in range(6):
        crops.set_epoch(epoch)
        item = crops[0]
        lr = item["lr"].numpy().mean(0)
        ref = make_crack_image(48, 48, seed=0)[0].mean(2) / 255
        # find the D4 transform of this draw, then apply it to the mask
        options = [np.rot90(f, t) for f in (ref, ref[:, ::-1], ref[::-1], ref[::-1, ::-1]) for t in range(4)]
        masks = [
            np.rot90(f, t) for f in (mask, mask[:, ::-1], mask[::-1], mask[::-1, ::-1]) for t in range(4)
        ]
        k = int(np.argmin([np.abs(o - lr).max() for o in options]))
        assert np.abs(options[k] - lr).max() < 1e-5
        x0, y0, x1, y1 = (item["boxes"][0] / 4).tolist()
        ys, xs = np.nonzero(masks[k])
        assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1


def test_mixture_gives_each_source_its_share_and_batches(tmp_path):
    from csbsr_cli.data.datasets import DegradedCrops, paired_samples

    pairs = tmp_path / "pairs"
    (pairs / "images").mkdir(parents=True)
    (pairs / "masks").mkdir()
    for i in range(6):
        image, mask = make_crack_image(48, 48, seed=10 + i)
        cv2.imwrite(str(pairs / "images" / f"p{i}.png"), image[:, :, ::-1])
        cv2.imwrite(str(pairs / "masks" / f"p{i}.png"), mask)
    pixel = DegradedCrops(paired_samples(pairs), crop=32, config=DegradeConfig(scale=4))
    tiles = box_samples(box_folder(tmp_path / "tiles"))
    boxes = BoxCrops(tiles, crop=32, config=DegradeConfig(scale=4), presentation="lr")
    mix = Mixture([(pixel, 0.75), (boxes, 0.25)], seed=0)
    assert len(mix) == 8 and mix.counts == [6, 2]
    seen = set()
    for epoch in range(2):  # the box slots walk through all 4 tiles over two epochs before repeating
        mix.set_epoch(epoch)
        seen |= {mix.locate(i) for i in range(6, 8)}
    assert seen == {(1, 0), (1, 1), (1, 2), (1, 3)}
    batch = next(iter(DataLoader(mix, batch_size=8)))
    assert batch["sup"].tolist() == [0] * 6 + [1] * 2
    assert batch["has_hr"].tolist() == [1.0] * 6 + [0.0] * 2  # tiles as LR inputs: no HR target
    assert batch["boxes"].shape == (8, MAX_BOXES, 4)


# ---- the loss ---------------------------------------------------------------------------------------------


def test_box_masks_cover_the_box_and_margin():
    boxes = torch.tensor([[[2.0, 1.0, 5.0, 3.0], [-1, -1, -1, -1]]])
    inside = box_masks(boxes, 6, 8)
    assert inside.shape == (1, 2, 6, 8) and not inside[0, 1].any()
    assert inside[0, 0].nonzero().tolist() == [[y, x] for y in (1, 2) for x in (2, 3, 4)]
    assert box_masks(boxes, 6, 8, margin=1)[0, 0].sum() == 4 * 5


def test_negatives_outside_boxes_have_the_bce_of_their_probability():
    prob = torch.full((1, 1, 10, 10), 0.5)
    boxes = torch.tensor([[[0.0, 0.0, 4.0, 4.0]]])
    prob[0, 0, :4, :4] = 0.99  # inside the box: not a negative
    out = box_loss(prob, boxes, BoxLossConfig(mode="ignore", margin=0))
    assert float(out["box_negative"][0]) == pytest.approx(-np.log(0.5), rel=1e-5)
    assert "box_projection" not in out


def test_projection_loss_is_zero_for_a_diagonal_crack_and_high_for_nothing():
    """A crack through its box crosses every row and column: zero projection loss. An empty box: ~1."""
    boxes = torch.tensor([[[2.0, 2.0, 10.0, 10.0]]])
    diagonal = torch.zeros(1, 1, 12, 12)
    for i in range(2, 10):
        diagonal[0, 0, i, i] = 1.0
    cfg = BoxLossConfig(margin=0)
    assert float(box_loss(diagonal, boxes, cfg)["box_projection"][0]) == pytest.approx(0, abs=1e-5)
    empty = box_loss(torch.zeros(1, 1, 12, 12), boxes, cfg)
    assert float(empty["box_projection"][0]) == pytest.approx(2, abs=1e-4)  # 1 per axis
    half = diagonal.clone()
    half[0, 0, 6:, 6:] = 0  # covers half of the rows and columns: Dice 2*4/(4+8) = 2/3 per axis
    assert float(box_loss(half, boxes, cfg)["box_projection"][0]) == pytest.approx(2 / 3, abs=1e-4)


def test_box_loss_gradient_pulls_a_crack_up_and_the_background_down():
    boxes = torch.tensor([[[2.0, 2.0, 10.0, 10.0]]])
    logits = torch.zeros(1, 1, 12, 12, requires_grad=True)
    box_loss(torch.sigmoid(logits), boxes, BoxLossConfig(margin=0))["box"].sum().backward()
    grad = logits.grad[0, 0]
    assert (grad[0, :] > 0).all()  # outside: descent lowers the probability
    assert (grad[2:10, 2:10] <= 0).all() and (grad[2:10, 2:10] < 0).any()  # inside: raised


# ---- scores -----------------------------------------------------------------------------------------------


def test_box_scores_known_answers():
    mask = np.zeros((20, 40), np.uint8)
    mask[5, 2:12] = 1  # covers 10 of the box's 16-px long side: recall 1, all inside
    mask[15, 30] = 1  # one stray pixel outside
    level = mask * N_THRESHOLDS
    counts = BoxCounts()
    counts.add(level, np.array([[0, 4, 16, 7]]))
    counts.add(np.zeros((20, 40), np.uint8), np.zeros((0, 4)))  # a box-free image, nothing marked
    s = counts.scores(49)
    assert s["box_precision"] == pytest.approx(10 / 11)
    assert s["box_recall"] == 1.0
    assert s["outside_rate"] == pytest.approx(1 / (800 - 48 + 800))
    assert s["free_marked"] == 0.0
    short = BoxCounts()
    short.add(level, np.array([[0, 4, 30, 7]]))  # 10 of 30 px: not covered at 50 %
    assert short.scores(49)["box_recall"] == 0.0


def test_hard_negatives_weigh_a_few_false_pixels_as_much_as_a_whole_crop():
    """Four pixels at 0.9 among 10,000 clean ones: the plain mean barely sees them, the hard term does."""
    prob = torch.full((1, 1, 100, 100), 1e-4)
    prob[0, 0, 50:52, 50:52] = 0.9
    boxes = torch.full((1, 1, 4), -1.0)
    plain = float(box_loss(prob, boxes, BoxLossConfig(mode="ignore"))["box_negative"][0])
    hard = float(box_loss(prob, boxes, BoxLossConfig(mode="ignore", hard_fraction=4e-4))["box_negative"][0])
    assert plain == pytest.approx((4 * -np.log(0.1) + 9996 * -np.log(1 - 1e-4)) / 1e4, rel=1e-4)
    assert hard - plain == pytest.approx(-np.log(0.1), rel=1e-4)  # the mean over the 4 hardest pixels
