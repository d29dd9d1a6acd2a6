"""A labelled folder of crack-free HR crops (images/ + all-zero masks/), to measure false positives.

Any crack pixel a model finds in these crops is a false positive, so `csbsr evaluate` on this folder gives
the false-positive pixel rate on crack-free texture, which the dev set's crack-centred images hardly test.
Read it at a fixed threshold (the model card's, or the ODS threshold of the labelled val set) from the
FPR_crack_free_mean column of the run's curves.csv: the headline "crack-free FPR" is taken at the IoU_max
threshold of the same run, which on a folder of empty GTs is wherever nothing fires, so it reads ~0.

From a labelled folder (images/ + masks/ with matching stems, or a folder of such folders like the dev
set), restricted to one split of its split CSV, every image gives up to K crops of side S that are more
than --margin px away from any crack pixel (mask value > --mask-threshold, so faint labels count): the
mask is dilated by a disc of that radius, and a crop must contain no dilated pixel. Candidates lie on a
grid of step --stride (plus the right and bottom edges); those on the size-aligned grid go first (they
pack without overlap), each group in an order seeded by --seed and the image's name, so runs repeat and
an image's crops do not depend on the others; chosen crops do not overlap. Crops are 8-bit PNG (no
re-compression); manifest.csv lists crop, source image (relative to DATASET), x, y and size.

    python bench/crack_free_crops.py /work/shared/data/dev /work/crack_free_val
    python bench/crack_free_crops.py DATA OUT --split test --per-image 4 --size 96 --seed 1
    csbsr evaluate csbsr-lite --dataset /work/crack_free_val --limit 8
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from csbsr_cli.data.datasets import Sample, paired_samples, split_csv_path
from csbsr_cli.data.image_io import read_gray, read_image, write_png
from csbsr_cli.errors import InputError

MANIFEST_FIELDS = ("crop", "source", "x", "y", "size")


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    size: int


def blocked_area(crack: np.ndarray, margin: int) -> np.ndarray:
    """Crack pixels grown by a disc of radius `margin`: a crop clear of them is > margin px from any crack."""
    if margin <= 0:
        return crack.astype(bool)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    return cv2.dilate(crack.astype(np.uint8), disc).astype(bool)


def _grid(length: int, size: int, stride: int) -> list[int]:
    """Crop origins along one axis: every `stride` px, plus the far edge so the last strip is reachable."""
    starts = list(range(0, length - size + 1, stride))
    if starts and starts[-1] != length - size:
        starts.append(length - size)
    return starts


def image_rng(seed: int, name: str) -> np.random.Generator:
    """One generator per (seed, image name): stable across runs, platforms and the other images."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def choose_crops(
    crack: np.ndarray, size: int, count: int, margin: int, stride: int, rng: np.random.Generator
) -> list[Crop]:
    """Up to `count` non-overlapping size x size windows with no pixel of the margin-dilated crack mask."""
    height, width = crack.shape
    ys, xs = _grid(height, size, stride), _grid(width, size, stride)
    if not ys or not xs:
        return []
    blocked = cv2.integral(blocked_area(crack, margin).astype(np.uint8))  # (h+1, w+1) summed-area table
    y0, x0 = np.meshgrid(np.array(ys), np.array(xs), indexing="ij")
    y0, x0 = y0.ravel(), x0.ravel()
    y1, x1 = y0 + size, x0 + size
    inside = blocked[y1, x1] - blocked[y0, x1] - blocked[y1, x0] + blocked[y0, x0]
    # Seeded order, but windows on the size-aligned grid first: they tile the image without overlapping, so
    # a greedy pick does not strand room between chosen crops; the finer grid then fits crops near cracks.
    rank = np.empty(len(y0), np.int64)
    rank[rng.permutation(len(y0))] = np.arange(len(y0))
    off_grid = (x0 % size != 0) | (y0 % size != 0)
    chosen: list[Crop] = []
    for i in np.lexsort((rank, off_grid)):
        if len(chosen) == count:
            break
        if inside[i]:
            continue
        x, y = int(x0[i]), int(y0[i])
        if all(abs(x - c.x) >= size or abs(y - c.y) >= size for c in chosen):
            chosen.append(Crop(x, y, size))
    return chosen


def crop_name(sample: Sample, crop: Crop) -> str:
    """Flat output stem: `<dataset>__<stem>_x<X>_y<Y>` (subfolders joined by `__`)."""
    return f"{sample.name.replace('/', '__')}_x{crop.x}_y{crop.y}"


