"""Device, precision and versions for every command (segment, evaluate, export, train, degrade): one
meaning of "auto" for the device, one for the precision, one record of versions.

Precision is autocast only (weights stay fp32, never ``.half()``). Half precision on a CPU is the most
reported crash of SR tools (``slow_conv2d_cpu not implemented for 'Half'``), so fp16 is refused there
instead of being tried; bf16 autocast works on recent CPUs.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from typing import Literal

import cv2
import numpy as np
import torch

from .. import __version__
from ..errors import DeviceError

Precision = Literal["auto", "fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16", "off")  # "off": training's name for fp32
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """`auto`, `cpu`, `cuda` or `cuda:N` -> a usable torch.device, or a DeviceError saying why not.

    "auto" is CUDA when available, else the CPU. Under torchrun (`local_rank` given) a bare "cuda" is
    the process's own GPU, cuda:LOCAL_RANK."""
    name = name.strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        try:
            device = torch.device(name)
        except RuntimeError:
            raise DeviceError(f"invalid device {name!r} (use auto, cpu, cuda or cuda:N)") from None
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} requested but CUDA is not available (torch {torch.__version__})"
            )
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {device} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    raise DeviceError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")


def resolve_precision(precision: str, device: torch.device, training: bool = False) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32 ("fp32" / "off").

    "auto" is fp32 on a CPU. On CUDA it is fp16 for inference (what the models are checked with) and, for
    training, bf16 on GPUs that have it (its range needs no loss scaling), else fp16 with a GradScaler."""
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS[:-1])})")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if training and torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError("fp16 needs a CUDA device; on a CPU use --precision fp32 (default) or bf16")
    return _DTYPES.get(precision)


def precision_name(dtype: torch.dtype | None) -> str:
    return "fp32" if dtype is None else {v: k for k, v in _DTYPES.items()}[dtype]


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """torch.autocast for fp16/bf16 (weights stay fp32, never `.half()`), nothing for fp32."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM, whichever way this torch version raises it."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    """What every run records beside its outputs (run.json, metrics.json, a training log, a manifest)."""
    return {
        "csbsr": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
