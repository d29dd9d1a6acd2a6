"""What a drone photo's metadata says about its camera and height, for a ground sampling distance.

Read from the file's header only (no pixels decoded): the EXIF focal length (tag 0x920A, mm), the pixel
width as stored (before EXIF orientation: the sensor's long side) and the height above the take-off point
that DJI and Autel write into XMP as ``<prefix>:RelativeAltitude`` (metres; DJI ``drone-dji:``, Autel
``drone:`` or ``Camera:``, as an attribute or an element). The GPS altitude is above sea level, useless here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

_EXIF_IFD = 0x8769
_FOCAL_LENGTH = 0x920A
XMP_BYTES = 1 << 20  # XMP sits in the JPEG's APP1 segment (at most 64 KiB), near the start of the file
_RELATIVE_ALTITUDE = re.compile(
    rb"""[\w-]+:RelativeAltitude\s*(?:=\s*["']|>)\s*([-+]?\d+(?:\.\d*)?)""", re.IGNORECASE
)


@dataclass(frozen=True)
class CameraPose:
    """Metadata of one photo; None where the file does not say."""

    focal_length_mm: float | None
    relative_altitude_m: float | None
    width_px: int

    def gsd_mm(self, sensor_width_mm: float) -> float | None:
        """Millimetres per pixel on flat ground straight below (nadir view): sensor width x height /
        (focal length x pixel width); None without a focal length or a height above ground."""
        f, h = self.focal_length_mm, self.relative_altitude_m
        if f is None or h is None or f <= 0 or h <= 0:
            return None
        return sensor_width_mm * h * 1000.0 / (f * self.width_px)


def relative_altitude(head: bytes) -> float | None:
    """The first XMP RelativeAltitude in `head` (the file's first bytes), in metres."""
    match = _RELATIVE_ALTITUDE.search(head)
    return float(match[1]) if match else None


def read_pose(path: Path) -> CameraPose | None:
    """The photo's camera metadata, or None when the file is not an image PIL can open (e.g. a video)."""
    try:
        with Image.open(path) as im:
            width = im.size[0]
            focal = im.getexif().get_ifd(_EXIF_IFD).get(_FOCAL_LENGTH)
        with open(path, "rb") as fh:
            head = fh.read(XMP_BYTES)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return CameraPose(None if focal is None else float(focal), relative_altitude(head), width)
