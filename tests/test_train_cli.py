"""The three training commands end to end through the CLI, chained as in the paper, on tiny networks."""

from __future__ import annotations

import json
import sys

import pytest
from test_train_engine import make_workspace, run_config
from typer.testing import CliRunner

from csbsr_cli.cli.app import app, main
from csbsr_cli.train.config import dumps, make_config

# One intra-op thread: tiny tensors gain nothing from two, and OpenMP threads spinning on a shared,
# oversubscribed CPU slow every step down many times.
pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_pretrain_finetune_joint_chain(tmp_path):
    ws = make_workspace(tmp_path)
    common = ["--crop", "32", "--batch-size", "2", "--workers", "0", "--lr", "1e-3", "--no-progress"]
    common += ["--runs-dir", str(ws.runs), "--log-every", "1", "--val-every", "0"]
    invoke(
        "pretrain-sr", "--name", "pre", "--init", "tiny", "--models-dir", str(ws.models),
        "--data", str(ws.images), "--data-kind", "images", "--iterations", "2", *common,
    )  # fmt: skip
    invoke(
        "finetune", "--name", "ft", "--init", str(ws.runs / "pretrain-sr" / "pre"), "--data", str(ws.pairs),
        "--iterations", "3", "--gt-kernel-iters", "1", "--kernel-only-iters", "1", *common,
    )  # fmt: skip
    # joint-train from a config file, flags on top of it
    config = tmp_path / "joint.toml"
    config.write_text(
        dumps(make_config("joint-train", run_config(ws, "joint-train", "joint", loss={"seg": "gbc"})))
    )
    out = invoke(
        "joint-train", "--config", str(config), "--init", str(ws.runs / "finetune" / "ft"),
        "--beta", "increasing", "--iterations", "2", *common,
    )  # fmt: skip
    run = ws.runs / "joint-train" / "joint"
    assert "model 'joint'" in out and (run / "last.pt").is_file() and (run / "best.safetensors").is_file()
    saved = (run / "config.toml").read_text()
    assert 'beta = "increasing"' in saved and 'seg = "gbc"' in saved and "iterations = 2" in saved
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in log if r["kind"] == "train"]
    assert {"loss", "sr", "seg", "lr", "beta", "alpha", "samples_per_s"} <= set(train_rows[0])
    assert [r["beta"] for r in train_rows] == [0.0, 0.5]
    assert {"iou@0.5", "IoU_max", "psnr"} <= set(next(r for r in log if r["kind"] == "val"))
    # The trained model is usable by name from any command.
    info = json.loads(invoke("models", "info", "joint", "--models-dir", str(run / "models")))
    assert info["weights_status"] == "present" and info["metrics"]["IoU_max"] >= 0


def test_bad_option_is_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys):
    argv = ["csbsr", "joint-train", "--name", "x", "--data", str(tmp_path), "--lr", "-1"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "optim.lr: must be > 0" in err and len(err.splitlines()) == 1
