"""`csbsr evaluate`: both Khanhha variants read right, on-the-fly = stored LR, --predictions = model path."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from synth import make_crack_image
from test_degrade import khanhha_test_folder, run_cli, write_image

from csbsr_cli.data.degrade import make_rng
from csbsr_cli.data.kernels import KernelLaw
from csbsr_cli.errors import ModelError
from csbsr_cli.infer.runner import load_torch_model
from csbsr_cli.metrics import PAPER, evaluate_masks, image_quality, summarize, summarize_quality
from csbsr_cli.metrics.panels import PANEL_HEADER
from csbsr_cli.registry import Registry
from csbsr_cli.weights import sha256_file

# csbsr-lite with every width cut down: a forward pass on a 16x16 LR takes milliseconds.
TINY_CARD = {
    "name": "tiny",
    "arch": "csbsr-lite",
    "config": {
        "sr": {"width": 8, "feat_widths": [4, 4, 8, 8], "sft_hidden": 8, "kernel_window": 16},
        "segmenter": {"base_width": 4, "psp_out": 8, "up_widths": [8, 4, 4], "aux_width": 4},
    },
}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    (folder / "tiny.json").write_text(json.dumps(TINY_CARD))
    return folder


@pytest.fixture(autouse=True)
def _tiny_model(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSBSR_MODELS", str(models_dir))


def labelled_folder(root: Path, n: int = 4, h: int = 64, w: int = 64, seed: int = 0) -> Path:
    """images/ + masks/ (PNG); the first image is crack-free."""
    for i in range(n):
        rgb, mask = make_crack_image(h, w, seed=seed + i)
        if i == 0:
            mask[:] = 0
        write_image(root / "images" / f"im{i}.png", rgb)
        write_image(root / "masks" / f"im{i}.png", mask)
    return root


@pytest.fixture(scope="module")
def folder_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labelled_folder(tmp_path_factory.mktemp("data") / "ds")


def evaluate(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    return run_cli(monkeypatch, capsys, "evaluate", *args)


def run_ok(monkeypatch, capsys, out: Path, *args: object) -> dict:
    code, _, err = evaluate(monkeypatch, capsys, *args, "-o", out, "--workers", 1)
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text())


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def one_error_line(result: tuple[int, str, str], *fragments: str) -> None:
    code, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], err


# ---- datasets are read right -------------------------------------------------------------------------


def test_authors_khanhha_naming_is_read_right(tmp_path, monkeypatch, capsys):
    """LR from lr_images, HR from gt/images, masks (JPEG) from gt/masks, kernels: the numbers equal an
    independent computation from those files read with OpenCV (paper preset, README spelling)."""
    base = tmp_path / "khanhha" / "test_blurred"
    names = [f"CFD_{i:03d}" for i in range(3)]
    for i, name in enumerate(names):
        rgb, mask = make_crack_image(64, 64, seed=20 + i)
        if i == 2:
            mask[:] = 0
        write_image(base / "gt" / "images" / f"{name}.jpg", rgb)
        write_image(base / "gt" / "masks" / f"{name}.jpg", mask)
        lr = cv2.resize(rgb, (16, 16), interpolation=cv2.INTER_AREA)
        write_image(base / "02_40" / "lr_images" / f"{name}.png", lr)
        k = KernelLaw().sample(make_rng(i)).build()
        write_image(base / "02_40" / "kernels" / f"{name}.png", np.round(k / k.max() * 255).astype(np.uint8))
    got = run_ok(
        monkeypatch, capsys, tmp_path / "run", "tiny", "--dataset", tmp_path / "khanhha", "--preset", "paper"
    )

    def rgb01(path: Path) -> np.ndarray:
        return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1] / np.float32(255.0)

    lr = np.stack([rgb01(base / "02_40" / "lr_images" / f"{n}.png") for n in names])
    with torch.inference_mode():
        out = load_torch_model(Registry().get("tiny"))(torch.from_numpy(lr.transpose(0, 3, 1, 2).copy()))
    stored = np.floor(np.clip(out.prob[:, 0].numpy(), 0, 1) * 65535.0 + 0.5).astype(np.uint16)  # 16-bit PNG
    probs = stored.astype(np.float32) / np.float32(65535.0)
    masks = [cv2.imread(str(base / "gt" / "masks" / f"{n}.jpg"), cv2.IMREAD_GRAYSCALE) for n in names]
    seg = evaluate_masks(zip(names, masks, probs, strict=True), PAPER)
    quality = [
        image_quality(
            n,
            out.sr[i].numpy().transpose(1, 2, 0),
            rgb01(base / "gt" / "images" / f"{n}.jpg"),
            PAPER,
            out.kernel[i, 0].numpy(),
            cv2.imread(str(base / "02_40" / "kernels" / f"{n}.png"), cv2.IMREAD_GRAYSCALE),
        )
        for i, n in enumerate(names)
    ]
    assert got["segmentation"] == json.loads(json.dumps(summarize(seg, PAPER)))
    expected_quality = summarize_quality(quality)
    for key in ("PSNR_mean", "SSIM_mean", "kernel_PSNR_mean", "n_kernels"):
        assert got["image_quality"][key] == pytest.approx(expected_quality[key], rel=1e-12), key
    dataset = got["metadata"]["dataset"]
    assert (dataset["layout"], dataset["blur_name"], dataset["n_images"]) == ("khanhha", "02_40", 3)
    assert got["segmentation"]["crack_free"]["images"] == 1


def test_degrade_khanhha_layout_equals_degrading_on_the_fly(tmp_path, monkeypatch, capsys):
    """Our `degrade --layout khanhha` tree scores exactly like its test/ folder degraded here (same seed)."""
    root = tmp_path / "crack_segmentation_dataset"
    src = khanhha_test_folder(root / "test")
    code, _, err = run_cli(monkeypatch, capsys, "degrade", src, root, "--layout", "khanhha", "--seed", 5)
    assert code == 0, err
    stored = run_ok(monkeypatch, capsys, tmp_path / "stored", "tiny", "--dataset", root)
    # The authors' test-set layout blurs with zero padding: the same padding on the fly.
    fly = run_ok(
        monkeypatch, capsys, tmp_path / "fly", "tiny", "--dataset", src, "--seed", 5, "--padding", "zero"
    )
    assert stored["metadata"]["dataset"]["layout"] == "khanhha"
    assert fly["metadata"]["dataset"]["layout"] == "folder"
    assert fly["metadata"]["dataset"]["degradation"]["seed"] == 5
    assert stored["segmentation"] == fly["segmentation"]
    for key in ("PSNR_mean", "SSIM_mean"):
        assert stored["image_quality"][key] == fly["image_quality"][key]
    # GT kernels: 8-bit max-normalised PNG there, exact float here.
    assert stored["image_quality"]["kernel_PSNR_mean"] == pytest.approx(
        fly["image_quality"]["kernel_PSNR_mean"], abs=0.5
    )


def test_split_with_lr_dir_from_degrade_equals_on_the_fly(tmp_path, monkeypatch, capsys):
    """A dev-style root (several datasets + split.csv): --split val reads the right images; LR from a
    `csbsr degrade` run gives the numbers of degrading on the fly; odd sizes are cropped alike."""
    root = tmp_path / "dev"
    labelled_folder(root / "a", n=3, seed=30)
    labelled_folder(root / "b", n=3, h=50, w=66, seed=40)
    split = "dataset,stem,split\na,im0,val\na,im1,train\na,im2,val\nb,im0,train\nb,im1,val\nb,im2,val\n"
    (root / "split.csv").write_text(split)
    degraded = tmp_path / "degraded"
    code, _, err = run_cli(monkeypatch, capsys, "degrade", root, degraded, "--pattern", "*/images/*")
    assert code == 0, err
    fly = run_ok(monkeypatch, capsys, tmp_path / "fly", "tiny", "--dataset", root, "--split", "val")
    stored = run_ok(
        monkeypatch,
        capsys,
        tmp_path / "stored",
        "tiny",
        "--dataset",
        root,
        "--split",
        "val",
        "--lr-dir",
        degraded,
    )
    names = [r["name"] for r in rows(tmp_path / "fly" / "per_image.csv")]
    assert names == ["a/im0", "a/im2", "b/im1", "b/im2"]
    assert {r["width"] + "x" + r["height"] for r in rows(tmp_path / "fly" / "per_image.csv")} == {
        "64x64",
        "64x48",
    }
    assert fly["segmentation"] == stored["segmentation"]
    for key in ("PSNR_mean", "SSIM_mean", "n_kernels"):
        assert fly["image_quality"][key] == stored["image_quality"][key]
    assert fly["image_quality"]["kernel_PSNR_mean"] == pytest.approx(
        stored["image_quality"]["kernel_PSNR_mean"]
    )
    assert (
        stored["metadata"]["dataset"]["split"] == "val"
        and "stored" in stored["metadata"]["dataset"]["lr_source"]
    )


# ---- scoring saved maps, HR input, outputs ------------------------------------------------------------


@pytest.mark.parametrize("fmt, workers", [("png16", 2), ("tiff", 1)])
def test_predictions_give_the_numbers_of_the_model(folder_ds, tmp_path, monkeypatch, capsys, fmt, workers):
    model_run = tmp_path / "model"
    args = ["--dataset", folder_ds, "--preset", "paper"]
    via_model = run_ok(
        monkeypatch, capsys, model_run, "tiny", *args, "--save-predictions", "--prob-format", fmt
    )
    suffix = ".png" if fmt == "png16" else ".tiff"
    assert sorted(p.name for p in (model_run / "predictions").iterdir()) == [
        f"im{i}{suffix}" for i in range(4)
    ]
    code, _, err = evaluate(
        monkeypatch, capsys, "--predictions", model_run, *args, "-o", tmp_path / "saved", "--workers", workers
    )
    assert code == 0, err
    via_saved = json.loads((tmp_path / "saved" / "metrics.json").read_text())
    assert via_saved["segmentation"] == via_model["segmentation"]
    assert (tmp_path / "saved" / "curves.csv").read_bytes() == (model_run / "curves.csv").read_bytes()
    model_rows = rows(model_run / "per_image.csv")
    for saved_row, model_row in zip(rows(tmp_path / "saved" / "per_image.csv"), model_rows, strict=True):
        assert saved_row == {k: model_row[k] for k in saved_row}
    assert via_saved["image_quality"] is None and via_saved["metadata"]["input"] == "predictions"


def test_hr_input_segments_the_hr_images(folder_ds, tmp_path, monkeypatch, capsys):
    got = run_ok(
        monkeypatch, capsys, tmp_path / "run", "tiny", "--dataset", folder_ds, "--hr", "--save-predictions"
    )
    assert got["metadata"]["input"] == "hr" and got["image_quality"] is None
    assert got["segmentation"]["n_images"] == 4
    prob = cv2.imread(str(tmp_path / "run" / "predictions" / "im1.png"), cv2.IMREAD_UNCHANGED)
    assert prob.shape == (64, 64) and prob.dtype == np.uint16


def test_run_folder_holds_every_output_and_its_provenance(
    folder_ds, models_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    code, stdout, err = evaluate(
        monkeypatch,
        capsys,
        "tiny",
        "--dataset",
        folder_ds,
        "-o",
        out,
        "--limit",
        3,
        "--panels",
        2,
        "--workers",
        1,
    )
    assert code == 0, err
    assert "no trained weights" in err and "IoU_max" in stdout and "images/s" in stdout
    for name in ("metrics.json", "per_image.csv", "curves.csv", "curves.png"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "panels").iterdir()) == ["im0.png", "im1.png"]
    assert not (out / "predictions").exists() and not list(out.glob(".predictions-*"))
    panel = cv2.imread(str(out / "panels" / "im1.png"))
    assert panel.shape[1] > 5 * 64  # LR, SR, HR, GT, prediction
    legend = panel[-PANEL_HEADER:, :160]  # TP / FP / FN swatches under the panels (BGR on disk)
    for rgb in ((255, 40, 40), (40, 110, 255)):
        assert (legend == rgb[::-1]).all(axis=2).sum() > 20, rgb
    got = json.loads((out / "metrics.json").read_text())
    meta = got["metadata"]
    assert meta["model"]["card_sha256"] == sha256_file(models_dir / "tiny.json")
    assert meta["model"]["weights"] == "random-init-seed-0" and not meta["model"]["trained"]
    assert meta["dataset"]["path"] == str(folder_ds.resolve()) and meta["dataset"]["n_images"] == 3
    assert meta["dataset"]["degradation"]["seed"] == 5 and meta["dataset"]["degradation"]["scale"] == 4
    assert meta["precision"] == "fp32" and meta["device"].startswith("cpu") and meta["versions"]["torch"]
    for key in ("model_images_per_s", "metric_images_per_s", "metric_seconds", "model_seconds"):
        assert meta["timing"][key] > 0, key
    assert got["preset"]["name"] == "default" and got["environment"]["numpy"]
    seg = got["segmentation"]
    assert (
        seg["n_images"] == 3
        and seg["crack_free"]["images"] == 1
        and seg["crack_free"]["FPR_mean"] is not None
    )
    per_image = rows(out / "per_image.csv")
    assert [r["name"] for r in per_image] == ["im0", "im1", "im2"] and per_image[0]["crack_free"] == "1"
    assert {"IoU_at_best", "HD95_at_best", "F1_OIS", "FPR_at_best", "PSNR", "SSIM", "kernel_PSNR"} <= set(
        per_image[0]
    )
    code, _, err = evaluate(monkeypatch, capsys, "tiny", "--dataset", folder_ds, "-o", out, "--limit", 1)
    one_error_line((code, "", err), "not empty", "--overwrite")
    code, _, err = evaluate(
        monkeypatch,
        capsys,
        "tiny",
        "--dataset",
        folder_ds,
        "-o",
        out,
        "--limit",
        1,
        "--overwrite",
        "--workers",
        1,
    )
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["segmentation"]["n_images"] == 1


# ---- bad inputs --------------------------------------------------------------------------------------


def test_bad_dataset_path_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere"
    one_error_line(evaluate(monkeypatch, capsys, "tiny", "--dataset", missing), str(missing), "not found")
    assert not (Path("runs") / "evaluate" / "tiny-nowhere").exists()


def test_inconsistent_options_are_refused(folder_ds, tmp_path, monkeypatch, capsys):
    one_error_line(evaluate(monkeypatch, capsys, "--dataset", folder_ds), "--predictions")
    one_error_line(
        evaluate(monkeypatch, capsys, "tiny", "--dataset", folder_ds, "--predictions", tmp_path), "not both"
    )
    one_error_line(
        evaluate(monkeypatch, capsys, "tiny", "--dataset", folder_ds, "--split", "val"), "split CSV"
    )
    one_error_line(evaluate(monkeypatch, capsys, "tiny", "--dataset", folder_ds, "--preset", "x"), "paper")
    one_error_line(evaluate(monkeypatch, capsys, "nope", "--dataset", folder_ds), "unknown model 'nope'")


def test_bad_image_fails_or_is_skipped(folder_ds, tmp_path, monkeypatch, capsys):
    ds = tmp_path / "ds"
    shutil.copytree(folder_ds, ds)
    (ds / "images" / "im2.png").write_bytes(b"not an image")
    code, _, err = evaluate(monkeypatch, capsys, "tiny", "--dataset", ds, "-o", tmp_path / "a")
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error:") and "im2.png" in last and "Traceback" not in err, err
    assert not (tmp_path / "a" / "metrics.json").exists() and not list((tmp_path / "a").iterdir())
    code, _, err = evaluate(
        monkeypatch, capsys, "tiny", "--dataset", ds, "-o", tmp_path / "b", "--skip-bad", "--workers", 1
    )
    assert code == 3 and "im2.png" in err, err
    got = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert got["segmentation"]["n_images"] == 3 and "im2.png" in got["metadata"]["skipped"][0]


def test_model_given_by_card_or_folder(models_dir, tmp_path):
    registry = Registry()
    assert registry.resolve("tiny").name == "tiny"
    assert registry.resolve(str(models_dir / "tiny.json")).source == str(models_dir / "tiny.json")
    assert registry.resolve(str(models_dir)).name == "tiny"
    run = tmp_path / "train-run"  # a training run exports its model to models/
    shutil.copytree(models_dir, run / "models")
    assert registry.resolve(str(run)).source == str(run / "models" / "tiny.json")
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"")
    with pytest.raises(ModelError, match="model card"):
        registry.resolve(str(checkpoint))
    with pytest.raises(ModelError, match="found 0"):
        registry.resolve(str(tmp_path))


def test_shape_step_option_removes_blob_false_positives(folder_ds, tmp_path, monkeypatch, capsys):
    """Predictions = the GT cracks plus round blobs: --min-length/--min-elongation remove the blobs (IoU_max
    rises) and the run records the rule; without them the blobs count as false positives."""
    pred = tmp_path / "maps" / "predictions"
    for i in range(4):
        mask = cv2.imread(str(folder_ds / "masks" / f"im{i}.png"), cv2.IMREAD_GRAYSCALE) >= 128
        prob = mask.astype(np.float32)
        for cx, cy in ((8, 8), (55, 10), (10, 56)):
            if not mask[cy - 4 : cy + 5, cx - 4 : cx + 5].any():
                cv2.circle(prob, (cx, cy), 3, 1.0, -1)
        write_image(pred / f"im{i}.png", (prob * 65535).astype(np.uint16))
    args = ["--predictions", tmp_path / "maps", "--dataset", folder_ds]
    raw = run_ok(monkeypatch, capsys, tmp_path / "raw", *args)
    shaped = run_ok(monkeypatch, capsys, tmp_path / "shaped", *args, "--min-length", 2, "--min-elongation", 3)
    assert raw["segmentation"]["IoU_max"] < 0.99
    assert shaped["segmentation"]["IoU_max"] > raw["segmentation"]["IoU_max"]
    assert shaped["metadata"]["shape_step"] == {"min_length_px_input": 2.0, "min_elongation": 3.0}
