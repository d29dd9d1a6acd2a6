"""The annotated video (`--outputs ...,video`): each input video's overlays back as an mp4.

Built at the end of a run from the frames' records and overlay JPEGs (like coco.json from the JSONs), so
a resumed run's video holds every frame. One video frame per segmented frame (every `--every`-th of the
stream) at fps / every, so a frame's time in the output is its `time_s` in the input. A frame that
failed repeats the one before it (the first good one at the start), keeping later frames on time.

OpenCV's VideoWriter with the MPEG-4 Part 2 codec (fourcc mp4v): the OpenCV wheel's FFmpeg here has no
H.264 encoder (avc1 fails to open). VLC and FFmpeg-based players play it; browsers want H.264.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import cv2

from ..utils.atomic import atomic_path

FOURCC = "mp4v"


def _videos(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records of video frames by their video's key (`<video key>/<index>` -> `<video key>`)."""
    out: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("video_frame") is not None:
            out[str(PurePosixPath(str(record["frame"])).parent)].append(record)
    return out


def _write(path: Path, overlays: list[Path | None], fps: float) -> int:
    """Encode `overlays` (None: repeat the previous frame) into `path`; returns the frames written."""
    frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) if p is not None else None for p in overlays]
    first = next(f for f in frames if f is not None)
    height, width = first.shape[:2]
    with atomic_path(path) as part:
        writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write {FOURCC} video to {path}")
        previous = first
        for frame in frames:
            previous = frame if frame is not None and frame.shape[:2] == (height, width) else previous
            writer.write(previous)
        writer.release()
    return len(frames)


def write_videos(out_dir: Path, records: Sequence[Mapping[str, Any]], every: int) -> dict[str, int]:
    """video/<video key>.mp4 for every input video with an overlay; returns {path: frames written}."""
    written = {}
    for key, frames in sorted(_videos(records).items()):
        by_index = {int(r["video_frame"]): r for r in frames}
        ok = {i: r for i, r in by_index.items() if "overlay" in (r.get("outputs") or {})}  # failed: none
        fps = next((float(r["fps"]) for r in frames if r.get("fps")), None)
        if not ok or fps is None:
            continue
        indices = range(min(by_index), max(by_index) + 1, every)
        overlays = [out_dir / ok[i]["outputs"]["overlay"] if i in ok else None for i in indices]
        path = out_dir / "video" / f"{key}.mp4"
        written[path.relative_to(out_dir).as_posix()] = _write(path, overlays, fps / every)
    return written
