"""`csbsr tile split/merge`: frames to fixed-size tile files plus a manifest, and back.

Split uses the same window layout as `segment` (`tiling.make_plan`), so tiles can be annotated, run
through another tool or a fixed-shape engine, and merged back: `crop` takes each pixel from the window
that owns it (an exact round trip of the tiles themselves), `gaussian` blends overlapping per-tile
predictions as `segment` does. Tiles are written losslessly: 8-bit PNG when every value is a multiple of
1/255, 16-bit PNG when a multiple of 1/65535, float32 TIFF otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..data.image_io import IMAGE_SUFFIXES, read_image, write_png, write_tiff_float32
from ..errors import CsbsrError, InputError
from ..utils.atomic import write_text_atomic
from ..utils.folders import contained
from .inputs import Source, iter_frames
from .tiling import Stitcher, StitchMode, make_plan, pad_frame

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
Format = Literal["png8", "png16", "tiff"]
_SUFFIX = {"png8": ".png", "png16": ".png", "tiff": ".tiff"}


def lossless_format(img: np.ndarray) -> Format:
    """The smallest format that stores `img` ([0, 1] floats) exactly."""
    for fmt, top in (("png8", 255.0), ("png16", 65535.0)):
        q = np.round(img.astype(np.float64) * top)
        if np.array_equal((q / top).astype(np.float32), img):
            return fmt  # type: ignore[return-value]
    return "tiff"


def write_lossless(stem: Path, img: np.ndarray, fmt: Format) -> Path:
    """Write `img` as `stem` + the format's suffix (atomically) and return the path."""
    path = stem.with_name(stem.name + _SUFFIX[fmt])
    if fmt == "tiff":
        write_tiff_float32(path, img)
    else:
        write_png(path, img, bits=8 if fmt == "png8" else 16)
    return path


def split(
    sources: Sequence[Source], out_dir: Path, *, tile: int, overlap: int, every: int = 1
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Write every frame's tiles under `out_dir/<key>/` and `out_dir/manifest.json`; returns (manifest,
    [(key, error)] for frames that could not be read)."""
    frames_meta, failures = [], []
    for frame in iter_frames(sources, every):
        if frame.image is None:
            failures.append((frame.key, frame.error or "unreadable"))
            continue
        h, w = frame.image.shape[:2]
        plan = make_plan(h, w, tile=tile, overlap=overlap, scale=1, mode="crop")
        padded = pad_frame(frame.image, plan)
        fmt = lossless_format(padded)
        tiles = []
        for index in range(plan.n_tiles):
            y, x = plan.window(index)
            crop = np.ascontiguousarray(padded[y : y + tile, x : x + tile])
            path = write_lossless(
                contained(out_dir, frame.key, "frame key") / f"y{y:05d}_x{x:05d}", crop, fmt
            )
            tiles.append({"file": path.relative_to(out_dir).as_posix(), "y": y, "x": x})
        frames_meta.append(
            {
                "key": frame.key,
                "source": str(frame.source),
                "video_frame": frame.index,
                "size": [w, h],
                "format": fmt,
                "tiles": tiles,
            }  # fmt: skip
        )
    manifest = {"version": MANIFEST_VERSION, "tile": tile, "overlap": overlap, "frames": frames_meta}
    write_text_atomic(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
    return manifest, failures


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, its frame keys and tile files checked to stay inside their folders (a key like
    `../../x` would write outside the output folder, a tile path read from anywhere)."""
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("version") != MANIFEST_VERSION or not isinstance(manifest.get("frames"), list):
            raise ValueError("unknown version or layout")
        for frame in manifest["frames"]:
            contained(Path("."), str(frame["key"]), "frame key")
            for tile in frame["tiles"]:
                contained(Path("."), str(tile["file"]), "tile file")
        return manifest
    except InputError as exc:
        raise InputError(str(exc), path) from None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise InputError(f"not a tile manifest ({exc})", path) from None


def _find_tile(tiles_dir: Path, rel: str) -> Path:
    """The tile `rel`, or a prediction with the same name and another image suffix (e.g. .png for .jpg)."""
    path = contained(tiles_dir, rel, "tile file")
    if path.is_file():
        return path
    for suffix in sorted(IMAGE_SUFFIXES):
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise InputError("tile not found", path)


def merge_frame(
    frame: dict[str, Any], tile: int, overlap: int, tiles_dir: Path, mode: StitchMode
) -> np.ndarray:
    """One frame (HxWx3 float32) from its tiles; the scale is the tile files' size over the manifest's."""
    w, h = frame["size"]
    images = [read_image(_find_tile(tiles_dir, t["file"])) for t in frame["tiles"]]
    side = images[0].shape[0]
    scale = side // tile
    if scale < 1 or side != scale * tile or any(im.shape[:2] != (side, side) for im in images):
        raise InputError(f"tiles of frame {frame['key']!r} are not all {tile} x an integer scale px squares")
    plan = make_plan(h, w, tile=tile, overlap=overlap, scale=scale, mode=mode)
    expected = [{"y": plan.window(i)[0], "x": plan.window(i)[1]} for i in range(plan.n_tiles)]
    if [{"y": t["y"], "x": t["x"]} for t in frame["tiles"]] != expected:
        raise InputError(f"manifest tiles of frame {frame['key']!r} do not match a {tile}/{overlap} layout")
    strips: list[np.ndarray] = []
    stitcher = Stitcher(plan, {"img": 3}, lambda y, s: strips.append(s["img"]))
    for index, im in enumerate(images):
        stitcher.add(index, {"img": im.transpose(2, 0, 1)})
    return np.ascontiguousarray(np.concatenate(strips, axis=1).transpose(1, 2, 0))


def merge(
    manifest_path: Path, out_dir: Path, *, tiles_dir: Path | None = None, mode: StitchMode = "crop"
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Merge every frame of a manifest into `out_dir/<key>.<png|tiff>`; returns (written, [(key, error)])."""
    manifest = read_manifest(manifest_path)
    root = manifest_path if manifest_path.is_dir() else manifest_path.parent
    written, failures = [], []
    for frame in manifest["frames"]:
        try:
            img = merge_frame(frame, int(manifest["tile"]), int(manifest["overlap"]), tiles_dir or root, mode)
            written.append(
                write_lossless(contained(out_dir, frame["key"], "frame key"), img, lossless_format(img))
            )
        except CsbsrError as exc:
            failures.append((frame["key"], str(exc)))
    return written, failures
