"""Labelled datasets for `csbsr evaluate`: the Khanhha degraded test set or images/ + masks/ folders, listed
with the data/ readers (`paired_samples`, `degraded_test_pairs`), and each image's HR, mask, LR and GT kernel
loaded and checked against each other (LR degraded on the fly, seeded as `csbsr degrade`, when not stored)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InputError
from .datasets import Problems, paired_samples, report_problem, split_csv_path
from .degrade import RNG_SCHEME, DegradeConfig, Padding, degrade, make_rng
from .image_io import find_image, read_gray, read_image, read_tiff_float32
from .khanhha import degraded_test_pairs, find_blured_root

Layout = Literal["auto", "khanhha", "folder"]


@dataclass(frozen=True)
class EvalItem:
    """One labelled image: where its HR, mask and (when stored) LR and GT kernel come from."""

    name: str
    hr: Path
    mask: Path
    lr: Path | None = None  # None: degraded on the fly from the HR
    kernel: Path | None = None  # GT kernel file (kernel PSNR)
    key: str = ""  # seeds the on-the-fly degradation: the HR path relative to the root, as `csbsr degrade`


@dataclass(frozen=True)
class EvalDataset:
    root: Path
    layout: Literal["khanhha", "folder"]
    items: list[EvalItem]
    scale: int
    seed: int
    degradation: DegradeConfig | None  # set when some LR images are synthesised here
    split: str | None = None
    split_csv: Path | None = None
    lr_dir: Path | None = None
    blur_name: str | None = None
    problems: list[InputError] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What metrics.json says about the data: enough to rebuild the exact LR inputs."""
        lr_source = (
            f"stored: {self.lr_dir or self.root}" if self.degradation is None else "degraded on the fly"
        )
        out: dict[str, Any] = {
            "path": str(self.root.resolve()),
            "layout": self.layout,
            "n_images": len(self.items),
            "split": self.split,
            "split_csv": None if self.split_csv is None else str(self.split_csv),
            "scale": self.scale,
            "lr_source": lr_source,
            "hr_crop": "none" if self.layout == "khanhha" else "top-left, to multiples of the scale",
        }
        if self.blur_name is not None:
            out["blur_name"] = self.blur_name
        if self.degradation is not None:
            out["degradation"] = {**self.degradation.to_dict(), "seed": self.seed, "rng": RNG_SCHEME}
        return out


def _has_degraded_test_set(root: Path) -> bool:
    try:
        find_blured_root(root)
    except InputError:
        return False
    return True


def open_dataset(
    root: str | os.PathLike[str],
    layout: Layout = "auto",
    *,
    split: str | None = None,
    split_csv: str | os.PathLike[str] | None = None,
    lr_dir: str | os.PathLike[str] | None = None,
    blur_name: str | None = None,
    seed: int = 5,
    scale: int = 4,
    padding: Padding = "reflect",
    limit: int | None = None,
    skip_bad: bool = False,
) -> EvalDataset:
    """List a labelled dataset: the Khanhha degraded test set (ours or the authors' naming, LR stored), or
    any images/ + masks/ folder (or folder of such folders) with LR from `lr_dir` or degraded on the fly.

    `lr_dir` is a `csbsr degrade` output folder (lr/ + kernels/) or a plain folder of LR images, matched by
    path relative to `root` or by image name. On-the-fly LR uses `padding` at the blur's border, as
    `csbsr degrade` does (reflect by default; zero as the authors). Unusable entries raise, or with
    `skip_bad` are recorded.
    """
    root = Path(root)
    if not root.exists():
        raise InputError("dataset not found", root)
    problems: Problems | None = [] if skip_bad else None
    if layout == "auto":
        layout = "khanhha" if _has_degraded_test_set(root) else "folder"
    csv_path = None if split_csv is None else Path(split_csv)
    lr_root = None if lr_dir is None else Path(lr_dir)
    degradation = None
    if layout == "khanhha":
        if split is not None or csv_path is not None or lr_root is not None:
            raise InputError("--split, --split-csv and --lr-dir apply to --layout folder, not khanhha")
        pairs = degraded_test_pairs(root, blur_name, problems)
        items = [EvalItem(p.name, p.hr, p.mask, p.lr, p.kernel) for p in pairs]
        if pairs:
            blur_name = pairs[0].lr.parent.parent.name
    else:
        csv_path = split_csv_path(root, split, csv_path)
        samples = paired_samples(root, csv_path, split, problems)
        kernels = None
        if lr_root is not None:
            if not lr_root.is_dir():
                raise InputError("LR folder not found", lr_root)
            if (lr_root / "lr").is_dir():  # a `csbsr degrade` output folder
                kernels = lr_root / "kernels" if (lr_root / "kernels").is_dir() else None
                lr_root = lr_root / "lr"
        else:
            degradation = DegradeConfig(scale=scale, padding=padding)
        items = []
        for sample in samples:
            assert sample.mask is not None  # paired_samples only returns images that have one
            key = sample.image.relative_to(root).as_posix()
            lr = kernel = None
            if lr_root is not None:
                stems = (str(Path(key).with_suffix("")), sample.name)
                lr = find_image(lr_root, stems)
                if lr is None:
                    report_problem(problems, InputError(f"no LR image for {key} in", lr_root))
                    continue
                kernel = None if kernels is None else find_image(kernels, stems)
            items.append(EvalItem(sample.name, sample.image, sample.mask, lr, kernel, key))
    seen: dict[str, Path] = {}
    for item in items:
        if item.name in seen:
            raise InputError(
                f"two images named {item.name!r}: {seen[item.name].name} and {item.hr.name}", item.hr
            )
        seen[item.name] = item.hr
    if not items:
        where = f" in split {split!r}" if split is not None else ""
        raise InputError(f"no labelled images{where}", root)
    return EvalDataset(
        root=root,
        layout=layout,
        items=items[:limit] if limit else items,
        scale=scale,
        seed=seed,
        degradation=degradation,
        split=split,
        split_csv=csv_path if split is not None else None,
        lr_dir=None if lr_dir is None else Path(lr_dir),
        blur_name=blur_name,
        problems=list(problems or []),
    )


