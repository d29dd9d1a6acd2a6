"""COCO segmentations (compressed or plain RLE, polygons) decoded to masks, without pycocotools."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..errors import InputError


def rle_counts_from_string(text: str) -> list[int]:
    """The run lengths of COCO's compressed RLE text (pycocotools' rleFrString)."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's mask (bool, height x width): RLE (compressed or not) or polygons."""
    if isinstance(segmentation, list):  # polygons [[x0, y0, x1, y1, ...], ...] in pixel coordinates
        mask = np.zeros((height, width), np.uint8)
        for poly in segmentation:
            points = np.round(np.asarray(poly, np.float64).reshape(-1, 2)).astype(np.int32)
            cv2.fillPoly(mask, [points], 1)
        return mask.astype(bool)
    counts = segmentation["counts"]
    counts = rle_counts_from_string(counts) if isinstance(counts, str) else list(counts)
    if sum(counts) != height * width:
        raise ValueError(f"RLE covers {sum(counts)} pixels, the image {height * width}")
    flat = np.zeros(height * width, bool)
    position = 0
    for i, run in enumerate(counts):
        if i % 2:
            flat[position : position + run] = True
        position += run
    return flat.reshape(width, height).T  # column-major, as COCO


def union_mask(segmentations: Sequence[Any], height: int, width: int, name: str) -> np.ndarray:
    """The crack mask of one image: the union of its annotations (`name` for the error message)."""
    mask = np.zeros((height, width), bool)
    for segmentation in segmentations:
        try:
            mask |= decode_segmentation(segmentation, height, width)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad segmentation ({exc})", name) from None
    return mask
