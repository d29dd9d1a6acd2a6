"""Dataset readers (Khanhha, any images/+masks/ folder, unlabelled images) and the on-the-fly training set.

Readers return `Sample`s and either raise an InputError naming the first bad file or, when given a
`problems` list, record the error there and skip the file (`--skip-bad`).
Training randomness comes from one generator per (seed, epoch, sample name), never from global state, so
batches are identical whatever the number of DataLoader workers and workers need no seeding of their own.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from .degrade import DegradeConfig, degrade, make_rng
from .image_io import PathLike, image_size, list_images, read_image, read_mask
from .kernels import delta_kernel

Problems = list[InputError]


@dataclass(frozen=True)
class Sample:
    name: str  # unique within a listing: `<stem>` or `<dataset>/<stem>`
    image: Path
    mask: Path | None = None


def report_problem(problems: Problems | None, error: InputError) -> None:
    """Raise `error`, or record it when the caller collects problems (`--skip-bad`)."""
    if problems is None:
        raise error
    problems.append(error)


def _stem_key(path: Path, folder: Path) -> str:
    """Matching key of a file inside images/ or masks/: relative path without suffix."""
    return path.relative_to(folder).with_suffix("").as_posix()


def _pair_groups(root: Path) -> list[tuple[str, Path]]:
    """`root` itself if it has images/, else its subfolders that have one (e.g. the dev set's datasets)."""
    if (root / "images").is_dir():
        return [(root.name, root)]
    if not root.is_dir():
        raise InputError("not a folder", root)
    groups = [(d.name, d) for d in sorted(root.iterdir()) if (d / "images").is_dir()]
    if not groups:
        raise InputError("has no images/ folder, nor subfolders with one", root)
    return groups


def _read_split(path: Path, split: str | None) -> set[tuple[str | None, str]]:
    """(dataset or None, stem) rows of a split CSV (columns `stem`, optional `dataset` and `split`)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise InputError(f"cannot read split CSV ({exc.strerror or exc})", path) from None
    columns = set(rows[0]) if rows else set()
    if "stem" not in columns or (split is not None and "split" not in columns):
        raise InputError("split CSV needs a 'stem' column (and 'split' to select a split)", path)
    return {
        (row.get("dataset") or None, row["stem"]) for row in rows if split is None or row["split"] == split
    }


def split_csv_path(root: Path, split: str | None, split_csv: Path | None) -> Path | None:
    """The split CSV a `--split` reads: the one given, else `root/split.csv`, which must then exist; None
    without a split."""
    if split is None:
        return None
    if split_csv is not None:
        return split_csv
    path = root / "split.csv"
    if not path.is_file():
        raise InputError("--split needs a split CSV: none at split.csv here; pass --split-csv", root)
    return path


def paired_samples(
    root: PathLike,
    split_csv: PathLike | None = None,
    split: str | None = None,
    problems: Problems | None = None,
) -> list[Sample]:
    """Images with their masks (same relative stem, any image suffix) from `root/images` + `root/masks`,
    or from every subfolder of `root` laid out that way; optionally only the rows of `split` in a CSV."""
    root = Path(root)
    groups = _pair_groups(root)
    wanted = None
    if split_csv is not None:  # rows of datasets not read here (a shared CSV) are not this call's business
        names = {name for name, _ in groups}
        wanted = {row for row in _read_split(Path(split_csv), split) if row[0] in names or not row[0]}
    seen: set[tuple[str | None, str]] = set()
    samples = []
    for dataset, folder in groups:
        masks: dict[str, Path] = {}
        if (folder / "masks").is_dir():
            for mask in list_images(folder / "masks"):
                key = _stem_key(mask, folder / "masks")
                if key in masks:
                    raise InputError(f"two masks for {key!r}: {masks[key].name} and {mask.name}", mask)
                masks[key] = mask
        for image in list_images(folder / "images"):
            stem = _stem_key(image, folder / "images")
            if wanted is not None:
                row = next((r for r in ((dataset, stem), (None, stem)) if r in wanted), None)
                if row is None:
                    continue
                seen.add(row)
            if stem not in masks:
                report_problem(problems, InputError(f"no mask named {stem}.* in {folder / 'masks'}", image))
                continue
            samples.append(Sample(f"{dataset}/{stem}" if len(groups) > 1 else stem, image, masks[stem]))
    for dataset, stem in sorted(wanted - seen, key=str) if wanted is not None else ():
        report_problem(problems, InputError(f"lists {dataset or ''}/{stem}, which has no image", split_csv))
    return samples


def khanhha_samples(root: PathLike, split: str = "train", problems: Problems | None = None) -> list[Sample]:
    """`train/` or `test/` of the Khanhha dataset (images/*.jpg with masks/*.jpg of the same names)."""
    folder = Path(root) / split
    if not (folder / "images").is_dir():
        raise InputError(f"not a Khanhha dataset: {split}/images is missing", root)
    return paired_samples(folder, problems=problems)


def image_samples(root: PathLike, pattern: str = "**/*") -> list[Sample]:
    """Unlabelled images (SR pre-training): every image under `root`, named by its relative path."""
    root = Path(root)
    return [Sample(_stem_key(p, root), p) for p in list_images(root, pattern)]


def _size_problem(sample: Sample, min_size: int) -> InputError | None:
    h, w = image_size(sample.image)
    if sample.mask is not None:
        mh, mw = image_size(sample.mask)
        if (mh, mw) != (h, w):
            return InputError(f"mask is {mw}x{mh} but its image {sample.image.name} is {w}x{h}", sample.mask)
    if min(h, w) < min_size:
        return InputError(f"image is {w}x{h}, smaller than the {min_size}x{min_size} crop", sample.image)
    return None


def validate_samples(
    samples: Sequence[Sample], min_size: int, problems: Problems | None = None
) -> list[Sample]:
    """Header-only checks before training starts: mask size = image size, both sides >= `min_size`."""
    kept = []
    for sample in samples:
        try:
            problem = _size_problem(sample, min_size)
        except InputError as exc:
            problem = exc
        if problem is not None:
            report_problem(problems, problem)
        else:
            kept.append(sample)
    return kept


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWxC (or HxW) numpy -> CxHxW float tensor."""
    arr = img[:, :, None] if img.ndim == 2 else img
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))


def augment_d4(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random horizontal flip, vertical flip and 90-degree rotation for all `arrays`.

    The paper promises both flips; the authors' code silently dropped the vertical one.
    """
    hflip, vflip = rng.random(2) < 0.5
    turns = int(rng.integers(4))
    out = []
    for a in arrays:
        a = a[:, ::-1] if hflip else a
        a = a[::-1] if vflip else a
        out.append(np.ascontiguousarray(np.rot90(a, turns)))
    return out


class DegradedCrops(Dataset):
    """Training samples degraded on the fly: random crop, D4 augmentation, a fresh kernel per sample.

    Items are dicts: `lr` (3, crop/s, crop/s), `hr` (3, crop, crop), `kernel` (1, k, k), `name`, and for
    labelled samples `mask` (1, crop, crop) in {0, 1} (binarised at > `mask_threshold`). Call `set_epoch`
    before each epoch for new draws (and keep `persistent_workers=False`, so workers see the new epoch).
    With ``degrade=False`` the input is the HR crop itself (and the kernel a delta): how a segmenter on HR
    images (scale 1, the paper's upper bound) trains.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        crop: int = 224,
        config: DegradeConfig | None = None,
        seed: int = 0,
        augment: bool = True,
        mask_threshold: int = 127,
        degrade: bool = True,
    ) -> None:
        self.config = config or DegradeConfig()
        if not degrade and self.config.scale != 1:
            raise ValueError(f"degrade=False needs scale 1, got {self.config.scale}")
        self.degrade = degrade
        if crop <= 0 or crop % self.config.scale:
            raise ValueError(f"crop must be a positive multiple of the scale {self.config.scale}, got {crop}")
        self.samples = list(samples)
        self.crop = crop
        self.seed = seed
        self.augment = augment
        self.mask_threshold = mask_threshold
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        sample = self.samples[index]
        rng = make_rng(self.seed, self.epoch, sample.name)
        hr = read_image(sample.image)
        h, w = hr.shape[:2]
        arrays = [hr]
        if sample.mask is not None:
            mask = read_mask(sample.mask, self.mask_threshold)
            if mask.shape != (h, w):
                raise InputError(
                    f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {w}x{h}", sample.mask
                )
            arrays.append(mask.astype(np.float32))
        if min(h, w) < self.crop:
            raise InputError(f"image is {w}x{h}, smaller than the {self.crop}x{self.crop} crop", sample.image)
        top, left = (int(rng.integers(0, n - self.crop, endpoint=True)) for n in (h, w))
        arrays = [a[top : top + self.crop, left : left + self.crop] for a in arrays]
        if self.augment:
            arrays = augment_d4(arrays, rng)
        hr = np.ascontiguousarray(arrays[0])
        if self.degrade:
            result = degrade(hr, self.config, rng)
            lr, kernel = result.lr, result.kernel
        else:
            lr, kernel = hr, delta_kernel(self.config.kernels.size)
        item: dict[str, torch.Tensor | str] = {
            "lr": to_tensor(lr),
            "hr": to_tensor(hr),
            "kernel": torch.from_numpy(kernel)[None],
            "name": sample.name,
        }
        if sample.mask is not None:
            item["mask"] = to_tensor(arrays[1])
        return item
