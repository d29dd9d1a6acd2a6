"""Flat (constant) tiles: an all-black tile made KBPN's kernel estimate 0/0 = NaN and the frame fail."""

from __future__ import annotations

import pytest
import torch

from csbsr_cli.nets.kbpn import _sum_normalise
from csbsr_cli.registry import Registry, build_network

pytestmark = pytest.mark.usefixtures("one_thread")

FLAT_VALUES = [0.0, 1.0, 0.5]  # black, white, grey


def _lite(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(Registry().get("csbsr-lite"), **overrides)


def _assert_finite(out) -> None:
    for name in ("sr", "kernel", "prob"):
        value = getattr(out, name)
        assert torch.isfinite(value).all(), f"{name} is not finite"
    torch.testing.assert_close(out.kernel.sum(dim=(1, 2, 3)), torch.ones(out.kernel.shape[0]))


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("value", FLAT_VALUES)
def test_flat_tile_is_finite_in_eval(value: float, fast: bool) -> None:
    net = _lite(fast_kernel=fast).eval()
    with torch.inference_mode():
        _assert_finite(net(torch.full((1, 3, 32, 32), value)))


@pytest.mark.parametrize("value", FLAT_VALUES)
def test_flat_tile_is_finite_in_training(value: float) -> None:
    net = _lite().train()  # batch of 2: BatchNorm needs more than one value per channel
    out = net(torch.full((2, 3, 32, 32), value))
    _assert_finite(out)
    (out.sr.mean() + out.prob.mean() + out.kernel.mean()).backward()
    bad = [n for n, p in net.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"


def test_black_tile_beside_a_normal_one() -> None:
    net = _lite().eval()
    batch = torch.cat((torch.zeros(1, 3, 32, 32), torch.rand(1, 3, 32, 32)))
    with torch.inference_mode():
        _assert_finite(net(batch))


def test_sum_normalise_is_the_plain_division_unless_the_sum_is_zero() -> None:
    x = torch.randn(3, 441, 1, 1)
    x[1] = 0.0
    total = x.sum(dim=1).view(-1, 1, 1, 1)
    out = _sum_normalise(x, total, 441)
    assert torch.equal(out[[0, 2]], (x / total)[[0, 2]])  # bit-exact: the golden tests rely on it
    assert torch.equal(out[1], torch.full((441, 1, 1), 1.0 / 441))
