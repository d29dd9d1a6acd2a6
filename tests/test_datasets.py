"""Image I/O, dataset readers and the on-the-fly training set."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from synth import make_crack_image
from torch.utils.data import DataLoader

from csbsr_cli.data.datasets import (
    DegradedCrops,
    Sample,
    image_samples,
    khanhha_samples,
    paired_samples,
    validate_samples,
)
from csbsr_cli.data.degrade import DegradeConfig
from csbsr_cli.data.image_io import (
    image_size,
    list_images,
    read_image,
    read_mask,
    read_tiff_float32,
    write_png,
    write_tiff_float32,
)
from csbsr_cli.errors import InputError


def save(path: Path, pixels: np.ndarray) -> Path:
    """Write pixels given in RGB(A) order with OpenCV (which wants BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if pixels.ndim == 3:
        pixels = pixels[:, :, [2, 1, 0, 3][: pixels.shape[2]]]
    ok, enc = cv2.imencode(path.suffix, np.ascontiguousarray(pixels))
    assert ok
    path.write_bytes(enc.tobytes())
    return path


# ---- reading: every supported kind is read right -----------------------------------------------------------


def test_rgb_png_keeps_channel_order_and_8bit_scale(tmp_path):
    rgb = make_crack_image(20, 30, seed=0)[0]
    img = read_image(save(tmp_path / "a.png", rgb))
    assert img.dtype == np.float32 and img.shape == (20, 30, 3)
    np.testing.assert_array_equal(img, rgb.astype(np.float32) / 255)


def test_grey_becomes_three_equal_channels(tmp_path):
    grey = make_crack_image(20, 30, seed=1)[0][:, :, 0]
    img = read_image(save(tmp_path / "g.png", grey))
    assert img.shape == (20, 30, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], grey / np.float32(255))


def test_rgba_drops_alpha_and_keeps_rgb(tmp_path):
    rgb = make_crack_image(20, 30, seed=2)[0]
    alpha = np.linspace(0, 255, 30, dtype=np.uint8)[None].repeat(20, 0)
    img = read_image(save(tmp_path / "a.png", np.dstack([rgb, alpha])))
    np.testing.assert_array_equal(img, rgb.astype(np.float32) / 255)


def test_16bit_is_scaled_by_its_type_not_its_values(tmp_path):
    rgb16 = make_crack_image(20, 30, seed=3)[0].astype(np.uint16) * 257
    np.testing.assert_allclose(read_image(save(tmp_path / "a.png", rgb16)), rgb16 / 65535, atol=1e-7)
    dark = np.full((8, 8), 300, np.uint16)  # a dark 16-bit image stays dark (no max > 255 guessing)
    np.testing.assert_allclose(read_image(save(tmp_path / "d.png", dark)), 300 / 65535, rtol=1e-6)


def test_float_tiff_is_read_as_stored(tmp_path):
    rgb = np.random.default_rng(0).random((6, 7, 3), dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tiff", rgb, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff"), rgb)


def test_exif_orientation_is_applied(tmp_path):
    rgb = make_crack_image(20, 30, seed=4)[0]
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    Image.fromarray(rgb).save(tmp_path / "o.jpg", quality=100, exif=exif)
    img = read_image(tmp_path / "o.jpg")
    assert img.shape == (30, 20, 3) and image_size(tmp_path / "o.jpg") == (30, 20)
    expected = np.rot90(rgb, -1).astype(np.float32) / 255
    assert np.abs(img - expected).mean() < 0.02


def test_non_ascii_paths_work(tmp_path):
    rgb = make_crack_image(10, 12, seed=5)[0]
    path = tmp_path / "fissures_été" / "ひび.png"
    write_png(path, rgb)
    np.testing.assert_array_equal(read_image(path), rgb / np.float32(255))


def test_masks_are_binarised_above_127(tmp_path):
    values = np.array([[0, 127, 128, 255]], np.uint8)
    np.testing.assert_array_equal(read_mask(save(tmp_path / "m.png", values)), [[False, False, True, True]])
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", threshold=200), [[False, False, False, True]])
    deep = values.astype(np.uint16) * 257
    np.testing.assert_array_equal(read_mask(save(tmp_path / "m16.png", deep)), [[False, False, True, True]])
    _, mask = make_crack_image(40, 40, seed=6)
    ok, jpg = cv2.imencode(".jpg", mask, [cv2.IMWRITE_JPEG_QUALITY, 75])
    (tmp_path / "m.jpg").write_bytes(jpg.tobytes())
    assert (read_mask(tmp_path / "m.jpg") != (mask > 127)).mean() < 0.02  # JPEG ringing, not 0/255


