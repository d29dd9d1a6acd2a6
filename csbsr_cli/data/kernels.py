"""Blur kernels: the authors' anisotropic Gaussian law, plus isotropic Gaussian and straight motion blur.

Convention (the authors' `GaussianBlur.make`): kernels are `size`x`size` (21 by default) on the grid
x = column offset, y = row offset in -r..r, normalised to sum 1, and applied by correlation. sigma_x and
sigma_y are standard deviations along the kernel's own axes; theta (and the motion angle) is the angle of
the first axis, counter-clockwise from the image's +x axis as the image is displayed (rows pointing down).
Every kernel here is point-symmetric, so correlation and convolution agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import InputError
from .image_io import PathLike, read_gray, read_tiff_float32, write_png, write_tiff_float32

KERNEL_SIZE = 21  # the authors' data kernels (BLUR.KERNEL_SIZE_OUTPUT)
SIGMA_RANGE = (0.2, 4.0)  # standard deviations, as the authors' code samples them (the paper says variances)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    r = size // 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    return x, y


def _normalised(k: np.ndarray) -> np.ndarray:
    return (k / k.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """The authors' rotated Gaussian, exp(-(a x^2 + 2b xy + c y^2)), normalised to sum 1."""
    x, y = _grid(size)
    cos, sin = math.cos(theta), math.sin(theta)
    ix, iy = 1.0 / (2.0 * sigma_x**2), 1.0 / (2.0 * sigma_y**2)
    a = cos**2 * ix + sin**2 * iy
    b = sin * cos * (iy - ix)
    c = sin**2 * ix + cos**2 * iy
    return _normalised(np.exp(-(a * x**2 + 2.0 * b * x * y + c * y**2)))


def motion_kernel(size: int, length: float, angle: float) -> np.ndarray:
    """A straight, evenly exposed line of `length` pixels through the centre, splatted bilinearly."""
    r = size // 2
    if not 0.0 <= length <= 2 * (r - 1):
        raise ValueError(f"motion length must be in [0, {2 * (r - 1)}] for a {size}x{size} kernel")
    t = np.linspace(-length / 2.0, length / 2.0, max(2, math.ceil(4 * length) + 1))
    cols = r + t * math.cos(angle)
    rows = r - t * math.sin(angle)  # rows point down, the angle is counter-clockwise as displayed
    k = np.zeros((size, size), np.float64)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            np.add.at(k, (r0 + dr, c0 + dc), wr * wc)
    return _normalised(k)


@dataclass(frozen=True)
class AnisoGaussian:
    """The authors' kernel: independent sigma_x, sigma_y (standard deviations) and an orientation."""

    sigma_x: float
    sigma_y: float
    theta: float
    kind: ClassVar[str] = "aniso"

    def build(self, size: int = KERNEL_SIZE) -> np.ndarray:
        return gaussian_kernel(size, self.sigma_x, self.sigma_y, self.theta)


@dataclass(frozen=True)
class IsoGaussian:
    sigma: float
    kind: ClassVar[str] = "iso"

    def build(self, size: int = KERNEL_SIZE) -> np.ndarray:
        return gaussian_kernel(size, self.sigma, self.sigma, 0.0)


@dataclass(frozen=True)
class Motion:
    """Straight motion blur (a drone moving during the exposure)."""

    length: float
    angle: float
    kind: ClassVar[str] = "motion"

    def build(self, size: int = KERNEL_SIZE) -> np.ndarray:
        return motion_kernel(size, self.length, self.angle)


KernelParams = AnisoGaussian | IsoGaussian | Motion
KERNEL_TYPES: dict[str, type[KernelParams]] = {cls.kind: cls for cls in (AnisoGaussian, IsoGaussian, Motion)}


def params_to_dict(params: KernelParams) -> dict[str, str | float]:
    """JSON record of a kernel: its type and parameters (enough to rebuild it exactly)."""
    return {"type": params.kind, **asdict(params)}


def params_from_dict(record: dict[str, str | float]) -> KernelParams:
    fields = dict(record)
    return KERNEL_TYPES[str(fields.pop("type"))](**fields)


