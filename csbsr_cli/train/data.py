"""Training data plumbing: the held-out split, and a sample stream that a resumed run re-enters exactly.

The stream is infinite and indexed by a global position p: p -> (epoch p // n, the p % n-th index of that
epoch's seeded permutation). Step s of a run with global batch G reads positions [s G, (s + 1) G); rank r
and micro-batch a take the slice starting at (a * world + r) * batch. So the batches depend on the step
only, not on how many processes, workers or interruptions there were, and DDP with W ranks sees exactly
the micro-batches a single process with W accumulation steps would see. Datasets draw their randomness
from (epoch, index) (``DegradedCrops.set_epoch``), so every sample is reproducible as well.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..data.boxes import MAX_BOXES, BoxCrops, BoxSample, box_samples
from ..data.coco import coco_samples
from ..data.datasets import (
    DegradedCrops,
    Problems,
    Sample,
    image_samples,
    khanhha_samples,
    paired_samples,
    validate_samples,
)
from ..data.degrade import DegradeConfig
from ..data.image_io import image_size, read_mask
from ..data.kernels import KernelLaw
from ..errors import InputError
from .config import TrainConfig

SPLIT_SEED = 1121  # the authors' random_split seed (95/5 of Khanhha train/)


def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, 0x5EED])).permutation(n)


class StreamSampler(Sampler[list[tuple[int, int]]]):
    """Infinite batches of (epoch, dataset index) for one rank, starting at `start_step` (see module doc)."""

    def __init__(
        self,
        n: int,
        seed: int,
        batch: int,
        rank: int = 0,
        world: int = 1,
        accum: int = 1,
        start_step: int = 0,
    ) -> None:
        if n < 1:
            raise InputError("the training set is empty")
        self.n, self.seed, self.batch = n, seed, batch
        self.rank, self.world, self.accum = rank, world, accum
        self.start_step = start_step
        self._epoch, self._perm = -1, np.empty(0, np.int64)

    @property
    def global_batch(self) -> int:
        return self.batch * self.world * self.accum

    def item(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.n)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, _permutation(self.n, self.seed, epoch)
        return epoch, int(self._perm[offset])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            for a in range(self.accum):
                start = step * self.global_batch + (a * self.world + self.rank) * self.batch
                yield [self.item(start + i) for i in range(self.batch)]
            step += 1


class EpochIndexed(Dataset):
    """Items addressed by (epoch, index): the dataset's epoch is set per item (on the worker's own copy)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]):  # noqa: ANN204 - whatever the dataset returns
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def ignore_sigint(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which saves a checkpoint before exiting."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Mixture(Dataset):
    """Several datasets in one stream, each with a fixed share of every epoch.

    An epoch has ``len(sources[0]) / share[0]`` slots, split among the sources by share; a source's slots
    walk through its items in a fresh seeded order each time round, so every item comes up before any
    repeats. Items get the box-supervision fields (``sup``, ``has_hr``, ``boxes``) where they lack them, so
    pixel- and box-labelled samples batch together.
    """

    def __init__(self, sources: Sequence[tuple[Dataset, float]], seed: int) -> None:
        sources = [(d, s) for d, s in sources if len(d) and s > 0]
        if not sources:
            raise InputError("the training set is empty")
        total = sum(s for _, s in sources)
        first, share = sources[0]
        length = max(1, round(len(first) * total / share))
        self.sources = [d for d, _ in sources]
        self.counts = [max(1, round(length * s / total)) for _, s in sources]
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.counts)

    def locate(self, index: int) -> tuple[int, int]:
        """(source, item) of slot `index` in the current epoch."""
        for k, count in enumerate(self.counts):
            if index < count:
                n = len(self.sources[k])
                round_, offset = divmod(self.epoch * count + index, n)
                return k, int(_permutation(n, self.seed + 7919 * (k + 1), round_)[offset])
            index -= count
        raise IndexError(index)

    def __getitem__(self, index: int) -> dict:
        k, item_index = self.locate(index)
        source = self.sources[k]
        if hasattr(source, "set_epoch"):
            source.set_epoch(self.epoch)
        return with_box_fields(source[item_index])


def with_box_fields(item: dict) -> dict:
    """A pixel-labelled item with the neutral box fields: pixel supervision, an HR target, no boxes."""
    item.setdefault("sup", torch.tensor(0))
    item.setdefault("has_hr", torch.tensor(1.0))
    item.setdefault("boxes", torch.full((MAX_BOXES, 4), -1.0))
    return item


@dataclass
class TrainData:
    train: Dataset
    val: Dataset | None
    train_samples: list[Sample]
    val_samples: list[Sample]
    problems: list[InputError]
    box_val: Dataset | None = None


def _list(
    cfg: TrainConfig, roots: Sequence[str], split: str | None, problems: Problems | None
) -> list[Sample]:
    d = cfg.data
    samples: list[Sample] = []
    for root in roots:
        if d.kind == "boxes":
            continue  # box folders are listed by _box_list
        if d.kind == "images":
            samples += image_samples(root)
        elif d.kind == "khanhha":
            samples += khanhha_samples(root, "train", problems)
        else:
            csv = d.split_csv or None
            samples += paired_samples(root, csv, split if csv else None, problems)
    return samples


