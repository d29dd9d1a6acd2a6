"""Weak supervision from crack boxes: negatives outside every box, a projection term inside each box.

Outside every box (grown by a margin, since hand-drawn boxes are not pixel-tight) a crack-free pixel is
a certain negative: binary cross-entropy towards 0 (optionally plus the same over the hardest
negatives). Inside a box the crack's pixels are unknown, but a crack
boxed tightly crosses every row and every column of its box: the maximum of the prediction along each
row and each column of the box should reach 1 (BoxInst's projection loss, Tian et al. 2021), scored as a
Dice loss between the projections of the prediction and of the box. With ``mode = "ignore"`` the inside
of the boxes gives no signal at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

EPS = 1e-6
BoxMode = Literal["projection", "ignore"]


@dataclass(frozen=True)
class BoxLossConfig:
    mode: BoxMode = "projection"
    margin: float = 8.0  # pixels of the prediction grid around each box that are neither negative nor box
    negative_weight: float = 1.0
    projection_weight: float = 1.0
    # > 0: add the mean BCE of the hardest `hard_fraction` of each crop's pixels among the negatives. The
    # mean over all negatives dilutes a few hundred pore pixels among ~50k clean ones; this term does not.
    hard_fraction: float = 0.0


def box_masks(boxes: Tensor, height: int, width: int, margin: float = 0.0) -> Tensor:
    """(B, K, H, W) bool: pixel centres inside box k grown by `margin`; padding rows (x1 <= x0) are empty."""
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))
    valid = x1 > x0
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype).view(1, 1, height, 1) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype).view(1, 1, 1, width) + 0.5
    inside = (xs > x0 - margin) & (xs < x1 + margin) & (ys > y0 - margin) & (ys < y1 + margin)
    return inside & valid


def _projection_dice(prob: Tensor, inside: Tensor, dim: int) -> Tensor:
    """Per box (B, K): Dice between max-projections of the prediction and of the box along `dim`."""
    pred = (prob * inside).amax(dim)
    target = inside.any(dim).float()
    num = 2 * (pred * target).sum(-1)
    den = pred.pow(2).sum(-1) + target.sum(-1)
    return 1 - (num + EPS) / (den + EPS)


def box_loss(prob: Tensor, boxes: Tensor, config: BoxLossConfig = BoxLossConfig()) -> dict[str, Tensor]:
    """Per-sample (B,) ``box`` total with its parts ``box_negative`` and ``box_projection``.

    `prob` (B, 1, H, W) crack probabilities; `boxes` (B, K, 4) x0, y0, x1, y1 on the same grid, -1 rows
    for padding. A sample without boxes is all negatives.
    """
    prob = prob.float()[:, 0]
    boxes = boxes.float()
    h, w = prob.shape[-2:]
    grown = box_masks(boxes, h, w, config.margin).any(1)
    negative = ~grown
    bce = -torch.log((1 - prob).clamp_min(EPS))
    n_neg = negative.flatten(1).sum(1).clamp_min(1)
    neg_bce = (bce * negative).flatten(1)
    neg_term = neg_bce.sum(1) / n_neg
    if config.hard_fraction > 0:
        k = max(1, int(config.hard_fraction * h * w))
        neg_term = neg_term + neg_bce.topk(k, dim=1).values.mean(1)
    total = config.negative_weight * neg_term
    parts = {"box_negative": neg_term}
    if config.mode == "projection":
        inside = box_masks(boxes, h, w)
        p = prob[:, None]
        per_box = _projection_dice(p, inside, 2) + _projection_dice(p, inside, 3)  # (B, K)
        has_box = inside.flatten(2).any(2)
        proj = (per_box * has_box).sum(1) / has_box.sum(1).clamp_min(1)
        parts["box_projection"] = proj
        total = total + config.projection_weight * proj
    return {"box": total, **parts}
