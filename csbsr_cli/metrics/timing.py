"""Speed figures of an evaluation run, phase by phase: the model's and the metrics' own rates, never a blend
of the two (reading, inference and scoring are timed apart)."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .evaluate import ImageResult


@dataclass
class PhaseTiming:
    """Seconds spent in each phase of an evaluation (filled in as the run goes)."""

    load_s: float = 0.0
    quality_s: float = 0.0
    inference_wall_s: float = 0.0
    metric_wall_s: float = 0.0
    metric_first_result_s: float = 0.0
    metric_steady_s: float = 0.0


def timing_record(
    timing: PhaseTiming,
    seg: Sequence[ImageResult],
    workers: int,
    model_time: tuple[float, int] | None = None,
) -> dict[str, Any]:
    """Model and metric speeds measured separately (phase 1 and phase 2 never overlap); `model_time` is the
    model's (seconds, images) when a model ran."""
    n = len(seg)
    sizes = collections.Counter(f"{r.width}x{r.height}" for r in seg)
    megapixels = sum(r.width * r.height for r in seg) / 1e6
    steady = (n - 1) / timing.metric_steady_s if n > 1 and timing.metric_steady_s > 0 else None
    out: dict[str, Any] = {
        "image_sizes": dict(sizes.most_common()),
        "metric_workers": workers,
        "metric_seconds": timing.metric_wall_s,
        "metric_images_per_s": n / timing.metric_wall_s if timing.metric_wall_s else None,
        "metric_images_per_s_steady": steady,
        "metric_megapixels_per_s_steady": None if steady is None else steady * megapixels / n,
        "metric_startup_seconds": timing.metric_first_result_s,
        "metric_note": "phase 2 alone: reading masks and saved maps + all metrics at 99 thresholds; "
        "'steady' excludes worker start-up (time from the first to the last result)",
    }
    if model_time is not None:
        model_seconds, images = model_time
        out.update(
            inference_seconds=timing.inference_wall_s,
            load_seconds=timing.load_s,
            model_seconds=model_seconds,
            model_images_per_s=images / model_seconds if model_seconds else None,
            image_quality_seconds=timing.quality_s,
        )
    return out
