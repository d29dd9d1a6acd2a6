"""The output contracts every SR network and segmenter follows, so the joint model can combine any pair.

SR network:   ``forward(lr, gt_kernel=None) -> SROutput``; ``lr`` is RGB in [0, 1] (not mean/std
              normalised), ``sr`` is NOT clipped (training needs the raw values).
Segmenter:    ``forward(x, kernel=None) -> SegOutput``; ``x`` is the normalised SR image; ``kernel`` is only
              read by segmenters whose class attribute ``uses_kernel`` is True (the blur skip).
Probabilities, not logits: the authors' heads end in a sigmoid and their checkpoints assume it.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class SROutput(NamedTuple):
    sr: Tensor  # (B, 3, s*h, s*w), unclipped
    kernel: Tensor | None  # (B, 1, k, k) estimated blur kernel, sum-normalised; None if the net has none


class SegOutput(NamedTuple):
    prob: Tensor  # (B, 1, H, W) crack probability
    aux: (
        Tensor | None
    )  # (B, n, H, W) auxiliary probabilities for the training loss (PSP aux head, side outputs)


class JointOutput(NamedTuple):
    sr: Tensor  # clipped to [0, 1] at inference, raw in training
    prob: Tensor  # (B, 1, s*h, s*w)
    kernel: Tensor  # (B, 1, k, k); zeros for SR nets without kernel estimation (as the authors return)
    aux: Tensor | None
