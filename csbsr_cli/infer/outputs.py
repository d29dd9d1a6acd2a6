"""Per-frame outputs of `csbsr segment`, written strip by strip, atomically, with a JSON completion marker.

Layout under the run directory (`<key>` mirrors the input's subfolders; video frames are `<video>/<index>`):

    mask/<key>.png      crack mask after the shape step, 8-bit 0/255, on the SR grid (or the input grid
                        with --mask-scale input)
    overlay/<key>.jpg   cracks tinted by severity over the input frame (or the SR frame), ids, a legend
    geojson/<key>.geojson  one LineString per crack polyline, in input-frame pixels
    prob/<key>.png      crack probability, 16-bit PNG (value / 65535), or prob/<key>.tiff float32 (asked)
    prob8/<key>.png     crack probability at input scale, 8-bit, max over each SR block (asked)
    sr/<key>.png        the x4 super-resolved frame (asked)
    kernel/<key>.png    the estimated blur kernel, scaled to its maximum and enlarged x8 (asked)
    json/<key>.json     figures, settings, output list and crack instances; written last, so it marks the
                        frame complete (always)
    summary.csv         one row per frame of the run (also frames completed by an earlier run)
    cracks.csv          one row per crack of the run, in input pixels (and mm with a GSD)
    coco.json           every crack of the run as a COCO instance (RLE mask at input-frame scale) (asked)
    video/<video>.mp4   each input video's overlays as an mp4 (asked; see .video)

`--outputs` chooses the kinds; the defaults (DEFAULT_OUTPUTS) keep a 1280x720 frame under 2 MB.

Every file and column is documented in docs/outputs.md.

Frames are as large as the SR grid (a 1280x720 frame gives 5120x2880), so outputs are encoded while the
stitcher hands over strips (the mask waits for the last strip: the shape step needs whole pieces; one bool
per SR pixel): PNGs through a streaming encoder (OpenCV and Pillow need the whole image)
and float TIFFs through tifffile fed from a queue. Every file is written to a hidden `.part` file beside
its destination and renamed when the frame is complete; an aborted frame removes its part files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import queue
import re
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import tifffile

from ..data.image_io import quantise, write_png
from ..errors import InputError
from ..report.severity import DEFAULT_THRESHOLDS_MM, UNKNOWN, severity
from ..utils.atomic import atomic_path, write_text_atomic
from ..utils.folders import LOCK_NAME, ensure_writable
from .annotations import coco_document, coco_fields, frame_geojson
from .gsd import GsdOptions
from .instances import FIGURES, Crack, find_cracks, with_mm
from .measure import CrackMeter
from .overlay import render
from .shape import ShapeRule, clean_mask, pieces

MaskScale = Literal["sr", "input"]
ProbFormat = Literal["png16", "tiff"]
OverlayOn = Literal["input", "sr"]
FRAME_OUTPUTS = ("mask", "overlay", "geojson", "prob", "prob8", "sr", "kernel", "json")  # files per frame
RUN_OUTPUTS = ("coco", "video")  # files per run
OUTPUTS = (*FRAME_OUTPUTS, *RUN_OUTPUTS)
DEFAULT_OUTPUTS = ("mask", "overlay", "json")  # the JSON holds the crack list and polylines already
SUFFIXES = {"mask": ".png", "overlay": ".jpg", "geojson": ".geojson", "prob8": ".png", "sr": ".png",
            "kernel": ".png", "json": ".json"}  # fmt: skip
KERNEL_ZOOM = 8
BAND_ROWS = 64  # SR rows encoded at a time
COMPACT = (",", ":")  # JSON separators without spaces
PNG_LEVEL = 3  # zlib level: 3 is ~2x faster than 6 for ~10 % larger files on probability maps
SUMMARY_FIELDS = (
    "frame", "source", "video_frame", "time_s", "fps", "status", "crack_pixels", "crack_area_fraction",
    "length_px", "max_width_px", "mean_width_px", "error",
)  # fmt: skip
MM_FIELDS = ("length_mm", "max_width_mm", "mean_width_mm")
GSD_FIELDS = ("gsd_mm", "gsd_source")  # summary.csv, beside MM_FIELDS
BBOX_FIELDS = ("bbox_x_px_input", "bbox_y_px_input", "bbox_width_px_input", "bbox_height_px_input")
VIDEO_FIELDS = ("time_s", "fps")  # from the frame's record (empty for images)
CRACK_FIELDS = ("frame", *VIDEO_FIELDS, "crack_id", *FIGURES, *BBOX_FIELDS)
CRACK_MM_FIELDS = (*(mm for mm, _ in FIGURES.values()), "severity")


@dataclass(frozen=True)
class OutputOptions:
    """What to write per frame; together with the model settings it forms the resume fingerprint."""

    threshold: float
    shape: ShapeRule = ShapeRule()  # the shape step, in pixels of the input frame
    mask_scale: MaskScale = "sr"
    prob_format: ProbFormat = "png16"  # of the "prob" output
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS  # of OUTPUTS, in that order; "json" always
    overlay_on: OverlayOn = "input"
    gsd: GsdOptions = GsdOptions()  # where each frame's mm per pixel comes from
    severity_mm: tuple[float, ...] = DEFAULT_THRESHOLDS_MM  # max-width limits between severity classes

    def wants(self, kind: str) -> bool:
        return kind in self.outputs

    @property
    def sr_overlay(self) -> bool:
        """The overlay is drawn on the SR frame (which is then kept whole for it)."""
        return self.wants("overlay") and self.overlay_on == "sr"

    @property
    def needs_sr(self) -> bool:
        """The model's SR image is needed: saved, or drawn on."""
        return self.wants("sr") or self.sr_overlay

    def paths(self, out_dir: Path, key: str) -> dict[str, Path]:
        """Every output file of frame `key` (json last: it is written last)."""
        suffixes = {**SUFFIXES, "prob": ".tiff" if self.prob_format == "tiff" else ".png"}
        kinds = [k for k in FRAME_OUTPUTS if k in self.outputs]
        return {kind: out_dir / kind / f"{key}{suffixes[kind]}" for kind in kinds}


