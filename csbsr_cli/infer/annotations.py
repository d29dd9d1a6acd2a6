"""Crack instances as files other tools read: GeoJSON per frame (GIS, CAD) and a COCO instance file per
run (CVAT, Label Studio: masks to correct).

COCO masks are compressed RLE at input-frame scale, encoded here from each crack's bbox crop (pycocotools
would need a full-frame array per crack; the tests check this encoder against it).

Coordinates are pixels of the input frame (x right, y down, see :mod:`.instances`), not the WGS84
longitudes and latitudes RFC 7946 assumes: a drone frame carries no georeference here. Each file says so
in a foreign member, ``"csbsr"``, which GeoJSON readers ignore.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from .instances import FIGURES, Crack

COORDINATES = "pixels of the input frame: x right, y down, origin at its top-left corner"


def _geometry(line: list[tuple[float, float]]) -> dict[str, Any]:
    """A LineString, or a Point for a one-pixel skeleton (a LineString needs two positions)."""
    if len(line) == 1:
        return {"type": "Point", "coordinates": list(line[0])}
    return {"type": "LineString", "coordinates": [list(p) for p in line]}


def frame_geojson(
    frame: str,
    size: tuple[int, int],
    cracks: list[Crack],
    units: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A FeatureCollection of frame `frame` (`size` = width, height in input pixels): one feature per
    polyline of every crack, with the crack's measures (`units`: per crack, its mm figures and severity
    when the frame has a GSD) and that polyline's width profile as properties."""
    features = []
    for crack, unit in zip(cracks, units or [{}] * len(cracks), strict=True):
        figures = {**{name: getattr(crack, name) for name in FIGURES}, **unit}
        profiles = crack.width_profiles_px_input
        for index, (line, profile) in enumerate(zip(crack.polylines, profiles, strict=True)):
            properties = {
                "frame": frame,
                "crack_id": crack.crack_id,
                "polyline": index,
                **figures,
                "bbox_px_input": list(crack.bbox_px_input),
                "width_profile_px_input": profile,
            }
            features.append({"type": "Feature", "geometry": _geometry(line), "properties": properties})
    return {
        "type": "FeatureCollection",
        "csbsr": {"frame": frame, "size_px_input": list(size), "coordinates": COORDINATES},
        "features": features,
    }


def rle_counts(crop: np.ndarray, origin: tuple[int, int], size: tuple[int, int]) -> list[int]:
    """COCO's run lengths (column-major, zeros first) of a frame of `size` (height, width) that is empty but
    for the bool `crop` placed with its top-left corner at `origin` (x, y)."""
    cols, rows = np.nonzero(crop.T)  # column-major order
    if cols.size == 0:
        return [size[0] * size[1]]
    idx = (cols + origin[0]) * size[0] + rows + origin[1]
    breaks = np.nonzero(np.diff(idx) != 1)[0]
    starts = np.concatenate([idx[:1], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], idx[-1:]]) + 1
    runs = np.empty(2 * starts.size + 1, np.int64)
    runs[0] = starts[0]
    runs[1::2] = ends - starts
    runs[2:-1:2] = starts[1:] - ends[:-1]
    runs[-1] = size[0] * size[1] - ends[-1]
    return runs[:-1].tolist() if runs[-1] == 0 else runs.tolist()


def rle_string(counts: Sequence[int]) -> str:
    """COCO's compressed RLE text (pycocotools' rleToString): from the third run on, each count minus the
    one two before, then 5 bits per character, offset by 48, bit 6 set while more follow."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr(c + 48 + (0x20 if more else 0)))
    return "".join(out)


def coco_fields(crack: Crack, size: tuple[int, int]) -> dict[str, Any]:
    """What the COCO file needs of a crack, kept in the frame's record: its input-scale mask as compressed
    RLE in a frame of `size` (height, width) and that mask's pixel count (COCO's area)."""
    counts = rle_counts(crack.mask_px_input, crack.bbox_px_input[:2], size)
    rle = {"size": list(size), "counts": rle_string(counts)}
    return {"rle": rle, "mask_pixels_input": int(np.count_nonzero(crack.mask_px_input))}


def _file_name(record: Mapping[str, Any]) -> str:
    """The frame's key with its image's extension (video frames: .png)."""
    suffix = PurePosixPath(str(record.get("source", ""))).suffix if record.get("video_frame") is None else ""
    return str(record["frame"]) + (suffix or ".png")


def coco_document(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One COCO instance document for the completed frames of a run, from their JSON records (each crack
    carries its ``rle``); images and annotations numbered from 1 in frame order."""
    images, annotations = [], []
    for record in sorted(records, key=lambda r: str(r.get("frame", ""))):
        if record.get("status") != "ok":
            continue
        image_id = len(images) + 1
        width, height = record["input_size"]
        images.append({"id": image_id, "file_name": _file_name(record), "width": width, "height": height})
        for crack in record.get("cracks") or []:
            annotations.append(
                {
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                    "segmentation": crack["rle"], "area": crack["mask_pixels_input"],
                    "bbox": crack["bbox_px_input"], "crack_id": crack["crack_id"],
                }
            )  # fmt: skip
    return {
        "info": {"description": "crack instances from csbsr segment", "coordinates": COORDINATES},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "crack", "supercategory": "defect"}],
    }
