"""Run directory of an evaluation: metrics.json, per_image.csv, curves.csv, curves.png; terminal table.

Every file is written atomically, so an interrupted run never leaves a half-written report that looks
complete. metrics.json carries the full preset (every convention in words and values), the caller's
metadata (model, dataset, versions) and the environment, so a number is never separated from how it
was computed.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.table import Table

import csbsr_cli
from csbsr_cli.errors import InputError
from csbsr_cli.metrics import distance, segmentation
from csbsr_cli.metrics.evaluate import ImageResult, dataset_curves, summarize
from csbsr_cli.metrics.image import ImageQuality, summarize_quality
from csbsr_cli.metrics.presets import MetricPreset, hd_label
from csbsr_cli.utils.atomic import atomic_path, write_text_atomic

SCHEMA = "csbsr-metrics/1"
THRESHOLD_RULE = "t_i = i * 0.01 for i = 1..99, as float32; predicted crack = probability > t (strict)"


def environment() -> dict[str, str]:
    """Versions that can change a metric value (OpenCV's distance transform, NumPy's sums)."""
    return {
        "csbsr": csbsr_cli.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "platform": platform.platform(),
    }


def build_metrics(
    preset: MetricPreset,
    seg: Sequence[ImageResult] = (),
    quality: Sequence[ImageQuality] = (),
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of metrics.json (JSON-ready: plain floats, ints, strings and None)."""
    if not seg and not quality:
        raise InputError("nothing to report: no segmentation results and no image-quality results")
    return {
        "schema": SCHEMA,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "preset": preset.to_dict(),
        "thresholds": THRESHOLD_RULE,
        "per_image_columns": (
            "*_at_best: at the dataset's IoU_max / HD<p>_min threshold; *_mean: over the 99 thresholds; "
            "F1_OIS: the image's best F1; FPR: false positives / GT-negative pixels; "
            "missed / false_alarm_thresholds: thresholds scored by the one-empty rule"
        ),
        "segmentation": summarize(seg, preset) if seg else None,
        "image_quality": summarize_quality(list(quality)) if quality else None,
        "metadata": metadata or {},
        "environment": environment(),
    }


