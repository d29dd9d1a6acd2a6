"""`csbsr tile split/merge`: exact round trips, blended per-tile predictions, clear failures."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_segment import cli

from csbsr_cli.data.image_io import read_image, write_png, write_tiff_float32
from csbsr_cli.errors import EXIT_BAD_INPUT, EXIT_PARTIAL
from csbsr_cli.infer.inputs import discover
from csbsr_cli.infer.tileset import lossless_format, merge, read_manifest, split


def _frames(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    paths = {
        "eight": root / "eight.png",
        "sub/sixteen": root / "sub" / "sixteen.png",
        "small": root / "small.png",
        "float": root / "float.tiff",
    }
    write_png(paths["eight"], rng.random((150, 203, 3), dtype=np.float32))
    write_png(paths["sub/sixteen"], rng.random((120, 97), dtype=np.float32), bits=16)
    write_png(paths["small"], rng.random((20, 30, 3), dtype=np.float32))  # smaller than a tile
    write_tiff_float32(paths["float"], rng.random((64, 80, 3), dtype=np.float32))
    return paths


def test_lossless_format() -> None:
    assert lossless_format(np.array([0, 1 / 255, 1], np.float32)) == "png8"
    assert lossless_format(np.array([0, 1 / 65535], np.float32)) == "png16"
    assert lossless_format(np.array([0.123456], np.float32)) == "tiff"


def test_split_merge_round_trip_is_exact(tmp_path: Path, capsys) -> None:
    frames = _frames(tmp_path / "in")
    code, text = cli(capsys, "tile", "split", str(tmp_path / "in"), str(tmp_path / "tiles"), "--tile", "48",
                     "--overlap", "10")  # fmt: skip
    assert code == 0, text
    manifest = read_manifest(tmp_path / "tiles" / "manifest.json")
    assert (manifest["tile"], manifest["overlap"]) == (48, 10)
    by_key = {f["key"]: f for f in manifest["frames"]}
    assert {k: f["format"] for k, f in by_key.items()} == {
        "eight": "png8", "sub/sixteen": "png16", "small": "png8", "float": "tiff",
    }  # fmt: skip
    for frame in manifest["frames"]:
        for t in frame["tiles"]:
            assert read_image(tmp_path / "tiles" / t["file"]).shape[:2] == (48, 48)
    code, text = cli(
        capsys, "tile", "merge", str(tmp_path / "tiles" / "manifest.json"), str(tmp_path / "merged")
    )
    assert code == 0, text
    for key, source in frames.items():
        suffix = ".tiff" if key == "float" else ".png"
        assert np.array_equal(read_image(tmp_path / "merged" / f"{key}{suffix}"), read_image(source)), key


def test_merge_blends_per_tile_predictions_at_scale(tmp_path: Path) -> None:
    """Per-tile x4 predictions (here: the tiles enlarged) merge back at x4, blended or cropped."""
    src = tmp_path / "in" / "a.png"
    write_png(src, np.random.default_rng(1).random((70, 90, 3), dtype=np.float32))
    manifest, failures = split(discover([str(src)]), tmp_path / "tiles", tile=32, overlap=8)
    assert not failures
    for t in manifest["frames"][0]["tiles"]:
        tile = read_image(tmp_path / "tiles" / t["file"])
        big = cv2.resize(tile, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
        write_png(tmp_path / "preds" / t["file"], big, bits=16)
    expected = cv2.resize(read_image(src), None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    for mode in ("crop", "blend"):
        written, failures = merge(
            tmp_path / "tiles", tmp_path / mode, tiles_dir=tmp_path / "preds", mode=mode
        )
        assert not failures
        np.testing.assert_allclose(read_image(written[0]), expected, atol=1e-4)


def test_merge_reports_missing_tiles(tmp_path: Path, capsys) -> None:
    write_png(tmp_path / "in" / "a.png", np.zeros((40, 40, 3), np.float32) + 0.5)
    write_png(tmp_path / "in" / "b.png", np.zeros((40, 40, 3), np.float32) + 0.25)
    split(discover([str(tmp_path / "in")]), tmp_path / "tiles", tile=32, overlap=8)
    next((tmp_path / "tiles" / "b").iterdir()).unlink()
    code, text = cli(capsys, "tile", "merge", str(tmp_path / "tiles"), str(tmp_path / "out"))
    assert code == EXIT_PARTIAL and "tile not found" in text
    assert (tmp_path / "out" / "a.png").is_file() and not (tmp_path / "out" / "b.png").exists()


def test_bad_arguments(tmp_path: Path, capsys) -> None:
    write_png(tmp_path / "in" / "a.png", np.zeros((40, 40, 3), np.float32))
    code, text = cli(capsys, "tile", "split", str(tmp_path / "in"), str(tmp_path / "t"), "--tile", "32",
                     "--overlap", "32")  # fmt: skip
    assert code == EXIT_BAD_INPUT and "overlap" in text
    (tmp_path / "bad.json").write_text(json.dumps({"version": 99}))
    code, text = cli(capsys, "tile", "merge", str(tmp_path / "bad.json"), str(tmp_path / "m"))
    assert code == EXIT_BAD_INPUT and "manifest" in text


@pytest.mark.parametrize("overlap", [0, 15])
def test_round_trip_any_overlap(tmp_path: Path, overlap: int) -> None:
    src = tmp_path / "in" / "x.png"
    write_png(src, np.random.default_rng(2).random((77, 61, 3), dtype=np.float32))
    split(discover([str(src)]), tmp_path / "tiles", tile=32, overlap=overlap)
    (written,), _ = merge(tmp_path / "tiles" / "manifest.json", tmp_path / "out")
    assert np.array_equal(read_image(written), read_image(src))
