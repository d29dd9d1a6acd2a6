"""How well `csbsr segment` masks agree with YOLO crack boxes (a weak label: boxes, not pixels).

For each tile of a segment run and over all tiles:

- predicted crack pixels (mask/<key>.png, or prob/<key>.* binarised at --threshold);
- the fraction of them inside the union of the tile's boxes, with boxes scaled to the mask's grid;
- the chance level: the fraction of the tile's area the boxes cover, i.e. where predicted pixels scattered
  at random would land (over all tiles: weighted by each tile's predicted pixels, so it matches the pooled
  fraction); "x chance" is the fraction over the chance level;
- the fraction of boxes that contain at least one predicted pixel.

A tile without a .txt has no boxes (YOLO's convention for an image without objects). A fraction over zero
predicted pixels or zero boxes is undefined: printed as n/a, null in the JSON.

    csbsr segment sample_data/drone_tiles -o /tmp/yolo_run -q
    python bench/yolo_boxes.py /tmp/yolo_run sample_data/drone_tiles
    python bench/yolo_boxes.py /tmp/yolo_run sample_data/drone_tiles --threshold 0.45 --json yolo.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from csbsr_cli.data.boxes import read_yolo_boxes
from csbsr_cli.data.image_io import read_gray, read_mask

Box = tuple[float, float, float, float]  # normalised cx, cy, w, h


@dataclass(frozen=True)
class TileScore:
    tile: str
    width: int
    height: int
    has_box_file: bool
    boxes: int
    crack_pixels: int
    inside_pixels: int
    box_pixels: int  # pixels of the union of the boxes
    boxes_hit: int

    @property
    def inside_fraction(self) -> float | None:
        return self.inside_pixels / self.crack_pixels if self.crack_pixels else None

    @property
    def box_area_fraction(self) -> float:
        return self.box_pixels / (self.width * self.height)

    @property
    def boxes_hit_fraction(self) -> float | None:
        return self.boxes_hit / self.boxes if self.boxes else None

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "inside_fraction": self.inside_fraction,
            "box_area_fraction": self.box_area_fraction,
            "lift_over_chance": _ratio(self.inside_fraction, self.box_area_fraction),
            "boxes_hit_fraction": self.boxes_hit_fraction,
        }


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or not den else num / den


def read_boxes(path: Path) -> list[Box]:
    """The crack boxes (class 0) of a YOLO label file, normalised (cx, cy, w, h); the package's reader."""
    return [
        ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
        for x0, y0, x1, y1 in read_yolo_boxes(path, 1, 1).astype(float).tolist()
    ]


