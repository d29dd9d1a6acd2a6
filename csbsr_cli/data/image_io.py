"""The package's one way to read and write images, so every command treats every file the same way.

Reading is driven by the pixel type, never guessed from values: 8-bit / 255, 16-bit / 65535, float TIFF as
stored (clipped to [0, 1]). Grey images become 3 identical channels, alpha is dropped (the stored RGB is
kept; `read_image_valid` also says where alpha is not zero), and EXIF orientation is applied (drone and
phone JPEGs rely on it). Bytes are read with `np.fromfile` and decoded in memory, so non-ASCII paths work
on every OS. Every writer is atomic.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image

from ..errors import InputError
from ..utils.atomic import write_bytes_atomic

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
# The suffixes `find_image` tries: what our tools write, then any image type.
LOOKUP_SUFFIXES = (".png", ".tiff", ".tif", *sorted(IMAGE_SUFFIXES - {".png", ".tiff", ".tif"}))
_EXIF_ORIENTATION = 0x0112
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
# ANYDEPTH keeps 16-bit and float; ANYCOLOR keeps grey as 1 channel and drops alpha. Unlike IMREAD_UNCHANGED,
# these flags make OpenCV apply the EXIF orientation.
_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
MAX_PIXELS = 1 << 30  # OpenCV's decoder limit (CV_IO_MAX_IMAGE_PIXELS); larger headers are refused

PathLike = str | os.PathLike[str]


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own stderr chatter about broken files: our InputError already says it in one line."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _decode(path: Path, flags: int = _FLAGS) -> np.ndarray:
    """Decoded pixels in their stored type (HxW or HxWx3, BGR; with the default flags EXIF orientation
    applied, alpha dropped)."""
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror or exc})", path) from None
    if buf.size == 0:
        raise InputError("empty file", path)
    try:
        with _quiet_opencv():
            img = cv2.imdecode(buf, flags)
    except cv2.error as exc:  # OpenCV's assertion text is no message for a user
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise InputError(
                f"image header claims more than {MAX_PIXELS} pixels (a decompression bomb?): refused", path
            ) from None
        img = None
    if img is None:
        raise InputError("not a readable image (unknown format, truncated or corrupt)", path)
    return img


def _to_unit(img: np.ndarray, path: Path) -> np.ndarray:
    """Scale by pixel type to float32 in [0, 1]."""
    if img.dtype in _SCALE:
        return img.astype(np.float32) / np.float32(_SCALE[img.dtype])
    if img.dtype.kind == "f":
        if not np.isfinite(img).all():
            raise InputError("float image contains NaN or infinite values", path)
        return np.clip(img, 0.0, 1.0).astype(np.float32)
    raise InputError(f"unsupported pixel type {img.dtype} (expected 8-bit, 16-bit or float)", path)


def _rgb(img: np.ndarray) -> np.ndarray:
    """Grey (HxW) or BGR float pixels as RGB HxWx3."""
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, ::-1])


def read_image(path: PathLike) -> np.ndarray:
    """RGB float32 HxWx3 in [0, 1]; raises InputError naming the file if it cannot be used."""
    path = Path(path)
    return _rgb(_to_unit(_decode(path), path))


def _has_alpha(path: Path) -> bool:
    """From the header only: does the file store transparency?"""
    try:
        with Image.open(path) as im:
            return "A" in im.getbands() or "transparency" in im.info
    except Exception:  # noqa: BLE001 - unreadable here: read_image reports it
        return False


def read_image_valid(path: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """`read_image`'s RGB and, for a file with an alpha channel, where alpha is not zero (HxW bool): fully
    transparent pixels are no-data areas (orthomosaic tiles) that must not be segmented; None without alpha.
    Files with alpha are decoded as stored: PNG/TIFF/WebP tiles carry no EXIF orientation in practice."""
    path = Path(path)
    if not _has_alpha(path):
        return read_image(path), None
    img = _decode(path, cv2.IMREAD_UNCHANGED)
    if img.ndim != 3 or img.shape[2] not in (2, 4):
        return _rgb(_to_unit(img, path)), None
    valid = img[:, :, -1] > 0
    colour = img[:, :, 0] if img.shape[2] == 2 else img[:, :, :3]
    return _rgb(_to_unit(np.ascontiguousarray(colour), path)), valid


def read_gray(path: PathLike) -> np.ndarray:
    """Single-channel float32 HxW in [0, 1]; a colour file counts where any channel is bright (max)."""
    path = Path(path)
    img = _to_unit(_decode(path), path)
    return img if img.ndim == 2 else img.max(axis=2)


def read_mask(path: PathLike, threshold: int = 127) -> np.ndarray:
    """Boolean HxW crack mask: value > `threshold` on the 8-bit scale (masks are often JPEG, so not 0/255)."""
    return read_gray(path) > np.float32(threshold) / np.float32(255.0)


def image_size(path: PathLike) -> tuple[int, int]:
    """(height, width) as `read_image` would return it, from the header only (fast checks before training)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except Image.DecompressionBombError:
        raise InputError(
            "image header claims too many pixels (a decompression bomb?): refused", path
        ) from None
    except (OSError, ValueError, SyntaxError):  # a format PIL cannot parse: decode it fully instead
        return _decode(path).shape[:2]
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def is_hidden(path: Path) -> bool:
    """A path with a part starting with '.' (.git, .DS_Store, a run's state files): never read as input."""
    return any(part.startswith(".") for part in path.parts)


