"""Parameter counts (total, SR, segmenter) of the networks the registry ships, so that `models list` and
`models info` answer without importing torch (4 s on a loaded CPU).

Keyed by a digest of the network config, as counted on torch's meta device; a config not listed (a card
with other widths) is counted that way when asked. tests/test_cli_conventions.py recounts every shipped
entry, and prints the table to paste when a network changes.
"""

from __future__ import annotations

import hashlib
import json

from .registry import ModelSpec, build_network

Counts = tuple[int, int, int]

SHIPPED: dict[str, Counts] = {
    "9e040ec36c127a25": (274_945, 0, 274_945),  # bicubic-pspnet-lite
    "2921c314db24b844": (66_120_254, 61_158_563, 4_961_691),  # csbsr-crackformer
    "01d0d03a5b2eff60": (135_658_533, 61_158_563, 74_499_970),  # csbsr-hrnet-ocr
    "14ed97c6e838b848": (1_279_132, 1_004_187, 274_945),  # csbsr-lite
    "bed1706c2964d494": (89_249_704, 61_158_563, 28_091_141),  # csbsr-pspnet
    "b233e1364badf80e": (99_670_388, 61_158_563, 38_511_825),  # csbsr-pspnet-blurskip
    "67ead3b7a4938cee": (90_628_246, 61_158_563, 29_469_683),  # csbsr-scnet
    "2411caed088010cf": (90_658_596, 61_158_563, 29_500_033),  # csbsr-unet16
    "9fef8cd213fc64f8": (33_669_283, 5_578_142, 28_091_141),  # cssr-pspnet
    "0193408824ac91d3": (274_945, 0, 274_945),  # pspnet-lite
    "329748857f234571": (29_469_683, 0, 29_469_683),  # scnet
}


def config_digest(spec: ModelSpec) -> str:
    """What the counts depend on: the network config alone (not the name, weights or threshold)."""
    return hashlib.sha256(json.dumps(spec.config, sort_keys=True).encode()).hexdigest()[:16]


def counted(spec: ModelSpec) -> Counts:
    """(total, SR, segmenter) parameter counts, built on the meta device: no memory, no init cost."""
    import torch

    with torch.device("meta"):
        model = build_network(spec)

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    return count(model), count(model.sr_model), count(model.segmentation_model)


def param_counts(spec: ModelSpec) -> Counts:
    """The shipped table's counts for `spec`'s network, else counted now (imports torch)."""
    return SHIPPED.get(config_digest(spec)) or counted(spec)
