"""PSPNet on a dilated ResNet-34, laid out so the authors' CSBSR checkpoints load strictly.

The authors use Lextal's pspnet-pytorch: a ResNet-34 whose layer3/layer4 trade stride for dilation (output
stride 8), a pyramid pooling module, three x2 "PSPUpsample" steps back to the input size and an auxiliary
head on layer3 (deep supervision for the training loss). ``PSPNetBlurSkip`` adds the paper's blur skip: the
estimated blur kernel modulates the last decoder feature map before the classifier.

Facts for the model registry (also class attributes):
- ``divisor = 8``: output stride 8, three x2 upsamplings; other sizes give an output of a different size.
- ``global_context = True``: the pyramid pooling averages over the whole map, so tiles never reproduce a
  whole-image forward exactly.
- ``receptive_field = None``: unbounded for the same reason.

Module names (``feats``, ``psp``, ``up_1``..``up_3``, ``final``, ``aux``, ``blur_skip``), their
registration order and every conv/BN hyper-parameter follow the authors' state dict
(shared/reference/fixtures/manifest_csbsr_pspnet*.json). No pretrained weights are fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .blur_skip import BlurSkip
from .types import SegOutput

# Dropout rates of the authors' model (after the PSP module, after each upsampling step, in the aux head).
PSP_DROPOUT = 0.3
UP_DROPOUT = 0.15
AUX_DROPOUT = 0.1


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block; one ReLU module used twice, as in torchvision (so the leaf list matches)."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, out_ch, stride, dilation)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(out_ch, out_ch, 1, dilation)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DilatedResNet(nn.Module):
    """ResNet with BasicBlocks; layer3/layer4 dilated 2/4 instead of strided (output stride 8).

    As in Lextal's extractor, the first block of a dilated layer is not dilated. Returns (layer4, layer3):
    layer3 feeds the auxiliary head.
    """

    def __init__(self, base_width: int = 64, blocks: Sequence[int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        w = base_width
        self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_ch = w
        self.layer1 = self._make_layer(w, blocks[0])
        self.layer2 = self._make_layer(2 * w, blocks[1], stride=2)
        self.layer3 = self._make_layer(4 * w, blocks[2], dilation=2)
        self.layer4 = self._make_layer(8 * w, blocks[3], dilation=4)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, out_ch: int, n_blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_ch != out_ch:
            downsample = nn.Sequential(
                nn.Conv2d(self._in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )
        layers = [BasicBlock(self._in_ch, out_ch, stride, downsample=downsample)]
        layers += [BasicBlock(out_ch, out_ch, dilation=dilation) for _ in range(1, n_blocks)]
        self._in_ch = out_ch
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        x3 = self.layer3(x)
        return self.layer4(x3), x3


class PSPModule(nn.Module):
    """Pyramid pooling: adaptive average pools (global context) + 1x1 convs, concatenated with the input."""

    def __init__(self, in_ch: int, out_ch: int, sizes: Sequence[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d((s, s)), nn.Conv2d(in_ch, in_ch, 1, bias=False)) for s in sizes
        )
        self.bottleneck = nn.Conv2d(in_ch * (len(sizes) + 1), out_ch, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        priors = [
            F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False) for stage in self.stages
        ]
        return self.relu(self.bottleneck(torch.cat([*priors, x], 1)))


class PSPUpsample(nn.Module):
    """Bilinear x2 (align_corners False) then 3x3 conv + BN + PReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.PReLU())

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return self.conv(F.interpolate(x, size=(2 * h, 2 * w), mode="bilinear", align_corners=False))


