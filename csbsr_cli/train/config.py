"""One TOML file holds every hyper-parameter of a training run; the resolved file is saved in the run dir.

Defaults are the paper's (Adam, batch 6, 224 px HR crops; lr 2e-4 / 200k iterations for SR pre-training,
2e-5 / 30k for the SR fine-tuning, 2e-5 / 150k for joint training, BC loss with a = g = 0.5, beta 0.3).
Where the authors' code differs, the key's comment says how to reproduce it. Every problem is reported
as one line naming the key: ``config.toml: optim.lr: expected a number, got 'fast'``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from ..losses.segmentation import SEG_LOSS_KINDS
from ..registry import DEFAULT_MODEL
from ..utils.schema import build, field_error

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package, if installed
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

Command = Literal["pretrain-sr", "finetune", "joint-train"]
COMMANDS: tuple[str, ...] = typing.get_args(Command)


@dataclass
class ModelConfig:
    init: str = DEFAULT_MODEL  # registry name, model card, finished run folder or weights file (+ arch)
    arch: str = ""  # registry architecture of a weights file given as `init`
    models_dirs: list[str] = field(default_factory=list)  # extra model directories (as --models-dir)
    output_name: str = ""  # name of the trained model; default: the run name
    export_dir: str = ""  # where its card + weights go; default: <run dir>/models
    export: Literal["last", "best"] = "last"  # weights exported: the final ones or the best validation


@dataclass
class DataConfig:
    # images/+masks/ folders, Khanhha root, unlabelled images, YOLO-box tile folders (images/ + labels/)
    kind: Literal["pairs", "khanhha", "images", "boxes"] = "pairs"
    train: list[str] = field(default_factory=list)  # root folders
    boxes: list[str] = field(default_factory=list)  # YOLO-box tile folders trained together with `train`
    box_fraction: float = 0.5  # share of the training samples drawn from `boxes` (when both are given)
    box_positive_fraction: float = 0.5  # of those, the share from tiles with at least one box
    box_presentation: Literal["lr", "hr", "both"] = "both"  # tile as the LR input, as an HR image, or either
    box_val: list[str] = field(default_factory=list)  # box folders scored at validation (whole tiles as LR)
    box_val_free: int = 24  # box-free validation tiles scored besides every tile with a box
    coco: list[str] = field(default_factory=list)  # COCO instance files (e.g. corrected segment output)
    coco_images: str = ""  # folder their file_names are relative to (default: each COCO file's folder)
    coco_fraction: float = 0.25  # share of the training samples drawn from the COCO-labelled frames
    padding: Literal["zero", "reflect"] = "reflect"  # blur border of the synthetic LR (authors: zero)
    split_csv: str = ""  # CSV with stem[, dataset], split columns (e.g. the dev set's split.csv)
    train_split: str = "train"
    val_split: str = "val"
    val: list[str] = field(default_factory=list)  # explicit validation roots (else the CSV, else a fraction)
    val_fraction: float = 0.05  # the authors' random 95/5 split of Khanhha train/
    val_max: int = 0  # at most this many validation images (0: all)
    hr_crop: int = 224
    val_crop: int = 0  # HR crop of the validation images (0: hr_crop)
    workers: int = 2
    skip_bad: bool = False  # skip unreadable / mismatched files (listed) instead of stopping
    clamp: bool = True  # clamp the synthetic LR to [0, 1] (the authors' training LR is not clamped)
    quantize: bool = True  # round the LR to 8-bit levels, like the saved test LR PNGs
    sigma: tuple[float, float] = (0.2, 4.0)  # Gaussian kernel standard deviations


@dataclass
class OptimConfig:
    lr: float = 2e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    batch_size: int = 6  # per process; the global batch is batch_size * accum_steps * world size
    accum_steps: int = 1
    iterations: int = 150_000
    schedule: Literal["constant", "cosine"] = "constant"  # the authors: constant (SCHEDULER=False)
    min_lr_ratio: float = 0.0  # cosine: final lr / lr
    grad_clip: float = 0.0  # max gradient norm (0: off)


@dataclass
class LossConfig:
    seg: str = "auto"  # auto (segmenter's default_loss, else bc), bc, gbc, combo, dice, gdice, wce, focal-iou
    alpha: float = 0.5  # Boundary weight in Eq. 3 (the paper's a)
    alpha_schedule: Literal["fixed", "authors"] = "fixed"  # authors: a = 0 then +0.01 per epoch up to 0.99
    alpha_step: float = 0.01
    alpha_every: int = 0  # iterations between steps (0: one epoch, n_train // global batch + 1)
    alpha_max: float = 0.99
    gamma: float = 0.5  # WCE share of the Dice/WCE pair (the paper's g)
    class_weights: tuple[float, float] | Literal["frequency"] = (1.0, 1.0)  # (crack, background) for WCE
    aux_weight: float = 0.4
    focal_alpha: float = 1.0
    focal_gamma: float = 2.0
    sr: Literal["auto", "kbpn", "l1"] = "auto"  # auto: kbpn for KBPN, l1 for DBPN
    sr_hr_weight: float = 0.4
    sr_lr_weight: float = 0.4
    sr_kernel_weight: float = 0.2  # the authors' typo made this 0
    box: Literal["projection", "ignore"] = "projection"  # inside crack boxes (see losses/boxes.py)
    box_margin: float = 8.0  # SR-grid pixels around a box that count as neither box nor negative
    box_negative_weight: float = 1.0
    box_projection_weight: float = 1.0
    box_hard_fraction: float = 0.0  # > 0: also the BCE of the hardest fraction of pixels among negatives


@dataclass
class JointConfig:
    beta: float | Literal["increasing"] = 0.3  # L = (1 - beta) L_S + beta L_C
    beta_ramp: int = (
        0  # "increasing": beta = step / beta_ramp, capped at 1 (0: all iterations; authors 140000)
    )
    joint: bool = True  # False: SR frozen, only L_C trains the segmenter ("w/o joint learning")
    blur_skip: bool = False  # train only the blur-skip branch, on top of a trained model
    crack_weight_m: float = 0.0  # m^C of w^C (paper's best 8)
    crack_weight_scale: float = 1.0  # the authors multiply w^C by 2
    fail_weight_m: float = 0.0  # m^F of w^F (paper's best 1)
    sr_loss_by_seg_loss: bool = False  # L_S weighted by L_C per sample ("w/ L_C")


@dataclass
class FinetuneConfig:
    gt_kernel_iters: int = 0  # first: KBPN fed the GT kernel, kernel predictors idle (authors 10000)
    kernel_only_iters: int = 0  # then: only the kernel predictors train (authors 10000)


@dataclass
class RunConfig:
    runs_dir: str = "runs"
    log_every: int = 50
    val_every: int = 2000
    ckpt_every: int = 2000
    max_minutes: float = 0.0  # stop gracefully (checkpoint + model) after this long (0: no limit)
    device: str = "auto"  # auto, cpu, cuda, cuda:N (torchrun sets the GPU from LOCAL_RANK)
    amp: Literal["auto", "bf16", "fp16", "off"] = (
        "auto"  # auto: bf16 (fp16 if unsupported) on CUDA, off on CPU
    )
    channels_last: bool | None = None  # None: on CUDA
    compile: bool = False
    deterministic: bool = False  # deterministic kernels (cuDNN); CPU runs differ in the last bits regardless
    sync_bn: bool = True  # SyncBatchNorm under multi-GPU DDP (CUDA only)
    progress: bool = True


@dataclass
class TrainConfig:
    command: Command
    name: str = ""
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    joint: JointConfig = field(default_factory=JointConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def labelled(self) -> bool:
        return self.command != "pretrain-sr"

    @property
    def uses_segmenter(self) -> bool:
        return self.command == "joint-train"


# The paper's per-command values; everything else is shared.
COMMAND_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "pretrain-sr": {"optim": {"lr": 2e-4, "iterations": 200_000}, "data": {"kind": "images"}},
    "finetune": {"optim": {"lr": 2e-5, "iterations": 30_000}},
    "joint-train": {"optim": {"lr": 2e-5, "iterations": 150_000}},
}

# Keys a resumed run may change: how it runs, not what it computes.
RESUMABLE = ("optim.iterations", "data.workers", "data.skip_bad", "run.")


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 1}} -> {"optim.lr": 1}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def unflatten(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """{"optim.lr": 1} -> {"optim": {"lr": 1}}."""
    out: dict[str, Any] = {}
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML (or JSON) file as a dict; one-line errors for unreadable or malformed files."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read config ({exc.strerror or exc})", path) from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc}", path) from None
    if tomllib is None:
        raise InputError(
            "reading TOML needs Python >= 3.11 or `pip install tomli` (or use a .json config)", path
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", path) from None


def make_config(
    command: str,
    data: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "config",
) -> TrainConfig:
    """Command defaults <- file contents <- CLI overrides (dotted keys), validated."""
    if command not in COMMANDS:
        raise InputError(f"unknown command {command!r} (known: {', '.join(COMMANDS)})")
    data = dict(data or {})
    if data.get("command", command) != command:
        raise field_error(source, "command", f"the file is for {data['command']!r}, not {command!r}")
    merged = _merge({"command": command, **COMMAND_DEFAULTS[command]}, data)
    if overrides:
        merged = _merge(merged, unflatten({k: v for k, v in overrides.items() if v is not None}))
    config = build(TrainConfig, merged, source)
    validate(config, source)
    return config


def _check(ok: bool, source: str, key: str, message: str) -> None:
    if not ok:
        raise field_error(source, key, message)


def validate(cfg: TrainConfig, source: str = "config") -> None:
    """Value checks the types cannot express; the first problem is reported, naming its key."""
    _check(bool(cfg.name), source, "name", "a run name is required (--name)")
    _check(
        "/" not in cfg.name and cfg.name not in (".", ".."), source, "name", f"not a plain name: {cfg.name!r}"
    )
    _check(bool(cfg.model.init), source, "model.init", "a name, card, run folder or weights file is required")
    d, o, lo, j = cfg.data, cfg.optim, cfg.loss, cfg.joint
    _check(bool(d.train or d.coco), source, "data.train", "at least one training folder is required (--data)")
    _check(
        cfg.command != "joint-train" or d.kind != "images",
        source,
        "data.kind",
        "joint-train needs masks: 'pairs' (images/ + masks/), 'khanhha' or 'boxes'",
    )
    boxed = d.kind == "boxes" or bool(d.boxes)
    _check(
        not boxed or cfg.command == "joint-train",
        source,
        "data.boxes",
        "box-labelled data trains a segmenter: joint-train only",
    )
    _check(not (d.kind == "boxes" and d.boxes), source, "data.boxes", "data.kind = 'boxes' already")
    for key in ("box_fraction", "box_positive_fraction", "coco_fraction"):
        _check(0 <= getattr(d, key) <= 1, source, f"data.{key}", "must be in [0, 1]")
    _check(not d.coco or cfg.command == "joint-train", source, "data.coco", "COCO labels train a segmenter")
    shares = (d.box_fraction if d.boxes else 0) + (d.coco_fraction if d.coco else 0)
    _check(shares <= 1, source, "data.coco_fraction", "box_fraction + coco_fraction must be <= 1")
    _check(d.box_val_free >= 0, source, "data.box_val_free", "must be >= 0")
    _check(lo.box_margin >= 0, source, "loss.box_margin", "must be >= 0")
    _check(0 <= lo.box_hard_fraction <= 1, source, "loss.box_hard_fraction", "must be in [0, 1]")
    _check(0.0 <= d.val_fraction < 1.0, source, "data.val_fraction", "must be in [0, 1)")
    for key, value in (("data.hr_crop", d.hr_crop), ("data.val_crop", d.val_crop or d.hr_crop)):
        _check(value > 0 and value % 8 == 0, source, key, f"must be a positive multiple of 8, got {value}")
    _check(d.workers >= 0 and d.val_max >= 0, source, "data.workers", "counts must be >= 0")
    _check(0 < d.sigma[0] <= d.sigma[1], source, "data.sigma", "must satisfy 0 < min <= max")
    _check(o.lr > 0, source, "optim.lr", "must be > 0")
    _check(o.batch_size >= 1, source, "optim.batch_size", "must be >= 1")
    _check(o.accum_steps >= 1, source, "optim.accum_steps", "must be >= 1")
    _check(o.iterations >= 1, source, "optim.iterations", "must be >= 1")
    _check(0 <= o.min_lr_ratio <= 1, source, "optim.min_lr_ratio", "must be in [0, 1]")
    _check(o.grad_clip >= 0 and o.weight_decay >= 0, source, "optim.grad_clip", "must be >= 0")
    _check(
        lo.seg == "auto" or lo.seg in SEG_LOSS_KINDS,
        source,
        "loss.seg",
        f"expected one of {', '.join(SEG_LOSS_KINDS)} or auto",
    )
    for key in ("alpha", "gamma", "alpha_max"):
        _check(0 <= getattr(lo, key) <= 1, source, f"loss.{key}", "must be in [0, 1]")
    _check(lo.alpha_every >= 0 and lo.alpha_step >= 0, source, "loss.alpha_every", "must be >= 0")
    if lo.class_weights != "frequency":
        _check(min(lo.class_weights) > 0, source, "loss.class_weights", "weights must be > 0")
    _check(lo.aux_weight >= 0, source, "loss.aux_weight", "must be >= 0")
    if j.beta != "increasing":
        _check(0 <= j.beta <= 1, source, "joint.beta", f"must be in [0, 1] or 'increasing', got {j.beta}")
    _check(j.beta_ramp >= 0, source, "joint.beta_ramp", "must be >= 0")
    _check(j.crack_weight_m >= 0 and j.fail_weight_m >= 0, source, "joint.crack_weight_m", "must be >= 0")
    _check(
        not (j.blur_skip and not j.joint), source, "joint.blur_skip", "cannot be combined with joint = false"
    )
    sr_weighted = j.crack_weight_m > 0 or j.fail_weight_m > 0 or j.sr_loss_by_seg_loss
    _check(
        not sr_weighted or (j.joint and not j.blur_skip),
        source,
        "joint",
        "SR-loss weights (crack_weight_m, fail_weight_m, sr_loss_by_seg_loss) need the SR net trained",
    )
    ft = cfg.finetune
    _check(
        min(ft.gt_kernel_iters, ft.kernel_only_iters) >= 0, source, "finetune.gt_kernel_iters", "must be >= 0"
    )
    r = cfg.run
    for key in ("log_every", "val_every", "ckpt_every"):
        _check(getattr(r, key) >= 0, source, f"run.{key}", "must be >= 0 (0: never)")
    _check(r.max_minutes >= 0, source, "run.max_minutes", "must be >= 0 (0: no limit)")
    # Sections that only one command reads must keep their defaults elsewhere: a silently ignored
    # `joint.beta` in a finetune run would be a reproducibility trap.
    for section, owner in (("joint", "joint-train"), ("finetune", "finetune")):
        values = getattr(cfg, section)
        if cfg.command != owner and values != type(values)():
            defaults = dataclasses.asdict(type(values)())
            changed = next(k for k, v in dataclasses.asdict(values).items() if v != defaults[k])
            raise field_error(source, f"{section}.{changed}", f"only {owner} reads it")


def check_resume(saved: TrainConfig, requested: TrainConfig, source: str) -> None:
    """A resumed run must compute the same thing; only RESUMABLE keys may differ."""
    old, new = flatten(to_dict(saved)), flatten(to_dict(requested))
    for key in sorted(old):
        if old[key] != new.get(key) and not key.startswith(RESUMABLE):
            raise field_error(
                source, key, f"cannot change on --resume (the run was started with {old[key]!r})"
            )


# --- writing: a tiny TOML emitter for the resolved config (tables of scalars and arrays only) ---------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def dumps(config: TrainConfig) -> str:
    """The config as TOML that `make_config` reads back to an equal config (None values are omitted)."""
    data = to_dict(config)
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for section, values in data.items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def load(path: Path, command: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    return make_config(command, read_config_file(path), overrides, source=str(path))