def walk_files(
    root: Path, pattern: str, suffixes: Collection[str], exclude: PathLike | None = None
) -> list[Path]:
    """Files under `root` matching `pattern` with one of `suffixes` (lower case), sorted; hidden entries and
    anything inside `exclude` skipped, so an output folder inside an input folder is never read back."""
    skip = Path(exclude).resolve() if exclude is not None else None
    found = []
    for path in root.glob(pattern):
        if path.suffix.lower() not in suffixes or is_hidden(path.relative_to(root)):
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.is_file():
            found.append(path)
    return sorted(found)


def list_images(root: PathLike, pattern: str = "**/*", exclude: PathLike | None = None) -> list[Path]:
    """Image files under `root` matching `pattern`, sorted; hidden files/folders and `exclude` are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("not a folder", root)
    return walk_files(root, pattern, IMAGE_SUFFIXES, exclude)


def quantise(img: np.ndarray, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """Float [0, 1] -> integers, rounding half up like torchvision's save_image; integers pass through."""
    if img.dtype.kind == "f":
        top = float(np.iinfo(dtype).max)
        return np.floor(np.clip(img, 0.0, 1.0) * top + 0.5).astype(dtype)
    if img.dtype != dtype:
        raise ValueError(f"expected float or {np.dtype(dtype)} pixels, got {img.dtype}")
    return img


def find_image(folder: Path, stems: Iterable[str]) -> Path | None:
    """The first `folder/<stem><suffix>` that exists: what our tools write (.png, .tiff) first, then any image
    type; how a dataset's LR images, GT kernels and saved maps are matched to their HR image by name."""
    for stem in stems:
        for suffix in LOOKUP_SUFFIXES:
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


def write_png(path: PathLike, img: np.ndarray, bits: int = 8) -> None:
    """Atomically write an RGB (HxWx3) or grey (HxW) image as an 8- or 16-bit PNG."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    pixels = quantise(img, np.uint8 if bits == 8 else np.uint16)
    if pixels.ndim == 3:
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError(f"cannot encode an array of shape {img.shape} as PNG")
    write_bytes_atomic(path, encoded.tobytes())


def write_tiff_float32(path: PathLike, arr: np.ndarray) -> None:
    """Atomically write an exact float32 array (kernels, probability maps) as a zlib-compressed TIFF."""
    buf = io.BytesIO()
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    photometric = "rgb" if arr.ndim == 3 and arr.shape[2] == 3 else "minisblack"
    tifffile.imwrite(buf, arr, photometric=photometric, compression="zlib")
    write_bytes_atomic(path, buf.getvalue())


def read_tiff_float32(path: PathLike) -> np.ndarray:
    """The exact array stored by `write_tiff_float32`."""
    path = Path(path)
    try:
        return tifffile.imread(path).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable TIFF ({exc})", path) from None