def parse_outputs(text: str) -> tuple[str, ...]:
    """`"mask,prob"` -> ("mask", "prob", "json"): known kinds in OUTPUTS order, json added (it marks a
    frame complete)."""
    asked = {k.strip() for k in text.split(",") if k.strip()}
    unknown = sorted(asked - set(OUTPUTS))
    if unknown:
        raise InputError(f"--outputs: unknown output {unknown[0]!r} (choose from {','.join(OUTPUTS)})")
    if "video" in asked and "overlay" not in asked:
        raise InputError("--outputs: video is made of the overlays: add overlay")
    return tuple(k for k in OUTPUTS if k in asked | {"json"})


def _png_chunk(fh: io.BufferedWriter, tag: bytes, data: bytes) -> None:
    fh.write(
        struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    )


class PngStream:
    """Streaming PNG encoder (8/16-bit grey or RGB): rows in, constant memory.

    Every row uses PNG's "Up" filter (difference to the row above), which compresses smooth probability
    maps about twice as well as no filter and needs only the previous row.
    """

    def __init__(self, path: Path, height: int, width: int, channels: int, bits: int) -> None:
        if channels not in (1, 3) or bits not in (8, 16):
            raise ValueError(f"PNG of {channels} channels and {bits} bits is not supported")
        self.height, self.width, self.channels, self.bits = height, width, channels, bits
        self._fh: io.BufferedWriter | None = open(path, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._fh.write(b"\x89PNG\r\n\x1a\n")
        ihdr = struct.pack(">IIBBBBB", width, height, bits, 0 if channels == 1 else 2, 0, 0, 0)
        _png_chunk(self._fh, b"IHDR", ihdr)
        self._z = zlib.compressobj(PNG_LEVEL)
        self._above = np.zeros(width * channels * bits // 8, np.uint8)
        self._rows = 0

    def write(self, rows: np.ndarray) -> None:
        """(h, W) or (h, W, C) rows of uint8 (8-bit) or uint16 (16-bit), top to bottom."""
        dtype = np.dtype(np.uint8) if self.bits == 8 else np.dtype(">u2")
        if rows.shape[1:] != ((self.width,) if self.channels == 1 else (self.width, self.channels)):
            raise ValueError(f"rows of shape {rows.shape} do not fit a {self.width}x{self.channels} PNG")
        raw = np.ascontiguousarray(rows, dtype=dtype).view(np.uint8).reshape(rows.shape[0], -1)
        out = np.empty((raw.shape[0], raw.shape[1] + 1), np.uint8)
        out[:, 0] = 2  # filter type Up
        np.subtract(raw[:1], self._above, out=out[:1, 1:])
        np.subtract(raw[1:], raw[:-1], out=out[1:, 1:])
        self._above = raw[-1].copy()
        self._rows += raw.shape[0]
        self._emit(self._z.compress(out.tobytes()))

    def _emit(self, data: bytes) -> None:
        if data and self._fh is not None:
            _png_chunk(self._fh, b"IDAT", data)

    def close(self) -> None:
        if self._rows != self.height:
            raise ValueError(f"PNG got {self._rows} of {self.height} rows")
        assert self._fh is not None
        self._emit(self._z.flush())
        _png_chunk(self._fh, b"IEND", b"")
        self._fh.close()
        self._fh = None

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class _Aborted(Exception):
    pass


class TiffStream:
    """Float32 TIFF written from row strips: tifffile pulls tiles of `BAND` rows from an iterator, so it runs
    in its own thread fed through a small queue (memory: a few bands of one frame width)."""

    BAND = 64

    def __init__(self, path: Path, height: int, width: int) -> None:
        self.height, self.width = height, width
        self._queue: queue.Queue[np.ndarray | None | _Aborted] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        tile = (self.BAND, -(-width // 16) * 16)  # TIFF tiles are multiples of 16; edges are zero-padded
        self._thread = threading.Thread(target=self._run, args=(path, tile), name="tiff-writer", daemon=True)
        self._thread.start()

    def _bands(self) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        count = 0
        while True:
            item = self._queue.get()
            if isinstance(item, _Aborted):
                raise item
            if item is not None:
                pending.append(item)
                count += item.shape[0]
            while count >= self.BAND or (item is None and count):
                rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
                yield rows[: self.BAND]
                pending, count = ([rows[self.BAND :]], count - self.BAND) if count > self.BAND else ([], 0)
            if item is None:
                return

    def _run(self, path: Path, tile: tuple[int, int]) -> None:
        try:
            tifffile.imwrite(
                path, data=self._bands(), shape=(self.height, self.width), dtype=np.float32,
                compression="zlib", tile=tile,
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - handed to the writing thread in close()
            self._error = exc

    def write(self, rows: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(np.ascontiguousarray(rows, dtype=np.float32))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_Aborted())
            self._thread.join()


def record_json(record: Mapping[str, Any]) -> str:
    """Indented JSON, except the kernel and each crack, one compact line each instead of hundreds (a frame
    may list thousands of cracks)."""
    cracks = record.get("cracks") or []
    compact = {"@kernel@": record.get("kernel"), **{f"@crack {i}@": c for i, c in enumerate(cracks)}}
    shown = {**record, "kernel": "@kernel@", **({"cracks": list(compact)[1:]} if cracks else {})}
    text = json.dumps(shown, indent=1)

    def one_line(match: re.Match[str]) -> str:
        return json.dumps(compact[match[1]], separators=COMPACT)

    return re.sub(r'"(@kernel@|@crack \d+@)"', one_line, text) + "\n"


def fingerprint_matches(record: Mapping[str, Any], out_dir: Path, settings: Mapping[str, Any]) -> bool:
    """A frame's JSON says it is complete for these settings and all its files are there."""
    if record.get("status") != "ok" or record.get("settings") != json.loads(json.dumps(settings)):
        return False
    return all((out_dir / rel).is_file() for rel in record.get("outputs", {}).values())


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def completed_record(
    out_dir: Path, key: str, options: OutputOptions, settings: Mapping[str, Any]
) -> dict | None:
    """The JSON record of frame `key` if its outputs are complete for `settings` (resume), else None."""
    record = read_record(options.paths(out_dir, key)["json"])
    return record if record is not None and fingerprint_matches(record, out_dir, settings) else None


class FrameWriter:
    """All outputs of one frame: strips in (SR grid), files committed together by `finish`."""

    def __init__(
        self,
        out_dir: Path,
        key: str,
        options: OutputOptions,
        image: np.ndarray,
        scale: int,
        valid: np.ndarray | None = None,
    ) -> None:
        """`image`: the input frame as RGB uint8 (for the overlay); `valid`: its pixels with data (alpha not
        0), or None when all are."""
        self.out_dir, self.key, self.options, self.image, self.scale = out_dir, key, options, image, scale
        self.valid = valid
        h, w = image.shape[:2]
        self.sr_h, self.sr_w = h * scale, w * scale
        self.paths = options.paths(out_dir, key)
        self._stack = contextlib.ExitStack()
        self._streams: list[PngStream | TiffStream] = []
        self.meter = CrackMeter(self.sr_h, self.sr_w)
        # The thresholded SR mask is kept whole: the shape step needs every piece complete.
        self.crack = np.zeros((self.sr_h, self.sr_w), bool)
        want = options.wants
        # The SR frame kept whole only to draw the overlay on it.
        self.sr_image = np.zeros((self.sr_h, self.sr_w, 3), np.uint8) if options.sr_overlay else None
        try:
            self.prob: PngStream | TiffStream | None = None
            if want("prob") and options.prob_format == "tiff":
                self.prob = self._stream(TiffStream, "prob", self.sr_h, self.sr_w)
            elif want("prob"):
                self.prob = self._stream(PngStream, "prob", self.sr_h, self.sr_w, 1, 16)
            self.prob8 = self._stream(PngStream, "prob8", h, w, 1, 8) if want("prob8") else None
            sr_mask = want("mask") and options.mask_scale == "sr"
            self.mask = self._stream(PngStream, "mask", self.sr_h, self.sr_w, 1, 8) if sr_mask else None
            self.sr = self._stream(PngStream, "sr", self.sr_h, self.sr_w, 3, 8) if want("sr") else None
        except BaseException:
            self.abort()
            raise

    def _stream(self, cls: type, kind: str, *args: int) -> Any:
        part = self._stack.enter_context(atomic_path(self.paths[kind]))
        stream = cls(part, *args)
        self._streams.append(stream)
        return stream

    def write(self, y: int, strips: Mapping[str, np.ndarray]) -> None:
        """SR rows [y, y + h): strips["prob"] (1, h, W) and, when `options.needs_sr`, strips["sr"] (3, h, W).

        Encoded in bands of about BAND_ROWS rows, so the temporaries stay small on wide frames."""
        s, h = self.scale, strips["prob"].shape[1]
        band = max(s, BAND_ROWS // s * s)  # a multiple of the scale: bands map to whole input rows
        for top in range(0, h, band):
            rows = slice(top, min(top + band, h))
            sr = strips["sr"][:, rows] if "sr" in strips else None
            self._write_band(y + top, strips["prob"][0, rows], sr)

    def _write_band(self, y: int, prob: np.ndarray, sr: np.ndarray | None) -> None:
        prob = np.clip(prob, 0.0, 1.0)
        if self.valid is not None:  # no-data pixels: probability 0, so never a crack nor counted
            s = self.scale
            rows = self.valid[y // s : (y + prob.shape[0]) // s]
            prob = np.where(rows.repeat(s, axis=0).repeat(s, axis=1), prob, np.float32(0))
        crack = prob > self.options.threshold  # strict, as the metrics
        if isinstance(self.prob, TiffStream):
            self.prob.write(prob)
        elif self.prob is not None:
            self.prob.write(quantise(prob, np.uint16))
        if self.prob8 is not None:  # max over each s x s block: prob8 > threshold is the input-scale mask
            s = self.scale
            self.prob8.write(quantise(prob.reshape(prob.shape[0] // s, s, -1, s).max(axis=(1, 3)), np.uint8))
        self.crack[y : y + crack.shape[0]] = crack
        if sr is not None:
            rgb = quantise(sr.transpose(1, 2, 0), np.uint8)
            if self.sr is not None:
                self.sr.write(rgb)
            if self.sr_image is not None:
                self.sr_image[y : y + rgb.shape[0]] = rgb

    def _overlay(
        self, cleaned: np.ndarray, cracks: list[Crack], units: list[dict[str, Any]], gsd: float | None
    ) -> bytes:
        """The overlay on the input frame (crack ids from each crack's input-scale mask) or the SR frame
        (ids from the SR mask's pieces, numbered as the cracks)."""
        listed = [{**c.as_dict(), **u} for c, u in zip(cracks, units, strict=True)]
        if self.sr_image is not None:
            ids = pieces(cleaned)[1]
            return render(self.sr_image, ids, listed, self.scale, self.options.severity_mm, gsd)
        ids = np.zeros(self.image.shape[:2], np.int32)
        for crack in cracks:
            x, y, w, h = crack.bbox_px_input
            ids[y : y + h, x : x + w][crack.mask_px_input] = crack.crack_id
        return render(self.image, ids, listed, 1, self.options.severity_mm, gsd)

    def finish(self, kernel: np.ndarray, record: dict[str, Any]) -> dict[str, Any]:
        """Close the streams, write the small outputs, rename everything into place, then the JSON."""
        cleaned, removed = clean_mask(self.crack, self.options.shape.scaled(self.scale))
        s = self.scale
        for top in range(0, self.sr_h, BAND_ROWS):
            rows = cleaned[top : top + BAND_ROWS]
            if self.mask is not None:
                self.mask.write(rows.view(np.uint8) * np.uint8(255))
            self.meter.feed(rows)
        for stream in self._streams:
            stream.close()
        measures = self.meter.result()
        cracks = find_cracks(cleaned, s)
        gsd = record.get("gsd_mm")
        units = [self._units(crack.as_dict(), gsd) for crack in cracks]
        if "overlay" in self.paths:
            overlay_part = self._stack.enter_context(atomic_path(self.paths["overlay"]))
            overlay_part.write_bytes(self._overlay(cleaned, cracks, units, gsd))
        if "geojson" in self.paths:
            geojson = frame_geojson(self.key, (self.image.shape[1], self.image.shape[0]), cracks, units)
            geojson_part = self._stack.enter_context(atomic_path(self.paths["geojson"]))
            geojson_part.write_text(json.dumps(geojson, separators=COMPACT) + "\n", encoding="utf-8")
        if "mask" in self.paths and self.options.mask_scale == "input":
            mask_part = self._stack.enter_context(atomic_path(self.paths["mask"]))
            small = cleaned.reshape(self.sr_h // s, s, -1, s).any(axis=(1, 3))  # any crack pixel in the block
            write_png(mask_part, small.astype(np.uint8) * np.uint8(255))
        if "kernel" in self.paths:
            peak = float(kernel.max())
            vis = kernel / peak if peak > 0 else kernel
            vis = cv2.resize(vis, None, fx=KERNEL_ZOOM, fy=KERNEL_ZOOM, interpolation=cv2.INTER_NEAREST)
            kernel_part = self._stack.enter_context(atomic_path(self.paths["kernel"]))
            write_png(kernel_part, vis)
        self._stack.close()  # all renamed into place
        coco = self.options.wants("coco")  # coco.json is (re)built from the JSONs' RLE masks
        record = {
            **record,
            "status": "ok",
            "sr_size": [self.sr_w, self.sr_h],
            "threshold": self.options.threshold,
            "shape_step": {
                "min_length_px_input": self.options.shape.min_length,
                "min_elongation": self.options.shape.min_elongation,
                **removed.as_dict(),
            },
            **measures.as_dict(),
            "kernel": np.round(kernel.astype(np.float64), 7).tolist(),
            "outputs": {
                k: p.relative_to(self.out_dir).as_posix() for k, p in self.paths.items() if k != "json"
            },
            "crack_count": len(cracks),
            "cracks": [
                {**crack.as_dict(), **unit, **(coco_fields(crack, self.image.shape[:2]) if coco else {})}
                for crack, unit in zip(cracks, units, strict=True)
            ],
        }
        write_text_atomic(self.paths["json"], record_json(record))
        return record

    def _units(self, crack: dict[str, Any], gsd_mm: float | None) -> dict[str, Any]:
        """A crack's figures in mm and its severity class, given the frame's GSD (none without one)."""
        if gsd_mm is None:
            return {}
        mm = {k: v for k, v in with_mm(crack, gsd_mm).items() if k not in crack}
        return {**mm, "severity": severity(mm["max_width_mm"], self.options.severity_mm)}

    def abort(self) -> None:
        """Remove every part file of this frame (Ctrl-C or a failure): no partial output is left."""
        for stream in self._streams:
            with contextlib.suppress(Exception):
                stream.abort()
        with contextlib.suppress(_Aborted):
            with self._stack:
                raise _Aborted


def measures_row(record: Mapping[str, Any], scale: int, mm: bool) -> dict[str, Any]:
    """One summary.csv row; with `mm`, the frame's GSD, its source and, given a GSD, lengths in mm."""
    row = {field: record.get(field, "") for field in SUMMARY_FIELDS}
    gsd_mm = record.get("gsd_mm")
    if mm:
        row.update(gsd_mm="" if gsd_mm is None else gsd_mm, gsd_source=record.get("gsd_source", ""))
    if mm and gsd_mm is not None:
        for px_field, mm_field in zip(("length_px", "max_width_px", "mean_width_px"), MM_FIELDS, strict=True):
            value = record.get(px_field)
            row[mm_field] = "" if value in (None, "") else round(float(value) * gsd_mm / scale, 3)
    return row


def _write_csv(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _by_frame(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(records, key=lambda r: str(r.get("frame", "")))


def write_summary(path: Path, records: Sequence[Mapping[str, Any]], scale: int, mm: bool) -> None:
    """summary.csv; `mm`: the run looks for GSDs, so it has the GSD and mm columns (empty without one)."""
    fields = list(SUMMARY_FIELDS) + (list(GSD_FIELDS + MM_FIELDS) if mm else [])
    _write_csv(path, fields, (measures_row(record, scale, mm) for record in _by_frame(records)))


def crack_rows(record: Mapping[str, Any], mm: bool) -> Iterator[dict[str, Any]]:
    """The cracks.csv rows of one frame's record (none for a failed frame); mm figures and severity as the
    frame's JSON has them (from its own GSD)."""
    fields = (*CRACK_FIELDS, *CRACK_MM_FIELDS) if mm else CRACK_FIELDS
    for crack in record.get("cracks") or []:
        row = {k: crack[k] for k in fields if k in crack}
        if mm:
            row.setdefault("severity", UNKNOWN)
        video = {k: record.get(k, "") for k in VIDEO_FIELDS}
        yield {
            **row,
            "frame": record["frame"],
            **video,
            **dict(zip(BBOX_FIELDS, crack["bbox_px_input"], strict=True)),
        }


def write_cracks(path: Path, records: Sequence[Mapping[str, Any]], mm: bool) -> None:
    """cracks.csv: one row per crack of every frame of the run (docs/outputs.md lists the columns)."""
    fields = list(CRACK_FIELDS) + (list(CRACK_MM_FIELDS) if mm else [])
    _write_csv(path, fields, (row for record in _by_frame(records) for row in crack_rows(record, mm)))


def write_coco(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """coco.json: every crack of the run as a COCO instance with an RLE mask at input-frame scale."""
    write_text_atomic(path, json.dumps(coco_document(records), separators=COMPACT) + "\n")


def check_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Never mix runs silently: a non-empty output folder needs --resume or --overwrite; one that cannot
    be written is refused before any work (exit code 2)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output path exists and is not a folder", out_dir)
    ensure_writable(out_dir)
    if any(p.name != LOCK_NAME for p in out_dir.iterdir()) and not (resume or overwrite):
        raise InputError(
            "output folder is not empty: add --resume to complete that run, --overwrite to replace its "
            "files, or choose another -o/--name",
            out_dir,
        )
