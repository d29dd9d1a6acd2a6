"""Segmentation losses L_C on crack *probabilities* (the segmenters end in a sigmoid, as the authors' do).

Every function returns one loss per sample, shape (B,), in float32: the per-sample values are needed to
weight L_S by L_C, and BCE-type terms must be computed in float32 outside autocast anyway. Predictions are
clamped to >= 1e-8 before any log, as in the authors' code.

Boundary Combo (paper Eq. 3):  L_BC = a * L_B + (1 - a) * ((1 - g) * L_D + g * L_WCE).
The paper's a multiplies the Boundary term; the authors' code calls 1 - a "alpha" and schedules it
(see :func:`csbsr_cli.train.schedules.boundary_alpha`). GBC swaps the Dice loss for the generalised Dice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .distance_maps import signed_distance_map

EPS = 1e-8  # the authors' clamp / log smoothing
DICE_SMOOTH = 1e-6  # the authors' BinaryDiceLoss smoothing

SegLossKind = Literal["bc", "gbc", "combo", "dice", "gdice", "wce", "focal-iou"]


def _flat(x: Tensor) -> Tensor:
    return x.float().flatten(1)


def wce_loss(prob: Tensor, target: Tensor, weights: Sequence[float] = (1.0, 1.0)) -> Tensor:
    """Weighted cross-entropy, mean over pixels: -(w1 t log y + w0 (1-t) log(1-y)) / (w1 + w0).

    ``weights`` = (crack, background), the authors' ``BCELOSS_WEIGHT`` order; (1, 1) is plain BCE. Class
    frequency weights are (1/f, 1/(1-f)) for a crack-pixel fraction f (:func:`frequency_weights`).
    """
    w_crack, w_back = float(weights[0]), float(weights[1])
    y, t = _flat(prob).clamp(EPS, 1.0), _flat(target)
    loss = -(w_crack * t * torch.log(y + EPS) + w_back * (1 - t) * torch.log(1 - y + EPS))
    return loss.mean(1) / (w_crack + w_back)


def frequency_weights(crack_fraction: float) -> tuple[float, float]:
    """Class weights inversely proportional to class frequency (paper Sec. 3.2, WCE)."""
    if not 0.0 < crack_fraction < 1.0:
        raise ValueError(f"crack fraction must be in (0, 1), got {crack_fraction}")
    return 1.0 / crack_fraction, 1.0 / (1.0 - crack_fraction)


def dice_loss(prob: Tensor, target: Tensor, p: int = 2, smooth: float = DICE_SMOOTH) -> Tensor:
    """1 - (2 sum(y t) + s) / (sum(y^p) + sum(t^p) + s) on the crack channel (the authors' BinaryDiceLoss)."""
    y, t = _flat(prob), _flat(target)
    num = 2 * (y * t).sum(1) + smooth
    den = y.pow(p).sum(1) + t.pow(p).sum(1) + smooth
    return 1 - num / den


def generalised_dice_loss(prob: Tensor, target: Tensor) -> Tensor:
    """Generalised Dice (Sudre et al. 2017) over the two classes crack and background (paper Eq. 7, M = 2).

    Class weights 1 / (sum of the class's GT)^2, the sum clamped to >= 1 pixel so that a crack-free sample
    stays finite. (The authors' GDiceLoss sees one channel only, which reduces it to a soft Dice, p = 1.)
    """
    y, t = _flat(prob), _flat(target)
    probs = torch.stack((y, 1 - y), dim=1)  # (B, 2, N)
    gts = torch.stack((t, 1 - t), dim=1)
    w = 1.0 / gts.sum(2).clamp_min(1.0) ** 2  # (B, 2)
    inter = (w * (probs * gts).sum(2)).sum(1)
    union = (w * (probs + gts).sum(2)).sum(1)
    return 1 - 2 * inter / union.clamp_min(EPS)


def boundary_loss(prob: Tensor, sdf: Tensor) -> Tensor:
    """Kervadec et al.'s Boundary loss: mean over pixels of y * phi (phi = signed distance map of the GT)."""
    return (_flat(prob).clamp_min(EPS) * _flat(sdf)).mean(1)


def focal_loss(prob: Tensor, target: Tensor, alpha: float = 1.0, gamma: float = 2.0) -> Tensor:
    """Binary focal loss, mean over pixels: -alpha (1 - p_t)^gamma log p_t (SCNet: alpha 1, gamma 2).

    ``alpha`` is a plain factor: SCNet's alpha = 1 would zero the background in Lin et al.'s alpha-balanced
    form, so it cannot be that form.
    """
    y, t = _flat(prob).clamp(EPS, 1.0), _flat(target)
    p_t = t * y + (1 - t) * (1 - y)
    return (-alpha * (1 - p_t).pow(gamma) * torch.log(p_t + EPS)).mean(1)


def soft_iou_loss(prob: Tensor, target: Tensor, smooth: float = DICE_SMOOTH) -> Tensor:
    """1 - (sum(y t) + s) / (sum(y) + sum(t) - sum(y t) + s) (Rahman & Wang's soft IoU, used by SCNet)."""
    y, t = _flat(prob), _flat(target)
    inter = (y * t).sum(1)
    return 1 - (inter + smooth) / (y.sum(1) + t.sum(1) - inter + smooth)


@dataclass(frozen=True)
class SegLossConfig:
    """L_C: ``kind`` and its hyper-parameters. ``alpha`` (Boundary weight) and ``gamma`` (WCE share of the
    region/distribution pair) apply to bc/gbc; combo uses ``gamma`` only."""

    kind: SegLossKind = "bc"
    alpha: float = 0.5
    gamma: float = 0.5
    class_weights: tuple[float, float] = (1.0, 1.0)  # (crack, background) for the WCE term
    aux_weight: float = 0.4  # L_C = L(main) + aux_weight * L(aux), as the authors' PSPNet training
    focal_alpha: float = 1.0
    focal_gamma: float = 2.0
    # One weight per side output instead of aux_weight: L_C = L(main) + sum_i side_weights[i] * L(side i).
    # With "focal-iou" the side term is then the focal loss alone (SCNet, paper Eq. 6-11).
    side_weights: tuple[float, ...] | None = None


# kind -> (region loss, fixed Boundary weight or None = configured, fixed WCE share or None = configured)
_FORMS: dict[str, tuple[str, float | None, float | None]] = {
    "bc": ("dice", None, None),
    "gbc": ("gdice", None, None),
    "combo": ("dice", 0.0, None),
    "dice": ("dice", 0.0, 0.0),
    "gdice": ("gdice", 0.0, 0.0),
    "wce": ("dice", 0.0, 1.0),
    "focal-iou": ("", 0.0, 0.0),  # its own form: focal + soft IoU
}
SEG_LOSS_KINDS: tuple[str, ...] = tuple(_FORMS)


class SegmentationLoss:
    """L_C for a main probability map and an optional auxiliary one (B, n, H, W), per sample.

    ``__call__`` returns a dict of (B,) tensors: ``"seg"`` (the total), ``"seg_main"``, ``"seg_aux"`` (the
    sum of the side losses; with ``side_weights``, their weighted sum) and the components of the main term
    (``boundary``, ``dice``, ``gdice``, ``wce``, ``focal``, ``soft_iou``).
    The signed distance map is computed once per batch and shared by the main and auxiliary terms.
    """

    def __init__(self, config: SegLossConfig) -> None:
        if config.kind not in _FORMS:
            raise ValueError(
                f"unknown segmentation loss {config.kind!r} (known: {', '.join(SEG_LOSS_KINDS)})"
            )
        if config.side_weights is not None and min(config.side_weights, default=-1.0) < 0:
            raise ValueError(f"side weights must be >= 0 (and at least one), got {config.side_weights}")
        self.config = config

    def weights(self, alpha: float | None = None) -> tuple[float, float]:
        """(Boundary weight a, WCE share g) actually used; ``alpha`` overrides the configured a (schedule)."""
        _, fixed_a, fixed_g = _FORMS[self.config.kind]
        a = fixed_a if fixed_a is not None else (self.config.alpha if alpha is None else alpha)
        g = fixed_g if fixed_g is not None else self.config.gamma
        return a, g

    def _single(
        self, prob: Tensor, target: Tensor, sdf: Tensor | None, a: float, g: float
    ) -> dict[str, Tensor]:
        cfg = self.config
        if cfg.kind == "focal-iou":
            parts = {
                "focal": focal_loss(prob, target, cfg.focal_alpha, cfg.focal_gamma),
                "soft_iou": soft_iou_loss(prob, target),
            }
            return {"total": parts["focal"] + parts["soft_iou"], **parts}
        region_name = _FORMS[cfg.kind][0]
        parts: dict[str, Tensor] = {}
        total = prob.new_zeros(prob.shape[0], dtype=torch.float32)
        if g < 1:
            region = dice_loss if region_name == "dice" else generalised_dice_loss
            parts[region_name] = region(prob, target)
            total = total + (1 - a) * (1 - g) * parts[region_name]
        if g > 0:
            parts["wce"] = wce_loss(prob, target, cfg.class_weights)
            total = total + (1 - a) * g * parts["wce"]
        if a > 0:
            assert sdf is not None
            parts["boundary"] = boundary_loss(prob, sdf)
            total = total + a * parts["boundary"]
        return {"total": total, **parts}

    def __call__(
        self, prob: Tensor, target: Tensor, aux: Tensor | None = None, alpha: float | None = None
    ) -> dict[str, Tensor]:
        a, g = self.weights(alpha)
        target = target.float()
        sdf = signed_distance_map(target) if a > 0 and self.config.kind != "focal-iou" else None
        main = self._single(prob, target, sdf, a, g)
        out = {"seg_main": main.pop("total"), **main}
        out["seg"] = out["seg_main"]
        cfg = self.config
        if aux is None or (cfg.side_weights is None and cfg.aux_weight <= 0):
            return out
        if cfg.side_weights is not None and len(cfg.side_weights) != aux.shape[1]:
            raise ValueError(f"{len(cfg.side_weights)} side weights for {aux.shape[1]} side outputs")
        focal_only = cfg.side_weights is not None and cfg.kind == "focal-iou"  # SCNet: soft IoU on fused only
        sides = [
            focal_loss(aux[:, i : i + 1], target, cfg.focal_alpha, cfg.focal_gamma)
            if focal_only
            else self._single(aux[:, i : i + 1], target, sdf, a, g)["total"]
            for i in range(aux.shape[1])
        ]
        if cfg.side_weights is None:
            # Several side outputs (channels) add up, like the authors' CrackFormer x n factor.
            out["seg_aux"] = sum(sides)
            out["seg"] = out["seg_main"] + cfg.aux_weight * out["seg_aux"]
        else:
            out["seg_aux"] = sum(w * side for w, side in zip(cfg.side_weights, sides, strict=True))
            out["seg"] = out["seg_main"] + out["seg_aux"]
        return out