def box_slices(box: Box, height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the pixels whose centre lies in the box (edges rounded half up), clipped.

    Pixel i spans [i, i+1) on a grid of `width` pixels, so the box covers the same part of the tile
    whatever the mask's grid: on the x4 SR grid every edge lands on exactly 4x its input-grid value."""
    cx, cy, w, h = box

    def edges(centre: float, size: float, n: int) -> slice:
        lo, hi = (math.floor((centre - size / 2) * n + 0.5), math.floor((centre + size / 2) * n + 0.5))
        return slice(min(max(lo, 0), n), min(max(hi, 0), n))

    return edges(cy, h, height), edges(cx, w, width)


def score_tile(tile: str, mask: np.ndarray, boxes: list[Box] | None) -> TileScore:
    """Scores of one boolean HxW mask against its boxes (None: the tile has no box file)."""
    height, width = mask.shape
    union = np.zeros_like(mask, dtype=bool)
    hits = 0
    for box in boxes or []:
        rows, cols = box_slices(box, height, width)
        union[rows, cols] = True
        hits += bool(mask[rows, cols].any())
    return TileScore(
        tile=tile, width=width, height=height, has_box_file=boxes is not None, boxes=len(boxes or []),
        crack_pixels=int(mask.sum()), inside_pixels=int((mask & union).sum()), box_pixels=int(union.sum()),
        boxes_hit=hits,
    )  # fmt: skip


def overall(scores: list[TileScore]) -> dict:
    """Pooled figures: pixel and box counts summed over tiles before dividing."""
    crack = sum(s.crack_pixels for s in scores)
    inside = sum(s.inside_pixels for s in scores)
    boxes = sum(s.boxes for s in scores)
    area = sum(s.width * s.height for s in scores)
    inside_fraction = inside / crack if crack else None
    # Chance for the pooled fraction: each tile's predicted pixels placed at random within that tile.
    chance = sum(s.crack_pixels * s.box_area_fraction for s in scores) / crack if crack else None
    return {
        "tiles": len(scores),
        "tiles_without_box_file": sum(not s.has_box_file for s in scores),
        "tiles_without_crack_pixels": sum(s.crack_pixels == 0 for s in scores),
        "boxes": boxes,
        "crack_pixels": crack,
        "inside_pixels": inside,
        "inside_fraction": inside_fraction,
        "box_area_fraction": sum(s.box_pixels for s in scores) / area if area else None,
        "chance_inside_fraction": chance,
        "lift_over_chance": _ratio(inside_fraction, chance),
        "boxes_hit": sum(s.boxes_hit for s in scores),
        "boxes_hit_fraction": sum(s.boxes_hit for s in scores) / boxes if boxes else None,
    }


def mask_dirs(run: Path, kind: str) -> list[Path]:
    """run/<kind>, or the shard folders' (a sharded run), or `run` itself if it holds the files."""
    if (run / kind).is_dir():
        return [run / kind]
    shards = sorted(d / kind for d in run.glob("shard-*") if (d / kind).is_dir())
    return shards or [run]


def load_masks(run: Path, threshold: float | None) -> dict[str, np.ndarray]:
    """Boolean masks by key (path under mask/ without suffix): mask/ PNGs (> 127), or prob/ maps > T."""
    kind = "mask" if threshold is None else "prob"
    masks: dict[str, np.ndarray] = {}
    for folder in mask_dirs(run, kind):
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in (".png", ".tif", ".tiff") or path.name.startswith("."):
                continue
            mask = read_mask(path) if threshold is None else read_gray(path) > threshold
            masks[path.relative_to(folder).with_suffix("").as_posix()] = mask
    return masks


def score_run(run: Path, box_dir: Path, threshold: float | None = None) -> tuple[list[TileScore], list[str]]:
    """Scores of every tile of the run, and the box files that have no mask (frames missing from the run)."""
    masks = load_masks(run, threshold)
    scores = []
    for key, mask in masks.items():
        box_file = box_dir / f"{key}.txt"
        scores.append(score_tile(key, mask, read_boxes(box_file) if box_file.is_file() else None))
    unmatched = sorted(
        p.relative_to(box_dir).with_suffix("").as_posix()
        for p in box_dir.rglob("*.txt")
        if p.relative_to(box_dir).with_suffix("").as_posix() not in masks
    )
    return scores, unmatched


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def format_table(scores: list[TileScore], total: dict) -> str:
    header = ("tile", "grid", "crack px", "in boxes", "inside", "box area", "x chance", "boxes hit")
    rows = [
        (
            s.tile, f"{s.width}x{s.height}", str(s.crack_pixels), str(s.inside_pixels),
            _pct(s.inside_fraction), _pct(s.box_area_fraction),
            _times(_ratio(s.inside_fraction, s.box_area_fraction)),
            f"{s.boxes_hit}/{s.boxes}" if s.has_box_file else "no .txt",
        )
        for s in scores
    ]  # fmt: skip
    rows.append(
        (
            "overall", f"{total['tiles']} tiles", str(total["crack_pixels"]), str(total["inside_pixels"]),
            _pct(total["inside_fraction"]), _pct(total["box_area_fraction"]),
            _times(total["lift_over_chance"]), f"{total['boxes_hit']}/{total['boxes']}",
        )
    )  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    # first column (tile names) left-aligned, numbers right-aligned
    lines = ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)])
             for r in [header, *rows]]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    notes = [
        "inside: share of the predicted crack pixels inside the union of the boxes; box area: share of the "
        "tile the boxes cover (the chance level);",
        "x chance: inside / chance level (overall: the tiles' box areas weighted by their crack pixels).",
    ]
    if total["tiles_without_crack_pixels"]:
        notes.append(
            f"n/a: {total['tiles_without_crack_pixels']} tile(s) with no predicted crack pixel "
            "(inside fraction undefined)."
        )
    if total["tiles_without_box_file"]:
        notes.append(f"no .txt: {total['tiles_without_box_file']} tile(s) without a box file (no boxes).")
    return "\n".join(lines + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder of `csbsr segment` (its -o)")
    parser.add_argument("boxes", type=Path, help="folder of YOLO .txt files named like the input images")
    parser.add_argument(
        "--threshold",
        type=float,
        help="binarise prob/ at p > T instead of reading mask/ (probe a model away from its card threshold)",
    )
    parser.add_argument("--json", type=Path, help="also write the per-tile and overall figures here")
    args = parser.parse_args()
    if not args.boxes.is_dir():
        sys.exit(f"not a folder: {args.boxes}")
    scores, unmatched = score_run(args.run, args.boxes, args.threshold)
    if not scores:
        sys.exit(f"no masks found under {args.run} ({'prob' if args.threshold is not None else 'mask'}/)")
    total = overall(scores)
    source = "mask/" if args.threshold is None else f"prob/ > {args.threshold}"
    print(f"{args.run} ({source}) vs boxes in {args.boxes}")
    print(format_table(scores, total))
    if unmatched:
        print(f"{len(unmatched)} box file(s) without a mask in the run: {', '.join(unmatched[:5])}"
              + (" ..." if len(unmatched) > 5 else ""))  # fmt: skip
    if args.json:
        figures = {
            "run": str(args.run), "boxes": str(args.boxes), "source": source,
            "tiles": [s.as_dict() for s in scores], "overall": total, "box_files_without_mask": unmatched,
        }  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
