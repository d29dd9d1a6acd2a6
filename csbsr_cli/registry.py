"""The one model registry every subcommand shares: a name -> builder + metadata (as torchvision's
``get_model``/``Weights.meta`` and timm's ``create_model``/``pretrained_cfg``).

Built-in entries are architectures (no weights). Model cards (JSON) in the model directories add
entries or attach weights to a built-in name: the shipped zoo (``models/``, installed as
``csbsr_cli/zoo``), then ``$CSBSR_MODELS`` (``os.pathsep``-separated), then ``--models-dir``; a later
directory overrides an earlier one. Network modules are imported only when a model is built or its
divisor read (declared by the classes, never written here).
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, ModelError
from .utils.digest import sha256_file
from .utils.folders import contained
from .utils.schema import checked, field_error

if TYPE_CHECKING:  # torch only when a network is built: `csbsr --help` and `models list` start at once
    from torch import nn

# Component builders, imported lazily: "module:Class" inside csbsr_cli.nets.
SR_NETS: dict[str, str] = {
    "kbpn": "kbpn:KBPN",
    "dbpn": "dbpn:DBPN",
    "identity": "identity:IdentitySR",
    "bicubic": "bicubic:BicubicSR",
}
SEGMENTERS: dict[str, str] = {
    "pspnet": "pspnet:PSPNet",
    "pspnet-blurskip": "pspnet:PSPNetBlurSkip",
    "unet16": "unet16:UNet16",
    "hrnet-ocr": "hrnet_ocr:HRNetOCR",
    "crackformer": "crackformer:CrackFormer",
    "scnet": "scnet:SCNet",
}

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
CARD_SUFFIX = ".json"
WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt")
RESULT_FILE = "result.json"  # written by a finished training run; names the model card it exported


@dataclass(frozen=True)
class WeightsSpec:
    """A weights file beside its card; loading refuses a file whose sha256 differs."""

    path: Path
    sha256: str
    licence: str = "unknown"
    provenance: str = ""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: Mapping[str, Any]  # {"sr": {"type": ..., **kwargs}, "segmenter": {...}, "sr_norm": ...}
    description: str = ""
    scale: int = 4
    card_divisor: int | None = None  # a card's own LR divisor; None: derived from the classes (`divisor`)
    halo: int | None = None  # LR-pixel halo for exact tiling of local models; None when context is global
    global_context: bool = True  # a GAP kernel estimate or pooling head: tiles are blended, not cut exactly
    tile: int = 112  # default LR tile side
    overlap: int | None = None  # LR overlap at the default tile (None: the stitching rule's, tiling.py)
    threshold: float = 0.5  # default crack-probability threshold
    # The shape step's defaults (infer/shape.py): minimum skeleton length in input-frame pixels and
    # minimum elongation (length / mean width) of a kept piece; 0 keeps every piece.
    min_length: float = 0.0
    min_elongation: float = 0.0
    manifest: str | None = None  # the authors' state-dict manifest this entry is weight-compatible with
    source: str = "built-in"
    licence: str = "Apache-2.0 (code); weights: see card"
    metrics: Mapping[str, Any] = field(default_factory=dict)
    weights: WeightsSpec | None = None
    base: str | None = None  # for cards: the built-in entry they derive from

    @property
    def divisor(self) -> int:
        """LR sides must be multiples of this (the tiler pads): what the segmenter class declares for its
        input (the SR image, `scale` times the LR) and the SR class for its own, unless a card sets one."""
        if self.card_divisor is not None:
            return self.card_divisor
        return network_divisor(self.sr_type, self.segmenter_type, self.scale)

    @property
    def sr_type(self) -> str:
        return str(self.config["sr"]["type"])

    @property
    def segmenter_type(self) -> str:
        return str(self.config["segmenter"]["type"])


_PAPER_KBPN = {"type": "kbpn", "scale": 4, "num_stages": 4, "width": 128, "k_est": 7, "kernel_size": 21}

_LITE_KBPN = {
    "type": "kbpn",
    "scale": 4,
    "num_stages": 2,
    "width": 16,
    "feat_widths": (16, 16, 16, 16),
    "k_est": 7,
    "kernel_size": 21,
    "kernel_window": 64,
    "sft_hidden": 32,
}
_LITE_PSPNET = {
    "type": "pspnet",
    "base_width": 12,
    "blocks": (1, 1, 1, 1),
    "psp_out": 64,
    "up_widths": (32, 16, 16),
    "aux_width": 16,
}

BUILTINS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="csbsr-pspnet",
        description="CSBSR w/ PSPNet (the paper's main model): KBPN x4 + PSPNet on dilated ResNet-34",
        config={"sr": _PAPER_KBPN, "segmenter": {"type": "pspnet"}, "sr_norm": "instance"},
        manifest="manifest_csbsr_pspnet.json",
    ),
    ModelSpec(
        name="csbsr-pspnet-blurskip",
        description="CSBSR w/ PSPNet and the blur skip (kernel-conditioned SFT blocks on the decoder)",
        config={"sr": _PAPER_KBPN, "segmenter": {"type": "pspnet-blurskip"}, "sr_norm": "instance"},
        manifest="manifest_csbsr_pspnet_blurskip.json",
    ),
    ModelSpec(
        name="csbsr-unet16",
        description="CSBSR w/ U-Net16 (VGG16 encoder, pixel-shuffle decoder, the shipped config's value)",
        config={"sr": _PAPER_KBPN, "segmenter": {"type": "unet16", "upsample": "pixel_shuffle"}},
        manifest="manifest_csbsr_unet16.json",
    ),
    ModelSpec(
        name="cssr-pspnet",
        description="CSSR: DBPN Net_4 x4 (no kernel estimation) + PSPNet",
        config={"sr": {"type": "dbpn", "scale": 4}, "segmenter": {"type": "pspnet"}, "sr_norm": "instance"},
        manifest="manifest_cssr_pspnet.json",
    ),
    ModelSpec(
        name="csbsr-hrnet-ocr",
        description="CSBSR w/ HRNet-W48 + OCR (main + aux head)",
        config={"sr": _PAPER_KBPN, "segmenter": {"type": "hrnet-ocr"}, "sr_norm": "instance"},
        manifest="manifest_csbsr_hrnet_ocr.json",
    ),
    ModelSpec(
        name="csbsr-crackformer",
        description="CSBSR w/ CrackFormer (fused output + 5 side outputs); SR sides multiples of 16",
        config={"sr": _PAPER_KBPN, "segmenter": {"type": "crackformer"}, "sr_norm": "instance"},
        manifest="manifest_csbsr_crackformer.json",
    ),
    ModelSpec(
        name="csbsr-scnet",
        description="KBPN x4 + SCNet (scale-space attention, Sobel edge prior); no published weights",
        config={"sr": _PAPER_KBPN, "segmenter": {"type": "scnet"}, "sr_norm": "instance"},
    ),
    ModelSpec(
        name="scnet",
        description="SCNet alone on HR images (no SR, scale 1); no published weights",
        config={"sr": {"type": "identity"}, "segmenter": {"type": "scnet"}, "sr_norm": "instance"},
        scale=1,
        tile=448,
    ),
    ModelSpec(
        name="csbsr-lite",
        description="Light KBPN + light PSPNet for CPUs: the default model (weights trained by csbsr)",
        config={"sr": _LITE_KBPN, "segmenter": _LITE_PSPNET, "sr_norm": "instance"},
        # 160 px tiles with a fifth overlap: 60 windows per 1280x720 frame, 1.7x the frame's pixels
        # (half-tile blending would be 3.5x); see the model card for the seam check on trained weights.
        tile=160,
        overlap=32,
    ),
    ModelSpec(
        name="bicubic-pspnet-lite",
        description="Bicubic x4 + csbsr-lite's PSPNet: the no-SR-learning baseline of csbsr-lite's ablation",
        config={"sr": {"type": "bicubic", "scale": 4}, "segmenter": _LITE_PSPNET, "sr_norm": "instance"},
        tile=160,
        overlap=32,
    ),
    ModelSpec(
        name="pspnet-lite",
        description="csbsr-lite's PSPNet alone on HR images (no SR, scale 1): the ablation's upper bound",
        config={"sr": {"type": "identity"}, "segmenter": _LITE_PSPNET, "sr_norm": "instance"},
        scale=1,
        tile=256,
    ),
)

DEFAULT_MODEL = "csbsr-lite"


def _import_component(table: Mapping[str, str], kind: str, type_name: str) -> type[nn.Module]:
    if type_name not in table:
        raise ModelError(f"unknown {kind} type {type_name!r} (known: {', '.join(sorted(table))})")
    module_name, cls_name = table[type_name].split(":")
    module = importlib.import_module(f"{__package__}.nets.{module_name}")
    return getattr(module, cls_name)


@functools.cache
def network_divisor(sr_type: str, segmenter_type: str, scale: int) -> int:
    """The LR divisor of an SR net + segmenter pair, from the classes' `divisor` attributes (1 when a class
    declares none): the segmenter's divisor d needs LR sides that are multiples of d / gcd(d, scale)."""
    sr_div = getattr(_import_component(SR_NETS, "SR network", sr_type), "divisor", 1)
    seg_div = getattr(_import_component(SEGMENTERS, "segmenter", segmenter_type), "divisor", 1)
    return math.lcm(sr_div, seg_div // math.gcd(seg_div, scale))


def build_network(spec: ModelSpec, **overrides: Any) -> nn.Module:
    """Build the joint model of `spec` with random weights; `overrides` go to the SR net (fast_kernel)."""
    from .nets.joint import JointModel

    sr_cfg = dict(spec.config["sr"])
    seg_cfg = dict(spec.config["segmenter"])
    sr_cls = _import_component(SR_NETS, "SR network", sr_cfg.pop("type"))
    seg_cls = _import_component(SEGMENTERS, "segmenter", seg_cfg.pop("type"))
    return JointModel(
        sr_cls(**sr_cfg, **overrides),
        seg_cls(**seg_cfg),
        sr_norm=spec.config.get("sr_norm", "instance"),
        kernel_size=int(spec.config["sr"].get("kernel_size", 21)),
    )


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class WeightsCard:
    """A card's ``weights`` object."""

    file: str  # beside the card (a relative path that stays inside the card's folder)
    sha256: str
    licence: str = "unknown"
    provenance: str = ""


@dataclass
class Card:
    """Every key a model card may hold, typed as in the training config; a key left out keeps the arch's
    value (ModelSpec documents each). Unknown keys (a misspelt ``treshold``) are errors, not ignored."""

    name: str
    arch: str
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    scale: int = 4
    divisor: int = 2
    halo: int | None = None
    global_context: bool = True
    tile: int = 112
    overlap: int | None = None
    threshold: float = 0.5
    min_length: float = 0.0
    min_elongation: float = 0.0
    manifest: str | None = None
    licence: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    weights: WeightsCard | None = None
    training: dict[str, Any] = field(default_factory=dict)  # what a training run exported (its step)


CONFIG_SECTIONS = ("sr", "segmenter", "sr_norm")
_POSITIVE = ("scale", "divisor", "tile")


def _check_card(card: dict[str, Any], source: str) -> None:
    """Value checks the types cannot express, one line naming the key."""
    name = card["name"]
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise field_error(source, "name", f"not a plain name: {name!r}")
    for key in _POSITIVE:
        if key in card and card[key] < 1:
            raise field_error(source, key, f"must be >= 1, got {card[key]}")
    for key in ("halo", "overlap", "min_length", "min_elongation"):
        if card.get(key) is not None and card[key] < 0:
            raise field_error(source, key, f"must be >= 0, got {card[key]}")
    if not 0.0 <= card.get("threshold", 0.5) <= 1.0:
        raise field_error(source, "threshold", f"must be in [0, 1], got {card['threshold']}")
    unknown = sorted(set(card.get("config", {})) - set(CONFIG_SECTIONS))
    if unknown:
        raise field_error(
            source, f"config.{unknown[0]}", f"unknown key (known: {', '.join(CONFIG_SECTIONS)})"
        )
    for section in ("sr", "segmenter"):
        if not isinstance(card.get("config", {}).get(section, {}), dict):
            raise field_error(source, f"config.{section}", "expected an object")
    weights = card.get("weights")
    if weights is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", weights.sha256):
        raise field_error(source, "weights.sha256", "expected 64 hex digits")


def read_card(card_path: Path) -> dict[str, Any]:
    """A model card's keys, checked (see Card); one-line errors naming the file and the key."""
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"unreadable model card ({exc})", card_path) from None
    if not isinstance(data, dict):
        raise ModelError("a model card is a JSON object", card_path)
    try:
        card = checked(Card, data, str(card_path))
        _check_card(card, str(card_path))
    except InputError as exc:
        raise ModelError(str(exc)) from None
    return card


