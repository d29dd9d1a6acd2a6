"""SCNet (Sharma et al., ICVGIP 2021, shared/reference/paper-scnet.txt), written from the paper's text: no
code or weights were published, so this is an architecture, not a checkpoint-compatible port.

What the paper specifies, and how it is built here:
- Encoder: VGG-16 (13 3x3 convs in 5 blocks, 64-128-256-512-512), instance norm (its Table VIII) and ReLU;
  each block is followed by a 2x2 max-pool whose indices go to the decoder (SegNet-style).
- Scale-space attention (its Eq. 1, Fig. 3), after every encoder AND every decoder block, no pooling:
  F_a = sigmoid(Conv1_{C->1}(F)) * F continues through the network (embedded in the feature pyramid as CBAM
  is), and F_r = Conv2_{C->C'}(F_a) is that scale's side feature, C' = 1 (the paper's best value). The
  paper gives no kernel size; both convs are 1x1, which matches its parameter counts (attention adds almost
  nothing: 29.46 M with and without it, Table VII), as does instance norm without affine parameters.
- Enhancement encoder: the side features are fused iteratively down the scales, e_1 = F_r^1 and
  e_s = cat(maxpool(e_{s-1}), F_r^s), so e_s has s * C' channels (matching its fused convs' input widths
  2, 3, 4, 5, 6 in Eq. 2).
- Decoder: max-unpool with the encoder's indices, then the mirrored VGG-16 convs (SegNet decoder), with
  attention after each block; its side feature at scale s is d_s (C' channels).
- Fused network: at each scale a 1x1 conv maps cat(e_s, d_s) to one logit, upsampled to the input size
  (the paper's 1->1 "Deconv"; here bilinear interpolation, so any input size gives an exactly aligned
  map); sigmoid -> the 5 side probabilities. A 1x1 conv over the 5 logits gives the fused output (Eq. 4-5).
- Edge prior (its section III-E): a binary edge map as a 4th input channel. The paper used HED, whose
  weights are not available offline; here the map is computed inside the module from the input image with
  a Sobel operator (edge where the gradient magnitude of the channel-mean image exceeds
  ``edge_threshold``, in the input's units; the joint model instance-normalises, so 0.5 means a step of
  about one standard deviation between neighbouring pixels). The model stays a pure function of the image;
  no gradient flows through the binary map.
With the defaults the network has 29.47 M parameters (the paper reports 29.46 M, Table VII).

Facts for the model registry (class attributes): ``divisor = 32`` (five pools; other sizes >= 32 run and
return the input size, but the last row/column of an odd-sized level is unpooled as zeros);
``global_context = True`` (instance norm over the whole image); ``receptive_field = None``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .types import SegOutput

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def _conv_in_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.InstanceNorm2d(out_ch), nn.ReLU(inplace=True)
    )


class ScaleAttention(nn.Module):
    """Eq. 1: F_a = sigmoid(conv(F)) * F (returned to the trunk), F_r = conv(F_a) (the side feature)."""

    def __init__(self, channels: int, side_channels: int) -> None:
        super().__init__()
        self.mask = nn.Conv2d(channels, 1, 1)
        self.refine = nn.Conv2d(channels, side_channels, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        attended = torch.sigmoid(self.mask(x)) * x
        return attended, self.refine(attended)


class SobelEdges(nn.Module):
    """Binary edge map (B, 1, H, W): Sobel gradient magnitude of the channel mean > threshold."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold
        gx = torch.tensor(SOBEL_X) / 8.0  # a unit step between two pixels gives magnitude 0.5
        self.register_buffer("weight", torch.stack([gx, gx.t()]).unsqueeze(1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        grey = F.pad(x.detach().mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
        grad = F.conv2d(grey, self.weight.to(grey.dtype))
        return (grad.pow(2).sum(1, keepdim=True).sqrt() > self.threshold).to(x.dtype)


class SCNet(nn.Module):
    """SCNet returning (fused probability, 5 side probabilities ordered deepest scale first).

    ``widths``/``depths``: the encoder blocks' widths and conv counts (VGG-16 by default; the decoder mirrors
    them); ``side_channels``: C' of the attention modules; ``edge_prior``: add the Sobel edge channel.

    Loss (paper Eq. 6-11): focal loss on the fused logit plus sum_i w_i * focal loss on the side logits,
    w = ``side_weights`` = (0.5, 0.75, 1.0, 0.75, 0.5) (symmetric, so the side order does not matter), plus
    soft-IoU on the fused probability; alpha 1, gamma 2. ``aux_weight`` = 3.5 = sum(w) is the coefficient
    on the side outputs' loss averaged over the sides when one weight is used for all of them.
    ``default_loss`` names that loss kind; the training engine uses it, with ``side_weights``, when
    ``loss.seg`` is "auto" (:func:`csbsr_cli.train.models.resolve_seg_loss`).
    """

    divisor: int = 32
    global_context: bool = True
    receptive_field: int | None = None
    uses_kernel: bool = False
    default_loss: str = "focal-iou"
    side_weights: tuple[float, ...] = (0.5, 0.75, 1.0, 0.75, 0.5)
    aux_weight: float = sum(side_weights)

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512, 512),
        depths: Sequence[int] = (2, 2, 3, 3, 3),
        side_channels: int = 1,
        edge_prior: bool = True,
        edge_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        if len(widths) != 5 or len(depths) != 5:
            raise ValueError(f"SCNet has 5 scales: got widths {tuple(widths)}, depths {tuple(depths)}")
        self.edges = SobelEdges(edge_threshold) if edge_prior else None
        in_ch = 4 if edge_prior else 3
        encoder, decoder = [], []
        for s, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            encoder.append(
                nn.Sequential(*(_conv_in_relu(in_ch if k == 0 else width, width) for k in range(depth)))
            )
            out = widths[max(s - 1, 0)]  # the decoder block of scale s ends at the width of scale s - 1
            decoder.append(
                nn.Sequential(*(_conv_in_relu(width, width if k < depth - 1 else out) for k in range(depth)))
            )
            in_ch = width
        self.encoder = nn.ModuleList(encoder)
        self.encoder_attention = nn.ModuleList(ScaleAttention(w, side_channels) for w in widths)
        self.decoder = nn.ModuleList(decoder)
        self.decoder_attention = nn.ModuleList(
            ScaleAttention(widths[max(s - 1, 0)], side_channels) for s in range(5)
        )
        # Scale s (1-based) fuses e_s (s * C') with d_s (C').
        self.side = nn.ModuleList(nn.Conv2d((s + 1) * side_channels, 1, 1) for s in range(1, 6))
        self.fuse = nn.Conv2d(5, 1, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # the paper's Xavier initialisation
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, kernel: Tensor | None = None) -> SegOutput:
        size = x.shape[-2:]
        out = x if self.edges is None else torch.cat([x, self.edges(x)], 1)
        pools: list[tuple[Tensor, torch.Size]] = []
        enhanced: list[Tensor] = []
        for block, attention in zip(self.encoder, self.encoder_attention, strict=True):
            feat, side = attention(block(out))
            enhanced.append(side if not enhanced else torch.cat([F.max_pool2d(enhanced[-1], 2), side], 1))
            out, indices = F.max_pool2d(feat, 2, 2, return_indices=True)
            pools.append((indices, feat.shape[-2:]))
        logits = []
        for s in range(4, -1, -1):
            indices, pre_pool = pools[s]
            out = F.max_unpool2d(out, indices, 2, 2, output_size=pre_pool)
            out, side = self.decoder_attention[s](self.decoder[s](out))
            logit = self.side[s](torch.cat([enhanced[s], side], 1))
            logits.append(
                logit if s == 0 else F.interpolate(logit, size=size, mode="bilinear", align_corners=False)
            )
        sides = torch.cat(logits, 1)
        return SegOutput(prob=torch.sigmoid(self.fuse(sides)), aux=torch.sigmoid(sides))
