"""Model runners for `segment`: PyTorch on a device (out of memory halves the batch) or an ONNX export,
chosen and described in one place, and the tiling a runner implies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from ..errors import DeviceError, InputError, ModelError
from ..registry import ModelSpec
from ..weights import load_model
from .device import autocast, describe, is_out_of_memory, precision_name, resolve_device, resolve_precision
from .tiling import StitchMode, choose_stitching

RANDOM_SEED = 0  # models without weights are initialised from this seed, so runs and --resume agree


class Runner(Protocol):
    """Runs a batch of LR tiles (B, 3, t, t) float32 in [0, 1] -> (sr, prob, kernel) float32 on the CPU."""

    def __call__(self, tiles: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...


class TorchRunner:
    """A PyTorch model on a device, autocast for fp16/bf16; out of memory halves the batch and retries."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype | None, batch: int) -> None:
        self.model = model.to(device).eval()
        self.device, self.dtype, self.batch = device, dtype, batch
        self.warnings: list[str] = []

    def _forward(self, tiles: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.inference_mode(), autocast(self.device, self.dtype):
            out = self.model(tiles.to(self.device, non_blocking=True))
        return out.sr.float().cpu(), out.prob.float().cpu(), out.kernel.float().cpu()

    def __call__(self, tiles: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        parts, start = [], 0
        while start < len(tiles):
            chunk = tiles[start : start + self.batch]
            try:
                parts.append(self._forward(chunk))
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.batch == 1:
                    raise DeviceError(
                        f"out of memory on {self.device} with a single {tiles.shape[-1]} px tile: "
                        "use a smaller --tile"
                    ) from None
                self.batch = max(1, self.batch // 2)
                self.warnings.append(f"out of memory on {self.device}: batch reduced to {self.batch} tiles")
                continue
            start += len(chunk)
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def weights_id(spec: ModelSpec) -> str:
    """The weights' sha256, or the seed random weights come from (recorded in outputs and ONNX exports)."""
    return spec.weights.sha256 if spec.weights is not None else f"random-init-seed-{RANDOM_SEED}"


def load_torch_model(spec: ModelSpec) -> nn.Module:
    """The model with its weights, or with random weights from a fixed seed (without touching the global
    RNG), so that two runs, a resumed run and an ONNX export of the same untrained model agree."""
    if spec.weights is not None:
        return load_model(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return load_model(spec)


@dataclass(frozen=True)
class RunnerInfo:
    backend: str
    device: str  # what actually runs it: "cpu (2 threads)", "cuda:0 (NVIDIA ...)", onnxruntime providers
    precision: str
    weights: str
    tile: int | None  # fixed by an ONNX export, else None
    batch: int


def make_runner(
    spec: ModelSpec,
    *,
    backend: str = "torch",
    device: str = "auto",
    precision: str = "auto",
    batch: int = 4,
    onnx_path: Path | None = None,
    tile: int | None = None,
    require_gpu: bool = False,
) -> tuple[Runner, RunnerInfo]:
    """A runner for `spec` on the requested backend and device; refuses rather than silently falling back."""
    if backend == "torch":
        torch_device = resolve_device(device)
        if require_gpu and torch_device.type != "cuda":
            raise DeviceError(f"--require-gpu: no CUDA device available (torch {torch.__version__})")
        dtype = resolve_precision(precision, torch_device)
        runner = TorchRunner(load_torch_model(spec), torch_device, dtype, batch)
        return runner, RunnerInfo(
            "torch", describe(torch_device), precision_name(dtype), weights_id(spec), None, batch
        )
    if backend != "onnxruntime":
        raise InputError(f"unknown backend {backend!r} (torch or onnxruntime)")
    from .onnx_backend import OrtRunner, default_onnx_path, read_metadata

    if precision not in ("auto", "fp32"):
        raise InputError("--precision applies to the torch backend; an ONNX export runs in fp32")
    path = onnx_path or default_onnx_path(spec.name, tile or spec.tile, batch)
    if not path.is_file():
        raise ModelError(
            f"ONNX model not found: run `csbsr models export {spec.name} --tile {tile or spec.tile} "
            f"--batch {batch}` or pass --onnx FILE",
            path,
        )
    meta = read_metadata(path)
    if meta.get("model") != spec.name:
        raise ModelError(f"exported from model {meta.get('model')!r}, not {spec.name!r}", path)
    if meta.get("weights") != weights_id(spec):
        raise ModelError(f"exported from other weights than {spec.name!r} has now: export it again", path)
    ort_runner = OrtRunner(path, device, require_gpu)
    if tile is not None and tile != ort_runner.tile:
        raise InputError(f"--tile {tile} differs from the exported tile {ort_runner.tile}", path)
    info = RunnerInfo(
        "onnxruntime",
        ", ".join(ort_runner.providers),
        "fp32",
        weights_id(spec),
        ort_runner.tile,
        ort_runner.batch,
    )
    return ort_runner, info


def tiling_for(
    spec: ModelSpec, info: RunnerInfo, tile: int | None = None, overlap: int | None = None
) -> tuple[int, StitchMode, int]:
    """(tile, stitch mode, overlap) for `spec` on a runner: a fixed-shape ONNX model dictates the tile,
    else `tile` or the card's; the card's overlap holds at its own tile, else the stitching rule's."""
    tile_px = info.tile if info.tile is not None else (spec.tile if tile is None else tile)
    if overlap is None and tile_px == spec.tile:
        overlap = spec.overlap
    mode, overlap_px = choose_stitching(
        halo=spec.halo, global_context=spec.global_context, tile=tile_px, overlap=overlap
    )
    return tile_px, mode, overlap_px
