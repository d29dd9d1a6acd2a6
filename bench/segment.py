"""`csbsr segment` on this machine, every figure from one run (random weights unless the model has some):

- frames/s and peak RSS for 1280x720 frames (the shipped drone crops), PyTorch backend, default tiling;
- tiling + stitching time as a share of model time (the tiler's own overhead; writers run beside it);
- peak RSS for one 3840x2160 frame over one 1280x720 frame, same settings (flat memory: aim < 1.3x);
- onnxruntime over PyTorch speed (frames/s ratio) on the same 1280x720 frames.

Each measurement runs in its own process, so every peak RSS is that run's own.

    python bench/segment.py                         # csbsr-lite, 1 frame per measurement
    python bench/segment.py --frames 2 --mem-overlap 0 --json bench-segment.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "drone_crops"


def _frames(folder: Path, size: tuple[int, int], count: int) -> Path:
    """`count` frames of `size` (w, h) cut or enlarged from the shipped drone crops."""
    folder.mkdir(parents=True, exist_ok=True)
    crops = sorted(SAMPLE.glob("*.jpg"))
    for i in range(count):
        img = cv2.imread(str(crops[i % len(crops)]))
        if img.shape[1] != size[0] or img.shape[0] != size[1]:
            img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"frame{i:03d}.png"), img)
    return folder


def _peak_rss_mb() -> float:
    """This process's own peak RSS. Not getrusage: Linux carries ru_maxrss over fork + exec, so a child
    would report its parent's peak (the ONNX export) instead of its own."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(cfg: dict) -> dict:
    """One segment run in this process; prints its figures as JSON."""
    import torch

    from csbsr_cli.infer.inputs import discover
    from csbsr_cli.infer.outputs import OutputOptions
    from csbsr_cli.infer.pipeline import Job, segment
    from csbsr_cli.infer.runner import make_runner, tiling_for
    from csbsr_cli.registry import Registry
    from csbsr_cli.utils.memory import keep_freed_memory

    keep_freed_memory()  # as the csbsr command does

    spec = Registry().get(cfg["model"])
    runner, info = make_runner(
        spec, backend=cfg["backend"], device="cpu", batch=cfg["batch"],
        onnx_path=Path(cfg["onnx"]) if cfg.get("onnx") else None,
    )  # fmt: skip
    tile, mode, overlap = tiling_for(spec, info, overlap=cfg.get("overlap"))
    options = OutputOptions(threshold=spec.threshold)
    job = Job(spec.name, info.weights, info.backend, info.precision, spec.scale, spec.divisor, tile, overlap,
              mode, options)  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        result = segment(discover([cfg["frames"]]), Path(out), runner, job, batch=cfg["batch"])
    t = result.timings
    assert not result.failed, result.failed
    return {
        "frames": t.frames, "tiles": t.tiles, "tiles_per_frame": t.tiles // max(1, t.frames),
        "tile": tile, "overlap": overlap, "wall_s": t.wall_s, "model_s": t.model_s, "tiling_s": t.tiling_s,
        "write_wait_s": t.write_wait_s, "frames_per_s": t.frames / t.wall_s,
        "peak_rss_mb": _peak_rss_mb(),
        "threads": torch.get_num_threads(), "device": info.device,
    }  # fmt: skip


def _run(cfg: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="csbsr-lite")
    parser.add_argument("--frames", type=int, default=1, help="1280x720 frames per throughput measurement")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--mem-overlap",
        type=int,
        default=None,
        help="overlap for the 4K-vs-720p memory pair (default: the model's; 0 is ~4x faster)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    from csbsr_cli.infer.onnx_backend import export_onnx
    from csbsr_cli.infer.runner import load_torch_model, weights_id
    from csbsr_cli.registry import Registry

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        hd = str(_frames(tmp / "hd", (1280, 720), args.frames))
        hd1 = str(_frames(tmp / "hd1", (1280, 720), 1))
        uhd = str(_frames(tmp / "uhd", (3840, 2160), 1))
        spec = Registry().get(args.model)
        onnx_path = tmp / "model.onnx"
        export_onnx(load_torch_model(spec), spec, weights_id(spec), spec.tile, args.batch, onnx_path)
        base = {"model": args.model, "batch": args.batch}
        torch_hd = _run({**base, "backend": "torch", "frames": hd})
        ort_hd = _run({**base, "backend": "onnxruntime", "frames": hd, "onnx": str(onnx_path)})
        mem = {"backend": "torch", "overlap": args.mem_overlap}
        mem_hd = _run({**base, **mem, "frames": hd1})
        mem_uhd = _run({**base, **mem, "frames": uhd})
    figures = {
        "model": args.model, "load_avg_1min_at_start": round(load, 2),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        "torch_1280x720": torch_hd, "onnxruntime_1280x720": ort_hd, "mem_1280x720": mem_hd,
        "mem_3840x2160": mem_uhd,
        "tiling_overhead_share": torch_hd["tiling_s"] / torch_hd["model_s"],
        "peak_rss_ratio_4k_over_720p": mem_uhd["peak_rss_mb"] / mem_hd["peak_rss_mb"],
        "onnxruntime_over_torch_speed": ort_hd["frames_per_s"] / torch_hd["frames_per_s"],
    }  # fmt: skip
    t = torch_hd
    print(f"{args.model}, {t['threads']} threads on {t['device']}, 1-min load average {load:.1f} at start")
    print(
        f"1280x720, torch: {t['frames_per_s']:.4f} frames/s ({t['wall_s'] / t['frames']:.1f} s/frame, "
        f"{t['tiles_per_frame']} tiles of {t['tile']} px, overlap {t['overlap']}), "
        f"peak RSS {t['peak_rss_mb']:.0f} MB"
    )
    print(
        f"tiling + stitching: {figures['tiling_overhead_share']:.1%} of model time "
        f"({t['tiling_s']:.2f} s / {t['model_s']:.1f} s)"
    )
    print(
        f"peak RSS 3840x2160 / 1280x720: {figures['peak_rss_ratio_4k_over_720p']:.2f}x "
        f"({mem_uhd['peak_rss_mb']:.0f} / {mem_hd['peak_rss_mb']:.0f} MB, overlap {mem_hd['overlap']})"
    )
    print(f"onnxruntime / torch speed: {figures['onnxruntime_over_torch_speed']:.2f}x "
          f"({ort_hd['frames_per_s']:.4f} vs {t['frames_per_s']:.4f} frames/s)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
