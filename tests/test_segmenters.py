"""Segmenters: state-dict layout equal to the authors' checkpoints, parameter counts, small-input forwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from csbsr_cli.nets.pspnet import PSPNet, PSPNetBlurSkip
from csbsr_cli.nets.types import SegOutput
from csbsr_cli.nets.unet16 import UNet16, receptive_field_radius

PREFIX = "segmentation_model."

# Full-width (authors') models, with the manifest that describes each and its parameter count (reference §2).
FULL: dict[str, tuple[Callable[[], nn.Module], str, int]] = {
    "pspnet": (PSPNet, "manifest_csbsr_pspnet.json", 28_091_141),
    "unet16_pixel_shuffle": (
        lambda: UNet16(upsample="pixel_shuffle"),
        "manifest_csbsr_unet16.json",
        29_500_033,
    ),
    "unet16_deconv": (lambda: UNet16(upsample="deconv"), "manifest_csbsr_unet16_deconv.json", 39_200_065),
    "pspnet_blurskip": (PSPNetBlurSkip, "manifest_csbsr_pspnet_blurskip.json", 38_511_825),
}

TINY_PSP = dict(base_width=8, blocks=(1, 1, 1, 1), psp_out=16, up_widths=(8, 8, 8), aux_width=8)
TINY_UNET = dict(num_filters=2, encoder_widths=(4, 8, 8, 16, 16))


def _manifest(fixtures_dir: Path, name: str) -> dict:
    return json.loads((fixtures_dir / name).read_text())


def _leaves(model: nn.Module) -> list[list[str]]:
    """The manifests' ``leaf_modules`` triple (named_modules deduplicates shared modules there too)."""
    return [
        [n, type(m).__name__, m.extra_repr()]
        for n, m in model.named_modules()
        if n and not list(m.children())
    ]


@pytest.mark.parametrize("name", list(FULL))
def test_state_dict_matches_manifest(fixtures_dir: Path, name: str) -> None:
    factory, manifest_name, _ = FULL[name]
    entries = _manifest(fixtures_dir, manifest_name)["entries"]
    expected = [(k[len(PREFIX) :], shape, dtype) for k, shape, dtype in entries if k.startswith(PREFIX)]
    ours = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in factory().state_dict().items()
    ]
    assert ours == expected  # keys, their order, shapes and dtypes


@pytest.mark.parametrize("name", ["pspnet", "unet16_pixel_shuffle", "unet16_deconv"])
def test_leaf_modules_match_manifest(fixtures_dir: Path, name: str) -> None:
    """Hyper-parameters shapes cannot show: strides, paddings, dilations, bias flags, eps, dropout rates."""
    factory, manifest_name, _ = FULL[name]
    leaves = _manifest(fixtures_dir, manifest_name)["leaf_modules"]
    expected = [[p[len(PREFIX) :], cls, rep] for p, cls, rep in leaves if p.startswith(PREFIX)]
    assert _leaves(factory()) == expected


def test_blurskip_leaf_modules_match_manifest(fixtures_dir: Path) -> None:
    """Outside the blur skip: exact; inside it: the parameterised layers. The authors' parameter-free GAP
    module is not needed (our BlurSkip averages the kernel itself)."""
    leaves = _manifest(fixtures_dir, "manifest_csbsr_pspnet_blurskip.json")["leaf_modules"]
    expected = [
        [p[len(PREFIX) :], cls, rep] for p, cls, rep in leaves if p.startswith(PREFIX) and p != PREFIX + "GAP"
    ]
    ours = _leaves(PSPNetBlurSkip())
    with_params = ("Conv2d", "BatchNorm2d", "PReLU")
    outside = [leaf for leaf in expected if not leaf[0].startswith("blur_skip.")]
    inside = [leaf for leaf in expected if leaf[0].startswith("blur_skip.") and leaf[1] in with_params]
    assert [leaf for leaf in ours if not leaf[0].startswith("blur_skip.")] == outside
    assert [leaf for leaf in ours if leaf[0].startswith("blur_skip.") and leaf[1] in with_params] == inside


@pytest.mark.parametrize("name", list(FULL))
def test_parameter_count(name: str) -> None:
    factory, _, count = FULL[name]
    assert sum(p.numel() for p in factory().parameters()) == count


def test_registry_facts() -> None:
    assert (PSPNet.divisor, PSPNet.global_context, PSPNet.receptive_field) == (8, True, None)
    assert (PSPNetBlurSkip.divisor, PSPNetBlurSkip.uses_kernel, PSPNet.uses_kernel) == (8, True, False)
    assert (UNet16.divisor, UNet16.global_context, UNet16.uses_kernel) == (16, False, False)
    assert UNet16.receptive_field == receptive_field_radius("deconv") == 151
    assert UNet16(**TINY_UNET).receptive_field == receptive_field_radius("pixel_shuffle") == 136


def _check_probs(out: SegOutput, shape: tuple[int, ...]) -> None:
    assert isinstance(out, SegOutput)
    assert out.prob.shape == shape
    assert out.prob.min() >= 0 and out.prob.max() <= 1


