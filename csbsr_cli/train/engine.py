"""One training loop for the three steps of the paper: SR pre-training, SR fine-tuning, joint training.

``train(config)`` runs (or resumes) a run in ``runs/<command>/<name>``: resolved config, metrics.jsonl,
periodic validation on the held-out split, ``last.pt`` (resume) and ``best.safetensors`` checkpoints, and
at the end the model exported by name (safetensors + card). It works the same in one process and under
``torchrun`` (DDP; rank 0 logs and writes). Reproducibility: batches are a function of the step
(``data.StreamSampler``) and every other random draw is seeded from (seed, step, micro-batch slot), so an
interrupted-and-resumed run ends with the same weights as an uninterrupted one, and W DDP ranks compute
what one process with W accumulation steps computes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.console import Console
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset

from .. import __version__
from ..errors import CsbsrError, InputError, ModelError
from ..infer.device import autocast, resolve_precision, versions
from ..losses.boxes import BoxLossConfig, box_loss
from ..losses.segmentation import SegLossConfig, SegmentationLoss, frequency_weights
from ..losses.sr import SRLoss, SRLossConfig
from ..losses.weights import sr_pixel_weight, weight_by_seg_loss
from ..registry import ModelSpec, weights_file_spec
from ..utils.atomic import atomic_path, write_text_atomic
from ..utils.folders import folder_lock
from ..weights import load_model, save_model, saveable_state
from . import checkpoint, distributed
from .config import TrainConfig, dumps
from .data import EpochIndexed, StreamSampler, TrainData, build_data, crack_fraction, ignore_sigint
from .models import (
    card_extra,
    freeze_all_but,
    kernel_parameter_names,
    resolve_seg_loss,
    set_train_modes,
    start_model,
    trainable_module,
    weights_licence,
)
from .progress import TrainProgress
from .rundir import METRICS_FILE, PROBLEMS_FILE, prepare_run_dir, run_dir_of, write_result
from .schedules import Phase, beta_at, boundary_alpha, finetune_phase, lr_factor
from .stopping import StopSignals, TrainingDiverged, TrainingStopped
from .validation import evaluate, evaluate_boxes

StepCallback = Callable[[int, nn.Module, dict[str, float]], None]


@dataclass
class RunResult:
    run_dir: Path
    status: Literal["completed", "time-limit"]
    step: int
    model_name: str
    model_card: Path | None  # None on ranks other than 0
    validation: dict[str, float] = field(default_factory=dict)  # the last one
    best: dict[str, Any] = field(default_factory=dict)


def step_seed(seed: int, step: int, slot: int) -> int:
    """The torch seed of one micro-batch slot of a step (dropout, anything drawn from the global RNG)."""
    return int(np.random.SeedSequence([seed, step, slot]).generate_state(1, np.uint64)[0] >> 1)


class StepModule(nn.Module):
    """What DDP wraps: the joint model's forward as training needs it (SR, then optionally segmentation)."""

    def __init__(self, model: nn.Module, train_sr: bool) -> None:
        super().__init__()
        self.model = model
        self.train_sr = train_sr

    def forward(self, lr: Tensor, gt_kernel: Tensor | None, segment: bool):  # noqa: ANN201 - tuple of 4
        with torch.set_grad_enabled(self.train_sr and torch.is_grad_enabled()):
            sr, kernel = self.model.sr_model(lr, gt_kernel)
        if not segment:
            return sr, kernel, None, None
        seg = self.model.segment(sr, kernel)
        return sr, kernel, seg.prob, seg.aux


