"""bench/crack_free_crops.py on a synthetic dev-like folder: crops avoid a known crack, runs repeat."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from bench_modules import load_bench

from csbsr_cli.errors import InputError

cf = load_bench("crack_free_crops")
CRACK_COLS = (150, 153)  # a vertical crack over the full height of image "a", columns 150-152
SIZE, MARGIN = 64, 8


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Dev-like layout: two subsets with images/ + masks/, and a split.csv (dataset, stem, split)."""
    root = tmp_path / "dev"
    rng = np.random.default_rng(0)
    specs = {  # (subset, stem): (height, width, crack region or None, split)
        ("s1", "a"): (160, 320, np.s_[:, CRACK_COLS[0] : CRACK_COLS[1]], "val"),
        ("s1", "full"): (96, 96, np.s_[40:42, :], "val"),  # a crack across the middle: no room
        ("s1", "tiny"): (48, 48, None, "val"),  # smaller than the crop
        ("s2", "b"): (128, 128, None, "val"),
        ("s2", "t"): (128, 128, None, "train"),
    }
    rows = []
    for (subset, stem), (h, w, crack, split) in specs.items():
        for kind in ("images", "masks"):
            (root / subset / kind).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / subset / "images" / f"{stem}.jpg"), rng.integers(0, 256, (h, w, 3), np.uint8))
        mask = np.zeros((h, w), np.uint8)
        if crack is not None:
            mask[crack] = 255
        cv2.imwrite(str(root / subset / "masks" / f"{stem}.png"), mask)
        rows.append({"dataset": subset, "stem": stem, "split": split})
    with (root / "split.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["dataset", "stem", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_crops_avoid_the_crack_and_repeat(dataset: Path, tmp_path: Path) -> None:
    kwargs = dict(size=SIZE, per_image=3, margin=MARGIN, seed=3)
    counts = cf.make_crops(dataset, tmp_path / "one", **kwargs)
    assert counts == {"images": 4, "crops": 6, "too_small": 1, "no_room": 1}  # a: 3, b: 3 (no train image)
    rows = _manifest(tmp_path / "one")
    assert {r["source"] for r in rows} == {"s1/images/a.jpg", "s2/images/b.jpg"}
    for row in rows:
        x, y, size = int(row["x"]), int(row["y"]), int(row["size"])
        assert size == SIZE
        if row["source"].endswith("a.jpg"):  # at least MARGIN px from columns 150-152 on either side
            assert x + size <= CRACK_COLS[0] - MARGIN or x >= CRACK_COLS[1] - 1 + MARGIN + 1
        mask = cv2.imread(str(tmp_path / "one" / "masks" / f"{row['crop']}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (SIZE, SIZE) and not mask.any()
        crop = cv2.imread(str(tmp_path / "one" / "images" / f"{row['crop']}.png"))
        src = cv2.imread(str(dataset / row["source"]))
        np.testing.assert_array_equal(crop, src[y : y + size, x : x + size])  # pixels as decoded, lossless
    a_crops = [(int(r["x"]), int(r["y"])) for r in rows if r["source"].endswith("a.jpg")]
    for i, (x, y) in enumerate(a_crops):  # no two crops of one image overlap
        assert all(abs(x - u) >= SIZE or abs(y - v) >= SIZE for u, v in a_crops[i + 1 :])

    cf.make_crops(dataset, tmp_path / "two", **kwargs)
    assert _manifest(tmp_path / "two") == rows
    for path in sorted((tmp_path / "one").rglob("*.png")):
        assert (tmp_path / "two" / path.relative_to(tmp_path / "one")).read_bytes() == path.read_bytes()
    other = cf.make_crops(dataset, tmp_path / "seed4", **{**kwargs, "seed": 4})
    assert other["crops"] == 6 and _manifest(tmp_path / "seed4") != rows  # the seed picks other windows


def test_choose_crops_never_touches_the_dilated_crack() -> None:
    """48x48 image, crack pixel at (8, 8), 32 px crops: every window lies within ~11 px of the crack, so
    the check is tight: chosen crops come close (< 12 px) but never within MARGIN px."""
    crack = np.zeros((48, 48), bool)
    crack[8, 8] = True
    nearest = []
    for seed in range(8):
        (crop,) = cf.choose_crops(crack, 32, 1, MARGIN, 4, np.random.default_rng(seed))
        dx, dy = max(crop.x - 8, 0), max(crop.y - 8, 0)  # gap to the crop's nearest pixel
        nearest.append(np.hypot(dx, dy))
    assert MARGIN < min(nearest) and max(nearest) < 12
    assert cf.choose_crops(crack, 32, 1, 40, 4, np.random.default_rng(0)) == []  # no room at all


def test_refuses_bad_size_and_existing_output(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="multiple of 4"):
        cf.make_crops(dataset, tmp_path / "x", size=30)
    cf.make_crops(dataset, tmp_path / "out", size=SIZE)
    with pytest.raises(InputError, match="not empty"):
        cf.make_crops(dataset, tmp_path / "out", size=SIZE)
    again = cf.make_crops(dataset, tmp_path / "out", size=SIZE, per_image=1, overwrite=True)
    assert len(list((tmp_path / "out" / "images").iterdir())) == again["crops"] == 2
    with pytest.raises(InputError, match="no manifest"):  # never clears a folder it did not make
        cf.make_crops(tmp_path / "out", dataset / "s2", split=None, size=SIZE, overwrite=True)
