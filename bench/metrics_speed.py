"""Images/s of the segmentation + distance metrics alone (99 thresholds per image), serial and in workers.

Synthetic stand-ins for the Khanhha test set: 448x448 masks with a few random-walk cracks (1 in 10
crack-free), probability maps = blurred, slightly shifted crack + per-pixel Gaussian noise (harsher
than a CNN's spatially smooth output: every threshold below ~0.2 sees salt noise everywhere) +
false-positive blobs. The serial run pins OpenCV to one thread, so it measures one core. CPU time
counts the worker processes too (wall time is noisy on a shared machine; CPU time much less so).
Run: python bench/metrics_speed.py [--images 40] [--workers 2] [--preset default]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import cv2
import numpy as np

from csbsr_cli.metrics.evaluate import evaluate_masks
from csbsr_cli.metrics.presets import get_preset


def synthetic_pair(rng: np.random.Generator, size: int = 448) -> tuple[np.ndarray, np.ndarray]:
    """One (GT mask uint8, probability float32) pair that looks like a crack-segmentation output."""
    mask = np.zeros((size, size), np.uint8)
    if rng.random() >= 0.1:
        for _ in range(rng.integers(1, 4)):
            pts = [rng.uniform(0, size, 2)]
            heading = rng.uniform(0, 2 * np.pi)
            for _ in range(rng.integers(15, 40)):
                heading += rng.normal(0, 0.4)
                pts.append(pts[-1] + 12 * np.array([np.cos(heading), np.sin(heading)]))
            poly = np.round(np.array(pts)).astype(np.int32)
            cv2.polylines(mask, [poly], False, 255, thickness=int(rng.integers(2, 7)))
    shifted = np.roll(mask, tuple(rng.integers(-2, 3, 2)), axis=(0, 1)).astype(np.float32) / 255
    prob = cv2.GaussianBlur(shifted, (0, 0), 1.5) * rng.uniform(1.0, 1.6)
    for _ in range(rng.integers(0, 6)):
        centre = tuple(int(c) for c in rng.integers(0, size, 2))
        cv2.circle(prob, centre, int(rng.integers(2, 10)), float(rng.uniform(0.2, 0.9)), -1)
    prob += rng.normal(0, 0.05, prob.shape).astype(np.float32)
    return mask, np.clip(prob, 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    preset = get_preset(args.preset)
    rng = np.random.default_rng(0)
    items = [(f"img{i:04d}", *synthetic_pair(rng)) for i in range(args.images)]
    print(f"{args.images} images 448x448, 99 thresholds, preset {preset.name}, {os.cpu_count()} CPUs")
    cv2.setNumThreads(1)
    for workers in sorted({1, args.workers}):
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        evaluate_masks(items, preset, workers=workers)
        elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        print(
            f"workers={workers}: {elapsed:.2f} s wall, {args.images / elapsed:.2f} images/s; "
            f"CPU {1000 * cpu / args.images:.0f} ms/image"
        )


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the worker processes)."""
    own = time.process_time()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
