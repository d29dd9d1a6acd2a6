"""`csbsr segment`: every input kind, every output, resume, atomic writes, failures and the exit codes."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from test_tiling import TINY_CONFIG, GlobalJoint, LocalJoint

from csbsr_cli.cli.app import main
from csbsr_cli.data.image_io import read_image, write_png
from csbsr_cli.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_PARTIAL, DeviceError, InputError
from csbsr_cli.infer.device import resolve_device, resolve_precision
from csbsr_cli.infer.inputs import count_frames, discover, iter_frames
from csbsr_cli.infer.outputs import FRAME_OUTPUTS, OUTPUTS, OutputOptions, PngStream, TiffStream
from csbsr_cli.infer.pipeline import Job, segment
from csbsr_cli.infer.runner import TorchRunner, make_runner
from csbsr_cli.infer.shape import ShapeRule
from csbsr_cli.nets.types import JointOutput
from csbsr_cli.registry import Registry

NO_CUDA = not torch.cuda.is_available()


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run the real entry point (exit-code mapping included); (exit code, stdout + stderr)."""
    argv = sys.argv
    sys.argv = ["csbsr", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A model card: the real KBPN + PSPNet at a tiny size, 32 px tiles."""
    root = tmp_path_factory.mktemp("models")
    card = {"name": "tiny", "arch": "csbsr-pspnet", "config": TINY_CONFIG, "tile": 32, "threshold": 0.5}
    (root / "tiny.json").write_text(json.dumps(card))
    return root


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.random((h // 4 + 1, w // 4 + 1, 3)).astype(np.float32), (w, h))
    cv2.line(img, (0, h // 2), (w, h // 3), (0.05, 0.05, 0.05), 1)
    return img.clip(0, 1)


def _write_video(path: Path, frames: int, size: tuple[int, int] = (40, 32)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 40 + 20 * i, np.uint8))
    writer.release()


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A folder with every kind of input: 8/16-bit, grey, RGBA, EXIF-rotated, non-ASCII names, a video."""
    root = tmp_path / "frames"
    write_png(root / "plain.png", _texture(36, 44, 1))
    write_png(root / "sub" / "deep16.png", _texture(40, 40, 2), bits=16)
    write_png(root / "sub" / "grey.png", _texture(34, 38, 3)[:, :, 0])
    rgba = (np.dstack([_texture(36, 36, 4), np.full((36, 36, 1), 0.5, np.float32)]) * 255).astype(np.uint8)
    cv2.imencode(".png", rgba)[1].tofile(str(root / "sub" / "rgba.png"))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray((_texture(32, 48, 5) * 255).astype(np.uint8)).save(root / "rotated.jpg", exif=exif)
    write_png(root / "fissure_été" / "тріщина.png", _texture(33, 35, 6))
    _write_video(root / "clip.avi", frames=5)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    write_png(root / ".hidden" / "skip.png", _texture(32, 32))
    return root


EXPECTED_KEYS = {
    "plain", "rotated", "sub/deep16", "sub/grey", "sub/rgba", "fissure_été/тріщина",
    "clip/000000", "clip/000002", "clip/000004",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------- inputs


def test_discover_folder_recursive_with_filters(inputs: Path, tmp_path: Path) -> None:
    keys = [s.key for s in discover([str(inputs)])]
    assert keys == sorted(keys) and set(keys) == {k for k in EXPECTED_KEYS if not k.startswith("clip/")} | {
        "clip"
    }
    assert {s.key for s in discover([str(inputs)], extensions=["PNG"])} == {
        "plain", "sub/deep16", "sub/grey", "sub/rgba", "fissure_été/тріщина",
    }  # fmt: skip
    assert {s.key for s in discover([str(inputs)], recursive=False)} == {"plain", "rotated", "clip"}
    assert "sub/grey" not in {s.key for s in discover([str(inputs)], exclude=inputs / "sub")}


def test_discover_globs_files_and_name_collisions(inputs: Path, tmp_path: Path) -> None:
    keys = {s.key for s in discover([str(inputs / "**" / "*.png")])}
    assert keys == {"plain", "sub/deep16", "sub/grey", "sub/rgba", "fissure_été/тріщина"}
    assert [s.key for s in discover([str(inputs / "sub" / "grey.png")])] == ["grey"]
    write_png(inputs / "plain.jpg", _texture(32, 32))
    keys = {s.key for s in discover([str(inputs)], recursive=False)}
    assert {"plain.png", "plain.jpg"} <= keys
    other = tmp_path / "other"
    write_png(other / "plain.png", _texture(32, 32))
    assert {s.key for s in discover([str(inputs), str(other)], extensions=["png"], recursive=False)} == {
        "frames/plain", "other/plain",
    }  # fmt: skip


def test_discover_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for bad, message in (
        ("missing.png", "no such"),
        (str(tmp_path / "empty"), "no images"),
        ("nope/*.png", "matches"),
    ):
        with pytest.raises(InputError, match=message):
            discover([bad])


def test_every_image_kind_decodes(inputs: Path) -> None:
    frames = {f.key: f for f in iter_frames(discover([str(inputs)], extensions=["png", "jpg"]))}
    assert all(
        f.error is None and f.image.dtype == np.float32 and f.image.shape[2] == 3 for f in frames.values()
    )
    deep = frames["sub/deep16"].image
    assert np.abs(deep * 65535 - np.round(deep * 65535)).max() < 1e-2
    assert not np.allclose(deep * 255, np.round(deep * 255), atol=1e-3)  # 16-bit precision kept
    grey = frames["sub/grey"].image
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    assert frames["rotated"].image.shape[:2] == (48, 32)  # EXIF orientation applied
    assert frames["fissure_été/тріщина"].image.shape[:2] == (33, 35)


def test_video_frames_every_n_and_skip(inputs: Path, tmp_path: Path) -> None:
    video = discover([str(inputs / "clip.avi")])
    assert count_frames(video, every=2) == 3
    frames = list(iter_frames(video, every=2))
    assert [(f.key, f.index) for f in frames] == [("clip/000000", 0), ("clip/000002", 2), ("clip/000004", 4)]
    assert frames[1].image.shape == (32, 40, 3) and abs(frames[1].image.mean() - 80 / 255) < 0.02
    assert [f.index for f in iter_frames(video, every=2, wanted=lambda k: k != "clip/000002")] == [0, 4]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    (frame,) = iter_frames(discover([str(broken)]))
    assert frame.error and "video" in frame.error


# --------------------------------------------------------------------------------------- writers


@pytest.mark.parametrize(("channels", "bits"), [(1, 8), (1, 16), (3, 8)])
def test_png_stream_matches_opencv(tmp_path: Path, channels: int, bits: int) -> None:
    rng = np.random.default_rng(0)
    shape = (37, 29) if channels == 1 else (37, 29, 3)
    img = rng.integers(0, 2**bits, shape, dtype=np.uint8 if bits == 8 else np.uint16)
    stream = PngStream(tmp_path / "x.png", 37, 29, channels, bits)
    for y in (0, 5, 6, 20):
        stream.write(img[y : {0: 5, 5: 6, 6: 20, 20: 37}[y]])
    stream.close()
    got = cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(got if channels == 1 else got[:, :, ::-1], img)


def test_tiff_stream_roundtrip(tmp_path: Path) -> None:
    img = np.random.default_rng(0).random((150, 70), dtype=np.float32)
    stream = TiffStream(tmp_path / "p.tiff", 150, 70)
    for y in range(0, 150, 41):
        stream.write(img[y : y + 41])
    stream.close()
    assert np.array_equal(tifffile.imread(tmp_path / "p.tiff"), img)


# --------------------------------------------------------------------------------- the CLI end to end


def _frame_files(
    out: Path, key: str, kinds: tuple[str, ...] = ("mask", "overlay", "geojson", "json")
) -> list[Path]:
    suffix = {
        "mask": ".png",
        "prob": ".png",
        "prob8": ".png",
        "overlay": ".jpg",
        "geojson": ".geojson",
        "json": ".json",
        "sr": ".png",
        "kernel": ".png",
    }
    return [out / kind / f"{key}{suffix[kind]}" for kind in kinds]


def _part_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if ".part" in p.name]


def test_segment_cli_writes_every_output(
    inputs: Path, tmp_path: Path, models_dir: Path, capsys, terminal_stderr
) -> None:
    out = tmp_path / "run"
    code, text = cli(
        capsys, "segment", str(inputs), "-o", str(out), "--model", "tiny", "--models-dir", str(models_dir),
        "--every", "2", "--outputs", ",".join(OUTPUTS), "--gsd", "0.5", "-q",
    )  # fmt: skip
    assert code == 0, text
    assert "random weights" in terminal_stderr.getvalue()
    assert "loading tiny" not in terminal_stderr.getvalue()  # -q: no progress display, even on a terminal
    for key in EXPECTED_KEYS:
        files = _frame_files(out, key, FRAME_OUTPUTS)
        assert all(p.is_file() for p in files), key
    record = json.loads((out / "json" / "sub" / "deep16.json").read_text(encoding="utf-8"))
    assert record["input_size"] == [40, 40] and record["sr_size"] == [160, 160] and record["status"] == "ok"
    assert len(record["kernel"]) == 21 and record["settings"]["mode"] == "blend"
    mask = cv2.imread(str(out / "mask" / "sub" / "deep16.png"), cv2.IMREAD_UNCHANGED)
    prob = cv2.imread(str(out / "prob" / "sub" / "deep16.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == prob.shape == (160, 160) and set(np.unique(mask)) <= {0, 255}
    assert prob.dtype == np.uint16
    assert (prob[mask == 255] >= 32767).all() and (prob[mask == 0] <= 32768).all()  # mask = prob > threshold
    assert read_image(out / "overlay" / "rotated.jpg").shape[:2] == (48, 32)
    assert read_image(out / "sr" / "rotated.png").shape[:2] == (192, 128)
    with open(out / "summary.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["frame"] for r in rows} == EXPECTED_KEYS and all(r["status"] == "ok" for r in rows)
    assert "length_mm" in rows[0] and rows[0]["crack_area_fraction"] != ""
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["frames_ok"] == len(EXPECTED_KEYS)
    assert not _part_files(out)


def _tiny_job(options: OutputOptions, **kw) -> Job:
    fields = dict(model="local", weights="w", backend="torch", precision="fp32", scale=4, divisor=2, tile=32,
                  overlap=12, mode="crop", options=options)  # fmt: skip
    return Job(**{**fields, **kw})


class _DarkIsCrack(torch.nn.Module):
    """Bicubic SR; crack where the SR image is dark (the textures' drawn line)."""

    def forward(self, lr: torch.Tensor) -> JointOutput:
        sr = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(
            0, 1
        )
        prob = torch.sigmoid(40 * (0.2 - sr.mean(1, keepdim=True)))
        return JointOutput(sr, prob, sr.new_zeros(len(sr), 1, 21, 21), None)


def test_mask_on_input_grid_and_float_probabilities(tmp_path: Path) -> None:
    write_png(tmp_path / "in" / "a.png", _texture(40, 50))
    runner = TorchRunner(_DarkIsCrack(), torch.device("cpu"), None, 4)
    options = OutputOptions(threshold=0.5, mask_scale="input", prob_format="tiff", outputs=OUTPUTS)
    result = segment(discover([str(tmp_path / "in")]), tmp_path / "out", runner, _tiny_job(options))
    assert result.processed == 1
    mask = cv2.imread(str(tmp_path / "out" / "mask" / "a.png"), cv2.IMREAD_UNCHANGED)
    prob = tifffile.imread(tmp_path / "out" / "prob" / "a.tiff")
    assert mask.shape == (40, 50) and prob.shape == (160, 200) and prob.dtype == np.float32
    blocks = (prob > 0.5).reshape(40, 4, 50, 4).any(axis=(1, 3))
    assert np.array_equal(mask == 255, blocks)  # input-grid mask: any crack pixel in the 4x4 block
    overlay, image = read_image(tmp_path / "out" / "overlay" / "a.jpg"), read_image(tmp_path / "in" / "a.png")
    crack = mask == 255
    assert 0 < crack.sum() < crack.size
    assert np.abs(overlay[~crack] - image[~crack]).mean() < 0.06  # untouched but for JPEG (4:2:0 chroma)
    red = overlay[crack][:, 0] - overlay[crack][:, 1:].mean(1)
    assert red.mean() > (image[crack][:, 0] - image[crack][:, 1:].mean(1)).mean() + 0.15  # tinted red


def test_corrupt_frame_does_not_stop_the_batch(
    inputs: Path, tmp_path: Path, models_dir: Path, capsys
) -> None:
    (inputs / "sub" / "truncated.png").write_bytes((inputs / "plain.png").read_bytes()[:60])
    out = tmp_path / "run"
    code, text = cli(
        capsys,
        "segment",
        str(inputs / "sub"),
        "-o",
        str(out),
        "-m",
        "tiny",
        "--models-dir",
        str(models_dir),
        "-q",
    )
    assert code == EXIT_PARTIAL, text
    assert "truncated" in text and "failed" in text
    rows = {r["frame"]: r for r in csv.DictReader(open(out / "summary.csv", encoding="utf-8"))}
    assert rows["truncated"]["status"] == "failed" and "truncated.png" in rows["truncated"]["error"]
    assert all(rows[k]["status"] == "ok" for k in ("deep16", "grey", "rgba"))
    assert not (out / "mask" / "truncated.png").exists() and not _part_files(out)


def test_non_empty_output_needs_resume_or_overwrite(
    inputs: Path, tmp_path: Path, models_dir: Path, capsys
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "something").write_text("x")
    code, text = cli(capsys, "segment", str(inputs / "plain.png"), "-o", str(out), "-m", "tiny",
                     "--models-dir", str(models_dir))  # fmt: skip
    assert code == EXIT_BAD_INPUT and "--resume" in text
    code, text = cli(capsys, "segment", str(tmp_path / "missing"), "-o", str(tmp_path / "o2"))
    assert code == EXIT_BAD_INPUT and "no such file" in text


def test_resume_skips_complete_frames(tmp_path: Path) -> None:
    for i in range(3):
        write_png(tmp_path / "in" / f"f{i}.png", _texture(36, 40, i))
    sources, out = discover([str(tmp_path / "in")]), tmp_path / "out"
    runner = TorchRunner(LocalJoint(), torch.device("cpu"), None, 4)
    job = _tiny_job(OutputOptions(threshold=0.5))
    assert segment(sources, out, runner, job).processed == 3
    stamp = (out / "json" / "f1.json").stat().st_mtime_ns
    again = segment(sources, out, runner, job, resume=True)
    assert (again.processed, again.resumed) == (0, 3) and len(again.records) == 3
    (out / "mask" / "f1.png").unlink()  # an incomplete frame is redone, the others are not
    again = segment(sources, out, runner, job, resume=True)
    assert (again.processed, again.resumed) == (1, 2)
    assert (out / "json" / "f1.json").stat().st_mtime_ns != stamp and (out / "mask" / "f1.png").is_file()
    changed = _tiny_job(OutputOptions(threshold=0.7))  # other settings: nothing counts as complete
    assert segment(sources, out, runner, changed, resume=True).processed == 3
    rows = list(csv.DictReader(open(out / "summary.csv", encoding="utf-8")))
    assert len(rows) == 3


class _Interrupting:
    """A runner that presses Ctrl-C on its `at`-th call."""

    def __init__(self, runner, at: int) -> None:
        self.runner, self.at, self.calls = runner, at, 0

    def __call__(self, tiles):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.runner(tiles)


def test_interrupt_leaves_no_partial_files(tmp_path: Path) -> None:
    for i in range(3):
        write_png(tmp_path / "in" / f"f{i}.png", _texture(64, 64, i))
    out = tmp_path / "out"
    runner = _Interrupting(TorchRunner(LocalJoint(), torch.device("cpu"), None, 2), at=4)  # f0: 2 calls
    options = OutputOptions(threshold=0.5, outputs=OUTPUTS)
    with pytest.raises(KeyboardInterrupt):
        segment(discover([str(tmp_path / "in")]), out, runner, _tiny_job(options))
    assert not _part_files(out)
    kinds = FRAME_OUTPUTS
    complete = [k for k in ("f0", "f1", "f2") if all(p.is_file() for p in _frame_files(out, k, kinds))]
    for key in {"f0", "f1", "f2"} - set(complete):  # a frame is all there or not there at all
        assert not any(out.rglob(f"{key}.*")), key
    assert "f2" not in complete  # Ctrl-C came during f1
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    inputs_before = {p: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    resumed = segment(discover([str(tmp_path / "in")]), out, runner.runner, _tiny_job(options), resume=True)
    assert (resumed.processed, resumed.resumed) == (3 - len(complete), len(complete))
    assert inputs_before == {p: p.read_bytes() for p in (tmp_path / "in").iterdir()}  # inputs never modified


def test_ctrl_c_exit_code(inputs: Path, tmp_path: Path, models_dir: Path, capsys, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("csbsr_cli.infer.pipeline.segment", interrupted)
    code, text = cli(capsys, "segment", str(inputs / "plain.png"), "-o", str(tmp_path / "o"), "-m", "tiny",
                     "--models-dir", str(models_dir), "-q")  # fmt: skip
    assert code == EXIT_INTERRUPTED and "--resume" in text


class _FailsOnWidth(LocalJoint):
    def forward(self, lr):
        if lr.shape[-1] != lr.shape[-2]:
            raise ValueError("unsupported shape")
        return super().forward(lr)


class _NanOnBlack(LocalJoint):
    def forward(self, lr):
        out = super().forward(lr)
        return out._replace(prob=out.prob / (lr.amax((1, 2, 3), keepdim=True) > 0))


def test_processing_error_fails_only_that_frame(tmp_path: Path) -> None:
    write_png(tmp_path / "in" / "ok.png", _texture(40, 40))
    write_png(tmp_path / "in" / "bad.png", _texture(20, 50))
    write_png(tmp_path / "in" / "black.png", np.zeros((40, 40, 3), np.float32))
    runner = TorchRunner(_FailsOnWidth(), torch.device("cpu"), None, 4)
    # whole-frame mode: the 20x50 frame reaches the model as a non-square input and fails
    job = _tiny_job(OutputOptions(threshold=0.5), tile=0, overlap=0)
    result = segment(discover([str(tmp_path / "in")]), tmp_path / "out", runner, job)
    assert result.processed == 2 and [r["frame"] for r in result.failed] == ["bad"]
    assert "unsupported shape" in result.failed[0]["error"] and not any((tmp_path / "out").rglob("bad.*"))
    runner = TorchRunner(_NanOnBlack(), torch.device("cpu"), None, 4)
    result = segment(discover([str(tmp_path / "in" / "black.png")]), tmp_path / "out2", runner, job)
    assert "NaN" in result.failed[0]["error"] and not any((tmp_path / "out2").rglob("black.*"))


class _OomAbove(GlobalJoint):
    """Raises CUDA's out-of-memory error for batches larger than `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, lr: torch.Tensor) -> JointOutput:
        if len(lr) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(lr)


def test_out_of_memory_halves_the_batch() -> None:
    torch.manual_seed(0)
    model = _OomAbove(limit=2)
    tiles = torch.rand(7, 3, 16, 16)
    runner = TorchRunner(model, torch.device("cpu"), None, batch=8)
    sr, prob, kernel = runner(tiles)
    assert runner.batch == 2 and runner.warnings and prob.shape == (7, 1, 64, 64)
    _, ref, _ = TorchRunner(model, torch.device("cpu"), None, batch=1)(tiles)
    torch.testing.assert_close(prob, ref)
    with pytest.raises(DeviceError, match="smaller --tile"):
        TorchRunner(_OomAbove(limit=0), torch.device("cpu"), None, batch=2)(tiles)


def test_device_and_precision_choice() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(DeviceError, match="fp16 needs a CUDA"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    runner = TorchRunner(LocalJoint(), torch.device("cpu"), torch.bfloat16, 2)
    sr, prob, _ = runner(torch.rand(2, 3, 16, 16))
    assert sr.dtype == prob.dtype == torch.float32  # autocast inside, float32 out


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")
def test_cuda_requested_without_cuda_is_refused() -> None:
    spec = Registry().get("csbsr-lite")
    with pytest.raises(DeviceError, match="CUDA"):
        resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="require-gpu"):
        make_runner(spec, device="auto", require_gpu=True)


@pytest.mark.slow
def test_sample_drone_frames(tmp_path: Path, capsys) -> None:
    """The shipped 1280x720 drone frames with the default model (minutes on a CPU: run with -m slow)."""
    sample = Path(__file__).resolve().parents[1] / "sample_data" / "drone_crops"
    out = tmp_path / "sample"
    code, text = cli(
        capsys, "segment", str(sample), "-o", str(out), "--outputs", "mask,json,overlay,prob,sr", "-q"
    )
    assert code == 0, text
    for path in sample.glob("*.jpg"):
        assert all(
            p.is_file() for p in _frame_files(out, path.stem, ("mask", "prob", "overlay", "json", "sr"))
        )
        assert cv2.imread(str(out / "mask" / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED).shape == (2880, 5120)


def test_card_overlap_applies_at_the_cards_tile_only(
    tmp_path: Path, models_dir: Path, capsys, terminal_stderr
) -> None:
    card = json.loads((models_dir / "tiny.json").read_text()) | {"name": "tiny-ov", "overlap": 8}
    cards = tmp_path / "models"
    cards.mkdir()
    (cards / "tiny-ov.json").write_text(json.dumps(card))
    write_png(tmp_path / "in" / "a.png", _texture(40, 48))
    settings = {}
    # By name from a models folder, and by the card's path (as evaluate and export take it too).
    for tile, model in (("32", ["--model", "tiny-ov", "--models-dir", str(cards)]),
                        ("24", ["--model", str(cards / "tiny-ov.json")])):  # fmt: skip
        out = tmp_path / f"run{tile}"
        code, text = cli(capsys, "segment", str(tmp_path / "in"), "-o", str(out), *model, "--tile", tile)
        assert code == 0, text
        assert "loading tiny-ov" in terminal_stderr.getvalue()  # model loading has its progress display
        settings[tile] = json.loads((out / "json" / "a.json").read_text())["settings"]
    assert settings["32"]["overlap"] == 8  # the card's choice for its own tile
    assert settings["24"]["overlap"] == 12  # another tile: the blending rule's half tile


def test_shape_step_cleans_masks_and_figures_but_not_probabilities(tmp_path: Path) -> None:
    """A long dark line and a dark dot: the shape step keeps the line, drops the dot, says so in the JSON,
    and the probability map is the same as without the step."""
    img = np.full((40, 60, 3), 0.7, np.float32)
    img[20, 5:55] = 0.05  # a crack 50 input px long
    img[8:11, 40:43] = 0.05  # a pore
    write_png(tmp_path / "in" / "a.png", img)
    runner = TorchRunner(_DarkIsCrack(), torch.device("cpu"), None, 4)
    records = {}
    for name, rule in (("raw", ShapeRule()), ("shaped", ShapeRule(min_length=10, min_elongation=4))):
        options = OutputOptions(threshold=0.5, shape=rule, outputs=OUTPUTS)
        segment(discover([str(tmp_path / "in")]), tmp_path / name, runner, _tiny_job(options))
        records[name] = json.loads((tmp_path / name / "json" / "a.json").read_text())
    raw_mask, shaped_mask = (
        cv2.imread(str(tmp_path / n / "mask" / "a.png"), 0) > 0 for n in ("raw", "shaped")
    )
    assert raw_mask[32:44, 160:172].any() and not shaped_mask[28:48, 156:176].any()  # the pore is gone
    assert shaped_mask[80:84].sum() == raw_mask[80:84].sum()  # the crack stays whole
    for kind in ("prob",):
        a, b = (
            cv2.imread(str(tmp_path / n / kind / "a.png"), cv2.IMREAD_UNCHANGED) for n in ("raw", "shaped")
        )
        np.testing.assert_array_equal(a, b)
    step = records["shaped"]["shape_step"]
    assert step["min_length_px_input"] == 10 and step["removed_pieces"] == 1 and step["pieces"] == 2
    assert records["raw"]["shape_step"]["removed_pieces"] == 0
    assert records["shaped"]["crack_pixels"] == records["raw"]["crack_pixels"] - step["removed_pixels"]
    assert records["shaped"]["length_px"] < records["raw"]["length_px"]
