"""SR losses L_S, one value per sample (B,) in float32, optionally weighted per pixel (w^C, w^F).

KBPN (the authors' ``KBPNLoss``): w_hr * mean|SR - HR| + w_lr * mean|pLR - LR| + w_k * mean (K^ - K)^2,
pLR = the SR image blurred by the *estimated* kernel and bicubically downscaled (``nets.kbpn.pseudo_lr``),
LR = the network input. The authors meant (0.4, 0.4, 0.2) but wrote ``[0.4, 0.4, 0,2]``, which Python
reads as four numbers, so their kernel weight is 0: set ``kernel_weight = 0`` to reproduce them.
DBPN and other SR nets without a kernel: per-sample mean L1.

Pixel weights multiply the HR L1 map, and (bilinearly resized to the LR size) the LR L1 map; the kernel term
is never weighted. Weights are not renormalised, as in the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor
from torch.nn import functional as F

from ..nets.kbpn import pseudo_lr

SRLossKind = Literal["kbpn", "l1"]


@dataclass(frozen=True)
class SRLossConfig:
    kind: SRLossKind = "kbpn"
    hr_weight: float = 0.4
    lr_weight: float = 0.4
    kernel_weight: float = 0.2  # the authors' intended value; their typo made it 0
    scale: int = 4


def _weighted_mean(loss_map: Tensor, weight: Tensor | None) -> Tensor:
    if weight is not None:
        loss_map = loss_map * weight
    return loss_map.flatten(1).mean(1)


class SRLoss:
    """``__call__`` returns a dict of (B,) tensors: ``"sr"`` (the total) and its parts (``sr_hr``, and
    ``sr_lr``, ``sr_kernel`` for KBPN)."""

    def __init__(self, config: SRLossConfig) -> None:
        if config.kind not in ("kbpn", "l1"):
            raise ValueError(f"unknown SR loss {config.kind!r} (known: kbpn, l1)")
        self.config = config

    def __call__(
        self,
        sr: Tensor,
        hr: Tensor,
        lr: Tensor | None = None,
        kernel: Tensor | None = None,
        gt_kernel: Tensor | None = None,
        pixel_weight: Tensor | None = None,
    ) -> dict[str, Tensor]:
        cfg = self.config
        sr, hr = sr.float(), hr.float()
        hr_term = _weighted_mean((sr - hr).abs(), pixel_weight)
        if cfg.kind == "l1":
            return {"sr": hr_term, "sr_hr": hr_term}
        if lr is None or kernel is None or gt_kernel is None:
            raise ValueError("the KBPN loss needs the LR input, the estimated kernel and the GT kernel")
        lr = lr.float()
        plr = pseudo_lr(sr, kernel.float(), cfg.scale)
        lr_weight = None
        if pixel_weight is not None:
            lr_weight = F.interpolate(pixel_weight, size=lr.shape[-2:], mode="bilinear", align_corners=False)
        lr_term = _weighted_mean((plr - lr).abs(), lr_weight)
        kernel_term = (kernel.float() - gt_kernel.float()).pow(2).flatten(1).mean(1)
        total = cfg.hr_weight * hr_term + cfg.lr_weight * lr_term + cfg.kernel_weight * kernel_term
        return {"sr": total, "sr_hr": hr_term, "sr_lr": lr_term, "sr_kernel": kernel_term}