@pytest.mark.parametrize("size", [(64, 64), (40, 56)])
def test_pspnet_forward_shapes(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = PSPNet(**TINY_PSP).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = model(x)
    _check_probs(out, (2, 1, *size))
    assert out.aux is not None and out.aux.shape == (2, 1, *size)  # aux runs in eval mode too
    assert out.aux.min() >= 0 and out.aux.max() <= 1
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.randn(1, 3, 60, 64))


def test_pspnet_without_aux() -> None:
    model = PSPNet(**{**TINY_PSP, "aux": False}).eval()
    assert not any(k.startswith("aux.") for k in model.state_dict())
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.aux is None and out.prob.shape == (1, 1, 32, 32)


def test_pspnet_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = PSPNet(**TINY_PSP)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model.eval()
        a, b = model(x), model(x)
        assert torch.equal(a.prob, b.prob) and torch.equal(a.aux, b.aux)
        model.train()
        torch.manual_seed(1)
        c = model(x)
        torch.manual_seed(2)
        d = model(x)
    assert not torch.equal(c.prob, d.prob)


@pytest.mark.parametrize("upsample", ["pixel_shuffle", "deconv"])
def test_unet16_forward(upsample: str) -> None:
    torch.manual_seed(0)
    model = UNet16(**TINY_UNET, upsample=upsample)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        out = model.eval()(x)
        out_train = model.train()(x)
    _check_probs(out, (1, 1, 32, 48))
    assert out.aux is None
    assert torch.equal(out.prob, out_train.prob)  # no dropout or BatchNorm: train == eval
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 3, 40, 48))


def test_unet16_shares_encoder_modules() -> None:
    """convK are views onto encoder layers (the checkpoints store both names for the same tensors)."""
    model = UNet16(**TINY_UNET)
    assert model.conv1[0] is model.encoder[0] and model.conv5[4] is model.encoder[28]
    sd = model.state_dict()
    assert sd["conv3.4.weight"].data_ptr() == sd["encoder.14.weight"].data_ptr()


@pytest.mark.parametrize("upsample", ["pixel_shuffle", "deconv"])
def test_unet16_receptive_field_is_exact(upsample: str) -> None:
    """With all-ones weights, zero biases and a zero image, a pixel's spike reaches exactly the outputs in
    its receptive field (every layer maps non-negative to non-negative, and max/sum are > 0 iff some input
    is). The farthest reached column, over the 16 pool phases, must equal ``receptive_field``."""
    model = UNet16(**TINY_UNET, upsample=upsample).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(0.0 if name.endswith("bias") else 1.0)
        width, farthest = 480, 0
        for col in range(224, 240):
            x = torch.zeros(1, 3, 16, width, dtype=torch.float64)
            x[..., 0, col] = 1.0
            reached = model(x).prob[0, 0] > 0.5  # logit > 0; the zero image gives logit 0 everywhere
            cols = torch.nonzero(reached.any(0)).flatten()
            assert 0 < cols.min() and cols.max() < width - 1  # not clipped by the image border
            farthest = max(farthest, col - int(cols.min()), int(cols.max()) - col)
    assert farthest == model.receptive_field == receptive_field_radius(upsample)


def _blurskip_tiny(kernel_size: int = 7) -> PSPNetBlurSkip:
    """Tiny PSPNet + blur skip with every blur-skip parameter random, whatever BlurSkip's own init."""
    torch.manual_seed(0)
    model = PSPNetBlurSkip(**TINY_PSP, kernel_size=kernel_size).eval()
    with torch.no_grad():
        for p in model.blur_skip.parameters():
            p.normal_(0.0, 0.1)
    return model


def test_blurskip_forward_uses_kernel() -> None:
    model = _blurskip_tiny()
    x = torch.randn(2, 3, 32, 32)
    blurry = torch.full((2, 1, 7, 7), 1 / 49)
    sharp = torch.zeros(2, 1, 7, 7)
    sharp[..., 3, 3] = 1.0
    with torch.no_grad():
        a = model(x, blurry)
        b = model(x, sharp)
        mixed = model(x, torch.cat([blurry[:1], sharp[1:]]))
    _check_probs(a, (2, 1, 32, 32))
    assert a.aux is not None and a.aux.shape == (2, 1, 32, 32)
    assert not torch.allclose(a.prob, b.prob)
    assert torch.equal(a.aux, b.aux)  # the aux head sees layer3 only
    # Each sample is conditioned on its own kernel.
    torch.testing.assert_close(mixed.prob[0], a.prob[0])
    torch.testing.assert_close(mixed.prob[1], b.prob[1])


def test_blurskip_requires_kernel() -> None:
    model = _blurskip_tiny()
    with pytest.raises(ValueError, match="kernel"):
        model(torch.randn(1, 3, 32, 32))


def test_blurskip_dropout_only_in_training() -> None:
    model = _blurskip_tiny()
    x, k = torch.randn(2, 3, 32, 32), torch.full((2, 1, 7, 7), 1 / 49)
    with torch.no_grad():
        assert torch.equal(model(x, k).prob, model(x, k).prob)
        model.train()
        torch.manual_seed(1)
        c = model(x, k)
        torch.manual_seed(2)
        d = model(x, k)
    assert not torch.equal(c.prob, d.prob)
