"""KBPN (Kernelized Back-Projection Network), the blind x4 SR network of CSBSR, weight-compatible with the
authors' ``model/modeling/kbpn.py`` (state-dict keys without the joint model's ``sr_model.`` prefix).

The blur kernel estimate is carried between stages as a spatially constant 441-channel map. With
``fast_kernel`` (default) it stays a (B, 441, 1, 1) vector and the convolutions that read it use the exact
decomposition of :func:`conv_with_condition`; with ``fast_kernel=False`` the map is broadcast and convolved
at full resolution exactly as the authors do (the reference path: 2.01 TFLOP instead of 1.28 for a
112x112 LR).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .blocks import DownProjection, UpProjection, conv_block, conv_with_condition, init_conv_kaiming
from .types import SROutput

# scale -> (kernel, stride, padding) of the projection (de)convolutions, as in the authors' table.
PROJECTION_CONV = {2: (6, 2, 2), 4: (8, 4, 2), 8: (12, 8, 2)}
REDUCTION_CH = 32  # hidden width of the kernel predictors


def _prelu() -> nn.PReLU:
    return nn.PReLU(init=0.01)


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.01, inplace=True)


def _gap(x: Tensor) -> Tensor:
    return F.adaptive_avg_pool2d(x, 1)


def _keep(record: dict[str, Tensor] | None, key: str, value: Tensor) -> None:
    """Store an intermediate only when the caller asked for them (HR maps are big)."""
    if record is not None:
        record[key] = value


def _resize_kernel(vec: Tensor, size: int) -> Tensor:
    """(B, k*k, 1, 1) estimate -> its k x k kernel bicubically resized to (B, 1, size, size)."""
    k = round(vec.shape[1] ** 0.5)
    return F.interpolate(vec.view(vec.shape[0], 1, k, k), size=size, mode="bicubic", align_corners=False)


def _sum_normalise(x: Tensor, total: Tensor, n: int) -> Tensor:
    """``x / total``, but the uniform kernel 1/n where ``total`` is exactly 0: a flat (e.g. all-black) input
    gives all-zero features and so an all-zero kernel estimate, and 0/0 would make the whole output NaN."""
    zero = total == 0
    return torch.where(zero, 1.0 / n, x / torch.where(zero, 1.0, total))


def depthwise_blur(img: Tensor, kernel: Tensor, stride: int = 1) -> Tensor:
    """Correlate every channel of sample b with sample b's k x k kernel (no flip, zero padding k//2).

    ``kernel`` is (B, k*k, ...) or (B, 1, k, k); one grouped convolution serves the whole batch.
    """
    b, c, h, w = img.shape
    k = round(kernel[0].numel() ** 0.5)
    weight = kernel.reshape(b, 1, 1, k, k).expand(b, c, 1, k, k).reshape(b * c, 1, k, k)
    out = F.conv2d(img.reshape(1, b * c, h, w), weight, stride=stride, padding=k // 2, groups=b * c)
    return out.view(b, c, *out.shape[-2:])


def pseudo_lr(sr: Tensor, kernel: Tensor, scale: int = 4) -> Tensor:
    """The KBPN loss's pseudo-LR: SR correlated with the (B, 1, k, k) kernel, then bicubic x1/scale.

    The resize is torchvision's tensor ``Resize((H//s, W//s), BICUBIC)`` with antialias (its default since
    0.17), which the authors' data pipeline also uses to synthesise LR images.
    """
    blurred = depthwise_blur(sr, kernel)
    size = (sr.shape[-2] // scale, sr.shape[-1] // scale)
    return F.interpolate(blurred, size=size, mode="bicubic", align_corners=False, antialias=True)


class InitialKernelPredictor(nn.Module):
    """Three 3x3 conv+PReLU layers -> GAP -> k_est^2 vector -> (bicubic to kernel_size) -> sum-normalised."""

    def __init__(self, width: int, k_est: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.resize = k_est != kernel_size
        self.feat_ext = nn.Sequential(
            conv_block(width, width, 3, 1, 1, bias=False, act=_prelu()),
            conv_block(width, width, 3, 1, 1, bias=False, act=_prelu()),
            conv_block(width, k_est * k_est, 3, 1, 1, bias=False, act=_prelu()),
        )

    def forward(self, feat: Tensor) -> Tensor:
        vec = _gap(self.feat_ext(feat))
        if not self.resize:
            return _sum_normalise(vec, vec.sum(dim=1).view(-1, 1, 1, 1), vec.shape[1])
        kernel = _resize_kernel(vec, self.kernel_size)
        kernel = _sum_normalise(kernel, kernel.sum(dim=(2, 3), keepdim=True), self.kernel_size**2)
        return kernel.view(vec.shape[0], -1, 1, 1)


class KernelPredictor(nn.Module):
    """IKC-like residual kernel update, run at HR: delta from (intermediate SR, previous kernel)."""

    def __init__(self, k_est: int, kernel_size: int, window: int | None = None):
        super().__init__()
        n = k_est * k_est
        self.kernel_size = kernel_size
        self.window = window
        self.resize = k_est != kernel_size
        r = REDUCTION_CH
        self.fe_SR = nn.Sequential(
            conv_block(3, n, 3, 1, 1, bias=False, act=nn.ReLU(inplace=True)),
            conv_block(n, r, 1, 1, 0, bias=False, act=_lrelu()),
            conv_block(r, r, 3, 1, 1, bias=False, act=_lrelu()),
            conv_block(r, r, 3, 1, 1, bias=False, act=_lrelu()),
            conv_block(r, n, 3, 1, 1, bias=False, act=_lrelu()),
        )
        self.fe_kernel = nn.Sequential(
            conv_block(kernel_size * kernel_size, n, 3, 1, 1, bias=False, act=_lrelu()),
            conv_block(n, n, 3, 1, 1, bias=False, act=_lrelu()),
        )
        self.fe_cat = nn.Sequential(
            conv_block(2 * n, r, 1, 1, 0, bias=False, act=_lrelu()),
            conv_block(r, r, 3, 1, 1, bias=False, act=_lrelu()),
            conv_block(r, n, 3, 1, 1, bias=False, act=None),
        )

    def forward(self, sr_t: Tensor, state: Tensor, fast: bool) -> Tensor:
        """``state``: kernel map (B, K*K, h, w) or vector (B, K*K, 1, 1); returns it plus the delta.

        With ``window`` the delta is estimated on the centre window of the HR image only: its output is
        globally averaged anyway, and at HR this predictor is most of a light KBPN's cost.
        """
        if self.window is not None:
            sr_t = _centre_window(sr_t, self.window)
        fsr = self.fe_SR(sr_t)
        first = self.fe_kernel[0]
        cond = _gap(state).flatten(1)
        fh = first.act(conv_with_condition(first.layer, None, cond, fast, size=fsr.shape[-2:]))
        fh = self.fe_kernel[1](fh)
        delta = _gap(self.fe_cat(torch.cat((fsr, fh), dim=1)))
        if self.resize:
            delta = _resize_kernel(delta, self.kernel_size).view(delta.shape[0], -1, 1, 1)
        return state + delta.expand(state.shape)


def _centre_window(x: Tensor, size: int) -> Tensor:
    h, w = x.shape[-2:]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return x[..., top : top + size, left : left + size]


class KBlock(nn.Module):
    """Intermediate SR -> kernel refinement -> stride-s pseudo-LR -> HR correction from the LR error."""

    def __init__(
        self, width: int, stage: int, scale: int, k_est: int, kernel_size: int, window: int | None = None
    ):
        super().__init__()
        ks, st, pad = PROJECTION_CONV[scale]
        self.scale = scale
        self.sr_reconst = conv_block(stage * width, 3, 3, 1, 1, bias=False, act=None)
        self.kernel_predictor = KernelPredictor(k_est, kernel_size, window)
        self.up_conv1 = conv_block(3, width, ks, st, pad, bias=False, act=_prelu(), transpose=True)

    def forward(
        self,
        pre_concat_h: Tensor,
        h: Tensor,
        lr: Tensor,
        state: Tensor,
        refine: bool,
        fast: bool,
        record: dict[str, Tensor] | None,
        prefix: str,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns the corrected HR features, the new kernel state and the sum-normalised kernel vector."""
        sr_t = self.sr_reconst(pre_concat_h)
        if refine:
            state = self.kernel_predictor(sr_t, state, fast)
        raw = _gap(state)
        vec = _sum_normalise(raw, raw.sum(dim=1).view(-1, 1, 1, 1), raw.shape[1])
        plr = depthwise_blur(sr_t, vec, stride=self.scale)
        state = vec if fast else vec.expand(*vec.shape[:2], *plr.shape[-2:])
        _keep(record, prefix + "sr_t", sr_t)
        _keep(record, prefix + "kernel_raw", raw)
        _keep(record, prefix + "kernel", vec)
        return h + self.up_conv1(plr - lr), state, vec


