"""Seams of a model's default tiling on real drone frames: tiled vs whole-image inference.

Prints, per frame crop, the (level, jump) ratios of `csbsr_cli.infer.seams.seam_levels` for the model's
own tile/overlap, for half-tile blending, and for naive non-overlapping tiles. 1.0 = borders look like
anywhere else; the naive cut shows what a seam looks like. Whole-image inference of the crop must fit in
memory, hence a crop (default 320x320 LR = 1280x1280 SR).

    python bench/seams.py                                   # csbsr-lite on the shipped drone crops
    python bench/seams.py --model csbsr-lite --crop 256 --json seams.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from csbsr_cli.data.image_io import read_image
from csbsr_cli.infer.runner import TorchRunner
from csbsr_cli.infer.seams import seam_levels
from csbsr_cli.registry import Registry
from csbsr_cli.utils.memory import keep_freed_memory
from csbsr_cli.weights import load_model

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "drone_crops"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="csbsr-lite")
    parser.add_argument("--crop", type=int, default=320, help="LR crop side, from each frame's centre")
    parser.add_argument("--frames", type=Path, nargs="*", default=sorted(SAMPLE.glob("*.jpg")))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    keep_freed_memory()  # as the csbsr command does
    spec = Registry().get(args.model)
    runner = TorchRunner(load_model(spec), torch.device("cpu"), None, batch=4)
    tile = spec.tile
    settings = {
        f"model default (tile {tile}, overlap {spec.overlap})": (spec.overlap or tile // 2, "blend"),
        f"half-tile blend (overlap {tile // 2})": (tile // 2, "blend"),
        "naive cut (no overlap)": (0, "crop"),
    }
    results = []
    for frame in args.frames:
        img = read_image(frame)
        h, w = img.shape[:2]
        top, left = (h - args.crop) // 2, (w - args.crop) // 2
        crop = img[top : top + args.crop, left : left + args.crop]
        for name, (overlap, mode) in settings.items():
            level, jump = seam_levels(runner, crop, tile, overlap, mode, spec.scale, spec.divisor)
            results.append({"frame": frame.name, "setting": name, "level": level, "jump": jump})
            print(f"{frame.name:28s} {name:36s} level {level:5.2f}  jump {jump:5.2f}")
    if args.json:
        figures = {"model": args.model, "crop": args.crop, "results": results}
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
