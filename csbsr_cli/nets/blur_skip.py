"""The blur skip of the authors' ``PSPNet_BlurSkip``: the estimated kernel modulates the last PSP features.

Keys relative to the module equal the released ``segmentation_model.blur_skip.*`` entries (children
``0``..``2n-1`` alternate SFT-like block and 3x3 conv + BN + ReLU), so PSPNet can hold it as ``blur_skip``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import conv_block, conv_with_condition


class SFTLikeBlock(nn.Module):
    """X = [features, condition]; features * sigmoid(conv(PReLU(conv(X)))) + conv(PReLU(conv(X)))."""

    def __init__(self, features: int, cond_ch: int):
        super().__init__()
        n = features + cond_ch
        self.conv_scale = nn.Sequential(
            conv_block(n, n, 3, 1, 1, bias=True, act=nn.PReLU(init=0.01)),
            conv_block(n, features, 3, 1, 1, bias=True, act=nn.Sigmoid()),
        )
        self.conv_shift = nn.Sequential(
            conv_block(n, n, 3, 1, 1, bias=True, act=nn.PReLU(init=0.01)),
            conv_block(n, features, 3, 1, 1, bias=True, act=None),
        )
        # The authors' block init: Kaiming (a=0.01) before PReLU, Xavier before sigmoid / no activation.
        for branch in (self.conv_scale, self.conv_shift):
            nn.init.kaiming_normal_(branch[0].layer.weight, a=0.01, nonlinearity="leaky_relu")
            nn.init.xavier_normal_(branch[1].layer.weight, gain=1.0)
            for block in branch:
                nn.init.zeros_(block.layer.bias)

    @staticmethod
    def _branch(seq: nn.Sequential, features: Tensor, cond: Tensor, fast: bool) -> Tensor:
        first = seq[0]
        return seq[1](first.act(conv_with_condition(first.layer, features, cond, fast)))

    def forward(self, features: Tensor, cond: Tensor, fast: bool) -> Tensor:
        scale = self._branch(self.conv_scale, features, cond, fast)
        shift = self._branch(self.conv_shift, features, cond, fast)
        return features * scale + shift


class BlurSkip(nn.Module):
    """``n_layers`` x [SFT-like block conditioned on the flattened kernel, 3x3 conv + BN + ReLU], residual."""

    def __init__(
        self, features: int = 64, kernel_size: int = 21, n_layers: int = 2, fast_kernel: bool = True
    ):
        super().__init__()
        self.cond_ch = kernel_size * kernel_size
        self.fast_kernel = fast_kernel
        for i in range(n_layers):
            self.add_module(str(2 * i), SFTLikeBlock(features, self.cond_ch))
            conv = conv_block(
                features,
                features,
                3,
                1,
                1,
                bias=False,
                act=nn.ReLU(inplace=True),
                norm=nn.BatchNorm2d(features),
            )
            nn.init.kaiming_normal_(conv.layer.weight, nonlinearity="relu")
            self.add_module(str(2 * i + 1), conv)

    def branch(self, features: Tensor, kernel: Tensor) -> Tensor:
        """The residual branch; ``kernel`` (B, 1, k, k) (or (B, k*k, 1, 1)) is the sum-normalised estimate."""
        cond = kernel.reshape(features.shape[0], -1)
        if cond.shape[1] != self.cond_ch:
            raise ValueError(f"expected a kernel with {self.cond_ch} taps, got {tuple(kernel.shape)}")
        q = features
        for block in self.children():
            q = block(q, cond, self.fast_kernel) if isinstance(block, SFTLikeBlock) else block(q)
        return q

    def forward(self, features: Tensor, kernel: Tensor) -> Tensor:
        return features + self.branch(features, kernel)
