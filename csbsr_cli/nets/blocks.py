"""Building blocks shared by the SR networks and the blur skip.

Key names follow the authors' modules (``layer``/``norm``/``act`` in KBPN and the blur skip,
``conv``/``deconv``/``act`` in DBPN) so their checkpoints load strictly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def conv_block(
    in_ch: int,
    out_ch: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    *,
    bias: bool,
    act: nn.Module | None,
    norm: nn.Module | None = None,
    transpose: bool = False,
    layer_name: str = "layer",
) -> nn.Sequential:
    """conv (or transposed conv) -> optional norm -> optional activation, under the authors' key names."""
    conv_cls = nn.ConvTranspose2d if transpose else nn.Conv2d
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    parts[layer_name] = conv_cls(in_ch, out_ch, kernel_size, stride, padding, bias=bias)
    if norm is not None:
        parts["norm"] = norm
    if act is not None:
        parts["act"] = act
    return nn.Sequential(parts)


class UpProjection(nn.Module):
    """DBPN up-projection unit: H0 = up1(L); L0 = down(H0); H1 = up3(L0 - L); out = H1 + H0.

    ``conv`` (optional) is the 1x1 reduction of a dense unit, applied to the input first.
    """

    def __init__(self, up_conv1: nn.Module, up_conv2: nn.Module, up_conv3: nn.Module, conv: nn.Module | None):
        super().__init__()
        self.conv = conv
        self.up_conv1 = up_conv1
        self.up_conv2 = up_conv2
        self.up_conv3 = up_conv3

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is not None:
            x = self.conv(x)
        h0 = self.up_conv1(x)
        l0 = self.up_conv2(h0)
        h1 = self.up_conv3(l0 - x)
        return h1 + h0


class DownProjection(nn.Module):
    """DBPN down-projection unit: L0 = down1(H); H0 = up(L0); L1 = down3(H0 - H); out = L1 + L0."""

    def __init__(
        self, down_conv1: nn.Module, down_conv2: nn.Module, down_conv3: nn.Module, conv: nn.Module | None
    ):
        super().__init__()
        self.conv = conv
        self.down_conv1 = down_conv1
        self.down_conv2 = down_conv2
        self.down_conv3 = down_conv3

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is not None:
            x = self.conv(x)
        l0 = self.down_conv1(x)
        h0 = self.down_conv2(l0)
        l1 = self.down_conv3(h0 - x)
        return l1 + l0


def conv_with_condition(
    conv: nn.Conv2d, x: Tensor | None, cond: Tensor, fast: bool, size: tuple[int, int] | None = None
) -> Tensor:
    """``conv(cat([x, cond broadcast over x's grid]))`` for a spatially constant condition ``cond`` (B, C).

    The authors materialise the broadcast condition (441 channels) and convolve it at full resolution. With
    ``fast`` the condition part is computed exactly from the decomposition conv(cat(x, c)) = conv(x, W_x) +
    conv(c, W_c): for a constant c and zero padding, the second term at a pixel is the sum, over the taps
    that fall inside the image, of the per-tap vectors W_c[:, :, dy, dx] @ c, i.e. those vectors convolved
    with an all-ones image. That costs O*kh*kw MACs per pixel instead of O*C*kh*kw; the parameters are the
    same single Conv2d. ``x`` None means the input is the condition alone, on a grid of ``size``.
    """
    batch, n_cond = cond.shape
    if x is None:
        if size is None:
            raise ValueError("size is required when x is None")
        height, width = size
        n_x = 0
    else:
        height, width = x.shape[-2:]
        n_x = x.shape[1]
    if conv.in_channels != n_x + n_cond or conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError(f"{conv} does not take {n_x} feature + {n_cond} condition channels")
    if not fast:
        cond_map = cond.reshape(batch, n_cond, 1, 1).expand(batch, n_cond, height, width)
        return conv(cond_map if x is None else torch.cat((x, cond_map), dim=1))

    weight = conv.weight
    kh, kw = weight.shape[-2:]
    taps = torch.einsum("oikl,bi->bokl", weight[:, n_x:], cond)  # (B, O, kh, kw)
    ones = cond.new_ones(1, 1, height, width)
    cond_term = F.conv2d(
        ones,
        taps.reshape(batch * conv.out_channels, 1, kh, kw),
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
    )
    cond_term = cond_term.view(batch, conv.out_channels, *cond_term.shape[-2:])
    if x is None:
        if conv.bias is None:
            return cond_term
        return cond_term + conv.bias.view(1, -1, 1, 1)
    out = F.conv2d(x, weight[:, :n_x].contiguous(), conv.bias, conv.stride, conv.padding, conv.dilation)
    return out + cond_term


def set_fast_kernel(module: nn.Module, enabled: bool) -> None:
    """Switch every submodule owning a ``fast_kernel`` flag (KBPN, BlurSkip) to the fast or plain path."""
    for sub in module.modules():
        if hasattr(sub, "fast_kernel"):
            sub.fast_kernel = enabled


def init_conv_kaiming(module: nn.Module) -> None:
    """The authors' final re-init of KBPN/DBPN: Kaiming-normal for every (transposed) conv, zero bias."""
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
