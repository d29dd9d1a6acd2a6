"""Blur kernels: normalisation, the authors' orientation convention, the sampled law, kernel files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from csbsr_cli.data.image_io import read_gray
from csbsr_cli.data.kernels import (
    AnisoGaussian,
    IsoGaussian,
    KernelLaw,
    Motion,
    fit_gaussian,
    gaussian_kernel,
    load_kernel,
    motion_kernel,
    params_from_dict,
    params_to_dict,
    save_kernel,
)


def _canonical(sx: float, sy: float, theta: float) -> tuple[float, float, float]:
    """(major, minor, angle of the major axis in [0, pi)): a Gaussian's parameters are ambiguous otherwise."""
    return (sx, sy, theta % math.pi) if sx >= sy else (sy, sx, (theta + math.pi / 2) % math.pi)


def _angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % math.pi
    return min(d, math.pi - d)


@pytest.mark.parametrize("params", [AnisoGaussian(3.1, 0.3, 1.2), IsoGaussian(0.2), Motion(15.0, 2.5)])
def test_kernels_are_21x21_float32_nonnegative_and_sum_to_one(params):
    k = params.build()
    assert k.shape == (21, 21) and k.dtype == np.float32
    assert k.min() >= 0
    assert abs(float(k.sum(dtype=np.float64)) - 1.0) < 1e-6
    np.testing.assert_array_equal(k, k[::-1, ::-1])  # point-symmetric: correlation == convolution


@pytest.mark.parametrize(
    "sx, sy, theta", [(2.0, 1.0, 0.0), (1.0, 2.4, 0.3), (2.2, 0.9, 1.1), (1.5, 1.2, 2.0), (0.9, 2.5, 3.0)]
)
def test_fitted_covariance_recovers_sigmas_and_angle(sx, sy, theta):
    fit = fit_gaussian(gaussian_kernel(21, sx, sy, theta))
    major, minor, angle = _canonical(sx, sy, theta)
    assert fit.sigma_x == pytest.approx(major, rel=0.02)
    assert fit.sigma_y == pytest.approx(minor, rel=0.02)
    assert _angle_gap(fit.theta, angle) < 0.02


def test_angle_is_counter_clockwise_as_displayed():
    # theta = 45 degrees: the long axis runs from bottom-left to top-right of the displayed kernel,
    # i.e. along (row - r) = -(col - r); the authors' formula has this orientation.
    k = gaussian_kernel(21, 3.0, 0.5, math.pi / 4)
    assert k[10 - 4, 10 + 4] > 100 * k[10 + 4, 10 + 4]
    line = motion_kernel(21, 12.0, math.pi / 4)
    assert line[10 - 4, 10 + 4] > 0 and line[10 + 4, 10 + 4] == 0


def test_matches_closed_form_rotated_covariance():
    sx, sy, theta = 2.5, 0.8, 0.7
    r = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inv = np.linalg.inv(r @ np.diag([sx**2, sy**2]) @ r.T)
    y, x = np.mgrid[-10:11, -10:11]
    v = np.stack([x, -y], -1).astype(np.float64)  # y axis up, as displayed
    ref = np.exp(-0.5 * np.einsum("...i,ij,...j->...", v, inv, v))
    np.testing.assert_allclose(gaussian_kernel(21, sx, sy, theta), ref / ref.sum(), atol=1e-7)


def test_motion_kernel_lies_along_its_angle_with_its_length():
    fit = fit_gaussian(motion_kernel(21, 12.0, 0.6))
    assert _angle_gap(fit.theta, 0.6) < 0.02
    assert fit.sigma_x == pytest.approx(12.0 / math.sqrt(12), rel=0.06)  # a uniform segment of length L
    assert fit.sigma_y < 0.5


def test_sampled_law_stays_within_the_ranges():
    rng = np.random.default_rng(0)
    law = KernelLaw()
    draws = [law.sample(rng) for _ in range(3000)]
    assert all(isinstance(p, AnisoGaussian) for p in draws)
    sigmas = np.array([(p.sigma_x, p.sigma_y) for p in draws])
    thetas = np.array([p.theta for p in draws])
    assert sigmas.min() >= 0.2 and sigmas.max() <= 4.0
    assert thetas.min() >= 0 and thetas.max() < math.pi
    # uniform and independent: bounds nearly reached, means centred, sigma_x and sigma_y uncorrelated
    assert sigmas.min() < 0.21 and sigmas.max() > 3.99
    np.testing.assert_allclose(sigmas.mean(axis=0), 2.1, atol=0.08)
    assert abs(thetas.mean() - math.pi / 2) < 0.08
    assert abs(np.corrcoef(sigmas.T)[0, 1]) < 0.06


def test_mixture_law_draws_each_kind_in_its_range():
    law = KernelLaw(weights={"aniso": 1.0, "iso": 1.0, "motion": 2.0}, motion_length=(2.0, 6.0))
    rng = np.random.default_rng(1)
    draws = [law.sample(rng) for _ in range(2000)]
    kinds = [p.kind for p in draws]
    assert kinds.count("motion") == pytest.approx(1000, abs=90)
    assert all(2.0 <= p.length <= 6.0 and 0 <= p.angle < math.pi for p in draws if isinstance(p, Motion))
    assert all(0.2 <= p.sigma <= 4.0 for p in draws if isinstance(p, IsoGaussian))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weights": {"disk": 1.0}},
        {"sigma": (4.0, 0.2)},
        {"size": 20},
        {"weights": {"motion": 1.0}, "motion_length": (3, 30)},
    ],
)
def test_invalid_laws_are_refused(kwargs):
    with pytest.raises(ValueError):
        KernelLaw(**kwargs)


def test_params_round_trip_through_json_records():
    for params in (AnisoGaussian(1.0, 2.0, 0.5), IsoGaussian(1.5), Motion(7.0, 0.1)):
        record = params_to_dict(params)
        assert params_from_dict(record) == params
        np.testing.assert_array_equal(params_from_dict(record).build(), params.build())


def test_kernel_files_tiff_exact_png_max_normalised(tmp_path):
    k = gaussian_kernel(21, 1.7, 0.6, 0.4)
    save_kernel(tmp_path / "k.tiff", k)
    np.testing.assert_array_equal(load_kernel(tmp_path / "k.tiff"), k)
    save_kernel(tmp_path / "k.png", k)
    assert read_gray(tmp_path / "k.png").max() == 1.0  # the peak is stored as 255, as the authors do
    np.testing.assert_allclose(load_kernel(tmp_path / "k.png"), k, atol=k.max() / 255)
