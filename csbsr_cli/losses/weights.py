"""Segmentation-aware weights for the SR loss L_S (paper Sec. 3.3), so SR learns what segmentation needs.

- crack-oriented w^C = exp(-m^C D): D = pixel distance to the nearest GT crack pixel (paper Eq. 9; the
  authors multiply by an extra constant 2, ``crack_scale``);
- fail-oriented w^F = exp(m^F |T^P - T^GT|): T^P the (detached) crack probability, T^GT the binarised GT
  (paper Eq. 10);
- L_S weighted by L_C, per sample: L_S,i <- L_C,i * L_S,i with L_C detached. The authors' version builds
  an (B, B, H, W) map for batch > 1 (a broadcasting bug); this one pairs every sample with its own L_C.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .distance_maps import binarise, distance_to_crack


def crack_oriented_weight(mask: Tensor, m: float, scale: float = 1.0) -> Tensor:
    """(B, 1, H, W) GT masks -> scale * exp(-m * D); a crack-free image gets ``scale`` everywhere."""
    return scale * torch.exp(-m * distance_to_crack(mask))


def fail_oriented_weight(prob: Tensor, mask: Tensor, m: float) -> Tensor:
    """exp(m |T^P - T^GT|) per pixel, no gradient through the prediction."""
    return torch.exp(m * (prob.detach().float() - binarise(mask).float()).abs())


def sr_pixel_weight(
    mask: Tensor, prob: Tensor | None, crack_m: float, fail_m: float, crack_scale: float = 1.0
) -> Tensor | None:
    """The product of the active pixel weights (both may be on, as in the authors' code), or None."""
    weight: Tensor | None = None
    if crack_m > 0:
        weight = crack_oriented_weight(mask, crack_m, crack_scale)
    if fail_m > 0:
        if prob is None:
            raise ValueError("the fail-oriented weight needs the segmentation output")
        fo = fail_oriented_weight(prob, mask, fail_m)
        weight = fo if weight is None else weight * fo
    return weight


def weight_by_seg_loss(sr_loss: Tensor, seg_loss: Tensor) -> Tensor:
    """Per-sample L_S (B,) times the sample's own detached L_C (B,)."""
    if sr_loss.shape != seg_loss.shape:
        raise ValueError(
            f"per-sample losses differ in shape: {tuple(sr_loss.shape)} vs {tuple(seg_loss.shape)}"
        )
    return sr_loss * seg_loss.detach()