def _clear_outputs(out: Path, overwrite: bool) -> None:
    """Refuse to mix with earlier files; --overwrite removes only the crops an earlier manifest lists, so a
    mistyped OUT (a real dataset) loses nothing."""
    manifest = out / "manifest.csv"
    if not any(p.is_file() for p in [manifest, *out.glob("images/*"), *out.glob("masks/*")]):
        return
    if not overwrite:
        raise InputError("is not empty: pass --overwrite (replaces an earlier run) or choose another", out)
    if not manifest.is_file():
        raise InputError("has images/ or masks/ files but no manifest.csv of this script: not replaced", out)
    with manifest.open(newline="", encoding="utf-8") as fh:
        names = [row["crop"] for row in csv.DictReader(fh)]
    for name in names:
        for kind in ("images", "masks"):
            (out / kind / f"{name}.png").unlink(missing_ok=True)
    if any(p.is_file() for p in [*out.glob("images/*"), *out.glob("masks/*")]):
        raise InputError("images/ or masks/ holds files the manifest does not list: not replaced", out)
    manifest.unlink()


def make_crops(
    dataset: Path,
    out: Path,
    *,
    split: str | None = "val",
    split_csv: Path | None = None,
    size: int = 128,
    per_image: int = 2,
    margin: int = 8,
    stride: int | None = None,
    seed: int = 0,
    mask_threshold: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write the crops, their masks and manifest.csv into `out`; returns counts for the summary line."""
    if size <= 0 or size % 4:
        raise InputError(f"--size must be a positive multiple of 4 (the SR scale), got {size}")
    stride = stride or size // 2
    if stride <= 0 or per_image <= 0 or margin < 0:
        raise InputError("--stride and --per-image must be positive, --margin not negative")
    samples = paired_samples(dataset, split_csv_path(dataset, split, split_csv), split)
    if not samples:
        raise InputError(f"no labelled images{f' in split {split!r}' if split else ''}", dataset)
    _clear_outputs(out, overwrite)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows, seen = [], {}
    too_small = no_room = 0
    empty = np.zeros((size, size), np.uint8)
    for sample in samples:
        assert sample.mask is not None  # paired_samples only returns images that have one
        image = read_image(sample.image)
        levels = np.floor(read_gray(sample.mask) * 255.0 + 0.5)
        if levels.shape != image.shape[:2]:
            raise InputError(f"mask is {levels.shape}, its image {image.shape[:2]} (h, w)", sample.mask)
        if min(levels.shape) < size:
            too_small += 1
            continue
        rng = image_rng(seed, sample.name)
        crops = choose_crops(levels > mask_threshold, size, per_image, margin, stride, rng)
        no_room += not crops
        for crop in crops:
            name = crop_name(sample, crop)
            if name in seen:
                raise InputError(f"two crops named {name!r} (from {seen[name]} and {sample.name})", dataset)
            seen[name] = sample.name
            write_png(out / "images" / f"{name}.png", image[crop.y : crop.y + size, crop.x : crop.x + size])
            write_png(out / "masks" / f"{name}.png", empty)
            source = sample.image.relative_to(dataset).as_posix()
            rows.append({"crop": name, "source": source, "x": crop.x, "y": crop.y, "size": size})
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return {"images": len(samples), "crops": len(rows), "too_small": too_small, "no_room": no_room}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="images/ + masks/ folder, or a folder of such folders")
    parser.add_argument("out", type=Path, help="output folder (images/, masks/, manifest.csv)")
    parser.add_argument("--split", default="val", help="split of the CSV to use; 'all' = every image")
    parser.add_argument("--split-csv", type=Path, help="default DATASET/split.csv")
    parser.add_argument("--size", type=int, default=128, help="HR crop side, a multiple of 4")
    parser.add_argument("--per-image", type=int, default=2, help="at most this many crops per image")
    parser.add_argument("--margin", type=int, default=8, help="crops stay more than this many px from cracks")
    parser.add_argument("--stride", type=int, help="candidate grid step (default size/2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mask-threshold", type=int, default=0, help="crack where the 8-bit mask value > this (default: any)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the crops of an earlier run")
    args = parser.parse_args()
    try:
        counts = make_crops(
            args.dataset, args.out, split=None if args.split == "all" else args.split,
            split_csv=args.split_csv, size=args.size, per_image=args.per_image, margin=args.margin,
            stride=args.stride, seed=args.seed, mask_threshold=args.mask_threshold, overwrite=args.overwrite,
        )  # fmt: skip
    except InputError as exc:
        sys.exit(f"error: {exc}")
    print(
        f"{counts['crops']} crack-free {args.size}x{args.size} crops from {counts['images']} images "
        f"(split {args.split}; {counts['no_room']} without room for one, {counts['too_small']} smaller "
        f"than the crop) -> {args.out}"
    )


if __name__ == "__main__":
    main()
