"""ONNX export (fixed shape, one file, checked against PyTorch) and the onnxruntime backend of `segment`.

The shape is fixed at export, batch included: PSPNet's adaptive pooling exports silently wrong with
dynamic spatial axes, and KBPN's per-sample kernel convolution bakes the batch into its group count. The
model's registry facts (tile, batch, scale, stitching) and its weights id travel in the file's metadata,
so `segment --backend onnxruntime` tiles exactly as the export expects and refuses a stale export.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DeviceError, ModelError
from ..registry import ModelSpec
from ..utils.atomic import atomic_path
from ..weights import user_models_dir

OUTPUT_NAMES = ("sr", "prob", "kernel")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
PARITY_TOL = {"sr": 1e-4, "prob": 1e-4, "kernel": 1e-5}  # max |ORT - PyTorch| accepted at export
META_PREFIX = "csbsr."


def default_onnx_path(model: str, tile: int, batch: int) -> Path:
    """Where `models export` writes and `segment --backend onnxruntime` looks by default."""
    return user_models_dir() / f"{model}.t{tile}.b{batch}.onnx"


class _Outputs(nn.Module):
    """The joint model with named tensor outputs only (the aux head is a training output)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, lr: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model(lr)
        return out.sr, out.prob, out.kernel


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise DeviceError('onnxruntime is not installed: pip install "csbsr[onnx]" (or "[gpu]")') from None
    return onnxruntime


@dataclass(frozen=True)
class ExportReport:
    path: Path
    size_bytes: int
    seconds: float
    max_abs_diff: dict[str, float]


def export_onnx(
    model: nn.Module, spec: ModelSpec, weights_id: str, tile: int, batch: int, path: Path
) -> ExportReport:
    """Export `model` for (batch, 3, tile, tile) LR input, check ONNX Runtime against PyTorch on a random
    input of that shape, and only then move the single-file model to `path`."""
    if tile < 1 or tile % spec.divisor:
        raise ModelError(f"--tile {tile} must be a positive multiple of the model's divisor {spec.divisor}")
    if batch < 1:
        raise ModelError(f"--batch must be at least 1, got {batch}")
    try:
        import onnx
    except ImportError:
        raise ModelError('ONNX export needs onnx and onnxscript: pip install "csbsr[onnx]"') from None
    t0 = time.perf_counter()
    wrapper = _Outputs(model.eval()).eval()
    example = torch.rand(batch, 3, tile, tile, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its steps
        program = torch.onnx.export(
            wrapper, (example,), dynamo=True, input_names=["lr"], output_names=list(OUTPUT_NAMES),
            external_data=False, optimize=True, verbose=False,
        )  # fmt: skip
        expected = wrapper(example)
    proto = program.model_proto
    meta = {
        "model": spec.name, "weights": weights_id, "tile": tile, "batch": batch, "scale": spec.scale,
        "divisor": spec.divisor, "halo": spec.halo, "global_context": spec.global_context,
        "threshold": spec.threshold, "torch": torch.__version__,
    }  # fmt: skip
    onnx.helper.set_model_props(proto, {META_PREFIX + k: str(v) for k, v in meta.items()})
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
        got = OrtRunner(tmp, "cpu").session.run(list(OUTPUT_NAMES), {"lr": example.numpy()})
        diffs = {
            name: float(np.abs(g - e.numpy()).max())
            for name, g, e in zip(OUTPUT_NAMES, got, expected, strict=True)
        }
        bad = {k: v for k, v in diffs.items() if not v <= PARITY_TOL[k]}
        if bad:
            raise ModelError(f"ONNX Runtime disagrees with PyTorch at the exported shape: {bad}; not written")
    return ExportReport(path, path.stat().st_size, time.perf_counter() - t0, diffs)


def read_metadata(path: Path) -> dict[str, str]:
    """The csbsr.* metadata of an exported model (empty if it has none)."""
    import onnx

    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for a bad file
        raise ModelError(f"not a readable ONNX model ({type(exc).__name__})", path) from None
    return {
        p.key.removeprefix(META_PREFIX): p.value
        for p in proto.metadata_props
        if p.key.startswith(META_PREFIX)
    }


def _providers(ort: Any, device: str) -> list[Any]:
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    gpu = [(p, {"device_id": index}) for p in GPU_PROVIDERS if p in available]
    if device.startswith("cuda") and not gpu:
        raise DeviceError(
            f"--device {device}: onnxruntime has no CUDA/TensorRT provider (has {', '.join(available)})"
        )
    return [*gpu, "CPUExecutionProvider"]


class OrtRunner:
    """An exported model in ONNX Runtime; batches are padded to the exported batch size."""

    def __init__(self, path: Path, device: str = "auto", require_gpu: bool = False) -> None:
        ort = _import_ort()
        if not Path(path).is_file():
            raise ModelError("ONNX model not found (write it with `csbsr models export`)", path)
        providers = _providers(ort, device)
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(
                f"onnxruntime cannot load this model: {str(exc).splitlines()[0][:200]}", path
            ) from None
        self.providers: list[str] = self.session.get_providers()
        on_gpu = self.providers[0] in GPU_PROVIDERS
        if (require_gpu or device.startswith("cuda")) and not on_gpu:
            raise DeviceError(f"a GPU was required but onnxruntime runs on {', '.join(self.providers)}")
        shape = self.session.get_inputs()[0].shape
        if not all(isinstance(d, int) for d in shape):
            raise ModelError(
                f"ONNX input shape {shape} is not fixed: export it with `csbsr models export`", path
            )
        self.batch, _, self.tile, _ = shape
        self.warnings: list[str] = []

    def __call__(self, tiles: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        parts = []
        for start in range(0, len(tiles), self.batch):
            chunk = tiles[start : start + self.batch].numpy()
            n = len(chunk)
            if n < self.batch:  # repeat the last tile: the exported batch size is fixed
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])
            outs = self.session.run(list(OUTPUT_NAMES), {"lr": np.ascontiguousarray(chunk, dtype=np.float32)})
            parts.append([torch.from_numpy(o[:n]) for o in outs])
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]
