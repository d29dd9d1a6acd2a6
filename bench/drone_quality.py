"""Crack masks on real drone frames, scored against YOLO crack boxes: whole windows, not lone tiles.

A box-labelled tile folder (default: the drone val split) holds 256 px tiles ``<frame>_<row>_<col>``.
Each frame's tiles are stitched into 1280x768 windows (5 x 3 tiles, from the top-left; partial windows at
the right and bottom are left out) and the windows are segmented by ``csbsr segment`` as real frames are,
once, raw (shape step off, probability maps kept). Every threshold / shape rule is then scored offline:

- box precision: marked pixels inside crack boxes / all marked pixels;
- box recall: boxes whose long side is covered >= 50 % by the marked pixels inside the box projected on it;
- outside rate: marked pixels outside every box / all pixels outside boxes;
- free windows marked: box-free windows with any marked piece / all box-free windows.

Scores are on the SR grid (boxes x4), pooled over all windows (metrics/boxes.py).

    python bench/drone_quality.py --model csbsr-lite --out /tmp/dq-lite --json dq.json
    python bench/drone_quality.py --model RUN_OR_CARD --out /tmp/dq-new --rule card --rule none \\
        --rule 16:4 --evaluate-json /tmp/eval-new/metrics.json
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from csbsr_cli.data.boxes import read_yolo_boxes
from csbsr_cli.data.image_io import image_size, list_images, read_gray, read_image, write_png
from csbsr_cli.infer.shape import ShapeRule, clean_mask
from csbsr_cli.metrics.boxes import BoxCounts
from csbsr_cli.metrics.segmentation import N_THRESHOLDS, threshold_index
from csbsr_cli.registry import Registry

DEFAULT_TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "drone" / "val"
TILE_NAME = re.compile(r"^(?P<frame>.+)_(?P<row>\d+)_(?P<col>\d+)$")
WINDOW_TILES = (3, 5)  # rows, columns: 768 x 1280 px of 256 px tiles
SCALE = 4


def windows_of(tiles: Path) -> dict[str, tuple[list[list[Path]], np.ndarray]]:
    """{window name: (tile grid, boxes (n, 4) in window pixels)} for every full window of every frame."""
    grid: dict[str, dict[tuple[int, int], Path]] = defaultdict(dict)
    for path in list_images(tiles / "images"):
        match = TILE_NAME.match(path.stem)
        if match:
            grid[match["frame"]][int(match["row"]), int(match["col"])] = path
    out = {}
    rows, cols = WINDOW_TILES
    for frame, cells in sorted(grid.items()):
        n_rows = max(r for r, _ in cells) + 1
        n_cols = max(c for _, c in cells) + 1
        for wr in range(n_rows // rows):
            for wc in range(n_cols // cols):
                paths, boxes = [], []
                for r in range(rows):
                    row = []
                    for c in range(cols):
                        path = cells[wr * rows + r, wc * cols + c]
                        h, w = image_size(path)
                        found = read_yolo_boxes(tiles / "labels" / f"{path.stem}.txt", w, h)
                        boxes.append(found + np.array([c * w, r * h, c * w, r * h], np.float32))
                        row.append(path)
                    paths.append(row)
                out[f"{frame}_w{wr}_{wc}"] = (paths, np.concatenate(boxes))
    return out


def stitch(paths: list[list[Path]]) -> np.ndarray:
    return np.concatenate([np.concatenate([read_image(p) for p in row], axis=1) for row in paths], axis=0)


def segment_windows(windows: dict, model: str, models_dirs: list[str], out: Path) -> Path:
    """Write the windows as PNGs and segment them raw with `csbsr segment` (resumable)."""
    frames = out / "windows"
    for name, (paths, _) in windows.items():
        if not (frames / f"{name}.png").is_file():
            write_png(frames / f"{name}.png", stitch(paths))
    run = out / "segment"
    command = [
        "csbsr", "segment", str(frames), "-o", str(run), "-m", model, "--min-length", "0",
        "--min-elongation", "0", "--outputs", "prob", "-q", "--resume",
    ]  # fmt: skip
    for folder in models_dirs:
        command += ["--models-dir", folder]
    print("+", " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)
    return run


def parse_rule(text: str, card: ShapeRule) -> ShapeRule:
    if text == "card":
        return card
    if text == "none":
        return ShapeRule()
    length, _, elongation = text.partition(":")
    return ShapeRule(float(length), float(elongation or 0))


def score(run: Path, windows: dict, threshold: float, rule: ShapeRule) -> dict:
    """The four box scores of the raw probability maps at `threshold` after the shape step `rule`."""
    counts = BoxCounts()
    index = threshold_index(threshold)
    for name, (_, boxes) in windows.items():
        prob = read_gray(run / "prob" / f"{name}.png")
        mask, _ = clean_mask(prob > threshold, rule.scaled(SCALE))
        counts.add(mask.astype(np.uint8) * np.uint8(N_THRESHOLDS), boxes * SCALE)
    return {
        "threshold": threshold,
        "min_length_px_input": rule.min_length,
        "min_elongation": rule.min_elongation,
        "windows": len(windows),
        "boxes": counts.n_boxes,
        "box_free_windows": counts.n_free,
        **counts.scores(index),
    }


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=Path, default=DEFAULT_TILES, help="Box-labelled tile folder.")
    parser.add_argument("--model", default="csbsr-lite", help="Registry name, card or run folder.")
    parser.add_argument("--models-dir", action="append", default=[], help="Extra model folder.")
    parser.add_argument("--out", type=Path, required=True, help="Work folder (windows, segment run).")
    parser.add_argument("--threshold", type=float, action="append", help="Default: the card's.")
    parser.add_argument(
        "--rule", action="append", help="Shape step LENGTH[:ELONGATION] (input px), 'card' or 'none'."
    )
    parser.add_argument("--evaluate-json", type=Path, help="A `csbsr evaluate` metrics.json to show beside.")
    parser.add_argument("--json", type=Path, help="Write the scores here.")
    args = parser.parse_args(argv)

    spec = Registry(args.models_dir).resolve(args.model)
    card_rule = ShapeRule(spec.min_length, spec.min_elongation)
    windows = windows_of(args.tiles)
    if not windows:
        parser.error(f"no full {WINDOW_TILES[0]}x{WINDOW_TILES[1]}-tile windows in {args.tiles}")
    run = segment_windows(windows, args.model, args.models_dir, args.out)
    rows = [
        score(run, windows, threshold, parse_rule(rule, card_rule))
        for threshold in args.threshold or [spec.threshold]
        for rule in args.rule or ["card"]
    ]
    dev = None
    if args.evaluate_json:
        seg = json.loads(args.evaluate_json.read_text())["segmentation"]
        dev = {k: seg.get(k) for k in ("IoU_max", "AIU", "HD95_min", "AHD95")}
    header = "thr  min_len  min_elong  box_prec  box_recall  outside_rate  free_marked"
    print(f"{spec.name}: {len(windows)} windows of {args.tiles}, {rows[0]['boxes']} boxes")
    print(header)
    for r in rows:
        print(
            f"{r['threshold']:<4} {r['min_length_px_input']:<8} {r['min_elongation']:<10} "
            f"{_fmt(r['box_precision']):<9} {_fmt(r['box_recall']):<11} {_fmt(r['outside_rate']):<13} "
            f"{_fmt(r['free_marked'])}"
        )
    if dev:
        print("dev val (csbsr evaluate): " + ", ".join(f"{k} {_fmt(v)}" for k, v in dev.items()))
    if args.json:
        record = {"model": spec.name, "tiles": str(args.tiles), "rows": rows, "dev_val": dev}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
