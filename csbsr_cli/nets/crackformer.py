"""CrackFormer (Liu et al., ICCV 2021) as the authors' CSBSR uses it, so their checkpoints load strictly.

A SegNet-like encoder/decoder whose blocks are "transformer bottlenecks" (1x1 conv -> local self-attention +
conv MLP -> 1x1 conv, GroupNorm and GELU everywhere), max-pool indices carried to max-unpool, and a side
output per scale: the encoder's last map and the decoder's output are fused, gated by a "local attention"
(LA) mask computed from the other maps of that scale, reduced to one channel and bilinearly upsampled. A 1x1
conv fuses the five side logits into the main output.

Reproduced as the authors run it (shared/reference/fixtures/fwd_crackformer.json is their forward):
- encoder levels 3-5 apply their second block twice; the third block (``nn3``) is built, stored in the
  checkpoint and never run;
- each bottleneck stores a second GroupNorm (``bn2``) that is never applied;
- the MLP dropout (p 0.3) is active in training.

Facts for the model registry (also class attributes): ``divisor = 16`` (five 2x2 pools; the side output of
the fifth level is upsampled x16, so H and W must be multiples of 16 for the sides to match the input);
``global_context = True`` and ``receptive_field = None``: the attention's content term (keys softmaxed over
all positions) and GroupNorm both see the whole map, so tiles never equal a whole-image forward exactly.

Parity bound: max-pool indices feed max-unpool, and the argmax of a 2x2 window is discontinuous where it
(nearly) ties. An input change of 1e-6 (or the authors' SR differing from ours by 5e-7) can flip it and move
a value one pixel over: probabilities then differ by up to a few 1e-3 in small clusters (4.8e-4 on one
full-size checkpoint); with the indices held fixed the change is ~1e-5. The tie rule itself is PyTorch's
(first maximum in the window) on both sides (tests/test_hardening.py measures both).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .types import SegOutput

# LocalSABlock hyper-parameters of the authors' model: heads, query/key depth, value "u", window m x m.
HEADS = 4
KEY_DIM = 16
WINDOW = 7
MLP_DROPOUT = 0.3
GN_GROUP = 4  # every GroupNorm has channels // 4 groups


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(channels // GN_GROUP, channels)


class ConvRelu(nn.Module):
    """3x3 conv (bias) + ReLU; key ``conv``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x))


