"""Every SR net x segmenter pair the registry can build, at tiny widths: the divisor the registry derives
from the classes, the forward shapes at that divisor, and a round trip through safetensors (save_model,
then a weights file read as Registry.resolve reads one). A segmenter that reads the blur kernel (the blur
skip) refuses an SR net that estimates none, with a clear error.

Driven by the registry's tables (SR_NETS, SEGMENTERS): a new component is covered once it is registered
and given tiny widths below (a missing entry fails, it is not skipped).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from csbsr_cli.registry import BUILTINS, SEGMENTERS, SR_NETS, ModelSpec, network_divisor, weights_file_spec
from csbsr_cli.weights import load_model, save_model

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_SR: dict[str, dict] = {
    "kbpn": {
        "scale": 4,
        "num_stages": 2,
        "width": 8,
        "feat_widths": [4, 4, 8, 8],
        "k_est": 3,
        "kernel_window": 16,
    },
    "dbpn": {"scale": 4, "base_filter": 4, "feat": 8},
    "bicubic": {"scale": 4},
    "identity": {},
}
_PSP = {"base_width": 4, "blocks": [1, 1, 1, 1], "psp_out": 16, "up_widths": [8, 8, 8], "aux_width": 8}
TINY_SEG: dict[str, dict] = {
    "pspnet": _PSP,
    "pspnet-blurskip": {**_PSP, "kernel_size": 21},
    "unet16": {"num_filters": 2, "encoder_widths": [4, 8, 8, 16, 16]},
    "hrnet-ocr": {
        "stem_width": 8,
        "stem_planes": 4,
        "stem_blocks": 1,
        "widths": [4, 8, 8, 16],
        "num_modules": [1, 1, 1],
        "num_blocks": 1,
        "ocr_width": 16,
        "ocr_key": 8,
    },
    "crackformer": {"widths": [64, 64, 64, 64, 64], "fuse_width": 8},  # 64 is CrackFormer's minimum width
    "scnet": {"widths": [4, 8, 8, 16, 16], "depths": [1, 1, 2, 1, 1]},
}
PAIRS = [(sr, seg) for sr in SR_NETS for seg in SEGMENTERS]


def tiny_spec(sr: str, seg: str) -> ModelSpec:
    scale = TINY_SR[sr].get("scale", 1)
    config = {"sr": {"type": sr, **TINY_SR[sr]}, "segmenter": {"type": seg, **TINY_SEG[seg]}}
    return ModelSpec(name=f"tiny-{sr}-{seg}", config=config, scale=scale)


def test_every_registered_component_has_tiny_widths():
    assert set(TINY_SR) == set(SR_NETS) and set(TINY_SEG) == set(SEGMENTERS)


def test_builtin_divisors_come_from_the_classes():
    """What the registry used to hand-compute: LR sides the segmenter's own divisor accepts after x scale."""
    expected = {
        "csbsr-unet16": 4,
        "csbsr-hrnet-ocr": 8,
        "csbsr-crackformer": 4,
        "csbsr-scnet": 8,
        "scnet": 32,
    }
    expected |= {"pspnet-lite": 8}
    for spec in BUILTINS:
        assert spec.divisor == expected.get(spec.name, 2), spec.name
        assert spec.card_divisor is None


@pytest.mark.parametrize(("sr", "seg"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_pair_forward_divisor_and_safetensors_round_trip(sr: str, seg: str, tmp_path: Path):
    spec = tiny_spec(sr, seg)
    torch.manual_seed(0)
    model = load_model(spec)  # no weights: random
    seg_divisor = type(model.segmentation_model).divisor
    assert spec.divisor == network_divisor(sr, seg, spec.scale)
    assert spec.divisor == seg_divisor // math.gcd(seg_divisor, spec.scale)  # the SR nets declare none

    side = spec.divisor * max(1, 32 // (spec.divisor * spec.scale))
    lr = torch.rand(1, 3, side, side * 2)
    if model.segmentation_model.uses_kernel and sr != "kbpn":
        with pytest.raises(ValueError, match="needs the estimated blur kernel"), torch.no_grad():
            model(lr)
        return
    with torch.no_grad():
        out = model(lr)
    hr = (side * spec.scale, side * 2 * spec.scale)
    assert out.sr.shape == (1, 3, *hr) and out.prob.shape == (1, 1, *hr)
    assert out.prob.min() >= 0 and out.prob.max() <= 1
    assert out.aux is None or out.aux.shape[-2:] == hr
    if spec.scale == 1:
        assert torch.equal(out.sr, lr) and not out.kernel.any()

    save_model(model, spec, spec.name, tmp_path, provenance="test")
    again = load_model(weights_file_spec(spec, tmp_path / f"{spec.name}.safetensors"), require_weights=True)
    state, loaded = model.state_dict(), again.state_dict()
    assert state.keys() == loaded.keys() and all(torch.equal(state[k], loaded[k]) for k in state)
    with torch.no_grad():
        assert torch.equal(again(lr).prob, out.prob)