def spec_from_card(card_path: Path, known: Mapping[str, ModelSpec]) -> ModelSpec:
    """Read one model card. A card names a built-in `arch` and may override its config and metadata."""
    card = read_card(card_path)
    base = known.get(card["arch"])
    if base is None:
        raise ModelError(f"arch: unknown architecture {card['arch']!r}", card_path)
    w = card.pop("weights", None)
    weights = None
    if w is not None:
        weights = WeightsSpec(
            path=contained(card_path.parent, w.file, "weights file").resolve(),
            sha256=w.sha256.lower(),
            licence=w.licence,
            provenance=w.provenance,
        )
    meta = {k: v for k, v in card.items() if k not in ("name", "arch", "config", "training", "divisor")}
    if "divisor" in card:
        meta["card_divisor"] = card["divisor"]
    return replace(
        base,
        name=card["name"],
        config=_deep_merge(base.config, card.get("config", {})),
        weights=weights,
        base=base.name if base.base is None else base.base,
        source=str(card_path),
        **meta,
    )


def arch_with(segmenter_type: str) -> str:
    """The first built-in entry with this segmenter: the `arch` of a card whose training changed the segmenter
    (the blur skip), so that no other module hard-codes a model name."""
    for spec in BUILTINS:
        if spec.segmenter_type == segmenter_type:
            return spec.name
    raise ModelError(f"no built-in model has a {segmenter_type!r} segmenter")


