"""bench/lite_ablation.py's pure parts: row parsing, the FPR look-up at a threshold, the table."""

from __future__ import annotations

import argparse

import pytest
from bench_modules import load_bench

ab = load_bench("lite_ablation")


def test_rows_name_a_model_and_optionally_hr() -> None:
    assert ab.parse_row("joint=runs/x") == ab.Row("joint", "runs/x", False)
    assert ab.parse_row("HR bound=pspnet-lite:hr") == ab.Row("HR bound", "pspnet-lite", True)
    with pytest.raises(argparse.ArgumentTypeError):
        ab.parse_row("no-model")


def test_false_positive_rate_is_read_at_the_models_threshold(tmp_path) -> None:
    curves = tmp_path / "curves.csv"
    curves.write_text("threshold,FPR_crack_free_mean\n0.49,0.3\n0.5,0.2\n0.51,0.1\n")
    assert ab.fpr_at(curves, 0.5) == 0.2 and ab.fpr_at(curves, 0.509) == 0.1


def test_table_marks_missing_image_quality() -> None:
    values = dict.fromkeys(ab.COLUMNS, 0.5) | {"PSNR": None, "SSIM": None}
    table = ab.markdown([{"label": "HR", "values": values, "threshold": 0.42}])
    assert "| HR | 0.5 | 0.5 | 0.5 | 0.5 | n/a | n/a | 5.00e-01 | 0.42 |" in table


def test_shape_rows_rescore_the_saved_predictions(tmp_path) -> None:
    row = ab.Row("new", "runs/x", False)
    raw = ab.evaluate_cmd(row, tmp_path / "dev", tmp_path / "out", "val", 2)
    shaped = ab.evaluate_cmd(row, tmp_path / "dev", tmp_path / "out", "val", 2, "8:4")
    assert "--save-predictions" in raw and "runs/x" in raw
    assert shaped[shaped.index("--predictions") + 1] == str(tmp_path / "out")
    assert shaped[shaped.index("-o") + 1] == f"{tmp_path / 'out'}-shape"
    assert (
        shaped[shaped.index("--min-length") + 1] == "8"
        and shaped[shaped.index("--min-elongation") + 1] == "4"
    )
    assert "runs/x" not in shaped


def test_table_gets_drone_columns_when_rows_have_them() -> None:
    values = dict.fromkeys(ab.COLUMNS, 0.5) | dict.fromkeys(ab.DRONE_COLUMNS, 0.25) | {"outside_rate": 1e-3}
    table = ab.markdown([{"label": "new", "values": values, "threshold": 0.6}])
    assert table.splitlines()[0].endswith(
        "| box_precision | box_recall | outside_rate | free_marked | threshold |"
    )
    assert "| 0.25 | 0.25 | 1.00e-03 | 0.25 | 0.60 |" in table