class SFTLayer(nn.Module):
    """Kernel-conditioned modulation: X = [features, kernel]; features * sigmoid(scale(X)) + shift(X)."""

    def __init__(self, feat_ch: int, cond_ch: int, hidden: int | None = None):
        super().__init__()
        n = feat_ch + cond_ch
        hidden = n if hidden is None else hidden  # the authors keep all input channels
        self.SFT_scale_conv0 = nn.Conv2d(n, hidden, 3, 1, 1)
        self.SFT_scale_conv1 = nn.Conv2d(hidden, feat_ch, 3, 1, 1)
        self.SFT_shift_conv0 = nn.Conv2d(n, hidden, 3, 1, 1)
        self.SFT_shift_conv1 = nn.Conv2d(hidden, feat_ch, 3, 1, 1)

    def forward(self, features: Tensor, cond: Tensor, fast: bool) -> Tensor:
        hidden = F.leaky_relu(conv_with_condition(self.SFT_scale_conv0, features, cond, fast), 0.1)
        scale = torch.sigmoid(self.SFT_scale_conv1(hidden))
        hidden = F.leaky_relu(conv_with_condition(self.SFT_shift_conv0, features, cond, fast), 0.1)
        shift = self.SFT_shift_conv1(hidden)
        return features * scale + shift