def per_image_rows(
    preset: MetricPreset,
    seg: Sequence[ImageResult],
    quality: Sequence[ImageQuality],
    summary: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """One row per image name (segmentation and SR results joined by name, in first-seen order)."""
    rows: dict[str, dict[str, Any]] = {}
    if seg and summary is not None:
        best = segmentation.threshold_index(summary["IoU_max_threshold"])
        ods = segmentation.threshold_index(summary["ODS_threshold"])
        hd_best = [
            (hd_label(p), segmentation.threshold_index(summary[f"{hd_label(p)}_min_threshold"]))
            for p in preset.hd_percentiles
        ]
        for r in seg:
            f1 = r.f1
            rows[r.name] = {
                "name": r.name,
                "preset": preset.name,
                "height": r.height,
                "width": r.width,
                "gt_pixels": r.gt_pixels,
                "crack_free": int(r.crack_free),
                "IoU_at_best": float(r.iou[best]),
                "IoU_mean": float(r.iou.mean()),
                "F1_at_ODS": float(f1[ods]),
                "F1_OIS": float(f1.max()),
                "F1_OIS_threshold": segmentation.threshold_label(int(np.argmax(f1))),
                **{f"{key}_at_best": float(r.hd[k, i]) for k, (key, i) in enumerate(hd_best)},
                **{f"{key}_mean": float(r.hd[k].mean()) for k, (key, _) in enumerate(hd_best)},
                "MSD_mean": float(r.msd.mean()),
                "FPR_at_best": float(r.fpr[best]),
                "missed_thresholds": int((r.hd_case == distance.MISSED).sum()),
                "false_alarm_thresholds": int((r.hd_case == distance.FALSE_ALARM).sum()),
            }
    for q in quality:
        row = rows.setdefault(q.name, {"name": q.name, "preset": preset.name})
        row.update({"PSNR": q.psnr, "SSIM": q.ssim, "kernel_PSNR": q.kernel_psnr})
    return list(rows.values())


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _threshold_rows(preset: MetricPreset, seg: Sequence[ImageResult]) -> list[dict[str, Any]]:
    """Long table: one row per image and threshold (like the authors' iou_log.csv, all metrics)."""
    rows = []
    for r in seg:
        f1, fpr = r.f1, r.fpr
        for i in range(segmentation.N_THRESHOLDS):
            rows.append(
                {
                    "name": r.name,
                    "threshold": segmentation.threshold_label(i),
                    "IoU": float(r.iou[i]),
                    "F1": float(f1[i]),
                    "TP": int(r.tp[i]),
                    "FP": int(r.fp[i]),
                    "FN": int(r.fn[i]),
                    "FPR": float(fpr[i]),
                    **{hd_label(p): float(r.hd[k, i]) for k, p in enumerate(preset.hd_percentiles)},
                    "MSD": float(r.msd[i]),
                    "hd_case": distance.CASE_LABELS[r.hd_case[i]],
                }
            )
    return rows


def write_run(
    out_dir: str | Path,
    preset: MetricPreset,
    seg: Sequence[ImageResult] = (),
    quality: Sequence[ImageQuality] = (),
    metadata: dict[str, Any] | None = None,
    full_tables: bool = False,
) -> dict[str, Any]:
    """Write the run directory and return the metrics.json content.

    Files: metrics.json, per_image.csv, and with segmentation results curves.csv + curves.png;
    `full_tables` adds per_image_thresholds.csv (every image x threshold, ~170k rows for Khanhha).
    """
    out = Path(out_dir)
    metrics = build_metrics(preset, seg, quality, metadata)
    files = {"metrics": "metrics.json", "per_image": "per_image.csv"}
    rows = per_image_rows(preset, seg, quality, metrics["segmentation"])
    write_text_atomic(out / files["per_image"], _csv_text(rows))
    if seg:
        curves = dataset_curves(seg, preset)
        files.update(curves="curves.csv", plot="curves.png")
        names = list(curves)
        curve_rows = [{k: curves[k][i] for k in names} for i in range(segmentation.N_THRESHOLDS)]
        write_text_atomic(out / files["curves"], _csv_text(curve_rows))
        write_curves_png(out / files["plot"], curves, metrics["segmentation"], preset)
        if full_tables:
            files["per_image_thresholds"] = "per_image_thresholds.csv"
            write_text_atomic(out / files["per_image_thresholds"], _csv_text(_threshold_rows(preset, seg)))
    metrics["files"] = files
    text = json.dumps(_finite(metrics), indent=2, allow_nan=False, default=str)  # Paths etc. in metadata
    write_text_atomic(out / files["metrics"], text + "\n")
    return metrics


def _finite(obj: Any) -> Any:
    """JSON has no inf/NaN (e.g. PSNR of identical images): they become null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


# ----------------------------------------------------------------------------------------------------
# curves.png, drawn with OpenCV (no plotting dependency): IoU, HD and F1 against the threshold.

_PANEL_W, _PANEL_H = 440, 340
_MARGIN_L, _MARGIN_R, _MARGIN_T, _MARGIN_B = 56, 14, 34, 44
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214)]  # BGR: blue, orange, green, red


def _nice_ticks(lo: float, hi: float, target: int = 5) -> np.ndarray:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    step = mag * min((m for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10)
    return np.arange(math.floor(lo / step) * step, hi + step * 0.999, step)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.42, colour=(40, 40, 40)) -> None:
    cv2.putText(img, text, org, _FONT, scale, colour, 1, cv2.LINE_AA)


def _panel(
    title: str, series: dict[str, Sequence[float | None]], mark: tuple[float, float] | None, x: np.ndarray
) -> np.ndarray:
    img = np.full((_PANEL_H, _PANEL_W, 3), 255, np.uint8)
    x0, x1 = _MARGIN_L, _PANEL_W - _MARGIN_R
    y0, y1 = _MARGIN_T, _PANEL_H - _MARGIN_B
    values = np.array([v for s in series.values() for v in s if v is not None], dtype=float)
    ticks = _nice_ticks(float(values.min()), float(values.max()))
    lo = float(ticks[0])
    hi = float(ticks[-1]) if ticks[-1] > ticks[0] else lo + 1

    def px(tx: float, ty: float) -> tuple[int, int]:
        return int(round(x0 + (x1 - x0) * tx)), int(round(y1 - (y1 - y0) * (ty - lo) / (hi - lo)))

    for t in ticks:
        _, yy = px(0, t)
        cv2.line(img, (x0, yy), (x1, yy), (232, 232, 232), 1)
        _text(img, f"{t:g}", (4, yy + 4), 0.38)
    for t in np.arange(0, 1.01, 0.2):
        xx, _ = px(t, lo)
        cv2.line(img, (xx, y1), (xx, y1 + 4), (90, 90, 90), 1)
        _text(img, f"{t:.1f}", (xx - 10, y1 + 18), 0.38)
    cv2.rectangle(img, (x0, y0), (x1, y1), (90, 90, 90), 1)
    _text(img, title, (x0, 22), 0.5)
    _text(img, "threshold", ((x0 + x1) // 2 - 30, _PANEL_H - 8), 0.4)
    for k, (label, ys) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        pts = np.array([px(tx, ty) for tx, ty in zip(x, ys, strict=True) if ty is not None], np.int32)
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        _text(img, label, (x0 + 8, y0 + 16 + 15 * k), 0.4, colour)
    if mark is not None:
        centre = px(*mark)
        cv2.circle(img, centre, 5, (0, 0, 0), 1, cv2.LINE_AA)
        label = f"{mark[1]:.4g} @ {mark[0]:.2f}"
        width = cv2.getTextSize(label, _FONT, 0.4, 1)[0][0]
        left = centre[0] + 7 if centre[0] + 7 + width < _PANEL_W else centre[0] - 7 - width
        _text(img, label, (left, centre[1] - 7), 0.4, (0, 0, 0))
    return img


def write_curves_png(
    path: Path, curves: dict[str, list], summary: dict[str, Any], preset: MetricPreset
) -> None:
    """Three panels like the paper's Fig. 11: mean IoU, mean HD and aggregate F1 against the threshold."""
    x = np.array(curves["threshold"])
    hd_keys = [hd_label(p) for p in preset.hd_percentiles]
    panels = [
        _panel(
            f"IoU (preset {preset.name})",
            {"mean IoU": curves["IoU_mean"], "aggregate IoU": curves["IoU_aggregate"]},
            (summary["IoU_max_threshold"], summary["IoU_max"]),
            x,
        ),
        _panel(
            "Hausdorff distance (px)",
            {f"mean {k}": curves[f"{k}_mean"] for k in hd_keys},
            (summary[f"{hd_keys[0]}_min_threshold"], summary[f"{hd_keys[0]}_min"]),
            x,
        ),
        _panel(
            "F1 / precision / recall (aggregate)",
            {
                "F1": curves["F1_aggregate"],
                "precision": curves["precision_aggregate"],
                "recall": curves["recall_aggregate"],
            },
            (summary["ODS_threshold"], summary["ODS_F1"]),
            x,
        ),
    ]
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.hstack(panels)):
            raise OSError(f"could not write {path}")


