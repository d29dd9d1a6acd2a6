"""Distance maps of ground-truth crack masks, computed on the fly with OpenCV's exact Euclidean transform.

The Boundary loss needs the signed distance map of the binarised mask and the crack-oriented SR weight
needs every pixel's distance to the nearest crack pixel. Both are fixed functions of the mask, so they are
computed without gradient on the CPU (well under a millisecond for a 224 x 224 mask) and moved back to
the mask's device.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

MASK_THRESHOLD = 0.5  # soft masks (JPEG / 255) are binarised at this value
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def binarise(mask: Tensor, threshold: float = MASK_THRESHOLD) -> Tensor:
    """Crack pixels of a soft mask in [0, 1] (the authors cast to uint8: 254/255 counted as background)."""
    return mask > threshold


def _edt(binary: np.ndarray) -> np.ndarray:
    """Distance of every non-zero pixel to the nearest zero pixel (0 on zero pixels), float32."""
    return cv2.distanceTransform(binary, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _minmax(dist: np.ndarray) -> np.ndarray:
    span = float(dist.max() - dist.min())
    return (dist - dist.min()) / span if span > 0 else np.zeros_like(dist)


def _crack_masks(mask: Tensor) -> np.ndarray:
    """(B, 1, H, W) soft masks -> (B, H, W) uint8 0/1 on the CPU."""
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, H, W), got {tuple(mask.shape)}")
    return binarise(mask.detach()).squeeze(1).to("cpu", torch.uint8).numpy()


def signed_distance_one(crack: np.ndarray) -> np.ndarray:
    """The authors' normalised signed distance map (``compute_sdf1_1``) of one 0/1 mask.

    phi = minmax(D_out) - minmax(D_in): D_out = distance to the crack (outside), D_in = distance to the
    background (inside), each min-max normalised over the image, so phi lies in [-1, 1]; pixels on the
    crack's inner boundary (4-neighbourhood) are 0. A mask without crack (or without background) gives 0.
    """
    if not crack.any() or crack.all():
        return np.zeros(crack.shape, np.float32)
    outside = _minmax(_edt(1 - crack))
    inside = _minmax(_edt(crack))
    phi = outside - inside
    # Inner boundary: crack pixels with a background 4-neighbour (the image border counts as crack).
    boundary = (crack == 1) & (cv2.erode(crack, _CROSS) == 0)
    phi[boundary] = 0.0
    return phi.astype(np.float32)


def signed_distance_map(mask: Tensor) -> Tensor:
    """(B, 1, H, W) soft masks -> (B, 1, H, W) float32 signed distance maps on the mask's device."""
    maps = np.stack([signed_distance_one(m) for m in _crack_masks(mask)])
    return torch.from_numpy(maps).unsqueeze(1).to(mask.device)


def distance_to_crack(mask: Tensor) -> Tensor:
    """(B, 1, H, W) soft masks -> Euclidean distance in pixels to the nearest crack pixel (0 on cracks).

    An image without any crack gets 0 everywhere, as in the authors' ``compute_sdm``.
    """
    maps = np.stack([_edt(1 - m) if m.any() else np.zeros(m.shape, np.float32) for m in _crack_masks(mask)])
    return torch.from_numpy(maps).unsqueeze(1).to(mask.device)
