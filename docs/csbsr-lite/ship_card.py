"""Write models/csbsr-lite.{safetensors,json} from the joint run and the ablation results."""

import hashlib
import json
import shutil
from pathlib import Path

repo = Path("/work/main")
run = Path("/work/lite-train/runs/joint-train/lite-joint")
rows = []
for f in sorted(Path("/work/lite-train/ablation").glob("*/ablation.json")):
    rows += json.loads(f.read_text())
joint = next(r for r in rows if r["label"].startswith("joint"))
weights = repo / "models" / "csbsr-lite.safetensors"
shutil.copyfile(run / "models" / "lite-joint.safetensors", weights)
sha = hashlib.sha256(weights.read_bytes()).hexdigest()
v = joint["values"]
card = {
    "name": "csbsr-lite",
    "arch": "csbsr-lite",
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
        "sha256": sha,
        "licence": "non-commercial research only (training data: DeepCrack, CRACK500, CFD)",
        "provenance": "csbsr finetune + joint-train on CPU, recipe in docs/csbsr-lite/",
    },
}
(repo / "models" / "csbsr-lite.json").write_text(json.dumps(card, indent=2) + "\n")
print(json.dumps(card, indent=1))
print(weights.stat().st_size, "bytes")
