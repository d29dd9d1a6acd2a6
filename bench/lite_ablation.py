"""The ablation table of a model card: each row's `csbsr evaluate` runs, then one Markdown + JSON table.

Per row, two evaluations with the same fixed degradation seed: the labelled split (IoU_max, AIU, HD95_min,
AHD95, PSNR, SSIM) and a folder of crack-free crops (see bench/crack_free_crops.py). The false-positive
pixel rate is read from the crack-free run's curves.csv at the threshold where the row's model reaches its
IoU_max on the labelled split: the threshold that model would ship with. The table keeps every command.

    python bench/lite_ablation.py --dataset ../shared/data/dev --split val --crack-free /tmp/crack_free_val \\
        --row "bicubic + segmenter=runs/joint-train/lite-bicubic" \\
        --row "joint (csbsr-lite)=runs/joint-train/lite-joint" \\
        --row "segmenter on HR (upper bound)=runs/joint-train/lite-hr:hr" \\
        --out runs/ablation --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CSBSR = [str(Path(sys.executable).parent / "csbsr")]  # the console script beside this Python
COLUMNS = ("IoU_max", "AIU", "HD95_min", "AHD95", "PSNR", "SSIM", "FPR_crack_free")


@dataclass(frozen=True)
class Row:
    label: str
    model: str
    hr: bool  # feed the HR images (a scale-1 segmenter: the upper bound)


def parse_row(text: str) -> Row:
    """'LABEL=MODEL' or 'LABEL=MODEL:hr'; MODEL is a registry name, a card or a training run folder."""
    label, sep, model = text.partition("=")
    if not sep or not label or not model:
        raise argparse.ArgumentTypeError(f"--row wants LABEL=MODEL[:hr], got {text!r}")
    hr = model.endswith(":hr")
    return Row(label.strip(), model[:-3] if hr else model, hr)


def evaluate_cmd(row: Row, dataset: Path, out: Path, split: str | None, workers: int) -> list[str]:
    cmd = [*CSBSR, "evaluate", row.model, "--dataset", str(dataset), "-o", str(out), "--overwrite", "-q"]
    cmd += ["--workers", str(workers), "--panels", "0"]
    if split:
        cmd += ["--split", split]
    if row.hr:
        cmd.append("--hr")
    return cmd


def fpr_at(curves_csv: Path, threshold: float) -> float:
    """The crack-free run's mean false-positive rate at `threshold` (a row of its curves.csv)."""
    with open(curves_csv, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    best = min(rows, key=lambda r: abs(float(r["threshold"]) - threshold))
    return float(best["FPR_crack_free_mean"])


def run_row(row: Row, args: argparse.Namespace, threads: int) -> dict:
    slug = "".join(c if c.isalnum() else "-" for c in row.label.lower()).strip("-")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    labelled, clean = args.out / f"{slug}-{args.split or 'all'}", args.out / f"{slug}-crack-free"
    commands = [
        evaluate_cmd(row, args.dataset, labelled, args.split, args.workers),
        evaluate_cmd(row, args.crack_free, clean, None, args.workers),
    ]
    started = time.perf_counter()
    for cmd in commands:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{row.label}: `{shlex.join(cmd)}` failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads((labelled / "metrics.json").read_text(encoding="utf-8"))
    seg, quality = metrics["segmentation"], metrics.get("image_quality", {})
    values = {
        "IoU_max": seg["IoU_max"],
        "AIU": seg["AIU"],
        "HD95_min": seg["HD95_min"],
        "AHD95": seg["AHD95"],
        "PSNR": None if row.hr else quality.get("PSNR_mean"),
        "SSIM": None if row.hr else quality.get("SSIM_mean"),
        "FPR_crack_free": fpr_at(clean / "curves.csv", seg["IoU_max_threshold"]),
    }
    return {
        "label": row.label,
        "model": row.model,
        "threshold": seg["IoU_max_threshold"],
        "n_images": seg["n_images"],
        "values": values,
        "commands": [shlex.join(c) for c in commands],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def markdown(results: list[dict]) -> str:
    head = "| row | " + " | ".join(COLUMNS) + " | threshold |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in results:
        cells = []
        for key in COLUMNS:
            v = r["values"][key]
            cells.append("n/a" if v is None else f"{v:.2e}" if key == "FPR_crack_free" else f"{v:.4g}")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {r['threshold']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, required=True, help="labelled folder (images/ + masks/)")
    parser.add_argument("--split", default="val", help="split of the dataset's split.csv ('' for all)")
    parser.add_argument("--crack-free", type=Path, required=True, help="crack-free crops (images/ + masks/)")
    parser.add_argument("--row", type=parse_row, action="append", required=True, help="LABEL=MODEL[:hr]")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--jobs", type=int, default=1, help="rows evaluated at once")
    parser.add_argument("--workers", type=int, default=1, help="metric processes per evaluation")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda row: run_row(row, args, threads), args.row))
    table = markdown(results)
    (args.out / "ablation.md").write_text(table, encoding="utf-8")
    (args.out / "ablation.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(table)
    for r in results:
        print(f"{r['label']} ({r['wall_s']} s):")
        for cmd in r["commands"]:
            print(f"  {cmd}")


if __name__ == "__main__":
    main()