def builtin_specs() -> dict[str, ModelSpec]:
    """The built-in architectures by name: what a card's `arch` refers to (a zoo card may shadow a name)."""
    return {s.name: s for s in BUILTINS}


def _is_card(path: Path) -> bool:
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(card, dict) and "arch" in card and "name" in card


def folder_card(folder: Path) -> Path:
    """The model card a folder stands for: a finished training run's (its result.json names it, wherever
    it was exported), else the one card in the folder or in its models/ subfolder (also a run folder that
    was moved since, its result.json naming the old place)."""
    result = folder / RESULT_FILE
    if result.is_file():
        try:
            card = Path(json.loads(result.read_text(encoding="utf-8"))["model_card"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ModelError("unreadable training result (no model_card named)", result) from None
        if card.is_file():
            return card
    cards = [p for d in (folder, folder / "models") for p in sorted(d.glob(f"*{CARD_SUFFIX}")) if _is_card(p)]
    if len(cards) != 1:
        raise ModelError(
            f"expected one model card (*.json with 'arch') in the folder, found {len(cards)}", folder
        )
    return cards[0]


def weights_file_spec(arch: ModelSpec, path: Path) -> ModelSpec:
    """`arch` with the weights of a file no card describes; its sha256 is taken now, so loading, outputs and
    exported cards record which file it was."""
    weights = WeightsSpec(path.resolve(), sha256_file(path), provenance=f"weights file {path.name}")
    return replace(arch, weights=weights, source=str(path))


def model_dirs(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Model directories in increasing priority: the zoo, $CSBSR_MODELS, then explicit ones."""
    dirs = [ZOO_DIR]
    env = os.environ.get("CSBSR_MODELS", "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path(p) for p in extra]
    return dirs


class Registry:
    """All models known for one set of model directories. Cheap: reads small JSON cards only."""

    def __init__(self, extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> None:
        builtins = builtin_specs()
        self.specs: dict[str, ModelSpec] = dict(builtins)
        self.problems: list[str] = []  # cards skipped, one line each: one bad card never stops a command
        for directory in model_dirs(extra_dirs):
            if directory.is_dir():
                for card in sorted(directory.glob(f"*{CARD_SUFFIX}")):
                    try:
                        spec = spec_from_card(card, builtins)
                    except ModelError as exc:
                        self.problems.append(f"skipped model card {exc}")
                        continue
                    self.specs[spec.name] = spec

    def names(self) -> list[str]:
        return sorted(self.specs)

    def resolve(self, ref: str | os.PathLike[str], arch: str | None = None) -> ModelSpec:
        """The one rule every command (segment, evaluate, export, import, training's --init) reads a model
        reference by: a registry name; a model card (.json); a folder (see `folder_card`); or a weights file
        (.safetensors / .pth / .pt) with the name of its architecture `arch`."""
        ref = str(ref)
        if ref in self.specs:
            return self.get(ref)
        path = Path(ref)
        if path.is_dir():
            path = folder_card(path)
        elif path.suffix in WEIGHTS_SUFFIXES:
            if not path.is_file():
                raise ModelError("weights file not found", path)
            if arch is None:
                raise ModelError(
                    "a weights file needs a model card: import it with `csbsr models import --arch A`"
                    " (training's --init takes it with --arch)",
                    path,
                )
            return weights_file_spec(self.architecture(arch), path)
        elif not path.is_file():
            return self.get(ref)  # neither a name nor a file: the error lists the known names
        if path.suffix != CARD_SUFFIX:
            raise ModelError(
                "give a model card (.json); import a checkpoint first with `csbsr models import`", path
            )
        return spec_from_card(path, builtin_specs())

    def architecture(self, name: str) -> ModelSpec:
        """What a bare weights file is read as: the built-in entry itself rather than a card shadowing its
        name (the zoo's csbsr-lite, whose weights, threshold and licence describe other weights), else a
        card."""
        return builtin_specs().get(name) or self.get(name)

    def get(self, name: str) -> ModelSpec:
        try:
            return self.specs[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            skipped = f"; {len(self.problems)} card(s) skipped: {self.problems[0]}" if self.problems else ""
            raise ModelError(
                f"unknown model {name!r} ({hint}known: {', '.join(self.names())}){skipped}"
            ) from None


def get_spec(name: str, models_dirs: Iterable[str | os.PathLike[str]] = ()) -> ModelSpec:
    return Registry(models_dirs).get(name)