def _box_list(roots: Sequence[str], problems: Problems | None) -> list[BoxSample]:
    return [s for root in roots for s in box_samples(root, problems)]


def _box_val_set(cfg: TrainConfig, degrade: DegradeConfig, problems: Problems | None) -> Dataset | None:
    """Whole validation tiles as LR inputs: every tile with a box and `box_val_free` evenly spaced others."""
    d = cfg.data
    samples = _box_list(d.box_val, problems)
    if not samples:
        return None
    free = [s for s in samples if not s.positive]
    step = max(1, len(free) // d.box_val_free) if d.box_val_free else 0
    chosen = [s for s in samples if s.positive] + (free[::step][: d.box_val_free] if step else [])
    side = min(min(image_size(s.image)) for s in chosen)
    crop = side // degrade.scale * degrade.scale * degrade.scale
    return BoxCrops(chosen, crop=crop, config=degrade, seed=cfg.seed + 1, presentation="lr", augment=False)


def _random_split(samples: list[Sample], fraction: float) -> tuple[list[Sample], list[Sample]]:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(samples))
    n_val = round(len(samples) * fraction)
    return [samples[i] for i in sorted(order[n_val:])], [samples[i] for i in sorted(order[:n_val])]


def build_data(cfg: TrainConfig, scale: int) -> TrainData:
    """Training and held-out validation sets of degraded crops, as the config describes them.

    Validation: explicit ``data.val`` roots, else the split CSV's ``val_split`` rows, else a seeded random
    ``val_fraction`` of the training listing (the authors' 95/5).
    """
    d = cfg.data
    problems: list[InputError] = []
    collect = problems if d.skip_bad else None
    train = _list(cfg, d.train, d.train_split, collect)
    if d.kind == "boxes":
        val = []
    elif d.val:
        val = _list(cfg, d.val, d.val_split, collect)
    elif d.split_csv and d.kind == "pairs":
        val = _list(cfg, d.train, d.val_split, collect)
    else:
        train, val = _random_split(train, d.val_fraction)
    train = validate_samples(train, d.hr_crop, collect)
    val_crop = d.val_crop or d.hr_crop
    val = validate_samples(val, val_crop, collect)
    if d.val_max:
        val = val[: d.val_max]
    boxes = _box_list(d.train if d.kind == "boxes" else d.boxes, collect)
    frames = [s for path in d.coco for s in coco_samples(path, d.coco_images or None)]
    if not train and not boxes and not frames:
        raise InputError("no usable training images", ", ".join(d.train))
    degrade = DegradeConfig(
        scale=scale, kernels=KernelLaw(sigma=d.sigma), clamp=d.clamp, quantize=d.quantize, padding=d.padding
    )
    # A scale-1 model (a segmenter alone) trains on the HR images themselves, as the paper's HR upper bound.
    blur = scale > 1
    train_set: Dataset = DegradedCrops(train, crop=d.hr_crop, config=degrade, seed=cfg.seed, degrade=blur)
    if boxes or frames:
        if scale == 1:
            raise InputError("box- and COCO-labelled frames train SR + segmentation models (scale > 1)")
        box_share = d.box_fraction if boxes else 0.0
        coco_share = d.coco_fraction if frames else 0.0
        if not train:  # no pixel-labelled folders: the weak labels share the whole stream
            total = box_share + coco_share or 1.0
            box_share, coco_share = box_share / total, coco_share / total
        positives = [s for s in boxes if s.positive]
        negatives = [s for s in boxes if not s.positive]
        pos_share = d.box_positive_fraction if positives and negatives else float(bool(positives))
        crops = dict(crop=d.hr_crop, config=degrade, seed=cfg.seed, presentation=d.box_presentation)
        train_set = Mixture(
            [
                (train_set, 1.0 - box_share - coco_share),
                (BoxCrops(positives, **crops), box_share * pos_share),
                (BoxCrops(negatives, **crops), box_share * (1 - pos_share)),
                (BoxCrops(frames, **crops), coco_share),
            ],
            cfg.seed,
        )
    # Validation: fixed crops and kernels (epoch 0 of its own seed), no augmentation.
    val_set = (
        DegradedCrops(val, crop=val_crop, config=degrade, seed=cfg.seed + 1, augment=False, degrade=blur)
        if val
        else None
    )
    box_val = _box_val_set(cfg, degrade, collect) if d.box_val else None
    return TrainData(train_set, val_set, train, val, problems, box_val)


def crack_fraction(samples: Sequence[Sample]) -> float:
    """Fraction of crack pixels over all training masks (for frequency-based WCE class weights)."""
    crack = total = 0
    for sample in samples:
        if sample.mask is None:
            continue
        mask = read_mask(sample.mask)
        crack += int(mask.sum())
        total += mask.size
    if total == 0 or crack == 0:
        raise InputError("cannot derive class weights from the masks: no crack pixels found")
    return crack / total
