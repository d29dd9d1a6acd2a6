"""Pixel-count segmentation metrics over the 99-threshold sweep, per image and per dataset.

All 99 binarisations of an image are summarised by one `uint8` *level map*: level = the number of
thresholds strictly below the probability, so the pixel is predicted crack at threshold index s exactly
when level > s. Histograms of the level map give every threshold's TP/FP/FN in one pass, instead of 99
passes over the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from csbsr_cli.errors import InputError

# t_i = i * 0.01 (Python double) for i = 1..99, used as float32, as the authors' code does. Prediction at
# threshold t is prob > t (strict): a probability equal to a threshold is negative.
THRESHOLDS: np.ndarray = (np.arange(1, 100) * 0.01).astype(np.float32)
THRESHOLDS.flags.writeable = False
N_THRESHOLDS = len(THRESHOLDS)
_THRESHOLDS_EXT = np.append(THRESHOLDS, np.float32(np.inf))


def threshold_label(index: int) -> float:
    """Threshold index -> the value users read (0.81, not 0.8100000023841858)."""
    return round((index + 1) * 0.01, 2)


def threshold_index(label: float) -> int:
    """Inverse of threshold_label."""
    return int(round(label * 100)) - 1


def as_uint8_mask(mask: np.ndarray) -> np.ndarray:
    """Accept 8-bit (0..255) or bool masks only: a 0/1 integer mask would silently read as empty."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"GT mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.dtype == np.bool_:
        return mask.astype(np.uint8) * np.uint8(255)
    if mask.dtype != np.uint8:
        raise InputError(f"GT mask must be uint8 (0..255) or bool, got {mask.dtype}")
    return mask


def level_map(prob: np.ndarray) -> np.ndarray:
    """Number of thresholds strictly below each probability (uint8, 0..99), compared in float32 as the
    authors' code does (a float64 map is rounded to float32 first).

    `searchsorted` would do it but costs ~11 ms on 448x448; a scaled floor is off by at most one near
    a threshold, and one exact comparison in each direction repairs it (~10x faster, bit-exact).
    """
    prob = np.asarray(prob)
    if not np.issubdtype(prob.dtype, np.floating):
        raise InputError(f"probability map must be floating point in [0, 1], got {prob.dtype}")
    if prob.ndim != 2:
        raise InputError(f"probability map must be 2-D (H, W), got shape {prob.shape}")
    prob = prob.astype(np.float32, copy=False)
    if not np.isfinite(prob).all():
        raise InputError("probability map contains NaN or infinite values")
    level = np.clip(np.floor(prob * np.float32(100.0)), 0, N_THRESHOLDS).astype(np.intp)
    level += _THRESHOLDS_EXT[level] < prob
    level -= (level > 0) & (_THRESHOLDS_EXT[level - 1] >= prob)
    return level.astype(np.uint8)


def confusion_counts(gt: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, FN (int64, one per threshold) from a boolean GT and a level map."""
    pos_hist = np.bincount(level.ravel(), minlength=N_THRESHOLDS + 1)
    tp_hist = np.bincount(level[gt], minlength=N_THRESHOLDS + 1)
    # predicted positive at s <=> level > s: a reversed cumulative sum of the histogram.
    positives = np.cumsum(pos_hist[::-1])[::-1][1:]
    tp = np.cumsum(tp_hist[::-1])[::-1][1:]
    n_gt = int(gt.sum())
    return tp, positives - tp, n_gt - tp


def _ratio(num: np.ndarray, den: np.ndarray, when_zero: float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, when_zero), where=den != 0)


def iou(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, smooth: float) -> np.ndarray:
    """(TP + s)/(TP + FP + FN + s); with s = 0 both-empty scores 1 (nothing to find, nothing claimed)."""
    union = np.asarray(tp + fp + fn, dtype=np.float64)
    if smooth:
        return (tp + smooth) / (union + smooth)
    return _ratio(tp, union, 1.0)


def f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Dice/F1 = 2TP / (2TP + FP + FN); both empty -> 1, consistent with precision and recall below."""
    return _ratio(2 * tp, 2 * tp + fp + fn, 1.0)


def precision(tp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """TP / (TP + FP); no positive prediction -> 1 (nothing wrong was claimed)."""
    return _ratio(tp, tp + fp, 1.0)


def recall(tp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """TP / (TP + FN); no crack pixel in the GT -> 1 (nothing was missed)."""
    return _ratio(tp, tp + fn, 1.0)


def false_positive_rate(fp: np.ndarray, n_negative: int) -> np.ndarray:
    """FP / (GT-negative pixels): on a crack-free image, the fraction of the image flagged as crack."""
    return _ratio(fp, n_negative, 0.0)


def average_precision(prec: np.ndarray, rec: np.ndarray) -> float:
    """Step-wise area under a PR curve sampled at the thresholds (scikit-learn's average precision).

    Recall does not increase with the threshold, so walking from the highest threshold down, each
    recall gain is weighted by the precision reached there; recall starts at 0.
    """
    rec_desc = rec[::-1]
    gains = np.diff(np.concatenate(([0.0], rec_desc)))
    return float(np.sum(gains * prec[::-1]))


def dataset_summary(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, iou_table: np.ndarray
) -> dict[str, float]:
    """Dataset-level segmentation numbers from (n_images, 99) tables.

    IoU_max / AIU follow the paper (per-threshold mean over images, then max / mean). ODS F1, AUPRC and
    aggregate IoU pool the pixel counts of all images at each threshold (large cracks weigh more);
    OIS F1 takes each image's best threshold.
    """
    if len(iou_table) == 0:
        raise InputError("no images to summarise")
    iou_curve = iou_table.mean(axis=0)
    stp, sfp, sfn = tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0)
    ods_curve = f1(stp, sfp, sfn)
    agg_iou_curve = iou(stp, sfp, sfn, 0.0)
    best = int(np.argmax(iou_curve))
    ods = int(np.argmax(ods_curve))
    agg = int(np.argmax(agg_iou_curve))
    return {
        "IoU_max": float(iou_curve[best]),
        "IoU_max_threshold": threshold_label(best),
        "AIU": float(iou_table.mean()),
        "ODS_F1": float(ods_curve[ods]),
        "ODS_threshold": threshold_label(ods),
        "OIS_F1": float(f1(tp, fp, fn).max(axis=1).mean()),
        "AUPRC": average_precision(precision(stp, sfp), recall(stp, sfn)),
        "IoU_aggregate_max": float(agg_iou_curve[agg]),
        "IoU_aggregate_max_threshold": threshold_label(agg),
    }


def threshold_curves(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, iou_table: np.ndarray
) -> dict[str, Sequence[float]]:
    """Per-threshold dataset curves (the data behind curves.csv / curves.png)."""
    stp, sfp, sfn = tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0)
    return {
        "IoU_mean": iou_table.mean(axis=0).tolist(),
        "IoU_aggregate": iou(stp, sfp, sfn, 0.0).tolist(),
        "F1_aggregate": f1(stp, sfp, sfn).tolist(),
        "precision_aggregate": precision(stp, sfp).tolist(),
        "recall_aggregate": recall(stp, sfn).tolist(),
    }
