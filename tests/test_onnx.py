"""ONNX export (fixed shape, single file, parity checked) and `segment --backend onnxruntime`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

from conftest import terminal_stderr_patch  # noqa: E402
from test_segment import cli  # noqa: E402
from test_tiling import TINY_CONFIG  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from csbsr_cli.cli.app import app  # noqa: E402
from csbsr_cli.data.image_io import write_png  # noqa: E402
from csbsr_cli.errors import DeviceError, ModelError  # noqa: E402
from csbsr_cli.infer.onnx_backend import GPU_PROVIDERS, OrtRunner, read_metadata  # noqa: E402
from csbsr_cli.infer.runner import TorchRunner, load_torch_model, make_runner, weights_id  # noqa: E402
from csbsr_cli.registry import Registry  # noqa: E402

TILE, BATCH = 32, 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """(models dir with the tiny card, its ONNX export written by `csbsr models export`)."""
    root = tmp_path_factory.mktemp("onnx")
    card = {"name": "tiny", "arch": "csbsr-pspnet", "config": TINY_CONFIG, "tile": TILE}
    (root / "tiny.json").write_text(json.dumps(card))
    path = root / "tiny.onnx"
    args = ["models", "export", "tiny", "--tile", str(TILE), "--batch", str(BATCH), "-o", str(path),
            "--models-dir", str(root)]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch, terminal_stderr_patch(patch) as stderr:
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "max |ORT - PyTorch|" in result.output
    assert "loading tiny" in stderr.getvalue() and "exporting to ONNX" in stderr.getvalue()  # never silent
    return root, path


def test_export_is_one_fixed_shape_file_with_metadata(exported: tuple[Path, Path]) -> None:
    root, path = exported
    assert path.is_file() and not list(root.glob("*.data"))  # no external-data side file
    meta = read_metadata(path)
    assert meta["model"] == "tiny" and meta["tile"] == str(TILE) and meta["batch"] == str(BATCH)
    assert meta["weights"] == weights_id(Registry([root]).get("tiny"))
    runner = OrtRunner(path, "cpu")
    assert (runner.batch, runner.tile) == (BATCH, TILE) and runner.providers[0] == "CPUExecutionProvider"


def test_onnxruntime_matches_pytorch_at_the_exported_size(exported: tuple[Path, Path]) -> None:
    root, path = exported
    spec = Registry([root]).get("tiny")
    tiles = torch.rand(3, 3, TILE, TILE, generator=torch.Generator().manual_seed(1))  # 3: a padded batch
    ort_out = OrtRunner(path, "cpu")(tiles)
    torch_out = TorchRunner(load_torch_model(spec), torch.device("cpu"), None, BATCH)(tiles)
    for got, want in zip(ort_out, torch_out, strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_segment_with_onnxruntime_backend(exported: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    root, path = exported
    rng = np.random.default_rng(0)
    write_png(tmp_path / "in" / "a.png", cv2.resize(rng.random((12, 15, 3)).astype(np.float32), (60, 45)))
    outs = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        args = ["segment", str(tmp_path / "in"), "-o", str(out), "-m", "tiny", "--models-dir", str(root),
                "--backend", backend, "--onnx", str(path), "--batch", str(BATCH), "--outputs", "prob",
                "-q"]  # fmt: skip
        code, text = cli(capsys, *args)
        assert code == 0, text
        outs[backend] = cv2.imread(str(out / "prob" / "a.png"), cv2.IMREAD_UNCHANGED).astype(np.int64)
        if backend == "onnxruntime":
            assert "CPUExecutionProvider" in text  # the provider actually used is reported
    assert np.abs(outs["torch"] - outs["onnxruntime"]).max() <= 8  # 16-bit levels: ~1e-4


def test_stale_or_foreign_exports_are_refused(exported: tuple[Path, Path], tmp_path: Path) -> None:
    root, path = exported
    spec = Registry([root]).get("tiny")
    stale = tmp_path / "stale.onnx"
    proto = onnx.load_model(str(path))
    for prop in proto.metadata_props:
        if prop.key == "csbsr.weights":
            prop.value = "some-other-weights"
    onnx.save_model(proto, str(stale))
    with pytest.raises(ModelError, match="other weights"):
        make_runner(spec, backend="onnxruntime", onnx_path=stale)
    with pytest.raises(ModelError, match="exported from model"):
        make_runner(Registry().get("csbsr-lite"), backend="onnxruntime", onnx_path=path)
    with pytest.raises(ModelError, match="not found"):
        make_runner(spec, backend="onnxruntime", onnx_path=tmp_path / "missing.onnx")


@pytest.mark.skipif(
    any(p in __import__("onnxruntime").get_available_providers() for p in GPU_PROVIDERS),
    reason="a GPU is here",
)
def test_require_gpu_fails_instead_of_falling_back(exported: tuple[Path, Path]) -> None:
    _, path = exported
    with pytest.raises(DeviceError, match="GPU was required"):
        OrtRunner(path, "auto", require_gpu=True)
    with pytest.raises(DeviceError, match="no CUDA"):
        OrtRunner(path, "cuda:0")