def _check_range(name: str, bounds: tuple[float, float], low: float) -> None:
    if not low <= bounds[0] <= bounds[1]:
        raise ValueError(f"{name} range must satisfy {low} <= min <= max, got {bounds[0]}:{bounds[1]}")


@dataclass(frozen=True)
class KernelLaw:
    """How each image's kernel is drawn: a weighted choice of kernel type, then uniform parameters."""

    weights: dict[str, float] = field(default_factory=lambda: {"aniso": 1.0})
    sigma: tuple[float, float] = SIGMA_RANGE
    motion_length: tuple[float, float] = (3.0, 15.0)
    size: int = KERNEL_SIZE

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(KERNEL_TYPES)
        if unknown or not self.weights:
            raise ValueError(f"kernel types must be among {sorted(KERNEL_TYPES)}, got {sorted(self.weights)}")
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError("kernel type weights must be positive")
        _grid(self.size)
        _check_range("sigma", self.sigma, 1e-3)
        _check_range("motion length", self.motion_length, 0.0)
        if "motion" in self.weights and self.motion_length[1] > 2 * (self.size // 2 - 1):
            raise ValueError(f"motion length must be at most {2 * (self.size // 2 - 1)} for size {self.size}")

    def sample(self, rng: np.random.Generator) -> KernelParams:
        kinds = sorted(self.weights)
        p = np.array([self.weights[k] for k in kinds], np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        if kind == "aniso":
            sx, sy = rng.uniform(*self.sigma, size=2)
            return AnisoGaussian(float(sx), float(sy), float(rng.uniform(0.0, math.pi)))
        if kind == "iso":
            return IsoGaussian(float(rng.uniform(*self.sigma)))
        return Motion(float(rng.uniform(*self.motion_length)), float(rng.uniform(0.0, math.pi)))

    def to_dict(self) -> dict[str, object]:
        return {
            "weights": dict(sorted(self.weights.items())),
            **{k: v for k, v in asdict(self).items() if k != "weights"},
        }


def fit_gaussian(kernel: np.ndarray) -> AnisoGaussian:
    """Gaussian with the kernel's second moments (sigma_x >= sigma_y, theta in [0, pi)), for checks."""
    x, y_up = _grid(kernel.shape[0])
    y_up = -y_up
    k = kernel.astype(np.float64) / kernel.sum()
    mx, my = (k * x).sum(), (k * y_up).sum()
    dx, dy = x - mx, y_up - my
    cov = np.array([[(k * dx * dx).sum(), (k * dx * dy).sum()], [(k * dx * dy).sum(), (k * dy * dy).sum()]])
    evals, evecs = np.linalg.eigh(cov)  # ascending
    major = evecs[:, 1]
    theta = math.atan2(major[1], major[0]) % math.pi
    return AnisoGaussian(math.sqrt(max(evals[1], 0.0)), math.sqrt(max(evals[0], 0.0)), theta)


def save_kernel(path: PathLike, kernel: np.ndarray) -> None:
    """`.tif(f)`: exact float32; `.png`: divided by its max, 8-bit (the authors' test-set format)."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        write_tiff_float32(path, kernel)
    elif path.suffix.lower() == ".png":
        write_png(path, kernel / kernel.max())
    else:
        raise ValueError(f"kernel files are .tiff or .png, got {path.name}")


def load_kernel(path: PathLike) -> np.ndarray:
    """A kernel normalised to sum 1, read the way the authors read theirs (8-bit PNG: /255 then /sum)."""
    path = Path(path)
    k = read_tiff_float32(path) if path.suffix.lower() in (".tif", ".tiff") else read_gray(path)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise InputError(f"a kernel must be square with an odd size, got {k.shape}", path)
    total = float(k.sum())
    if not total > 0:
        raise InputError("kernel sums to zero", path)
    return (k / total).astype(np.float32)


def delta_kernel(size: int = KERNEL_SIZE) -> np.ndarray:
    """The identity blur (1 at the centre): the kernel of an input that was not degraded."""
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, size // 2] = 1.0
    return kernel
