"""The training engine on tiny networks and synthetic cracks: what trains, resume, stops, exports.

`make_workspace` and `run_config` are shared with the CLI and DDP tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest
import torch
from synth import make_crack_image

from csbsr_cli.errors import InputError
from csbsr_cli.registry import ZOO_DIR, Registry
from csbsr_cli.train import checkpoint
from csbsr_cli.train import engine as engine_mod
from csbsr_cli.train.config import make_config
from csbsr_cli.train.engine import train
from csbsr_cli.train.models import kernel_parameter_names, start_model
from csbsr_cli.train.stopping import TrainingDiverged, TrainingStopped
from csbsr_cli.weights import load_model

# One intra-op thread: tiny tensors gain nothing from two, and OpenMP threads spinning on a shared,
# oversubscribed CPU slow every step down many times.
pytestmark = pytest.mark.usefixtures("one_thread")

# A few thousand parameters: csbsr-lite's layout with tiny widths.
TINY = {
    "sr": {
        "num_stages": 2,
        "width": 8,
        "feat_widths": [8, 8, 8, 8],
        "k_est": 3,
        "sft_hidden": 8,
        "kernel_window": 16,
    },
    "segmenter": {"base_width": 4, "psp_out": 16, "up_widths": [8, 8, 8], "aux_width": 8},
}


@dataclass(frozen=True)
class Workspace:
    pairs: Path  # images/ + masks/
    images: Path  # unlabelled
    models: Path  # holds the card of "tiny"
    runs: Path


def make_workspace(root: Path, n: int = 8, size: int = 64) -> Workspace:
    ws = Workspace(root / "pairs", root / "unlabelled", root / "models", root / "runs")
    for folder in (ws.pairs / "images", ws.pairs / "masks", ws.images, ws.models):
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, mask = make_crack_image(size, size, seed=i)
        cv2.imwrite(str(ws.pairs / "images" / f"{i:02d}.png"), image[:, :, ::-1])
        cv2.imwrite(str(ws.pairs / "masks" / f"{i:02d}.png"), mask)
        cv2.imwrite(str(ws.images / f"{i:02d}.png"), image[:, :, ::-1])
    (ws.models / "tiny.json").write_text(json.dumps({"name": "tiny", "arch": "csbsr-lite", "config": TINY}))
    return ws


def run_config(ws: Workspace, command: str, name: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config dict for a few steps of a tiny run; `sections` update its tables."""
    data = {
        "name": name,
        "model": {"init": "tiny", "models_dirs": [str(ws.models)]},
        "data": {
            "train": [str(ws.images if command == "pretrain-sr" else ws.pairs)],
            "kind": "images" if command == "pretrain-sr" else "pairs",
            "hr_crop": 32,
            "val_fraction": 0.25,
            "workers": 0,
        },
        "optim": {"iterations": 2, "batch_size": 2, "lr": 1e-3},
        "run": {"runs_dir": str(ws.runs), "log_every": 1, "val_every": 0, "ckpt_every": 0, "progress": False},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return data


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return make_workspace(tmp_path_factory.mktemp("train"))


def exported(result) -> dict[str, torch.Tensor]:
    spec = Registry([result.model_card.parent]).get(result.model_name)
    return load_model(spec, require_weights=True).state_dict()


def initial(ws: Workspace, command: str = "joint-train") -> dict[str, torch.Tensor]:
    cfg = make_config(command, run_config(ws, command, "init"))
    return {k: v.clone() for k, v in start_model(cfg)[1].state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefix: str) -> set[str]:
    return {k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])}


def test_segmentation_loss_moves_sr_only_in_joint_mode(ws):
    start = initial(ws)
    sr_params = {
        n
        for n, _ in start_model(make_config("joint-train", run_config(ws, "joint-train", "x")))[
            1
        ].sr_model.named_parameters(prefix="sr_model")
    }
    # beta = 1: the loss is L_C alone, so any change of the SR weights comes from the segmentation loss.
    joint = train(make_config("joint-train", run_config(ws, "joint-train", "joint", joint={"beta": 1.0})))
    after = exported(joint)
    assert changed(start, after, "sr_model.") & sr_params
    assert changed(start, after, "segmentation_model.")
    frozen = train(
        make_config("joint-train", run_config(ws, "joint-train", "frozen", joint={"joint": False}))
    )
    after = exported(frozen)
    assert not changed(start, after, "sr_model.")
    assert changed(start, after, "segmentation_model.")


