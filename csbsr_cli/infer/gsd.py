"""Each frame's ground sampling distance (mm per input pixel) and where it came from.

In order, the first that gives a value: the sidecar CSV's row for the frame (by its key, else by its input
file's name), the frame's EXIF/XMP (focal length and height above take-off, given the sensor width),
the run-wide `--gsd`; else none (figures in pixels only). Sources are named "sidecar", "exif", "flag",
"none" in every frame's JSON, summary.csv and run.json.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..data.camera import read_pose
from ..errors import InputError

GsdSource = Literal["sidecar", "exif", "flag", "none"]
SIDECAR_COLUMNS = ("frame", "gsd_mm")
DECIMALS = 6


@dataclass(frozen=True)
class GsdOptions:
    """How GSDs are found; part of the resume fingerprint, since a frame's mm figures depend on it."""

    mm_per_px: float | None = None  # --gsd: every frame that gets no other value
    sidecar_sha256: str | None = None  # the sidecar CSV's content (its path may move)
    sensor_width_mm: float | None = None  # --sensor-width-mm: compute from EXIF/XMP

    @property
    def configured(self) -> bool:
        """Some frame may get a GSD: the CSVs carry mm columns (the same header in every shard)."""
        return any(v is not None for v in (self.mm_per_px, self.sidecar_sha256, self.sensor_width_mm))


def read_sidecar(path: Path) -> tuple[dict[str, float], str]:
    """The sidecar's {frame: gsd_mm} and the sha256 of its bytes; bad content is an InputError naming the
    file and line."""
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")  # spreadsheets add a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the GSD sidecar ({type(exc).__name__})", path) from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in SIDECAR_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"GSD sidecar needs the columns frame,gsd_mm (missing {', '.join(missing)})", path)
    table: dict[str, float] = {}
    for row in reader:
        line, frame = reader.line_num, (row["frame"] or "").strip()
        try:
            value = float(row["gsd_mm"] or "")
        except ValueError:
            value = math.nan
        if not frame or not math.isfinite(value) or value <= 0:
            raise InputError(f"line {line}: expected a frame and a positive gsd_mm, got {row!r}", path)
        if frame in table:
            raise InputError(f"line {line}: frame {frame!r} is listed twice", path)
        table[frame] = value
    if not table:
        raise InputError("GSD sidecar has no rows", path)
    return table, hashlib.sha256(data).hexdigest()


class GsdResolver:
    """Each frame's (gsd_mm, source), EXIF read once per file."""

    def __init__(self, options: GsdOptions, sidecar: Mapping[str, float] | None = None) -> None:
        self.options, self.sidecar = options, dict(sidecar or {})
        self._exif: dict[Path, float | None] = {}

    def _from_exif(self, source: Path, sensor_width_mm: float) -> float | None:
        if source not in self._exif:
            pose = read_pose(source)
            gsd = pose.gsd_mm(sensor_width_mm) if pose is not None else None
            self._exif[source] = None if gsd is None else round(gsd, DECIMALS)
        return self._exif[source]

    def __call__(self, key: str, source: Path) -> tuple[float | None, GsdSource]:
        for name in (key, source.name):
            if name in self.sidecar:
                return self.sidecar[name], "sidecar"
        if self.options.sensor_width_mm is not None:
            gsd = self._from_exif(source, self.options.sensor_width_mm)
            if gsd is not None:
                return gsd, "exif"
        if self.options.mm_per_px is not None:
            return self.options.mm_per_px, "flag"
        return None, "none"

    def unused(self, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """Sidecar rows that match none of the run's frames (likely typos)."""
        names = {n for r in records for n in (str(r.get("frame")), Path(str(r.get("source", ""))).name)}
        return sorted(set(self.sidecar) - names)


def gsd_report(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """run.json's account of each frame's GSD and its source, with the count per source."""
    frames = {
        str(r.get("frame")): {"gsd_mm": r.get("gsd_mm"), "source": r.get("gsd_source", "none")}
        for r in sorted(records, key=lambda r: str(r.get("frame")))
    }
    return {"sources": dict(Counter(f["source"] for f in frames.values())), "frames": frames}
