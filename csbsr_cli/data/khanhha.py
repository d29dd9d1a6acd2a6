"""The Khanhha degraded test layout: writing it from a `test/` folder, and reading it back (ours or theirs).

The authors' layout (`CrackDataSetTest`), beside `test/` in the dataset folder:
    test_blured/gt/images/<name>.jpg         HR ground truth
    test_blured/gt/masks/<name>.jpg          mask
    test_blured/02_40/lr_images/<name>.png   LR input (8-bit)
    test_blured/02_40/kernels/<name>.png     kernel divided by its max, 8-bit
    test_blured/02_40/hr_images/<name>.png   blurred HR (unused by their test)
"02_40" is the sigma range 0.2-4.0. Their README spells the folder `test_blurred`; both are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .datasets import Problems, paired_samples, report_problem
from .degrade import DegradeJob, DegradePlan, check_unique_outputs
from .image_io import PathLike

BLURED_DIRS = ("test_blured", "test_blurred")


def blur_dir_name(sigma: tuple[float, float]) -> str:
    """The authors' folder name for a sigma range: (0.2, 4.0) -> "02_40"."""
    return f"{round(sigma[0] * 10):02d}_{round(sigma[1] * 10):02d}"


def khanhha_test_plan(src: PathLike, out: PathLike, blur_name: str) -> DegradePlan:
    """Jobs turning a Khanhha `test/` folder (images/ + masks/) into `OUT/test_blured/...` as above.

    HR sides must be multiples of the scale (the copied ground truth is the HR the LR was made from).
    """
    src, out = Path(src), Path(out)
    if not (src / "images").is_dir():
        raise InputError("expected a Khanhha test/ folder with images/ and masks/", src)
    problems: Problems = []
    blured = out / BLURED_DIRS[0]
    blur = blured / blur_name
    jobs = []
    for sample in paired_samples(src, problems=problems):
        assert sample.mask is not None  # paired_samples only returns images that have a mask
        image_rel = sample.image.relative_to(src / "images")
        mask_rel = sample.mask.relative_to(src / "masks")
        jobs.append(
            DegradeJob(
                key=sample.image.relative_to(src).as_posix(),
                image=sample.image,
                lr=blur / "lr_images" / f"{sample.name}.png",
                kernel=blur / "kernels" / f"{sample.name}.png",
                blurred_hr=blur / "hr_images" / f"{sample.name}.png",
                mask=sample.mask,
                copies=(
                    (sample.image, blured / "gt" / "images" / image_rel),
                    (sample.mask, blured / "gt" / "masks" / mask_rel),
                ),
                exact_size=True,
            )
        )
    if not jobs and not problems:
        raise InputError("no images in images/", src)
    check_unique_outputs(jobs)
    return DegradePlan(jobs, problems, blur)


@dataclass(frozen=True)
class DegradedTestPair:
    name: str
    lr: Path
    hr: Path
    mask: Path
    kernel: Path  # read it with `kernels.load_kernel` (8-bit PNG: /255 then /sum, as the authors)
    blurred_hr: Path | None


def find_blured_root(root: PathLike) -> Path:
    """`root` if it is the degraded test folder, else its `test_blured` (or `test_blurred`) subfolder."""
    root = Path(root)
    for base in (root, *(root / name for name in BLURED_DIRS)):
        if (base / "gt" / "images").is_dir():
            return base
    raise InputError("no degraded Khanhha test set here (expected test_blured/gt/images)", root)


def degraded_test_pairs(
    root: PathLike, blur_name: str | None = None, problems: Problems | None = None
) -> list[DegradedTestPair]:
    """(LR, HR, mask, kernel) of every ground-truth image, for our `--layout khanhha` output and the authors'.

    `blur_name` defaults to the only degradation folder present (e.g. `02_40`).
    """
    base = find_blured_root(root)
    if blur_name is None:
        names = sorted(d.name for d in base.iterdir() if (d / "lr_images").is_dir())
        if len(names) != 1:
            found = ", ".join(names) or "none"
            raise InputError(f"choose the degradation folder (found {found})", base)
        blur_name = names[0]
    blur = base / blur_name
    if not (blur / "lr_images").is_dir():
        raise InputError(f"no {blur_name}/lr_images folder", base)
    pairs = []
    for sample in paired_samples(base / "gt", problems=problems):
        assert sample.mask is not None
        lr, kernel = blur / "lr_images" / f"{sample.name}.png", blur / "kernels" / f"{sample.name}.png"
        missing = next((p for p in (lr, kernel) if not p.is_file()), None)
        if missing is not None:
            message = f"missing (ground truth {sample.image.name} has no {missing.parent.name} file)"
            report_problem(problems, InputError(message, missing))
            continue
        blurred = blur / "hr_images" / f"{sample.name}.png"
        pairs.append(
            DegradedTestPair(
                sample.name, lr, sample.image, sample.mask, kernel, blurred if blurred.is_file() else None
            )
        )
    return pairs
