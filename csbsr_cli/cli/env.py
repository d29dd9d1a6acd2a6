"""`csbsr env`: versions, devices, onnxruntime providers, threads and models: the first thing to run in a
new container or on a new node, and what to paste into a bug report."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy
import typer

from .. import __version__
from ..errors import CsbsrError, DeviceError
from ..infer.shard import COUNT_VAR, INDEX_VARS, resolve_shard
from ..registry import Registry, model_dirs
from .common import ModelsDirOption, err_console

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ENV_VARS = (
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CSBSR_MODELS",
    "CSBSR_SHARD", COUNT_VAR, *INDEX_VARS,
)  # fmt: skip
# Distributions that provide the `onnxruntime` module: more than one installed means one shadows another.
ORT_DISTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
CV_DISTS = (
    "opencv-python-headless", "opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless",
)  # fmt: skip


def _dist(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup CPU quota (a container's --cpus, a pod's limits.cpu), None if unlimited.

    torch sizes its thread pool from the machine's cores, not this quota: in a limited container the
    threads fight over a few CPUs unless OMP_NUM_THREADS is set.
    """
    try:
        # cgroup v2: "max 100000" (no limit) or "200000 100000" (2 CPUs)
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 else quota_us / period_us
    return None


def _versions(problems: list[str]) -> dict[str, Any]:
    import torch  # here, not at start-up: `csbsr --help` imports no torch

    ort = [f"{d} {v}" for d in ORT_DISTS if (v := _dist(d))]
    cv = [f"{d} {v}" for d in CV_DISTS if (v := _dist(d))]
    if len(ort) > 1:
        problems.append(f"several onnxruntime packages share one module: {', '.join(ort)} (keep one)")
    if len(cv) > 1:
        problems.append(f"several OpenCV packages share one module: {', '.join(cv)} (keep the headless one)")
    try:
        import cv2

        opencv = f"{cv2.__version__} ({', '.join(cv) or 'unknown package'})"
    except ImportError as exc:  # e.g. the GUI build without libGL.so.1 in a slim image
        opencv = None
        problems.append(f"OpenCV does not import: {exc}")
    return {
        "csbsr": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "torch": f"{torch.__version__} (CUDA build {torch.version.cuda or 'none'})",
        "torchvision": _dist("torchvision"),
        "numpy": numpy.__version__,
        "opencv": opencv,
        "scikit-image": _dist("scikit-image"),
        "onnxruntime": ", ".join(ort) or None,
        "onnx": _dist("onnx"),
    }


def _torch_devices() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"cuda_available": torch.cuda.is_available()}
    if not info["cuda_available"]:
        info["why"] = (
            "torch was built without CUDA"
            if torch.version.cuda is None
            else "no CUDA device or driver visible (docker run --gpus all; a GPU limit in Kubernetes)"
        )
        return info
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        devices.append(
            f"cuda:{i} {props.name}, {total / 2**30:.1f} GiB ({free / 2**30:.1f} free), "
            f"compute {props.major}.{props.minor}, {props.multi_processor_count} SMs"
        )
    info["devices"] = devices
    info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return info


