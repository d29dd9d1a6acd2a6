"""Probability maps on disk, as `csbsr evaluate` saves and re-reads them: scoring a model and scoring its
saved maps (`--predictions`) read the same files the same way, so both give the same numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError
from .image_io import find_image, read_gray, read_tiff_float32, write_png, write_tiff_float32

ProbFormat = Literal["png16", "tiff"]
PROB_SUFFIXES = {"png16": ".png", "tiff": ".tiff"}
PROB_QUANTISATION = {
    "png16": "probabilities stored as round(p * 65535) / 65535 (16-bit PNG); the model path scores these "
    "stored values, so --predictions on them gives identical numbers",
    "tiff": "probabilities stored exactly (float32 TIFF)",
}


def write_prediction(folder: Path, name: str, prob: np.ndarray, fmt: ProbFormat) -> Path:
    path = folder / f"{name}{PROB_SUFFIXES[fmt]}"
    if fmt == "tiff":
        write_tiff_float32(path, prob)
    else:
        write_png(path, prob, bits=16)
    return path


def read_prediction(folder: Path, name: str) -> np.ndarray:
    """A saved probability map: float32 TIFF as stored, 8/16-bit PNG scaled by its type."""
    path = find_image(folder, (name,))
    if path is None:
        raise InputError(f"no probability map named {name}.png or {name}.tiff", folder)
    return read_tiff_float32(path) if path.suffix.lower() in (".tif", ".tiff") else read_gray(path)


def predictions_folder(path: Path) -> Path:
    """`path`, or the maps inside an evaluate run (predictions/) or a `csbsr segment` run (prob/)."""
    if not path.is_dir():
        raise InputError("predictions folder not found", path)
    return next((d for d in (path / "predictions", path / "prob") if d.is_dir()), path)
