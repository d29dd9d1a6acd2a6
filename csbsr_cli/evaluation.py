"""Run a model (or read saved probability maps) over a labelled dataset and hand the arrays to the metrics
library: the engine behind `csbsr evaluate`.

Two phases, so that each gets its own honest speed figure and both ways of scoring agree bit for bit:
1. inference: batched forward passes over equal-sized images; every probability map is written to disk in
   the `--save-predictions` format (16-bit PNG, or exact float32 TIFF) and SR quality is measured at once;
2. metrics: `evaluate_masks` in worker processes over (GT mask, saved map) pairs read back from disk.
Scoring saved maps (`--predictions DIR`) is phase 2 alone on the same files read the same way, so it gives
the same numbers as scoring through the model. Memory holds one batch, never the dataset.
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .data.datasets import Problems, paired_samples, report_problem
from .data.degrade import RNG_SCHEME, DegradeConfig, Padding, degrade, make_rng
from .data.image_io import (
    IMAGE_SUFFIXES,
    read_gray,
    read_image,
    read_tiff_float32,
    write_png,
    write_tiff_float32,
)
from .data.khanhha import degraded_test_pairs, find_blured_root
from .errors import InputError
from .infer.device import describe, versions
from .infer.outputs import to_uint
from .infer.pipeline import load_torch_model, weights_id
from .infer.shape import ShapeRule
from .metrics import (
    THRESHOLDS,
    ImageQuality,
    ImageResult,
    MetricPreset,
    evaluate_masks,
    image_quality,
    summarize,
    write_run,
)
from .metrics.segmentation import threshold_index
from .registry import ModelSpec
from .weights import sha256_file

Layout = Literal["auto", "khanhha", "folder"]
ProbFormat = Literal["png16", "tiff"]
PROB_SUFFIXES = {"png16": ".png", "tiff": ".tiff"}
PROB_QUANTISATION = {
    "png16": "probabilities stored as round(p * 65535) / 65535 (16-bit PNG); the model path scores these "
    "stored values, so --predictions on them gives identical numbers",
    "tiff": "probabilities stored exactly (float32 TIFF)",
}
# The first suffixes tried when looking a file up by name: what our tools write, then any image type.
_LOOKUP_SUFFIXES = (".png", ".tiff", ".tif", *sorted(IMAGE_SUFFIXES - {".png", ".tiff", ".tif"}))


# ----------------------------------------------------------------------------------------------------
# Models: a registry name, a model card, or a folder holding one card.


def model_record(spec: ModelSpec) -> dict[str, Any]:
    """What metrics.json says about the model: enough to know exactly which weights produced the numbers."""
    card = Path(spec.source) if spec.source != "built-in" else None
    return {
        "name": spec.name,
        "source": spec.source,
        "card_sha256": sha256_file(card) if card is not None and card.is_file() else None,
        "weights": weights_id(spec),
        "trained": spec.weights is not None,
        "sr": spec.sr_type,
        "segmenter": spec.segmenter_type,
        "scale": spec.scale,
        "divisor": spec.divisor,
    }


# ----------------------------------------------------------------------------------------------------
# Datasets.


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


def _find(folder: Path, stems: Iterable[str]) -> Path | None:
    for stem in stems:
        for suffix in _LOOKUP_SUFFIXES:
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


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
        if split is not None and csv_path is None:
            csv_path = root / "split.csv"
            if not csv_path.is_file():
                raise InputError("--split needs a split CSV: none at split.csv here; pass --split-csv", root)
        samples = paired_samples(root, csv_path if split is not None else None, split, problems)
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
                lr = _find(lr_root, stems)
                if lr is None:
                    report_problem(problems, InputError(f"no LR image for {key} in", lr_root))
                    continue
                kernel = None if kernels is None else _find(kernels, stems)
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


# ----------------------------------------------------------------------------------------------------
# Model inference.


@dataclass(frozen=True)
class Prediction:
    prob: np.ndarray  # float32 HxW on the HR grid
    sr: np.ndarray | None  # float32 HxWx3 in [0, 1]; None when the HR was segmented directly
    kernel: np.ndarray | None  # estimated kernel; None for SR nets that estimate none


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom/right of (B, C, H, W) to multiples of `multiple` by reflection (replicate if tiny)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class Predictor:
    """A model on a device, fp32, over batches of equal-sized images: padded to its divisor, cropped back.

    `hr_input` segments the HR images directly (the paper's "segmentation in HR" upper bound); a segmenter
    that reads the blur kernel then gets the identity kernel, since an HR image is unblurred.
    """

    def __init__(self, spec: ModelSpec, device: torch.device, hr_input: bool = False) -> None:
        self.spec, self.device, self.hr_input = spec, device, hr_input
        self.model = load_torch_model(spec).to(device).eval()
        self.multiple = spec.divisor * (spec.scale if hr_input else 1)
        self.out_scale = 1 if hr_input else spec.scale
        self.seconds = 0.0
        self.images = 0

    def _identity_kernel(self, n: int) -> torch.Tensor | None:
        if not getattr(self.model.segmentation_model, "uses_kernel", False):
            return None
        k = self.model.kernel_size
        kernel = torch.zeros(n, 1, k, k, device=self.device)
        kernel[:, :, k // 2, k // 2] = 1.0
        return kernel

    def __call__(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        x = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
        h, w = (n * self.out_scale for n in x.shape[-2:])
        start = time.perf_counter()
        with torch.inference_mode():
            x = pad_to_multiple(x.to(self.device), self.multiple)
            if self.hr_input:
                prob = self.model.segment(x, self._identity_kernel(len(x))).prob
                sr = kernel = None
            else:
                out = self.model(x)
                prob, sr, kernel = out.prob, out.sr[..., :h, :w].float().cpu(), out.kernel.float().cpu()
                if not kernel.any():  # SR nets without kernel estimation return zeros
                    kernel = None
            prob = prob[..., :h, :w].float().cpu()
        self.seconds += time.perf_counter() - start
        self.images += len(images)
        return [
            Prediction(
                prob[i, 0].numpy(),
                None if sr is None else sr[i].permute(1, 2, 0).numpy(),
                None if kernel is None else kernel[i, 0].numpy(),
            )
            for i in range(len(images))
        ]


# ----------------------------------------------------------------------------------------------------
# Probability maps on disk.


def write_prediction(folder: Path, name: str, prob: np.ndarray, fmt: ProbFormat) -> Path:
    path = folder / f"{name}{PROB_SUFFIXES[fmt]}"
    if fmt == "tiff":
        write_tiff_float32(path, prob)
    else:
        write_png(path, prob, bits=16)
    return path


def read_prediction(folder: Path, name: str) -> np.ndarray:
    """A saved probability map: float32 TIFF as stored, 8/16-bit PNG scaled by its type."""
    path = _find(folder, (name,))
    if path is None:
        raise InputError(f"no probability map named {name}.png or {name}.tiff", folder)
    return read_tiff_float32(path) if path.suffix.lower() in (".tif", ".tiff") else read_gray(path)


def predictions_folder(path: Path) -> Path:
    """`path`, or the maps inside an evaluate run (predictions/) or a `csbsr segment` run (prob/)."""
    if not path.is_dir():
        raise InputError("predictions folder not found", path)
    return next((d for d in (path / "predictions", path / "prob") if d.is_dir()), path)


# ----------------------------------------------------------------------------------------------------
# The run.


class Hooks:
    """Progress callbacks (the CLI draws bars); the defaults do nothing."""

    def start(self, phase: str, total: int) -> None: ...

    def advance(self, phase: str) -> None: ...


@dataclass(frozen=True)
class EvalOptions:
    preset: MetricPreset
    workers: int = 1
    batch: int = 4
    prob_format: ProbFormat = "png16"
    save_predictions: bool = False
    panels: int = 4
    full_tables: bool = False
    skip_bad: bool = False
    shape: ShapeRule = ShapeRule()  # the shape step, in pixels of the LR input (off by default)


@dataclass
class EvalRun:
    metrics: dict[str, Any]
    problems: list[InputError]
    warnings: list[str]


@dataclass
class _Timing:
    load_s: float = 0.0
    quality_s: float = 0.0
    inference_wall_s: float = 0.0
    metric_wall_s: float = 0.0
    metric_first_result_s: float = 0.0
    metric_steady_s: float = 0.0


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to mix two evaluations in one folder unless asked (--overwrite replaces old outputs)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output exists and is not a folder", out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InputError("output folder is not empty: pass --overwrite or choose another -o", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _batches(loaded: Iterable[Loaded], size: int, use_hr: bool) -> Iterator[list[Loaded]]:
    """Consecutive images of equal input size, at most `size` at a time."""
    batch: list[Loaded] = []
    for image in loaded:
        shape = (image.hr if use_hr else image.lr).shape  # type: ignore[union-attr]
        if batch and (len(batch) == size or (batch[0].hr if use_hr else batch[0].lr).shape != shape):
            yield batch
            batch = []
        batch.append(image)
    if batch:
        yield batch


def _infer(
    dataset: EvalDataset,
    predictor: Predictor,
    pred_dir: Path,
    options: EvalOptions,
    timing: _Timing,
    problems: Problems | None,
    warnings: list[str],
    hooks: Hooks,
) -> tuple[list[EvalItem], list[ImageQuality], list[tuple[Loaded, np.ndarray | None]]]:
    """Phase 1: predictions written to `pred_dir`; returns the images done, their SR quality, panel data."""
    done: list[EvalItem] = []
    quality: list[ImageQuality] = []
    panels: list[tuple[Loaded, np.ndarray | None]] = []

    def loaded() -> Iterator[Loaded]:
        for item in dataset.items:
            start = time.perf_counter()
            try:
                image = load_item(item, dataset, with_lr=not predictor.hr_input)
            except InputError as exc:
                report_problem(problems, exc)
                hooks.advance("inference")
                continue
            finally:
                timing.load_s += time.perf_counter() - start
            yield image

    for batch in _batches(loaded(), options.batch, predictor.hr_input):
        inputs = [image.hr if predictor.hr_input else image.lr for image in batch]
        for image, pred in zip(batch, predictor(inputs), strict=True):  # type: ignore[arg-type]
            name = image.item.name
            write_prediction(pred_dir, name, pred.prob, options.prob_format)
            if pred.sr is not None:
                start = time.perf_counter()
                kernel = pred.kernel
                if kernel is not None and image.kernel is not None and kernel.shape != image.kernel.shape:
                    warnings.append(
                        f"kernel PSNR skipped for {name}: GT kernel is {image.kernel.shape}, the model "
                        f"estimates {kernel.shape}"
                    )
                    kernel = None
                quality.append(image_quality(name, pred.sr, image.hr, options.preset, kernel, image.kernel))
                timing.quality_s += time.perf_counter() - start
            if len(panels) < options.panels:
                panels.append((image, pred.sr))
            done.append(image.item)
            hooks.advance("inference")
    return done, quality, panels


def _score(
    items: Sequence[EvalItem],
    dataset: EvalDataset,
    pred_dir: Path,
    options: EvalOptions,
    timing: _Timing,
    problems: Problems | None,
    hooks: Hooks,
) -> list[ImageResult]:
    """Phase 2: every metric of every (mask, saved map) pair, in `options.workers` processes."""

    def pairs() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for item in items:
            try:
                mask = load_mask(item, dataset)
                prob = read_prediction(pred_dir, item.name)
                if prob.shape != mask.shape:
                    raise InputError(
                        f"probability map is {prob.shape[1]}x{prob.shape[0]} but the mask of {item.name} is "
                        f"{mask.shape[1]}x{mask.shape[0]}",
                        pred_dir,
                    )
            except InputError as exc:
                report_problem(problems, exc)
                hooks.advance("metrics")
                continue
            yield item.name, mask, prob

    stamps: list[float] = []

    def on_result(_: ImageResult) -> None:
        stamps.append(time.perf_counter())
        hooks.advance("metrics")

    start = time.perf_counter()
    shape = options.shape.scaled(dataset.scale) if options.shape.active else None
    results = evaluate_masks(pairs(), options.preset, options.workers, on_result=on_result, shape=shape)
    timing.metric_wall_s = time.perf_counter() - start
    if stamps:
        timing.metric_first_result_s = stamps[0] - start
        timing.metric_steady_s = stamps[-1] - stamps[0]
    return results


PANEL_HEADER = 18
PANEL_GAP = 4


def _label(img: np.ndarray, text: str) -> np.ndarray:
    header = np.full((PANEL_HEADER, img.shape[1], 3), 255, np.uint8)
    cv2.putText(header, text, (3, PANEL_HEADER - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, img])


def panel_image(
    image: Loaded, sr: np.ndarray | None, prob: np.ndarray, threshold: int, preset: MetricPreset
) -> np.ndarray:
    """LR (nearest), SR, HR, GT and the prediction at `threshold` (TP white, FP red, FN blue) side by side."""
    h, w = image.mask.shape
    columns = []
    if image.lr is not None:
        columns.append(("LR", cv2.resize(to_uint(image.lr, 8), (w, h), interpolation=cv2.INTER_NEAREST)))
    if sr is not None:
        columns.append(("SR", to_uint(sr, 8)))
    columns += [("HR", to_uint(image.hr, 8)), ("GT", np.repeat(image.mask[:, :, None], 3, axis=2))]
    gt = image.mask >= preset.seg_gt_min
    pred = prob.astype(np.float32) > THRESHOLDS[threshold]
    colour = np.zeros((h, w, 3), np.uint8)
    colour[gt & pred] = (255, 255, 255)
    colour[~gt & pred] = (255, 40, 40)
    colour[gt & ~pred] = (40, 110, 255)
    columns.append((f"pred > {THRESHOLDS[threshold]:.2f}", colour))
    gap = np.full((h + PANEL_HEADER, PANEL_GAP, 3), 255, np.uint8)
    parts = []
    for label, img in columns:
        parts += [_label(img, label), gap]
    return np.hstack(parts[:-1])


def run_evaluation(
    dataset: EvalDataset,
    out_dir: Path,
    options: EvalOptions,
    *,
    predictor: Predictor | None = None,
    predictions: Path | None = None,
    metadata: dict[str, Any] | None = None,
    hooks: Hooks | None = None,
) -> EvalRun:
    """Score `predictor` (phase 1 + 2) or the maps in `predictions` (phase 2 only); write the run folder."""
    if (predictor is None) == (predictions is None):
        raise ValueError("give exactly one of predictor and predictions")
    hooks = hooks or Hooks()
    problems: Problems | None = list(dataset.problems) if options.skip_bad else None
    warnings: list[str] = []
    timing = _Timing()
    quality: list[ImageQuality] = []
    panel_data: list[tuple[Loaded, np.ndarray | None]] = []
    items: Sequence[EvalItem] = dataset.items
    saved = out_dir / "predictions"
    with tempfile.TemporaryDirectory(prefix=".predictions-", dir=out_dir) as tmp:
        if predictor is not None:
            pred_dir = saved if options.save_predictions else Path(tmp)
            if options.save_predictions and saved.exists():
                shutil.rmtree(saved)  # an --overwrite: maps of the earlier run must not mix in
            hooks.start("inference", len(items))
            start = time.perf_counter()
            try:
                items, quality, panel_data = _infer(
                    dataset, predictor, pred_dir, options, timing, problems, warnings, hooks
                )
            except BaseException:  # an error or Ctrl-C: no partial set of maps that looks complete
                if options.save_predictions:
                    shutil.rmtree(saved, ignore_errors=True)
                raise
            timing.inference_wall_s = time.perf_counter() - start
        else:
            assert predictions is not None
            pred_dir = predictions_folder(predictions)
        if not items:
            raise InputError("no image could be evaluated", dataset.root)
        hooks.start("metrics", len(items))
        seg = _score(items, dataset, pred_dir, options, timing, problems, hooks)
        if not seg:
            raise InputError("no image could be scored", pred_dir)
        panel_paths = _write_panels(out_dir, dataset, pred_dir, seg, panel_data, options)

    meta = dict(metadata or {})
    meta["dataset"] = dataset.record()
    meta["input"] = "predictions" if predictor is None else ("hr" if predictor.hr_input else "lr")
    meta["predictions"] = {
        "dir": str(pred_dir) if predictor is None or options.save_predictions else None,
        "format": options.prob_format if predictor is not None else "as found",
        "quantisation": PROB_QUANTISATION[options.prob_format] if predictor is not None else None,
    }
    if predictor is not None:
        meta["device"] = describe(predictor.device)
        meta["precision"] = "fp32"
        meta["batch"] = options.batch
    meta["timing"] = _timing_record(timing, predictor, seg, options.workers)
    meta["versions"] = versions()
    meta["panels"] = [p.relative_to(out_dir).as_posix() for p in panel_paths]
    meta["shape_step"] = {
        "min_length_px_input": options.shape.min_length,
        "min_elongation": options.shape.min_elongation,
    }
    meta["warnings"] = warnings
    meta["skipped"] = [str(p) for p in problems or []]
    metrics = write_run(out_dir, options.preset, seg, quality, meta, full_tables=options.full_tables)
    return EvalRun(metrics, list(problems or []), warnings)


def _write_panels(
    out_dir: Path,
    dataset: EvalDataset,
    pred_dir: Path,
    seg: Sequence[ImageResult],
    panel_data: list[tuple[Loaded, np.ndarray | None]],
    options: EvalOptions,
) -> list[Path]:
    """Panels of the first images, predictions cut at the dataset's IoU_max threshold."""
    if options.panels <= 0:
        return []
    scored = [r.name for r in seg]
    if not panel_data:  # scoring saved maps: no LR or SR to show
        wanted = set(scored[: options.panels])
        panel_data = [
            (load_item(item, dataset, False), None) for item in dataset.items if item.name in wanted
        ]
    best = threshold_index(summarize(seg, options.preset)["IoU_max_threshold"])
    folder = out_dir / "panels"
    if folder.exists():
        shutil.rmtree(folder)
    paths = []
    for image, sr in [p for p in panel_data if p[0].item.name in set(scored)][: options.panels]:
        prob = read_prediction(pred_dir, image.item.name)
        path = folder / f"{image.item.name}.png"
        write_png(path, panel_image(image, sr, prob, best, options.preset))
        paths.append(path)
    return paths


def _timing_record(
    timing: _Timing, predictor: Predictor | None, seg: Sequence[ImageResult], workers: int
) -> dict[str, Any]:
    """Model and metric speeds measured separately (phase 1 and phase 2 never overlap)."""
    n = len(seg)
    sizes = collections.Counter(f"{r.width}x{r.height}" for r in seg)
    megapixels = sum(r.width * r.height for r in seg) / 1e6
    steady = (n - 1) / timing.metric_steady_s if n > 1 and timing.metric_steady_s > 0 else None
    out: dict[str, Any] = {
        "image_sizes": dict(sizes.most_common()),
        "metric_workers": workers,
        "metric_seconds": timing.metric_wall_s,
        "metric_images_per_s": n / timing.metric_wall_s if timing.metric_wall_s else None,
        "metric_images_per_s_steady": steady,
        "metric_megapixels_per_s_steady": None if steady is None else steady * megapixels / n,
        "metric_startup_seconds": timing.metric_first_result_s,
        "metric_note": "phase 2 alone: reading masks and saved maps + all metrics at 99 thresholds; "
        "'steady' excludes worker start-up (time from the first to the last result)",
    }
    if predictor is not None:
        out.update(
            inference_seconds=timing.inference_wall_s,
            load_seconds=timing.load_s,
            model_seconds=predictor.seconds,
            model_images_per_s=predictor.images / predictor.seconds if predictor.seconds else None,
            image_quality_seconds=timing.quality_s,
        )
    return out
