"""Losses and segmentation-aware weights against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from csbsr_cli.losses.distance_maps import distance_to_crack, signed_distance_map, signed_distance_one
from csbsr_cli.losses.segmentation import (
    SegLossConfig,
    SegmentationLoss,
    boundary_loss,
    dice_loss,
    focal_loss,
    frequency_weights,
    generalised_dice_loss,
    soft_iou_loss,
    wce_loss,
)
from csbsr_cli.losses.sr import SRLoss, SRLossConfig
from csbsr_cli.losses.weights import (
    crack_oriented_weight,
    fail_oriented_weight,
    sr_pixel_weight,
    weight_by_seg_loss,
)

R8 = math.sqrt(8.0)


def t(values, shape=None) -> torch.Tensor:
    x = torch.tensor(values, dtype=torch.float32)
    return x.view(shape) if shape else x.view(1, 1, 1, -1)


def centre_crack(size: int = 5) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[0, 0, size // 2, size // 2] = 1.0
    return mask


# --- distance maps ---------------------------------------------------------------------------------------


def test_sdf_single_crack_pixel():
    # D_out = distance to the centre, max sqrt(8) at the corners; D_in is 1 on the crack pixel only, which is
    # also its inner boundary (-> 0). So phi = dist / sqrt(8), 0 at the centre.
    phi = signed_distance_map(centre_crack())[0, 0]
    assert phi[0, 0] == pytest.approx(1.0)
    assert phi[0, 2] == pytest.approx(2 / R8)
    assert phi[1, 2] == pytest.approx(1 / R8)
    assert phi[1, 1] == pytest.approx(math.sqrt(2) / R8)
    assert phi[2, 2] == 0.0


def test_sdf_block_inside_is_negative():
    mask = np.zeros((7, 7), np.uint8)
    mask[2:5, 2:5] = 1
    phi = signed_distance_one(mask)
    # Centre: D_in = 2 = max(D_in) -> -1; D_out = 0. Block edge = inner boundary -> 0.
    assert phi[3, 3] == pytest.approx(-1.0)
    assert phi[2, 3] == 0.0 and phi[2, 2] == 0.0
    assert phi[0, 0] == pytest.approx(1.0)  # sqrt(8) from (2, 2): the farthest pixel
    assert phi[0, 3] == pytest.approx(2 / R8)


def test_sdf_soft_mask_binarised_and_empty_is_zero():
    soft = centre_crack() * 0.9  # a JPEG mask's 230/255 is crack (the authors' uint8 cast lost it)
    assert torch.equal(signed_distance_map(soft), signed_distance_map(centre_crack()))
    assert signed_distance_map(torch.zeros(2, 1, 4, 4)).abs().sum() == 0
    assert signed_distance_map(torch.ones(1, 1, 4, 4)).abs().sum() == 0


def test_sdf_matches_authors_formula():
    ndimage = pytest.importorskip("scipy.ndimage")
    seg = pytest.importorskip("skimage.segmentation")
    rng = np.random.default_rng(0)
    mask = (rng.random((24, 31)) > 0.85).astype(np.uint8)
    pos, neg = ndimage.distance_transform_edt(mask), ndimage.distance_transform_edt(1 - mask)
    ref = (neg - neg.min()) / (neg.max() - neg.min()) - (pos - pos.min()) / (pos.max() - pos.min())
    ref[seg.find_boundaries(mask, mode="inner")] = 0
    np.testing.assert_allclose(signed_distance_one(mask), ref, atol=1e-6)


def test_distance_to_crack():
    mask = torch.zeros(2, 1, 3, 3)
    mask[0, 0, 0, 0] = 1
    d = distance_to_crack(mask)
    assert d[0, 0, 2, 2] == pytest.approx(R8)
    assert d[0, 0, 0, 2] == pytest.approx(2.0)
    assert d[0, 0, 0, 0] == 0.0
    assert d[1].abs().sum() == 0  # no crack: 0 everywhere (weight exp(0) = 1)


# --- segmentation losses ---------------------------------------------------------------------------------

Y = [1.0, 0.5, 0.0, 0.0]
T = [1.0, 1.0, 0.0, 0.0]


def test_dice():
    # 2 sum(yt) = 3; sum(y^2) + sum(t^2) = 1.25 + 2 -> 1 - 3 / 3.25
    assert dice_loss(t(Y), t(T)).item() == pytest.approx(1 - 3 / 3.25, abs=1e-6)


def test_generalised_dice_two_classes():
    # crack: w = 1/2^2, inter 1.5, union 3.5; background: w = 1/2^2, inter 2, union 4.5
    assert generalised_dice_loss(t(Y), t(T)).item() == pytest.approx(1 - 2 * 3.5 / 8.0, abs=1e-6)
    # crack-free sample: crack weight clamped to 1, background w = 1/16 -> finite
    loss = generalised_dice_loss(t([0.5, 0, 0, 0]), t([0.0, 0, 0, 0])).item()
    assert loss == pytest.approx(1 - 2 * (3.5 / 16) / (0.5 + 7.5 / 16), abs=1e-6)


def test_wce():
    bce = wce_loss(t([0.5] * 4), t(T)).item()
    assert bce == pytest.approx(math.log(2) / 2, abs=1e-6)  # (1, 1): plain BCE / (w1 + w0)
    assert wce_loss(t([0.25]), t([1.0]), (3.0, 1.0)).item() == pytest.approx(3 * math.log(4) / 4, abs=1e-6)
    assert torch.isfinite(wce_loss(t([0.0, 1.0]), t([1.0, 0.0])))  # clamped, as the authors
    assert frequency_weights(0.2) == pytest.approx((5.0, 1.25))


def test_boundary_focal_soft_iou():
    sdf = t([1.0, -1.0, 0.5, 0.0])
    assert boundary_loss(t([0.5, 1.0, 1.0, 0.2]), sdf).item() == pytest.approx((0.5 - 1 + 0.5) / 4)
    # y = 0.8: t = 1 -> -(0.2^2) log 0.8; t = 0 -> -(0.8^2) log 0.2
    expected = (0.04 * -math.log(0.8) + 0.64 * -math.log(0.2)) / 2
    assert focal_loss(t([0.8, 0.8]), t([1.0, 0.0])).item() == pytest.approx(expected, abs=1e-6)
    assert soft_iou_loss(t(Y), t(T)).item() == pytest.approx(0.25, abs=1e-6)  # I 1.5, U 2


def test_boundary_combo_by_hand():
    # 5x5, one crack pixel, prediction 0.5 everywhere.
    # Boundary: 0.5 * mean(phi); sum of distances to the centre = 4 + 4 sqrt2 + 8 + 8 sqrt5 + 4 sqrt8
    dist_sum = 4 + 4 * math.sqrt(2) + 8 + 8 * math.sqrt(5) + 4 * R8
    boundary = 0.5 * dist_sum / R8 / 25
    dice = 1 - (1 + 1e-6) / (6.25 + 1 + 1e-6)
    wce = math.log(2) / 2
    prob, mask = torch.full((1, 1, 5, 5), 0.5), centre_crack()
    out = SegmentationLoss(SegLossConfig("bc", alpha=0.5, gamma=0.5))(prob, mask)
    assert out["boundary"].item() == pytest.approx(boundary, abs=1e-6)
    assert out["dice"].item() == pytest.approx(dice, abs=1e-6)
    assert out["wce"].item() == pytest.approx(wce, abs=1e-6)
    expected = 0.5 * boundary + 0.25 * dice + 0.25 * wce
    assert out["seg"].item() == pytest.approx(expected, abs=1e-6)
    # aux head weighted 0.4; a scheduled alpha overrides the configured one
    with_aux = SegmentationLoss(SegLossConfig("bc"))(prob, mask, aux=prob)
    assert with_aux["seg"].item() == pytest.approx(1.4 * expected, abs=1e-6)
    combo = SegmentationLoss(SegLossConfig("bc"))(prob, mask, alpha=0.0)
    assert combo["seg"].item() == pytest.approx(0.5 * dice + 0.5 * wce, abs=1e-6)
    assert "boundary" not in combo  # not computed when its weight is 0


@pytest.mark.parametrize(
    ("kind", "parts"),
    [
        ("combo", {"dice": 0.5, "wce": 0.5}),
        ("dice", {"dice": 1}),
        ("wce", {"wce": 1}),
        ("gdice", {"gdice": 1}),
    ],
)
def test_fixed_forms(kind, parts):
    prob, mask = torch.rand(2, 1, 6, 6), (torch.rand(2, 1, 6, 6) > 0.7).float()
    out = SegmentationLoss(SegLossConfig(kind, alpha=0.9, gamma=0.5))(prob, mask)
    torch.testing.assert_close(out["seg"], sum(w * out[k] for k, w in parts.items()))


def test_gbc_and_focal_iou():
    prob, mask = torch.rand(2, 1, 6, 6), (torch.rand(2, 1, 6, 6) > 0.7).float()
    gbc = SegmentationLoss(SegLossConfig("gbc", alpha=0.3, gamma=0.2))(prob, mask)
    expected = 0.3 * gbc["boundary"] + 0.7 * (0.8 * gbc["gdice"] + 0.2 * gbc["wce"])
    torch.testing.assert_close(gbc["seg"], expected)
    fi = SegmentationLoss(SegLossConfig("focal-iou", aux_weight=0.0))(prob, mask, aux=prob)
    torch.testing.assert_close(fi["seg"], fi["focal"] + fi["soft_iou"])
    assert fi["seg"].shape == (2,)


def test_scnet_loss_with_side_weights_by_hand():
    """SCNet (paper Eq. 6-11): focal(fused) + soft IoU(fused) + sum_i w_i focal(side i), no side soft IoU."""
    mask = t([1.0, 0.0, 1.0, 0.0])
    prob = t([0.8, 0.2, 0.6, 0.4])  # p_t = 0.8, 0.8, 0.6, 0.6
    fused_focal = (0.04 * -math.log(0.8) + 0.16 * -math.log(0.6)) / 2
    soft_iou = 1 - (1.4 + 1e-6) / (2.0 + 2.0 - 1.4 + 1e-6)
    p_side = (0.9, 0.8, 0.7, 0.6, 0.5)  # side i: p_t = p_side[i] on every pixel
    aux = torch.stack([t([p, 1 - p, p, 1 - p]) for p in p_side], dim=1).view(1, 5, 1, 4)
    weights = (0.5, 0.75, 1.0, 0.75, 0.5)
    sides = sum(w * (1 - p) ** 2 * -math.log(p) for w, p in zip(weights, p_side, strict=True))
    loss = SegmentationLoss(SegLossConfig("focal-iou", side_weights=weights))
    out = loss(prob, mask, aux=aux)
    assert out["focal"].item() == pytest.approx(fused_focal, abs=1e-6)
    assert out["soft_iou"].item() == pytest.approx(soft_iou, abs=1e-6)
    assert out["seg_aux"].item() == pytest.approx(sides, abs=1e-6)
    assert out["seg"].item() == pytest.approx(fused_focal + soft_iou + sides, abs=1e-6)
    with pytest.raises(ValueError, match="5 side weights for 2 side outputs"):
        loss(prob, mask, aux=aux[:, :2])
    # Other kinds weight each side's full loss: 0.4 per side is the single aux_weight 0.4 on their sum.
    bc_sides = SegmentationLoss(SegLossConfig("bc", side_weights=(0.4, 0.4)))(prob, mask, aux=aux[:, :2])
    bc_sum = SegmentationLoss(SegLossConfig("bc"))(prob, mask, aux=aux[:, :2])
    torch.testing.assert_close(bc_sides["seg"], bc_sum["seg"])


# --- SR loss ---------------------------------------------------------------------------------------------


def _delta_kernel(b: int) -> torch.Tensor:
    k = torch.zeros(b, 1, 21, 21)
    k[:, 0, 10, 10] = 1.0
    return k


def test_kbpn_loss_by_hand():
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 16, 16)
    lr = torch.nn.functional.interpolate(hr, size=(4, 4), mode="bicubic", align_corners=False, antialias=True)
    sr = hr + 0.1
    gt = torch.full((2, 1, 21, 21), 1 / 441)
    # HR: 0.1. pseudo-LR: the identity kernel, then the same resize -> LR + 0.1. Kernel MSE between a delta
    # and the uniform kernel: sum (k - u)^2 = 1 - 1/441, over 441 taps.
    mse = (1 - 1 / 441) / 441
    out = SRLoss(SRLossConfig())(sr, hr, lr, _delta_kernel(2), gt)
    torch.testing.assert_close(out["sr_hr"], torch.full((2,), 0.1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["sr_lr"], torch.full((2,), 0.1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["sr_kernel"], torch.full((2,), mse), atol=1e-7, rtol=0)
    torch.testing.assert_close(out["sr"], torch.full((2,), 0.08 + 0.2 * mse), atol=1e-5, rtol=0)
    # Pixel weights scale the HR and LR terms, never the kernel term; the authors' kernel weight 0.
    doubled = SRLoss(SRLossConfig(kernel_weight=0.0))(
        sr, hr, lr, _delta_kernel(2), gt, pixel_weight=torch.full((2, 1, 16, 16), 2.0)
    )
    torch.testing.assert_close(doubled["sr"], torch.full((2,), 0.16), atol=1e-5, rtol=0)
    l1 = SRLoss(SRLossConfig(kind="l1"))(sr, hr)["sr"]
    torch.testing.assert_close(l1, torch.full((2,), 0.1), atol=1e-6, rtol=0)


# --- segmentation-aware weights --------------------------------------------------------------------------


def test_crack_and_fail_oriented_weights():
    mask = torch.zeros(1, 1, 1, 5)
    mask[..., 0] = 1
    expected = torch.exp(-torch.arange(5.0)).view(1, 1, 1, 5)
    torch.testing.assert_close(crack_oriented_weight(mask, 1.0), expected)
    torch.testing.assert_close(crack_oriented_weight(mask, 1.0, scale=2.0), 2 * expected)  # authors' x2
    torch.testing.assert_close(crack_oriented_weight(torch.zeros(1, 1, 2, 2), 8.0), torch.ones(1, 1, 2, 2))
    prob = torch.tensor([0.3, 0.3]).view(1, 1, 1, 2).requires_grad_()
    gt = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    w = fail_oriented_weight(prob, gt, 2.0)
    torch.testing.assert_close(w, torch.exp(2.0 * torch.tensor([0.7, 0.3])).view(1, 1, 1, 2))
    assert not w.requires_grad  # no gradient through the prediction
    both = sr_pixel_weight(gt, prob, crack_m=1.0, fail_m=2.0)
    torch.testing.assert_close(both, crack_oriented_weight(gt, 1.0) * w)
    assert sr_pixel_weight(gt, prob, 0.0, 0.0) is None


def test_sr_loss_weighted_by_seg_loss_per_sample():
    sr = torch.tensor([1.0, 2.0], requires_grad=True)
    seg = torch.tensor([3.0, 4.0], requires_grad=True)
    out = weight_by_seg_loss(sr, seg)
    torch.testing.assert_close(out, torch.tensor([3.0, 8.0]))  # each sample with its own L_C (no B x B)
    out.sum().backward()
    assert seg.grad is None and sr.grad.tolist() == [3.0, 4.0]
