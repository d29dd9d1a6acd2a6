"""The "no SR" network: segment the input image itself (scale 1), e.g. a segmenter trained on HR images."""

from __future__ import annotations

from torch import Tensor, nn

from .types import SROutput


class IdentitySR(nn.Module):
    """Returns the input unchanged and no kernel, so ``JointModel`` becomes normalise -> segment."""

    scale: int = 1

    def forward(self, lr: Tensor, gt_kernel: Tensor | None = None) -> SROutput:
        return SROutput(sr=lr, kernel=None)
