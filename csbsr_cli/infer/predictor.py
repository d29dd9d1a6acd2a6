"""The model as `csbsr evaluate` runs it: whole images (no tiles), fp32, in batches of equal-sized images
padded to the model's divisor and cropped back, timed apart from reading and scoring."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.evalsets import Loaded
from ..registry import ModelSpec
from ..utils.digest import sha256_file
from .runner import load_torch_model, weights_id


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


def equal_size_batches(loaded: Iterable[Loaded], size: int, use_hr: bool) -> Iterator[list[Loaded]]:
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
