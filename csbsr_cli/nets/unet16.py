"""U-Net16 (TernausNet-style: VGG16 encoder), laid out so the authors' CSBSR checkpoints load strictly.

The authors' variant (model/modeling/unet.py, after khanhha/crack_segmentation) drops TernausNet's dec5:
the centre block runs on conv5 (stride 16) without a further pool, and four x2 decoder blocks return to
full size. Each decoder block is conv3x3+ReLU then either a 4x4/2 transposed conv ("deconv", the authors'
default) or PixelShuffle(2) ("pixel_shuffle", the value in the shipped config), then ReLU.

The encoder is ``encoder`` = VGG16 ``features`` (same indices, so ``encoder.N`` keys match torchvision's);
``conv1``..``conv5`` are views onto the same modules, so the state dict lists every encoder tensor twice
(``encoder.N`` and ``convK.M``), exactly as the authors' checkpoints do, while the parameters count once.
No pretrained weights are fetched.

Facts for the model registry (also class attributes):
- ``divisor = 16``: four 2x2 max-pools; H and W must be multiples of 16 (callers pad; the net does not).
- ``global_context = False``: only convolutions and pools, so tiles with a large enough halo reproduce a
  whole-image forward exactly when their offsets are multiples of 16.
- ``receptive_field``: receptive-field radius in pixels (``receptive_field_radius``; width-independent):
  136 for pixel_shuffle, 151 for deconv. The class attribute holds the larger (valid for both); an
  instance holds its own variant's value. Exact tiling needs a halo of at least this much AND tile
  offsets that are multiples of 16 (the pools' phase).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .types import SegOutput

Upsample = Literal["pixel_shuffle", "deconv"]

# Convs per VGG16 block; a 2x2 max-pool follows each block.
VGG16_BLOCK_CONVS = (2, 2, 3, 3, 3)


def receptive_field_radius(upsample: Upsample) -> int:
    """Largest distance (pixels, per axis) between an output pixel and an input pixel that influences it.

    Propagates the influencing interval of input coordinates back through the layer stack for each of the
    16 output phases (the 2x2 pools are not centred, so the field shifts with ``o mod 16``): a 3x3 conv
    widens an interval by 1 at its own resolution, a pool maps [a, b] to [2a, 2b + 1], PixelShuffle maps
    [a, b] to [a // 2, b // 2], and the 4x4/2/1 transposed conv maps it to [ceil((a - 2) / 2),
    floor((b + 1) / 2)]; a concatenation takes the union of its two inputs' intervals.
    """

    def encoder(k: int, a: int, b: int) -> tuple[int, int]:
        """Input interval behind [a, b] of conv block k (1..5)."""
        n = VGG16_BLOCK_CONVS[k - 1]
        a, b = a - n, b + n
        return (a, b) if k == 1 else encoder(k - 1, 2 * a, 2 * b + 1)

    def decoder_input(k: int, a: int, b: int) -> tuple[int, int]:
        """Input interval behind [a, b] of the decoder input at level k: conv5 for k = 5, else
        cat(upsampled deeper block, conv k)."""
        lo, hi = encoder(k, a, b)
        if k == 5:
            return lo, hi
        c, d = (-((2 - a) // 2), (b + 1) // 2) if upsample == "deconv" else (a // 2, b // 2)
        up_lo, up_hi = decoder_input(k + 1, c - 1, d + 1)  # the block's 3x3 conv, one level deeper
        return min(lo, up_lo), max(hi, up_hi)

    radius = 0
    for o in range(16):
        lo, hi = decoder_input(1, o - 1, o + 1)  # dec1's 3x3 conv; the 1x1 classifier adds nothing
        radius = max(radius, o - lo, hi - o)
    return radius


class ConvRelu(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.conv(x))


class DecoderBlock(nn.Module):
    """conv3x3+ReLU (in -> mid), x2 upsampling (mid -> out), ReLU.

    PixelShuffle(2) yields mid/4 channels, so ``out`` must equal mid/4 there (true for the authors' widths).
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, upsample: Upsample) -> None:
        super().__init__()
        if upsample == "deconv":
            up: nn.Module = nn.ConvTranspose2d(mid_ch, out_ch, kernel_size=4, stride=2, padding=1)
        elif upsample == "pixel_shuffle":
            if mid_ch != 4 * out_ch:
                raise ValueError(f"pixel_shuffle needs mid = 4 * out channels, got {mid_ch} and {out_ch}")
            up = nn.PixelShuffle(2)
        else:
            raise ValueError(f"unknown upsample {upsample!r}; use 'pixel_shuffle' or 'deconv'")
        self.block = nn.Sequential(ConvRelu(in_ch, mid_ch), up, nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


def vgg16_features(widths: Sequence[int]) -> nn.Sequential:
    """torchvision's VGG16 ``features`` layout (conv, ReLU, ..., max-pool) with configurable widths."""
    layers: list[nn.Module] = []
    in_ch = 3
    for n_convs, width in zip(VGG16_BLOCK_CONVS, widths, strict=True):
        for _ in range(n_convs):
            layers += [nn.Conv2d(in_ch, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_ch = width
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class UNet16(nn.Module):
    """U-Net16 returning sigmoid probabilities; defaults are the authors' widths (shipped-config upsampling).

    ``encoder_widths``: the five VGG16 block widths (64, 128, 256, 512, 512); ``num_filters`` sets the
    decoder (centre/dec4 out 8f, dec3 4f, dec2 2f, dec1 f); ``upsample``: "pixel_shuffle" (shipped
    config, 29.5 M params) or "deconv" (the authors' code default, 39.2 M params). A checkpoint's variant
    shows in its keys: only deconv has ``center.block.1.weight``.
    """

    divisor: int = 16
    global_context: bool = False
    receptive_field: int | None = max(
        receptive_field_radius("pixel_shuffle"), receptive_field_radius("deconv")
    )
    uses_kernel: bool = False

    def __init__(
        self,
        num_filters: int = 32,
        encoder_widths: Sequence[int] = (64, 128, 256, 512, 512),
        upsample: Upsample = "pixel_shuffle",
    ) -> None:
        super().__init__()
        f, e = num_filters, tuple(encoder_widths)
        self.upsample = upsample
        self.receptive_field = receptive_field_radius(upsample)
        self.pool = nn.MaxPool2d(2, 2)
        self.encoder = vgg16_features(e)
        self.relu = nn.ReLU(inplace=True)
        convs = [i for i, m in enumerate(self.encoder) if isinstance(m, nn.Conv2d)]
        starts = [sum(VGG16_BLOCK_CONVS[:k]) for k in range(len(VGG16_BLOCK_CONVS) + 1)]
        for k in range(len(VGG16_BLOCK_CONVS)):
            layers: list[nn.Module] = []
            for idx in convs[starts[k] : starts[k + 1]]:
                layers += [self.encoder[idx], self.relu]
            setattr(self, f"conv{k + 1}", nn.Sequential(*layers))
        self.center = DecoderBlock(e[4], f * 32, f * 8, upsample)
        self.dec4 = DecoderBlock(e[3] + f * 8, f * 32, f * 8, upsample)
        self.dec3 = DecoderBlock(e[2] + f * 8, f * 16, f * 4, upsample)
        self.dec2 = DecoderBlock(e[1] + f * 4, f * 8, f * 2, upsample)
        self.dec1 = ConvRelu(e[0] + f * 2, f)
        self.final = nn.Conv2d(f, 1, kernel_size=1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor, kernel: Tensor | None = None) -> SegOutput:
        h, w = x.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"UNet16 needs H and W divisible by {self.divisor}, got {h}x{w}")
        conv1 = self.conv1(x)
        conv2 = self.conv2(self.pool(conv1))
        conv3 = self.conv3(self.pool(conv2))
        conv4 = self.conv4(self.pool(conv3))
        conv5 = self.conv5(self.pool(conv4))
        dec4 = self.dec4(torch.cat([self.center(conv5), conv4], 1))
        dec3 = self.dec3(torch.cat([dec4, conv3], 1))
        dec2 = self.dec2(torch.cat([dec3, conv2], 1))
        dec1 = self.dec1(torch.cat([dec2, conv1], 1))
        return SegOutput(prob=self.sigmoid(self.final(dec1)), aux=None)
