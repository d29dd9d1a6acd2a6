"""COCO instance files as training labels: the correction loop.

`csbsr segment --outputs coco` writes every crack as a COCO instance (compressed RLE at input-frame scale);
an inspector corrects the masks in CVAT or Label Studio and exports COCO again (RLE or polygons), and
`joint-train --coco FILE` learns from the corrected frames. Each image's mask is the union of its
annotations; an image listed without annotations is crack-free. The frames are the LR inputs `segment`
saw, so they train like box tiles (data/boxes.py): as LR inputs with the mask scaled to the SR grid, or
as HR images degraded on the fly.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .boxes import BoxSample
from .image_io import PathLike


def coco_samples(path: PathLike, images_root: PathLike | None = None) -> list[BoxSample]:
    """Every image of a COCO instance file with its annotations (masks decoded on use).

    `images_root`: where `file_name`s are relative to (default: the COCO file's folder)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        images = doc["images"]
        annotations = doc.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not a readable COCO instance file ({exc})", path) from None
    root = Path(images_root) if images_root else path.parent
    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in annotations:
        by_image[ann.get("image_id")].append(ann)
    samples = []
    for image in images:
        try:
            file = root / image["file_name"]
            height, width = int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"image entry without file_name / width / height: {image!r}", path) from None
        if not file.is_file():
            raise InputError(f"lists {image['file_name']}, not found under {root}", path)
        anns = by_image.get(image.get("id"), [])
        boxes = [
            (x, y, x + w, y + h) for ann in anns for x, y, w, h in [ann.get("bbox") or (0, 0, width, height)]
        ]
        samples.append(
            BoxSample(
                f"{path.stem}/{image['file_name']}",
                file,
                np.array(boxes, np.float32).reshape(-1, 4),
                masks=tuple(ann["segmentation"] for ann in anns),
                size=(height, width),
            )
        )
    return samples
