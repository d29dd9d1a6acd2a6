"""Crack instances as files other tools read: GeoJSON per frame (GIS, CAD).

Coordinates are pixels of the input frame (x right, y down, see :mod:`.instances`), not the WGS84
longitudes and latitudes RFC 7946 assumes: a drone frame carries no georeference here. Each file says so
in a foreign member, ``"csbsr"``, which GeoJSON readers ignore.
"""

from __future__ import annotations

from typing import Any

from .instances import FIGURES, Crack

COORDINATES = "pixels of the input frame: x right, y down, origin at its top-left corner"


def _geometry(line: list[tuple[float, float]]) -> dict[str, Any]:
    """A LineString, or a Point for a one-pixel skeleton (a LineString needs two positions)."""
    if len(line) == 1:
        return {"type": "Point", "coordinates": list(line[0])}
    return {"type": "LineString", "coordinates": [list(p) for p in line]}


def frame_geojson(frame: str, size: tuple[int, int], cracks: list[Crack]) -> dict[str, Any]:
    """A FeatureCollection of frame `frame` (`size` = width, height in input pixels): one feature per
    polyline of every crack, with the crack's measures and that polyline's width profile as properties."""
    features = []
    for crack in cracks:
        figures = {name: getattr(crack, name) for name in FIGURES}
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
