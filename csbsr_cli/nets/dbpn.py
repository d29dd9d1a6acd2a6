"""DBPN Net_4 (CSSR's SR network), weight-compatible with the authors' ``model/modeling/dbpn.py``.

Four up- and three down-projection units, densely connected from the second down unit on, biased convs,
PReLU everywhere, no bicubic residual and no kernel estimate.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import DownProjection, UpProjection, conv_block, init_conv_kaiming
from .kbpn import PROJECTION_CONV
from .types import SROutput


def _conv(in_ch: int, out_ch: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    # DBPN's base_networks blocks: bias on, PReLU with torch's default init 0.25, keys conv/act.
    return conv_block(
        in_ch, out_ch, kernel_size, stride, padding, bias=True, act=nn.PReLU(), layer_name="conv"
    )


def _deconv(in_ch: int, out_ch: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    return conv_block(
        in_ch,
        out_ch,
        kernel_size,
        stride,
        padding,
        bias=True,
        act=nn.PReLU(),
        transpose=True,
        layer_name="deconv",
    )


class DBPN(nn.Module):
    """The authors' Net_4: ``base_filter`` is the projection width, ``feat`` the first conv's width."""

    def __init__(self, scale: int = 4, base_filter: int = 64, feat: int = 256):
        super().__init__()
        if scale not in PROJECTION_CONV:
            raise ValueError(f"scale must be one of {sorted(PROJECTION_CONV)}, got {scale}")
        proj = (base_filter, base_filter, *PROJECTION_CONV[scale])

        def up(n_in: int) -> UpProjection:
            reduce = _conv(n_in * base_filter, base_filter, 1, 1, 0) if n_in > 1 else None
            return UpProjection(_deconv(*proj), _conv(*proj), _deconv(*proj), conv=reduce)

        def down(n_in: int) -> DownProjection:
            reduce = _conv(n_in * base_filter, base_filter, 1, 1, 0) if n_in > 1 else None
            return DownProjection(_conv(*proj), _deconv(*proj), _conv(*proj), conv=reduce)

        self.feat0 = _conv(3, feat, 3, 1, 1)
        self.feat1 = _conv(feat, base_filter, 1, 1, 0)
        self.up1 = up(1)
        self.down1 = down(1)
        self.up2 = up(1)
        self.down2 = down(2)
        self.up3 = up(2)
        self.down3 = down(3)
        self.up4 = up(3)
        self.output_conv = conv_block(4 * base_filter, 3, 3, 1, 1, bias=True, act=None, layer_name="conv")
        init_conv_kaiming(self)

    def forward(self, lr: Tensor, gt_kernel: Tensor | None = None) -> SROutput:
        """``gt_kernel`` is accepted for the common SR interface and ignored (DBPN is not blind-aware)."""
        x = self.feat1(self.feat0(lr))
        h1 = self.up1(x)
        l1 = self.down1(h1)
        h2 = self.up2(l1)
        concat_h = torch.cat((h2, h1), dim=1)
        concat_l = torch.cat((self.down2(concat_h), l1), dim=1)
        concat_h = torch.cat((self.up3(concat_l), concat_h), dim=1)
        concat_l = torch.cat((self.down3(concat_h), concat_l), dim=1)
        concat_h = torch.cat((self.up4(concat_l), concat_h), dim=1)
        return SROutput(sr=self.output_conv(concat_h), kernel=None)