class BackProjectionStage(nn.Module):
    """Stage s: up-projection, kernel block; then (not in the last stage) down-projection and SFT."""

    def __init__(
        self,
        width: int,
        stage: int,
        scale: int,
        k_est: int,
        kernel_size: int,
        final: bool,
        kernel_window: int | None = None,
        sft_hidden: int | None = None,
    ):
        super().__init__()
        ks, st, pad = PROJECTION_CONV[scale]

        def conv(transpose: bool) -> nn.Sequential:
            return conv_block(width, width, ks, st, pad, bias=False, act=_prelu(), transpose=transpose)

        def reduce(n_in: int) -> nn.Sequential:
            return conv_block(n_in * width, width, 1, 1, 0, bias=True, act=_prelu())

        self.up = UpProjection(conv(True), conv(False), conv(True), conv=reduce(max(stage - 1, 1)))
        self.kb = KBlock(width, stage, scale, k_est, kernel_size, kernel_window)
        self.down: DownProjection | None = None
        self.sft: SFTLayer | None = None
        if not final:
            self.down = DownProjection(conv(False), conv(True), conv(False), conv=reduce(stage))
            self.sft = SFTLayer(stage * width, kernel_size * kernel_size, sft_hidden)

    def forward(
        self,
        low: Tensor,
        lr: Tensor,
        state: Tensor,
        concat_h: Tensor | None,
        concat_l: Tensor | None,
        refine: bool,
        fast: bool,
        record: dict[str, Tensor] | None,
        prefix: str,
    ) -> tuple[Tensor | None, Tensor, Tensor | None, Tensor]:
        """Returns (next stage's LR input or None after the last stage, concat_h, concat_l, kernel state)."""
        up = self.up(low)
        _keep(record, prefix + "up", up)
        pre_concat_h = up if concat_h is None else torch.cat((concat_h, up), dim=1)
        h, state, vec = self.kb(pre_concat_h, up, lr, state, refine, fast, record, prefix)
        del up, pre_concat_h
        concat_h = h if concat_h is None else torch.cat((concat_h, h), dim=1)
        if self.down is None or self.sft is None:
            return None, concat_h, concat_l, state
        low = self.down(concat_h)
        concat_l = low if concat_l is None else torch.cat((concat_l, low), dim=1)
        low = self.sft(concat_l, vec.flatten(1), fast)
        _keep(record, prefix + "low", low)
        return low, concat_h, concat_l, state


