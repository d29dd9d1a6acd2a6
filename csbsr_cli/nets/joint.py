"""The CSBSR joint model: SR -> (clip at inference) -> per-image normalisation -> segmenter."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .types import JointOutput

# The authors' dataset statistics, used by NORM_SR_OUTPUT == "all".
DATASET_MEAN = (0.4741, 0.4937, 0.5048)
DATASET_STD = (0.1621, 0.1532, 0.1523)

SRNorm = Literal["instance", "dataset", "none"]


class JointModel(nn.Module):
    """Attribute names ``sr_model`` and ``segmentation_model`` match the authors' state-dict prefixes."""

    def __init__(
        self,
        sr_model: nn.Module,
        segmentation_model: nn.Module,
        sr_norm: SRNorm = "instance",
        kernel_size: int = 21,
    ) -> None:
        super().__init__()
        self.sr_model = sr_model
        self.segmentation_model = segmentation_model
        self.sr_norm = sr_norm
        self.kernel_size = kernel_size
        self.register_buffer("_mean", torch.tensor(DATASET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(DATASET_STD).view(1, 3, 1, 1), persistent=False)

    def normalise(self, sr: Tensor) -> Tensor:
        if self.sr_norm == "instance":
            # InstanceNorm2d(3) without affine: per image and channel, biased variance, eps 1e-5.
            return F.instance_norm(sr, eps=1e-5)
        if self.sr_norm == "dataset":
            return (sr - self._mean) / self._std
        return sr

    def segment(self, sr: Tensor, kernel: Tensor | None = None):
        """Segment an SR (or HR) image in [0, 1]; used for the 'segmentation in HR' upper bound too."""
        return self.segmentation_model(self.normalise(sr), kernel)

    def forward(self, lr: Tensor, gt_kernel: Tensor | None = None) -> JointOutput:
        sr, kernel = self.sr_model(lr, gt_kernel)
        if not self.training:
            sr = sr.clamp(0.0, 1.0)
        seg = self.segment(sr, kernel)
        if kernel is None:
            kernel = sr.new_zeros(sr.shape[0], 1, self.kernel_size, self.kernel_size)
        return JointOutput(sr=sr, prob=seg.prob, kernel=kernel, aux=seg.aux)
