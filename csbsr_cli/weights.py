"""Weights on disk: safetensors + a JSON card. Loading never unpickles; a file whose sha256 differs from
its card is refused. Importing the authors' checkpoints checks every key and shape before writing."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import ModelError
from .registry import ModelSpec, Registry, build_network, builtin_specs, model_dirs
from .utils.atomic import atomic_path, write_text_atomic
from .utils.digest import sha256_file
from .utils.folders import contained

DP_PREFIX = "module."  # DataParallel / DDP prefix in the authors' checkpoints
MAX_LISTED = 8  # mismatching keys shown in an error message


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a PyTorch file, never unpickling arbitrary objects."""
    if not path.is_file():
        raise ModelError("checkpoint file not found", path)
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"not a readable checkpoint (truncated or wrong format: {reason[:160]})", path
        ) from None
    except Exception as exc:  # weights_only refuses pickled objects with UnpicklingError
        raise ModelError(
            f"refused: checkpoint holds more than tensors ({type(exc).__name__})", path
        ) from None
    for key in ("state_dict", "model"):  # common wrappers around a state dict
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError("checkpoint is not a state dict of tensors", path)
    return {k.removeprefix(DP_PREFIX): v for k, v in state.items()}


def check_state_dict(
    expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], arch: str
) -> None:
    """Raise one clear error listing missing, unexpected and mis-shaped keys."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k} {tuple(got[k].shape)}!={tuple(v.shape)}"
        for k, v in expected.items()
        if k in got and tuple(got[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            shown = ", ".join(items[:MAX_LISTED]) + (
                f", ... (+{len(items) - MAX_LISTED})" if len(items) > MAX_LISTED else ""
            )
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise ModelError(f"does not match architecture {arch}: " + "; ".join(problems))


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """{alias: first name} for state-dict entries sharing one tensor (U-Net16 registers each VGG layer as
    `encoder.N` and `convK.M`): safetensors stores each tensor once, so only the first name is saved."""
    first: dict[tuple[int, int, tuple[int, ...]], str] = {}
    aliases = {}
    for key, value in model.state_dict(keep_vars=True).items():
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if value.numel() and ident in first:
            aliases[key] = first[ident]
        else:
            first.setdefault(ident, key)
    return aliases


def saveable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without aliased entries, contiguous on the CPU: what safetensors accepts."""
    aliases = tied_aliases(model)
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in aliases}


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], arch: str, path: Path) -> None:
    """Load `state` strictly (every key and shape checked, one-line error naming `path`); entries a
    safetensors file stores once are re-tied to every name the model gives them."""
    full = dict(state)
    for alias, name in tied_aliases(model).items():
        if alias not in full and name in full:
            full[alias] = full[name]
    try:
        check_state_dict(model.state_dict(), full, arch)
    except ModelError as exc:
        raise ModelError(str(exc), path) from None
    model.load_state_dict(full, strict=True)


def load_model(spec: ModelSpec, *, require_weights: bool = False, **overrides: Any) -> nn.Module:
    """Build `spec` and load its weights (verified sha256, strict keys); random weights if it has none.

    The one loader: every command turns its model reference into a spec with `Registry.resolve`, then
    calls this, so a name, a card, a run folder and a weights file load the same way everywhere."""
    model = build_network(spec, **overrides)
    if spec.weights is None:
        if require_weights:
            raise ModelError(
                f"model {spec.name!r} has no weights (train it or `csbsr models import` a checkpoint)"
            )
        return model.eval()
    path = spec.weights.path
    if not path.is_file():
        raise ModelError(f"weights file of model {spec.name!r} is missing", path)
    actual = sha256_file(path)
    if actual != spec.weights.sha256:
        raise ModelError(
            f"sha256 {actual[:12]}... differs from the card's {spec.weights.sha256[:12]}...: refused", path
        )
    load_state(model, read_checkpoint(path), spec.name, path)
    return model.eval()


def save_model(
    model: nn.Module,
    spec: ModelSpec,
    name: str,
    out_dir: str | os.PathLike[str],
    provenance: str,
    licence: str = "unknown",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write `<name>.safetensors` and the card `<name>.json` (atomically); return the card path."""
    out_dir = Path(out_dir)
    weights_path = contained(out_dir, f"{name}.safetensors", "model name")
    if weights_path.parent != out_dir:
        raise ModelError(f"model name {name!r} must be a plain name (no folders)")
    with atomic_path(weights_path) as tmp:
        save_file(saveable_state(model), str(tmp), metadata={"name": name, "arch": spec.base or spec.name})
    card = {
        "name": name,
        "arch": spec.base or spec.name,
        "description": spec.description,
        "config": json.loads(json.dumps(spec.config)),
        "weights": {
            "file": weights_path.name,
            "sha256": sha256_file(weights_path),
            "licence": licence,
            "provenance": provenance,
        },
        **(dict(extra) if extra else {}),
    }
    card_path = out_dir / f"{name}.json"
    write_text_atomic(card_path, json.dumps(card, indent=2) + "\n")
    return card_path


def user_models_dir(extra: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Where imported models go by default: the last --models-dir, else the first $CSBSR_MODELS directory,
    else ~/.csbsr/models."""
    if extra:
        return Path(extra[-1])
    dirs = model_dirs()
    return dirs[1] if len(dirs) > 1 else Path.home() / ".csbsr" / "models"


def import_checkpoint(
    checkpoint: Path,
    arch: str,
    name: str,
    out_dir: Path | None = None,
    models_dirs: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Convert an authors' joint checkpoint into a safetensors model usable by name everywhere; it goes to
    `out_dir`, else where `user_models_dir(models_dirs)` says."""
    if name in builtin_specs():
        raise ModelError(f"name {name!r} is a built-in model; choose another --name")
    spec = Registry(models_dirs).resolve(checkpoint, arch=arch)
    return save_model(
        load_model(spec),
        spec,
        name,
        out_dir or user_models_dir(models_dirs),
        provenance=f"imported from {checkpoint.name} (sha256 {spec.weights.sha256})",
        licence="as released by the checkpoint's authors",
    )
