"""LR synthesis and `csbsr degrade`: exact operations, reproducibility, resume, Khanhha layout, bad inputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from synth import make_crack_image
from torchvision.transforms import InterpolationMode, Resize

import csbsr_cli.data.degrade as degrade_mod
from csbsr_cli.cli.app import main
from csbsr_cli.data.degrade import DegradeConfig, blur, degrade, downscale, make_rng
from csbsr_cli.data.image_io import read_image, read_mask, read_tiff_float32
from csbsr_cli.data.kernels import KernelLaw, load_kernel, params_from_dict
from csbsr_cli.data.khanhha import degraded_test_pairs
from csbsr_cli.errors import InputError


def run_cli(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    """Run `csbsr ...` through the real entry point (exit codes, one-line errors) in-process."""
    monkeypatch.setattr(sys, "argv", ["csbsr", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_image(path: Path, rgb: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = rgb[:, :, ::-1] if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else []
    ok, enc = cv2.imencode(path.suffix, np.ascontiguousarray(bgr), params)
    assert ok
    path.write_bytes(enc.tobytes())
    return path


def image_folder(root: Path, n: int = 4, h: int = 48, w: int = 64) -> Path:
    for i in range(n):
        write_image(root / ("sub" if i % 2 else "") / f"img{i}.png", make_crack_image(h, w, seed=i)[0])
    return root


def khanhha_test_folder(root: Path, n: int = 3, size: int = 64) -> Path:
    for i in range(n):
        rgb, mask = make_crack_image(size, size, seed=10 + i)
        write_image(root / "images" / f"CFD_{i:03d}.jpg", rgb)
        write_image(root / "masks" / f"CFD_{i:03d}.jpg", mask)
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def partial_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".part" in p.name]


# ---- operations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding, np_mode", [("zero", "constant"), ("reflect", "reflect")])
def test_blur_is_correlation_with_the_chosen_padding(padding, np_mode):
    rng = np.random.default_rng(0)
    img = rng.random((30, 40, 3), dtype=np.float32)
    kernel = rng.random((21, 21)).astype(np.float32)  # asymmetric: tells correlation from convolution
    kernel /= kernel.sum()
    padded = np.pad(img.astype(np.float64), ((10, 10), (10, 10), (0, 0)), mode=np_mode)
    ref = sum(kernel[i, j] * padded[i : i + 30, j : j + 40] for i in range(21) for j in range(21))
    np.testing.assert_allclose(blur(img, kernel, padding), ref, atol=2e-6)


@pytest.mark.parametrize("antialias", [True, False])
def test_downscale_matches_torchvision_resize_on_tensors(antialias):
    x = torch.rand(1, 3, 64, 48)
    expected = Resize((16, 12), InterpolationMode.BICUBIC, antialias=antialias)(x)
    torch.testing.assert_close(downscale(x, 4, antialias), expected, rtol=0, atol=0)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_degrade_gives_clamped_8bit_lr_at_any_scale(scale):
    hr = make_crack_image(64, 96, seed=1)[0].astype(np.float32) / 255
    result = degrade(hr, DegradeConfig(scale=scale), make_rng(5, "a.png"))
    assert result.lr.shape == (64 // scale, 96 // scale, 3)
    assert result.lr.min() >= 0 and result.lr.max() <= 1
    assert np.allclose(result.lr * 255, np.round(result.lr * 255), atol=1e-4)
    np.testing.assert_array_equal(result.kernel, result.params.build())
    with pytest.raises(ValueError, match="multiples of the scale"):
        degrade(hr[:63], DegradeConfig(scale=scale), make_rng(5, "a.png"))


def test_generator_depends_only_on_seed_and_key():
    draw = lambda *keys: make_rng(*keys).random(4).tolist()  # noqa: E731
    assert draw(5, "a/b.png") == draw(5, "a/b.png")
    assert draw(5, "a/b.png") != draw(6, "a/b.png") != draw(5, "a/c.png")
    assert draw(5, 0, "x") != draw(5, 1, "x")


def test_noise_and_jpeg_are_drawn_recorded_and_reproducible():
    hr = make_crack_image(64, 64, seed=2)[0].astype(np.float32) / 255
    config = DegradeConfig(noise=(2.0, 10.0), jpeg=(40, 60))
    a, b = (degrade(hr, config, make_rng(1, "k")) for _ in range(2))
    np.testing.assert_array_equal(a.lr, b.lr)
    assert 2.0 <= a.noise_sigma <= 10.0 and 40 <= a.jpeg_quality <= 60
    clean = degrade(hr, DegradeConfig(), make_rng(1, "k"))
    assert clean.noise_sigma is None and clean.jpeg_quality is None
    np.testing.assert_array_equal(clean.kernel, a.kernel)  # the kernel is drawn first, whatever follows
    assert np.abs(clean.lr - a.lr).mean() > 1 / 255


# ---- the command -----------------------------------------------------------------------------------------


def test_folder_layout_writes_lr_exact_kernels_and_manifest(tmp_path, monkeypatch, capsys):
    src = image_folder(tmp_path / "src")
    code, out, _ = run_cli(
        monkeypatch, capsys, "degrade", src, tmp_path / "out", "--seed", 7, "--save-blurred-hr"
    )
    assert code == 0, out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 7
    assert manifest["settings"]["degradation"]["padding"] == "reflect"  # no dark border by default
    assert manifest["settings"]["degradation"]["antialias"] is True
    assert set(manifest["versions"]) >= {"csbsr", "torch", "numpy", "opencv"}
    assert [f["file"] for f in manifest["files"]] == ["img0.png", "img2.png", "sub/img1.png", "sub/img3.png"]
    for entry in manifest["files"]:
        params = params_from_dict(entry["kernel"])
        assert entry["kernel"]["type"] == "aniso"
        kernel = read_tiff_float32(tmp_path / "out" / entry["kernel_file"])
        np.testing.assert_array_equal(kernel, params.build())  # the TIFF is exact
        hr = read_image(src / entry["file"])
        expected = degrade(hr, DegradeConfig(padding="reflect"), make_rng(7, entry["file"]))
        np.testing.assert_array_equal(read_image(tmp_path / "out" / entry["lr"]), expected.lr)
        assert entry["lr_size"] == [16, 12]
        assert (tmp_path / "out" / entry["blurred_hr"]).is_file()


def test_other_scales_and_options_reach_the_outputs(tmp_path, monkeypatch, capsys):
    src = image_folder(tmp_path / "src", n=1)
    args = ["--scale", 8, "--kernel", "motion", "--noise", "3", "--jpeg", "70:90", "--padding", "reflect"]
    code, _, err = run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "out", *args)
    assert code == 0, err
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["files"][0]
    assert entry["lr_size"] == [8, 6] and entry["kernel"]["type"] == "motion"
    assert entry["noise_sigma"] == 3.0 and 70 <= entry["jpeg_quality"] <= 90


def test_sizes_not_multiple_of_scale_are_cropped_and_recorded(tmp_path, monkeypatch, capsys):
    write_image(tmp_path / "src" / "odd.png", make_crack_image(50, 66, seed=0)[0])
    assert run_cli(monkeypatch, capsys, "degrade", tmp_path / "src", tmp_path / "out")[0] == 0
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["files"][0]
    assert entry["hr_size"] == [66, 50] and entry["used_hr_size"] == [64, 48] and entry["lr_size"] == [16, 12]


def test_same_seed_same_bytes_with_one_and_two_workers(tmp_path, monkeypatch, capsys):
    src = image_folder(tmp_path / "src", n=5)
    for name, workers in (("w1", 1), ("w2", 2)):
        code, _, err = run_cli(monkeypatch, capsys, "degrade", src, tmp_path / name, "--workers", workers)
        assert code == 0, err
    assert tree(tmp_path / "w1") == tree(tmp_path / "w2")
    assert run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "s6", "--seed", 6)[0] == 0
    assert tree(tmp_path / "s6")["lr/img0.png"] != tree(tmp_path / "w1")["lr/img0.png"]


def interrupt_at_third_png(monkeypatch) -> None:
    """Ctrl-C while the third PNG is being written (in-process run, so the test controls the timing)."""
    real_write_png, calls = degrade_mod.write_png, []

    def interrupted_write_png(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            monkeypatch.setattr(degrade_mod, "write_png", real_write_png)
            raise KeyboardInterrupt
        real_write_png(*args, **kwargs)

    monkeypatch.setattr(degrade_mod, "write_png", interrupted_write_png)


def test_ctrl_c_exits_130_with_a_resume_hint(tmp_path, monkeypatch, capsys):
    interrupt_at_third_png(monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, "degrade", image_folder(tmp_path / "src"), tmp_path / "run")
    assert code == 130 and "--resume" in err


def test_interrupted_run_resumes_to_identical_bytes(tmp_path, monkeypatch, capsys):
    src = image_folder(tmp_path / "src", n=5)
    assert run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "clean")[0] == 0

    interrupt_at_third_png(monkeypatch)
    run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "run")
    assert partial_files(tmp_path / "run") == []
    assert not (tmp_path / "run" / "manifest.json").exists()
    assert len(list((tmp_path / "run" / "lr").rglob("*.png"))) == 2

    assert run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "run")[0] == 2  # needs --resume
    code, out, err = run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "run", "--resume")
    assert code == 0, err
    assert "2 from an earlier run" in out
    assert tree(tmp_path / "run") == tree(tmp_path / "clean")

    code, _, err = run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "run", "--resume", "--seed", 9)
    assert code == 2 and "seed" in err
    assert run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "run", "--seed", 9, "--overwrite")[0] == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 9 and len(manifest["files"]) == 5


# ---- Khanhha layout ----------------------------------------------------------------------------------------


def test_khanhha_round_trip_is_read_back_as_the_right_pairs(tmp_path, monkeypatch, capsys):
    src = khanhha_test_folder(tmp_path / "crack_segmentation_dataset" / "test")
    out = tmp_path / "crack_segmentation_dataset"
    code, _, err = run_cli(monkeypatch, capsys, "degrade", src, out, "--layout", "khanhha", "--seed", 5)
    assert code == 0, err
    blured = out / "test_blured"
    assert sorted(p.relative_to(blured).as_posix() for p in blured.rglob("*CFD_001*")) == [
        "02_40/hr_images/CFD_001.png",
        "02_40/kernels/CFD_001.png",
        "02_40/lr_images/CFD_001.png",
        "gt/images/CFD_001.jpg",
        "gt/masks/CFD_001.jpg",
    ]
    manifest = json.loads((blured / "02_40" / "manifest.json").read_text())
    assert manifest["settings"]["degradation"]["padding"] == "zero"  # the authors' test set
    params = {e["file"]: params_from_dict(e["kernel"]) for e in manifest["files"]}

    pairs = degraded_test_pairs(out)
    assert [p.name for p in pairs] == ["CFD_000", "CFD_001", "CFD_002"]
    for pair in pairs:
        source = src / "images" / f"{pair.name}.jpg"
        assert pair.hr.read_bytes() == source.read_bytes()  # the ground truth is the original file
        np.testing.assert_array_equal(read_mask(pair.mask), read_mask(src / "masks" / f"{pair.name}.jpg"))
        assert read_image(pair.lr).shape == (16, 16, 3)
        exact = params[f"images/{pair.name}.jpg"].build()
        np.testing.assert_allclose(load_kernel(pair.kernel), exact, atol=exact.max() / 255)
        expected = degrade(read_image(source), DegradeConfig(), make_rng(5, f"images/{pair.name}.jpg"))
        np.testing.assert_array_equal(read_image(pair.lr), expected.lr)


def test_evaluation_reader_takes_the_authors_naming(tmp_path):
    base = tmp_path / "test_blurred"  # the README's spelling
    rgb, mask = make_crack_image(64, 64, seed=3)
    kernel = KernelLaw().sample(make_rng(0)).build()
    for name in ("b", "a"):
        write_image(base / "gt" / "images" / f"{name}.jpg", rgb)
        write_image(base / "gt" / "masks" / f"{name}.jpg", mask)
        write_image(base / "02_40" / "lr_images" / f"{name}.png", rgb[::4, ::4])
        write_image(
            base / "02_40" / "kernels" / f"{name}.png", np.round(kernel / kernel.max() * 255).astype(np.uint8)
        )
    pairs = degraded_test_pairs(tmp_path)
    assert [(p.name, p.lr.name, p.hr.name, p.mask.name, p.kernel.name) for p in pairs] == [
        ("a", "a.png", "a.jpg", "a.jpg", "a.png"),
        ("b", "b.png", "b.jpg", "b.jpg", "b.png"),
    ]
    assert pairs[0].blurred_hr is None
    (base / "02_40" / "kernels" / "b.png").unlink()
    with pytest.raises(InputError, match="b.png"):
        degraded_test_pairs(tmp_path, "02_40")


# ---- bad inputs: exit 2, one line naming the file, nothing half-written ----------------------------------


def assert_refused(result: tuple[int, str, str], name: str, out: Path) -> None:
    code, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines and lines[-1].startswith("error:") and name in lines[-1], err
    assert partial_files(out) == [] and not list(out.rglob("manifest.json"))


def test_image_without_mask_is_refused(tmp_path, monkeypatch, capsys):
    src = khanhha_test_folder(tmp_path / "test")
    (src / "masks" / "CFD_001.jpg").unlink()
    result = run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "out", "--layout", "khanhha")
    assert_refused(result, "CFD_001.jpg", tmp_path / "out")
    assert not (tmp_path / "out" / "test_blured").exists()  # found while listing: nothing written at all


def test_mask_of_another_size_is_refused(tmp_path, monkeypatch, capsys):
    src = khanhha_test_folder(tmp_path / "test")
    write_image(src / "masks" / "CFD_002.jpg", np.zeros((60, 64), np.uint8))
    result = run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "out", "--layout", "khanhha")
    assert_refused(result, "CFD_002.jpg", tmp_path / "out")
    assert "60" in result[2] and not list((tmp_path / "out").rglob("CFD_002.png"))


@pytest.mark.parametrize(
    "name, content",
    [
        ("truncated.jpg", lambda jpg: jpg[: len(jpg) // 2]),
        ("garbage.png", lambda jpg: b"this is not an image" * 10),
        ("empty.png", lambda jpg: b""),
    ],
)
def test_unreadable_or_truncated_file_is_refused(tmp_path, monkeypatch, capsys, name, content):
    src = image_folder(tmp_path / "src", n=2)
    ok, jpg = cv2.imencode(".jpg", make_crack_image(48, 64, seed=0)[0])
    (src / name).write_bytes(content(jpg.tobytes()))
    result = run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "out")
    assert_refused(result, name, tmp_path / "out")
    assert not list((tmp_path / "out").rglob(f"{Path(name).stem}.*"))


def test_image_smaller_than_the_kernel_is_refused(tmp_path, monkeypatch, capsys):
    write_image(tmp_path / "src" / "tiny.png", make_crack_image(16, 16, seed=0)[0])
    result = run_cli(monkeypatch, capsys, "degrade", tmp_path / "src", tmp_path / "out")
    assert_refused(result, "tiny.png", tmp_path / "out")
    assert "smaller" in result[2]


def test_khanhha_refuses_sizes_that_are_not_multiples_of_the_scale(tmp_path, monkeypatch, capsys):
    src = khanhha_test_folder(tmp_path / "test", n=1, size=66)
    result = run_cli(monkeypatch, capsys, "degrade", src, tmp_path / "out", "--layout", "khanhha")
    assert_refused(result, "CFD_000.jpg", tmp_path / "out")


def test_skip_bad_warns_lists_and_finishes_the_rest(tmp_path, monkeypatch, capsys):
    src = khanhha_test_folder(tmp_path / "test", n=4)
    (src / "masks" / "CFD_000.jpg").unlink()
    write_image(src / "masks" / "CFD_001.jpg", np.zeros((60, 64), np.uint8))
    (src / "images" / "CFD_002.jpg").write_bytes(b"\xff\xd8\xff broken")
    code, _, err = run_cli(
        monkeypatch, capsys, "degrade", src, tmp_path / "out", "--layout", "khanhha", "--skip-bad"
    )
    assert code == 3, err
    assert all(name in err for name in ("CFD_000.jpg", "CFD_001.jpg", "CFD_002.jpg"))
    manifest = json.loads((tmp_path / "out" / "test_blured" / "02_40" / "manifest.json").read_text())
    assert [e["file"] for e in manifest["files"]] == ["images/CFD_003.jpg"]
    assert len(manifest["failed"]) == 3
    assert [p.name for p in degraded_test_pairs(tmp_path / "out")] == ["CFD_003"]


def test_grey_rgba_16bit_and_non_ascii_inputs_are_degraded(tmp_path, monkeypatch, capsys):
    rgb = make_crack_image(48, 64, seed=4)[0]
    write_image(tmp_path / "src" / "grey.png", rgb[:, :, 0])
    write_image(
        tmp_path / "src" / "rgba.png", np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    )
    write_image(tmp_path / "src" / "deep.png", rgb.astype(np.uint16) * 257)
    write_image(tmp_path / "src" / "fissure_été.jpg", rgb)
    code, _, err = run_cli(monkeypatch, capsys, "degrade", tmp_path / "src", tmp_path / "out")
    assert code == 0, err
    colour = rgb.astype(np.float32) / 255
    grey = np.repeat(colour[:, :, :1], 3, axis=2)
    for name, hr in (
        ("grey.png", grey),
        ("rgba.png", colour),
        ("deep.png", colour),
        ("fissure_été.jpg", None),
    ):
        lr = read_image((tmp_path / "out" / "lr" / name).with_suffix(".png"))
        if hr is not None:  # read as the same pixels: the LR is the one those pixels give
            expected = degrade(hr, DegradeConfig(padding="reflect"), make_rng(5, name)).lr
            assert np.abs(lr - expected).max() <= 1 / 255 + 1e-6, name