class LocalSelfAttention(nn.Module):
    """Lambda-network style attention: a global "content" term (keys softmaxed over all positions) plus a
    local "position" term (a learned m x m embedding convolved over the values)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.value_dim = out_ch // HEADS
        self.embedding = nn.Parameter(torch.randn(KEY_DIM, 1, 1, WINDOW, WINDOW))
        self.queries = nn.Sequential(nn.Conv2d(in_ch, KEY_DIM * HEADS, 1, bias=False), _gn(KEY_DIM * HEADS))
        self.keys = nn.Sequential(nn.Conv2d(in_ch, KEY_DIM, 1, bias=False), _gn(KEY_DIM))
        self.values = nn.Sequential(nn.Conv2d(in_ch, self.value_dim, 1, bias=False), _gn(self.value_dim))

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        n, v_dim = h * w, self.value_dim
        queries = self.queries(x).view(b, HEADS, KEY_DIM, n)
        keys = torch.softmax(self.keys(x).view(b, KEY_DIM, 1, n), dim=-1)
        values = self.values(x).view(b, v_dim, 1, n)
        content = torch.einsum("bkum,bvum->bkv", keys, values)
        content = torch.einsum("bhkn,bkv->bhvn", queries, content)
        pad = (WINDOW - 1) // 2
        position = F.conv3d(values.view(b, 1, v_dim, h, w), self.embedding, padding=(0, pad, pad))
        position = torch.einsum("bhkn,bkvn->bhvn", queries, position.view(b, KEY_DIM, v_dim, n))
        return (content + position).contiguous().view(b, -1, h, w)


class DWConv(nn.Module):
    """Grouped 3x3 conv, 4 channels per group (key ``dwconv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels // GN_GROUP)

    def forward(self, x: Tensor) -> Tensor:
        return self.dwconv(x)


class ConvMlp(nn.Module):
    """1x1 -> GN -> grouped 3x3 -> GN -> GELU -> dropout -> 1x1 -> GN -> dropout (hidden = out / 4)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        hidden = out_ch // 4
        self.fc1 = nn.Conv2d(in_ch, hidden, 1)
        self.gn1 = _gn(hidden)
        self.dwconv = DWConv(hidden)
        self.gn2 = _gn(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, out_ch, 1)
        self.gn3 = _gn(out_ch)
        self.drop = nn.Dropout(MLP_DROPOUT)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.gn2(self.dwconv(self.gn1(self.fc1(x)))))
        return self.drop(self.gn3(self.fc2(self.drop(x))))


class TFBlock(nn.Module):
    """x + attn(x), then + mlp(x) (pre-norm-free residual transformer block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attn = LocalSelfAttention(channels, channels)
        self.mlp = ConvMlp(channels, channels)
        # The authors' init inside the transformer blocks: N(0, sqrt(2 / fan_out)) convs, zero biases.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Bottleneck(nn.Module):
    """1x1 reduce (to max(in, out) / 4) -> TFBlock + GELU -> 1x1 expand, plus a (projected) shortcut."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        hidden = max(in_ch, out_ch) // 4
        self.conv1 = nn.Conv2d(in_ch, hidden, 1, bias=False)
        self.bn1 = _gn(hidden)
        self.conv2 = nn.Sequential(TFBlock(hidden), nn.GELU())
        self.bn2 = _gn(hidden)  # in the authors' checkpoints, never applied
        self.conv3 = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self.bn3 = _gn(out_ch)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), _gn(out_ch)) if in_ch != out_ch else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.gelu(self.bn1(self.conv1(x))))
        return F.gelu(self.bn3(self.conv3(out))) + self.shortcut(x)


class TransEB(nn.Module):
    """Bottleneck followed by GELU (the authors' ``Trans_EB``, key ``conv``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = Bottleneck(in_ch, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.conv(x))


class Down(nn.Module):
    """Encoder level: blocks nn1.. then a 2x2 max-pool with indices.

    ``stem`` (level 1) starts with a ConvRelu from RGB. Levels with three blocks run ``nn1, nn2, nn2``, as the
    authors' code does. Returns (pooled, indices, pre-pool size, [intermediate maps in run order]).
    """

    def __init__(self, in_ch: int, out_ch: int, n_blocks: int, stem: bool = False) -> None:
        super().__init__()
        self.nn1 = ConvRelu(in_ch, out_ch) if stem else TransEB(in_ch, out_ch)
        self.nn2 = TransEB(out_ch, out_ch)
        if n_blocks == 3:
            self.nn3 = TransEB(out_ch, out_ch)  # stored in the checkpoints, never run
        self.repeat_second = n_blocks == 3

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, torch.Size, list[Tensor]]:
        maps = [self.nn1(x)]
        maps.append(self.nn2(maps[-1]))
        if self.repeat_second:
            maps.append(self.nn2(maps[-1]))
        pooled, indices = F.max_pool2d(maps[-1], 2, 2, return_indices=True)
        return pooled, indices, maps[-1].shape, maps


class Up(nn.Module):
    """Decoder level: max-unpool to the encoder's pre-pool size, then 2 or 3 blocks (the last one changes
    the width to the next level's). Returns the maps in run order."""

    def __init__(self, channels: int, out_ch: int, n_blocks: int) -> None:
        super().__init__()
        widths = [channels] * (n_blocks - 1) + [out_ch]
        for i, width in enumerate(widths, start=1):
            self.add_module(f"nn{i}", TransEB(channels, width))
        self.n_blocks = n_blocks

    def forward(self, x: Tensor, indices: Tensor, size: torch.Size) -> list[Tensor]:
        x = F.max_unpool2d(x, indices, 2, 2, output_size=size[-2:])
        maps = []
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"nn{i}")(x)
            maps.append(x)
        return maps


class LABlock(nn.Module):
    """Local attention mask: sigmoid(GN(conv(GN(conv(GELU(sum of the scale's maps))))))."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.W_1 = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), _gn(out_ch))
        self.psi = nn.Sequential(nn.Conv2d(out_ch, out_ch, 3, padding=1), _gn(out_ch), nn.Sigmoid())

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        return self.psi(self.W_1(F.gelu(total)))


class Fuse(nn.Module):
    """Side output of one scale: ConvRelu(cat(encoder, decoder)) * attention -> 3x3 conv to 1 channel ->
    bilinear x``scale`` (align_corners False) to the input size. Returns the logit."""

    def __init__(self, in_ch: int, width: int, scale: int) -> None:
        super().__init__()
        self.nn = ConvRelu(in_ch, width)
        self.conv = nn.Conv2d(width, 1, 3, padding=1)
        self.scale = scale

    def forward(self, down: Tensor, up: Tensor, attention: Tensor) -> Tensor:
        out = self.conv(attention * self.nn(torch.cat([down, up], 1)))
        if self.scale == 1:
            return out
        return F.interpolate(out, scale_factor=self.scale, mode="bilinear", align_corners=False)


class CrackFormer(nn.Module):
    """CrackFormer returning (sigmoid of the fused logit, sigmoids of the 5 side logits fuse5..fuse1).

    ``widths`` are the five encoder levels' widths (decoder mirrored), ``fuse_width`` the side branches' and
    LA blocks' width. Every width must be a multiple of 64 (bottleneck / 4, MLP / 4, GroupNorm groups of 4).
    Defaults are the authors'.

    Loss weighting (``aux_weight``): the authors' CSBSR passes the stacked (B, 5, H, W) side outputs to the
    segmentation loss in ONE call and multiplies it by 5 (the number of sides), then by
    SEG_AUX_LOSS_WEIGHT 0.4: L_C = L(main) + 0.4 * 5 * L(sides). With their Boundary Combo loss, the WBCE and
    Boundary terms of L(sides) are pixel means over all five maps (= the mean of the per-side terms), while
    the Dice term is a single Dice over the five maps stacked, against the mask repeated five times (not the
    mean of five per-side Dice values). ``aux_weight`` = 2.0 is that coefficient applied to the side
    outputs' loss averaged over the sides (0.4 per side if the per-side losses are summed instead).
    """

    divisor: int = 16
    global_context: bool = True
    receptive_field: int | None = None
    uses_kernel: bool = False
    aux_weight: float = 0.4 * 5

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512, 512), fuse_width: int = 64) -> None:
        super().__init__()
        if len(widths) != 5 or any(w % 64 for w in widths):
            raise ValueError(f"widths needs 5 multiples of 64, got {tuple(widths)}")
        w = list(widths)
        self.down1 = Down(3, w[0], 2, stem=True)
        self.down2 = Down(w[0], w[1], 2)
        self.down3 = Down(w[1], w[2], 3)
        self.down4 = Down(w[2], w[3], 3)
        self.down5 = Down(w[3], w[4], 3)
        self.up1 = Up(w[0], w[0], 2)
        self.up2 = Up(w[1], w[0], 2)
        self.up3 = Up(w[2], w[1], 3)
        self.up4 = Up(w[3], w[2], 3)
        self.up5 = Up(w[4], w[3], 3)
        below = [w[0], *w[:4]]  # the decoder output width at each scale
        for s in (5, 4, 3, 2, 1):
            self.add_module(f"fuse{s}", Fuse(w[s - 1] + below[s - 1], fuse_width, 2 ** (s - 1)))
        self.final = nn.Conv2d(5, 1, 1)
        for s in range(1, 6):
            self.add_module(f"LABlock_{s}", LABlock(w[s - 1], fuse_width))

    def forward(self, x: Tensor, kernel: Tensor | None = None) -> SegOutput:
        h, w = x.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"CrackFormer needs H and W divisible by {self.divisor}, got {h}x{w}")
        downs = (self.down1, self.down2, self.down3, self.down4, self.down5)
        ups = (self.up1, self.up2, self.up3, self.up4, self.up5)
        enc: list[list[Tensor]] = []
        pools: list[tuple[Tensor, torch.Size]] = []
        out = x
        for down in downs:
            out, indices, size, maps = down(out)
            enc.append(maps)
            pools.append((indices, size))
        dec: dict[int, list[Tensor]] = {}
        for s in (5, 4, 3, 2, 1):
            dec[s] = ups[s - 1](out, *pools[s - 1])
            out = dec[s][-1]
        sides = []
        for s in (5, 4, 3, 2, 1):
            e, d = enc[s - 1], dec[s]
            # LA inputs: all encoder maps but the last and all decoder maps but the last.
            attention = getattr(self, f"LABlock_{s}")([*e[:-1], *d[:-1]])
            sides.append(getattr(self, f"fuse{s}")(e[-1], d[-1], attention))
        fused = self.final(torch.cat(sides, 1))
        return SegOutput(prob=torch.sigmoid(fused), aux=torch.sigmoid(torch.cat(sides, 1)))
