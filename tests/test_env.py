"""`csbsr env`: the report a new container or node is checked with, and the problems it must catch."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy
import pytest
import torch
from typer.testing import CliRunner

from csbsr_cli.cli import env as env_cmd
from csbsr_cli.cli.app import app, main
from csbsr_cli.errors import EXIT_BAD_INPUT

runner = CliRunner()


def _json(*args: str) -> dict:
    result = runner.invoke(app, ["env", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _exit_code(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """`csbsr ...` through the real entry point (documented exit codes, one-line errors), in-process."""
    monkeypatch.setattr(sys, "argv", ["csbsr", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_text_report_has_every_section() -> None:
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0, result.output
    for section in ("versions:", "torch_devices:", "threads:", "models:", "shard:", "problems:"):
        assert section in result.output


def test_json_report_matches_this_process() -> None:
    report = _json()
    versions = report["versions"]
    assert versions["torch"].startswith(torch.__version__)
    assert versions["numpy"] == numpy.__version__
    assert report["torch_devices"]["cuda_available"] == torch.cuda.is_available()
    assert report["threads"]["torch_threads"] == torch.get_num_threads()
    assert report["problems"] == []
    if torch.cuda.is_available():
        assert len(report["torch_devices"]["devices"]) == torch.cuda.device_count()
    else:
        assert report["torch_devices"]["why"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_require_gpu_fails_without_a_gpu(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert _exit_code(monkeypatch, "env", "--require-gpu") == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert "a GPU is required" in captured.out
    assert "the environment is not ready" in captured.err


def test_two_onnxruntime_packages_are_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    real = env_cmd._dist
    monkeypatch.setattr(
        env_cmd, "_dist", lambda name: "1.0" if name.startswith("onnxruntime") else real(name)
    )
    report = _json()
    assert any("several onnxruntime packages" in p for p in report["problems"])
    assert _exit_code(monkeypatch, "env", "--strict") == EXIT_BAD_INPUT


def test_missing_weights_file_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = {"name": "lost", "arch": "csbsr-lite", "weights": {"file": "lost.safetensors", "sha256": "0" * 64}}
    (tmp_path / "lost.json").write_text(json.dumps(card))
    report = _json("--models-dir", str(tmp_path))
    assert report["models"]["with_weights"]["lost"].startswith("MISSING")
    assert report["models"]["directories"][str(tmp_path)] == "1 card(s)"
    assert any("lost" in p for p in report["problems"])
    assert _exit_code(monkeypatch, "env", "--strict", "--models-dir", str(tmp_path)) == EXIT_BAD_INPUT
    assert _exit_code(monkeypatch, "env", "--models-dir", str(tmp_path)) == 0  # reported, not fatal


def test_job_array_shard_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSBSR_SHARD", "auto")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
    monkeypatch.setenv("CSBSR_SHARD_COUNT", "8")
    report = _json()
    assert report["shard"] == "3/8 (from $JOB_COMPLETION_INDEX)"
    assert report["environment"]["JOB_COMPLETION_INDEX"] == "3"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({}, None),
    ],
)
def test_cgroup_cpu_limit(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert env_cmd.cgroup_cpu_limit(tmp_path) == expected


def test_threads_above_the_cpu_limit_get_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env_cmd, "cgroup_cpu_limit", lambda: 0.5)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = _json()
    finally:
        torch.set_num_threads(old)
    assert report["threads"]["cgroup_cpu_limit"] == 0.5
    assert any("OMP_NUM_THREADS=1" in note for note in report["notes"])


def test_a_cuda_provider_that_does_not_load_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu lists its CUDA provider even when CUDA's libraries are missing, then silently runs
    on the CPU: only a real session shows it."""
    pytest.importorskip("onnx")

    class Session:
        def __init__(self, model: bytes, providers: list[str]) -> None:
            assert isinstance(model, bytes) and providers[-1] == "CPUExecutionProvider"

        def get_providers(self) -> list[str]:
            return ["CPUExecutionProvider"]  # the GPU provider failed to load

    fake = types.SimpleNamespace(
        get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        get_device=lambda: "GPU",
        InferenceSession=Session,
    )
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    problems: list[str] = []
    info = env_cmd._onnxruntime(True, problems)
    assert info["gpu_check"]["CUDAExecutionProvider"].startswith("listed but does not load")
    assert problems == ["onnxruntime's CUDA provider does not load although torch sees a GPU"]
    info = env_cmd._onnxruntime(False, problems := [])
    assert info["gpu_check"].startswith("not run") and problems == []
