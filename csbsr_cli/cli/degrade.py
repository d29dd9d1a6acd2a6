"""`csbsr degrade SRC OUT`: synthesise LR images with their exact kernels and a manifest (thin CLI layer)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from ..data.kernels import KERNEL_TYPES, KernelLaw
from ..errors import InputError, PartialFailure
from ..utils.progress import progress_bar
from .common import QuietOption, err_console, overwrite_option, resume_option

console = Console(highlight=False)
KERNEL_HELP = f"Kernel type ({', '.join(KERNEL_TYPES)}); repeat for a mixture, weights as KIND:WEIGHT."


class Layout(str, Enum):
    folder = "folder"
    khanhha = "khanhha"


class Padding(str, Enum):
    zero = "zero"
    reflect = "reflect"


def _range(text: str | None, option: str) -> tuple[float, float] | None:
    """`LO:HI` (or one number for a fixed value) -> (lo, hi)."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(":")]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise InputError(f"{option}: expected LO:HI or a single number, got {text!r}")
    return values[0], values[-1]


def _weights(kinds: list[str]) -> dict[str, float]:
    """`aniso`, `motion:0.2`, ... -> {kind: weight}; a kind without weight counts 1."""
    weights = {}
    for item in kinds:
        kind, _, weight = item.partition(":")
        try:
            weights[kind] = float(weight or 1.0)
        except ValueError:
            raise InputError(f"--kernel: expected KIND or KIND:WEIGHT, got {item!r}") from None
    return weights


def degrade_command(
    src: Path = typer.Argument(..., help="Image folder, or a Khanhha test/ folder with --layout khanhha."),
    out: Path = typer.Argument(..., help="Output folder."),
    layout: Layout = typer.Option(
        Layout.folder,
        "--layout",
        help="folder: OUT/lr/*.png, OUT/kernels/*.tiff (exact float32), OUT/manifest.json. "
        "khanhha: the authors' degraded test set OUT/test_blured/{gt/images,gt/masks,02_40/...}.",
    ),
    scale: int = typer.Option(4, "--scale", min=1, help="Downscaling factor (2, 4, 8, ...)."),
    seed: int = typer.Option(
        5, "--seed", help="Seed; each image's draws depend only on it and the image's path."
    ),
    kernel: list[str] = typer.Option(
        ["aniso"],
        "--kernel",
        help=KERNEL_HELP,
    ),
    sigma: str = typer.Option("0.2:4", "--sigma", help="Gaussian standard deviation range LO:HI (pixels)."),
    motion_length: str = typer.Option(
        "3:15", "--motion-length", help="Motion blur length range LO:HI (pixels)."
    ),
    kernel_size: int = typer.Option(21, "--kernel-size", help="Kernel side (odd)."),
    padding: Padding | None = typer.Option(
        None,
        "--padding",
        help="Border handling of the blur. Default: reflect (no dark border); zero with --layout khanhha, "
        "as the authors' test set.",
    ),
    antialias: bool = typer.Option(
        True, "--antialias/--no-antialias", help="Antialiased bicubic (torchvision >= 0.17, as the authors)."
    ),
    noise: str | None = typer.Option(
        None, "--noise", help="Gaussian noise sigma range LO:HI in 8-bit levels."
    ),
    jpeg: str | None = typer.Option(None, "--jpeg", help="JPEG quality range LO:HI applied to the LR."),
    save_blurred_hr: bool = typer.Option(
        False, "--save-blurred-hr", help="Also write the blurred HR (always written with --layout khanhha)."
    ),
    pattern: str = typer.Option("**/*", "--pattern", help="Glob of images under SRC (folder layout)."),
    blur_name: str | None = typer.Option(
        None,
        "--blur-name",
        help="khanhha layout: degradation folder name (default from --sigma, e.g. 02_40).",
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Parallel worker processes."),
    resume: bool = resume_option("Continue an interrupted run with the same settings."),
    overwrite: bool = overwrite_option("Redo every image of an earlier run in OUT."),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Warn about unusable inputs, list them at the end."
    ),
    quiet: bool = QuietOption,
) -> None:
    """Blur, downscale and quantise images; write LR images, their kernels and a manifest of every choice.

    Same seed, same bytes (whatever --workers); an interrupted run continues with --resume.
    """
    from ..data.degrade import DegradeConfig, JobOutcome, folder_plan, run_jobs, start_state, write_manifest
    from ..data.khanhha import blur_dir_name, khanhha_test_plan

    noise_range = _range(noise, "--noise")
    jpeg_range = _range(jpeg, "--jpeg")
    try:
        law = KernelLaw(
            _weights(kernel), _range(sigma, "--sigma"), _range(motion_length, "--motion-length"), kernel_size
        )
        config = DegradeConfig(
            scale=scale,
            kernels=law,
            padding=(padding or (Padding.zero if layout is Layout.khanhha else Padding.reflect)).value,
            antialias=antialias,
            noise=noise_range,
            jpeg=None if jpeg_range is None else (int(jpeg_range[0]), int(jpeg_range[1])),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None

    if layout is Layout.khanhha:
        plan = khanhha_test_plan(src, out, blur_name or blur_dir_name(law.sigma))
    else:
        plan = folder_plan(src, out, pattern, save_blurred_hr, exclude=out)
    if plan.problems and not skip_bad:
        raise plan.problems[0]
    failures = [str(problem) for problem in plan.problems]
    for failure in failures:
        err_console.print(f"warning: {failure}", style="yellow", markup=False)

    settings = {
        "src": str(src.resolve()),
        "layout": layout.value,
        "seed": seed,
        "degradation": config.to_dict(),
        "save_blurred_hr": save_blurred_hr,
        "pattern": pattern,
    }
    start_state(plan, settings, resume, overwrite)
    todo = [job for job in plan.jobs if not plan.is_done(job)]

    progress = progress_bar(err_console, "degrading", disable=quiet)
    with progress:
        task = progress.add_task("degrade", total=len(plan.jobs), completed=len(plan.jobs) - len(todo))

        def on_outcome(outcome: JobOutcome) -> None:
            if outcome.error is not None:
                if not skip_bad:
                    raise InputError(outcome.error)
                failures.append(outcome.error)
                progress.console.print(f"warning: {outcome.error}", style="yellow", markup=False)
            progress.advance(task)

        run_jobs(plan, todo, config, seed, workers, on_outcome)

    manifest, written = write_manifest(plan, settings, failures)
    earlier = len(plan.jobs) - len(todo)
    message = f"{written} LR images in {plan.root} ({earlier} from an earlier run); manifest {manifest}"
    console.print(message, markup=False)
    if failures:
        err_console.print("inputs that could not be used:", style="bold yellow")
        for failure in failures:
            err_console.print(f"  {failure}", markup=False)
        raise PartialFailure(f"{len(failures)} of {len(plan.jobs) + len(plan.problems)} inputs were skipped")
