"""DDP with two CPU processes (gloo, launched by torchrun through the real CLI) equals one process.

Two ranks with batch b see the micro-batches (and dropout draws) one process with b-sized micro-batches
and 2 accumulation steps sees, and DDP averages their gradients as accumulation does: the weights agree up
to float summation order. Adam's eps is raised to 1e-3 for the comparison: a few gradients are zero in
exact arithmetic (conv biases followed by BatchNorm) and Adam would scale their rounding noise, which
depends on summation order, to full-size steps. (BatchNorm running statistics differ by design: DDP keeps
rank 0's; SyncBatchNorm, used on GPUs, makes the ranks one batch. Training-mode forwards do not read them.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_engine import exported, make_workspace, run_config

from csbsr_cli.train.config import dumps, make_config
from csbsr_cli.train.engine import train
from csbsr_cli.train.models import start_model

BIN = Path(sys.executable).parent


@pytest.mark.skipif(not (BIN / "torchrun").is_file(), reason="torchrun is not installed beside python")
def test_two_process_ddp_matches_single_process(tmp_path, one_thread):
    ws = make_workspace(tmp_path)
    sections = {"optim": {"iterations": 3, "batch_size": 2, "eps": 1e-3}}
    ddp_cfg = make_config("joint-train", run_config(ws, "joint-train", "ddp", **sections))
    config = tmp_path / "ddp.toml"
    config.write_text(dumps(ddp_cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", str(BIN / "csbsr")]
    proc = subprocess.run(
        [*cmd, "joint-train", "--config", str(config)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    sections["optim"] = {**sections["optim"], "accum_steps": 2}
    single = train(make_config("joint-train", run_config(ws, "joint-train", "single", **sections)))
    ddp_run = ws.runs / "joint-train" / "ddp"
    log = (ddp_run / "metrics.jsonl").read_text()
    assert '"world_size": 2' in log and '"global_batch": 4' in log
    # The logged losses are those of the whole global batch, averaged over the ranks.
    ddp_loss = [r["loss"] for r in map(json.loads, log.splitlines()) if r["kind"] == "train"]
    single_log = (single.run_dir / "metrics.jsonl").read_text().splitlines()
    single_loss = [r["loss"] for r in map(json.loads, single_log) if r["kind"] == "train"]
    assert ddp_loss == pytest.approx(single_loss, rel=1e-4)

    a = exported(single)
    b = exported(type(single)(ddp_run, "completed", 3, "ddp", ddp_run / "models" / "ddp.json"))
    start = start_model(ddp_cfg)[1].state_dict()
    params = [n for n, _ in start_model(ddp_cfg)[1].named_parameters()]
    moved = [n for n in params if not torch.equal(start[n], a[n])]
    assert len(moved) > len(params) // 2  # the comparison is not vacuous
    for name in params:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-6, msg=name)
