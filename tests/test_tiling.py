"""Tiling and stitching: exact for local models, seam-free blending for global-context models."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from csbsr_cli.errors import InputError
from csbsr_cli.infer.pipeline import infer_image
from csbsr_cli.infer.runner import TorchRunner
from csbsr_cli.infer.seams import seam_levels
from csbsr_cli.infer.tiling import Stitcher, choose_stitching, gaussian_window, make_plan, plan_axis
from csbsr_cli.nets.types import JointOutput
from csbsr_cli.registry import Registry, build_network

# Tiny configs of the real networks (KBPN + PSPNet), for speed.
TINY_CONFIG = {
    "sr": {"type": "kbpn", "scale": 4, "num_stages": 2, "width": 8, "feat_widths": (4, 4, 8, 8), "k_est": 7},
    "segmenter": {
        "type": "pspnet", "base_width": 4, "blocks": (1, 1, 1, 1), "psp_out": 8, "up_widths": (8, 4, 4),
        "aux_width": 4,
    },
    "sr_norm": "instance",
}  # fmt: skip


class LocalJoint(nn.Module):
    """A stand-in joint model whose outputs are local: receptive radius 2 LR px (SR convs) + 2 px (bicubic)
    + 2 SR px (segmenter) < HALO."""

    HALO = 6

    def __init__(self) -> None:
        super().__init__()
        self.sr = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 48, 3, padding=1), nn.PixelShuffle(4)
        )
        self.seg = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, lr: torch.Tensor) -> JointOutput:
        sr = (
            F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False) + 0.1 * self.sr(lr)
        ).clamp(0, 1)
        return JointOutput(sr, torch.sigmoid(4 * self.seg(sr)), sr.new_zeros(len(sr), 1, 21, 21), None)


class GlobalJoint(LocalJoint):
    """PSPNet-style: the segmenter adds the tile's global average (pyramid pooling's level 1) and the kernel
    is estimated by global pooling, as KBPN does."""

    def __init__(self) -> None:
        super().__init__()
        self.context = nn.Conv2d(4, 1, 1)
        self.kernel = nn.Linear(3, 21 * 21)

    def forward(self, lr: torch.Tensor) -> JointOutput:
        sr = (
            F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False) + 0.1 * self.sr(lr)
        ).clamp(0, 1)
        feat = torch.relu(self.seg[0](sr))
        logits = self.seg[2](feat) + 3 * self.context(F.adaptive_avg_pool2d(feat, 1))
        kernel = torch.softmax(self.kernel(lr.mean((2, 3))), -1).view(-1, 1, 21, 21)
        return JointOutput(sr, torch.sigmoid(4 * logits), kernel, None)


def _runner(model: nn.Module) -> TorchRunner:
    torch.manual_seed(0)
    return TorchRunner(model, torch.device("cpu"), None, batch=3)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture with some thin dark lines (crack-like), float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    img = rng.random((h // 4 + 2, w // 4 + 2, 3)).astype(np.float32)
    img = torch.nn.functional.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None], size=(h, w), mode="bicubic"
    )
    img = img[0].permute(1, 2, 0).numpy().clip(0, 1)
    img[h // 3, :] *= 0.2
    img[:, w // 2] *= 0.2
    return np.ascontiguousarray(img, dtype=np.float32)


def test_plan_axis_covers_and_shifts_last_window_inward() -> None:
    plan = plan_axis(100, 32, 8)
    assert plan.starts == (0, 24, 48, 68)  # the last one shifted inward to end at 100
    assert plan.cuts[0][0] == 0 and plan.cuts[-1][1] == 100
    assert all(a[1] == b[0] for a, b in zip(plan.cuts, plan.cuts[1:], strict=False))
    for start, (a, b) in zip(plan.starts, plan.cuts, strict=True):
        # every kept pixel is >= overlap // 2 from a cut window edge (frame edges excepted)
        assert a == 0 or a - start >= 4
        assert b == 100 or start + 32 - b >= 4
    assert plan_axis(32, 32, 8).starts == (0,)
    with pytest.raises(ValueError):
        plan_axis(20, 32, 8)


def test_make_plan_pads_small_frames_and_checks_divisor() -> None:
    plan = make_plan(20, 50, tile=32, overlap=8, scale=4, mode="blend")
    assert (plan.padded_height, plan.padded_width) == (32, 50) and plan.out_size == (80, 200)
    whole = make_plan(21, 50, tile=0, overlap=0, scale=4, mode="blend", divisor=8)
    assert (whole.padded_height, whole.padded_width, whole.n_tiles) == (24, 56, 1)
    with pytest.raises(InputError, match="divisor"):
        make_plan(100, 100, tile=30, overlap=8, scale=4, mode="crop", divisor=4)
    with pytest.raises(InputError, match="overlap"):
        make_plan(100, 100, tile=32, overlap=32, scale=4, mode="crop")


def test_choose_stitching() -> None:
    assert choose_stitching(halo=6, global_context=False, tile=64, overlap=None) == ("crop", 12)
    assert choose_stitching(halo=None, global_context=True, tile=64, overlap=None) == ("blend", 32)
    assert choose_stitching(halo=6, global_context=True, tile=64, overlap=None)[0] == "blend"
    assert choose_stitching(halo=None, global_context=True, tile=0, overlap=None) == ("crop", 0)
    with pytest.raises(InputError, match="halo"):
        choose_stitching(halo=6, global_context=False, tile=64, overlap=8)


def test_gaussian_window() -> None:
    g = gaussian_window(64)
    assert g.max() == 1 and g.min() >= 1e-3 and np.allclose(g, g[::-1])


@pytest.mark.parametrize("size", [(70, 93), (45, 130), (20, 30)])
def test_local_model_tiled_equals_whole_image(size: tuple[int, int]) -> None:
    h, w = size
    runner, img = _runner(LocalJoint()), _image(h, w)
    mode, overlap = choose_stitching(halo=LocalJoint.HALO, global_context=False, tile=32, overlap=None)
    tiled = infer_image(runner, img, make_plan(h, w, tile=32, overlap=overlap, scale=4, mode=mode))
    if min(h, w) < 32:  # reflect-padded up to a tile: the reference is the padded frame, cropped
        whole_plan = make_plan(max(h, 32), max(w, 32), tile=0, overlap=0, scale=4, mode="crop")
        pad = ((0, max(h, 32) - h), (0, max(w, 32) - w), (0, 0))
        whole = infer_image(runner, np.pad(img, pad, mode="reflect"), whole_plan)
        whole = {k: v[:, : 4 * h, : 4 * w] for k, v in whole.items() if k != "kernel"}
    else:
        whole = infer_image(runner, img, make_plan(h, w, tile=0, overlap=0, scale=4, mode="crop"))
    for name in ("prob", "sr"):
        assert tiled[name].shape == (1 if name == "prob" else 3, 4 * h, 4 * w)
        np.testing.assert_allclose(tiled[name], whole[name], atol=1e-5, rtol=0)


def _check_no_seams(runner, img: np.ndarray) -> None:
    """Blended tiles differ from whole-image inference (their context is cut) but no more along tile
    borders than elsewhere: level within 10 % (the per-tile context error is noisy across the frame), no
    jump at the borders. Cutting the same frame without overlap or blending shows seams on both counts."""
    tile = 32
    mode, overlap = choose_stitching(halo=None, global_context=True, tile=tile, overlap=None)
    level, jump = seam_levels(runner, img, tile, overlap, mode)
    assert level <= 1.1 and jump <= 1.0, (level, jump)
    naive_level, naive_jump = seam_levels(runner, img, tile, 0, "crop")
    assert naive_level > 1.2 and naive_jump > 5, (naive_level, naive_jump)


def test_global_context_model_blend_has_no_seams() -> None:
    _check_no_seams(_runner(GlobalJoint()), _image(96, 128))


def test_real_kbpn_pspnet_blend_has_no_seams() -> None:
    spec = replace(Registry().get("csbsr-pspnet"), config=TINY_CONFIG)
    torch.manual_seed(0)
    _check_no_seams(
        TorchRunner(build_network(spec).eval(), torch.device("cpu"), None, batch=4), _image(96, 128)
    )


def test_stitcher_memory_is_one_window_row() -> None:
    """The canvas is one row of windows high whatever the frame height: strips leave as rows finish."""
    plan = make_plan(400, 48, tile=32, overlap=8, scale=4, mode="blend")
    strips: list[tuple[int, int]] = []
    stitcher = Stitcher(plan, {"prob": 1}, lambda y, a: strips.append((y, a["prob"].shape[1])))
    assert stitcher.buffers["prob"].shape == (1, 128, 192)
    for i in range(plan.n_tiles):
        stitcher.add(i, {"prob": torch.ones(1, 128, 128)})
    assert len(strips) == len(plan.rows.starts)
    assert strips[0][0] == 0 and sum(n for _, n in strips) == 1600
    assert all(y == prev_y + prev_n for (prev_y, prev_n), (y, _) in zip(strips, strips[1:], strict=False))


def test_stitcher_rejects_out_of_order_tiles() -> None:
    plan = make_plan(64, 64, tile=32, overlap=0, scale=1, mode="crop")
    stitcher = Stitcher(plan, {"prob": 1}, lambda y, a: None)
    with pytest.raises(ValueError, match="order"):
        stitcher.add(1, {"prob": torch.zeros(1, 32, 32)})
