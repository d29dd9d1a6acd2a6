"""The ablation table of a model card: each row's `csbsr evaluate` runs, then one Markdown + JSON table.

Per row, two evaluations with the same fixed degradation seed: the labelled split (IoU_max, AIU, HD95_min,
AHD95, PSNR, SSIM) and a folder of crack-free crops (see bench/crack_free_crops.py). The false-positive
pixel rate is read from the crack-free run's curves.csv at the threshold where the row's model reaches its
IoU_max on the labelled split: the threshold that model would ship with. The table keeps every command.

With ``--shape LENGTH:ELONGATION`` every row is also scored after the shape step (infer/shape.py, applied
at every threshold to the row's saved probability maps: no second inference), as "<row> + shape step".
With ``--drone TILES`` every row also gets the drone-window box scores of bench/drone_quality.py at the
row's own threshold (box precision / recall, outside rate, marked box-free windows).

    python bench/lite_ablation.py --dataset ../shared/data/dev --split val --crack-free /tmp/crack_free_val \\
        --row "bicubic + segmenter=runs/joint-train/lite-bicubic" \\
        --row "joint (csbsr-lite)=runs/joint-train/lite-joint" \\
        --row "segmenter on HR (upper bound)=runs/joint-train/lite-hr:hr" \\
        --out runs/ablation --jobs 2
    python bench/lite_ablation.py --dataset ../shared/data/dev --crack-free /tmp/crack_free_val \\
        --row "previous=csbsr-lite" --row "new=runs/joint-train/lite-drone" \\
        --shape 8:4 --drone ../shared/data/drone/val --out runs/ablation-drone
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
DRONE_COLUMNS = ("box_precision", "box_recall", "outside_rate", "free_marked")
DRONE_QUALITY = Path(__file__).resolve().parent / "drone_quality.py"


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


def evaluate_cmd(
    row: Row, dataset: Path, out: Path, split: str | None, workers: int, shape: str | None = None
) -> list[str]:
    """The model's evaluation (predictions kept when a shape step will re-score them), or with `shape`
    the re-scoring of those saved predictions after the shape step."""
    if shape is None:
        cmd = [*CSBSR, "evaluate", row.model, "--dataset", str(dataset), "-o", str(out), "--overwrite", "-q"]
        cmd += ["--save-predictions"]
    else:
        length, _, elongation = shape.partition(":")
        cmd = [*CSBSR, "evaluate", "--predictions", str(out), "--dataset", str(dataset), "-q", "--overwrite"]
        cmd += ["-o", f"{out}-shape", "--min-length", length, "--min-elongation", elongation or "0"]
    cmd += ["--workers", str(workers), "--panels", "0"]
    if split:
        cmd += ["--split", split]
    if row.hr and shape is None:
        cmd.append("--hr")
    return cmd


def fpr_at(curves_csv: Path, threshold: float) -> float:
    """The crack-free run's mean false-positive rate at `threshold` (a row of its curves.csv)."""
    with open(curves_csv, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    best = min(rows, key=lambda r: abs(float(r["threshold"]) - threshold))
    return float(best["FPR_crack_free_mean"])


def _run(cmd: list[str], env: dict[str, str], label: str) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{label}: `{shlex.join(cmd)}` failed:\n{proc.stderr[-2000:]}")


def _scores(labelled: Path, clean: Path, psnr_ssim: tuple[float | None, float | None]) -> tuple[dict, dict]:
    seg = json.loads((labelled / "metrics.json").read_text(encoding="utf-8"))["segmentation"]
    values = {
        "IoU_max": seg["IoU_max"],
        "AIU": seg["AIU"],
        "HD95_min": seg["HD95_min"],
        "AHD95": seg["AHD95"],
        "PSNR": psnr_ssim[0],
        "SSIM": psnr_ssim[1],
        "FPR_crack_free": fpr_at(clean / "curves.csv", seg["IoU_max_threshold"]),
    }
    return seg, values


def drone_cmd(row: Row, tiles: Path, out: Path, threshold: float, shape: str | None) -> list[str]:
    """bench/drone_quality.py for the row's model at its threshold (the raw segmentation is shared)."""
    cmd = [sys.executable, str(DRONE_QUALITY), "--model", row.model, "--tiles", str(tiles)]
    cmd += ["--out", str(out), "--threshold", f"{threshold:.2f}", "--rule", shape or "none"]
    return cmd + ["--json", f"{out}-{shape}.json"]


def run_row(row: Row, args: argparse.Namespace, threads: int) -> list[dict]:
    """The row's results: raw, and after the shape step when `args.shape` is set."""
    slug = "".join(c if c.isalnum() else "-" for c in row.label.lower()).strip("-")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    labelled, clean = args.out / f"{slug}-{args.split or 'all'}", args.out / f"{slug}-crack-free"
    commands = [
        evaluate_cmd(row, args.dataset, labelled, args.split, args.workers),
        evaluate_cmd(row, args.crack_free, clean, None, args.workers),
    ]
    started = time.perf_counter()
    for cmd in commands:
        _run(cmd, env, row.label)
    metrics = json.loads((labelled / "metrics.json").read_text(encoding="utf-8"))
    quality = metrics.get("image_quality") or {}
    psnr_ssim = (None, None) if row.hr else (quality.get("PSNR_mean"), quality.get("SSIM_mean"))
    variants = [(row.label, None, labelled, clean)]
    if args.shape:
        for cmd in (
            evaluate_cmd(row, args.dataset, labelled, args.split, args.workers, args.shape),
            evaluate_cmd(row, args.crack_free, clean, None, args.workers, args.shape),
        ):
            _run(cmd, env, row.label)
            commands.append(cmd)
        shaped = Path(f"{labelled}-shape"), Path(f"{clean}-shape")
        variants.append((f"{row.label} + shape step {args.shape}", args.shape, *shaped))
    results = []
    for label, shape, lab, cf in variants:
        seg, values = _scores(lab, cf, psnr_ssim)
        own = list(commands)
        if args.drone:
            work = args.out / f"{slug}-drone"
            cmd = drone_cmd(row, args.drone, work, seg["IoU_max_threshold"], shape)
            _run(cmd, env, label)
            own.append(cmd)
            drone = json.loads(Path(f"{work}-{shape}.json").read_text(encoding="utf-8"))["rows"][0]
            values |= {k: drone[k] for k in DRONE_COLUMNS}
        results.append(
            {
                "label": label,
                "model": row.model,
                "shape_step": shape,
                "threshold": seg["IoU_max_threshold"],
                "n_images": seg["n_images"],
                "values": values,
                "commands": [shlex.join(c) for c in own],
                "wall_s": round(time.perf_counter() - started, 1),
            }
        )
    return results


def markdown(results: list[dict]) -> str:
    columns = [*COLUMNS, *(c for c in DRONE_COLUMNS if any(c in r["values"] for r in results))]
    head = "| row | " + " | ".join(columns) + " | threshold |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for r in results:
        cells = []
        for key in columns:
            v = r["values"].get(key)
            rate = key in ("FPR_crack_free", "outside_rate")
            cells.append("n/a" if v is None or v != v else f"{v:.2e}" if rate else f"{v:.4g}")
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
    parser.add_argument("--shape", help="also score after the shape step LENGTH:ELONGATION (input px)")
    parser.add_argument("--drone", type=Path, help="box-labelled tiles for drone-window scores")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = [r for rows in pool.map(lambda row: run_row(row, args, threads), args.row) for r in rows]
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
