"""Bicubic upsampling as the "SR network": the no-learning baseline of the paper's ablations."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from .types import SROutput


class BicubicSR(nn.Module):
    """x`scale` bicubic interpolation, clamped to [0, 1]; no parameters and no kernel estimate."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, lr: Tensor, gt_kernel: Tensor | None = None) -> SROutput:
        sr = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return SROutput(sr=sr.clamp(0.0, 1.0), kernel=None)
