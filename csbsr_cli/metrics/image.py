"""PSNR, SSIM and kernel PSNR with explicit conventions (channel, border crop, arithmetic precision).

The paper preset reproduces the authors' numbers: RGB, no crop, float32, SSIM from pytorch-ssim (11x11
Gaussian window, sigma 1.5, zero padding, so borders are included and slightly penalised).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from csbsr_cli.errors import InputError
from csbsr_cli.metrics.presets import MetricPreset

Channel = Literal["rgb", "y"]
Precision = Literal["float32", "float64"]

# BT.601 luma for [0, 1] RGB, as MATLAB's rgb2ycbcr (the usual "Y channel" of SR papers).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_Y_OFFSET = 16.0 / 255.0
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2


def to_unit_float(image: np.ndarray, dtype: Precision = "float64") -> np.ndarray:
    """uint8 -> /255; floating point -> clipped to [0, 1] (as the authors clip the SR output)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(dtype) / np.array(255, dtype)
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"image must be uint8 or floating point, got {image.dtype}")
    return np.clip(image.astype(dtype), 0, 1)


def _prepare(
    sr: np.ndarray, hr: np.ndarray, channel: Channel, crop: int, dtype: Precision
) -> tuple[np.ndarray, np.ndarray]:
    """HxWxC images in [0, 1], converted to the channel and cropped; shapes must agree."""
    if np.shape(sr) != np.shape(hr):
        raise InputError(f"SR shape {np.shape(sr)} differs from HR shape {np.shape(hr)}")
    if np.ndim(sr) != 3:
        raise InputError(f"images must be H x W x C, got shape {np.shape(sr)}")
    images = [to_unit_float(im, dtype) for im in (sr, hr)]
    if channel == "y":
        if images[0].shape[2] != 3:
            raise InputError("the Y channel needs RGB images")
        images = [(im @ _Y_WEIGHTS.astype(dtype) + np.array(_Y_OFFSET, dtype))[..., None] for im in images]
    if crop:
        if 2 * crop >= min(images[0].shape[:2]):
            raise InputError(f"border crop {crop} leaves nothing of a {images[0].shape[:2]} image")
        images = [im[crop:-crop, crop:-crop] for im in images]
    return images[0], images[1]


def psnr(
    sr: np.ndarray, hr: np.ndarray, channel: Channel = "rgb", crop: int = 0, dtype: Precision = "float64"
) -> float:
    """10 log10(1 / MSE) with peak 1, MSE over all pixels and channels (inf for identical images)."""
    a, b = _prepare(sr, hr, channel, crop, dtype)
    return _psnr_unit(a, b)


def _psnr_unit(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean(np.square(a - b)))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    sr: np.ndarray, hr: np.ndarray, channel: Channel = "rgb", crop: int = 0, dtype: Precision = "float64"
) -> float:
    """Mean SSIM map over pixels and channels: 11x11 Gaussian (sigma 1.5), zero padding (pytorch-ssim)."""
    a, b = _prepare(sr, hr, channel, crop, dtype)
    kernel = _gaussian_window().astype(dtype)

    def blur(x: np.ndarray) -> np.ndarray:
        # Separable 'same' filtering with zeros outside the image, per channel; the window is symmetric,
        # so correlation and convolution coincide.
        out = cv2.sepFilter2D(np.ascontiguousarray(x), -1, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
        return out.reshape(x.shape)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return float(np.mean(num / den))


def kernel_psnr(pred: np.ndarray, gt_png: np.ndarray) -> float:
    """PSNR of a predicted blur kernel against the stored GT kernel image (peak 1, float64).

    The prediction is clipped to [0, 1]; the GT is the 8-bit kernel PNG (kernel / max * 255) divided by
    255 and renormalised to sum 1, as the authors do. Kernel taps are tiny, so even an all-zero
    prediction scores about 42 dB: compare kernel PSNRs with each other, not with image PSNRs.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt_png, dtype=np.float64) / 255.0
    if pred.shape != gt.shape:
        raise InputError(f"kernel shapes differ: predicted {pred.shape}, GT {gt.shape}")
    total = gt.sum()
    if total <= 0:
        raise InputError("GT kernel image is all zero")
    return _psnr_unit(np.clip(pred, 0, 1), gt / total)


@dataclass(frozen=True)
class ImageQuality:
    """SR quality of one image (and its kernel estimate when the GT kernel is known)."""

    name: str
    preset: str
    psnr: float
    ssim: float
    kernel_psnr: float | None = None


def image_quality(
    name: str,
    sr: np.ndarray,
    hr: np.ndarray,
    preset: MetricPreset,
    kernel_pred: np.ndarray | None = None,
    kernel_gt_png: np.ndarray | None = None,
) -> ImageQuality:
    """PSNR/SSIM of an HxWx3 SR image (float, clipped to [0, 1]) against its HR image (uint8 or float)."""
    opts = {"channel": preset.image_channel, "crop": preset.image_crop, "dtype": preset.image_dtype}
    kpsnr = None if kernel_pred is None or kernel_gt_png is None else kernel_psnr(kernel_pred, kernel_gt_png)
    return ImageQuality(name, preset.name, psnr(sr, hr, **opts), ssim(sr, hr, **opts), kpsnr)


def summarize_quality(rows: list[ImageQuality]) -> dict[str, float | int | None]:
    """Means over images (the paper's PSNR / SSIM columns); kernel PSNR over images that have one."""
    if not rows:
        raise InputError("no images to summarise")
    presets = {r.preset for r in rows}
    if len(presets) > 1:
        raise InputError(f"image-quality results mix presets {sorted(presets)}")
    kernels = [r.kernel_psnr for r in rows if r.kernel_psnr is not None]
    return {
        "preset": rows[0].preset,
        "n_images": len(rows),
        "PSNR_mean": float(np.mean([r.psnr for r in rows])),
        "SSIM_mean": float(np.mean([r.ssim for r in rows])),
        "kernel_PSNR_mean": float(np.mean(kernels)) if kernels else None,
        "n_kernels": len(kernels),
    }
