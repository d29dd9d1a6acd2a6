"""HRNetV2-W48 + OCR (object-contextual representations) as the authors' CSBSR uses it (``HRNet_W48_OCR``),
laid out so their checkpoints load strictly (shared/reference/fixtures/manifest_csbsr_hrnet_ocr.json).

HRNet keeps a stride-4 branch through the whole network and adds stride 8/16/32 branches, exchanging
information between all of them after every module (strided 3x3 convs downwards, 1x1 conv + bilinear
upsampling upwards). The four branch outputs are upsampled to stride 4 and concatenated (720 channels).
An auxiliary head predicts a coarse crack logit from them; OCR pools the pixel features into one "object"
vector per class, weighted by the softmax of that logit over all pixels, and lets every pixel attend to the
object vectors; the augmented features give the main logit. Both logits are bilinearly upsampled
(align_corners True) to the input size and passed through a sigmoid.

With a single class the pixel-to-object softmax runs over one object, so its weights are identically 1 and
the object context is the same vector at every pixel; ``f_pixel``/``f_object`` are still computed (they are
part of the authors' module and checkpoints) but cannot change the output.

Facts for the model registry (also class attributes): ``divisor = 32`` (the lowest branch has stride 32;
other sizes run and return the input size, with slightly misaligned feature grids);
``global_context = True`` (OCR pools over the whole image); ``receptive_field = None``.
No ImageNet weights are fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .types import SegOutput

OCR_DROPOUT = 0.05
BOTTLENECK_EXPANSION = 4


def _up(x: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def _bn_relu(channels: int) -> nn.Sequential:
    """The authors' ``ModuleHelper.BNReLU`` (keys ``.0.*``)."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())


def _conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, relu: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) residual block of the stride-4 stem layer."""

    def __init__(self, in_ch: int, planes: int) -> None:
        super().__init__()
        out_ch = planes * BOTTLENECK_EXPANSION
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample = _conv_bn(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every output branch sums all branches brought to its
    resolution (``fuse_layers[i][j]``: j > i 1x1 conv + upsample; j < i chain of strided 3x3 convs)."""

    def __init__(self, widths: Sequence[int], num_blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(w, w) for _ in range(num_blocks))) for w in widths
        )
        n = len(widths)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse(widths, i, j) for j in range(n)) for i in range(n)
        )

    @staticmethod
    def _fuse(widths: Sequence[int], i: int, j: int) -> nn.Module | None:
        if j == i:
            return None
        if j > i:
            return _conv_bn(widths[j], widths[i], 1)
        steps = [_conv_bn(widths[j], widths[j], 3, stride=2, relu=True) for _ in range(i - j - 1)]
        steps.append(_conv_bn(widths[j], widths[i], 3, stride=2))
        return nn.Sequential(*steps)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for i, fuse in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else fuse[0](xs[0])
            for j in range(1, len(xs)):
                if j == i:
                    y = y + xs[j]
                elif j > i:
                    y = y + _up(fuse[j](xs[j]), xs[i].shape[-2:])
                else:
                    y = y + fuse[j](xs[j])
            out.append(F.relu(y))
        return out


