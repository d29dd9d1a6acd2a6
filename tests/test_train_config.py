"""Run configs (defaults, validation, TOML round trip, resume rules) and the step schedules."""

from __future__ import annotations

import dataclasses

import pytest

from csbsr_cli.errors import InputError
from csbsr_cli.train.config import check_resume, dumps, load, make_config
from csbsr_cli.train.schedules import beta_at, boundary_alpha, finetune_phase, lr_factor

BASE = {"name": "run", "data": {"train": ["data"]}}


def cfg(command: str = "joint-train", **overrides):
    return make_config(command, BASE, overrides)


@pytest.mark.parametrize(
    ("command", "lr", "iterations"),
    [("pretrain-sr", 2e-4, 200_000), ("finetune", 2e-5, 30_000), ("joint-train", 2e-5, 150_000)],
)
def test_paper_defaults(command, lr, iterations):
    c = make_config(command, {"name": "run", "data": {"train": ["d"], "kind": "pairs"}})
    assert (c.optim.lr, c.optim.iterations) == (lr, iterations)
    assert (c.optim.batch_size, c.data.hr_crop, c.optim.betas, c.optim.eps) == (6, 224, (0.9, 0.999), 1e-8)
    assert (c.loss.seg, c.loss.alpha, c.loss.gamma, c.loss.aux_weight) == ("auto", 0.5, 0.5, 0.4)
    assert c.joint.beta == 0.3


def test_toml_round_trip(tmp_path):
    c = cfg(**{"joint.beta": "increasing", "loss.class_weights": "frequency", "data.val": ["v"]})
    path = tmp_path / "config.toml"
    path.write_text(dumps(c))
    assert load(path, "joint-train") == c
    c.run.channels_last = True  # None is omitted from the file, True is written
    path.write_text(dumps(c))
    assert load(path, "joint-train").run.channels_last is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optim.lrr": 1.0}, r"optim\.lrr: unknown key"),
        ({"optim.lr": "fast"}, r"optim\.lr: expected a number, got 'fast'"),
        ({"optim.iterations": 1.5}, r"optim\.iterations: expected an integer"),
        ({"joint.beta": 2.0}, r"joint\.beta: must be in \[0, 1\] or 'increasing'"),
        ({"joint.beta": "sometimes"}, r"joint\.beta: expected a number or one of 'increasing'"),
        ({"loss.seg": "lovasz"}, r"loss\.seg: expected one of bc, gbc"),
        ({"data.hr_crop": 100}, r"data\.hr_crop: must be a positive multiple of 8"),
        ({"data.kind": "images"}, r"data\.kind: joint-train needs masks"),
        ({"data.box_fraction": 1.5}, r"data\.box_fraction: must be in \[0, 1\]"),
        ({"data.box_presentation": "x2"}, r"data\.box_presentation: expected one of 'lr', 'hr', 'both'"),
        ({"loss.box": "mil"}, r"loss\.box: expected one of 'projection', 'ignore'"),
        ({"data.kind": "boxes", "data.boxes": ["b"]}, r"data\.boxes: data\.kind = 'boxes' already"),
        ({"run.amp": "fp8"}, r"run\.amp: expected one of 'auto', 'bf16', 'fp16', 'off'"),
        ({"name": "a/b"}, r"name: not a plain name"),
        ({"joint.blur_skip": True, "joint.joint": False}, r"joint\.blur_skip: cannot be combined"),
    ],
)
def test_errors_name_the_key(overrides, message):
    with pytest.raises(InputError, match=message):
        cfg(**overrides)


def test_box_data_trains_a_segmenter_only():
    with pytest.raises(InputError, match=r"data\.boxes: box-labelled data trains a segmenter"):
        make_config("finetune", {"name": "r", "data": {"train": ["d"], "boxes": ["b"]}})
    cfg = make_config("joint-train", {"name": "r", "data": {"train": ["b"], "kind": "boxes"}})
    assert cfg.data.padding == "reflect" and cfg.loss.box == "projection"


def test_command_specific_sections_are_checked():
    with pytest.raises(InputError, match=r"joint\.beta: only joint-train reads it"):
        cfg("finetune", **{"joint.beta": 0.5})
    with pytest.raises(InputError, match=r"finetune\.gt_kernel_iters: only finetune reads it"):
        cfg(**{"finetune.gt_kernel_iters": 10})


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr = 1")
    with pytest.raises(InputError, match="bad.toml: not valid TOML"):
        load(bad, "joint-train")
    other = tmp_path / "other.toml"
    other.write_text('command = "finetune"\nname = "x"\n')
    with pytest.raises(InputError, match="command: the file is for 'finetune'"):
        load(other, "joint-train")
    with pytest.raises(InputError, match="cannot read config"):
        load(tmp_path / "missing.toml", "joint-train")


def test_resume_may_only_change_how_it_runs():
    saved = cfg()
    check_resume(saved, cfg(**{"optim.iterations": 10, "run.max_minutes": 5.0, "data.workers": 0}), "c")
    with pytest.raises(InputError, match=r"loss\.alpha: cannot change on --resume"):
        check_resume(saved, cfg(**{"loss.alpha": 0.1}), "c")


def test_schedules():
    c = cfg(**{"joint.beta": "increasing", "optim.iterations": 100})
    assert [beta_at(s, c) for s in (0, 50, 100, 150)] == [0.0, 0.5, 1.0, 1.0]
    c = dataclasses.replace(c, joint=dataclasses.replace(c.joint, beta_ramp=10))
    assert beta_at(5, c) == 0.5
    assert beta_at(7, cfg()) == 0.3
    # The authors' Boundary weight: 0 for the first epoch, +0.01 per epoch, capped at 0.99.
    authors = cfg(**{"loss.alpha_schedule": "authors"})
    assert [boundary_alpha(s, authors, 1521) for s in (0, 1520, 1521, 3042)] == [0.0, 0.0, 0.01, 0.02]
    assert boundary_alpha(10**7, authors, 1521) == 0.99
    assert boundary_alpha(123, cfg(), 1521) == 0.5
    cosine = cfg(**{"optim.schedule": "cosine", "optim.iterations": 10, "optim.min_lr_ratio": 0.1})
    assert [round(lr_factor(s, cosine), 6) for s in (0, 5, 10)] == [1.0, 0.55, 0.1]
    assert lr_factor(5, cfg()) == 1.0
    ft = cfg("finetune", **{"finetune.gt_kernel_iters": 2, "finetune.kernel_only_iters": 1})
    assert [finetune_phase(s, ft) for s in range(4)] == ["gt-kernel", "gt-kernel", "kernel-only", "full"]