class Trainer:
    """The state of one run on one rank; ``run()`` is the loop."""

    def __init__(
        self,
        cfg: TrainConfig,
        info: distributed.DistInfo,
        run_dir: Path,
        spec: ModelSpec,
        model: nn.Module,
        data: TrainData,
        resume_state: dict[str, Any] | None,
        on_step: StepCallback | None,
    ) -> None:
        self.cfg, self.info, self.run_dir, self.on_step = cfg, info, run_dir, on_step
        self.device = info.device
        self.dtype = resolve_precision(cfg.run.amp, self.device, training=True)
        self.channels_last = (
            cfg.run.channels_last if cfg.run.channels_last is not None else self.device.type == "cuda"
        )
        self.spec = spec
        self.output_name = cfg.model.output_name or cfg.name
        self.kernel_names = kernel_parameter_names(model.sr_model)
        uses_kernel_phases = cfg.finetune.gt_kernel_iters or cfg.finetune.kernel_only_iters
        if uses_kernel_phases and not self.kernel_names:
            raise ModelError(
                f"finetune kernel phases need an SR net that estimates kernels; {spec.name!r} has none"
            )

        self.train_sr = cfg.command != "joint-train" or (cfg.joint.joint and not cfg.joint.blur_skip)
        self.segment = cfg.command == "joint-train"
        freeze_all_but(model, trainable_module(model, cfg))
        if info.distributed and cfg.run.sync_bn and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        set_train_modes(model, cfg)
        self.model = model

        o = cfg.optim
        self.optimizer = torch.optim.Adam(
            self.params,
            lr=o.lr,
            betas=o.betas,
            eps=o.eps,
            weight_decay=o.weight_decay,
            fused=self.device.type == "cuda",
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

        self.n_train = len(data.train)
        self.sampler = StreamSampler(
            self.n_train, cfg.seed, o.batch_size, info.rank, info.world_size, o.accum_steps
        )
        self.steps_per_epoch = self.n_train // self.sampler.global_batch + 1
        sr_kind = ("kbpn" if spec.sr_type == "kbpn" else "l1") if cfg.loss.sr == "auto" else cfg.loss.sr
        if sr_kind == "kbpn" and spec.sr_type != "kbpn":
            raise ModelError(
                f"loss.sr = 'kbpn' needs a kernel-estimating SR net; {spec.name!r} uses {spec.sr_type}"
            )
        self.sr_loss = SRLoss(
            SRLossConfig(
                kind=sr_kind,
                hr_weight=cfg.loss.sr_hr_weight,
                lr_weight=cfg.loss.sr_lr_weight,
                kernel_weight=cfg.loss.sr_kernel_weight,
                scale=spec.scale,
            )
        )
        self.class_weights = (
            frequency_weights(crack_fraction(data.train_samples))
            if cfg.loss.class_weights == "frequency"
            else tuple(cfg.loss.class_weights)
        )
        lo = cfg.loss
        seg_kind, side_weights = resolve_seg_loss(lo.seg, model.segmentation_model)
        self.seg_loss = SegmentationLoss(
            SegLossConfig(
                seg_kind,
                lo.alpha,
                lo.gamma,
                self.class_weights,
                lo.aux_weight,
                lo.focal_alpha,
                lo.focal_gamma,
                side_weights=side_weights,
            )
        )

        self.box_config = BoxLossConfig(
            lo.box, lo.box_margin, lo.box_negative_weight, lo.box_projection_weight, lo.box_hard_fraction
        )

        self.step = 0
        self.best: dict[str, Any] = {}
        self.validation: dict[str, float] = {}
        if resume_state is not None:
            self._restore(resume_state)
        self.sampler.start_step = self.step
        self.data = data
        self.phase: Phase | None = None

        self.step_module: nn.Module = StepModule(model, self.train_sr)
        if info.distributed:
            self.step_module = DDP(
                self.step_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(uses_kernel_phases),
            )
        if cfg.run.compile:
            self.step_module = torch.compile(self.step_module)

    # --- state ---------------------------------------------------------------------------------------------

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best = dict(state["best"])
        self.validation = dict(state["validation"])

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best": self.best,
            "validation": self.validation,
            "config": dumps(self.cfg),
            "world_size": self.info.world_size,
        }

    def save_checkpoint(self) -> None:
        if self.info.is_main:
            checkpoint.save(self.run_dir / checkpoint.LAST, self._state())
        distributed.barrier(self.info)

    def _save_best(self) -> None:
        with atomic_path(self.run_dir / checkpoint.BEST) as tmp:
            save_file(saveable_state(self.model), str(tmp), metadata={"step": str(self.step)})

    def log(self, record: dict[str, Any]) -> None:
        if self.info.is_main:
            with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    # --- one step ------------------------------------------------------------------------------------------

    def _set_phase(self, step: int) -> None:
        """Finetune phases toggle which SR parameters train (the optimiser skips those without gradient)."""
        phase = finetune_phase(step, self.cfg)
        if phase == self.phase:
            return
        self.phase = phase
        if self.cfg.command != "finetune":
            return
        kernel = set(self.kernel_names)
        for name, p in self.model.sr_model.named_parameters():
            p.requires_grad_(phase != "kernel-only" or name in kernel)

    def _losses(self, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        cfg, dev = self.cfg, self.device
        lr = batch["lr"].to(dev, non_blocking=True)
        lr_in = lr.contiguous(memory_format=torch.channels_last) if self.channels_last else lr
        hr = batch["hr"].to(dev, non_blocking=True)
        gt_kernel = batch["kernel"].to(dev, non_blocking=True)
        mask = batch["mask"].to(dev, non_blocking=True) if self.segment else None
        with autocast(dev, self.dtype):
            sr, kernel, prob, aux = self.step_module(
                lr_in, gt_kernel if self.phase == "gt-kernel" else None, self.segment
            )
        # Losses in float32, outside autocast (BCE-type terms refuse half precision).
        parts: dict[str, Tensor] = {}
        if self.segment:
            parts |= self._seg_losses(prob.float(), None if aux is None else aux.float(), mask, batch, step)
        if not self.train_sr:
            return parts["seg"].mean(), parts
        j = cfg.joint
        weight = (
            sr_pixel_weight(mask, prob, j.crack_weight_m, j.fail_weight_m, j.crack_weight_scale)
            if self.segment
            else None
        )
        parts |= self.sr_loss(sr, hr, lr, kernel, gt_kernel, weight)
        if "has_hr" in batch:  # tiles presented as LR inputs have no HR target: no SR loss (nor its parts)
            has_hr = batch["has_hr"].to(dev, non_blocking=True)
            parts |= {k: v * has_hr for k, v in parts.items() if k.startswith("sr")}
        if not self.segment:
            return parts["sr"].mean(), parts
        sr_term = weight_by_seg_loss(parts["sr"], parts["seg"]) if j.sr_loss_by_seg_loss else parts["sr"]
        beta = beta_at(step, cfg)
        return ((1 - beta) * sr_term + beta * parts["seg"]).mean(), parts

    def _seg_losses(
        self, prob: Tensor, aux: Tensor | None, mask: Tensor, batch: dict[str, Any], step: int
    ) -> dict[str, Tensor]:
        """L_C per sample: the segmentation loss on pixel-labelled samples, the box loss on box-labelled ones.

        Every part is a (B,) tensor, zero for the samples it does not apply to, so logged means stay
        comparable from step to step whatever the batch's mix.
        """
        alpha = self.alpha(step)
        if "sup" not in batch:
            return self.seg_loss(prob, mask, aux, alpha)
        by_box = batch["sup"].to(self.device, non_blocking=True) > 0
        boxes = batch["boxes"].to(self.device, non_blocking=True)
        parts: dict[str, Tensor] = {"seg": prob.new_zeros(prob.shape[0])}
        for selected, compute in (
            (~by_box, lambda p, a, i: self.seg_loss(p, mask[i], a, alpha)),
            (by_box, lambda p, a, i: self._box_parts(p, a, boxes[i])),
        ):
            index = selected.nonzero().flatten()
            if not len(index):
                continue
            for key, value in compute(prob[index], None if aux is None else aux[index], index).items():
                full = parts.setdefault(key, prob.new_zeros(prob.shape[0]))
                parts[key] = full.index_put((index,), value)
        return parts

    def _box_parts(self, prob: Tensor, aux: Tensor | None, boxes: Tensor) -> dict[str, Tensor]:
        """The box loss on the main map and, weighted like the segmentation loss's, on the side outputs."""
        out = box_loss(prob, boxes, self.box_config)
        total = out["box"]
        if aux is not None:
            side = self.seg_loss.config.side_weights or (self.seg_loss.config.aux_weight,) * aux.shape[1]
            for i, weight in enumerate(side):
                if weight > 0:
                    total = total + weight * box_loss(aux[:, i : i + 1], boxes, self.box_config)["box"]
        return {**out, "seg": total}

    def alpha(self, step: int) -> float:
        return boundary_alpha(step, self.cfg, self.steps_per_epoch)

    def _train_step(
        self, batches: Iterator[dict[str, Any]], stop: StopSignals, deadline: float | None
    ) -> tuple[dict[str, float], Literal["interrupted", "time-limit"] | None]:
        """Forward/backward over the micro-batches, then the optimiser step.

        Returns the step's loss parts and why to stop, if any rank wants to (signal, time budget): the step
        is completed first, so a checkpoint holds a consistent state. All ranks agree on the flags in one
        collective, before the update, so a NaN loss on any rank stops every rank before it spreads.
        """
        accum = self.cfg.optim.accum_steps
        self._set_phase(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = defaultdict(float)
        finite = True
        for a in range(accum):
            # Seeded per micro-batch slot, the sampler's unit: rank r of W with A accumulation steps runs
            # slots a W + r, so dropout draws do not depend on how slots are spread over processes.
            torch.manual_seed(step_seed(self.cfg.seed, self.step, a * self.info.world_size + self.info.rank))
            batch = next(batches)
            sync = not self.info.distributed or a == accum - 1
            with contextlib.nullcontext() if sync else self.step_module.no_sync():
                loss, parts = self._losses(batch, self.step)
                value = float(loss.detach())
                finite &= math.isfinite(value)
                # A NaN backward is useless (and slow); under DDP every rank must still join the reduction.
                if finite or self.info.distributed:
                    self.scaler.scale(loss / accum).backward()
            sums["loss"] += value / accum
            for key, v in parts.items():
                sums[key] += float(v.detach().mean()) / accum
        time_up = deadline is not None and time.monotonic() > deadline
        # One collective: any rank's flag counts, and the logged losses are those of the global batch.
        world = self.info.world_size
        totals = distributed.sum_over_ranks([not finite, stop.requested, time_up, *sums.values()], self.info)
        nonfinite, stop_now, time_up = (v > 0 for v in totals[:3])
        sums = {k: v / world for k, v in zip(sums, totals[3:], strict=True)}
        if nonfinite:
            last = self.run_dir / checkpoint.LAST
            kept = f"last good checkpoint: {last}" if last.is_file() else "no checkpoint was written yet"
            parts_txt = ", ".join(f"{k}={v:.4g}" for k, v in sums.items())
            raise TrainingDiverged(
                f"loss became {sums['loss']} at step {self.step + 1} ({parts_txt}); stopped, {kept} "
                "(try a lower optim.lr, run.amp = 'off' or optim.grad_clip)"
            )
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return dict(sums), "interrupted" if stop_now else "time-limit" if time_up else None

    # --- the loop ------------------------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        workers = self.cfg.data.workers
        return DataLoader(
            EpochIndexed(self.data.train),
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=ignore_sigint if workers else None,
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
        )

    def _val_loader(self) -> DataLoader | None:
        if self.data.val is None:
            return None
        return DataLoader(
            self.data.val, batch_size=self.cfg.optim.batch_size, num_workers=self.cfg.data.workers
        )

    def validate(self, loader: DataLoader | None, bar: TrainProgress) -> None:
        """Rank 0 evaluates the held-out split (and box tiles); the best score so far keeps its weights.

        Box scores are read at the pixel split's IoU_max threshold (0.5 without one); the best weights are
        chosen by IoU_max, else PSNR, else box precision (box data alone).
        """
        boxes = self.data.box_val if self.segment else None
        if (loader is not None or boxes is not None) and self.info.is_main:
            self.validation = (
                evaluate(self.model, bar.tracked(loader, "validate"), self.device, self.dtype, self.segment)
                if loader
                else {}
            )
            if boxes is not None:
                box_loader = DataLoader(boxes, batch_size=1, num_workers=self.cfg.data.workers)
                threshold = self.validation.get("IoU_max_threshold", 0.5)
                self.validation |= evaluate_boxes(
                    self.model, bar.tracked(box_loader, "box tiles"), self.device, self.dtype, threshold
                )
            set_train_modes(self.model, self.cfg)
            key = next(k for k in ("IoU_max", "psnr", "val_box_precision") if k in self.validation)
            self.log({"kind": "val", "step": self.step, **self.validation})
            value = self.validation[key]
            if math.isfinite(value) and (not self.best or value > self.best["value"]):
                self.best = {"metric": key, "value": value, "step": self.step}
                self._save_best()
        distributed.barrier(self.info)

    def run(self, deadline: float | None) -> Literal["completed", "time-limit", "interrupted"]:
        """Train until the last iteration, a stop signal or the `deadline` (time.monotonic())."""
        cfg, r = self.cfg, self.cfg.run
        val_loader = self._val_loader()
        bar = TrainProgress(r.progress and self.info.is_main, total=cfg.optim.iterations, start=self.step)
        with bar:  # open through the last validation too: after --max-minutes it can take minutes
            status = self._train_loop(bar, val_loader, deadline)
            if status != "interrupted" and (not r.val_every or self.step % r.val_every):
                self.validate(val_loader, bar)
        self.save_checkpoint()
        return status

    def _train_loop(
        self, bar: TrainProgress, val_loader: DataLoader | None, deadline: float | None
    ) -> Literal["completed", "time-limit", "interrupted"]:
        cfg, r = self.cfg, self.cfg.run
        batches = iter(self._loader())
        window: dict[str, float] = defaultdict(float)
        window_steps, window_time = 0, 0.0
        status: Literal["completed", "time-limit", "interrupted"] = "completed"
        with StopSignals() as stop:
            while self.step < cfg.optim.iterations:
                t0 = time.perf_counter()
                sums, reason = self._train_step(batches, stop, deadline)
                window_time += time.perf_counter() - t0
                window_steps += 1
                for key, value in sums.items():
                    window[key] += value
                if self.on_step is not None and self.info.is_main:
                    self.on_step(self.step, self.model, sums)
                if r.log_every and (self.step % r.log_every == 0 or self.step == cfg.optim.iterations):
                    record: dict[str, Any] = {
                        "kind": "train",
                        "step": self.step,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "samples_per_s": window_steps * self.sampler.global_batch / window_time,
                    }
                    record |= {k: v / window_steps for k, v in window.items()}
                    if self.segment:
                        record |= {"beta": beta_at(self.step - 1, cfg), "alpha": self.alpha(self.step - 1)}
                    self.log(record)
                    bar.note(record)
                    window, window_steps, window_time = defaultdict(float), 0, 0.0
                bar.advance(self.step)
                if r.val_every and self.step % r.val_every == 0:
                    self.validate(val_loader, bar)
                if r.ckpt_every and self.step % r.ckpt_every == 0:
                    self.save_checkpoint()
                if reason is not None and self.step < cfg.optim.iterations:
                    status = reason
                    break
        return status

    def export(self, status: str) -> Path | None:
        """Save the trained model (last or best weights) by name: safetensors + card."""
        if not self.info.is_main:
            return None
        cfg = self.cfg
        model = self.model
        if cfg.model.export == "best" and (self.run_dir / checkpoint.BEST).is_file():
            model = load_model(weights_file_spec(self.spec, self.run_dir / checkpoint.BEST))
        export_dir = Path(cfg.model.export_dir) if cfg.model.export_dir else self.run_dir / "models"
        how = (
            f"{cfg.command}, {status} at step {self.step}/{cfg.optim.iterations}, {cfg.model.export} weights"
        )
        card = save_model(
            model,
            self.spec,
            self.output_name,
            export_dir,
            provenance=f"csbsr {__version__} {cfg.command} run {self.run_dir} from {cfg.model.init!r}: {how}",
            licence=weights_licence(self.spec),
            extra=card_extra(self.spec, self.output_name, how, self.validation)
            | {"metrics": self.validation, "training": {"step": self.step}},
        )
        result = {"status": status, "step": self.step, "model_name": self.output_name}
        result |= {"model_card": str(card.resolve()), "validation": self.validation, "best": self.best}
        write_result(self.run_dir, result)
        return card


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    train_set: Dataset | None = None,
    val_set: Dataset | None = None,
    on_step: StepCallback | None = None,
) -> RunResult:
    """Run (or resume) the training run `cfg` describes and export its model.

    `train_set` / `val_set` replace the datasets built from ``cfg.data`` (library use, tests); their items
    are dicts with ``lr``, ``hr``, ``kernel`` and (labelled) ``mask`` tensors, and a ``set_epoch`` method if
    they are random. `on_step(step, model, losses)` is called on rank 0 after every optimiser step.
    Raises TrainingStopped after Ctrl-C (checkpoint saved) and TrainingDiverged on a NaN/inf loss.
    """
    started = time.monotonic()
    if cfg.run.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    info = distributed.setup(cfg.run.device)
    held = contextlib.ExitStack()  # rank 0 holds the run folder until the run ends
    try:
        run_dir = run_dir_of(cfg)
        error, state = "", None
        if info.is_main:
            try:
                held.enter_context(folder_lock(run_dir.parent, f".{run_dir.name}.lock"))
                state = prepare_run_dir(cfg, run_dir, resume, overwrite)
            except CsbsrError as exc:
                error = str(exc)
                if not info.distributed:
                    raise
        error = distributed.broadcast_text(error, info)
        if error:
            raise InputError(error)
        if resume and not info.is_main and (run_dir / checkpoint.LAST).is_file():
            state = checkpoint.load(run_dir / checkpoint.LAST)

        spec, model, random_init = start_model(cfg)
        if random_init and info.is_main and not resume:
            Console(stderr=True).print(
                f"note: model {cfg.model.init!r} has no weights: training starts from random ones"
            )
        data = build_data(cfg, spec.scale) if train_set is None else TrainData(train_set, val_set, [], [], [])
        trainer = Trainer(cfg, info, run_dir, spec, model, data, state, on_step)
        if info.is_main and data.problems:
            write_text_atomic(run_dir / PROBLEMS_FILE, "".join(f"{p}\n" for p in data.problems))
        trainer.log(
            {
                "kind": "start",
                "step": trainer.step,
                "resumed": resume,
                "device": str(info.device),
                "world_size": info.world_size,
                "amp": str(trainer.dtype).removeprefix("torch.") if trainer.dtype else "off",
                "n_train": len(data.train),
                "n_val": 0 if data.val is None else len(data.val),
                "skipped": len(data.problems),
                "global_batch": trainer.sampler.global_batch,
                "class_weights": list(trainer.class_weights),
                "seg_loss": trainer.seg_loss.config.kind,  # loss.seg resolved ("auto")
                "side_weights": trainer.seg_loss.config.side_weights,
                "model": trainer.spec.name,
                "init": cfg.model.init,
                "random_init": random_init,
                "versions": versions(),
            }
        )
        status = trainer.run(started + cfg.run.max_minutes * 60 if cfg.run.max_minutes > 0 else None)
        if status == "interrupted":
            raise TrainingStopped(
                f"interrupted at step {trainer.step}: checkpoint saved in {run_dir}; continue with --resume"
            )
        card = trainer.export(status)
        distributed.barrier(info)
        return RunResult(
            run_dir, status, trainer.step, trainer.output_name, card, trainer.validation, trainer.best
        )
    finally:
        held.close()
        distributed.teardown(info)