# ----------------------------------------------------------------------------------------------------
# Terminal summary.


def summary_table(metrics: dict[str, Any]) -> Table:
    """A rich table of the headline numbers of a metrics.json dict (what `csbsr evaluate` prints)."""
    preset = metrics["preset"]
    table = Table(title=f"Metrics (preset: {preset['name']})", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("threshold / note", style="dim")
    seg = metrics.get("segmentation")
    if seg:
        table.add_row("images", str(seg["n_images"]), f"{seg['crack_free']['images']} crack-free")
        table.add_row("IoU_max", f"{seg['IoU_max']:.4f}", f"t = {seg['IoU_max_threshold']:.2f}")
        table.add_row("AIU", f"{seg['AIU']:.4f}", "mean over 99 thresholds")
        for p in preset["hd_percentiles"]:
            key = hd_label(p)
            # The authors' code computes the 50th percentile and calls it HD95: name the row the paper means.
            is_papers = preset["name"] == "paper" and p == 50
            paper = "; the paper's 'HD95' (the authors' code)" if is_papers else ""
            table.add_row(
                f"{key}_min", f"{seg[f'{key}_min']:.3f}", f"t = {seg[f'{key}_min_threshold']:.2f}{paper}"
            )
            table.add_row(f"A{key}", f"{seg[f'A{key}']:.3f}", f"mean over 99 thresholds{paper}")
        table.add_row(
            "ODS F1",
            f"{seg['ODS_F1']:.4f}",
            f"t = {seg['ODS_threshold']:.2f}: one threshold for the dataset, pixels pooled over all images",
        )
        table.add_row("OIS F1", f"{seg['OIS_F1']:.4f}", "mean over images of each image's best-threshold F1")
        table.add_row("AUPRC", f"{seg['AUPRC']:.4f}", "dataset-aggregate PR curve")
        cases = seg["empty_mask_cases"]
        table.add_row(
            "one-empty cases",
            str(cases["missed"]["image_thresholds"] + cases["false_alarm"]["image_thresholds"]),
            f"missed in {cases['missed']['images']}, false alarm in {cases['false_alarm']['images']} "
            f"images; scored {cases['rule_one_empty']}",
        )
        free = seg["crack_free"]
        if free["images"]:
            table.add_row(
                "crack-free FPR",
                f"{free['FPR_mean']:.2e}",
                f"t = {free['threshold']:.2f}; "
                f"{free['images_with_false_positives']}/{free['images']} images flagged",
            )
    quality = metrics.get("image_quality")
    if quality:
        table.add_row(
            "PSNR",
            f"{quality['PSNR_mean']:.3f} dB",
            f"{preset['image_channel'].upper()}, crop {preset['image_crop']}",
        )
        table.add_row("SSIM", f"{quality['SSIM_mean']:.4f}", "")
        if quality["kernel_PSNR_mean"] is not None:
            table.add_row(
                "kernel PSNR", f"{quality['kernel_PSNR_mean']:.2f} dB", f"{quality['n_kernels']} kernels"
            )
    return table
