"""Which model a run starts from, which of its parameters train, and how it is exported by name.

A run starts from any model reference ``Registry.resolve`` reads (a name, its weights or a random init for a
bare architecture; a card; a finished run folder; a weights file with ``model.arch``). It ends with
safetensors + a model card, so every subcommand can use the trained model by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

import torch
from torch import nn

from ..errors import ModelError
from ..registry import ModelSpec, Registry, arch_with, build_network, builtin_specs
from ..weights import load_model
from .config import TrainConfig

BLUR_SKIP_TYPE = "pspnet-blurskip"
BLUR_SKIP_PREFIX = "segmentation_model.blur_skip."
CARD_METADATA = ("scale", "divisor", "halo", "global_context", "tile", "overlap", "threshold", "manifest")


def resolve_init(cfg: TrainConfig, registry: Registry) -> tuple[ModelSpec, nn.Module]:
    """The start model and its spec, by the rule every command shares (`Registry.resolve`), weights loaded
    and verified; ``model.arch`` names the architecture of a bare weights file."""
    spec = registry.resolve(cfg.model.init, arch=cfg.model.arch or None)
    return spec, load_model(spec)


class StartModel(NamedTuple):
    spec: ModelSpec
    model: nn.Module
    random_init: bool  # the start model had no weights


def start_model(cfg: TrainConfig) -> StartModel:
    """The run's start model (with a new blur-skip branch for --blur-skip), seeded so that new parts are
    initialised identically on every rank and in every run."""
    torch.manual_seed(cfg.seed)
    spec, model = resolve_init(cfg, Registry(cfg.model.models_dirs))
    random_init = spec.weights is None
    if cfg.command == "joint-train" and cfg.joint.blur_skip:
        spec, model = with_blur_skip(spec, model)
    name = cfg.model.output_name or cfg.name
    if name in builtin_specs():
        raise ModelError(f"{name!r} is a built-in model name; choose another model.output_name / --name")
    return StartModel(spec, model, random_init)


def with_blur_skip(spec: ModelSpec, model: nn.Module) -> tuple[ModelSpec, nn.Module]:
    """The same model with a (new, randomly initialised) blur-skip branch on its PSPNet, for `--blur-skip`."""
    seg = dict(spec.config["segmenter"])
    if seg["type"] == BLUR_SKIP_TYPE:
        return spec, model  # continue training an existing branch
    if seg["type"] != "pspnet":
        raise ModelError(f"the blur skip needs a PSPNet segmenter; {spec.name!r} has {seg['type']!r}")
    if spec.sr_type != "kbpn":
        raise ModelError(
            f"the blur skip needs an SR net that estimates the kernel; {spec.name!r} uses {spec.sr_type}"
        )
    seg.update(type=BLUR_SKIP_TYPE, kernel_size=int(spec.config["sr"].get("kernel_size", 21)))
    base = arch_with(segmenter_type=BLUR_SKIP_TYPE)
    target = replace(spec, config={**spec.config, "segmenter": seg}, base=base, weights=None)
    new = build_network(target)
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    stray = [k for k in missing if not k.startswith(BLUR_SKIP_PREFIX)]
    if stray or unexpected:
        raise ModelError(f"cannot add a blur skip to {spec.name!r}: keys differ ({(stray + unexpected)[:4]})")
    return target, new


def kernel_parameter_names(sr_model: nn.Module) -> list[str]:
    """KBPN's kernel predictors (the initial one and each stage's refinement): what 'kernel-only' trains."""
    return [
        n for n, _ in sr_model.named_parameters() if "predictor" in n.split(".") or ".kernel_predictor." in n
    ]


def trainable_module(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """The part of the joint model the run optimises; everything else is frozen (requires_grad False)."""
    if cfg.command in ("pretrain-sr", "finetune"):
        return model.sr_model
    if cfg.joint.blur_skip:
        return model.segmentation_model.blur_skip
    return model if cfg.joint.joint else model.segmentation_model


def freeze_all_but(model: nn.Module, trainable: nn.Module) -> list[nn.Parameter]:
    model.requires_grad_(False)
    trainable.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def set_train_modes(model: nn.Module, cfg: TrainConfig) -> None:
    """Train mode, except that a frozen segmenter around the blur skip stays in eval mode: frozen means its
    BatchNorm statistics do not drift either (the authors left them in train mode)."""
    model.train()
    if cfg.command == "joint-train" and cfg.joint.blur_skip:
        model.segmentation_model.eval()
        model.segmentation_model.blur_skip.train()


def resolve_seg_loss(kind: str, segmenter: nn.Module) -> tuple[str, tuple[float, ...] | None]:
    """``loss.seg`` for this segmenter: (loss kind, per-side weights or None).

    "auto" is the segmenter's ``default_loss`` class attribute, else "bc". A segmenter declaring
    ``side_weights`` (SCNet) gets them with its "focal-iou" loss; every other case keeps the single
    ``loss.aux_weight`` on the summed side losses.
    """
    if kind == "auto":
        kind = getattr(segmenter, "default_loss", None) or "bc"
    side_weights = getattr(segmenter, "side_weights", None)
    if kind != "focal-iou" or side_weights is None:
        return kind, None
    return kind, tuple(float(w) for w in side_weights)


def card_extra(spec: ModelSpec, name: str, how: str, validation: Mapping[str, Any]) -> dict[str, Any]:
    """The exported card's metadata: the start model's tiling, the start model's licence (its weights' terms
    bind what is trained from them), but its own description and, when validation measured one, its own
    best threshold (IoU_max) instead of the start model's."""
    extra: dict[str, Any] = {key: getattr(spec, key) for key in CARD_METADATA}
    if "IoU_max_threshold" in validation:
        extra["threshold"] = float(validation["IoU_max_threshold"])
    return extra | {
        "description": f"{name}: trained by csbsr from {spec.name} ({how})",
        "licence": spec.licence,
    }


def weights_licence(spec: ModelSpec) -> str:
    """The licence of weights trained from `spec`: its weights' own, when it had any."""
    if spec.weights is None:
        return "trained by csbsr; subject to the licence of its training data"
    return f"{spec.weights.licence} (inherited from {spec.name}); subject also to its training data's"
