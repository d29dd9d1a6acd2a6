"""KBPN, DBPN and the blur skip: structure vs the authors' state dicts, golden forwards, fast kernel path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from csbsr_cli.nets.blocks import conv_with_condition, set_fast_kernel
from csbsr_cli.nets.blur_skip import BlurSkip
from csbsr_cli.nets.dbpn import DBPN
from csbsr_cli.nets.kbpn import KBPN, pseudo_lr

# One intra-op thread everywhere: the golden fixtures were made that way, and these small convs gain
# nothing from threads but lose a lot when the cores are shared.
pytestmark = pytest.mark.usefixtures("one_thread")

KBPN_MD16 = {"width": 16, "feat_widths": (8, 8, 16, 16)}


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _load_npz(path: Path, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a fixture into (weights without ``prefix``, non-weight arrays)."""
    with np.load(path) as z:
        weights = {k[len(prefix) :]: torch.from_numpy(z[k]) for k in z.files if k.startswith(prefix)}
        arrays = {k: torch.from_numpy(z[k]) for k in z.files if "." not in k}
    return weights, arrays


def _assert_matches_ref(name: str, ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Fixture tolerance: 1e-5 of the output scale (kernels: 1e-7 absolute), never above 1e-4."""
    assert ours.shape == ref.shape, name
    diff = (ours - ref).abs().max().item()
    tol = 1e-7 if "kernel" in name else 1e-5 * ref.abs().max().item()
    assert diff <= min(tol, 1e-4), f"{name}: max abs diff {diff:.3e} > {tol:.3e}"
    return diff


def _manifest_shapes(fixtures_dir: Path, manifest: str, prefix: str) -> dict[str, tuple[int, ...]]:
    entries = json.loads((fixtures_dir / manifest).read_text())["entries"]
    return {key[len(prefix) :]: tuple(shape) for key, shape, _ in entries if key.startswith(prefix)}


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------
# Structure (no forward; full-width models only on the meta device)


def test_param_counts_of_released_configs() -> None:
    with torch.device("meta"):
        assert _n_params(KBPN()) == 61_158_563
        assert _n_params(DBPN()) == 5_578_142
        assert _n_params(BlurSkip(64)) == 10_420_684  # PSPNet_BlurSkip 38,511,825 - PSPNet 28,091,141


@pytest.mark.parametrize(
    ("manifest", "prefix", "factory"),
    [
        ("manifest_csbsr_pspnet.json", "sr_model.", KBPN),
        ("manifest_cssr_pspnet.json", "sr_model.", DBPN),
        ("manifest_csbsr_pspnet_blurskip.json", "segmentation_model.blur_skip.", BlurSkip),
    ],
)
def test_state_dict_matches_manifest(fixtures_dir: Path, manifest: str, prefix: str, factory) -> None:
    with torch.device("meta"):
        module = factory()
    assert _shapes(module) == _manifest_shapes(fixtures_dir, manifest, prefix)


def test_kbpn_rejects_mismatched_feat_width() -> None:
    with pytest.raises(ValueError, match="feat_widths"):
        KBPN(width=16, feat_widths=(8, 8, 16, 32))


# ---------------------------------------------------------------------------------------------------------
# Golden forwards (the authors' code, md_ch 16 / base_filter 8 / 8 features, 1 thread)


@pytest.fixture(scope="module")
def kbpn_md16(fixtures_dir: Path) -> tuple[KBPN, dict[str, torch.Tensor]]:
    weights, arrays = _load_npz(fixtures_dir / "fwd_kbpn_md16.npz", "sr_model.")
    model = KBPN(**KBPN_MD16).eval()
    model.load_state_dict(weights, strict=True)
    return model, arrays


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_kbpn_golden(kbpn_md16, fast: bool) -> None:
    model, ref = kbpn_md16
    set_fast_kernel(model, fast)
    got: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        out = model(ref["input_lr"], intermediates=got)
    got["sr"], got["kernel"] = out.sr, out.kernel
    expected = set(ref) - {"input_lr"}
    assert expected <= set(got)
    for name in sorted(expected):
        _assert_matches_ref(name, got[name], ref[name])


def test_dbpn_golden(fixtures_dir: Path) -> None:
    weights, ref = _load_npz(fixtures_dir / "fwd_dbpn_net4_small.npz", "sr_model.")
    model = DBPN(base_filter=8, feat=16).eval()
    model.load_state_dict(weights, strict=True)
    with torch.inference_mode():
        out = model(ref["input_lr"])
    assert out.kernel is None
    _assert_matches_ref("sr", out.sr, ref["sr"])


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_blur_skip_golden(fixtures_dir: Path, fast: bool) -> None:
    weights, ref = _load_npz(fixtures_dir / "fwd_blurskip_c8.npz", "segmentation_model.blur_skip.")
    model = BlurSkip(features=8, fast_kernel=fast).eval()
    model.load_state_dict(weights, strict=True)
    kernel = ref["kernel_map"].mean(dim=(2, 3)).view(1, 1, 21, 21)  # the authors' GAP of the map
    captured: list[torch.Tensor] = []
    last = list(model.children())[-1]  # its output is the branch (the plain path is slow: run it once)
    last.register_forward_hook(lambda _mod, _inp, output: captured.append(output))
    with torch.inference_mode():
        out = model(ref["features"], kernel)
    _assert_matches_ref("branch", captured[0], ref["branch"])
    _assert_matches_ref("out", out, ref["out"])


# ---------------------------------------------------------------------------------------------------------
# Fast kernel path == the authors' plain path; shapes; pre-training mode


def _small_kbpn(num_stages: int = 3) -> KBPN:
    torch.manual_seed(0)
    return KBPN(num_stages=num_stages, width=8, feat_widths=(4, 4, 8, 8)).eval()


@pytest.mark.parametrize(
    ("stride", "padding", "with_x", "bias"),
    [(1, 1, True, True), (1, 0, True, False), (2, 1, True, True), (1, 2, False, False), (1, 1, False, True)],
)
def test_conv_with_condition_fast_equals_plain(stride: int, padding: int, with_x: bool, bias: bool) -> None:
    torch.manual_seed(0)
    n_x, n_cond = (5 if with_x else 0), 11
    conv = nn.Conv2d(n_x + n_cond, 6, 3, stride, padding, bias=bias)
    x = torch.randn(2, n_x, 7, 9) if with_x else None
    cond = torch.randn(2, n_cond)
    with torch.no_grad():
        plain = conv_with_condition(conv, x, cond, fast=False, size=(7, 9))
        fast = conv_with_condition(conv, x, cond, fast=True, size=(7, 9))
    assert fast.shape == plain.shape
    assert (fast - plain).abs().max().item() <= 1e-5 * plain.abs().max().item()


def test_kbpn_fast_equals_plain_batch_odd_size() -> None:
    model = _small_kbpn()
    lr = torch.rand(2, 3, 7, 9)
    with torch.inference_mode():
        fast = model(lr)
        set_fast_kernel(model, False)
        plain = model(lr)
        single = model(lr[1:])
    assert fast.sr.shape == (2, 3, 28, 36) and fast.kernel.shape == (2, 1, 21, 21)
    assert (fast.sr - plain.sr).abs().max().item() < 1e-5
    assert (fast.kernel - plain.kernel).abs().max().item() < 1e-7
    # every sample gets its own kernel, and batching does not mix samples
    assert (plain.kernel[0] - plain.kernel[1]).abs().max().item() > 1e-5
    assert (single.sr - plain.sr[1:]).abs().max().item() < 1e-5
    assert (single.kernel - plain.kernel[1:]).abs().max().item() < 1e-7
    torch.testing.assert_close(plain.kernel.sum(dim=(1, 2, 3)), torch.ones(2))


def test_kbpn_gt_kernel_path() -> None:
    """SR-module pre-training: the GT kernel is used as is (only sum-normalised), no refinement."""
    model = _small_kbpn(num_stages=2)
    lr = torch.rand(2, 3, 6, 5)
    gt = torch.rand(2, 1, 21, 21)
    with torch.inference_mode():
        fast = model(lr, gt)
        set_fast_kernel(model, False)
        plain = model(lr, gt)
    expected = gt / gt.sum(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(fast.kernel, expected, rtol=1e-5, atol=1e-8)
    assert (fast.sr - plain.sr).abs().max().item() < 1e-5
    assert fast.sr.shape == (2, 3, 24, 20)


@pytest.mark.parametrize("size", [(1, 1), (3, 8), (9, 7)])
def test_any_lr_size_gives_exact_x4(size: tuple[int, int]) -> None:
    lr = torch.rand(1, 3, *size)
    h, w = size
    with torch.inference_mode():
        assert _small_kbpn(num_stages=2)(lr).sr.shape == (1, 3, 4 * h, 4 * w)
        assert DBPN(base_filter=4, feat=8).eval()(lr).sr.shape == (1, 3, 4 * h, 4 * w)


def test_blur_skip_fast_equals_plain_per_sample_kernels() -> None:
    torch.manual_seed(0)
    model = BlurSkip(features=4, n_layers=2).eval()
    features = torch.randn(2, 4, 9, 7)
    kernel = torch.rand(2, 1, 21, 21)
    kernel = kernel / kernel.sum(dim=(2, 3), keepdim=True)
    with torch.inference_mode():
        fast = model(features, kernel)
        model.fast_kernel = False
        plain = model(features, kernel)
        single = model(features[:1], kernel[:1])
    assert (fast - plain).abs().max().item() <= 1e-5 * plain.abs().max().item()
    assert (single - plain[:1]).abs().max().item() <= 1e-5 * plain.abs().max().item()
    with pytest.raises(ValueError, match="taps"):
        model(features, kernel[:, :, :7, :7])


def test_set_fast_kernel_reaches_nested_modules() -> None:
    with torch.device("meta"):
        joint = nn.ModuleDict({"sr": KBPN(**KBPN_MD16), "seg": nn.ModuleDict({"blur_skip": BlurSkip(8)})})
    set_fast_kernel(joint, False)
    assert not joint["sr"].fast_kernel and not joint["seg"]["blur_skip"].fast_kernel
    set_fast_kernel(joint, True)
    assert joint["sr"].fast_kernel and joint["seg"]["blur_skip"].fast_kernel


def test_pseudo_lr() -> None:
    torch.manual_seed(0)
    sr = torch.rand(2, 3, 18, 22)
    delta = torch.zeros(2, 1, 21, 21)
    delta[:, :, 10, 10] = 1.0
    expected = F.interpolate(sr, size=(4, 5), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(pseudo_lr(sr, delta, 4), expected)
    # per-sample kernels: a one-pixel shift right for sample 1 only (correlation reads x + 1)
    shift = delta.clone()
    shift[1, 0, 10, 10], shift[1, 0, 10, 11] = 0.0, 1.0
    blurred_ref = torch.stack([sr[0], F.pad(sr[1, :, :, 1:], (0, 1))])
    expected = F.interpolate(blurred_ref, size=(4, 5), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(pseudo_lr(sr, shift, 4), expected)


def test_kbpn_fast_path_gradients_equal_plain() -> None:
    """Training uses the fast path: its parameter gradients must equal the authors' path's."""
    model = _small_kbpn(num_stages=2).train()
    lr = torch.rand(2, 3, 5, 6)

    def grads(fast: bool) -> dict[str, torch.Tensor]:
        set_fast_kernel(model, fast)
        model.zero_grad()
        out = model(lr)
        (out.sr.square().mean() + 1e3 * out.kernel.square().sum()).backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    fast, plain = grads(True), grads(False)
    assert fast.keys() == plain.keys() and len(fast) == len(list(model.parameters()))
    for name, g in plain.items():
        assert (fast[name] - g).abs().max().item() <= 1e-4 * max(g.abs().max().item(), 1e-6), name


def test_kernel_window_is_exact_when_the_window_covers_the_image() -> None:
    """The light-model window changes nothing while the HR image fits inside it, and crops otherwise."""
    torch.manual_seed(0)
    full = KBPN(num_stages=2, width=8, feat_widths=(4, 4, 8, 8)).eval()
    windowed = KBPN(num_stages=2, width=8, feat_widths=(4, 4, 8, 8), kernel_window=48).eval()
    windowed.load_state_dict(full.state_dict())
    small = torch.rand(1, 3, 12, 10)  # HR 48x40: inside the window
    large = torch.rand(1, 3, 20, 24)  # HR 80x96: cropped to 48x48 for the kernel update
    with torch.inference_mode():
        assert torch.equal(full(small).kernel, windowed(small).kernel)
        k_full, k_win = full(large).kernel, windowed(large).kernel
    assert not torch.equal(k_full, k_win)
    assert torch.allclose(k_win.sum(dim=(2, 3)), torch.ones(1, 1))


def test_sft_hidden_width_shrinks_the_sft_convs() -> None:
    net = KBPN(num_stages=2, width=8, feat_widths=(4, 4, 8, 8), sft_hidden=12)
    sft = net.back_projection_stages[0].sft
    assert sft.SFT_scale_conv0.out_channels == 12 and sft.SFT_scale_conv1.in_channels == 12
    with torch.inference_mode():
        assert net.eval()(torch.rand(1, 3, 6, 6)).sr.shape == (1, 3, 24, 24)