class HRNetBackbone(nn.Module):
    """Stem (two stride-2 3x3 convs), a Bottleneck layer, then stages 2-4 with 2, 3, 4 branches.

    ``widths`` are the four branch widths; ``num_modules`` the number of HighResolutionModules of stages
    2-4; ``num_blocks`` BasicBlocks per branch and module; ``stem_planes`` the Bottleneck planes (its
    output has 4x as many channels).
    """

    def __init__(
        self,
        stem_width: int = 64,
        stem_planes: int = 64,
        stem_blocks: int = 4,
        widths: Sequence[int] = (48, 96, 192, 384),
        num_modules: Sequence[int] = (1, 4, 3),
        num_blocks: int = 4,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or len(num_modules) != 3:
            raise ValueError(f"need 4 branch widths and 3 stage sizes, got {widths}, {num_modules}")
        self.widths = tuple(widths)
        self.conv1 = nn.Conv2d(3, stem_width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.conv2 = nn.Conv2d(stem_width, stem_width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_width)
        stem_out = stem_planes * BOTTLENECK_EXPANSION
        self.layer1 = nn.Sequential(
            *(Bottleneck(stem_width if k == 0 else stem_out, stem_planes) for k in range(stem_blocks))
        )
        previous = [stem_out]
        for stage, n_modules in enumerate(num_modules, start=2):
            current = list(widths[:stage])
            setattr(self, f"transition{stage - 1}", self._transition(previous, current))
            modules = (HighResolutionModule(current, num_blocks) for _ in range(n_modules))
            setattr(self, f"stage{stage}", nn.Sequential(*modules))
            previous = current

    @staticmethod
    def _transition(previous: Sequence[int], current: Sequence[int]) -> nn.ModuleList:
        """Existing branches: a 3x3 conv if the width changes, else nothing; new branch: strided 3x3 convs
        from the lowest existing branch."""
        layers: list[nn.Module | None] = []
        for i, width in enumerate(current):
            if i < len(previous):
                layers.append(_conv_bn(previous[i], width, 3, relu=True) if previous[i] != width else None)
            else:
                steps = [
                    _conv_bn(previous[-1], width if k == i - len(previous) else previous[-1], 3, 2, relu=True)
                    for k in range(i + 1 - len(previous))
                ]
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for stage in (2, 3, 4):
            transition: nn.ModuleList = getattr(self, f"transition{stage - 1}")
            xs = [
                ys[min(i, len(ys) - 1)] if layer is None else layer(ys[min(i, len(ys) - 1)])
                for i, layer in enumerate(transition)
            ]
            ys = getattr(self, f"stage{stage}")(xs)
        return ys


class ObjectAttentionBlock(nn.Module):
    """Pixels (queries) attend to the object vectors (keys, values): scaled dot product, softmax over
    objects."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(
            nn.Conv2d(channels, key_channels, 1),
            _bn_relu(key_channels),
            nn.Conv2d(key_channels, key_channels, 1),
            _bn_relu(key_channels),
        )
        self.f_object = nn.Sequential(
            nn.Conv2d(channels, key_channels, 1),
            _bn_relu(key_channels),
            nn.Conv2d(key_channels, key_channels, 1),
            _bn_relu(key_channels),
        )
        self.f_down = nn.Sequential(nn.Conv2d(channels, key_channels, 1), _bn_relu(key_channels))
        self.f_up = nn.Sequential(nn.Conv2d(key_channels, channels, 1), _bn_relu(channels))

    def forward(self, x: Tensor, objects: Tensor) -> Tensor:
        b, _, h, w = x.shape
        query = self.f_pixel(x).view(b, self.key_channels, -1).permute(0, 2, 1)
        key = self.f_object(objects).view(b, self.key_channels, -1)
        value = self.f_down(objects).view(b, self.key_channels, -1).permute(0, 2, 1)
        sim = torch.softmax((self.key_channels**-0.5) * torch.matmul(query, key), dim=-1)
        context = torch.matmul(sim, value).permute(0, 2, 1).contiguous()
        return self.f_up(context.view(b, self.key_channels, h, w))


class SpatialOCR(nn.Module):
    """Concatenate the object context with the pixel features, 1x1 conv + BN + ReLU + Dropout2d."""

    def __init__(self, channels: int, key_channels: int, out_channels: int) -> None:
        super().__init__()
        self.object_context_block = ObjectAttentionBlock(channels, key_channels)
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(2 * channels, out_channels, 1), _bn_relu(out_channels), nn.Dropout2d(OCR_DROPOUT)
        )

    def forward(self, feats: Tensor, objects: Tensor) -> Tensor:
        context = self.object_context_block(feats, objects)
        return self.conv_bn_dropout(torch.cat([context, feats], 1))


class HRNetOCR(nn.Module):
    """HRNet-W48 + OCR returning (main probability, aux probability), both at the input size.

    Other (keyword) arguments go to ``HRNetBackbone``; ``ocr_width`` is the 3x3 reduction before OCR (512) and
    ``ocr_key`` the attention key width (256). Defaults are the authors' (74.50 M parameters).

    ``aux_weight``: the authors train with L_C = 1.0 * L(main) + 0.4 * L(aux) (cfg SEG_MAIN_LOSS_WEIGHT,
    SEG_AUX_LOSS_WEIGHT); the aux head has one channel.
    """

    divisor: int = 32
    global_context: bool = True
    receptive_field: int | None = None
    uses_kernel: bool = False
    aux_weight: float = 0.4

    def __init__(self, *, ocr_width: int = 512, ocr_key: int = 256, **backbone: Any) -> None:
        super().__init__()
        self.backbone = HRNetBackbone(**backbone)
        concat = sum(self.backbone.widths)
        self.conv3x3 = nn.Sequential(nn.Conv2d(concat, ocr_width, 3, padding=1), _bn_relu(ocr_width))
        self.ocr_distri_head = SpatialOCR(ocr_width, ocr_key, ocr_width)
        self.cls_head = nn.Conv2d(ocr_width, 1, 1)
        self.aux_head = nn.Sequential(
            nn.Conv2d(concat, concat, 3, padding=1), _bn_relu(concat), nn.Conv2d(concat, 1, 1)
        )

    @staticmethod
    def gather_objects(feats: Tensor, logits: Tensor) -> Tensor:
        """One feature vector per class: features averaged with softmax(logit over all pixels) weights.
        Returns (B, C, n_classes, 1)."""
        b, k = logits.shape[:2]
        probs = torch.softmax(logits.view(b, k, -1), dim=2)
        feats = feats.view(b, feats.shape[1], -1).permute(0, 2, 1)
        return torch.matmul(probs, feats).permute(0, 2, 1).unsqueeze(3)

    def forward(self, x: Tensor, kernel: Tensor | None = None) -> SegOutput:
        xs = self.backbone(x)
        size = xs[0].shape[-2:]
        feats = torch.cat([xs[0], *(_up(y, size) for y in xs[1:])], 1)
        aux = self.aux_head(feats)
        feats = self.conv3x3(feats)
        feats = self.ocr_distri_head(feats, self.gather_objects(feats, aux))
        out = self.cls_head(feats)
        in_size = x.shape[-2:]
        return SegOutput(prob=torch.sigmoid(_up(out, in_size)), aux=torch.sigmoid(_up(aux, in_size)))