@pytest.mark.parametrize(
    "name, content",
    [
        ("cut.png", "half"),
        ("cut.jpg", "half"),
        ("junk.jpg", "junk"),
        ("empty.png", "empty"),
        ("missing.png", None),
    ],
)
def test_unreadable_files_raise_an_error_naming_them(tmp_path, name, content):
    ok, enc = cv2.imencode(Path(name).suffix, make_crack_image(32, 32, seed=7)[0])
    data = {"half": enc.tobytes()[: enc.size // 2], "junk": b"not an image at all", "empty": b""}
    if content is not None:
        (tmp_path / name).write_bytes(data[content])
    with pytest.raises(InputError) as err:
        read_image(tmp_path / name)
    assert str(err.value).startswith(str(tmp_path / name)) and "\n" not in str(err.value)


# ---- writing ---------------------------------------------------------------------------------------------


def test_writers_round_trip_exactly_and_leave_no_temporaries(tmp_path):
    rgb8 = make_crack_image(9, 11, seed=8)[0]
    write_png(tmp_path / "a8.png", rgb8.astype(np.float32) / 255)
    np.testing.assert_array_equal(read_image(tmp_path / "a8.png"), rgb8 / np.float32(255))
    rgb16 = np.random.default_rng(1).integers(0, 65536, (9, 11, 3)).astype(np.uint16)
    write_png(tmp_path / "a16.png", rgb16, bits=16)
    np.testing.assert_array_equal(read_image(tmp_path / "a16.png"), rgb16 / np.float32(65535))
    arr = np.random.default_rng(2).random((5, 4), dtype=np.float32)
    write_tiff_float32(tmp_path / "k.tiff", arr)
    np.testing.assert_array_equal(read_tiff_float32(tmp_path / "k.tiff"), arr)
    with pytest.raises(ValueError):
        write_png(tmp_path / "bad.png", rgb16, bits=8)  # 16-bit pixels are never silently truncated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a16.png", "a8.png", "k.tiff"]


def test_list_images_sorted_skips_hidden_other_files_and_excluded(tmp_path):
    for rel in ("b.jpg", "a.PNG", "sub/c.tif", ".hidden/d.png", "notes.txt", "out/e.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, exclude=tmp_path / "out")]
    assert found == ["a.PNG", "b.jpg", "sub/c.tif"]


# ---- readers ---------------------------------------------------------------------------------------------


def pair_folder(
    root: Path, stems: list[str], size: tuple[int, int] = (32, 32), mask_suffix: str = ".png"
) -> Path:
    for i, stem in enumerate(stems):
        rgb, mask = make_crack_image(*size, seed=i)
        save(root / "images" / f"{stem}.jpg", rgb)
        save(root / "masks" / f"{stem}{mask_suffix}", mask)
    return root


def test_paired_folder_matches_stems_across_suffixes(tmp_path):
    root = pair_folder(tmp_path / "cfd", ["002", "001"])
    samples = paired_samples(root)
    assert [(s.name, s.image.name, s.mask.name) for s in samples] == [
        ("001", "001.jpg", "001.png"),
        ("002", "002.jpg", "002.png"),
    ]


def test_dev_like_tree_with_split_csv(tmp_path):
    pair_folder(tmp_path / "cfd", ["001", "002", "003"])
    pair_folder(tmp_path / "deepcrack", ["11111", "11112"])
    csv = tmp_path / "split.csv"
    csv.write_text(
        "dataset,stem,split,source_path\ncfd,001,train,x\ncfd,002,val,x\ncfd,003,train,x\n"
        "deepcrack,11111,val,x\ndeepcrack,11112,train,x\n"
    )
    assert [s.name for s in paired_samples(tmp_path, csv, "train")] == [
        "cfd/001",
        "cfd/003",
        "deepcrack/11112",
    ]
    assert [s.name for s in paired_samples(tmp_path, csv, "val")] == ["cfd/002", "deepcrack/11111"]
    assert [s.name for s in paired_samples(tmp_path / "cfd", csv, "val")] == ["002"]
    assert len(paired_samples(tmp_path)) == 5
    csv.write_text(csv.read_text() + "cfd,999,train,x\n")
    with pytest.raises(InputError, match="cfd/999"):
        paired_samples(tmp_path, csv, "train")


def test_image_without_mask_raises_or_is_collected(tmp_path):
    root = pair_folder(tmp_path / "d", ["a", "b", "c"])
    (root / "masks" / "b.png").unlink()
    with pytest.raises(InputError, match=r"b\.jpg.*no mask"):
        paired_samples(root)
    problems: list[InputError] = []
    assert [s.name for s in paired_samples(root, problems=problems)] == ["a", "c"]
    assert len(problems) == 1 and problems[0].path == root / "images" / "b.jpg"


def test_khanhha_train_and_test_splits(tmp_path):
    pair_folder(tmp_path / "train", ["CFD_001", "CRACK500_x"], mask_suffix=".jpg")
    pair_folder(tmp_path / "test", ["CFD_002"], mask_suffix=".jpg")
    assert [s.mask.name for s in khanhha_samples(tmp_path, "train")] == ["CFD_001.jpg", "CRACK500_x.jpg"]
    assert [s.name for s in khanhha_samples(tmp_path, "test")] == ["CFD_002"]
    with pytest.raises(InputError, match="val/images"):
        khanhha_samples(tmp_path, "val")


def test_unlabelled_folder(tmp_path):
    save(tmp_path / "x" / "a.png", make_crack_image(8, 8, seed=0)[0])
    save(tmp_path / "b.jpg", make_crack_image(8, 8, seed=0)[0])
    assert [(s.name, s.mask) for s in image_samples(tmp_path)] == [("b", None), ("x/a", None)]


def test_validation_finds_mismatched_and_too_small_pairs(tmp_path):
    root = pair_folder(tmp_path / "d", ["a", "b", "c"], size=(64, 64))
    save(root / "masks" / "b.png", np.zeros((64, 60), np.uint8))
    save(root / "images" / "c.jpg", make_crack_image(40, 64, seed=0)[0])
    save(root / "masks" / "c.png", np.zeros((40, 64), np.uint8))
    samples = paired_samples(root)
    with pytest.raises(InputError, match=r"b\.png.*mask is 60x64"):
        validate_samples(samples, 48)
    problems: list[InputError] = []
    assert [s.name for s in validate_samples(samples, 48, problems)] == ["a"]
    assert "c.jpg" in str(problems[1]) and "smaller than the 48x48 crop" in str(problems[1])


# ---- training set ----------------------------------------------------------------------------------------


@pytest.fixture
def pairs(tmp_path) -> list[Sample]:
    return paired_samples(pair_folder(tmp_path / "d", ["a", "b", "c", "d"], size=(48, 64)))


def test_items_have_the_documented_shapes_and_binary_masks(pairs):
    item = DegradedCrops(pairs, crop=32, seed=1)[0]
    assert item["lr"].shape == (3, 8, 8) and item["hr"].shape == (3, 32, 32)
    assert item["kernel"].shape == (1, 21, 21) and item["mask"].shape == (1, 32, 32)
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0} and item["name"] == "a"
    assert abs(float(item["kernel"].sum()) - 1) < 1e-5
    unlabelled = DegradedCrops([Sample("u", pairs[0].image)], crop=32)[0]
    assert "mask" not in unlabelled and unlabelled["lr"].shape == (3, 8, 8)


def test_scale_one_without_degradation_feeds_the_hr_crop(pairs):
    item = DegradedCrops(pairs, crop=32, config=DegradeConfig(scale=1), seed=1, degrade=False)[0]
    assert torch.equal(item["lr"], item["hr"]) and item["kernel"].shape == (1, 21, 21)
    assert float(item["kernel"][0, 10, 10]) == 1.0 and float(item["kernel"].sum()) == 1.0
    blurred = DegradedCrops(pairs, crop=32, config=DegradeConfig(scale=1), seed=1)[0]
    assert not torch.equal(blurred["lr"], blurred["hr"])  # the default still blurs
    with pytest.raises(ValueError, match="needs scale 1"):
        DegradedCrops(pairs, crop=32, degrade=False)


def test_draws_depend_on_seed_epoch_and_sample_only(pairs):
    ds = DegradedCrops(pairs, crop=32, seed=3)
    first = ds[1]
    assert torch.equal(ds[1]["lr"], first["lr"])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["hr"], first["hr"]) or not torch.equal(ds[1]["kernel"], first["kernel"])
    reordered = DegradedCrops(pairs[::-1], crop=32, seed=3)
    assert torch.equal(reordered[2]["lr"], first["lr"])  # same sample, other position: same draws


def test_same_batches_whatever_the_number_of_workers(pairs):
    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(DegradedCrops(pairs, crop=32, seed=4), batch_size=2, num_workers=workers)
        return [torch.cat([b["lr"].flatten(), b["mask"].flatten(), b["kernel"].flatten()]) for b in loader]

    for a, b in zip(batches(0), batches(2), strict=True):
        assert torch.equal(a, b)


def test_augmentation_uses_both_flips_and_all_rotations(tmp_path):
    rgb = make_crack_image(32, 32, seed=9)[0]
    sample = Sample("s", save(tmp_path / "s.png", rgb))
    hr = rgb.astype(np.float32) / 255
    d4 = [np.rot90(f, k) for f in (hr, hr[::-1]) for k in range(4)]  # the 8 symmetries of a square
    ds = DegradedCrops([sample], crop=32, config=DegradeConfig())
    seen = set()
    for epoch in range(60):
        ds.set_epoch(epoch)
        out = ds[0]["hr"].numpy().transpose(1, 2, 0)
        seen.add(next(i for i, t in enumerate(d4) if np.array_equal(out, t)))
    assert seen == set(range(8))


def test_bad_training_inputs_raise_errors_naming_the_file(tmp_path, pairs):
    with pytest.raises(ValueError, match="multiple of the scale"):
        DegradedCrops(pairs, crop=30)
    with pytest.raises(InputError, match=r"a\.jpg.*smaller than the 64x64 crop"):
        DegradedCrops(pairs, crop=64)[0]
    save(pairs[1].mask, np.zeros((48, 60), np.uint8))
    with pytest.raises(InputError, match=r"b\.png.*mask is 60x48"):
        DegradedCrops(pairs, crop=32)[1]
    pairs[2].image.write_bytes(pairs[2].image.read_bytes()[:300])
    with pytest.raises(InputError, match=r"c\.jpg"):
        DegradedCrops(pairs, crop=32)[2]
