"""The shipped default model: its weights load, match the card's sha256, and find synthetic cracks.

A broken, truncated or retrained-without-updating-the-card weights file fails here, in CI.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synth import make_crack_image

from csbsr_cli.data.degrade import DegradeConfig, degrade, make_rng
from csbsr_cli.registry import DEFAULT_MODEL, ZOO_DIR, Registry
from csbsr_cli.weights import load_model

# Mean IoU over the synthetic images at the card's threshold: random csbsr-lite weights score 0.00-0.01
# (they mark everything or nothing); the shipped weights scored 0.283 when they were shipped.
IOU_FLOOR = 0.15


@pytest.fixture(scope="module")
def default_spec():
    spec = Registry().get(DEFAULT_MODEL)
    assert spec.weights is not None, f"{DEFAULT_MODEL} ships without weights in {ZOO_DIR}"
    return spec


def test_default_weights_ship_and_match_their_card(default_spec) -> None:
    assert default_spec.weights.path.parent == ZOO_DIR.resolve()
    assert default_spec.weights.path.stat().st_size <= 25 * 2**20  # the size budget
    load_model(default_spec, require_weights=True)  # verifies the sha256 and every key


def synthetic_iou(model: torch.nn.Module, threshold: float, n: int = 4, size: int = 256) -> float:
    """Mean IoU on crack images degraded as in training (anisotropic Gaussian blur, bicubic x1/4)."""
    ious = []
    for seed in range(n):
        image, mask = make_crack_image(size, size, seed=100 + seed)
        lr = degrade(image.astype(np.float32) / 255, DegradeConfig(), make_rng(7, seed)).lr
        with torch.inference_mode():
            prob = model(torch.from_numpy(lr.transpose(2, 0, 1))[None]).prob[0, 0].numpy()
        pred, truth = prob > threshold, mask > 0
        ious.append((pred & truth).sum() / max((pred | truth).sum(), 1))
    return float(np.mean(ious))


def test_default_model_finds_synthetic_cracks(default_spec) -> None:
    torch.manual_seed(0)
    model = load_model(default_spec, require_weights=True)
    assert synthetic_iou(model, default_spec.threshold) > IOU_FLOOR