@dataclass(frozen=True)
class Loaded:
    item: EvalItem
    hr: np.ndarray  # float32 HxWx3 in [0, 1]
    mask: np.ndarray  # uint8 HxW, 8-bit levels (the presets binarise them)
    lr: np.ndarray | None = None  # float32 hxwx3
    kernel: np.ndarray | None = None  # GT kernel, any scale (kernel_psnr renormalises it to sum 1)


def read_mask_levels(path: Path) -> np.ndarray:
    """The mask's 8-bit values, not a binary mask: each preset binarises them (>= 128, or > 0 for HD)."""
    return np.floor(read_gray(path) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def _crop(a: np.ndarray, dataset: EvalDataset) -> np.ndarray:
    """Folder datasets: top-left crop to multiples of the scale (as `csbsr degrade`); Khanhha: as stored."""
    if dataset.layout == "khanhha":
        return a
    h, w = a.shape[:2]
    return a[: h - h % dataset.scale, : w - w % dataset.scale]


def load_mask(item: EvalItem, dataset: EvalDataset) -> np.ndarray:
    return _crop(read_mask_levels(item.mask), dataset)


def _gt_kernel(path: Path) -> np.ndarray:
    """The GT kernel as `kernel_psnr` takes it: an 8-bit PNG's integer levels (the authors' format, which
    it divides by 255 and renormalises), a TIFF's exact values."""
    if path.suffix.lower() in (".tif", ".tiff"):
        return read_tiff_float32(path)
    return np.rint(read_gray(path) * np.float32(255.0))


def load_item(item: EvalItem, dataset: EvalDataset, with_lr: bool) -> Loaded:
    """HR, mask and (with_lr) the LR input and GT kernel of one image, checked against each other."""
    hr = read_image(item.hr)
    mask = read_mask_levels(item.mask)
    if mask.shape != hr.shape[:2]:
        h, w = hr.shape[:2]
        raise InputError(f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {w}x{h}", item.mask)
    hr, mask = _crop(hr, dataset), _crop(mask, dataset)
    if not with_lr:
        return Loaded(item, hr, mask)
    if item.lr is not None:
        lr = read_image(item.lr)
        kernel = None if item.kernel is None else _gt_kernel(item.kernel)
    else:
        assert dataset.degradation is not None
        result = degrade(hr, dataset.degradation, make_rng(dataset.seed, item.key))
        lr, kernel = result.lr, result.kernel
    if (lr.shape[0] * dataset.scale, lr.shape[1] * dataset.scale) != hr.shape[:2]:
        h, w = hr.shape[:2]
        message = f"LR is {lr.shape[1]}x{lr.shape[0]} but HR is {w}x{h}: not x{dataset.scale}"
        raise InputError(message, item.lr or item.hr)
    return Loaded(item, hr, mask, lr, kernel)