def weight_change(result, start: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every float parameter's change from `start`, as one vector (BatchNorm statistics left out)."""
    after = exported(result)
    keys = [k for k in start if start[k].is_floating_point() and "running_" not in k]
    return torch.cat([(after[k] - start[k]).flatten() for k in keys])


def train_log(result) -> list[dict[str, Any]]:
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def test_resume_continues_the_same_run(ws, one_thread):
    """An interrupted, resumed run ends where an uninterrupted one does.

    Not bit for bit: even on one thread, some of this CPU build's kernels differ in the last bits from run
    to run (about one straight run in four here), and Adam magnifies a last-bit change of a near-zero
    gradient into an lr-sized step. Two straight runs then differ by up to 1.1e-3 of the weight change
    (relative L2); a resume that forgot Adam's moments differs by 0.59, one that replayed other batches
    changes the logged losses by far more than their 1e-6 noise.
    """
    start = initial(ws)
    straight = train(
        make_config("joint-train", run_config(ws, "joint-train", "straight", optim={"iterations": 4}))
    )

    def ctrl_c_during_step_2(step: int, model: torch.nn.Module, losses: dict[str, float]) -> None:
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: the current step completes, then it stops

    # The resumed run also validates (which must not disturb training) and uses 2 loader workers.
    sections = {"optim": {"iterations": 4}, "run": {"val_every": 1}, "data": {"workers": 2}}
    cfg = make_config("joint-train", run_config(ws, "joint-train", "resumed", **sections))
    with pytest.raises(TrainingStopped, match="interrupted at step 2"):
        train(cfg, on_step=ctrl_c_during_step_2)
    state = checkpoint.load(ws.runs / "joint-train" / "resumed" / checkpoint.LAST)
    assert state["step"] == 2 and set(state["optimizer"]["state"])  # Adam moments are saved
    resumed = train(cfg, resume=True)

    a, b = weight_change(straight, start), weight_change(resumed, start)
    assert a.norm() > 0 and float((a - b).norm() / a.norm()) < 1e-2
    straight_log, resumed_log = train_log(straight), train_log(resumed)
    assert [r["step"] for r in resumed_log] == [1, 2, 3, 4]
    for x, y in zip(straight_log, resumed_log, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4), f"step {x['step']}"
    starts = [json.loads(line) for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["resumed"] for r in starts if r["kind"] == "start"] == [False, True]


def test_resume_refuses_a_different_computation(ws):
    cfg = make_config("finetune", run_config(ws, "finetune", "guarded", optim={"iterations": 1}))
    train(cfg)
    with pytest.raises(InputError, match="exists"):
        train(cfg)
    changed_lr = make_config("finetune", run_config(ws, "finetune", "guarded", optim={"lr": 0.5}))
    with pytest.raises(InputError, match="optim.lr: cannot change on --resume"):
        train(changed_lr, resume=True)
    assert train(cfg, overwrite=True).status == "completed"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(ws, monkeypatch):
    real_beta = engine_mod.beta_at
    monkeypatch.setattr(
        engine_mod, "beta_at", lambda step, cfg: float("nan") if step >= 2 else real_beta(step, cfg)
    )
    cfg = make_config(
        "joint-train", run_config(ws, "joint-train", "nan", optim={"iterations": 4}, run={"ckpt_every": 2})
    )
    with pytest.raises(TrainingDiverged, match="loss became nan at step 3.*last good checkpoint"):
        train(cfg)
    assert checkpoint.load(ws.runs / "joint-train" / "nan" / checkpoint.LAST)["step"] == 2


def test_time_budget_stops_gracefully_then_resumes(ws):
    cfg = make_config(
        "pretrain-sr",
        run_config(ws, "pretrain-sr", "budget", optim={"iterations": 3}, run={"max_minutes": 1e-9}),
    )
    stopped = train(cfg)
    assert stopped.status == "time-limit" and stopped.step == 1 and stopped.model_card.is_file()
    cfg.run.max_minutes = 0.0  # run.* may change on resume
    assert train(cfg, resume=True).step == 3


def test_the_validation_after_the_time_limit_shows_its_progress(ws, capsys):
    run = {"max_minutes": 1e-9, "progress": True}
    cfg = make_config(
        "joint-train", run_config(ws, "joint-train", "budget-val", optim={"iterations": 3}, run=run)
    )
    assert train(cfg).status == "time-limit"
    assert re.search(r"validate: [1-9]\d* batches", capsys.readouterr().err)  # a line in cluster logs


def test_finetune_phases_train_the_right_parameters(ws):
    snapshots: list[dict[str, torch.Tensor]] = [initial(ws, "finetune")]

    def keep(step: int, model: torch.nn.Module, losses: dict[str, float]) -> None:
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    sections = {"optim": {"iterations": 3}, "finetune": {"gt_kernel_iters": 1, "kernel_only_iters": 1}}
    train(make_config("finetune", run_config(ws, "finetune", "phases", **sections)), on_step=keep)
    kernel = {
        f"sr_model.{n}"
        for n in kernel_parameter_names(
            start_model(make_config("finetune", run_config(ws, "finetune", "x")))[1].sr_model
        )
    }
    assert kernel
    step1, step2, step3 = (changed(snapshots[i], snapshots[i + 1], "sr_model.") for i in range(3))
    assert step1 and not step1 & kernel  # GT kernel fed: the predictors are idle
    assert step2 and step2 <= kernel  # kernel-only
    assert step3 - kernel and step3 & kernel  # everything
    assert not changed(snapshots[0], snapshots[3], "segmentation_model.")  # SR-only step


def test_blur_skip_trains_only_the_branch(ws):
    base = train(make_config("joint-train", run_config(ws, "joint-train", "base", optim={"iterations": 1})))
    sections = {
        "model": {"init": str(base.run_dir), "models_dirs": [str(ws.models)]},
        "joint": {"blur_skip": True},
    }
    result = train(make_config("joint-train", run_config(ws, "joint-train", "skip", **sections)))
    spec = Registry([result.model_card.parent]).get("skip")
    assert spec.base == "csbsr-pspnet-blurskip" and spec.segmenter_type == "pspnet-blurskip"
    before, after = exported(base), exported(result)
    branch = {k for k in after if k.startswith("segmentation_model.blur_skip.")}
    assert branch and not set(before) & branch
    assert all(torch.equal(before[k], after[k]) for k in before)  # frozen, BN statistics included


def test_init_takes_a_name_a_card_a_run_folder_or_a_weights_file(ws):
    """--init reads every model reference by the rule segment and evaluate use (Registry.resolve): a name and
    its card start from the same (seeded random) weights; a run folder, its card and its weights file (with
    --arch) start from the weights the run exported."""
    base = train(
        make_config("joint-train", run_config(ws, "joint-train", "init-base", optim={"iterations": 1}))
    )
    trained = exported(base)

    def start(init: str, **model: str) -> tuple[dict[str, torch.Tensor], bool]:
        section = {"init": init, "models_dirs": [str(ws.models)], **model}
        _, net, random_init = start_model(
            make_config("joint-train", run_config(ws, "joint-train", "x", model=section))
        )
        return net.state_dict(), random_init

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    by_name, random_name = start("tiny")
    by_card, random_card = start(str(ws.models / "tiny.json"))
    assert random_name and random_card and same(by_name, by_card)
    for init, model in (
        (str(base.run_dir), {}),
        (str(base.model_card), {}),
        (str(base.model_card.with_suffix(".safetensors")), {"arch": "tiny"}),
    ):
        state, random_init = start(init, **model)
        assert not random_init and same(state, trained), init
    assert not same(by_name, trained)


def test_init_with_a_zoo_card_path_loads_its_weights(ws):
    """The issue's case: `--init models/csbsr-lite.json` was read as a weights file needing --arch."""
    card = ZOO_DIR / "csbsr-lite.json"
    cfg = make_config("joint-train", run_config(ws, "joint-train", "x", model={"init": str(card)}))
    spec, model, random_init = start_model(cfg)
    assert spec.source == str(card) and not random_init
    zoo = load_model(Registry().get("csbsr-lite"), require_weights=True).state_dict()
    assert all(torch.equal(v, zoo[k]) for k, v in model.state_dict().items())


def test_joint_options_of_the_paper_and_the_authors(ws):
    """SR-loss weights (w^C, w^F, L_C), frequency class weights and the authors' alpha schedule together."""
    sections = {
        "optim": {"iterations": 1},
        "loss": {"alpha_schedule": "authors", "class_weights": "frequency"},
        "joint": {
            "crack_weight_m": 8.0,
            "fail_weight_m": 1.0,
            "sr_loss_by_seg_loss": True,
            "beta": "increasing",
        },
    }
    result = train(make_config("joint-train", run_config(ws, "joint-train", "options", **sections)))
    log = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    start, first = log[0], next(r for r in log if r["kind"] == "train")
    w_crack, w_back = start["class_weights"]
    assert w_crack > 5 * w_back > 0  # cracks are rare in the synthetic masks too
    assert (start["seg_loss"], start["side_weights"]) == ("bc", None)  # "auto" for PSPNet
    assert first["alpha"] == 0.0 and first["beta"] == 0.0 and "boundary" not in first
    assert all(v == v for v in first.values() if isinstance(v, float))  # no NaN


@pytest.mark.parametrize(("arch", "scale"), [("bicubic-pspnet-lite", 4), ("pspnet-lite", 1)])
def test_ablation_baselines_train_their_segmenter(ws, monkeypatch, arch, scale):
    """csbsr-lite's ablation rows: bicubic x4 + its segmenter, and its segmenter alone on HR images."""
    card = {"name": f"tiny-{arch}", "arch": arch, "config": {"segmenter": TINY["segmenter"]}}
    (ws.models / f"tiny-{arch}.json").write_text(json.dumps(card))
    hr_inputs: list[bool] = []
    real_losses = engine_mod.Trainer._losses

    def spy(self, batch, step):  # noqa: ANN001, ANN202 - the engine's own signature
        hr_inputs.append(batch["lr"].shape == batch["hr"].shape and torch.equal(batch["lr"], batch["hr"]))
        return real_losses(self, batch, step)

    monkeypatch.setattr(engine_mod.Trainer, "_losses", spy)
    cfg = make_config(
        "joint-train",
        run_config(ws, "joint-train", f"base-{arch}", model={"init": f"tiny-{arch}"}, joint={"joint": False}),
    )
    start = {k: v.clone() for k, v in start_model(cfg)[1].state_dict().items()}
    after = exported(train(cfg))
    assert not any(k.startswith("sr_model.") for k in after)  # nothing to learn in bicubic or identity
    assert changed(start, after, "segmentation_model.")
    assert hr_inputs and hr_inputs == [scale == 1] * len(hr_inputs)  # HR input exactly when the scale is 1


def test_box_tiles_train_with_pixel_labels_and_score_at_validation(ws, tmp_path):
    """data.boxes mixes YOLO-box tiles into joint training: box loss parts are logged, tiles given as LR
    inputs add no SR loss, and validation scores whole box tiles."""
    from test_boxes import box_folder

    tiles = box_folder(tmp_path / "tiles", n=4, size=32)
    seen: list[dict[str, float]] = []
    cfg = make_config(
        "joint-train",
        run_config(
            ws,
            "joint-train",
            "boxes",
            data={
                "boxes": [str(tiles)],
                "box_val": [str(tiles)],
                "box_presentation": "lr",
                "box_fraction": 1.0,
            },
            optim={"iterations": 2, "batch_size": 2},
            run={"val_every": 2},
        ),
    )
    result = train(cfg, on_step=lambda step, model, losses: seen.append(losses))
    assert all(losses["sr"] == 0 and losses["box"] > 0 for losses in seen)  # LR tiles only: no SR target
    assert all("box_negative" in losses and "box_projection" in losses for losses in seen)
    assert {"val_box_precision", "val_box_recall", "val_outside_rate", "val_free_marked"} <= set(
        result.validation
    )
    assert result.validation["box_threshold"] == result.validation["IoU_max_threshold"]