class KBPN(nn.Module):
    """The authors' KBPN; defaults = the shipped CSBSR config (x4, 4 stages, width 128, 7x7 -> 21x21 kernel).

    ``feat_widths`` are the widths of the four 3x3 convs of the VGG16-style feature extractor (the authors
    take VGG16's first two blocks without the max-pool, then re-initialise them, so no weights are needed).
    Two knobs for light CPU models, off (None) in the authors' configuration: ``kernel_window`` estimates
    each stage's kernel update on the centre ``kernel_window``-pixel HR window only, and ``sft_hidden``
    sets the hidden width of the SFT convolutions (the authors use features + 441 kernel channels).
    """

    def __init__(
        self,
        scale: int = 4,
        num_stages: int = 4,
        width: int = 128,
        feat_widths: Sequence[int] = (64, 64, 128, 128),
        k_est: int = 7,
        kernel_size: int = 21,
        residual: bool = True,
        fast_kernel: bool = True,
        kernel_window: int | None = None,
        sft_hidden: int | None = None,
    ):
        super().__init__()
        if scale not in PROJECTION_CONV:
            raise ValueError(f"scale must be one of {sorted(PROJECTION_CONV)}, got {scale}")
        if len(feat_widths) != 4 or feat_widths[-1] != width:
            raise ValueError(
                f"feat_widths must be 4 widths ending with width={width}, got {tuple(feat_widths)}"
            )
        self.scale = scale
        self.kernel_size = kernel_size
        self.residual = residual
        self.fast_kernel = fast_kernel
        layers: list[nn.Module] = []
        n_in = 3
        for n_out in feat_widths:
            layers += [nn.Conv2d(n_in, n_out, 3, 1, 1), nn.ReLU(inplace=True)]
            n_in = n_out
        self.feat = nn.Sequential(*layers)
        self.predictor = InitialKernelPredictor(width, k_est, kernel_size)
        self.back_projection_stages = nn.ModuleList(
            BackProjectionStage(
                width, s, scale, k_est, kernel_size, s == num_stages, kernel_window, sft_hidden
            )
            for s in range(1, num_stages + 1)
        )
        self.output_conv = conv_block(num_stages * width, 3, 3, 1, 1, bias=False, act=None)
        init_conv_kaiming(self)

    def forward(
        self, lr: Tensor, gt_kernel: Tensor | None = None, intermediates: dict[str, Tensor] | None = None
    ) -> SROutput:
        """``gt_kernel`` (B, 1, k, k) switches to the authors' SR-module pre-training mode: it is the initial
        kernel and the per-stage refinement is skipped. ``intermediates``, if given, receives the tensors
        the golden fixture stores (feat, init_kernel, bicubic_up, kernel_map and per stage N
        stageN_{up,sr_t,kernel_raw,kernel,low}).
        """
        fast = self.fast_kernel
        b, _, h, w = lr.shape
        n_k = self.kernel_size * self.kernel_size
        record = intermediates
        feat = self.feat(lr)
        _keep(record, "feat", feat)
        if gt_kernel is None:
            init_kernel = self.predictor(feat)
            _keep(record, "init_kernel", init_kernel)
            state = init_kernel if fast else init_kernel.expand(b, n_k, h, w)
        else:
            state = gt_kernel.reshape(b, n_k, 1, 1)
        low: Tensor | None = feat
        concat_h: Tensor | None = None
        concat_l: Tensor | None = None
        for n, stage in enumerate(self.back_projection_stages, start=1):
            assert low is not None  # only the last stage returns None
            low, concat_h, concat_l, state = stage(
                low, lr, state, concat_h, concat_l, gt_kernel is None, fast, record, f"stage{n}_"
            )
        assert concat_h is not None
        sr = self.output_conv(concat_h)
        if self.residual:
            up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
            _keep(record, "bicubic_up", up)
            sr = sr + up
        _keep(record, "kernel_map", state.expand(b, n_k, h, w))
        kernel = _gap(state)
        kernel = _sum_normalise(kernel, kernel.sum(dim=1).view(b, 1, 1, 1), n_k)
        return SROutput(sr=sr, kernel=kernel.view(b, 1, self.kernel_size, self.kernel_size))
