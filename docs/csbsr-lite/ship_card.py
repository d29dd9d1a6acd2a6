"""Ship a trained csbsr-lite: copy a joint run's exported weights into the model zoo and write the card with
the run's ablation figures (threshold at IoU_max, metrics on the dev val split).

    python docs/csbsr-lite/ship_card.py RUN ABLATION.json [ABLATION.json ...] [--models DIR]

RUN is anything `--init` / `csbsr segment` take (a finished run folder, its card, a registry name);
the ablation files are `bench/lite_ablation.py` outputs, one of whose rows is labelled "joint ...".
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from csbsr_cli.registry import Registry
from csbsr_cli.utils.digest import sha256_file

ZOO = Path(__file__).resolve().parents[2] / "models"
NAME = "csbsr-lite"


def card_for(joint: dict[str, Any], weights: Path) -> dict[str, Any]:
    v = joint["values"]
    return {
        "name": NAME,
        "arch": NAME,
        "description": "Light KBPN + light PSPNet for CPUs, trained by csbsr on CPU (1600 joint steps): "
        "the default model. See csbsr-lite.md.",
        "threshold": joint["threshold"],
        "metrics": {
            "dataset": "dev val split (DeepCrack 237 + CFD 46 images), x4, anisotropic Gaussian blur, seed 5",
            "preset": "default",
            "IoU_max": round(v["IoU_max"], 4),
            "AIU": round(v["AIU"], 4),
            "HD95_min": round(v["HD95_min"], 2),
            "AHD95": round(v["AHD95"], 2),
            "PSNR": round(v["PSNR"], 2),
            "SSIM": round(v["SSIM"], 4),
            "FPR_crack_free": v["FPR_crack_free"],
        },
        "licence": "weights: trained on DeepCrack, CRACK500 and CFD, which are for non-commercial research "
        "only; code Apache-2.0",
        "weights": {
            "file": weights.name,
            "sha256": sha256_file(weights),
            "licence": "non-commercial research only (training data: DeepCrack, CRACK500, CFD)",
            "provenance": "csbsr finetune + joint-train on CPU, recipe in docs/csbsr-lite/",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="the joint run (folder, card or name) whose weights ship")
    parser.add_argument("ablation", nargs="+", type=Path, help="bench/lite_ablation.py's ablation.json files")
    parser.add_argument("--models", type=Path, default=ZOO, help=f"where the card and weights go ({ZOO})")
    args = parser.parse_args()
    rows = [row for path in args.ablation for row in json.loads(path.read_text(encoding="utf-8"))]
    joint = next(r for r in rows if r["label"].startswith("joint"))
    trained = Registry().resolve(args.run)
    if trained.weights is None:
        parser.error(f"{args.run} has no weights")
    weights = args.models / f"{NAME}.safetensors"
    shutil.copyfile(trained.weights.path, weights)
    card = card_for(joint, weights)
    (args.models / f"{NAME}.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(card, indent=1))
    print(weights.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