def _tiny_onnx() -> bytes:
    """A one-node model (Add) to see whether a provider really loads; listed is not loaded."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def _onnxruntime(cuda_visible: bool, problems: list[str]) -> dict[str, Any] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    available = ort.get_available_providers()
    info: dict[str, Any] = {"device": ort.get_device(), "providers": available}
    gpu = [p for p in GPU_PROVIDERS if p in available]
    if not gpu:
        return info
    if not cuda_visible:
        info["gpu_check"] = "not run: no CUDA device visible"
        return info
    try:
        model = _tiny_onnx()
    except ImportError:
        info["gpu_check"] = "not run: the onnx package is not installed"
        return info
    checks = {}
    for provider in gpu:
        # onnxruntime falls back to the CPU (logging why) when a provider's libraries do not load.
        session = ort.InferenceSession(model, providers=[provider, "CPUExecutionProvider"])
        loaded = session.get_providers()[0] == provider
        checks[provider] = "loads" if loaded else "listed but does not load (the onnxruntime log says why)"
    info["gpu_check"] = checks
    if checks.get("CUDAExecutionProvider", "loads") != "loads":
        problems.append("onnxruntime's CUDA provider does not load although torch sees a GPU")
    return info


def _threads(notes: list[str]) -> dict[str, Any]:
    import torch

    limit = cgroup_cpu_limit()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "cgroup_cpu_limit": limit,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }
    try:
        import cv2

        info["opencv_threads"] = cv2.getNumThreads()
    except ImportError:
        pass
    if limit is not None and torch.get_num_threads() > max(1, round(limit)):
        notes.append(
            f"torch uses {torch.get_num_threads()} threads but the cgroup allows {limit:g} CPUs: "
            f"set OMP_NUM_THREADS={max(1, int(limit))}"
        )
    return info


def _models(models_dir: list[Path], problems: list[str]) -> dict[str, Any]:
    dirs = {
        str(d): ("missing" if not d.is_dir() else f"{len(list(d.glob('*.json')))} card(s)")
        for d in model_dirs(models_dir)
    }
    try:
        registry = Registry(models_dir)
    except CsbsrError as exc:
        problems.append(f"model registry: {exc}")
        return {"directories": dirs}
    weights = {}
    for name in registry.names():
        spec = registry.get(name)
        if spec.weights is not None:
            present = spec.weights.path.is_file()
            weights[name] = f"{'present' if present else 'MISSING'}: {spec.weights.path}"
            if not present:
                problems.append(f"model {name}: weights file missing ({spec.weights.path})")
    return {
        "directories": dirs,
        "with_weights": weights or "none (every model would run with random weights)",
        "architectures": len(registry.names()),
    }


def _shard() -> str:
    try:
        shard = resolve_shard(os.environ.get("CSBSR_SHARD"), None)
    except CsbsrError as exc:
        return f"invalid: {exc}"
    return "none ($CSBSR_SHARD unset)" if shard is None else f"{shard} (from {shard.origin})"


def collect(models_dir: list[Path] | None = None) -> dict[str, Any]:
    """Everything `csbsr env` reports, as plain data."""
    problems: list[str] = []
    notes: list[str] = []
    report: dict[str, Any] = {"versions": _versions(problems)}
    report["torch_devices"] = _torch_devices()
    report["onnxruntime"] = _onnxruntime(report["torch_devices"]["cuda_available"], problems)
    report["threads"] = _threads(notes)
    report["models"] = _models(list(models_dir or []), problems)
    report["environment"] = {name: os.environ[name] for name in ENV_VARS if name in os.environ}
    report["shard"] = _shard()
    report["notes"] = notes
    report["problems"] = problems
    return report


def _print(value: Any, indent: int = 0) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                typer.echo(f"{pad}{key}:")
                _print(item, indent + 1)
            else:
                typer.echo(f"{pad}{key}: {'none' if item in (None, [], {}) else item}")
    else:
        for item in value:
            typer.echo(f"{pad}- {item}")


def env(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    strict: bool = typer.Option(False, "--strict", help="Exit with code 2 if any problem is found."),
    require_gpu: bool = typer.Option(
        False, "--require-gpu", help="Exit with code 2 unless torch sees a CUDA device (implies --strict)."
    ),
    models_dir: list[Path] = ModelsDirOption,
) -> None:
    """Versions, CUDA devices, onnxruntime providers, threads and models with weights.

    Problems (two onnxruntime packages, an onnxruntime CUDA provider that does not load, a missing weights
    file) are listed last; --strict turns them into exit code 2.
    """
    report = collect(models_dir)
    if require_gpu and not report["torch_devices"]["cuda_available"]:
        report["problems"].append(f"a GPU is required: {report['torch_devices']['why']}")
    if as_json:
        typer.echo(json.dumps(report, indent=1, default=str))
    else:
        _print(report)
    if report["problems"] and (strict or require_gpu):
        err_console.print(f"{len(report['problems'])} problem(s), listed above")
        raise DeviceError("the environment is not ready")
