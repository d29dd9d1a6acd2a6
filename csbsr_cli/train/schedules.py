"""Everything that changes with the step: learning rate, task weight beta, Boundary weight a, finetune phase.

All are pure functions of the (0-based) step, so a resumed run recomputes exactly the values an
uninterrupted one would have used.
"""

from __future__ import annotations

import math
from typing import Literal

from .config import TrainConfig

Phase = Literal["gt-kernel", "kernel-only", "full"]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base lr (LambdaLR): constant (the authors) or cosine down to min_lr_ratio."""
    o = cfg.optim
    if o.schedule == "constant":
        return 1.0
    progress = min(step / max(o.iterations, 1), 1.0)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def beta_at(step: int, cfg: TrainConfig) -> float:
    """Task weight of L = (1 - beta) L_S + beta L_C. "increasing": 0 -> 1 in proportion to the step (paper
    Table 3); the authors ramp over 140k of their joint iterations (``joint.beta_ramp = 140000``)."""
    j = cfg.joint
    if j.beta != "increasing":
        return float(j.beta)
    ramp = j.beta_ramp or cfg.optim.iterations
    return min(step / ramp, 1.0)


def boundary_alpha(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Weight a of the Boundary term in the BC loss.

    "fixed": the paper's a (0.5). "authors": their code starts with the Boundary term off and raises it by
    0.01 every epoch (n_train // batch + 1 iterations) up to 0.99, so the loss ends as
    0.99 Boundary + 0.01 (WCE + Dice) / 2.
    """
    lo = cfg.loss
    if lo.alpha_schedule == "fixed":
        return lo.alpha
    every = lo.alpha_every or steps_per_epoch
    return min(lo.alpha_step * (step // every), lo.alpha_max)


def finetune_phase(step: int, cfg: TrainConfig) -> Phase:
    """The authors' Step 2 in three parts: GT-kernel warm-up, kernel predictors only, then all of SR."""
    if cfg.command != "finetune":
        return "full"
    ft = cfg.finetune
    if step < ft.gt_kernel_iters:
        return "gt-kernel"
    if step < ft.gt_kernel_iters + ft.kernel_only_iters:
        return "kernel-only"
    return "full"
