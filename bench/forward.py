"""Forward cost of registry models on LR tiles: ms per tile, FLOPs, GFLOP/s, and the speed ratio of the
fast constant-kernel path over the authors' plain path, measured in one run (random weights).

    python bench/forward.py                       # csbsr-pspnet, 112x112 LR tiles
    python bench/forward.py --model csbsr-lite --tile 64 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from csbsr_cli.nets.blocks import set_fast_kernel
from csbsr_cli.registry import Registry, build_network


def flops_of(model: torch.nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops()


def time_of(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median seconds per forward after one warm-up run."""
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", help="registry name (repeatable); default csbsr-pspnet")
    parser.add_argument("--tile", type=int, default=112, help="LR tile side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    registry = Registry()
    print(f"torch {torch.__version__}, {args.threads} threads, LR tile {args.tile}x{args.tile}, batch 1")
    print(f"{'model':<24}{'path':<7}{'ms/tile':>10}{'GFLOP':>10}{'GFLOP/s':>10}{'max|fast-plain|':>17}")
    for name in args.model or ["csbsr-pspnet"]:
        model = build_network(registry.get(name)).eval()
        x = torch.rand(1, 3, args.tile, args.tile)
        results = {}
        for path, fast in (("plain", False), ("fast", True)):
            set_fast_kernel(model, fast)
            with torch.inference_mode():
                out = model(x)
            results[path] = (flops_of(model, x), time_of(model, x, args.repeats), out)
        diff = max(
            (results["fast"][2][i] - results["plain"][2][i]).abs().max().item() for i in range(3)
        )  # sr, prob, kernel
        for path, (flops, seconds, _) in results.items():
            shown = f"{diff:>17.2e}" if path == "fast" else ""
            gflop = flops / 1e9
            print(f"{name:<24}{path:<7}{seconds * 1e3:>10.0f}{gflop:>10.1f}{gflop / seconds:>10.1f}{shown}")
        ratio = results["plain"][1] / results["fast"][1]
        flop_ratio = results["plain"][0] / results["fast"][0]
        print(f"{name:<24}speed ratio fast/plain: {ratio:.2f}x  (FLOP ratio {flop_ratio:.2f}x)")


if __name__ == "__main__":
    main()