class PSPNet(nn.Module):
    """PSPNet(dilated ResNet-34) returning sigmoid probabilities; defaults are the authors' widths.

    ``base_width`` scales the backbone (layer widths w, 2w, 4w, 8w; PSP input 8w, aux input 4w);
    ``psp_out``, ``up_widths`` and ``aux_width`` set the head. ``aux=False`` drops the auxiliary head
    (a lighter model; its checkpoints then lack the ``aux.*`` keys). The aux head runs in eval mode too,
    as in the authors' model, so a checkpoint's aux output stays available to callers.
    """

    divisor: int = 8
    global_context: bool = True
    receptive_field: int | None = None
    uses_kernel: bool = False

    def __init__(
        self,
        base_width: int = 64,
        blocks: Sequence[int] = (3, 4, 6, 3),
        psp_out: int = 1024,
        up_widths: Sequence[int] = (256, 64, 64),
        pool_sizes: Sequence[int] = (1, 2, 3, 6),
        aux_width: int = 256,
        aux: bool = True,
    ) -> None:
        super().__init__()
        if len(up_widths) != 3:
            raise ValueError(f"up_widths needs 3 entries (one per x2 step), got {tuple(up_widths)}")
        self.feats = DilatedResNet(base_width, blocks)
        self.psp = PSPModule(8 * base_width, psp_out, pool_sizes)
        self.drop_1 = nn.Dropout2d(p=PSP_DROPOUT)
        self.up_1 = PSPUpsample(psp_out, up_widths[0])
        self.up_2 = PSPUpsample(up_widths[0], up_widths[1])
        self.up_3 = PSPUpsample(up_widths[1], up_widths[2])
        self.drop_2 = nn.Dropout2d(p=UP_DROPOUT)
        self.final = nn.Sequential(nn.Conv2d(up_widths[2], 1, kernel_size=1), nn.Sigmoid())
        self.aux = (
            nn.Sequential(
                nn.Conv2d(4 * base_width, aux_width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(aux_width),
                nn.ReLU(inplace=True),
                nn.Dropout2d(p=AUX_DROPOUT),
                nn.Conv2d(aux_width, 1, kernel_size=1),
                nn.Sigmoid(),
            )
            if aux
            else None
        )

    def decode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Backbone + PSP + decoder: (last decoder feature map at input size, layer3 features)."""
        h, w = x.shape[-2:]
        if h % self.divisor or w % self.divisor:
            # The authors' net silently returns another size; a prob map must match its input.
            raise ValueError(f"PSPNet needs H and W divisible by {self.divisor}, got {h}x{w}")
        f, f3 = self.feats(x)
        p = self.drop_1(self.psp(f))
        for up in (self.up_1, self.up_2, self.up_3):
            p = self.drop_2(up(p))
        return p, f3

    def _aux(self, f3: Tensor, size: torch.Size) -> Tensor | None:
        if self.aux is None:
            return None
        return F.interpolate(self.aux(f3), size=size, mode="bilinear", align_corners=True)

    def forward(self, x: Tensor, kernel: Tensor | None = None) -> SegOutput:
        p, f3 = self.decode(x)
        return SegOutput(prob=self.final(p), aux=self._aux(f3, x.shape[-2:]))


class PSPNetBlurSkip(PSPNet):
    """PSPNet + blur skip (``PSPNet_BlurSkip``): p <- p + branch(p, kernel) before the classifier.

    ``forward`` needs the SR net's estimated kernel (B, 1, k, k), k = ``kernel_size``. Other (keyword)
    arguments go to ``PSPNet``.
    """

    uses_kernel: bool = True

    def __init__(self, *, kernel_size: int = 21, blur_skip_layers: int = 2, **pspnet: Any) -> None:
        super().__init__(**pspnet)
        features = self.final[0].in_channels  # the last decoder width, up_widths[2]
        self.blur_skip = BlurSkip(features=features, kernel_size=kernel_size, n_layers=blur_skip_layers)
        # The authors register blur_skip before final and aux; re-registering those two gives the state dict
        # the authors' key order too.
        for name in ("final", "aux"):
            module = getattr(self, name)
            delattr(self, name)
            setattr(self, name, module)

    def forward(self, x: Tensor, kernel: Tensor | None = None) -> SegOutput:
        if kernel is None:
            raise ValueError("PSPNetBlurSkip needs the estimated blur kernel (B, 1, k, k)")
        p, f3 = self.decode(x)
        p = self.blur_skip(p, kernel)
        return SegOutput(prob=self.final(p), aux=self._aux(f3, x.shape[-2:]))
