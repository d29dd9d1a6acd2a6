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
from torch.utils.data import Dataset, Sampler

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
from ..data.image_io import read_mask
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


@dataclass
class TrainData:
    train: Dataset
    val: Dataset | None
    train_samples: list[Sample]
    val_samples: list[Sample]
    problems: list[InputError]


def _list(
    cfg: TrainConfig, roots: Sequence[str], split: str | None, problems: Problems | None
) -> list[Sample]:
    d = cfg.data
    samples: list[Sample] = []
    for root in roots:
        if d.kind == "images":
            samples += image_samples(root)
        elif d.kind == "khanhha":
            samples += khanhha_samples(root, "train", problems)
        else:
            csv = d.split_csv or None
            samples += paired_samples(root, csv, split if csv else None, problems)
    return samples


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
    if d.val:
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
    if not train:
        raise InputError("no usable training images", ", ".join(d.train))
    degrade = DegradeConfig(scale=scale, kernels=KernelLaw(sigma=d.sigma), clamp=d.clamp, quantize=d.quantize)
    # A scale-1 model (a segmenter alone) trains on the HR images themselves, as the paper's HR upper bound.
    blur = scale > 1
    train_set = DegradedCrops(train, crop=d.hr_crop, config=degrade, seed=cfg.seed, degrade=blur)
    # Validation: fixed crops and kernels (epoch 0 of its own seed), no augmentation.
    val_set = (
        DegradedCrops(val, crop=val_crop, config=degrade, seed=cfg.seed + 1, augment=False, degrade=blur)
        if val
        else None
    )
    return TrainData(train_set, val_set, train, val, problems)


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
