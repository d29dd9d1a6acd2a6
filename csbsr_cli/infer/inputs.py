"""What `segment` and `tile split` read: files, folders (recursive), globs and videos, as frames.

Every frame gets a key, its output path stem: the path relative to the folder or glob root it came from
(so outputs mirror input subfolders), and `<video key>/<frame index>` for video frames. Decoding goes
through `data.image_io.read_image_valid` (8/16-bit, grey, RGBA with its no-data mask, EXIF orientation,
non-ASCII paths) and OpenCV for videos; a frame that cannot be decoded becomes a Frame with an error, so
one bad file never stops a batch.
"""

from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import cv2
import numpy as np

from ..data.image_io import IMAGE_SUFFIXES, is_hidden, read_image_valid, walk_files
from ..errors import CsbsrError, InputError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"})
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Source:
    path: Path
    key: str  # output stem, POSIX separators
    kind: Literal["image", "video"]


@dataclass
class Frame:
    key: str
    source: Path
    index: int | None = None  # video frame index
    time_s: float | None = None  # video frames: index / the stream's fps
    fps: float | None = None  # video frames: the stream's frame rate (None when the container has none)
    image: np.ndarray | None = None  # RGB float32 HxWx3 in [0, 1]
    valid: np.ndarray | None = None  # HxW bool, False where the file's alpha is 0 (no data); None: all valid
    error: str | None = None


def normalise_extensions(extensions: Collection[str] | None) -> frozenset[str]:
    """`["JPG", ".png"]` -> {".jpg", ".png"}; None -> every image and video suffix we read."""
    if not extensions:
        return IMAGE_SUFFIXES | VIDEO_SUFFIXES
    return frozenset("." + e.lower().lstrip(".") for e in extensions)


def _kind(path: Path) -> Literal["image", "video"]:
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (keys are relative to it)."""
    parts = PurePosixPath(Path(pattern).as_posix()).parts
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _key(path: Path, root: Path | None) -> str:
    rel = path.relative_to(root) if root is not None else Path(path.name)
    return rel.with_suffix("").as_posix()


def discover(
    inputs: Sequence[str],
    *,
    recursive: bool = True,
    extensions: Collection[str] | None = None,
    exclude: Path | None = None,
) -> list[Source]:
    """Expand files, folders and globs into sources, in the given order (sorted within a folder/glob).

    Keys are relative to each folder or glob root, prefixed by the root's name when several inputs are
    given; when two sources would share a key (e.g. a.jpg and a.png), those keep their suffix in the key.
    """
    suffixes = normalise_extensions(extensions)
    skip = exclude.resolve() if exclude is not None else None
    pattern = "**/*" if recursive else "*"
    found: list[tuple[Path, Path | None, str]] = []  # (path, key root, prefix)
    for item in inputs:
        path = Path(item)
        prefix = ""
        if path.is_file():
            found.append((path, None, ""))
            continue
        if path.is_dir():
            files, root = walk_files(path, pattern, suffixes, skip), path
            prefix = path.resolve().name if len(inputs) > 1 else ""
            if not files:
                raise InputError(
                    "no images or videos found in this folder" + ("" if recursive else " (not recursive)"),
                    path,
                )
        elif _GLOB_CHARS & set(item):
            root = _glob_root(item)
            files = sorted(
                p for p in map(Path, glob.glob(item, recursive=True))
                if p.is_file() and p.suffix.lower() in suffixes and not is_hidden(p)
                and (skip is None or not p.resolve().is_relative_to(skip))
            )  # fmt: skip
            if not files:
                raise InputError("no image or video file matches this pattern", item)
        else:
            raise InputError("no such file or folder", item)
        found += [(f, root, prefix) for f in files]
    keys = [f"{prefix}/{_key(p, root)}" if prefix else _key(p, root) for p, root, prefix in found]
    counts = Counter(keys)
    sources = []
    for (path, _, _), key in zip(found, keys, strict=True):
        if counts[key] > 1:
            key = f"{key}{path.suffix.lower()}"
        sources.append(Source(path=path, key=key, kind=_kind(path)))
    duplicates = [k for k, n in Counter(s.key for s in sources).items() if n > 1]
    if duplicates:
        raise InputError(
            f"several inputs map to the same output name {duplicates[0]!r}: pass them separately"
        )
    return sources


def count_frames(sources: Sequence[Source], every: int = 1) -> int:
    """Frames that `iter_frames` will yield (video lengths from the container, so an estimate)."""
    total = 0
    for src in sources:
        if src.kind == "image":
            total += 1
            continue
        cap = cv2.VideoCapture(str(src.path))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        total += max(1, -(-n // every))
    return total


def video_key(key: str, index: int) -> str:
    return f"{key}/{index:06d}"


def _video_frames(src: Source, every: int, wanted: Callable[[str], bool]) -> Iterator[Frame]:
    cap = cv2.VideoCapture(str(src.path))
    if not cap.isOpened():
        yield Frame(src.key, src.path, error=f"{src.path}: cannot open video (unknown format or corrupt)")
        return
    index = 0
    fps = cap.get(cv2.CAP_PROP_FPS) or None  # 0: unknown
    try:
        while True:
            key = video_key(src.key, index)
            if index % every == 0 and wanted(key):
                ok, bgr = cap.read()
                if not ok:
                    break
                rgb = np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.float32) / np.float32(255.0)
                time_s = round(index / fps, 6) if fps else None
                yield Frame(key, src.path, index, time_s, fps, image=rgb)
            elif not cap.grab():
                break
            index += 1
    finally:
        cap.release()
    if index == 0:
        yield Frame(src.key, src.path, error=f"{src.path}: no decodable frame in this video")


def iter_frames(
    sources: Sequence[Source], every: int = 1, wanted: Callable[[str], bool] = lambda key: True
) -> Iterator[Frame]:
    """Decoded frames in order; `wanted(key)` False skips a frame without decoding it (resume).

    Videos yield every `every`-th frame (indices 0, every, 2*every, ...)."""
    if every < 1:
        raise InputError(f"--every must be at least 1, got {every}")
    for src in sources:
        if src.kind == "video":
            yield from _video_frames(src, every, wanted)
        elif wanted(src.key):
            try:
                image, valid = read_image_valid(src.path)
                yield Frame(src.key, src.path, image=image, valid=valid)
            except CsbsrError as exc:
                yield Frame(src.key, src.path, error=str(exc))
            except (OSError, ValueError, cv2.error) as exc:  # a decoder failing in an unforeseen way
                yield Frame(src.key, src.path, error=f"{src.path}: {type(exc).__name__}: {exc}")
