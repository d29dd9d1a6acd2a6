"""Box-labelled crack tiles (YOLO format) and their training crops.

A box folder holds ``images/<stem>.<ext>`` and ``labels/<stem>.txt`` with one ``class cx cy w h`` line per
crack box, normalised to the image (class 0 = crack). An empty or missing label file means "no crack":
every pixel outside every box is a negative, which is what pixel-labelled pavement sets cannot teach.

Tiles enter training at one of two scales (``BoxCrops.presentation``):
- ``"lr"``: the tile *is* the LR input, as ``segment`` sees a native frame; boxes are scaled by the SR
  factor and there is no HR target (``has_hr = 0``: SR losses skip the sample);
- ``"hr"``: the tile is an HR image degraded on the fly like the pixel-labelled sets, with an SR target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from .datasets import Problems, augment_d4, report_problem, to_tensor
from .degrade import DegradeConfig, degrade, make_rng
from .image_io import PathLike, image_size, list_images, read_image
from .rle import union_mask

MAX_BOXES = 8  # boxes per crop in a batch (tiles hold at most 2-3); padding rows are -1
Presentation = Literal["lr", "hr", "both"]


@dataclass(frozen=True)
class BoxSample:
    """A tile with crack boxes, or (``masks`` set: data/coco.py) a frame with pixel masks, whose boxes
    then only steer the crops towards the cracks."""

    name: str
    image: Path
    boxes: np.ndarray  # (n, 4) float32 x0, y0, x1, y1 in image pixels (x1, y1 exclusive)
    masks: tuple | None = None  # COCO segmentations (RLE or polygons); None: box supervision
    size: tuple[int, int] = (0, 0)  # (height, width) the masks are drawn for

    @property
    def positive(self) -> bool:
        return len(self.boxes) > 0


def read_yolo_boxes(path: PathLike, width: int, height: int) -> np.ndarray:
    """Crack boxes of one YOLO label file as (n, 4) pixel corners clipped to the image; n = 0 if missing."""
    path = Path(path)
    if not path.is_file():
        return np.zeros((0, 4), np.float32)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls, cx, cy, w, h = (float(f) for f in fields)
        except ValueError:
            raise InputError(
                f"line {number}: expected 'class cx cy w h', got {line.strip()!r}", path
            ) from None
        if cls != 0:
            continue  # class 0 is the crack; other classes (if any) are neither crack nor negative here
        if not (0 <= cx <= 1 and 0 <= cy <= 1 and 0 < w <= 1 and 0 < h <= 1):
            raise InputError(f"line {number}: box {cx} {cy} {w} {h} is not normalised to (0, 1]", path)
        rows.append(
            ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        )
    boxes = np.array(rows, np.float32).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes


def box_samples(root: PathLike, problems: Problems | None = None) -> list[BoxSample]:
    """Every image of `root/images` with the boxes of `root/labels/<stem>.txt`."""
    root = Path(root)
    if not (root / "images").is_dir():
        raise InputError("not a box folder: images/ is missing (expected images/ + labels/)", root)
    if not (root / "labels").is_dir():
        raise InputError("not a box folder: labels/ is missing (YOLO .txt files)", root)
    samples = []
    for image in list_images(root / "images"):
        stem = image.relative_to(root / "images").with_suffix("").as_posix()
        try:
            height, width = image_size(image)
            boxes = read_yolo_boxes(root / "labels" / f"{stem}.txt", width, height)
        except InputError as exc:
            report_problem(problems, exc)
            continue
        samples.append(BoxSample(f"{root.name}/{stem}", image, boxes))
    return samples


def box_raster(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(n, H, W) uint8: box k's pixels (corners rounded outwards)."""
    out = np.zeros((len(boxes), height, width), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        out[k, int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = 1
    return out


def raster_boxes(raster: np.ndarray) -> np.ndarray:
    """Inverse of :func:`box_raster` for what survives a crop: (m, 4) corners of the non-empty layers."""
    rows = []
    for layer in raster:
        ys, xs = np.nonzero(layer.any(1))[0], np.nonzero(layer.any(0))[0]
        if len(ys):
            rows.append((xs[0], ys[0], xs[-1] + 1, ys[-1] + 1))
    return np.array(rows, np.float32).reshape(-1, 4)


def pad_boxes(boxes: np.ndarray, scale: float = 1.0) -> torch.Tensor:
    """(MAX_BOXES, 4) float tensor: the boxes times `scale`, then rows of -1 (so crops batch together)."""
    if len(boxes) > MAX_BOXES:
        raise ValueError(f"{len(boxes)} boxes in one crop; at most {MAX_BOXES} are batched")
    out = torch.full((MAX_BOXES, 4), -1.0)
    out[: len(boxes)] = torch.from_numpy(boxes * np.float32(scale))
    return out


class BoxCrops(Dataset):
    """Random crops of box-labelled tiles (or COCO-labelled frames), as items shaped like
    ``DegradedCrops``' plus box supervision.

    Items: ``lr``, ``hr`` (zeros when ``has_hr`` is 0), ``kernel`` (zeros without an HR target), ``mask``
    (the COCO mask on the SR grid, else zeros), ``boxes`` (MAX_BOXES, 4) on the SR grid, ``sup`` = 1 for
    box supervision (0 with a COCO mask),
    ``has_hr``, ``name``. For a tile with boxes, `focus` is the chance that the crop is centred near a
    random point of a random box (random crops of a 256 px tile mostly miss a thin crack's box).
    """

    def __init__(
        self,
        samples: Sequence[BoxSample],
        crop: int = 224,
        config: DegradeConfig | None = None,
        seed: int = 0,
        presentation: Presentation = "both",
        augment: bool = True,
        focus: float = 0.8,
    ) -> None:
        self.config = config or DegradeConfig()
        if crop <= 0 or crop % self.config.scale:
            raise ValueError(f"crop must be a positive multiple of the scale {self.config.scale}, got {crop}")
        self.samples = list(samples)
        self.crop, self.seed, self.presentation = crop, seed, presentation
        self.augment, self.focus = augment, focus
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _corner(self, sample: BoxSample, size: int, shape: tuple[int, int], rng) -> tuple:
        """Top-left corner of a `size` crop of an image of `shape` (the crop is cut before any scaling)."""
        h, w = shape
        if sample.positive and rng.random() < self.focus:
            x0, y0, x1, y1 = sample.boxes[int(rng.integers(len(sample.boxes)))]
            cx, cy = rng.uniform(x0, max(x1, x0 + 1)), rng.uniform(y0, max(y1, y0 + 1))
            top, left = int(round(cy - size / 2)), int(round(cx - size / 2))
            return min(max(top, 0), h - size), min(max(left, 0), w - size)
        return int(rng.integers(0, h - size, endpoint=True)), int(rng.integers(0, w - size, endpoint=True))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        sample = self.samples[index]
        rng = make_rng(self.seed, self.epoch, sample.name)
        image = read_image(sample.image)
        scale = self.config.scale
        as_lr = self.presentation == "lr" or (self.presentation == "both" and rng.random() < 0.5)
        size = self.crop // scale if as_lr else self.crop
        h, w = image.shape[:2]
        if min(h, w) < size:
            raise InputError(f"image is {w}x{h}, smaller than the {size}x{size} crop", sample.image)
        top, left = self._corner(sample, size, (h, w), rng)
        pixels = sample.masks is not None
        if pixels:
            if sample.size != (h, w):
                listed = f"{sample.size[1]}x{sample.size[0]}"
                raise InputError(f"image is {w}x{h} but its COCO entry says {listed}", sample.image)
            mask = union_mask(sample.masks, h, w, sample.name)
            layers = mask[None, top : top + size, left : left + size].astype(np.uint8)
        else:
            layers = box_raster(sample.boxes, h, w)[:, top : top + size, left : left + size]
        arrays = [image[top : top + size, left : left + size], *layers]
        if self.augment:
            arrays = augment_d4(arrays, rng)
        crop = np.ascontiguousarray(arrays[0])
        k = self.config.kernels.size
        if as_lr:
            lr, hr, kernel, box_scale = crop, np.zeros((self.crop, self.crop, 3), np.float32), None, scale
        else:
            result = degrade(crop, self.config, rng)
            lr, hr, kernel, box_scale = result.lr, crop, result.kernel, 1
        if pixels:  # the mask on the SR grid: each input pixel's label covers its scale x scale block
            mask = np.kron(arrays[1], np.ones((box_scale, box_scale), np.uint8)).astype(np.float32)
            boxes = np.zeros((0, 4), np.float32)
        else:
            mask = np.zeros((self.crop, self.crop), np.float32)
            boxes = raster_boxes(np.stack(arrays[1:]) if len(arrays) > 1 else np.zeros((0, size, size)))
        return {
            "lr": to_tensor(lr),
            "hr": to_tensor(hr),
            "kernel": torch.zeros(1, k, k) if kernel is None else torch.from_numpy(kernel)[None],
            "mask": to_tensor(mask),
            "boxes": pad_boxes(boxes, box_scale),
            "sup": torch.tensor(0 if pixels else 1),
            "has_hr": torch.tensor(0.0 if as_lr else 1.0),
            "name": sample.name,
        }
